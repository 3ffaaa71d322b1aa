"""Server time of the HTTP API's overview/ and executions/ over a large executions table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_api.py
    [--rows 1000000] [--runs 30] [--export] [--refill] [--quick]

The executions table holds ``--rows`` root executions of issue 17's shape (``bench/history.py``:
spread over the 90 days ending now, written with COPY); a database already holding that history is
reused (``bench_scale.py`` and ``bench_analytics.py`` leave a million). Each URL is requested ``--runs`` times in-process through Django's test client, logged
in as staff, after a warm-up: the figure is the server's time to answer, every query included.
``--export`` also streams the whole table through export/ in this process (``bench_export.py``
measures the export's memory in a fresh process). Target (issue 7): overview/ p50 ≤ 150 ms at
1,000,000 executions on PostgreSQL. ``--quick`` (10,000 rows, 3 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import time

from common import ensure_executions, history_days, median, percentile, print_table, setup_django


def timed(client, url: str, runs: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert client.get(url).status_code == 200, url  # warm-up
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return durations, len(captured)


def stream_export(client) -> tuple[int, float, float, float]:
    """Rows and seconds to stream every execution through export/ (CSV), and the process's peak
    resident memory (MiB) before and after."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    response = client.get("/api/llm-agents/export/")
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return lines - 1, elapsed, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description="Server time of the HTTP API")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--export", action="store_true", help="also stream the whole table through export/")
    parser.add_argument("--refill", action="store_true", help="delete and insert the rows again")
    parser.add_argument("--quick", action="store_true", help="10,000 rows and 3 runs, for CI smoke runs")
    options = parser.parse_args()
    rows, runs = (10_000, 3) if options.quick else (options.rows, options.runs)
    vendor = setup_django()

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    ensure_executions(rows, refill=options.refill)

    user, _ = get_user_model().objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    settings.ALLOWED_HOSTS = ["testserver"]
    client = Client()
    client.force_login(user)
    api = "/api/llm-agents/"
    urls = [
        ("overview/ (default 7d)", f"{api}overview/"),
        ("overview/?period=24h", f"{api}overview/?period=24h"),
        ("overview/?period=30d", f"{api}overview/?period=30d"),
        ("overview/?period=90d", f"{api}overview/?period=90d"),
        ("executions/ (first page)", f"{api}executions/"),
        ("executions/?page=100", f"{api}executions/?page=100"),
        ("executions/?status=error&period=7d", f"{api}executions/?status=error&period=7d"),
        ("executions/?agent_type=…&ordering=-total_cost", f"{api}executions/?agent_type=SupportAgent&ordering=-total_cost"),
        ("agents/ (7d)", f"{api}agents/"),
        ("costs/summary/?group_by=day&period=30d", f"{api}costs/summary/?group_by=day&period=30d"),
        ("comparison/models/ (7d)", f"{api}comparison/models/"),
        ("errors/ (7d)", f"{api}errors/"),
    ]  # fmt: skip
    table = []
    for what, url in urls:
        durations, queries = timed(client, url, runs)
        target = "≤ 150 ms p50 (target)" if what.startswith("overview/ (default") else ""
        figure = f"p50 {median(durations):6.1f} ms · p95 {percentile(durations, 95):6.1f} ms"
        table.append((f"{what} [{queries} queries]", figure, target))
    if options.export:
        exported, seconds, before, after = stream_export(client)
        memory = f"peak RSS {before:.0f} MiB before, {after:.0f} MiB after"
        table.append(("export/ CSV, every row", f"{exported:,} rows in {seconds:.1f} s", memory))
    print_table(
        f"API server time, {rows:,} executions over {history_days(rows):.0f} days, {vendor}, {runs} runs each",
        table,
    )


if __name__ == "__main__":
    main()
