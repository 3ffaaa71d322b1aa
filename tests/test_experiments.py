"""Prompt experiments (SPEC §18, §21): validation, sticky assignment by the documented hash, executions
recording version and experiment, results with intervals and p-values, guardrails, promotion."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from llm_agents import Agent, Param, context, scores
from llm_agents.errors import AllModelsExhaustedError
from llm_agents.models import Execution, Prompt, PromptExperiment
from llm_agents.models.experiments import could_break_guardrails
from llm_agents.signals import experiment_guardrail_tripped
from llm_agents.statistics import normal_ci95, two_sample_comparison
from llm_agents.testing import fake_llm
from llm_agents.tracking.records import ExecutionRecord
from tests.factories import ExecutionFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prompt():
    prompt = Prompt.objects.create(slug="answer", name="Answer")
    prompt.update_content([{"role": "user", "content": "Answer {{q}} briefly."}], model="fake/good")
    prompt.update_content([{"role": "user", "content": "Answer {{q}}."}], model="fake/flaky")
    prompt.update_content([{"role": "user", "content": "Answer {{q}} in full."}], model="fake/good")
    prompt.set_label("production", 1)
    return prompt


def experiment_of(prompt, variants=((1, 50), (2, 50)), **fields):
    values = {"name": "brevity", "metric": "error_rate", **fields}
    return PromptExperiment.objects.create(
        prompt=prompt, variants=[{"version": v, "weight": w} for v, w in variants], **values
    )


class AnswerAgent(Agent):
    prompt = "answer"
    q = Param(required=True)


def reference_assignment(experiment_id, unit_value, variants):
    """SPEC §21, written out independently of the code under test."""
    bucket = int(hashlib.sha256(f"{experiment_id}:{unit_value}".encode()).hexdigest(), 16) % 10000
    total = sum(weight for _, weight in variants)
    cumulative = 0
    for version, weight in variants:
        cumulative += weight
        if cumulative * 10000 / total > bucket:
            return version
    raise AssertionError("no variant")


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"version": 1, "weight": 0}, {"version": 2, "weight": 1}], "weight must be above 0"),
        ([{"version": 1, "weight": -2}, {"version": 2, "weight": 1}], "weight must be above 0"),
        ([{"version": 1, "weight": "half"}, {"version": 2, "weight": 1}], "weight must be a number"),
        ([{"version": 1, "weight": 1}], "at least two"),
        ([{"version": 1, "weight": 1}, {"version": 1, "weight": 1}], "different versions"),
        ([{"version": 1, "weight": 1}, {"version": 9, "weight": 1}], "has no version 9"),
        ([{"version": "1", "weight": 1}, {"version": 2, "weight": 1}], "version must be a version number"),
        ({"version": 1}, "at least two"),
        ([{"version": 2**64, "weight": 1}, {"version": 2, "weight": 1}], "version must be a version number"),
        ([{"version": 1, "weight": 10**400}, {"version": 2, "weight": 1}], "weight must be a number"),
    ],
)
def test_bad_variants_are_refused_naming_the_field(prompt, variants, message):
    with pytest.raises(ValidationError) as caught:
        PromptExperiment.objects.create(prompt=prompt, name="x", metric="cost", variants=variants)
    assert message in " ".join(caught.value.message_dict["variants"])
    assert not PromptExperiment.objects.exists()


def test_a_variant_naming_a_version_of_another_prompt_is_refused(prompt):
    other = Prompt.objects.create(slug="other", name="Other")
    for text in ("a", "b", "c", "d", "e"):
        other.update_content([{"role": "user", "content": text}])
    with pytest.raises(ValidationError, match="has no version 5"):
        experiment_of(prompt, variants=((1, 1), (5, 1)))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"guardrails": {"latency_max": 3}}, "guardrails"),
        ({"guardrails": {"error_rate_max": -1}}, "guardrails"),
        ({"guardrails": {"error_rate_max": 150}}, "guardrails"),
        ({"guardrails": {"cost_per_call_max": 10**400}}, "guardrails"),
        ({"metric": ""}, "metric"),
        ({"unit": "planet"}, "unit"),
        ({"min_samples": 0}, "min_samples"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(prompt, fields, field):
    with pytest.raises(ValidationError) as caught:
        experiment_of(prompt, **fields)
    assert field in caught.value.message_dict


def test_defaults():
    experiment = PromptExperiment()
    assert (experiment.status, experiment.min_samples, experiment.guardrails) == ("draft", 100, {})


def test_a_prompt_runs_one_experiment_at_a_time(prompt):
    first = experiment_of(prompt)
    first.start()
    second = experiment_of(prompt, name="second")
    with pytest.raises(ValidationError, match="already has a running experiment"):
        second.start()
    second.refresh_from_db()
    assert second.status == "draft"
    clash = PromptExperiment(prompt=prompt, name="third", metric="cost", status="running",
                             variants=[{"version": 1, "weight": 1}, {"version": 3, "weight": 1}])  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        clash.full_clean()
    assert caught.value.message_dict == {
        "status": ["This prompt already has a running experiment; stop it first."]
    }
    with pytest.raises(ValidationError):
        clash.save()
    assert PromptExperiment.objects.filter(status="running").count() == 1
    first.stop()
    second.start()
    with pytest.raises(ValidationError, match="Only a draft"):
        first.start()


# -- assignment ------------------------------------------------------------------------------------


def test_ten_thousand_assignments_follow_the_weights_and_the_documented_hash(prompt):
    variants = ((1, 70), (2, 20), (3, 10))
    experiment = experiment_of(prompt, variants=variants)
    experiment.start()
    drawn = {
        f"user-{n}": Prompt.load("answer", user_id=f"user-{n}").current_version.number for n in range(10_000)
    }
    shares = Counter(drawn.values())
    for version, weight in variants:
        assert abs(shares[version] / 10_000 - weight / 100) <= 0.02, (version, shares)
    assert all(
        number == reference_assignment(experiment.pk, user, variants) for user, number in drawn.items()
    )
    again = {user: Prompt.load("answer", user_id=user).current_version.number for user in list(drawn)[:500]}
    assert all(again[user] == drawn[user] for user in again)


def test_the_unit_value_comes_from_the_session_or_the_tenant(prompt):
    by_session = experiment_of(prompt, unit="session")
    by_session.start()
    for n in range(50):
        with context.session(f"conversation-{n}", user_id="same user"):
            number = Prompt.load("answer").current_version.number
        assert number == reference_assignment(by_session.pk, f"conversation-{n}", ((1, 50), (2, 50)))
    by_session.stop()
    by_tenant = experiment_of(prompt, unit="tenant")
    by_tenant.start()
    for n in range(50):
        with context.tenant(f"acme-{n}"):
            number = Prompt.load("answer").current_version.number
        assert number == reference_assignment(by_tenant.pk, f"acme-{n}", ((1, 50), (2, 50)))


def test_without_a_unit_value_the_control_is_used_and_unit_call_draws_anew(prompt):
    experiment = experiment_of(prompt, variants=((2, 1), (3, 1)))
    experiment.start()
    assert {Prompt.load("answer").current_version.number for _ in range(50)} == {2}
    experiment.stop()
    per_call = experiment_of(prompt, variants=((2, 1), (3, 1)), unit="call")
    per_call.start()
    assert {Prompt.load("answer", user_id="u").current_version.number for _ in range(50)} == {2, 3}


def test_only_the_production_label_is_split(prompt):
    prompt.set_label("staging", 3)
    experiment_of(prompt, variants=((1, 1), (2, 1))).start()
    assert {Prompt.load("answer", "staging", user_id=f"u{n}").current_version.number for n in range(30)} == {
        3
    }
    assert Prompt.load("answer", "staging", user_id="u1").experiment is None


def test_executions_record_the_version_and_the_experiment(prompt):
    experiment = experiment_of(prompt, variants=((1, 1), (3, 1)))
    experiment.start()
    with fake_llm():
        for n in range(40):
            for _ in range(2):
                AnswerAgent.call(q="why", _user_id=f"user-{n}")
    executions = list(experiment.executions.all())
    assert len(executions) == 80
    for execution in executions:
        assert execution.prompt_version.number == reference_assignment(experiment.pk, execution.user_id,
                                                                       ((1, 1), (3, 1)))  # fmt: skip
    assert {e.prompt_version.number for e in executions} == {1, 3}
    experiment.stop()
    with fake_llm():
        AnswerAgent.call(q="why", _user_id="user-1")
    latest = Execution.objects.order_by("-started_at").first()
    assert (latest.prompt_version.number, latest.experiment) == (1, None)


# -- results ---------------------------------------------------------------------------------------


def make_executions(experiment, number, outcomes):
    version = experiment.prompt.version(number)
    return [
        ExecutionFactory(
            prompt_version=version,
            experiment=experiment,
            status=status,
            total_cost=cost,
            duration_ms=duration,
        )  # fmt: skip
        for status, cost, duration in outcomes
    ]


def test_results_give_each_variant_its_figures_and_compare_with_the_control(prompt):
    experiment = experiment_of(prompt, metric="error_rate", min_samples=100)
    make_executions(experiment, 1, [("success", "0.002", 100)] * 90 + [("error", "0.002", 300)] * 10)
    make_executions(experiment, 2, [("success", "0.004", 200)] * 75 + [("error", "0.004", 400)] * 25)
    ExecutionFactory(prompt_version=prompt.version(2), experiment=experiment, status="running")  # not counted
    results = experiment.results()
    assert results["metric"] == "error_rate"
    control, variant = results["variants"]
    assert (control["version"], control["executions"], control["success_rate"]) == (1, 100, 90.0)
    assert (variant["version"], variant["executions"], variant["success_rate"]) == (2, 100, 75.0)
    assert control["avg_cost"] == Decimal("0.002")
    assert control["p50_duration_ms"] == 100.0
    assert variant["p95_duration_ms"] == 400.0
    # error rate: a 0/100 value per execution, so its mean is the rate and its sd sqrt(p(1-p)·n/(n-1))
    sd_control = math.sqrt(0.1 * 0.9 * 100 / 99) * 100
    sd_variant = math.sqrt(0.25 * 0.75 * 100 / 99) * 100
    assert control["metric_mean"] == 10.0
    assert control["ci95"] == list(normal_ci95(100, 10.0, sd_control))
    error = math.sqrt(sd_control**2 / 100 + sd_variant**2 / 100)
    expected_p = math.erfc(15 / error / math.sqrt(2))
    (comparison,) = results["comparisons"]
    assert comparison["version"] == 2
    assert comparison["delta"] == 15.0
    assert comparison["p_value"] == round(expected_p, 4)
    assert comparison["ci95"] == [round(15 - 1.959964 * error, 4), round(15 + 1.959964 * error, 4)]
    assert comparison["significant"] is True


def test_a_difference_is_not_significant_before_min_samples(prompt):
    experiment = experiment_of(prompt, metric="error_rate", min_samples=500)
    make_executions(experiment, 1, [("success", "0.002", 100)] * 90 + [("error", "0.002", 300)] * 10)
    make_executions(experiment, 2, [("success", "0.004", 200)] * 60 + [("error", "0.004", 400)] * 40)
    (comparison,) = experiment.results()["comparisons"]
    assert comparison["p_value"] < 0.05
    assert comparison["significant"] is False


def test_identical_variants_are_not_significant(prompt):
    experiment = experiment_of(prompt, metric="latency", min_samples=10)
    outcomes = [("success", "0.001", ms) for ms in range(100, 300, 5)]
    make_executions(experiment, 1, outcomes)
    make_executions(experiment, 2, outcomes)
    (comparison,) = experiment.results()["comparisons"]
    assert (comparison["delta"], comparison["p_value"], comparison["significant"]) == (0.0, 1.0, False)


def test_cost_as_the_metric(prompt):
    experiment = experiment_of(prompt, metric="cost", min_samples=2)
    make_executions(experiment, 1, [("success", "0.001", 100), ("success", "0.003", 100)])
    make_executions(
        experiment, 2, [("success", "0.002", 100), ("success", "0.004", 100), ("error", "0.006", 100)]
    )
    control, variant = experiment.results()["variants"]
    assert (control["metric_mean"], variant["metric_mean"]) == (0.002, 0.004)
    assert variant["avg_cost"] == Decimal("0.004")
    assert variant["ci95"] == list(normal_ci95(3, 0.004, 0.002))
    (comparison,) = experiment.results()["comparisons"]
    assert comparison["delta"] == 0.002


def test_a_score_can_be_the_metric(prompt):
    experiment = experiment_of(prompt, metric="helpfulness", min_samples=3)
    for number, values in ((1, [0.2, 0.4, 0.3, 0.5]), (2, [0.8, 0.9, 0.7, 1.0])):
        for execution, value in zip(make_executions(experiment, number, [("success", "0.001", 100)] * 4),
                                    values, strict=True):  # fmt: skip
            scores.add(execution, "helpfulness", value)
    control, variant = experiment.results()["variants"]
    assert (control["metric_mean"], variant["metric_mean"]) == (0.35, 0.85)
    (comparison,) = experiment.results()["comparisons"]
    expected = two_sample_comparison((4, 0.35, 0.1290994), (4, 0.85, 0.1290994))
    assert comparison["delta"] == 0.5
    assert comparison["p_value"] == expected["p_value"]
    assert comparison["significant"] is True


def test_results_take_the_same_queries_however_many_executions(prompt, django_assert_num_queries):
    experiment = experiment_of(prompt, metric="helpfulness", min_samples=3)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            experiment.results()
        return len(captured)

    for execution in make_executions(experiment, 1, [("success", "0.001", 100)] * 3):
        scores.add(execution, "helpfulness", 0.5)
    make_executions(experiment, 2, [("error", "0.001", 100)] * 3)
    few = queries()
    for execution in make_executions(experiment, 1, [("success", "0.001", 100)] * 30):
        scores.add(execution, "helpfulness", 1.0)
    make_executions(experiment, 2, [("success", "0.001", 100)] * 30)
    assert queries() == few
    # the variants' versions, the figures grouped by version, the score values grouped by version,
    # and the two latency percentiles of each variant (one query on PostgreSQL, a few elsewhere)
    per_variant = 1 if connection.vendor == "postgresql" else 3
    assert few == 3 + 2 * per_variant


def test_a_variant_without_executions_has_no_metric(prompt):
    results = experiment_of(prompt).results()
    assert [v["executions"] for v in results["variants"]] == [0, 0]
    assert results["variants"][0]["ci95"] is None
    assert results["comparisons"][0]["p_value"] is None


# -- guardrails and promotion ----------------------------------------------------------------------


def test_a_guardrail_takes_an_error_prone_variant_out_after_min_samples(prompt):
    experiment = experiment_of(prompt, guardrails={"error_rate_max": 20}, min_samples=20)
    experiment.start()
    tripped = []

    def receiver(sender, **payload):
        tripped.append(payload)

    experiment_guardrail_tripped.connect(receiver)
    users = [f"user-{n}" for n in range(400)]
    flaky_users = [u for u in users if reference_assignment(experiment.pk, u, ((1, 50), (2, 50))) == 2]
    try:
        with fake_llm() as llm:
            for user in flaky_users[:19]:
                llm.fail("server_error", model="fake/flaky")
                with pytest.raises(AllModelsExhaustedError):
                    AnswerAgent.call(q="why", _user_id=user)
            experiment.refresh_from_db()
            assert experiment.tripped == []  # 19 failures: below min_samples, nothing judged yet
            llm.fail("server_error", model="fake/flaky")
            with pytest.raises(AllModelsExhaustedError):
                AnswerAgent.call(q="why", _user_id=flaky_users[19])
            experiment.refresh_from_db()
            assert [entry["version"] for entry in experiment.tripped] == [2]
            assert "error rate 100.00% over 20 executions" in experiment.tripped[0]["reason"]
            before = len(llm.calls)
            for user in flaky_users[20:60]:
                AnswerAgent.call(q="why", _user_id=user)  # now all get the control
            assert {model for model, _, _ in llm.calls[before:]} == {"fake/good"}
    finally:
        experiment_guardrail_tripped.disconnect(receiver)
    assert [(p["experiment"].pk, p["version"]) for p in tripped] == [(experiment.pk, 2)]
    assert experiment.results()["variants"][1]["tripped"] == experiment.tripped[0]["reason"]


def test_a_cost_guardrail_judges_the_average_cost_per_call(prompt):
    experiment = experiment_of(prompt, guardrails={"cost_per_call_max": 0.003}, min_samples=10)
    experiment.start()
    make_executions(experiment, 1, [("success", "0.002", 100)] * 10)
    make_executions(experiment, 2, [("success", "0.004", 100)] * 10)
    added = experiment.check_guardrails()
    assert [entry["version"] for entry in added] == [2]
    assert "cost_per_call_max" in added[0]["reason"]
    assert experiment.check_guardrails() == []  # tripped once only


@pytest.mark.parametrize(
    ("status", "cost", "judged"),
    [("error", "0", True), ("timeout", "0", True), ("success", "0.004", True), ("success", "0.003", False),
     ("success", "0", False)],
)  # fmt: skip
def test_only_a_failure_or_a_call_above_the_cost_limit_can_break_a_guardrail(status, cost, judged):
    record = ExecutionRecord(kind="agent", agent_type="a", status=status, total_cost=Decimal(cost))
    assert could_break_guardrails(record, {"error_rate_max": 10, "cost_per_call_max": 0.003}) is judged
    assert could_break_guardrails(record, {}) is False


def test_promote_moves_the_production_label_and_stops(prompt, django_user_model):
    experiment = experiment_of(prompt)
    experiment.start()
    editor = django_user_model.objects.create_user("editor", is_staff=True)
    with pytest.raises(PermissionDenied):
        experiment.promote(2, user=editor)
    experiment.refresh_from_db()
    assert (experiment.status, prompt.label("production").number) == ("running", 1)
    with pytest.raises(ValidationError, match="not a variant"):
        experiment.promote(3)
    promoter = django_user_model.objects.create_user("promoter", is_staff=True)
    promoter.user_permissions.add(Permission.objects.get(codename="promote_prompt"))
    promoter = django_user_model.objects.get(pk=promoter.pk)
    experiment.promote(2, user=promoter)
    experiment.refresh_from_db()
    assert experiment.status == "stopped"
    assert experiment.stopped_at is not None
    assert prompt.label("production").number == 2
    assert {Prompt.load("answer", user_id=f"u{n}").current_version.number for n in range(20)} == {2}
