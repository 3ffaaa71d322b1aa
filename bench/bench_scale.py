"""Issue 17's table: every dashboard, API and analytics figure over a history of issue 17's shape.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_scale.py
    [--rows 1000000] [--runs 15] [--refill] [--partitioned] [--json FILE] [--baseline FILE] [--quick]

The database holds ``--rows`` root executions of the shape ``bench/history.py`` describes (spread
evenly over the last 90 days, so a third fall in the last 30; 12 agents, 6 models, 4 tenants and
~20 % without, ~5 % failures, prompts and responses of 0.3–6 KB, 3 spans each), written with COPY;
a database whose history already has that size, seed and shape (and is less than a day old) is
reused, so re-running is cheap: ``make bench`` uses ``llm_agents_bench`` at 1M, ``make bench-10m``
``llm_agents_bench_10m`` at 10M, both with ``--partitioned``: the tables, when not partitioned yet,
are emptied and turned into monthly partitions (``PARTITIONING = "monthly"``) and the history is
written into them, a partition for each of its months. The script first prints what the data hold (rows in all and in
the last 30 days, failures, fallbacks, average row width by ``pg_column_size``), then times:

- the HTTP API (in-process through Django's test client, logged in as staff): ``overview/``,
  ``costs/summary/``, ``comparison/models/``, ``errors/``, ``agents/`` over 30 days, ``trends/`` over
  30 days, and the first page of ``executions/`` filtered by agent;
- the admin: the dashboard over 30 days, the executions list filtered by agent;
- every section 3 analytics method (and ``summary()``) over the last 30 days and over the whole
  history (methods without a period argument are chained after ``last_30_days()`` / called on
  every row; ``daily_report()`` covers one day and ``cost_forecast()`` the current month by
  definition).

Each is run once to warm up, then ``--runs`` times (fewer, at least 3, when that would take more
than ``--budget`` seconds: the row says how many): p50 and p95 in ms. Targets (issue 17, at 10M):
API and analytics p50 ≤ 50 ms, dashboard ≤ 150 ms, executions lists ≤ 50 ms; 10M ÷ 1M ≤ 1.5×.
``--json FILE`` writes the figures; ``--baseline FILE`` (an earlier ``--json`` at another size)
adds the ratio to it. ``--quick`` (10,000 rows, 2 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

from common import median, percentile, print_table, setup_django

AGENT = "SupportAgent"  # the busiest agent, with versions 2.0 and 2.1 in the last 30 days


def analytics_calls() -> list[tuple[str, str, Callable[[], object]]]:
    """``(group, label, call)`` for every section 3 method, over 30 days and over all history."""
    from django.utils import timezone

    from llm_agents.models import Execution
    from llm_agents.periods import Period

    e = Execution.objects
    # The whole history as a period: from before the first row to now.
    everything = Period("all", timezone.now() - dt.timedelta(days=3650), None)
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    thirty, alltime = "analytics, 30 days", "analytics, all history"
    return [
        (thirty, "daily_report()  [today]", lambda: e.daily_report()),
        (thirty, "daily_report(yesterday)  [a whole day]", lambda: e.daily_report(yesterday)),
        (thirty, "cost_by_agent('30d')", lambda: e.cost_by_agent("30d")),
        (thirty, "cost_by_model('30d')", lambda: e.cost_by_model("30d")),
        (thirty, f"stats_for('{AGENT}', '30d')", lambda: e.stats_for(AGENT, "30d")),
        (thirty, "trend_analysis(days=30)", lambda: e.trend_analysis(days=30)),
        (thirty, f"trend_analysis('{AGENT}', days=30)", lambda: e.trend_analysis(AGENT, days=30)),
        (thirty, f"compare_versions('{AGENT}', '2.1', '2.0', period='30d')",
         lambda: e.compare_versions(AGENT, "2.1", "2.0", period="30d")),
        (thirty, "last_30_days().percentiles()", lambda: e.last_30_days().percentiles()),
        (thirty, "cost_forecast()  [this month]", lambda: e.cost_forecast()),
        (thirty, "last_30_days().error_analysis()", lambda: e.last_30_days().error_analysis()),
        (thirty, "last_30_days().summary()", lambda: e.last_30_days().summary()),
        (alltime, "cost_by_agent(all)", lambda: e.cost_by_agent(everything)),
        (alltime, "cost_by_model(all)", lambda: e.cost_by_model(everything)),
        (alltime, f"stats_for('{AGENT}', all)", lambda: e.stats_for(AGENT, everything)),
        (alltime, "trend_analysis(days=91)", lambda: e.trend_analysis(days=91)),
        (alltime, f"compare_versions('{AGENT}', '2.1', '2.0', '1.9', period=all)",
         lambda: e.compare_versions(AGENT, "2.1", "2.0", "1.9", period=everything)),
        (alltime, "percentiles()", lambda: e.percentiles()),
        (alltime, "error_analysis()", lambda: e.error_analysis()),
        (alltime, "summary()", lambda: e.summary()),
    ]  # fmt: skip


def http_calls(client) -> list[tuple[str, str, Callable[[], object]]]:
    from django.urls import reverse

    api = "/api/llm-agents/"
    dashboard = reverse("admin:llm_agents_dashboard")
    changelist = reverse("admin:llm_agents_execution_changelist")

    def get(url: str) -> Callable[[], object]:
        def call() -> object:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response

        return call

    urls = [
        ("API, 30 days", "GET overview/?period=30d", f"{api}overview/?period=30d"),
        ("API, 30 days", "GET costs/summary/?period=30d", f"{api}costs/summary/?period=30d"),
        ("API, 30 days", "GET costs/summary/?group_by=day&period=30d", f"{api}costs/summary/?group_by=day&period=30d"),
        ("API, 30 days", "GET comparison/models/?period=30d", f"{api}comparison/models/?period=30d"),
        ("API, 30 days", "GET trends/?days=30", f"{api}trends/?days=30"),
        ("API, 30 days", "GET errors/?period=30d", f"{api}errors/?period=30d"),
        ("API, 30 days", "GET agents/?period=30d", f"{api}agents/?period=30d"),
        ("executions lists", f"GET executions/?agent_type={AGENT}  [first page]", f"{api}executions/?agent_type={AGENT}"),
        ("executions lists", f"admin executions list ?agent_type={AGENT}", f"{changelist}?agent_type={AGENT}"),
        ("admin dashboard", "admin dashboard ?period=30d", f"{dashboard}?period=30d"),
        ("admin dashboard", "admin dashboard ?period=7d", f"{dashboard}?period=7d"),
    ]  # fmt: skip
    return [(group, what, get(url)) for group, what, url in urls]


TARGETS = {
    "API, 30 days": "p50 ≤ 50 ms at 10M",
    "executions lists": "p50 ≤ 50 ms at 10M",
    "admin dashboard": "p50 ≤ 150 ms at 10M",
    "analytics, 30 days": "p50 ≤ 50 ms at 10M",
    "analytics, all history": "p50 ≤ 50 ms at 10M",
}


def timed(call: Callable[[], object], runs: int, budget: float) -> list[float]:
    """``runs`` timings in ms after a warm-up, fewer (at least 3) when the warm-up says they would
    take longer than ``budget`` seconds."""
    started = time.perf_counter()
    call()  # warm-up
    warm_up = time.perf_counter() - started
    if warm_up * runs > budget:
        runs = min(runs, max(3, int(budget / warm_up)))
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    return f"{size / 1000:g}k"


def _partition() -> bool:
    """Monthly partitions for ``--partitioned``: the tables emptied and converted when they are not
    partitioned yet (True: the history must be generated again), left alone when they are."""
    from django.db import connection

    from llm_agents.db import partitions
    from llm_agents.models import Execution

    if partitions.is_partitioned(connection, Execution._meta.db_table):
        return False
    print("emptying the tables and enabling monthly partitions on them", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE llm_agents_span, llm_agents_execution CASCADE")
    partitions.enable(connection, use_partman=False)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description="Issue 17's table over a history of its shape")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--budget",
        type=float,
        default=60,
        help="seconds per call, beyond which it runs fewer times (at least 3)",
    )
    parser.add_argument("--refill", action="store_true", help="generate the history again")
    parser.add_argument(
        "--partitioned",
        action="store_true",
        help="monthly partitions (PARTITIONING = 'monthly'): enabled on empty tables, history generated into them",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--baseline", type=Path, help="an earlier --json at another size: print the ratio")
    parser.add_argument("--quick", action="store_true", help="10,000 rows and 2 runs, for CI smoke runs")
    options = parser.parse_args()
    rows, runs = (10_000, 2) if options.quick else (options.rows, options.runs)
    vendor = setup_django()
    if vendor != "postgresql":
        raise SystemExit("bench_scale.py measures PostgreSQL: set DATABASE_URL=postgres://…")

    import history
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    refill = options.refill
    if options.partitioned:
        refill = _partition() or refill
    meta = history.ensure(rows, refill=refill)
    print_table(
        f"Data: {rows:,} root executions of issue 17's shape, generated in {meta['seconds']:.0f} s "
        f"({rows / max(meta['seconds'], 1e-9):,.0f} roots/s with vacuum and analyse)",
        [(what, value, "") for what, value in history.describe()],
    )

    user, _ = get_user_model().objects.get_or_create(
        username="bench-scale", defaults={"is_staff": True, "is_superuser": True}
    )
    settings.ALLOWED_HOSTS = ["testserver"]
    client = Client()
    client.force_login(user)

    baseline = (
        json.loads(options.baseline.read_text()) if options.baseline and options.baseline.exists() else None
    )
    figures: dict[str, dict[str, float]] = {}
    table = []
    group_seen = None
    for group, what, call in [*http_calls(client), *analytics_calls()]:
        durations = timed(call, runs, options.budget)
        p50, p95 = median(durations), percentile(durations, 95)
        figures[what] = {"p50": round(p50, 2), "p95": round(p95, 2), "runs": len(durations)}
        ratio = ""
        if baseline and what in baseline["figures"]:
            ratio = f" · {p50 / baseline['figures'][what]['p50']:5.1f}× {label(baseline['rows'])}"
        target = TARGETS[group] if group != group_seen else ""
        if group != group_seen:
            table.append((f"-- {group}", "", ""))
            group_seen = group
        fewer = f" ({len(durations)} runs)" if len(durations) < runs else ""
        print(f"  {what}: p50 {p50:.1f} ms, p95 {p95:.1f} ms{fewer}", flush=True)  # progress of long runs
        table.append((f"  {what}", f"p50 {p50:7.1f} ms · p95 {p95:7.1f} ms{ratio}{fewer}", target))
    print_table(
        f"Issue 17's table at {label(rows)} executions on {vendor}, {runs} runs each after a warm-up", table
    )
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps({"rows": rows, "runs": runs, "figures": figures}, indent=1))
        print(f"figures written to {options.json}")


if __name__ == "__main__":
    main()
