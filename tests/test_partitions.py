"""Monthly partitions (PARTITIONING, SPEC §20): the in-place conversion of a populated database,
the ORM and the tracking writes afterwards, creating the coming months (plain SQL and pg_partman),
and retention dropping whole months. PostgreSQL's; on SQLite the setting does nothing and the
command says so."""

from __future__ import annotations

import datetime as dt
import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from llm_agents import Agent, Param, retention, span, trace
from llm_agents.db import fastpaths, partitions
from llm_agents.models import BatchRequest, Execution, Span
from llm_agents.tasks import ensure_partitions
from llm_agents.testing import fake_llm
from tests.factories import BatchRequestFactory, ExecutionFactory, PromptVersionFactory, SpanFactory
from tests.test_rollups import assert_exact

pytestmark = pytest.mark.django_db

POSTGRESQL = connection.vendor == "postgresql"
postgresql_only = pytest.mark.skipif(not POSTGRESQL, reason="partitions are PostgreSQL's")
MONTHLY = override_settings(LLM_AGENTS={"PARTITIONING": "monthly"})
EXECUTIONS, SPANS = "llm_agents_execution", "llm_agents_span"


class Finder(Agent):
    model = "gpt-4o-mini"
    query = Param(required=True)

    def user_prompt(self):
        return f"Find {self.query}"


def run(*args: str) -> str:
    out = StringIO()
    call_command("llm_agents_partitions", *args, stdout=out)
    return out.getvalue()


def family(started: dt.datetime, *, batch: bool = False) -> Execution:
    """A root with two spans, a child and a grandchild (with a span), and optionally a batch request."""
    root = ExecutionFactory(started_at=started, prompt_version=PromptVersionFactory())
    SpanFactory(execution=root, started_at=started)
    parent_span = SpanFactory(execution=root, started_at=started + dt.timedelta(seconds=1))
    SpanFactory(execution=root, parent=parent_span, started_at=started + dt.timedelta(seconds=2))
    child = ExecutionFactory(parent=root, root_id=root.pk, started_at=started + dt.timedelta(seconds=1))
    grandchild = ExecutionFactory(parent=child, root_id=root.pk, started_at=started + dt.timedelta(seconds=2))
    SpanFactory(execution=grandchild, started_at=started + dt.timedelta(seconds=3))
    if batch:
        BatchRequestFactory(execution=root)
    return root


def populate(now: dt.datetime) -> list[Execution]:
    """Families over five months before now, one in the current month."""
    return [family(now - dt.timedelta(days=days), batch=days % 2 == 0) for days in (130, 95, 70, 40, 12, 1)]


def snapshot() -> tuple[list[dict], list[dict], list[tuple]]:
    return (
        list(Execution.objects.order_by("pk").values()),
        list(Span.objects.order_by("pk").values()),
        list(BatchRequest.objects.order_by("pk").values_list("pk", "execution_id")),
    )


def primary_key(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attname",
            [table],
        )
        return [name for (name,) in cursor.fetchall()]


def index_names(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {name for (name,) in cursor.fetchall()}


def foreign_keys_to(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND confrelid = %s::regclass", [table]
        )
        return [name for (name,) in cursor.fetchall()]


def foreign_keys_of(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass",
            [table],
        )
        return [name for (name,) in cursor.fetchall()]


def months_of(table: str) -> list[dt.datetime | None]:
    return [p.start for p in partitions.partitions(connection, table)]


# -- SQLite ----------------------------------------------------------------------------------------


@pytest.mark.skipif(POSTGRESQL, reason="the SQLite answers")
def test_on_sqlite_enable_fails_and_the_rest_does_nothing():
    with pytest.raises(CommandError, match="PostgreSQL"):
        run("--enable")
    assert "PostgreSQL" in run("--status")
    with MONTHLY:
        assert ensure_partitions.delay().get() == []
        old = family(timezone.now() - dt.timedelta(days=40))
        recent = family(timezone.now() - dt.timedelta(days=2))
        result = retention.purge(30)
    assert (result.months, result.executions, result.spans) == (0, 3, 4)
    assert not Execution.objects.filter(pk=old.pk).exists()
    assert Execution.objects.filter(root_id=recent.pk).count() == 2


# -- the conversion ----------------------------------------------------------------------------------


@postgresql_only
def test_enable_converts_a_populated_database_in_place():
    now = timezone.now()
    populate(now)
    before = snapshot()
    indexes_before = index_names(EXECUTIONS) | index_names(SPANS)
    assert "llm_exec_search_idx" in indexes_before  # migration 0009's GIN index

    out = run("--enable", "--no-partman")

    assert "foreign keys dropped" in out and "llm_agents_batchrequest" in out
    assert partitions.is_partitioned(connection, EXECUTIONS) and partitions.is_partitioned(connection, SPANS)
    assert snapshot() == before
    assert primary_key(EXECUTIONS) == ["id", "started_at"] and primary_key(SPANS) == ["id", "started_at"]
    assert foreign_keys_to(EXECUTIONS) == []
    assert foreign_keys_of(EXECUTIONS) == ["llm_agents_promptversion"]
    assert index_names(EXECUTIONS) | index_names(SPANS) == indexes_before
    # Every month holding rows, the current month and the three after it, and the DEFAULT partition.
    expected = {partitions.month_start(e.started_at) for e in Execution.objects.all()}
    expected |= set(partitions.months(now, now + dt.timedelta(days=3 * 31)))
    assert set(months_of(EXECUTIONS)[:-1]) == expected and months_of(EXECUTIONS)[-1] is None
    assert all(p.rows >= 0 for p in partitions.partitions(connection, EXECUTIONS))  # analyzed
    # The admin's estimated count of an unfiltered list adds up the partitions' statistics.
    assert fastpaths.row_estimate_postgresql(Execution.objects.all()) == Execution.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {EXECUTIONS}_default")
        assert cursor.fetchone() == (0,)

    assert "partitioned already" in run("--enable")


@postgresql_only
def test_the_orm_and_tracking_work_on_partitioned_tables(staff_client):
    now = timezone.now()
    roots = populate(now)
    run("--enable", "--no-partman")

    created = ExecutionFactory(started_at=now - dt.timedelta(days=200))  # before every month: DEFAULT
    SpanFactory(execution=created, started_at=created.started_at)
    Execution.objects.filter(pk=created.pk).update(status=Execution.Status.ERROR)
    created.refresh_from_db()
    assert created.status == "error"
    created.started_at = now  # moves the row to another partition
    created.save()
    assert Execution.objects.filter(started_at=now).get() == created

    # The ORM's cascade: nested executions and spans deleted, batch requests unlinked.
    doomed = roots[0]
    doomed_id = doomed.pk
    request = BatchRequest.objects.get(execution=doomed)
    doomed.delete()
    assert not Execution.objects.filter(root_id=doomed_id).exists()
    assert not Span.objects.exclude(execution_id__in=Execution.objects.values("pk")).exists()
    request.refresh_from_db()
    assert request.execution_id is None

    # The tracking writes: a trace (its row written at the start, upserted at the end) around an
    # agent call (a nested execution) and a span.
    with fake_llm() as llm:
        llm.respond("found")
        with trace("partitioned") as traced:
            with span("step"):
                pass
            Finder.call(query="x")
    root = Execution.objects.get(pk=traced.execution_id)
    assert (root.status, root.children.get().agent_type) == ("success", "Finder")
    assert Execution.objects.filter(pk=traced.execution_id).count() == 1
    assert {s.name for s in root.spans.all()} == {"step", "Finder"}

    response = staff_client.get(reverse("admin:llm_agents_execution_changelist"))
    assert response.status_code == 200
    response = staff_client.get(reverse("admin:llm_agents_execution_changelist"), {"q": "SupportAgent"})
    assert response.status_code == 200
    assert staff_client.get(reverse("admin:llm_agents_execution_change", args=[root.pk])).status_code == 200


@postgresql_only
def test_enable_installs_the_rollup_triggers_again_on_the_partitioned_table():
    """The old table's triggers go with it; the rollups' are installed again on the partitioned
    table (once it holds the rows, so none is counted twice), and keep the rollups exact."""
    populate(timezone.now())
    assert_exact(spend_current=False)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE inserted_rows (n int)")
        cursor.execute(
            "CREATE FUNCTION count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO inserted_rows SELECT count(*) FROM new_rows; RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER hosts_trigger AFTER INSERT ON {EXECUTIONS} REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION count_inserted()"
        )
    out = run("--enable", "--no-partman")
    assert "triggers of the old table (the rollups' are installed again): hosts_trigger" in out
    assert partitions.is_partitioned(connection, EXECUTIONS)
    assert_exact(spend_current=False)  # the copy into the partitions counted nothing twice
    ExecutionFactory.create_batch(3)
    Execution.objects.filter(parent__isnull=True).order_by("started_at").first().delete()
    Execution.objects.filter(parent__isnull=True).update(status="error")
    assert_exact(spend_current=False)


@postgresql_only
def test_ensure_creates_the_coming_months_and_moves_waiting_rows_out_of_default():
    now = timezone.now()
    populate(now)
    run("--enable", "--no-partman", "--ahead", "1")
    far = now + dt.timedelta(days=6 * 31)
    waiting = ExecutionFactory(started_at=far)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {EXECUTIONS}_default")
        assert cursor.fetchone() == (1,)

    with MONTHLY:
        created = ensure_partitions.delay(ahead=7).get()

    assert partitions.partition_name(EXECUTIONS, partitions.month_start(far)) in created
    assert len(created) == 2 * 6  # months 2..7 ahead, both tables
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {EXECUTIONS}_default")
        assert cursor.fetchone() == (0,)
    assert Execution.objects.get(started_at=far) == waiting
    assert "Created 0 partitions." in run("--ensure", "--ahead", "7")
    with override_settings(LLM_AGENTS={}):
        assert ensure_partitions.delay(ahead=9).get() == []  # PARTITIONING None: nothing


@postgresql_only
def test_status_lists_partitions_with_row_estimates():
    populate(timezone.now())
    assert "not partitioned" in run("--status")
    run("--enable", "--no-partman")
    out = run("--status")
    assert f"{EXECUTIONS}: " in out and f"{SPANS}: " in out and "(plain SQL)" in out
    assert f"{EXECUTIONS}_default  DEFAULT" in out and "rows" in out


@postgresql_only
def test_pg_partman_makes_and_keeps_the_partitions_when_the_server_has_it():
    if not partitions.partman_available(connection):
        pytest.skip("the server has no pg_partman (Debian: postgresql-15-partman); CI installs it")
    now = timezone.now()
    populate(now)
    before = snapshot()

    out = run("--enable")

    assert "(pg_partman)" in out
    assert snapshot() == before
    assert partitions.managed_by_partman(connection, EXECUTIONS)
    assert partitions.managed_by_partman(connection, SPANS)
    assert months_of(EXECUTIONS)[-1] is None  # partman's DEFAULT partition
    last = max(m for m in months_of(EXECUTIONS) if m is not None)
    assert last >= partitions.month_start(now + dt.timedelta(days=3 * 31))
    with MONTHLY:
        created = ensure_partitions.delay(ahead=6).get()
    assert (
        partitions.partition_name(SPANS, partitions.month_start(now + dt.timedelta(days=6 * 31))) in created
    )
    assert "(pg_partman)" in run("--status")
    with trace("after partman"):
        pass
    assert Execution.objects.filter(agent_type="after partman").count() == 1


# -- retention -------------------------------------------------------------------------------------


def rollup_starts() -> list[dt.datetime]:
    """The first hour of the hourly rollups, per month."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('month', start AT TIME ZONE 'UTC') FROM llm_agents_rollup_hourly GROUP BY 1"
        )
        return sorted(month.replace(tzinfo=dt.UTC) for (month,) in cursor.fetchall())


@postgresql_only
@MONTHLY
def test_purge_drops_whole_months_and_deletes_rows_only_in_the_boundary_month():
    now = timezone.now()
    cutoff = now - dt.timedelta(days=45)
    boundary = partitions.month_start(cutoff)
    if cutoff - boundary < dt.timedelta(hours=2):
        cutoff_day = boundary + dt.timedelta(hours=2)  # keep room for rows before the cutoff
        days = (now - cutoff_day).days
        cutoff = now - dt.timedelta(days=days)
    else:
        days = 45
    old = [family(boundary - dt.timedelta(days=40)), family(boundary - dt.timedelta(days=3))]
    # A run that crossed the month's end: its root goes with the month, its child and span stay behind.
    crossing = family(boundary - dt.timedelta(minutes=30))
    straggler = ExecutionFactory(
        parent=crossing, root_id=crossing.pk, started_at=boundary + dt.timedelta(minutes=5)
    )
    late_span = SpanFactory(execution=crossing, started_at=boundary + dt.timedelta(minutes=1))
    before_cutoff = family(boundary + (cutoff - boundary) / 2, batch=True)
    after_cutoff = [family(cutoff + dt.timedelta(hours=1)), family(now - dt.timedelta(days=1))]
    run("--enable", "--no-partman")
    assert min(rollup_starts()) < boundary
    dropped_months = partitions.months_before(connection, cutoff)
    assert dropped_months and max(dropped_months) < boundary

    result = retention.purge(days)

    assert result.months == len(dropped_months)
    kept_months = [m for m in months_of(EXECUTIONS) if m is not None]
    assert min(kept_months) == boundary
    assert min(m for m in months_of(SPANS) if m is not None) == boundary
    gone = [*old, crossing, before_cutoff]
    assert not Execution.objects.filter(pk__in=[e.pk for e in gone]).exists()
    assert not Execution.objects.filter(root_id__in=[e.pk for e in gone]).exists()
    assert not Execution.objects.filter(pk=straggler.pk).exists()
    assert not Span.objects.filter(pk=late_span.pk).exists()
    assert not Span.objects.exclude(execution_id__in=Execution.objects.values("pk")).exists()
    assert BatchRequest.objects.get().execution_id is None
    kept = set(Execution.objects.values_list("pk", flat=True))
    assert kept == {e.pk for root in after_cutoff for e in Execution.objects.filter(root_id=root.pk)} | {
        root.pk for root in after_cutoff
    }
    assert Span.objects.count() == 4 * len(after_cutoff)
    assert (result.executions, result.spans) == (3 * len(gone) + 1, 4 * len(gone) + 1)
    # The dropped months' rollups went with them; the rest equal a rebuild of the rows that stay.
    assert min(rollup_starts()) == boundary
    assert_exact(spend_current=False)
    assert retention.purge(days).executions == 0


@postgresql_only
def test_purge_of_partitioned_tables_without_the_setting_deletes_rows():
    now = timezone.now()
    populate(now)
    run("--enable", "--no-partman")
    months = len(months_of(EXECUTIONS))
    result = retention.purge(60)
    assert result.months == 0 and result.executions == 3 * 3
    assert len(months_of(EXECUTIONS)) == months


@postgresql_only
@MONTHLY
def test_purge_executions_reports_the_months_dropped():
    now = timezone.now()
    boundary = partitions.month_start(now - dt.timedelta(days=100))
    family(boundary - dt.timedelta(days=10))
    family(now - dt.timedelta(days=1))
    run("--enable", "--no-partman")
    out = StringIO()
    call_command("purge_executions", "--days", "100", stdout=out)
    assert "Deleted 3 executions and 4 spans (monthly partitions dropped: 1)." in out.getvalue()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_detaching_behind_a_long_read_does_not_queue_writers_behind_it():
    """A DETACH waiting for a long read would hold every writer queued behind it: it gives up after
    a moment and tries again, so a write goes through while the read goes on, and the partition is
    detached once the read is over. (A partitioned table of the test's own: converting the product's
    tables for real would outlive the test.)"""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE detach_demo (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
            "CREATE TABLE detach_demo_old PARTITION OF detach_demo FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');"
            "CREATE TABLE detach_demo_now PARTITION OF detach_demo FOR VALUES FROM ('2020-02-01') TO (MAXVALUE);"
            "INSERT INTO detach_demo VALUES ('2020-01-15'), (now())"
        )  # fmt: skip
    reader = connection.copy()
    reader.set_autocommit(False)
    timings: dict[str, float] = {}
    errors: list[BaseException] = []

    def in_thread(name: str, work) -> threading.Thread:
        def target() -> None:
            started = time.perf_counter()
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors.append(error)
            finally:
                timings[name] = time.perf_counter() - started
                connections.close_all()

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    def drop() -> None:
        with transaction.atomic():
            partitions.detach(connection, [("detach_demo", "detach_demo_old")])

    def write() -> None:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO detach_demo VALUES (now())")

    try:
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM detach_demo")  # holds the table until it ends
        dropping = in_thread("drop", drop)
        time.sleep(0.5)  # the detach is now trying to take the table
        writing = in_thread("write", write)
        writing.join(timeout=10)
        assert "write" in timings and dropping.is_alive(), (
            "the detach went through while the read held the table"
        )
        time.sleep(1.0)
    finally:
        reader.rollback()
        reader.close()
    try:
        dropping.join(timeout=30)
        assert not errors, errors
        assert timings["write"] < 1.0  # not the ~1.5 s the read went on for after the detach began
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'detach_demo'::regclass"
            )
            assert [row[0] for row in cursor.fetchall()] == ["detach_demo_now"]
            cursor.execute("SELECT count(*) FROM detach_demo")
            assert cursor.fetchone()[0] == 2
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS detach_demo, detach_demo_old")
