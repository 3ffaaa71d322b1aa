"""The aggregate endpoints: their numbers are the QuerySet methods' (serialized), for the period."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from llm_agents.analytics import overview
from llm_agents.api import serializers as s
from llm_agents.models import Execution
from llm_agents.periods import custom_period, resolve_period
from tests.api_support import API
from tests.factories import ExecutionFactory, local_today

pytestmark = pytest.mark.django_db

AUTH_QUERIES = 2
POSTGRES = connection.vendor == "postgresql"


def get(client, path, **params):
    return client.get(API + path, params)


@pytest.fixture
def data():
    """Executions inside the last 7 days, one 10 days old, one 40 days old, and a nested one."""
    now = timezone.now()
    rows = [
        ExecutionFactory(agent_type="A", model_id="m1", duration_ms=100, input_cost=Decimal("1.00")),
        ExecutionFactory(
            agent_type="A", model_id="m1", duration_ms=300, input_cost=Decimal("2.00"), failed=True
        ),
        ExecutionFactory(
            agent_type="A",
            agent_version="2.0",
            model_id="m2",
            duration_ms=700,
            status=Execution.Status.TIMEOUT,
            error_class="ProviderTimeoutError",
            started_at=now - dt.timedelta(days=2),
        ),
        ExecutionFactory(agent_type="B", model_id="m2", duration_ms=50, tenant_id="t1"),
        ExecutionFactory(agent_type="B", model_id="m1", started_at=now - dt.timedelta(days=10)),
        ExecutionFactory(
            agent_type="C", started_at=now - dt.timedelta(days=40), error_class="RateLimitError"
        ),
    ]
    ExecutionFactory(agent_type="A", parent=rows[0], input_cost=Decimal("5"))
    return rows


def test_overview_equals_analytics_overview(staff_client, data, django_assert_num_queries):
    # From the rollups: the summary, the latency histograms, the forecast.
    with django_assert_num_queries(AUTH_QUERIES + 3):
        response = get(staff_client, "overview/")
    assert response.status_code == 200
    payload = response.json()
    assert list(payload) == [
        "period",
        "total_executions",
        "successful",
        "failed",
        "success_rate",
        "avg_duration_ms",
        "p50_duration_ms",
        "p95_duration_ms",
        "p99_duration_ms",
        "total_cost",
        "projected_monthly_cost",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "active_agents",
    ]
    assert payload == s.OverviewSerializer(overview(Execution.objects.all(), resolve_period("7d"))).data
    assert payload["period"] == "7d"
    assert payload["total_executions"] == 4 and payload["failed"] == 2 and payload["success_rate"] == 50.0
    assert payload["total_cost"] == "3.00108000"


@pytest.mark.parametrize("period", ["today", "30d", "90d", "this_month", "24h"])
def test_overview_periods(staff_client, data, period):
    payload = get(staff_client, "overview/", period=period).json()
    assert payload == s.OverviewSerializer(overview(Execution.objects.all(), resolve_period(period))).data


def test_overview_custom_dates(staff_client, data):
    today = local_today()
    first = today - dt.timedelta(days=12)
    payload = get(staff_client, "overview/", start_date=first.isoformat(), end_date=today.isoformat()).json()
    assert payload["period"] == "custom"
    assert (
        payload == s.OverviewSerializer(overview(Execution.objects.all(), custom_period(first, today))).data
    )
    assert payload["total_executions"] == 5


def test_agents_list_and_stats(staff_client, data, django_assert_num_queries):
    with django_assert_num_queries(AUTH_QUERIES + 1):
        rows = get(staff_client, "agents/").json()
    assert rows == s.AgentStatsSerializer(Execution.objects.last_n_days(7).stats_by_agent(), many=True).data
    assert [row["agent_type"] for row in rows] == ["A", "B"]
    with django_assert_num_queries(AUTH_QUERIES + 1):
        stats = get(staff_client, "agents/A/stats/").json()
    expected = Execution.objects.stats_for("A", period="7d")
    assert stats == s.AgentStatsSerializer({"agent_type": "A", **expected}).data
    assert stats["total"] == 3 and stats["failed"] == 2
    assert get(staff_client, "agents/B/stats/", period="30d").json()["total"] == 2
    assert get(staff_client, "agents/Nobody/stats/").json()["total"] == 0


@pytest.mark.parametrize("group_by", ["model", "agent", "tenant", "day"])
def test_cost_summary(staff_client, data, group_by, django_assert_num_queries):
    # One query: by model, the rollups and the spend by model of the rows (partial hours, running).
    with django_assert_num_queries(AUTH_QUERIES + 1):
        rows = get(staff_client, "costs/summary/", group_by=group_by, period="30d").json()
    expected = Execution.objects.for_period("30d").cost_summary(group_by)
    if group_by == "day":
        expected = [{**row, "key": row["key"].isoformat()} for row in expected]
    assert rows == s.CostSummaryRowSerializer(expected, many=True).data
    assert sum(row["executions"] for row in rows) == 5
    assert set(rows[0]) == {"key", "total_cost", "executions", "total_tokens"}


def test_cost_summary_defaults_to_model_and_7d(staff_client, data):
    rows = get(staff_client, "costs/summary/").json()
    assert [row["key"] for row in rows] == ["m1", "m2"]
    assert sum(row["executions"] for row in rows) == 4


def test_cost_forecast(staff_client, data, django_assert_num_queries):
    with django_assert_num_queries(AUTH_QUERIES + 1):
        payload = get(staff_client, "costs/forecast/").json()
    assert payload == s.CostForecastSerializer(Execution.objects.cost_forecast()).data


def test_trends(staff_client, data, django_assert_num_queries):
    with django_assert_num_queries(AUTH_QUERIES + 1):
        rows = get(staff_client, "trends/", days=14).json()
    assert rows == s.TrendRowSerializer(Execution.objects.trend_analysis(days=14), many=True).data
    assert len(rows) == 14 and rows[-1]["date"] == local_today().isoformat()
    rows = get(staff_client, "trends/", agent_type="B").json()
    assert rows == s.TrendRowSerializer(Execution.objects.trend_analysis(agent_type="B"), many=True).data
    assert len(rows) == 7 and sum(row["executions"] for row in rows) == 1


def test_model_comparison(staff_client, data, django_assert_num_queries):
    # The spend by model, then the latency histograms: rollups and rows in one query each.
    with django_assert_num_queries(AUTH_QUERIES + 2):
        rows = get(staff_client, "comparison/models/").json()
    assert (
        rows
        == s.ModelComparisonSerializer(Execution.objects.for_period("7d").compare_models(), many=True).data
    )
    assert set(rows[0]) == {
        "model_id",
        "executions",
        "success_rate",
        "avg_duration_ms",
        "p95_duration_ms",
        "avg_cost",
        "total_tokens",
    }
    assert [(row["model_id"], row["executions"], row["p95_duration_ms"]) for row in rows] == [
        ("m1", 2, pytest.approx(290.0, rel=0.01)),
        ("m2", 2, pytest.approx(667.5, rel=0.01)),
    ]


def test_version_comparison(staff_client, data, django_assert_num_queries):
    with django_assert_num_queries(AUTH_QUERIES + 2):  # the versions' rows, their scores
        payload = get(staff_client, "comparison/versions/", agent_type="A", versions="1.0,2.0,3.0").json()
    expected = Execution.objects.compare_versions("A", "1.0", "2.0", "3.0", period="7d")
    assert payload == {version: s.VersionStatsSerializer(row).data for version, row in expected.items()}
    assert list(payload) == ["1.0", "2.0", "3.0"]
    assert payload["1.0"]["total"] == 2 and payload["2.0"]["success_rate"] == 0.0


def test_errors(staff_client, data, django_assert_num_queries):
    with django_assert_num_queries(AUTH_QUERIES + 2):
        payload = get(staff_client, "errors/").json()
    assert payload == s.ErrorAnalysisSerializer(Execution.objects.for_period("7d").error_analysis()).data
    assert payload["categories"]["timeout"] == 1 and sum(payload["categories"].values()) == 2
    assert [row["id"] for row in payload["recent"]] == [str(data[1].id), str(data[2].id)]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("overview/", {"period": "month"}, "period"),
        ("overview/", {"start_date": "2024-01-01"}, "end_date"),
        ("overview/", {"end_date": "x"}, "end_date"),
        ("agents/", {"period": "1y"}, "period"),
        ("agents/A/stats/", {"period": "1y"}, "period"),
        ("costs/summary/", {"group_by": "week"}, "group_by"),
        ("costs/summary/", {"period": "bad"}, "period"),
        ("trends/", {"days": "0"}, "days"),
        ("trends/", {"days": "367"}, "days"),
        ("trends/", {"days": "many"}, "days"),
        ("comparison/models/", {"period": "bad"}, "period"),
        ("comparison/versions/", {"versions": "1.0"}, "agent_type"),
        ("comparison/versions/", {"agent_type": "A"}, "versions"),
        ("comparison/versions/", {"agent_type": "A", "versions": ",,"}, "versions"),
        ("errors/", {"period": "bad"}, "period"),
        ("errors/", {"start_date": "2024-05-02", "end_date": "2024-05-01"}, "end_date"),
    ],
)
def test_bad_parameters_answer_400(staff_client, path, params, field):
    response = get(staff_client, path, **params)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_group_by_error_names_valid_groups(staff_client):
    message = get(staff_client, "costs/summary/", group_by="week").json()["group_by"][0]
    assert "model, agent, tenant, day" in message
