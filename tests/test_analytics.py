"""Analytics of ``Execution.objects``, checked against figures worked out by hand.

The data set (``day_of_work``), all today except the last row; costs are total_cost:

    #  agent        version  model        status   cost  duration  tokens
    1  SearchAgent  1        gpt-4o       success  0.50  100       1000
    2  SearchAgent  2        gpt-4o       success  0.25  200        500
    3  SearchAgent  2        gpt-4o-mini  error    0.05  350        200
    4  WriterAgent  1        gpt-4o-mini  timeout  0.10  400        300
    5  WriterAgent  1        gpt-4o-mini  success  0.30  150        600
    c  SearchAgent  1        gpt-4o       success  9.00  9000     90000   child of #1: never counted
    y  WriterAgent  1        gpt-4o       success  2.00  500       4000   yesterday 23:00
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from llm_agents.models import Execution

from .factories import ExecutionFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db

PERIOD_NAMES = (
    "today",
    "yesterday",
    "this_week",
    "this_month",
    "last_7_days",
    "last_30_days",
    "24h",
    "7d",
    "30d",
    "90d",
)


def execution(cost: str, **fields) -> Execution:
    """An execution whose total_cost is ``cost`` (split evenly between input and output)."""
    half = Decimal(cost) / 2
    return ExecutionFactory(input_cost=half, output_cost=half, **fields)


def tokens(total: int) -> dict[str, int]:
    return {"input_tokens": total - total // 4, "output_tokens": total // 4}


@pytest.fixture
def day_of_work():
    today = local_today()

    def at(second: int) -> dt.datetime:
        return local_datetime(today, 0, 0, second)

    rows = {
        1: execution(
            "0.50",
            agent_type="SearchAgent",
            agent_version="1",
            model_id="gpt-4o",
            status="success",
            duration_ms=100,
            started_at=at(1),
            **tokens(1000),
        ),
        2: execution(
            "0.25",
            agent_type="SearchAgent",
            agent_version="2",
            model_id="gpt-4o",
            status="success",
            duration_ms=200,
            started_at=at(2),
            **tokens(500),
        ),
        3: execution(
            "0.05",
            agent_type="SearchAgent",
            agent_version="2",
            model_id="gpt-4o-mini",
            status="error",
            duration_ms=350,
            started_at=at(3),
            error_class="ProviderError",
            error_message="boom",
            **tokens(200),
        ),
        4: execution(
            "0.10",
            agent_type="WriterAgent",
            agent_version="1",
            model_id="gpt-4o-mini",
            status="timeout",
            duration_ms=400,
            started_at=at(4),
            **tokens(300),
        ),
        5: execution(
            "0.30",
            agent_type="WriterAgent",
            agent_version="1",
            model_id="gpt-4o-mini",
            status="success",
            duration_ms=150,
            started_at=at(5),
            **tokens(600),
        ),
    }
    rows["child"] = execution(
        "9.00",
        agent_type="SearchAgent",
        agent_version="1",
        model_id="gpt-4o",
        status="success",
        duration_ms=9000,
        started_at=at(6),
        parent=rows[1],
        **tokens(90000),
    )
    rows["yesterday"] = execution(
        "2.00",
        agent_type="WriterAgent",
        agent_version="1",
        model_id="gpt-4o",
        status="success",
        duration_ms=500,
        started_at=local_datetime(today, 0, 0, 0) - dt.timedelta(hours=1),
        **tokens(4000),
    )
    return rows


# -- summary and daily_report -------------------------------------------------------------------


def test_summary(day_of_work):
    summary = Execution.objects.today().summary()
    assert summary["total"] == 5
    assert summary["successful"] == 3
    assert summary["failed"] == 2
    assert summary["success_rate"] == 60.0
    assert summary["total_cost"] == Decimal("1.20")
    assert summary["avg_cost"] == Decimal("0.24")
    assert summary["avg_duration_ms"] == 240.0
    assert summary["total_tokens"] == 2600
    assert summary["input_tokens"] == 750 + 375 + 150 + 225 + 450
    assert summary["output_tokens"] == 250 + 125 + 50 + 75 + 150
    assert summary["active_agents"] == 2


def test_summary_of_nothing_is_zeros():
    summary = Execution.objects.summary()
    assert summary["total"] == 0
    assert summary["success_rate"] == 0.0
    assert summary["total_cost"] == Decimal("0")
    assert summary["avg_cost"] == Decimal("0")
    assert summary["avg_duration_ms"] == 0.0
    assert summary["total_tokens"] == 0


def test_daily_report_defaults_to_today(day_of_work):
    assert Execution.objects.daily_report() == {
        "date": local_today(),
        "total_executions": 5,
        "successful": 3,
        "failed": 2,
        "success_rate": 60.0,
        "total_cost": Decimal("1.20"),
        "avg_duration_ms": 240.0,
        "total_tokens": 2600,
    }


def test_daily_report_for_another_day(day_of_work):
    yesterday = local_today() - dt.timedelta(days=1)
    assert Execution.objects.daily_report(yesterday) == {
        "date": yesterday,
        "total_executions": 1,
        "successful": 1,
        "failed": 0,
        "success_rate": 100.0,
        "total_cost": Decimal("2.00"),
        "avg_duration_ms": 500.0,
        "total_tokens": 4000,
    }


def test_daily_report_on_a_scope(day_of_work):
    report = Execution.objects.by_agent("SearchAgent").daily_report()
    assert report["total_executions"] == 3
    assert report["successful"] == 2
    assert report["failed"] == 1
    assert report["success_rate"] == 66.67
    assert report["total_cost"] == Decimal("0.80")
    assert report["avg_duration_ms"] == 216.67
    assert report["total_tokens"] == 1700


def test_daily_report_of_an_empty_day():
    report = Execution.objects.daily_report(dt.date(2020, 1, 1))
    assert report["total_executions"] == 0
    assert report["success_rate"] == 0.0
    assert report["total_cost"] == Decimal("0")


# -- cost_by_agent / cost_by_model --------------------------------------------------------------


def test_cost_by_agent_costliest_first(day_of_work):
    assert Execution.objects.cost_by_agent("today") == [
        {"agent_type": "SearchAgent", "total_cost": Decimal("0.80"), "executions": 3},
        {"agent_type": "WriterAgent", "total_cost": Decimal("0.40"), "executions": 2},
    ]
    assert Execution.objects.cost_by_agent("last_7_days") == [
        {"agent_type": "WriterAgent", "total_cost": Decimal("2.40"), "executions": 3},
        {"agent_type": "SearchAgent", "total_cost": Decimal("0.80"), "executions": 3},
    ]


def test_cost_by_agent_defaults_to_this_week():
    today = local_today()
    monday = today - dt.timedelta(days=today.weekday())
    execution("1.00", agent_type="SearchAgent", started_at=local_datetime(monday, 0, 0, 0))
    execution("4.00", agent_type="SearchAgent", started_at=local_datetime(monday) - dt.timedelta(seconds=1))
    assert Execution.objects.cost_by_agent() == [
        {"agent_type": "SearchAgent", "total_cost": Decimal("1.00"), "executions": 1},
    ]


def test_cost_by_model_costliest_first(day_of_work):
    assert Execution.objects.cost_by_model() == [
        {"model_id": "gpt-4o", "total_cost": Decimal("0.75"), "executions": 2},
        {"model_id": "gpt-4o-mini", "total_cost": Decimal("0.45"), "executions": 3},
    ]
    assert Execution.objects.by_agent("WriterAgent").cost_by_model("7d") == [
        {"model_id": "gpt-4o", "total_cost": Decimal("2.00"), "executions": 1},
        {"model_id": "gpt-4o-mini", "total_cost": Decimal("0.40"), "executions": 2},
    ]


# -- stats_for ----------------------------------------------------------------------------------


def test_stats_for(day_of_work):
    assert Execution.objects.stats_for("SearchAgent") == {
        "total": 3,
        "successful": 2,
        "failed": 1,
        "success_rate": 66.67,
        "avg_cost": Decimal("0.26666667"),
        "total_cost": Decimal("0.80"),
        "avg_duration_ms": 216.67,
        "total_tokens": 1700,
    }
    writer = Execution.objects.stats_for("WriterAgent", period="today")
    assert writer == {
        "total": 2,
        "successful": 1,
        "failed": 1,
        "success_rate": 50.0,
        "avg_cost": Decimal("0.20"),
        "total_cost": Decimal("0.40"),
        "avg_duration_ms": 275.0,
        "total_tokens": 900,
    }


def test_stats_for_over_a_rolling_period(day_of_work):
    writer = Execution.objects.stats_for("WriterAgent", period="7d")
    assert writer["total"] == 3
    assert writer["successful"] == 2
    assert writer["success_rate"] == 66.67
    assert writer["total_cost"] == Decimal("2.40")
    assert writer["avg_cost"] == Decimal("0.80")
    assert writer["avg_duration_ms"] == 350.0


def test_stats_for_an_agent_with_no_runs():
    stats = Execution.objects.stats_for("GhostAgent")
    assert stats["total"] == 0
    assert stats["success_rate"] == 0.0
    assert stats["avg_cost"] == Decimal("0")
    assert stats["total_cost"] == Decimal("0")


# -- trend_analysis -----------------------------------------------------------------------------


def test_trend_analysis_zero_fills_oldest_first_ending_today(day_of_work):
    today = local_today()
    assert Execution.objects.trend_analysis(days=3) == [
        {"date": today - dt.timedelta(days=2), "executions": 0, "cost": Decimal("0"), "avg_duration_ms": 0.0},
        {
            "date": today - dt.timedelta(days=1),
            "executions": 1,
            "cost": Decimal("2.00"),
            "avg_duration_ms": 500.0,
        },
        {"date": today, "executions": 5, "cost": Decimal("1.20"), "avg_duration_ms": 240.0},
    ]


def test_trend_analysis_for_one_agent(day_of_work):
    today = local_today()
    assert Execution.objects.trend_analysis("SearchAgent", days=2) == [
        {"date": today - dt.timedelta(days=1), "executions": 0, "cost": Decimal("0"), "avg_duration_ms": 0.0},
        {"date": today, "executions": 3, "cost": Decimal("0.80"), "avg_duration_ms": 216.67},
    ]


def test_trend_analysis_defaults_to_seven_days():
    rows = Execution.objects.trend_analysis()
    today = local_today()
    assert [row["date"] for row in rows] == [today - dt.timedelta(days=n) for n in range(6, -1, -1)]
    assert all(row["executions"] == 0 for row in rows)


def test_trend_analysis_days_are_local_days(paris):
    today = local_today()
    execution("1.00", started_at=local_datetime(today, 0, 0, 0), duration_ms=100)
    execution("3.00", started_at=local_datetime(today, 0, 0, 0) - dt.timedelta(seconds=1), duration_ms=300)
    assert Execution.objects.trend_analysis(days=2) == [
        {
            "date": today - dt.timedelta(days=1),
            "executions": 1,
            "cost": Decimal("3.00"),
            "avg_duration_ms": 300.0,
        },
        {"date": today, "executions": 1, "cost": Decimal("1.00"), "avg_duration_ms": 100.0},
    ]


@pytest.mark.parametrize("days", [0, -2, 1.5])
def test_trend_analysis_rejects_bad_days(days):
    with pytest.raises(ValueError):
        Execution.objects.trend_analysis(days=days)


# -- compare_versions ---------------------------------------------------------------------------


def test_compare_versions(day_of_work):
    assert Execution.objects.compare_versions("SearchAgent", "1", "2", "3", period="today") == {
        "1": {"total": 1, "success_rate": 100.0, "avg_cost": Decimal("0.50"), "scores": {}},
        "2": {"total": 2, "success_rate": 50.0, "avg_cost": Decimal("0.15"), "scores": {}},
        "3": {"total": 0, "success_rate": 0.0, "avg_cost": Decimal("0"), "scores": {}},
    }


def test_compare_versions_rounds_rates():
    today = local_today()
    for second, status in enumerate(["success", "success", "error"]):
        execution(
            "0.10",
            agent_type="SearchAgent",
            agent_version="3",
            status=status,
            started_at=local_datetime(today, 0, 0, second),
        )
    execution("0.20", agent_type="WriterAgent", agent_version="3", started_at=local_datetime(today))
    assert Execution.objects.compare_versions("SearchAgent", "3") == {
        "3": {"total": 3, "success_rate": 66.67, "avg_cost": Decimal("0.10"), "scores": {}},
    }


def test_compare_versions_accepts_numbers_for_versions():
    today = local_today()
    execution("0.40", agent_type="SearchAgent", agent_version="2", started_at=local_datetime(today))
    assert Execution.objects.compare_versions("SearchAgent", 2, 3) == {
        2: {"total": 1, "success_rate": 100.0, "avg_cost": Decimal("0.40"), "scores": {}},
        3: {"total": 0, "success_rate": 0.0, "avg_cost": Decimal("0"), "scores": {}},
    }


# -- percentiles --------------------------------------------------------------------------------


def within_one_percent(found: dict, exact: dict) -> bool:
    """Percentiles from the latency rollups are within 1% of the exact ones (SPEC section 20)."""
    return found.keys() == exact.keys() and all(
        found[key] == pytest.approx(exact[key], rel=0.01, abs=0) for key in exact
    )


def test_percentiles_interpolate_linearly():
    for duration in (400, 100, 300, 200):
        ExecutionFactory(duration_ms=duration)
    exact = ({"p50": 250.0, "p95": 385.0, "p99": 397.0}, {"p0": 100.0, "p25": 175.0, "p100": 400.0})
    with override_settings(LLM_AGENTS={"ROLLUPS": False}):  # the rows: percentile_cont's own answers
        assert Execution.objects.percentiles(percents=(50, 95, 99)) == exact[0]
        assert Execution.objects.percentiles(percents=(0, 25, 100)) == exact[1]
    assert within_one_percent(Execution.objects.percentiles(percents=(50, 95, 99)), exact[0])
    assert within_one_percent(Execution.objects.percentiles(percents=(0, 25, 100)), exact[1])


def test_percentiles_of_the_data_set(day_of_work):
    # Roots only: today [100, 150, 200, 350, 400]; with yesterday's 500 for the whole table.
    today, everything = {"p50": 200.0, "p95": 390.0, "p99": 398.0}, {"p50": 275.0, "p95": 475.0, "p99": 495.0}
    with override_settings(LLM_AGENTS={"ROLLUPS": False}):
        assert Execution.objects.today().percentiles() == today
        assert Execution.objects.percentiles() == everything
    assert within_one_percent(Execution.objects.today().percentiles(), today)
    assert within_one_percent(Execution.objects.percentiles(), everything)


def test_percentiles_of_another_field(day_of_work):
    # total_tokens of today's roots: [200, 300, 500, 600, 1000]
    assert Execution.objects.today().percentiles("total_tokens", percents=(50, 90)) == {
        "p50": 500.0,
        "p90": 840.0,
    }
    # total_cost of today's roots: [0.05, 0.10, 0.25, 0.30, 0.50]
    assert Execution.objects.today().percentiles("total_cost", percents=(50, 75)) == {
        "p50": 0.25,
        "p75": 0.3,
    }


def test_percentiles_skip_rows_without_a_value():
    ExecutionFactory(duration_ms=None)
    ExecutionFactory(duration_ms=10)
    ExecutionFactory(duration_ms=30)
    assert Execution.objects.percentiles(percents=(50,)) == {"p50": 20.0}


def test_percentiles_of_nothing_are_none():
    assert Execution.objects.percentiles() == {"p50": None, "p95": None, "p99": None}


def test_overview_gives_the_summary_and_the_percentiles_of_the_period(day_of_work):
    """analytics.overview() (the API's overview/ and the dashboard's tiles) reads the summary and
    the duration percentiles in one query on PostgreSQL: the figures are those of the two methods."""
    from llm_agents.analytics import overview
    from llm_agents.periods import resolve_period

    ExecutionFactory(duration_ms=None)  # counted by the summary, skipped by the percentiles
    period = resolve_period("today")
    figures = overview(Execution.objects.all(), period)
    today = Execution.objects.for_period(period)
    summary, latency = today.summary(), today.percentiles()
    assert within_one_percent(latency, {"p50": 200.0, "p95": 390.0, "p99": 398.0})
    assert (figures["p50_duration_ms"], figures["p95_duration_ms"], figures["p99_duration_ms"]) == (
        latency["p50"], latency["p95"], latency["p99"])  # fmt: skip
    assert (figures["total_executions"], figures["total_cost"], figures["avg_duration_ms"]) == (
        summary["total"], summary["total_cost"], summary["avg_duration_ms"])  # fmt: skip
    assert figures["projected_monthly_cost"] == Execution.objects.cost_forecast()["projected_month_total"]
    assert overview(Execution.objects.all(), period, forecast=False)["projected_monthly_cost"] is None


def test_percentiles_of_a_single_row():
    ExecutionFactory(duration_ms=42)
    assert Execution.objects.percentiles() == {"p50": 42.0, "p95": 42.0, "p99": 42.0}


def test_percentiles_reject_unknown_fields_and_bad_percents():
    with pytest.raises(ValueError, match="duration_ms"):
        Execution.objects.percentiles("agent_type")
    with pytest.raises(ValueError):
        Execution.objects.percentiles(percents=(50, 101))


# -- cost_forecast ------------------------------------------------------------------------------


def test_cost_forecast_on_the_tenth_of_february(frozen_now):
    now = frozen_now(dt.datetime(2026, 2, 10, 12, 0, tzinfo=dt.UTC))
    execution("3.00", started_at=dt.datetime(2026, 2, 1, 0, 0, tzinfo=dt.UTC))
    execution("1.50", started_at=now - dt.timedelta(hours=1))
    execution("0.50", started_at=dt.datetime(2026, 2, 10, 23, 0, tzinfo=dt.UTC))  # later today
    execution("50.00", started_at=dt.datetime(2026, 1, 31, 23, 59, 59, tzinfo=dt.UTC))
    parent = Execution.objects.get(total_cost=Decimal("3.00"))
    execution("7.00", started_at=now, parent=parent)

    assert Execution.objects.cost_forecast() == {
        "month_to_date": Decimal("5.00"),
        "daily_average": Decimal("0.50"),  # 5.00 / 10 days (today counted whole)
        "projected_month_total": Decimal("14.00"),  # 0.50 * 28 days
    }


def test_cost_forecast_on_the_last_day_of_a_long_month(frozen_now, paris):
    frozen_now(dt.datetime(2026, 12, 31, 22, 0, tzinfo=dt.UTC))  # 23:00 in Paris
    execution("6.20", started_at=dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC))
    execution("1.00", started_at=dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC))  # Dec 1st 00:30 in Paris
    execution("9.00", started_at=dt.datetime(2026, 11, 30, 22, 59, 59, tzinfo=dt.UTC))  # Nov 30th in Paris

    assert Execution.objects.cost_forecast() == {
        "month_to_date": Decimal("7.20"),
        "daily_average": Decimal("0.23225806"),  # 7.20 / 31
        "projected_month_total": Decimal("7.20000000"),
    }


def test_cost_forecast_of_nothing_is_zero():
    assert Execution.objects.cost_forecast() == {
        "month_to_date": Decimal("0"),
        "daily_average": Decimal("0"),
        "projected_month_total": Decimal("0"),
    }


# -- error_analysis -----------------------------------------------------------------------------

FAILURES = [
    # (status, error_class, error_message, expected category)
    ("error", "RateLimitError", "slow down", "rate_limit"),
    ("error", "AuthenticationError", "nope", "authentication"),
    ("error", "ProviderTimeoutError", "", "timeout"),
    ("timeout", "", "", "timeout"),
    ("error", "InvalidRequestError", "max_tokens is too large", "invalid_request"),
    ("error", "APIConnectionError", "", "network"),
    ("error", "ProviderError", "Too Many Requests", "rate_limit"),
    ("error", "ProviderError", "Connection reset by peer", "network"),
    ("error", "ProviderError", "Invalid API key provided", "authentication"),
    ("error", "ValueError", "something odd happened", "other"),
    ("error", "RateLimitError", "connection refused", "rate_limit"),  # the class wins over the message
    ("error", "ProviderError", "The request timed out", "timeout"),
    # Refused by a hard-stop budget: not an error of the model (before: "other", the message names
    # no known failure).
    ("error", "BudgetExceededError", "Budget 'daily' refused the call: daily spend $5", "budget"),
]


@pytest.fixture
def failures():
    now = timezone.now()
    rows = [
        ExecutionFactory(
            status=status,
            error_class=error_class,
            error_message=message,
            started_at=now - dt.timedelta(minutes=index + 1),
        )
        for index, (status, error_class, message, _) in enumerate(FAILURES)
    ]
    ExecutionFactory(status="success", error_class="RateLimitError", rate_limited=True, started_at=now)
    ExecutionFactory(status="running", started_at=now)
    ExecutionFactory(status="error", error_class="RateLimitError", parent=rows[0], started_at=now)
    return rows


@pytest.mark.parametrize(("status", "error_class", "message", "category"), FAILURES)
def test_each_error_goes_to_its_category(status, error_class, message, category):
    ExecutionFactory(status=status, error_class=error_class, error_message=message)
    categories = Execution.objects.error_analysis()["categories"]
    assert categories[category] == 1
    assert sum(categories.values()) == 1


def test_error_analysis_counts_root_failures_by_category(failures):
    assert Execution.objects.error_analysis()["categories"] == {
        "rate_limit": 3,
        "authentication": 2,
        "network": 2,
        "timeout": 3,
        "invalid_request": 1,
        "other": 1,
        "budget": 1,
    }


def test_error_analysis_recent_is_the_ten_latest_root_failures_newest_first(failures):
    recent = Execution.objects.error_analysis()["recent"]
    assert [row["id"] for row in recent] == [row.pk for row in failures[:10]]
    first = failures[0]
    assert recent[0] == {
        "id": first.pk,
        "agent_type": "SupportAgent",
        "model_id": "gpt-4o-mini",
        "error_class": "RateLimitError",
        "error_message": "slow down",
        "started_at": first.started_at,
    }


def test_error_analysis_on_a_scope(failures):
    ExecutionFactory(status="error", agent_type="WriterAgent", error_class="AuthenticationError")
    analysis = Execution.objects.by_agent("WriterAgent").error_analysis()
    assert analysis["categories"] == {
        "rate_limit": 0,
        "authentication": 1,
        "network": 0,
        "timeout": 0,
        "invalid_request": 0,
        "other": 0,
        "budget": 0,
    }
    assert len(analysis["recent"]) == 1


# -- rules shared by every method ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda qs: qs.cost_by_agent("fortnight"),
        lambda qs: qs.cost_by_model("fortnight"),
        lambda qs: qs.stats_for("SearchAgent", "fortnight"),
        lambda qs: qs.compare_versions("SearchAgent", "1", period="fortnight"),
    ],
    ids=["cost_by_agent", "cost_by_model", "stats_for", "compare_versions"],
)
def test_unknown_period_raises_naming_the_valid_ones(call):
    with pytest.raises(ValueError) as excinfo:
        call(Execution.objects.all())
    for name in PERIOD_NAMES:
        assert name in str(excinfo.value)


@pytest.mark.parametrize("period", PERIOD_NAMES)
def test_every_period_name_is_accepted(day_of_work, period):
    search = [row for row in Execution.objects.cost_by_agent(period) if row["agent_type"] == "SearchAgent"]
    if period == "yesterday":
        assert search == []
    else:
        assert search == [{"agent_type": "SearchAgent", "total_cost": Decimal("0.80"), "executions": 3}]


ANALYTICS = {
    "summary": (lambda qs: qs.summary(), 1),
    "daily_report": (lambda qs: qs.daily_report(), 1),
    "cost_by_agent": (lambda qs: qs.cost_by_agent(), 1),
    "cost_by_model": (lambda qs: qs.cost_by_model(), 1),
    "stats_for": (lambda qs: qs.stats_for("SearchAgent"), 1),
    "trend_analysis": (lambda qs: qs.trend_analysis(days=30), 1),
    "compare_versions": (lambda qs: qs.compare_versions("SearchAgent", "1", "2", "3"), 2),  # rows, scores
    "percentiles": (lambda qs: qs.percentiles(), None),  # see percentile_queries()
    "cost_forecast": (lambda qs: qs.cost_forecast(), 1),
    "error_analysis": (lambda qs: qs.error_analysis(), 2),
}


def percentile_queries(scoped: bool) -> int:
    # From the latency rollups: one query. With a filter they do not keep (a model), from the rows:
    # on PostgreSQL one percentile_cont query, elsewhere a count, then one query per percentile.
    return 4 if scoped and connection.vendor != "postgresql" else 1


def make_rows(count: int) -> None:
    now = timezone.now()
    roots = []
    for index in range(count):
        roots.append(
            ExecutionFactory(
                agent_type=("SearchAgent", "WriterAgent")[index % 2],
                agent_version=str(index % 3 + 1),
                model_id=("gpt-4o", "gpt-4o-mini")[index % 2],
                status=("success", "error", "timeout")[index % 3],
                error_class=("", "RateLimitError", "")[index % 3],
                duration_ms=100 + index,
                started_at=now - dt.timedelta(hours=index % 48),
            )
        )
    for parent in roots[::5]:
        ExecutionFactory(parent=parent, status="error", started_at=now)


@pytest.mark.parametrize("size", [5, 50])
@pytest.mark.parametrize("name", list(ANALYTICS))
def test_analytics_run_a_constant_number_of_queries(django_assert_num_queries, name, size):
    call, queries = ANALYTICS[name]
    make_rows(size)
    with django_assert_num_queries(percentile_queries(scoped=False) if queries is None else queries):
        call(Execution.objects.all())
    with django_assert_num_queries(percentile_queries(scoped=True) if queries is None else queries):
        call(Execution.objects.by_model("gpt-4o").last_30_days())


def test_analytics_work_on_the_manager_and_on_any_scope(day_of_work):
    assert Execution.objects.summary()["total"] == 6
    assert Execution.objects.all().summary()["total"] == 6
    assert Execution.objects.by_model("gpt-4o").summary()["total"] == 3
    assert Execution.objects.failed().summary()["total"] == 2
    assert Execution.objects.by_model("gpt-4o").stats_for("SearchAgent")["total"] == 2


def test_analytics_of_no_rows_are_zeros(day_of_work):
    nothing = Execution.objects.for_current_tenant()  # no current tenant: no rows
    assert nothing.summary()["total"] == 0
    assert nothing.daily_report()["total_cost"] == Decimal("0")
    assert nothing.cost_by_agent() == []
    assert nothing.cost_by_model() == []
    assert nothing.stats_for("SearchAgent")["success_rate"] == 0.0
    assert [row["executions"] for row in nothing.trend_analysis(days=2)] == [0, 0]
    assert nothing.compare_versions("SearchAgent", "1") == {
        "1": {"total": 0, "success_rate": 0.0, "avg_cost": Decimal("0"), "scores": {}}
    }
    assert nothing.percentiles() == {"p50": None, "p95": None, "p99": None}
    assert nothing.cost_forecast()["month_to_date"] == Decimal("0")
    assert nothing.error_analysis() == {
        "categories": dict.fromkeys(
            ("rate_limit", "authentication", "network", "timeout", "invalid_request", "other", "budget"), 0
        ),
        "recent": [],
    }
