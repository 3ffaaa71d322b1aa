"""Spend belongs to the model that answered (SPEC section 15): cost_by_model, cost_summary("model"),
compare_models and the dashboard attribute cost and tokens to the model of each llm span, nested
executions and fallbacks included; ``executions`` counts the root executions that used the model."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from llm_agents import Agent, Param, trace
from llm_agents.models import CostConfig, Execution
from llm_agents.testing import fake_llm

from .factories import ExecutionFactory, SpanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def prices(db):
    """$1 per 1,000 input tokens on model-a, $2 on model-b, $4 on model-c; output is free."""
    for model, price in (("model-a", "1000"), ("model-b", "2000"), ("model-c", "4000")):
        CostConfig.objects.create(model=model, input_price_per_mtok=Decimal(price),
                                  output_price_per_mtok=Decimal("0"), effective_from="2020-01-01T00:00Z")  # fmt: skip


class AskA(Agent):
    model = "model-a"
    retry_backoff = 0
    retries = 0
    question = Param(default="q")

    def user_prompt(self):
        return self.question


class AskB(AskA):
    model = "model-b"


class AskBThenC(AskA):
    """model-b first, model-c when it fails."""

    model = "model-b"
    fallback_models = ["model-c"]


def answer(llm, model: str, input_tokens: int = 1000) -> None:
    llm.respond("ok", model=model, input_tokens=input_tokens, output_tokens=10)


def by_model(rows: list[dict]) -> dict[str, tuple[Decimal, int]]:
    return {row["model_id"]: (row["total_cost"], row["executions"]) for row in rows}


@pytest.fixture
def traced_work():
    """A trace calling model-a twice (one nested agent, one nested again inside it is not possible:
    two sibling agents), and a plain AskB call outside any trace."""
    with fake_llm() as llm:
        answer(llm, "model-a")
        answer(llm, "model-b")
        with trace("pipeline"):
            AskA.call()  # $1 on model-a, nested in the trace
            AskB.call()  # $2 on model-b, nested in the trace
        answer(llm, "model-b", 2000)
        AskB.call()  # $4 on model-b, a root of its own


def test_spend_inside_a_trace_goes_to_the_models_that_answered(traced_work, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = Execution.objects.cost_by_model()
    # Before: the trace's $3 under "" (its model_id), the nested agents invisible.
    assert by_model(rows) == {"model-b": (Decimal("6"), 2), "model-a": (Decimal("1"), 1)}
    assert [row["model_id"] for row in rows] == ["model-b", "model-a"]  # costliest first
    assert sum(row["total_cost"] for row in rows) == Execution.objects.summary()["total_cost"]


def test_a_scope_decides_the_roots_and_their_nested_spend_is_grouped(traced_work):
    assert by_model(Execution.objects.by_agent("pipeline").cost_by_model("7d")) == {
        "model-a": (Decimal("1"), 1),
        "model-b": (Decimal("2"), 1),
    }
    assert by_model(Execution.objects.by_agent("AskB").cost_by_model("7d")) == {"model-b": (Decimal("4"), 1)}
    # A model used only inside traces still appears.
    assert by_model(Execution.objects.by_agent("pipeline").by_model("").cost_by_model()) == {
        "model-a": (Decimal("1"), 1),
        "model-b": (Decimal("2"), 1),
    }


def test_fallback_spend_is_charged_to_the_fallback():
    with fake_llm() as llm:
        llm.fail("server_error", model="model-b")
        answer(llm, "model-c")
        AskBThenC.call()
    execution = Execution.objects.get()
    assert (execution.model_id, execution.chosen_model_id) == ("model-b", "model-c")
    # Before: the $4 under model-b, the configured model.
    assert by_model(Execution.objects.cost_by_model()) == {"model-c": (Decimal("4"), 1)}


def test_cost_summary_by_model_counts_tokens_by_span(traced_work, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = Execution.objects.cost_summary("model")
    assert [(r["key"], r["total_cost"], r["executions"], r["total_tokens"]) for r in rows] == [
        ("model-b", Decimal("6"), 2, 1010 + 2010),
        ("model-a", Decimal("1"), 1, 1010),
    ]


def test_compare_models_over_the_roots_that_used_each_model(traced_work, django_assert_num_queries):
    Execution.objects.filter(agent_type="pipeline").update(duration_ms=300, status="error")
    Execution.objects.filter(agent_type="AskB", parent__isnull=True).update(duration_ms=100)
    with django_assert_num_queries(2):  # the rollups: spend by model, then the latency histograms
        rows = Execution.objects.compare_models()
    assert rows == [
        {
            "model_id": "model-b",
            "executions": 2,
            "success_rate": 50.0,  # the trace failed, the plain call succeeded
            "avg_duration_ms": 200.0,
            "p95_duration_ms": pytest.approx(290.0, rel=0.01),  # 100 + 0.95 * 200, within 1% from the rollups
            "avg_cost": Decimal("3.00000000"),  # ($2 + $4) / 2 roots
            "total_tokens": 3020,
        },
        {
            "model_id": "model-a",
            "executions": 1,
            "success_rate": 0.0,
            "avg_duration_ms": 300.0,
            "p95_duration_ms": pytest.approx(300.0, rel=0.01),
            "avg_cost": Decimal("1.00000000"),
            "total_tokens": 1010,
        },
    ]


def test_rows_without_spans_go_to_their_chosen_model_and_spend_beyond_spans_too():
    # A host's own ORM writes: no spans at all.
    ExecutionFactory(model_id="model-a", chosen_model_id="", input_cost=Decimal("1"), output_cost=0)
    ExecutionFactory(model_id="model-a", chosen_model_id="model-b", input_cost=Decimal("2"), output_cost=0)
    # $5 recorded on the root, $3 of it by an llm span of model-c: the other $2 goes to its model.
    partly = ExecutionFactory(model_id="model-a", input_cost=Decimal("5"), output_cost=0, total_tokens=100)
    SpanFactory(
        execution=partly, model_id="model-c", total_cost=Decimal("3"), input_tokens=60, output_tokens=0
    )
    # Spans a host adds by ORM count once rebuild_aggregates has recomputed model_spend.
    call_command("rebuild_aggregates", verbosity=0)
    rows = Execution.objects.cost_summary("model")
    assert [(r["key"], r["total_cost"], r["executions"], r["total_tokens"]) for r in rows] == [
        ("model-a", Decimal("3"), 2, 1500 + 40),
        ("model-c", Decimal("3"), 1, 60),
        ("model-b", Decimal("2"), 1, 1500),
    ]


def test_a_root_counts_once_for_a_model_of_its_spans_and_of_its_rest():
    # $5 on the root, $3 of it by a span of its own model: model-a has the $5 and one execution.
    root = ExecutionFactory(model_id="model-a", input_cost=Decimal("5"), output_cost=0, total_tokens=100)
    SpanFactory(execution=root, model_id="model-a", total_cost=Decimal("3"), input_tokens=60, output_tokens=0)
    SpanFactory(execution=root, model_id="model-b", total_cost=Decimal("1"), input_tokens=10, output_tokens=0)
    SpanFactory(execution=root, model_id="model-b", total_cost=Decimal("0"), input_tokens=0, output_tokens=0)
    call_command("rebuild_aggregates", verbosity=0)  # spans added by ORM: counted after a rebuild
    assert [(r["key"], r["total_cost"], r["executions"], r["total_tokens"]) for r in
            Execution.objects.cost_summary("model")] == [("model-a", Decimal("4"), 1, 90), ("model-b", Decimal("1"), 1, 10)]  # fmt: skip
    assert [(r["model_id"], r["executions"]) for r in Execution.objects.compare_models()] == [
        ("model-a", 1),
        ("model-b", 1),
    ]


def test_periods_and_empty_querysets_answer_empty_lists():
    old = timezone.now() - dt.timedelta(days=30)
    ExecutionFactory(started_at=old, model_id="model-a")
    assert Execution.objects.cost_by_model("today") == []
    assert Execution.objects.none().cost_by_model() == []
    assert Execution.objects.none().compare_models() == []
    assert Execution.objects.filter(pk__in=[]).cost_summary("model") == []


def test_the_dashboards_cost_by_model_chart_shows_the_models_that_answered(staff_client, traced_work):
    response = staff_client.get(reverse("admin:llm_agents_dashboard"), {"period": "7d"})
    rows = response.context["charts"]["models"]
    # Before: "" (the trace's model_id, shown as "(none)") with $3, and model-b with $4.
    assert by_model(rows) == {"model-b": (Decimal("6"), 2), "model-a": (Decimal("1"), 1)}
    assert "(none)" not in response.content.decode()
