"""Server time of the admin dashboard (and the executions list) over a large executions table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_dashboard.py
    [--rows 1000000] [--runs 20] [--refill] [--quick]

The executions table holds ``--rows`` root executions of issue 17's shape (``bench/history.py``:
spread over the 90 days ending now, in time order as a live system writes them, with COPY); a
database already holding that history is reused. Each page is requested ``--runs`` times in-process through Django's test client
after a warm-up, so the figure is the server's time to build the response: every query, the charts
and the template. Target (issue 8): the dashboard's default period in ≤ 300 ms at 1,000,000
executions on PostgreSQL. ``--quick`` (10,000 rows, 3 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import time

from common import ensure_executions, history_days, median, percentile, print_table, setup_django


def timed(client, url: str, runs: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert client.get(url).status_code == 200  # warm-up
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return durations, len(captured)


def main() -> None:
    parser = argparse.ArgumentParser(description="Server time of the admin dashboard")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--refill", action="store_true", help="delete and insert the rows again")
    parser.add_argument("--quick", action="store_true", help="10,000 rows and 3 runs, for CI smoke runs")
    options = parser.parse_args()
    rows, runs = (10_000, 3) if options.quick else (options.rows, options.runs)
    vendor = setup_django()

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    ensure_executions(rows, refill=options.refill)

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    settings.ALLOWED_HOSTS = ["testserver"]
    client = Client()
    client.force_login(user)
    dashboard = reverse("admin:llm_agents_dashboard")
    changelist = reverse("admin:llm_agents_execution_changelist")
    pages = [
        (f"dashboard ?period={period}", f"{dashboard}?period={period}")
        for period in ("24h", "7d", "30d", "90d")
    ]
    pages += [
        ("executions list (unfiltered)", changelist),
        ("executions list, status=error", f"{changelist}?status__exact=error"),
    ]

    table = []
    for what, url in pages:
        durations, queries = timed(client, url, runs)
        target = "≤ 300 ms (target)" if what == "dashboard ?period=7d" else ""
        table.append(
            (
                f"{what} [{queries} queries]",
                f"p50 {median(durations):6.0f} ms · p95 {percentile(durations, 95):6.0f} ms",
                target,
            )
        )
    print_table(
        f"Admin server time, {rows:,} executions over {history_days(rows):.0f} days, {vendor}, {runs} runs each",
        table,
    )


if __name__ == "__main__":
    main()
