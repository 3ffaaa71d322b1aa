"""Alert rules (SPEC section 19): thresholds and anomalies over recent executions, filters, window
edges, cooldowns, pauses, the evaluate_alerts task and command, and the rollups answering as the rows."""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import math
import random
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from llm_agents import budgets, tasks
from llm_agents.alerts import evaluation
from llm_agents.models import AgentPause, AlertChannel, AlertEvent, AlertRule, Budget, Execution, Score
from tests.factories import BudgetFactory, ExecutionFactory

pytestmark = pytest.mark.django_db

# Minutes past the hour, so that every window has partial hours at its edges.
NOW = (timezone.now() - dt.timedelta(days=2)).replace(minute=23, second=17, microsecond=250_000)


def rule(**fields) -> AlertRule:
    values = {"name": f"rule {AlertRule.objects.count() + 1}", "metric": "executions", "threshold": 0.0}
    values.update(fields)
    channels = values.pop("channels", ())
    created = AlertRule.objects.create(**values)
    created.channels.set(channels)
    return created


def ago(minutes: float, *, at: dt.datetime = NOW) -> dt.datetime:
    return at - dt.timedelta(minutes=minutes)


def fired(now: dt.datetime = NOW) -> set[str]:
    return {event.rule.name for event in evaluation.evaluate(now)}


def score(execution: Execution, value: float, name: str = "helpfulness") -> Score:
    return Score.objects.create(
        execution=execution, name=name, value=value, execution_started_at=execution.started_at
    )


# -- thresholds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "above", "below"),
    [
        ("executions", 2.9, 3.1),
        ("cost", 0.0029, 0.0031),
        ("error_rate", 33.0, 34.0),
        ("p95_latency", 2800, 3000),
    ],
)
def test_threshold_rules_fire_strictly_above_or_below(metric, above, below):
    ExecutionFactory(started_at=ago(10), total_cost=Decimal("0.001"), duration_ms=1000)
    ExecutionFactory(started_at=ago(20), total_cost=Decimal("0.001"), duration_ms=2000, failed=True)
    ExecutionFactory(started_at=ago(30), total_cost=Decimal("0.001"), duration_ms=3000)
    rule(name="above", metric=metric, threshold=above)
    rule(name="below", metric=metric, threshold=below, comparison="below")
    rule(name="not above", metric=metric, threshold=below)
    rule(name="not below", metric=metric, threshold=above, comparison="below")
    assert fired() == {"above", "below"}
    event = AlertEvent.objects.get(rule__name="above")
    assert event.threshold == above and event.fired_at == NOW
    assert event.payload["metric"] == metric and event.payload["value"] == event.value
    assert event.payload["fired_at"] == NOW.isoformat() and event.payload["window_minutes"] == 60


def test_a_threshold_equal_to_the_value_does_not_fire():
    ExecutionFactory.create_batch(2, started_at=ago(5))
    rule(name="equal above", threshold=2)
    rule(name="equal below", threshold=2, comparison="below")
    assert fired() == set()


def test_score_mean_rules_read_the_named_scores_of_the_window():
    for value in (0.2, 0.4):
        score(ExecutionFactory(started_at=ago(10)), value)
    score(ExecutionFactory(started_at=ago(10)), 0.9, name="other")
    score(ExecutionFactory(started_at=ago(90)), 0.9)  # before the window
    rule(name="low", metric="score_mean", score_name="helpfulness", threshold=0.35, comparison="below")
    rule(name="high", metric="score_mean", score_name="helpfulness", threshold=0.25)
    rule(name="unscored", metric="score_mean", score_name="missing", threshold=1, comparison="below")
    assert fired() == {"low", "high"}
    assert AlertEvent.objects.get(rule__name="low").value == pytest.approx(0.3)


def test_budget_percent_rules_read_the_budget_not_the_executions():
    budget = BudgetFactory(scope=Budget.Scope.AGENT, scope_value="nightly", limit_usd=Decimal("10"))
    budgets.record("nightly", Decimal("7.5"), 300)
    ExecutionFactory.create_batch(3, agent_type="nightly", total_cost=Decimal("100"))  # not counted
    rule(name="over 70", metric="budget_percent", budget=budget, threshold=70)
    rule(name="over 80", metric="budget_percent", budget=budget, threshold=80)
    assert fired(timezone.now()) == {"over 70"}
    assert AlertEvent.objects.get().value == 75.0


def test_no_executions_give_no_error_rate_and_no_firing():
    rule(name="error rate below", metric="error_rate", threshold=5, comparison="below")
    rule(name="p95 below", metric="p95_latency", threshold=5, comparison="below")
    rule(name="executions below", metric="executions", threshold=1, comparison="below")
    assert fired() == {"executions below"}


# -- filters and windows ---------------------------------------------------------------------------


def test_filters_pick_agent_model_answered_and_tenant():
    ExecutionFactory(started_at=ago(5), agent_type="A", model_id="m1", tenant_id="t1")
    ExecutionFactory(started_at=ago(5), agent_type="A", model_id="m1", chosen_model_id="m2", tenant_id="t2")
    ExecutionFactory(started_at=ago(5), agent_type="B", model_id="m2", tenant_id=None)
    ExecutionFactory(started_at=ago(5), agent_type="A", eval_run=None, parent=None, status="running")
    for name, filters, count in [
        ("all", {}, 4), ("agent A", {"agent_type": "A"}, 3), ("model m2", {"model_id": "m2"}, 2),
        ("model m1", {"model_id": "m1"}, 1), ("tenant t1", {"tenant_id": "t1"}, 1),
        ("A in t2 on m2", {"agent_type": "A", "tenant_id": "t2", "model_id": "m2"}, 1),
    ]:  # fmt: skip
        rule(name=f"{name} at", threshold=count - 0.5, **filters)
        rule(name=f"{name} over", threshold=count, **filters)
    assert fired() == {
        "all at", "agent A at", "model m2 at", "model m1 at", "tenant t1 at", "A in t2 on m2 at"
    }  # fmt: skip


def test_nested_executions_and_evaluation_runs_are_not_counted():
    parent = ExecutionFactory(started_at=ago(5))
    ExecutionFactory(started_at=ago(5), parent=parent)
    rule(name="one", threshold=0.5)
    rule(name="two", threshold=1.5)
    assert fired() == {"one"}


@pytest.mark.parametrize("rollups", [True, False])
def test_the_window_holds_its_start_and_not_its_end(rollups):
    with override_settings(LLM_AGENTS={"ROLLUPS": rollups}):
        ExecutionFactory(started_at=ago(60))  # the window's first moment
        ExecutionFactory(started_at=NOW)  # the next window's
        ExecutionFactory(started_at=ago(60.001))  # the window before
        rule(name="one", threshold=0.5)
        rule(name="two", threshold=1.5)
        assert fired() == {"one"}


# -- cooldowns and pauses ----------------------------------------------------------------------------


def test_a_rule_fires_once_per_cooldown():
    channel = AlertChannel.objects.create(name="ops", kind="webhook", target="http://127.0.0.1:9/hook")
    ExecutionFactory(started_at=ago(5))
    watched = rule(name="busy", threshold=0, window_minutes=600, cooldown_minutes=30, channels=[channel])
    assert fired() == {"busy"}
    assert fired(NOW + dt.timedelta(minutes=1)) == set()
    assert fired(NOW + dt.timedelta(minutes=29, seconds=59)) == set()
    assert fired(NOW + dt.timedelta(minutes=30)) == {"busy"}
    watched.refresh_from_db()
    assert watched.last_fired_at == NOW + dt.timedelta(minutes=30)
    assert AlertEvent.objects.filter(rule=watched).count() == 2
    assert [event.deliveries.get().channel for event in watched.events.all()] == [channel, channel]


def test_an_evaluator_that_read_a_rule_before_another_fired_it_does_not_fire_it_again():
    ExecutionFactory(started_at=ago(5))
    stale = rule(name="busy", threshold=0)
    evaluation.evaluate(NOW)
    verdict = evaluation.judge(stale, evaluation.measure([stale], 60, NOW, "default"))
    assert stale.last_fired_at is None and verdict.fires  # what a concurrent evaluator read
    assert evaluation.fire(stale, verdict, NOW + dt.timedelta(seconds=5)) is None
    assert AlertEvent.objects.count() == 1


def test_pause_agent_pauses_the_rules_agent_once():
    ExecutionFactory.create_batch(3, started_at=ago(5), agent_type="Runaway", tenant_id="acme")
    rule(
        name="runaway",
        agent_type="Runaway",
        tenant_id="acme",
        threshold=2,
        pause_agent=True,
        cooldown_minutes=1,
    )
    assert fired() == {"runaway"}
    pause = AgentPause.objects.get()
    assert (pause.agent_type, pause.tenant_id, pause.rule.name) == ("Runaway", "acme", "runaway")
    assert pause.reason == "alert rule runaway: executions 3 above 2 over 60 min"
    assert AgentPause.objects.applying_to("Runaway", "acme").exists()
    assert not AgentPause.objects.applying_to("Runaway", "globex").exists()
    assert fired(NOW + dt.timedelta(minutes=2)) == {"runaway"}
    assert AgentPause.objects.count() == 1  # the first still applies


def test_a_rule_that_cannot_be_evaluated_is_logged_and_the_others_fire(caplog):
    ExecutionFactory(started_at=ago(5))
    broken = rule(name="broken", threshold=0)
    rule(name="fine", threshold=0)
    AlertRule.objects.filter(pk=broken.pk).update(threshold=None)  # past clean(), as a bad row would be
    with caplog.at_level(logging.ERROR, logger="llm_agents"):
        assert fired() == {"fine"}
    assert "broken" in caplog.text


def test_inactive_rules_are_not_evaluated():
    ExecutionFactory(started_at=ago(5))
    rule(name="off", threshold=0, is_active=False)
    assert fired() == set()


# -- anomalies -----------------------------------------------------------------------------------


def steady(windows: int, per_window, *, minutes: int = 60, **fields) -> None:
    """``per_window(k)`` executions in each of the ``windows`` windows before the current one."""
    for index in range(1, windows + 1):
        for n in range(per_window(index)):
            ExecutionFactory(started_at=ago(minutes * index + 1 + n % 50), **fields)


def test_an_anomaly_rule_fires_on_a_spike_and_not_on_steady_traffic():
    steady(24, lambda index: 10 + index % 3)
    rule(name="executions", anomaly=True, threshold=None)
    rule(name="cost", metric="cost", anomaly=True, threshold=None)
    ExecutionFactory.create_batch(11, started_at=ago(5))  # as many as usual
    assert fired() == set()
    ExecutionFactory.create_batch(19, started_at=ago(5))  # 30
    assert fired() == {"executions", "cost"}
    event = AlertEvent.objects.get(rule__name="executions")
    assert event.value == 30 and event.baseline == pytest.approx(11.0)
    assert event.payload["sd"] == pytest.approx(0.8341, abs=1e-4)  # the sample sd of 10, 11, 12 × 8
    assert event.threshold == pytest.approx(11 + 3 * event.payload["sd"])


def test_an_anomaly_rule_fires_on_a_drop():
    steady(24, lambda index: 20 + index % 2)
    rule(name="quiet", anomaly=True, threshold=None, sensitivity=2)
    ExecutionFactory.create_batch(5, started_at=ago(5))
    assert fired() == {"quiet"}


def test_flat_traffic_fires_only_on_a_different_value():
    steady(24, lambda index: 4)
    rule(name="flat", anomaly=True, threshold=None, cooldown_minutes=0)
    ExecutionFactory.create_batch(4, started_at=ago(5))
    assert fired() == set()
    ExecutionFactory(started_at=ago(5))
    assert fired() == {"flat"}


def test_an_anomaly_needs_twelve_earlier_windows_with_data():
    steady(11, lambda index: 10)
    rule(name="young", anomaly=True, threshold=None)
    rule(name="young error rate", metric="error_rate", anomaly=True, threshold=None)
    ExecutionFactory.create_batch(50, started_at=ago(5), failed=True)
    assert fired() == set()
    steady(1, lambda index: 10, minutes=60 * 12)  # the twelfth
    assert fired() == {"young", "young error rate"}


def test_error_rate_anomalies_average_only_the_windows_with_executions():
    steady(24, lambda index: 0 if index % 2 else 9)  # 12 windows with data
    steady(24, lambda index: 0 if index % 2 else 1, failed=True)
    rule(name="errors", metric="error_rate", anomaly=True, threshold=None)
    ExecutionFactory.create_batch(9, started_at=ago(5))
    ExecutionFactory(started_at=ago(5), failed=True)
    assert fired() == set()  # 10% as always (sd 0)
    ExecutionFactory(started_at=ago(5), failed=True)
    assert fired() == {"errors"}
    assert AlertEvent.objects.get().baseline == 10.0


# -- rules refused on save ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"threshold": None}, "threshold"),
        ({"metric": "budget_percent", "threshold": 80}, "budget"),
        ({"metric": "budget_percent", "threshold": 80, "agent_type": "A", "with_budget": True}, "agent_type"),
        ({"metric": "budget_percent", "anomaly": True, "with_budget": True}, "anomaly"),
        ({"metric": "score_mean"}, "score_name"),
        ({"metric": "cost", "score_name": "helpfulness"}, "score_name"),
        ({"metric": "cost", "with_budget": True}, "budget"),
        ({"pause_agent": True}, "pause_agent"),
        ({"anomaly": True, "sensitivity": 0}, "sensitivity"),
        ({"window_minutes": 0}, "window_minutes"),
    ],
)
def test_rules_that_make_no_sense_are_refused_on_save(fields, field):
    fields = dict(fields)
    if fields.pop("with_budget", False):
        fields["budget"] = BudgetFactory()
    with pytest.raises(ValidationError) as raised:
        rule(**fields)
    assert field in raised.value.message_dict
    assert not AlertRule.objects.exists()


# -- the task and the command --------------------------------------------------------------------------


def test_the_command_prints_each_firing_and_a_summary():
    ExecutionFactory.create_batch(2, started_at=ago(5))
    rule(name="busy", threshold=1)
    rule(name="quiet", threshold=5)
    out = StringIO()
    call_command("evaluate_alerts", "--now", NOW.isoformat(), stdout=out)
    assert out.getvalue().splitlines() == [
        "Fired busy: executions 2 above 1 over 60 min",
        f"Evaluated 2 active rules at {NOW.isoformat()}: 1 fired.",
    ]
    assert AlertEvent.objects.get().payload["summary"] == "executions 2 above 1 over 60 min"


def test_the_command_dry_run_records_nothing():
    ExecutionFactory.create_batch(2, started_at=ago(5))
    rule(name="busy", threshold=1)
    out = StringIO()
    call_command("evaluate_alerts", "--dry-run", "--now", NOW.isoformat(), stdout=out)
    assert out.getvalue().splitlines() == [
        "Would fire busy: executions 2 above 1 over 60 min",
        f"Evaluated 1 active rules at {NOW.isoformat()}: 1 would fire.",
    ]
    assert not AlertEvent.objects.exists() and AlertRule.objects.get().last_fired_at is None


def test_the_command_refuses_a_bad_moment():
    with pytest.raises(CommandError, match="--now must be an ISO 8601 date and time, not 'yesterday'"):
        call_command("evaluate_alerts", "--now", "yesterday")
    assert not AlertEvent.objects.exists()


def test_the_task_evaluates_now_through_celery():
    ExecutionFactory(started_at=timezone.now() - dt.timedelta(minutes=1))
    rule(name="busy", threshold=0)
    assert tasks.evaluate_alerts.delay().get() == 1
    assert AlertEvent.objects.get().rule.name == "busy"
    schedule = tasks.beat_schedule()["llm_agents.evaluate_alerts"]
    assert schedule == {"task": "llm_agents.tasks.evaluate_alerts", "schedule": 60.0}


# -- the rollups answer as the rows ------------------------------------------------------------------


def test_rules_measure_the_same_from_the_rollups_as_from_the_rows():
    rng = random.Random(20)
    for _ in range(1500):
        failed = rng.random() < 0.1
        model = rng.choice(["m1", "m2"])
        execution = ExecutionFactory(
            started_at=ago(rng.uniform(-30, 26 * 60)),
            agent_type=rng.choice(["A", "B", "C"]), model_id=model,
            chosen_model_id=model if rng.random() < 0.9 else "m3",
            tenant_id=rng.choice(["t1", "t2", "", None]),
            status="error" if failed else rng.choice(["success"] * 30 + ["running"]),
            duration_ms=int(rng.lognormvariate(7, 0.8)),
            total_cost=Decimal(rng.randint(1, 10**6)) / 10**8,
        )  # fmt: skip
        if rng.random() < 0.2:
            score(execution, rng.random())
    rules = []
    for index, (metric, minutes, filters) in enumerate(
        (metric, minutes, filters)
        for metric in ("cost", "executions", "error_rate", "p95_latency", "score_mean")
        for minutes in (5, 15, 60, 61)
        for filters in (
            {},
            {"agent_type": "A"},
            {"model_id": "m3"},
            {"tenant_id": "t1"},
            {"model_id": "m1", "tenant_id": "t2"},
        )  # fmt: skip
    ):
        extra = {"score_name": "helpfulness"} if metric == "score_mean" else {}
        rules.append(rule(name=f"r{index}", metric=metric, window_minutes=minutes, anomaly=True, threshold=None,
                          **filters, **extra))  # fmt: skip
    found = {}
    for rollups in (True, False):
        with override_settings(LLM_AGENTS={"ROLLUPS": rollups}):
            found[rollups] = {}
            for minutes in (5, 15, 60, 61):
                group = [watched for watched in rules if watched.window_minutes == minutes]
                measures = evaluation.measure(group, minutes, NOW, "default")
                for watched in group:
                    for index in range(25):
                        found[rollups][watched.name, index] = measures.value(watched, index)
    assert found[True].keys() == found[False].keys()
    roots = list(Execution.objects.filter(parent=None, eval_run=None))
    scores: dict[object, list[float]] = {}
    for scored in Score.objects.filter(name="helpfulness"):
        scores.setdefault(scored.execution_id, []).append(scored.value)
    with_data = 0
    for key, (value, had_data) in found[False].items():
        exact = exact_value(next(r for r in rules if r.name == key[0]), key[1], roots, scores)
        assert had_data == (exact is not None), key
        if exact is None:
            continue
        with_data += 1
        metric = next(r for r in rules if r.name == key[0]).metric
        if metric == "p95_latency":
            assert value == pytest.approx(exact, rel=0.01), key
            assert found[True][key][0] == pytest.approx(exact, rel=0.01), key
        else:
            assert value == pytest.approx(exact, abs=1e-9), key
            assert found[True][key] == (value, had_data), key
    assert with_data > 1000


def exact_value(
    watched: AlertRule,
    index: int,
    roots: list[Execution],
    scores: dict[object, list[float]],
    at: dt.datetime = NOW,
) -> float | None:
    """The rule's metric in window ``index``, computed from the root executions one by one."""
    start = ago(watched.window_minutes * (index + 1), at=at)
    end = ago(watched.window_minutes * index, at=at)
    rows = [
        execution
        for execution in roots
        if start <= execution.started_at < end
        and (not watched.agent_type or execution.agent_type == watched.agent_type)
        and (not watched.model_id or (execution.chosen_model_id or execution.model_id) == watched.model_id)
        and (not watched.tenant_id or (execution.tenant_id or "") == watched.tenant_id)
    ]  # fmt: skip
    if watched.metric == "score_mean":
        values = [value for execution in rows for value in scores.get(execution.pk, [])]
        return round(sum(values) / len(values), 4) if values else None
    if not rows:
        return None
    if watched.metric == "executions":
        return len(rows)
    if watched.metric == "cost":
        return float(sum(execution.total_cost for execution in rows))
    if watched.metric == "error_rate":
        return round(100 * sum(e.status in ("error", "timeout") for e in rows) / len(rows), 2)
    durations = sorted(e.duration_ms for e in rows if e.duration_ms is not None)
    if not durations:
        return None
    position = (len(durations) - 1) * 0.95
    low = durations[math.floor(position)]
    high = durations[min(math.floor(position) + 1, len(durations) - 1)]
    return low + (high - low) * (position - math.floor(position))


@pytest.mark.parametrize("minutes", [60, 120])
def test_windows_on_whole_hours_read_the_rollups_alone_and_the_running_rows(minutes):
    at = NOW.replace(minute=0, second=0, microsecond=0)
    ExecutionFactory.create_batch(3, started_at=ago(minutes - 1, at=at), agent_type="A")
    ExecutionFactory(started_at=ago(1, at=at), agent_type="A", status="running")
    ExecutionFactory(started_at=ago(minutes * 2 - 1, at=at), agent_type="A")
    watched = rule(name="A", agent_type="A", window_minutes=minutes, anomaly=True, threshold=None)
    for rollups in (True, False):
        with override_settings(LLM_AGENTS={"ROLLUPS": rollups}):
            measures = evaluation.measure([watched], minutes, at, "default")
            assert [measures.value(watched, index) for index in range(3)] == [
                (4.0, True), (1.0, True), (0.0, False)
            ]  # fmt: skip


DAY_EDGE = NOW.replace(hour=0, minute=0, second=0, microsecond=0)


def test_long_windows_read_days_hours_and_rows_as_the_rows_do():
    """Windows ending at any minute of the hour and around the day's edges, of a day or more (whole
    days from the daily rollups, hours and rows added or taken away at their boundaries): the same
    figures as the rows, to the cent, the bucket and the execution still running."""
    rng = random.Random(21)
    nows = [
        DAY_EDGE,
        DAY_EDGE + dt.timedelta(microseconds=1),
        DAY_EDGE - dt.timedelta(minutes=1),
        DAY_EDGE + dt.timedelta(hours=12),
        DAY_EDGE + dt.timedelta(hours=12, minutes=30),
        DAY_EDGE - dt.timedelta(hours=11, minutes=31, seconds=5),
        NOW,
        NOW.replace(minute=30, second=0, microsecond=0),
        NOW.replace(minute=44),
    ]
    lengths = (60, 90, 1440, 1500, 2880)
    moments = [ago(rng.uniform(-60, 2880 * 25 + 60 * 24), at=DAY_EDGE) for _ in range(1200)]
    for at in nows[::2]:
        for minutes in lengths[::2]:
            for k in (0, 1, 12, 24, 25):
                boundary = ago(minutes * k, at=at)
                moments += [
                    boundary - dt.timedelta(microseconds=1),
                    boundary,
                    boundary + dt.timedelta(minutes=20),
                ]
    for moment in moments:
        failed = rng.random() < 0.1
        model = rng.choice(["m1", "m2"])
        ExecutionFactory(
            started_at=moment, agent_type=rng.choice(["A", "B"]), model_id=model,
            chosen_model_id=model if rng.random() < 0.9 else "m3", tenant_id=rng.choice(["t1", "", None]),
            status="error" if failed else rng.choice(["success"] * 20 + ["running"]),
            duration_ms=int(rng.lognormvariate(7, 0.8)), total_cost=Decimal(rng.randint(1, 10**6)) / 10**8,
        )  # fmt: skip
    rules = [
        rule(name=f"{metric} {filters} {anomaly}", metric=metric, anomaly=anomaly,
             threshold=None if anomaly else 1e12, **filters)
        for metric in ("cost", "executions", "error_rate", "p95_latency")
        for filters in ({}, {"agent_type": "A"}, {"model_id": "m3"}, {"tenant_id": "t1", "model_id": "m1"})
        for anomaly in (True, False)
    ]  # fmt: skip
    roots = sorted(Execution.objects.filter(parent=None, eval_run=None), key=lambda e: e.started_at)
    starts = [execution.started_at for execution in roots]
    compared = 0
    for at in nows:
        for minutes in lengths:
            for watched in rules:
                watched.window_minutes = minutes
            found = {}
            for rollups in (True, False):
                with override_settings(LLM_AGENTS={"ROLLUPS": rollups}):
                    measures = evaluation.measure(rules, minutes, at, "default")
                    found[rollups] = {
                        (w.name, i): measures.value(w, i)
                        for w in rules
                        for i in range(25 if w.anomaly else 1)
                    }
            assert found[True] == found[False], (at, minutes)
            for (name, index), (value, had_data) in found[True].items():
                watched = next(r for r in rules if r.name == name)
                low = bisect.bisect_left(starts, ago(minutes * (index + 1), at=at))
                high = bisect.bisect_left(starts, ago(minutes * index, at=at))
                exact = exact_value(watched, index, roots[low:high], {}, at=at)
                assert had_data == (exact is not None), (at, minutes, name, index)
                if exact is not None:
                    assert value == pytest.approx(
                        exact, rel=0.01 if watched.metric == "p95_latency" else 1e-12
                    )
                    compared += 1
    assert compared > 10_000
