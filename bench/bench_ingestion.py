"""Ingestion: executions per second written by one ``record_executions`` worker process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_ingestion.py
    [--executions 50000] [--per-message 200] [--broker redis://127.0.0.1:6379/13] [--quick]

Messages like the ones ASYNC_LOGGING sends (root executions with 3 spans each, 200 per message)
are queued in Redis, then one worker process starts and drains them into the database; the clock
runs from the first message's row (a warm-up of one execution) to the last row. It runs twice,
alternately: with ``--pool=solo`` (one task at a time) and with ``--pool=threads --concurrency=2``
(the same single process; a task mostly waits on PostgreSQL, so two threads overlap the server's
work). The worker keeps its database connection for 1,000 tasks (``CELERY_DB_REUSE_MAX``, as
docs/scaling.md advises; without it Celery closes the connection after every task, so each message
opens one). Runs on a database of its own (``<name>_ingestion``), emptied before each run.
Target (issue 9): ≥ 5,000 executions/s sustained.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import ROOT, median, print_table, setup_django

POOLS = {"solo": ["--pool=solo"], "threads ×2": ["--pool=threads", "--concurrency=2"]}


def make_messages(total: int, per_message: int) -> list[str]:
    from llm_agents.tracking.records import ExecutionRecord, SpanRecord
    from llm_agents.tracking.rows import encode_message, payload_for

    messages = []
    for start in range(0, total, per_message):
        records = []
        for _ in range(min(per_message, total - start)):
            record = ExecutionRecord(
                kind="agent", agent_type="IngestAgent", status="success", model_id="gpt-4o-mini",
                chosen_model_id="gpt-4o-mini", provider="openai", input_tokens=120, output_tokens=40,
                total_tokens=160, duration_ms=850, parameters={"query": "benchmark"}, response="x" * 200,
            )  # fmt: skip
            retrieval = SpanRecord(name="retrieval", kind="retriever", status="ok", output=["doc"] * 3)
            llm = SpanRecord(name="gpt-4o-mini", kind="llm", status="ok", input_tokens=120, output_tokens=40)
            tool = SpanRecord(
                name="lookup", kind="tool", status="ok", parent=llm, input={"q": "x"}, output="y"
            )
            record.spans += [retrieval, llm, tool]
            records.append(record)
        messages.append(encode_message(payload_for(records)))  # as ASYNC_LOGGING sends them
    return messages


def empty_tables() -> None:
    """Empty the executions and spans (TRUNCATE on PostgreSQL: no dead rows for autovacuum to clean
    up while the next run writes)."""
    from django.db import connection

    from llm_agents.models import Execution, Span

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {Span._meta.db_table}, {Execution._meta.db_table} CASCADE")
    else:
        Span.objects.all().delete()
        Execution.objects.all().delete()


def ingest(messages: list[str], total: int, pool: list[str], env: dict[str, str]) -> float:
    """Seconds one worker process with ``pool`` takes to write ``messages`` (``total`` executions)."""
    from llm_agents.models import Execution, Span
    from llm_agents.tasks import record_executions
    from llm_agents.tracking.records import ExecutionRecord
    from llm_agents.tracking.rows import encode_message, payload_for

    empty_tables()
    # Everything is queued before the worker starts, so the publishing does not share the machine
    # with it; the clock starts once the worker has written the first message, a warm-up of one
    # execution (its start-up is not ingestion), and stops when the last row is there.
    warm_up = ExecutionRecord(kind="agent", agent_type="WarmUpAgent", status="success")
    record_executions.apply_async(args=[encode_message(payload_for([warm_up]))])
    for message in messages:
        record_executions.apply_async(args=[message])
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", *pool, "--loglevel=ERROR",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not Execution.objects.filter(agent_type="WarmUpAgent").exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the record_executions worker did not start")
            time.sleep(0.01)
        started = time.perf_counter()
        while Execution.objects.count() < total + 1:
            time.sleep(0.25)  # polling lightly, so the clock does not slow the worker
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    if Span.objects.count() != 3 * total:
        raise SystemExit(f"expected {3 * total:,} spans, found {Span.objects.count():,}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="record_executions ingestion rate")
    parser.add_argument("--executions", type=int, default=50_000)
    parser.add_argument("--per-message", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each pool, alternating")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    total = 2_000 if options.quick else options.executions
    rounds = 1 if options.quick else options.rounds
    vendor = setup_django("ingestion")

    import redis
    from celery import Celery
    from django.db import connection

    redis.Redis.from_url(options.broker).flushdb()
    sender = Celery("bench", broker=options.broker, set_as_current=True)
    messages = make_messages(total, options.per_message)
    settings = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": options.broker,
           "CELERY_DB_REUSE_MAX": "1000",
           "DATABASE_URL": f"postgres://{settings['USER'] or 'postgres'}@{settings['HOST'] or '127.0.0.1'}:"
                           f"{settings['PORT'] or 5432}/{settings['NAME']}" if vendor == "postgresql"
                           else os.environ["DATABASE_URL"]}  # fmt: skip
    elapsed: dict[str, list[float]] = {name: [] for name in POOLS}
    for _ in range(rounds):
        for name, pool in POOLS.items():
            elapsed[name].append(ingest(messages, total, pool, env))
    rows = [
        (
            "executions per run",
            f"{total:,}",
            f"{len(messages)} messages of {options.per_message}, 3 spans each",
        ),
    ]
    for name, runs in elapsed.items():
        rows.append(
            (
                f"one process, {name}: executions/s",
                f"{total / median(runs):,.0f}",
                f"median of {len(runs)} ({', '.join(f'{total / run:,.0f}' for run in runs)}); target ≥ 5,000/s",
            )
        )
    print_table(f"Ingestion by one record_executions worker process on {vendor}", rows)
    sender.close()


if __name__ == "__main__":
    main()
