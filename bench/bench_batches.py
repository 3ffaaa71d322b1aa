"""Batch throughput: flush 50,000 pending requests, then reconcile their 50,000 results.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_batches.py
    [--requests N] [--quick]

On PostgreSQL the run uses a scratch database ``<name>_batches`` beside the one named, created fresh
each time. The fake OpenAI Files and Batch API (``tests.fake_servers``) runs in a child process on 127.0.0.1, so
its memory is not counted here; the real ``openai`` SDK talks to it over HTTP. Flush covers claiming,
writing the JSONL, uploading it and creating the batch; reconcile covers ``poll()``: retrieving the
batch (the fake answers every line then), streaming the output file, recording one Execution and span
per result at batch prices, running a handler per result and marking each request. Peak memory is the
process's peak resident set during each phase (reset between phases where Linux allows it).

Targets (issue 6): flush ≤ 20 s, reconcile ≤ 60 s for 50,000.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, print_table, setup_django

SERVER = """
import sys
from tests.fake_servers import FakeServer
server = FakeServer("/v1").start()
print(server.url, flush=True)
sys.stdin.read()
"""


def reset_peak_memory() -> None:
    """Reset the kernel's peak RSS of this process (Linux ``clear_refs``); a no-op elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_database(url: str) -> str:
    """A fresh PostgreSQL database ``<name>_batches`` beside the one in ``url`` (dropped if it exists):
    50,000 executions a run would pile up in a shared benchmark database."""
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')}_batches"
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return parts._replace(path=f"/{name}").geturl()


def main() -> None:
    parser = argparse.ArgumentParser(description="Batch flush and reconcile throughput")
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="2,000 requests, for CI smoke runs")
    options = parser.parse_args()
    count = 2_000 if options.quick else options.requests
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        os.environ["DATABASE_URL"] = scratch_database(url)
    vendor = setup_django()

    from django.test import override_settings

    from llm_agents import batches
    from llm_agents.models import BatchRequest, Execution

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = server.stdout.readline().strip()
    settings = {
        "PROVIDERS": {
            "openai": {
                "class": "llm_agents.providers.openai.OpenAIProvider",
                "api_key": "bench",
                "base_url": url,
            }
        }
    }
    purpose = "bench_batches"
    try:
        with override_settings(LLM_AGENTS=settings):
            BatchRequest.objects.bulk_create(
                [
                    BatchRequest(
                        purpose=purpose,
                        model="gpt-4.1-mini",
                        payload={
                            "instructions": "Summarize the conversation in one sentence.",
                            "input": f"Customer {n}: my parcel has not arrived yet, can you check order {n}?",
                            "schema": None,
                            "temperature": 0.2,
                        },
                        routing={"conversation_id": n},
                    )
                    for n in range(count)
                ],
                batch_size=2_000,
            )

            reset_peak_memory()
            start = time.perf_counter()
            flushed = batches.flush()
            flush_seconds = time.perf_counter() - start
            flush_peak = peak_memory_mb()
            assert flushed.requests == count and not flushed.errors, flushed.as_dict()

            handled = 0

            def handler(request, result):
                nonlocal handled
                handled += 1

            batches.register_handler(purpose, handler)
            reset_peak_memory()
            start = time.perf_counter()
            polled = batches.poll()
            reconcile_seconds = time.perf_counter() - start
            reconcile_peak = peak_memory_mb()
            assert polled.succeeded == handled == count and not polled.errors, polled.as_dict()
            assert Execution.objects.filter(kind="batch", agent_type=purpose).count() == count
    finally:
        server.stdin.close()
        server.wait(timeout=10)

    print_table(
        f"Batches on {vendor}: {count:,} requests",
        [
            (f"flush {count:,} requests", f"{flush_seconds:.2f} s", "target ≤ 20 s for 50,000"),
            ("  peak memory (RSS)", f"{flush_peak:.0f} MB", ""),
            (f"reconcile {count:,} results", f"{reconcile_seconds:.2f} s", "target ≤ 60 s for 50,000"),
            ("  peak memory (RSS)", f"{reconcile_peak:.0f} MB", ""),
            ("  per result", f"{reconcile_seconds / count * 1000:.2f} ms", ""),
        ],
    )


if __name__ == "__main__":
    main()
