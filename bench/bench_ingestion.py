"""Ingestion: executions per second written by one ``record_executions`` worker process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_ingestion.py
    [--executions 50000] [--per-message 200] [--broker redis://127.0.0.1:6379/13] [--quick]

Messages like the ones ASYNC_LOGGING sends (root executions with 3 spans each, 200 per message)
are queued in Redis, then one worker (``--pool=solo``) drains them into the database; the clock
runs from the first message to the last row, once the worker has written a warm-up message. The
worker keeps its database connection for 1,000 tasks (``CELERY_DB_REUSE_MAX``, as docs/scaling.md
advises; without it Celery closes the connection after every task, so each message opens one). Runs on
a database of its own (``<name>_ingestion``), emptied first. Target (issue 9): ≥ 5,000 executions/s sustained.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import ROOT, print_table, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description="record_executions ingestion rate")
    parser.add_argument("--executions", type=int, default=50_000)
    parser.add_argument("--per-message", type=int, default=200)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    total = 2_000 if options.quick else options.executions
    vendor = setup_django("ingestion")

    import redis
    from celery import Celery
    from django.db import connection

    from llm_agents.models import Execution, Span
    from llm_agents.recording import ExecutionRecord, SpanRecord, encode_message, payload_for

    Span.objects.all().delete()
    Execution.objects.all().delete()
    redis.Redis.from_url(options.broker).flushdb()
    sender = Celery("bench", broker=options.broker, set_as_current=True)
    from llm_agents.tasks import record_executions

    messages = []
    for start in range(0, total, options.per_message):
        records = []
        for _ in range(min(options.per_message, total - start)):
            record = ExecutionRecord(kind="agent", agent_type="IngestAgent")
            record.fields.update(status="success", model_id="gpt-4o-mini", chosen_model_id="gpt-4o-mini",
                                 provider="openai", input_tokens=120, output_tokens=40, total_tokens=160,
                                 duration_ms=850, parameters={"query": "benchmark"}, response="x" * 200)  # fmt: skip
            retrieval = SpanRecord(name="retrieval", kind="retriever", status="ok", output=["doc"] * 3)
            llm = SpanRecord(name="gpt-4o-mini", kind="llm", status="ok", input_tokens=120, output_tokens=40)
            tool = SpanRecord(
                name="lookup", kind="tool", status="ok", parent=llm, input={"q": "x"}, output="y"
            )
            record.spans += [retrieval, llm, tool]
            records.append(record)
        messages.append(encode_message(payload_for(records)))  # as ASYNC_LOGGING sends them

    settings = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": options.broker,
           "CELERY_DB_REUSE_MAX": "1000",
           "DATABASE_URL": f"postgres://{settings['USER'] or 'postgres'}@{settings['HOST'] or '127.0.0.1'}:"
                           f"{settings['PORT'] or 5432}/{settings['NAME']}" if vendor == "postgresql"
                           else os.environ["DATABASE_URL"]}  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=solo", "--loglevel=ERROR",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # The clock starts once the worker has written a first message: its start-up is not ingestion.
        warm_up = ExecutionRecord(kind="agent", agent_type="WarmUpAgent")
        warm_up.fields.update(status="success")
        record_executions.apply_async(args=[encode_message(payload_for([warm_up]))])
        deadline = time.monotonic() + 120
        while not Execution.objects.filter(agent_type="WarmUpAgent").exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the record_executions worker did not start")
            time.sleep(0.2)
        Execution.objects.filter(agent_type="WarmUpAgent").delete()
        started = time.perf_counter()
        for message in messages:
            record_executions.apply_async(args=[message])
        while Execution.objects.count() < total:
            time.sleep(0.25)  # polling lightly, so the clock does not slow the worker
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    spans = Span.objects.count()
    rate = total / elapsed
    print_table(
        f"Ingestion by one record_executions worker on {vendor}",
        [
            ("executions written", f"{total:,}", f"{len(messages)} messages of {options.per_message}"),
            ("spans written", f"{spans:,}", "3 per execution"),
            ("elapsed", f"{elapsed:.2f} s", ""),
            ("executions per second", f"{rate:,.0f}", "target ≥ 5,000/s"),
        ],
    )
    sender.close()


if __name__ == "__main__":
    main()
