"""Peak memory of the server streaming a CSV export of 1,000,000 executions.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_export.py
    [--rows 1000000] [--format csv] [--quick]

The executions table is filled to ``--rows`` as ``bench/common.py`` does (reused when it already
holds that many, e.g. after ``bench_analytics.py``). The export is then served by a fresh child
process, the server: it sets Django up, answers one small request to load every module, then
streams ``GET /api/llm-agents/export/`` through Django's handler (the test client, logged in as
staff) and reads the body chunk by chunk as a WSGI server would. The child reports its peak
resident set (``getrusage``) before and after the export; the parent checks it against the
kernel's own count for the finished child (``RUSAGE_CHILDREN``).

Target (issue 9): peak RSS ≤ 200 MB while exporting 1,000,000 executions as CSV.
``--quick`` (10,000 executions) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from common import ensure_executions, peak_rss_mb, print_table, setup_django


def serve_export(export_format: str) -> None:
    """The child: stream one export and print its figures as JSON."""
    setup_django(migrate=False)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.ALLOWED_HOSTS = ["testserver"]
    user = get_user_model().objects.get(username="bench-staff")
    client = Client()
    client.force_login(user)
    assert client.get("/api/llm-agents/overview/").status_code == 200  # warm-up: imports, caches
    before = peak_rss_mb()
    started = time.perf_counter()
    response = client.get(f"/api/llm-agents/export/?format={export_format}")
    assert response.status_code == 200, response.status_code
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"lines": lines, "bytes": size, "seconds": seconds, "before": before, "peak": peak_rss_mb()}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Peak RSS of a CSV export")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["csv", "json"], default="csv")
    parser.add_argument("--quick", action="store_true", help="10,000 executions, for CI smoke runs")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve_export(options.format)
        return
    rows = 10_000 if options.quick else options.rows
    vendor = setup_django()

    from django.contrib.auth import get_user_model

    from llm_agents.models import Execution

    ensure_executions(rows)
    stored = Execution.objects.count()  # the root executions and the nested ones
    get_user_model().objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    child = subprocess.run(
        [sys.executable, __file__, "--serve", "--format", options.format],
        env=os.environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode:
        sys.stderr.write(child.stderr)
        raise SystemExit(f"the export's server process failed with exit code {child.returncode}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    kernel_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    exported = figures["lines"] - 1
    assert exported == stored, (exported, stored)
    print_table(
        f"{options.format.upper()} export of {stored:,} executions ({rows:,} root executions) on {vendor}, "
        "served by a fresh process",
        [
            ("rows exported", f"{exported:,}", f"{figures['bytes'] / 1e6:,.0f} MB of {options.format.upper()}"),
            ("time to stream", f"{figures['seconds']:.1f} s", f"{exported / figures['seconds']:,.0f} rows/s"),
            ("server's peak RSS before the export", f"{figures['before']:.0f} MiB", "after start-up and one request"),
            ("server's peak RSS during the export", f"{figures['peak']:.0f} MiB", "target ≤ 200 MB"),
            ("  the kernel's count for the child", f"{kernel_peak:.0f} MiB", "RUSAGE_CHILDREN"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
