"""Retention: ``purge_executions`` deleting 1,000,000 executions (3 spans each) in chunks, while a
writer keeps recording executions.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_retention.py
    [--rows 1000000] [--batch-size 10000] [--quick]

Runs on a database of its own (``<name>_retention``), emptied and filled each time: ``--rows`` root
executions over the last 90 days with 3 spans each, all older than the cutoff (``--days 0``). The
purge is ``retention.purge``, what the command and the Celery task run, in this process; a writer thread (its own database
connection) records one execution with 3 spans at a time through ``tracking.writer.write_payload``, the
path a ``record_executions`` worker takes, for the whole purge and for a few seconds before it.
The figures: the purge's wall time and rate, its longest chunk, and the writer's median and
longest insert before and during the purge. "Not blocked for more than a chunk" holds when the
writer's longest insert during the purge is shorter than the longest chunk.

Target (issue 9): ≤ 60 s for 1,000,000 executions, writers not blocked for more than a chunk.
``--quick`` (10,000 executions) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import threading
import time

from common import fill_executions, median, percentile, print_table, setup_django


class Writer(threading.Thread):
    """Records executions one at a time until stopped, timing each write."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.durations: list[tuple[float, float]] = []  # (when it started, how long it took in ms)
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection

        from llm_agents.tracking.records import ExecutionRecord, SpanRecord
        from llm_agents.tracking.rows import payload_for, to_message
        from llm_agents.tracking.writer import write_payload

        try:
            while not self.stopping.is_set():
                record = ExecutionRecord(
                    kind="agent", agent_type="WriterAgent", status="success", model_id="gpt-4o-mini",
                    input_tokens=120, output_tokens=40, total_tokens=160, duration_ms=850,
                )  # fmt: skip
                llm = SpanRecord(
                    name="gpt-4o-mini", kind="llm", status="ok", input_tokens=120, output_tokens=40
                )
                record.spans += [SpanRecord(name="retrieval", kind="retriever", status="ok"), llm,
                                 SpanRecord(name="lookup", kind="tool", status="ok", parent=llm)]  # fmt: skip
                message = to_message(payload_for([record]))
                started = time.perf_counter()
                write_payload(message)
                self.durations.append((started, (time.perf_counter() - started) * 1000))
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="purge_executions time, and a concurrent writer's stalls")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, help="root executions per chunk (default: purge's own)")
    parser.add_argument("--quick", action="store_true", help="10,000 executions, for CI smoke runs")
    options = parser.parse_args()
    rows = 10_000 if options.quick else options.rows
    vendor = setup_django("retention")

    from llm_agents import retention
    from llm_agents.models import Execution, Span

    batch_size = options.batch_size or retention.DEFAULT_BATCH_SIZE

    print(f"filling {rows:,} executions with 3 spans each", flush=True)
    fill_executions(rows, days=90, spans=3)
    spans_before = Span.objects.count()

    chunk_times: list[float] = []
    last = [0.0]

    def progress(result: retention.PurgeResult) -> None:  # called after each chunk
        now = time.perf_counter()
        chunk_times.append((now - last[0]) * 1000)
        last[0] = now

    writer = Writer()
    writer.start()
    time.sleep(3)  # the writer's baseline, before the purge
    purge_started = last[0] = time.perf_counter()
    result = retention.purge(0, batch_size=batch_size, progress=progress)
    purge_seconds = time.perf_counter() - purge_started
    time.sleep(1)
    writer.stopping.set()
    writer.join(timeout=30)
    if writer.error is not None:
        raise writer.error

    before = [ms for at, ms in writer.durations if at < purge_started]
    during = [ms for at, ms in writer.durations if purge_started <= at < purge_started + purge_seconds]
    remaining = Execution.objects.exclude(agent_type="WriterAgent").count()
    assert remaining == 0, f"{remaining} old executions left"
    # The writer's rows from before the purge started are older than its cutoff and go too.
    written = Execution.objects.filter(agent_type="WriterAgent").count()
    assert written >= len(during) - 1, (written, len(during))
    longest_chunk = max(chunk_times)
    stall = max(during) if during else 0.0
    print_table(
        f"purge_executions on {vendor}: {rows:,} executions and {spans_before:,} spans, "
        f"chunks of {batch_size:,} root executions",
        [
            ("purge wall time", f"{purge_seconds:.1f} s", "target ≤ 60 s for 1,000,000"),
            ("executions deleted per second", f"{rows / purge_seconds:,.0f}",
             f"{result.executions:,} executions and {result.spans:,} spans deleted"),
            ("chunks / median chunk / longest chunk", f"{len(chunk_times)} / {median(chunk_times):.0f} ms / {longest_chunk:.0f} ms", ""),
            ("writer insert before the purge (p50 / max)", f"{median(before):.1f} / {max(before):.1f} ms", f"{len(before)} inserts"),
            ("writer insert during the purge (p50 / p95)", f"{median(during):.1f} / {percentile(during, 95):.1f} ms", f"{len(during)} inserts"),
            ("writer's longest insert stall during the purge", f"{stall:.0f} ms",
             f"target ≤ one chunk (longest chunk {longest_chunk:.0f} ms): {'met' if stall <= longest_chunk else 'missed'}"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
