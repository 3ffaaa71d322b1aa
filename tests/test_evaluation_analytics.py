"""Executions of evaluation runs stay out of production analytics (SPEC section 17) unless asked for,
whichever path answers (the rollups or the rows); lists and budgets count them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from llm_agents import Agent, Param, trace
from llm_agents.context import evaluating
from llm_agents.models import Budget, DailyRollup, Dataset, EvalRun, Execution, HourlyRollup
from llm_agents.testing import fake_llm

from .factories import ExecutionFactory

pytestmark = pytest.mark.django_db


class Answer(Agent):
    model = "gpt-4o-mini"
    question = Param(default="q")

    def user_prompt(self) -> str:
        return self.question


@pytest.fixture
def run() -> EvalRun:
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    return EvalRun.objects.create(dataset=dataset, agent_type="Answer", target="tests.Answer")


def record(llm, *, eval_run=None, cost: int = 100) -> Execution:
    """One agent call through the real code path, as production or inside an evaluation run."""
    llm.respond("ok", input_tokens=cost, output_tokens=cost)
    if eval_run is None:
        return Answer.call().execution
    with evaluating(eval_run.id):
        return Answer.call().execution


def test_executions_begun_in_an_evaluation_carry_the_run_nested_ones_too(run):
    with fake_llm() as llm:
        llm.respond("ok")
        llm.respond("ok")
        with evaluating(run.id), trace("pipeline"):
            Answer.call()
        llm.respond("ok")
        Answer.call()
    assert set(Execution.objects.filter(eval_run=run).values_list("agent_type", flat=True)) == {
        "pipeline",
        "Answer",
    }
    assert Execution.objects.filter(eval_run__isnull=True).count() == 1


@pytest.mark.parametrize("rollups", [True, False])
def test_production_analytics_leave_evaluations_out_unless_asked(run, rollups):
    with override_settings(LLM_AGENTS={"ROLLUPS": rollups}), fake_llm() as llm:
        production = [record(llm, cost=100) for _ in range(3)]
        evaluated = [record(llm, eval_run=run, cost=1000) for _ in range(2)]
        everything = Execution.objects.last_7_days()
        summary = everything.summary()
        assert summary["total"] == 3
        assert summary["total_cost"] == sum((e.total_cost for e in production), Decimal(0))
        assert everything.cost_by_agent("last_7_days")[0]["executions"] == 3
        assert everything.evaluations().summary()["total"] == 2
        assert everything.evaluations().summary()["total_cost"] == sum(
            (e.total_cost for e in evaluated), Decimal(0)
        )
        assert everything.including_evaluations().summary()["total"] == 5
        assert everything.including_evaluations().by_agent("Answer").summary()["total"] == 5
        # A scope keeps the choice as it chains.
        assert everything.including_evaluations().successful().last_7_days().summary()["total"] == 5


def test_the_rollups_hold_production_executions_only_whatever_writes_the_rows(run):
    ExecutionFactory(total_cost=Decimal("1"))
    evaluated = ExecutionFactory(total_cost=Decimal("5"), eval_run=run)
    ExecutionFactory.create_batch(3, total_cost=Decimal("7"), eval_run=run)
    for table in (HourlyRollup, DailyRollup):
        assert table.objects.aggregate(n=Sum("executions"), c=Sum("total_cost")) == {
            "n": 1, "c": Decimal("1"),
        }  # fmt: skip
    # An execution leaving its run (an update of the ORM) joins production, and back.
    Execution.objects.filter(pk=evaluated.pk).update(eval_run=None)
    assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 2
    Execution.objects.filter(pk=evaluated.pk).update(eval_run=run)
    assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 1
    # Deleting the run deletes its executions, and the rollups do not move.
    run.delete()
    assert Execution.objects.count() == 1
    assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 1


def test_lists_count_executions_of_evaluation_runs(run):
    ExecutionFactory.create_batch(2)
    ExecutionFactory.create_batch(3, eval_run=run)
    start = timezone.now() - dt.timedelta(days=1)
    listed = Execution.objects.filter(started_at__gte=start, agent_type="SupportAgent")
    assert listed.rollup_count() == 5 == listed.count()


def test_budgets_count_the_spend_of_evaluation_runs(run):
    budget = Budget.objects.create(name="all", scope=Budget.Scope.GLOBAL, period=Budget.Period.DAILY,
                                   limit_usd=Decimal("100"))  # fmt: skip
    with fake_llm() as llm:
        evaluated = record(llm, eval_run=run, cost=1000)
    assert evaluated.total_cost > 0
    assert budget.current_spend() == evaluated.total_cost


def test_the_dashboard_leaves_evaluations_out(admin_client, run):
    with fake_llm() as llm:
        record(llm, cost=100)
        for _ in range(4):
            record(llm, eval_run=run, cost=100)
    page = admin_client.get("/admin/llm_agents/execution/dashboard/?period=today")
    assert page.status_code == 200
    assert page.context["overview"]["total_executions"] == 1
    assert len(page.context["recent"]) == 1
