"""Retention on monthly partitions (issue 17): dropping one whole month of a history of issue 17's
shape while a writer records executions and a reader runs long analytics queries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python \
        bench/bench_retention_partitions.py [--rows 1000000] [--in-place] [--quick]

The history is ``history.py``'s (``--rows`` root executions over the 90 days ending now, COPY) in a
database of its own (``<name>_partitions``), or with ``--in-place`` in the database ``DATABASE_URL``
names, reused when it holds that history already (``make bench-10m`` runs it on the 10M database
after measuring it). It is converted in place with ``llm_agents_partitions --enable`` when it is not
partitioned yet (timed: what an existing installation runs once). The oldest whole month is then dropped as
``purge_executions`` drops it (``partitions.drop_month`` in a transaction), while

- a writer records one execution with 3 spans at a time through ``tracking.writer.write_payload``
  (the path of a ``record_executions`` worker), timing each write;
- a reader sums the last 90 days of root executions from the rows, one ~second-long read after
  another, so the drop has to get the table between reads (its ``lock_timeout`` and retries).

Targets: the drop ≤ 5 s at 10M executions, writers never blocked more than 200 ms. ``--quick``
(10,000 executions) is the CI smoke run. The database is left partitioned without the month, so
the next run generates its history again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time

from bench_retention import Writer
from common import median, percentile, print_table, setup_django


class Reader(threading.Thread):
    """Runs long reads of the executions table until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.durations: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection
        from django.db.models import Count, Sum
        from django.utils import timezone

        from llm_agents.models import Execution

        try:
            since = timezone.now() - dt.timedelta(days=90)
            while not self.stopping.is_set():
                started = time.perf_counter()
                Execution.objects.filter(parent__isnull=True, started_at__gte=since).aggregate(
                    n=Count("*"), cost=Sum("total_cost")
                )
                self.durations.append((time.perf_counter() - started) * 1000)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="dropping a month of partitions under writers and readers")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--in-place", action="store_true", help="use DATABASE_URL's database itself")
    parser.add_argument("--quick", action="store_true", help="10,000 executions, for CI smoke runs")
    options = parser.parse_args()
    rows = 10_000 if options.quick else options.rows
    vendor = setup_django("" if options.in_place else "partitions")
    if vendor != "postgresql":
        raise SystemExit("partitions are PostgreSQL's: set DATABASE_URL=postgres://…")

    import history
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import override_settings

    from llm_agents.db import partitions
    from llm_agents.models import Execution, Span

    history.ensure(rows, max_age_hours=24 * 30)  # a partitioned history is not regenerated for age
    conversion = ""
    if not partitions.is_partitioned(connection, Execution._meta.db_table):
        print(f"converting the tables of {rows:,} root executions to monthly partitions", flush=True)
        started = time.perf_counter()
        with override_settings(LLM_AGENTS={"PARTITIONING": "monthly"}):
            call_command("llm_agents_partitions", "--enable", "--no-partman")
        conversion = f"{time.perf_counter() - started:.0f} s"
    first = history.read_meta()["end"] - history.DAYS * 86400
    month = partitions.next_month(partitions.month_start(dt.datetime.fromtimestamp(first, dt.UTC)))
    found = [p for p in partitions.partitions(connection, Execution._meta.db_table) if p.start == month]
    if not found:
        raise SystemExit(
            f"no partition for {month:%Y-%m}: dropped by an earlier run? (--refill via bench_scale)"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {Execution._meta.db_table} WHERE started_at >= %s AND started_at < %s",
            [month, partitions.next_month(month)],
        )
        in_month = cursor.fetchone()[0]
    total = Execution.objects.count()

    writer, reader = Writer(), Reader()
    writer.start()
    reader.start()
    time.sleep(5)  # the writer's baseline, and the reader under way
    drop_started = time.perf_counter()
    with transaction.atomic():
        dropped = partitions.drop_month(connection, month)
    drop_seconds = time.perf_counter() - drop_started
    time.sleep(2)
    writer.stopping.set()
    reader.stopping.set()
    writer.join(timeout=60)
    reader.join(timeout=60)
    for thread in (writer, reader):
        if thread.error is not None:
            raise thread.error
    assert dropped.get(Execution._meta.db_table) == in_month, (dropped, in_month)

    before = [ms for at, ms in writer.durations if at < drop_started]
    during = [ms for at, ms in writer.durations if drop_started <= at < drop_started + drop_seconds]
    stall = max(during) if during else 0.0
    print_table(
        f"Dropping {month:%B %Y} on {vendor}: {in_month:,} of {total:,} executions and "
        f"{dropped.get(Span._meta.db_table, 0):,} spans",
        [
            ("conversion to partitions (--enable)", conversion or "already partitioned", "once per installation"),
            ("drop of the month (counts, detach, drop, rollups)", f"{drop_seconds:.2f} s", "target ≤ 5 s at 10M"),
            ("writer insert before the drop (p50 / max)", f"{median(before):.1f} / {max(before):.1f} ms",
             f"{len(before)} inserts"),
            ("writer insert during the drop (p50 / p95)",
             f"{median(during):.1f} / {percentile(during, 95):.1f} ms" if during else "-", f"{len(during)} inserts"),
            ("writer's longest insert during the drop", f"{stall:.0f} ms", "target ≤ 200 ms"),
            ("reader's reads (p50 / max)", f"{median(reader.durations):.0f} / {max(reader.durations):.0f} ms",
             f"{len(reader.durations)} reads"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
