"""Analytics answer the same from the rollups as from the rows (SPEC section 20): with ``ROLLUPS`` on,
every ExecutionQuerySet analytics method, in every scope, gives the counts and sums it gives with
``ROLLUPS`` off, exactly, and duration percentiles within 1% — over ~40 days of executions with some
in the partial hours at the edges of each period, in time zones a whole hour, several hours and a
half hour from UTC. So do the HTTP API's aggregate endpoints and the admin dashboard."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from llm_agents.analytics import overview
from llm_agents.db import rollups as sql_rollups
from llm_agents.models import Execution, rollup_reads
from llm_agents.models.pagination import LargeTablePaginator
from llm_agents.periods import PERIODS, resolve_period
from tests.api_support import API
from tests.factories import ExecutionFactory, PromptVersionFactory, local_today

pytestmark = pytest.mark.django_db

TIME_ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
# Keys whose values are duration percentiles: within 1% (latency buckets), the rest exact.
PERCENTILE_KEY = re.compile(r"(^|[_.\s])p\d+(_|$)|percentile")
# Averages are a division: the last of their 8 places may round differently.
AVERAGE_KEY = re.compile(r"avg|average|projected|rate")
NOW_IN_LINK = re.compile(r"started_at__gte=[^&\"]+")


def reads_rollups(sql: str) -> bool:
    return any(table in sql for table in sql_rollups.ROLLUP_TABLES)


def rollups(enabled: bool):
    return override_settings(LLM_AGENTS={**getattr(settings, "LLM_AGENTS", {}), "ROLLUPS": enabled})


# -- the data ---------------------------------------------------------------------------------------

ERRORS = [
    ("RateLimitError", "slow down"),
    ("ProviderError", "Connection reset"),
    ("ProviderTimeoutError", "timed out"),
    ("AuthenticationError", "bad key"),
    ("ProviderError", "invalid_request: 100%"),
    ("KeyError", "'x'"),
]


def spread(now: dt.datetime) -> list[dt.datetime]:
    """Moments over the last ~40 days at random minutes, and a few minutes either side of each
    period's bounds (and of the half hours within their first and last hours)."""
    rng = random.Random(40)
    moments = [now - dt.timedelta(minutes=rng.randint(0, 41 * 24 * 60)) for _ in range(220)]
    for name in PERIODS:
        bounds = resolve_period(name)
        for edge in (bounds.start, bounds.end or now):
            for minutes in (-31, -1, 1, 29, 31, 59):
                moment = edge + dt.timedelta(minutes=minutes, seconds=7)
                if moment < now:
                    moments.append(moment)
    return moments


def build_data() -> list[Execution]:
    """Built inside each test, under the ``TIME_ZONE`` it overrides (a fixture would run before).

    Roots of several agents, versions, models, tenants, statuses and prompt versions, some with
    spend by several models, some nested executions, placed by :func:`spread` in ``TIME_ZONE``."""
    rng = random.Random(17)
    now = timezone.now()
    versions = [PromptVersionFactory(), None, None]
    versions.append(PromptVersionFactory(prompt=versions[0].prompt))
    roots = []
    for moment in spread(now):
        status = rng.choice(["success", "success", "success", "error", "timeout", "running"])
        error_class, error_message = rng.choice(ERRORS) if status in ("error", "timeout") else ("", "")
        model = rng.choice(["model-a", "model-b", "model-c"])
        chosen = rng.choice([model, model, "", "model-c"])
        input_cost = Decimal(rng.randint(0, 10**7)) / 10**8
        output_cost = Decimal(rng.randint(0, 10**6)) / 10**8
        spend: dict[str, list[Any]] = {}
        if rng.random() < 0.3:
            spend = {
                "model-a": [str(input_cost), 100],
                chosen or model: [str(output_cost), 10],
            }
        roots.append(
            ExecutionFactory.build(
                agent_type=rng.choice(["A", "B", "C"]),
                agent_version=rng.choice(["1.0", "2.0"]),
                model_id=model,
                chosen_model_id=chosen,
                tenant_id=rng.choice([None, "acme", "globex"]),
                status=status,
                error_class=error_class,
                error_message=error_message,
                input_tokens=rng.randint(50, 5000),
                output_tokens=rng.randint(0, 800),
                cached_tokens=rng.randint(0, 50),
                input_cost=input_cost,
                output_cost=output_cost,
                duration_ms=None if status == "running" else rng.choice([0, rng.randint(1, 120_000)]),
                cache_hit=rng.random() < 0.1,
                streaming=rng.random() < 0.3,
                started_at=moment,
                prompt_version=rng.choice(versions),
                metadata={"source": "import"} if rng.random() < 0.2 else {},
                model_spend=spend,
            )
        )
    Execution.objects.bulk_create(roots)
    nested = [
        ExecutionFactory.build(parent=root, root_id=root.id, started_at=root.started_at, agent_type="A",
                               input_cost=Decimal("0.5"), duration_ms=5)
        for root in rng.sample(roots, 25)
    ]  # fmt: skip
    Execution.objects.bulk_create(nested)
    return roots


# -- comparing --------------------------------------------------------------------------------------


def same(on: Any, off: Any, where: str = "") -> None:
    """``on`` (ROLLUPS True) answers as ``off`` (False): exactly, but percentiles within 1%."""
    if isinstance(off, dict):
        assert isinstance(on, dict) and on.keys() == off.keys(), where
        for key in off:
            same(on[key], off[key], f"{where}.{key}")
    elif isinstance(off, list | tuple):
        assert isinstance(on, list | tuple) and len(on) == len(off), f"{where}: {len(on)} != {len(off)}"
        for index, (left, right) in enumerate(zip(on, off, strict=True)):
            same(left, right, f"{where}[{index}]")
    elif isinstance(off, float | int) and not isinstance(off, bool) and PERCENTILE_KEY.search(where):
        assert on is not None and math.isclose(on, off, rel_tol=0.01, abs_tol=1e-9), f"{where}: {on} != {off}"
    elif isinstance(off, float):
        assert isinstance(on, float | int) and math.isclose(on, off, rel_tol=1e-9, abs_tol=1e-9), (
            f"{where}: {on} != {off}"
        )
    elif isinstance(off, Decimal) and AVERAGE_KEY.search(where):
        assert abs(Decimal(on) - off) <= Decimal("0.00000001"), f"{where}: {on} != {off}"
    elif isinstance(off, str):
        # Links to a rolling period hold the moment it starts: now, when each answer is drawn.
        assert NOW_IN_LINK.sub("", on) == NOW_IN_LINK.sub("", off), f"{where}: {on!r} != {off!r}"
    else:
        assert on == off, f"{where}: {on!r} != {off!r}"


def answers_agree(question: Callable[[], Any], where: str) -> None:
    with rollups(False):
        off = question()
    with rollups(True):
        on = question()
    same(on, off, where)


def scopes() -> dict[str, Callable[[], Any]]:
    """Querysets the analytics are asked on: periods, custom ranges off the hour, keys the rollups
    keep, and filters they cannot answer."""
    rows = Execution.objects
    today = local_today()
    zone = timezone.get_default_timezone()
    off_hour = dt.datetime.combine(today - dt.timedelta(days=12), dt.time(3, 17), tzinfo=zone)
    found: dict[str, Callable[[], Any]] = {"all": rows.all}
    for name in PERIODS:
        found[name] = lambda name=name: rows.for_period(name)
    found.update(
        {
            "between datetimes": lambda: rows.between(
                off_hour, timezone.now() - dt.timedelta(hours=5, minutes=41)
            ),
            "between datetimes in one hour": lambda: rows.between(
                off_hour, off_hour + dt.timedelta(minutes=20)
            ),
            "between dates": lambda: rows.between(
                today - dt.timedelta(days=20), today - dt.timedelta(days=2)
            ),
            "by_agent": lambda: rows.by_agent("A"),
            "by_model": lambda: rows.by_model("model-b"),
            "by_tenant": lambda: rows.by_tenant("acme"),
            "with_tenant": lambda: rows.with_tenant(),
            "without_tenant": lambda: rows.without_tenant(),
            "successful": lambda: rows.successful(),
            "failed": lambda: rows.failed(),
            "by_version": lambda: rows.by_version("2.0"),
            "by_agent 7d": lambda: rows.by_agent("B").for_period("7d"),
            "failed acme 30d": lambda: rows.failed().by_tenant("acme").for_period("30d"),
            "by_model this_month": lambda: rows.by_model("model-a").this_month(),
            "expensive": lambda: rows.expensive(Decimal("0.05")),
            "with_metadata": lambda: rows.with_metadata(source="import"),
            "streaming": lambda: rows.streaming(),
            "none": lambda: rows.none(),
        }
    )
    return found


SHORT = (
    "summary",
    "percentiles",
    "cost_summary(day)",
    "timeline(this_month, day)",
    "compare_models",
    "overview(this_month)",
    "error_analysis",
    "stats_by_agent",
    "cost_by_model(this_month)",
)


DETAILED = ("by_agent", "by_tenant", "failed", "expensive", "by_agent 7d")


def questions(scoped: Callable[[], Any], depth: str) -> dict[str, Callable[[], Any]]:
    """The analytics methods on ``scoped()``: ``full`` asks each period-taking method for every
    period, ``standard`` for this month, ``short`` only :data:`SHORT` (to keep the file quick)."""
    today = local_today()
    periods = PERIODS if depth == "full" else ("this_month",)
    asked: dict[str, Callable[[], Any]] = {
        "summary": lambda: scoped().summary(),
        "daily_report": lambda: scoped().daily_report(),
        "daily_report(date)": lambda: scoped().daily_report(today - dt.timedelta(days=3)),
        "trend_analysis": lambda: scoped().trend_analysis(days=10),
        "trend_analysis(agent)": lambda: scoped().trend_analysis("A", days=40),
        "compare_versions": lambda: scoped().compare_versions("A", "1.0", "2.0", period="30d"),
        "percentiles": lambda: scoped().percentiles(),
        "percentiles(99.9)": lambda: scoped().percentiles("duration_ms", (0, 10, 50, 99.9, 100)),
        "percentiles(total_tokens)": lambda: scoped().percentiles("total_tokens"),
        "percentiles(total_cost)": lambda: scoped().percentiles("total_cost", (50, 90)),
        "cost_forecast": lambda: scoped().cost_forecast(),
        "error_analysis": lambda: scoped().error_analysis(),
        "by_prompt_version": lambda: scoped().by_prompt_version(),
        "stats_by_agent": lambda: scoped().stats_by_agent(),
        "compare_models": lambda: scoped().compare_models(),
        "timeline(today, hour)": lambda: scoped().timeline("today", "hour"),
    }
    for field in ("agent_type", "model_id", "tenant_id"):
        asked[f"summary_by({field})"] = lambda field=field: scoped().summary_by(field)
    for group in ("model", "agent", "tenant", "day"):
        asked[f"cost_summary({group})"] = lambda group=group: scoped().cost_summary(group)
    for name in periods:
        asked[f"cost_by_agent({name})"] = lambda name=name: scoped().cost_by_agent(name)
        asked[f"cost_by_model({name})"] = lambda name=name: scoped().cost_by_model(name)
        asked[f"stats_for({name})"] = lambda name=name: scoped().stats_for("A", name)
        asked[f"timeline({name}, day)"] = lambda name=name: scoped().timeline(name, "day")
        asked[f"overview({name})"] = lambda name=name: overview(scoped(), resolve_period(name))
        if depth == "full" and name in ("yesterday", "24h", "7d", "this_week"):
            asked[f"timeline({name}, hour)"] = lambda name=name: scoped().timeline(name, "hour")
    if depth == "short":
        asked = {key: asked[key] for key in SHORT}
    return asked


# -- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", TIME_ZONES)
def test_every_analytics_method_in_every_scope_answers_the_same_from_the_rollups(zone):
    with override_settings(TIME_ZONE=zone):
        build_data()
        for scope, scoped in scopes().items():
            # Every method where the time zone decides which rows a scope holds (periods, ranges);
            # the filters on keys briefly, but a few of them in detail under UTC (to keep it quick).
            depth = "full" if scope == "all" else "standard"
            if scope not in PERIODS and not scope.startswith("between"):
                depth = "standard" if zone == "UTC" and scope in DETAILED else "short"
            for question, ask in questions(scoped, depth).items():
                answers_agree(ask, f"{zone} {scope} {question}")


def test_the_data_reaches_the_edges_of_the_periods():
    """What the comparisons above stand on: executions in partial hours at period edges, over 40 days."""
    with override_settings(TIME_ZONE="Asia/Kolkata"):
        build_data()
        starts = list(Execution.objects.values_list("started_at", flat=True))
        assert min(starts) < timezone.now() - dt.timedelta(days=39)
        edge = resolve_period("today").start
        assert edge.minute == 0 and edge.astimezone(dt.UTC).minute == 30  # a local day starts mid-hour
        assert any(0 < (moment - edge).total_seconds() < 3600 for moment in starts)
        assert any(0 < (edge - moment).total_seconds() < 3600 for moment in starts)
        with rollups(False):
            assert Execution.objects.summary()["total"] > 250


AGGREGATE_ENDPOINTS = [
    ("overview/", {}),
    ("costs/summary/", {"group_by": "model"}),
    ("costs/summary/", {"group_by": "agent"}),
    ("costs/summary/", {"group_by": "tenant"}),
    ("costs/summary/", {"group_by": "day"}),
    ("comparison/models/", {}),
    ("trends/", {"days": 30}),
    ("trends/", {"days": 7, "agent_type": "A"}),
    ("errors/", {}),
    ("agents/", {}),
]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_the_api_aggregate_endpoints_answer_the_same_from_the_rollups(staff_client, zone):
    with override_settings(TIME_ZONE=zone):
        build_data()
        today = local_today()
        ranges = [{"period": name} for name in ("today", "24h", "7d", "this_month", "90d")]
        ranges.append(
            {"start_date": (today - dt.timedelta(days=9)).isoformat(), "end_date": today.isoformat()}
        )
        for path, params in AGGREGATE_ENDPOINTS:
            for extra in [{}] if path.startswith("trends") else ranges:

                def ask(path=path, params=params, extra=extra):
                    response = staff_client.get(API + path, {**params, **extra})
                    assert response.status_code == 200, response.content
                    return response.json()

                answers_agree(ask, f"{zone} {path} {params} {extra}")


@pytest.mark.parametrize("period", ["today", "24h", "7d", "30d", "this_month", "90d"])
def test_the_admin_dashboard_shows_the_same_from_the_rollups(staff_client, period):
    with override_settings(TIME_ZONE="America/New_York"):
        build_data()

        def context():
            response = staff_client.get(reverse("admin:llm_agents_dashboard"), {"period": period})
            assert response.status_code == 200
            shown = {
                key: response.context[key]
                for key in ("overview", "previous", "charts", "percentiles", "agents")
            }
            # The figures behind the charts, not their drawings: the latency chart draws percentiles
            # (within 1% from the rollups) and every chart links to "now" to the microsecond.
            shown["charts"] = {
                key: value for key, value in shown["charts"].items() if not isinstance(value, str)
            }
            return shown

        answers_agree(context, f"dashboard {period}")


# -- executions lists -------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_filtered_executions_lists_are_counted_exactly_from_the_rollups(staff_client, zone):
    with override_settings(TIME_ZONE=zone):
        build_data()
        now = timezone.now()
        odd = now - dt.timedelta(days=6, minutes=17, seconds=3)
        lists = [
            Execution.objects.filter(agent_type="A"),  # with its nested executions
            Execution.objects.filter(agent_type="B", status="error"),
            Execution.objects.filter(model_id__in=["model-a", "model-c"], started_at__gte=odd),
            Execution.objects.filter(tenant_id="acme", started_at__gte=odd, started_at__lt=now - dt.timedelta(hours=30)),
            Execution.objects.filter(parent__isnull=True, kind="agent", agent_type="A"),
        ]  # fmt: skip
        for listed in lists:
            with CaptureQueriesContext(connection) as captured:
                counted = LargeTablePaginator(listed, 50).count
            assert counted == listed.count() > 0, listed.query
            assert any(reads_rollups(query["sql"]) for query in captured), "counted from the rows"
        assert Execution.objects.filter(agent_type="A", parent__isnull=False).exists()
        # A filter the rollups do not keep: the rows count.
        cached = Execution.objects.filter(agent_type="A", cache_hit=True)
        with CaptureQueriesContext(connection) as captured:
            assert LargeTablePaginator(cached, 50).count == cached.count()
        assert not any(reads_rollups(query["sql"]) for query in captured)

        response = staff_client.get(f"{API}executions/", {"agent_type": "A", "page_size": 5})
        assert response.status_code == 200
        assert response.json()["count"] == Execution.objects.filter(agent_type="A").count()
        changelist = staff_client.get(reverse("admin:llm_agents_execution_changelist"), {"agent_type": "A"})
        assert changelist.status_code == 200
        assert changelist.context["cl"].result_count == Execution.objects.filter(agent_type="A").count()


# -- one read shared by the dashboard's questions ----------------------------------------------------


def test_shared_totals_answer_as_their_own_queries_without_querying():
    build_data()
    period = resolve_period("30d")
    scoped = Execution.objects.for_period(period)
    alone = (scoped.summary(), scoped.summary_by("agent_type"), scoped.error_analysis(),
             scoped.by_agent("A").summary(), scoped.filter(status__in=["error", "timeout"]).summary())  # fmt: skip
    with rollup_reads.shared_totals(scoped, ("agent_type", "status", "error_category")):
        with CaptureQueriesContext(connection) as captured:
            shared = (scoped.summary(), scoped.summary_by("agent_type"), scoped.error_analysis(),
                      scoped.by_agent("A").summary(), scoped.filter(status__in=["error", "timeout"]).summary())  # fmt: skip
        # Grouped by local day, or over another period: their own queries.
        with CaptureQueriesContext(connection) as own:
            scoped.timeline(period, "day")
            Execution.objects.for_period(resolve_period("7d")).summary()
    assert shared == alone
    assert not any(reads_rollups(query["sql"]) for query in captured), captured.captured_queries
    assert sum(reads_rollups(query["sql"]) for query in own) == 2
