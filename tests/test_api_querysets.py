"""The ExecutionQuerySet methods added for the API, against hand-computed figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from llm_agents.models import Execution
from tests.factories import ExecutionFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db


def make(cost: str, **fields):
    return ExecutionFactory(input_cost=Decimal(cost), output_cost=Decimal("0"), **fields)


@pytest.fixture
def rows():
    """Agent A: 3 runs (costs 1.00, 2.00, 0.50; one failed), agent B: 1 run (4.00), one nested run."""
    a1 = make("1.00", agent_type="A", model_id="m1", duration_ms=100, total_tokens=10, tenant_id="t1")
    make("2.00", agent_type="A", model_id="m1", duration_ms=300, total_tokens=20, tenant_id="t1", failed=True)
    make("0.50", agent_type="A", model_id="m2", duration_ms=200, total_tokens=30, tenant_id=None)
    make("4.00", agent_type="B", model_id="m2", duration_ms=1000, total_tokens=40, tenant_id="t2")
    make("9.00", agent_type="A", model_id="m1", duration_ms=9, total_tokens=99, parent=a1)  # not a root
    return a1


def test_stats_by_agent_hand_computed(rows, django_assert_num_queries):
    with django_assert_num_queries(1):
        result = Execution.objects.stats_by_agent()
    assert result == [
        {
            "agent_type": "B",
            "total": 1,
            "successful": 1,
            "failed": 0,
            "success_rate": 100.0,
            "avg_cost": Decimal("4.00000000"),
            "total_cost": Decimal("4.00"),
            "avg_duration_ms": 1000.0,
            "total_tokens": 40,
        },
        {
            "agent_type": "A",
            "total": 3,
            "successful": 2,
            "failed": 1,
            "success_rate": 66.67,
            "avg_cost": Decimal("1.16666667"),
            "total_cost": Decimal("3.50"),
            "avg_duration_ms": 200.0,
            "total_tokens": 60,
        },
    ]


def test_stats_by_agent_matches_stats_for(rows):
    for row in Execution.objects.stats_by_agent():
        expected = Execution.objects.stats_for(row.pop("agent_type"), period="today")
        assert row == expected


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("model", [("m2", "4.50", 2, 70), ("m1", "3.00", 2, 30)]),
        ("agent", [("B", "4.00", 1, 40), ("A", "3.50", 3, 60)]),
        ("tenant", [("t2", "4.00", 1, 40), ("t1", "3.00", 2, 30), (None, "0.50", 1, 30)]),
    ],
)
def test_cost_summary_hand_computed(rows, group_by, expected, django_assert_num_queries):
    with django_assert_num_queries(1):
        result = Execution.objects.cost_summary(group_by)
    assert [(r["key"], r["total_cost"], r["executions"], r["total_tokens"]) for r in result] == [
        (key, Decimal(cost), n, tokens) for key, cost, n, tokens in expected
    ]


def test_cost_summary_by_local_day(paris):
    today = local_today()
    yesterday = today - dt.timedelta(days=1)
    make("1.00", started_at=local_datetime(today, 0, 30))  # 23:30 UTC the day before: today in Paris
    make("2.00", started_at=local_datetime(yesterday, 23, 59))
    make("3.00", started_at=local_datetime(yesterday, 0, 1))
    result = Execution.objects.cost_summary("day")
    assert [(r["key"], r["total_cost"], r["executions"]) for r in result] == [
        (yesterday, Decimal("5.00"), 2),
        (today, Decimal("1.00"), 1),
    ]


def test_cost_summary_unknown_group():
    with pytest.raises(ValueError, match="valid groups are: model, agent, tenant, day"):
        Execution.objects.cost_summary("week")


def test_compare_models_hand_computed(rows, django_assert_num_queries):
    make("1.00", agent_type="C", model_id="m1", duration_ms=500, total_tokens=5)
    with django_assert_num_queries(2):  # the rollups: spend by model, then the latency histograms
        result = Execution.objects.compare_models()
    with override_settings(LLM_AGENTS={"ROLLUPS": False}):
        with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
            exact = Execution.objects.compare_models()
    # m1 durations 100, 300, 500: p95 position 0.95 * 2 = 1.9 -> 300 + 0.9 * 200 = 480.
    # m2 durations 200, 1000: position 0.95 -> 200 + 0.95 * 800 = 960.
    # From the rollups, the p95 is within 1% (SPEC section 20); everything else is the same.
    assert [row.pop("p95_duration_ms") for row in result] == [pytest.approx(480.0, rel=0.01),
                                                              pytest.approx(960.0, rel=0.01)]  # fmt: skip
    assert [row.pop("p95_duration_ms") for row in exact] == [480.0, 960.0]
    assert (
        result
        == exact
        == [
            {
                "model_id": "m1",
                "executions": 3,
                "success_rate": 66.67,
                "avg_duration_ms": 300.0,
                "avg_cost": Decimal("1.33333333"),
                "total_tokens": 35,
            },
            {
                "model_id": "m2",
                "executions": 2,
                "success_rate": 100.0,
                "avg_duration_ms": 600.0,
                "avg_cost": Decimal("2.25000000"),
                "total_tokens": 70,
            },
        ]
    )


def test_compare_models_p95_equals_percentiles_per_model(rows):
    durations = [7, 13, 13, 21, 40, 41, 90, 1000, 3, 55, 56]
    for duration in durations:
        make("0.01", model_id="m3", duration_ms=duration)
    make("0.01", model_id="m3", duration_ms=None)
    by_model = {row["model_id"]: row for row in Execution.objects.compare_models()}
    for model_id, row in by_model.items():
        # A filter on the model asked for reads the rows (exact); compare_models the rollups (within 1%).
        exact = Execution.objects.by_model(model_id).percentiles(percents=(95,))["p95"]
        assert row["p95_duration_ms"] == pytest.approx(exact, rel=0.01)


def test_compare_models_model_without_durations():
    make("0.01", model_id="m4", duration_ms=None, started_at=timezone.now())
    assert Execution.objects.compare_models()[0]["p95_duration_ms"] is None
    assert Execution.objects.none().compare_models() == []
