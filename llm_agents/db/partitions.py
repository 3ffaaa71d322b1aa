"""Monthly partitions of the executions and spans tables on PostgreSQL >= 13 (``PARTITIONING``).

PostgreSQL only, with no portable twin: SQLite has no partitions, and the setting does nothing
there. Each table becomes ``PARTITION BY RANGE (started_at)`` with one partition per calendar month
(UTC) and a DEFAULT partition that catches rows outside every month (a clock far off, a month not
created yet), so that no write ever fails for want of a partition.

- :func:`enable` converts the tables in place, in one transaction.
- :func:`ensure` creates the coming months (pg_partman's maintenance when it manages the table).
- :func:`partitions` lists them; :func:`drop_month` drops one month of both tables (retention).

PostgreSQL wants the partition key in every unique constraint: the primary key becomes
``(id, started_at)``, and foreign keys *to* these tables (which need ``id`` alone unique) are
dropped. Django emulates ``on_delete`` itself, so the ORM's cascades are unchanged
(docs/scaling.md#monthly-partitions).
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import OperationalError, connections, router, transaction

from ..conf import app_settings
from .rollups import ROLLUP_TABLES  # a dropped month's rows leave the rollups with it (no trigger sees it)

#: The coming months kept created beyond the current one.
DEFAULT_AHEAD = 3
#: The first PostgreSQL release whose partitioned tables carry everything used here (row triggers
#: and statement triggers with transition tables on the parent, BEFORE triggers, logical replicas).
MINIMUM_SERVER_VERSION = 130000

_BOUND = re.compile(r"FOR VALUES FROM \((.+)\) TO \((.+)\)")


class PartitioningError(Exception):
    """Partitions cannot be enabled or kept here (not PostgreSQL >= 13, or a table's shape)."""


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its table name, its months' bounds (None for the DEFAULT partition), and the
    planner's estimate of its rows (-1 before the first ANALYZE on PostgreSQL >= 14)."""

    parent: str
    name: str
    start: dt.datetime | None
    end: dt.datetime | None
    rows: int

    @property
    def is_default(self) -> bool:
        return self.start is None


@dataclass(slots=True)
class Conversion:
    """What :func:`enable` did to one table."""

    table: str
    rows: int = 0
    partitions: list[str] = field(default_factory=list)
    dropped_foreign_keys: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    #: Triggers of the old table, gone with it (the rollups' are installed again by :func:`enable`).
    dropped_triggers: list[str] = field(default_factory=list)
    partman: bool = False


def tables() -> tuple[str, str]:
    """The executions and spans tables' names."""
    return (
        apps.get_model("llm_agents", "Execution")._meta.db_table,
        apps.get_model("llm_agents", "Span")._meta.db_table,
    )


def is_supported(connection: Any) -> bool:
    """True on PostgreSQL >= 13, the databases whose tables can be partitioned here."""
    return connection.vendor == "postgresql" and connection.pg_version >= MINIMUM_SERVER_VERSION


def is_partitioned(connection: Any, table: str) -> bool:
    """True when ``table`` is a partitioned table (``relkind = 'p'``)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return bool(row and row[0] == "p")


def month_start(moment: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of ``moment``'s calendar month in UTC."""
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def months(first: dt.datetime, last: dt.datetime) -> Iterator[dt.datetime]:
    """The starts of the months from ``first``'s to ``last``'s, both included."""
    month, last = month_start(first), month_start(last)
    while month <= last:
        yield month
        month = next_month(month)


def _literal(moment: dt.datetime) -> str:
    return f"'{moment.astimezone(dt.UTC).isoformat()}'"


def _bound(text: str) -> dt.datetime | None:
    text = text.strip()
    if text.upper() in ("MINVALUE", "MAXVALUE"):
        return None
    return dt.datetime.fromisoformat(text.strip("'"))


def partitions(connection: Any, table: str) -> list[Partition]:
    """The partitions of ``table``, months in order and the DEFAULT partition last; [] when the table
    is not partitioned."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound, estimate in rows:
        match = _BOUND.search(bound or "")
        start, end = (_bound(match.group(1)), _bound(match.group(2))) if match else (None, None)
        found.append(Partition(table, name, start, end, int(estimate)))
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda p: (p.is_default, p.start or far))


def partition_name(table: str, month: dt.datetime) -> str:
    """``<table>_pYYYY_MM``, the name pg_partman 4 gives a monthly partition."""
    return f"{table}_p{month:%Y_%m}"


def default_name(table: str) -> str:
    return f"{table}_default"


# -- pg_partman ------------------------------------------------------------------------------------


def partman_available(connection: Any) -> bool:
    """True when the server can load pg_partman (its package is installed there)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'")
        return cursor.fetchone() is not None


def partman_schema(connection: Any) -> tuple[str, str] | None:
    """``(schema, version)`` of the installed pg_partman extension, None when it is not installed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname, e.extversion FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'"
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def _qualified(connection: Any, table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)",
            [table],
        )
        (schema,) = cursor.fetchone()
    return f"{schema}.{table}"


def managed_by_partman(connection: Any, table: str) -> bool:
    """True when pg_partman keeps ``table``'s partitions (it is in partman's ``part_config``)."""
    installed = partman_schema(connection)
    if installed is None:
        return False
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {quote(installed[0])}.part_config WHERE parent_table = %s",
            [_qualified(connection, table)],
        )
        return cursor.fetchone() is not None


def _install_partman(connection: Any) -> tuple[str, str] | None:
    """Install pg_partman in schema ``partman`` unless it is installed; None when this role may not
    (a savepoint keeps the caller's transaction usable)."""
    installed = partman_schema(connection)
    if installed is not None:
        return installed
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE SCHEMA IF NOT EXISTS partman")
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
    except Exception:  # noqa: BLE001 — not a superuser, or the files are unreadable: plain SQL then
        return None
    return partman_schema(connection)


def _partman_create_parent(
    connection: Any, table: str, first: dt.datetime, ahead: int, installed: tuple[str, str]
) -> None:
    schema, version = installed
    quote = connection.ops.quote_name
    kind = "native" if version.startswith("4.") else "range"
    qualified = _qualified(connection, table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(schema)}.create_parent(p_parent_table := %s, p_control := 'started_at', "
            "p_type := %s, p_interval := '1 month', p_premake := %s, p_start_partition := %s)",
            [qualified, kind, ahead, first.strftime("%Y-%m-%d %H:%M:%S+00")],
        )
        # Create the coming months whether or not rows arrive (partman waits for data otherwise).
        cursor.execute(
            f"UPDATE {quote(schema)}.part_config SET infinite_time_partitions = true, premake = %s "
            "WHERE parent_table = %s",
            [ahead, qualified],
        )


# -- creating months -------------------------------------------------------------------------------


def create_month(connection: Any, table: str, month: dt.datetime) -> str | None:
    """Create the partition of ``table`` for the month starting ``month``; returns its name, None when
    a partition already covers it. Rows of that month waiting in the DEFAULT partition move into it
    (PostgreSQL refuses a new partition whose rows the DEFAULT partition holds)."""
    month = month_start(month)
    end = next_month(month)
    existing = partitions(connection, table)
    if any(p.start is not None and p.end is not None and p.start < end and month < p.end for p in existing):
        return None
    quote = connection.ops.quote_name
    name = partition_name(table, month)
    bounds = f"FOR VALUES FROM ({_literal(month)}) TO ({_literal(end)})"
    default = next((p.name for p in existing if p.is_default), None)
    waiting = False
    if default is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {quote(default)} WHERE started_at >= %s AND started_at < %s LIMIT 1",
                [month, end],
            )
            waiting = cursor.fetchone() is not None
    with connection.cursor() as cursor:
        if not waiting:
            cursor.execute(f"CREATE TABLE {quote(name)} PARTITION OF {quote(table)} {bounds}")
            return name
        # Moved as whole rows: statement triggers on the parent see no change (the rows stay).
        cursor.execute(
            f"CREATE TABLE {quote(name)} (LIKE {quote(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING STORAGE)"
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM {quote(default)} WHERE started_at >= %s AND started_at < %s "
            f"RETURNING *) INSERT INTO {quote(name)} SELECT * FROM moved",
            [month, end],
        )
        cursor.execute(f"ALTER TABLE {quote(table)} ATTACH PARTITION {quote(name)} {bounds}")
    return name


def ensure(connection: Any, *, ahead: int = DEFAULT_AHEAD, now: dt.datetime | None = None) -> list[str]:
    """Create the partitions of the current month and the ``ahead`` following ones of every
    partitioned table here; returns the names of those created. pg_partman's maintenance does it for
    the tables it manages. Tables that are not partitioned are left alone."""
    created: list[str] = []
    now = now or dt.datetime.now(dt.UTC)
    for table in tables():
        if not is_partitioned(connection, table):
            continue
        with transaction.atomic(using=connection.alias):
            before = {p.name for p in partitions(connection, table)}
            if managed_by_partman(connection, table):
                schema, _ = partman_schema(connection) or ("partman", "")
                quote = connection.ops.quote_name
                with connection.cursor() as cursor:
                    qualified = _qualified(connection, table)
                    cursor.execute(
                        f"UPDATE {quote(schema)}.part_config SET premake = GREATEST(premake, %s) "
                        "WHERE parent_table = %s",
                        [ahead, qualified],
                    )
                    cursor.execute(
                        f"SELECT {quote(schema)}.run_maintenance(p_parent_table := %s)", [qualified]
                    )
            # Plain SQL as well: it creates only what is still missing (partman's premake counts from
            # its newest partition with rows in some versions).
            for month in months(now, _add_months(now, ahead)):
                create_month(connection, table, month)
            created += [p.name for p in partitions(connection, table) if p.name not in before]
    return created


def maintain(*, ahead: int = DEFAULT_AHEAD) -> list[str]:
    """:func:`ensure` on the database the executions are written to, when ``PARTITIONING`` is
    ``"monthly"`` and that database is PostgreSQL >= 13 (else nothing); what ``ensure_partitions``
    runs."""
    if app_settings.PARTITIONING != "monthly":
        return []
    connection = connections[router.db_for_write(apps.get_model("llm_agents", "Execution"))]
    if not is_supported(connection):
        return []
    return ensure(connection, ahead=ahead)


def _add_months(moment: dt.datetime, count: int) -> dt.datetime:
    month = month_start(moment)
    for _ in range(count):
        month = next_month(month)
    return month


# -- converting ------------------------------------------------------------------------------------


def _fetch(connection: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _convert(
    connection: Any, table: str, *, ahead: int, partman: tuple[str, str] | None, now: dt.datetime
) -> Conversion:
    quote = connection.ops.quote_name
    result = Conversion(table)
    old = f"{table}_unpartitioned"
    oid = "to_regclass(%s)"
    primary = _fetch(
        connection,
        "SELECT con.conname, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint con "
        "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
        f"WHERE con.conrelid = {oid} AND con.contype = 'p' GROUP BY con.conname",
        [table],
    )
    if not primary:
        raise PartitioningError(f"{table} has no primary key.")
    ((primary_name, primary_columns),) = primary
    key_columns = [*primary_columns, *(["started_at"] if "started_at" not in primary_columns else [])]
    indexes = _fetch(
        connection,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisunique, "
        "EXISTS (SELECT 1 FROM unnest(i.indkey) AS k(attnum) JOIN pg_attribute a "
        "        ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE a.attname = 'started_at') "
        f"FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = {oid} "
        "AND NOT i.indisprimary ORDER BY c.relname",
        [table],
    )
    for name, _, unique, has_key in indexes:
        if unique and not has_key:
            raise PartitioningError(
                f"The unique index {name} of {table} does not contain started_at: PostgreSQL cannot keep "
                "it on a partitioned table."
            )
    # Foreign keys to this table need its id alone unique, which a partitioned table cannot promise.
    incoming = _fetch(
        connection,
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        f"WHERE contype = 'f' AND confrelid = {oid} ORDER BY 1, 2",
        [table],
    )
    # Foreign keys from this table to others are kept (recreated on the partitioned table).
    outgoing = _fetch(
        connection,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        f"WHERE contype = 'f' AND conrelid = {oid} AND confrelid <> conrelid ORDER BY 1",
        [table],
    )
    result.dropped_triggers = [
        name
        for (name,) in _fetch(
            connection,
            f"SELECT tgname FROM pg_trigger WHERE tgrelid = {oid} AND NOT tgisinternal ORDER BY 1",
            [table],
        )
    ]
    with connection.cursor() as cursor:
        for owner, name, _ in incoming:
            cursor.execute(f"ALTER TABLE {owner} DROP CONSTRAINT {quote(name)}")
            result.dropped_foreign_keys.append(f"{owner}.{name}")
        cursor.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(old)}")
        cursor.execute(
            f"ALTER TABLE {quote(old)} RENAME CONSTRAINT {quote(primary_name)} TO {quote(old + '_pkey')}"
        )
        for name, _ in outgoing:
            cursor.execute(f"ALTER TABLE {quote(old)} DROP CONSTRAINT {quote(name)}")
        cursor.execute(
            f"CREATE TABLE {quote(table)} (LIKE {quote(old)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            f"INCLUDING STORAGE INCLUDING COMMENTS, CONSTRAINT {quote(primary_name)} PRIMARY KEY "
            f"({', '.join(quote(c) for c in key_columns)})) PARTITION BY RANGE (started_at)"
        )
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') FROM {quote(old)} ORDER BY 1"
        )
        with_rows = [moment.replace(tzinfo=dt.UTC) for (moment,) in cursor.fetchall()]
    coming = list(months(now, _add_months(now, ahead)))
    if partman is not None:
        _partman_create_parent(connection, table, min([*with_rows, coming[0]]), ahead, partman)
        result.partman = True
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {quote(default_name(table))} PARTITION OF {quote(table)} DEFAULT")
    for month in sorted({*with_rows, *coming}):
        create_month(connection, table, month)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(table)} SELECT * FROM {quote(old)}")
        result.rows = cursor.rowcount
        cursor.execute(f"DROP TABLE {quote(old)}")
        for name, definition, _, _ in indexes:
            cursor.execute(definition)
            result.indexes.append(name)
        for name, definition in outgoing:
            cursor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}")
    result.partitions = [p.name for p in partitions(connection, table)]
    return result


def enable(
    connection: Any, *, ahead: int = DEFAULT_AHEAD, use_partman: bool = True, now: dt.datetime | None = None
) -> list[Conversion]:
    """Convert the executions and spans tables into monthly partitions, in place and in one
    transaction: each table is renamed, a partitioned table of the same name and columns is made,
    with a partition for every month holding rows and for the current and ``ahead`` coming months
    (pg_partman makes them when the server has it and ``use_partman``), the rows are copied over,
    the old table dropped and its indexes built anew on the partitioned one. Foreign keys pointing
    at these tables are dropped. The database's triggers of the rollups are installed again
    (``llm_agents.db.rollups.install_triggers``, when that module exists). Tables already partitioned
    are left alone; returns what was done to the others."""
    if not is_supported(connection):
        raise PartitioningError("Partitions need PostgreSQL 13 or later.")
    now = now or dt.datetime.now(dt.UTC)
    done: list[Conversion] = []
    with transaction.atomic(using=connection.alias):
        pending = [table for table in tables() if not is_partitioned(connection, table)]
        if not pending:
            return done
        partman = _install_partman(connection) if use_partman and partman_available(connection) else None
        with connection.cursor() as cursor:
            # Checks of deferred foreign keys waiting in an enclosing transaction run now: PostgreSQL
            # alters no table with pending trigger events.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            # Writers wait for the conversion instead of writing into the old table.
            cursor.execute(
                "LOCK TABLE "
                + ", ".join(connection.ops.quote_name(t) for t in pending)
                + " IN EXCLUSIVE MODE"
            )
        for table in pending:
            done.append(_convert(connection, table, ahead=ahead, partman=partman, now=now))
        install_rollup_triggers(connection)
        with connection.cursor() as cursor:
            for table in pending:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    return done


def install_rollup_triggers(connection: Any) -> bool:
    """Install the rollups' triggers on the (new) executions table, when the rollups module exists;
    returns whether it did."""
    try:
        rollups = importlib.import_module(f"{__package__}.rollups")
    except ImportError:
        return False
    install = getattr(rollups, "install_triggers", None)
    if install is None:
        return False
    install(connection)
    return True


# -- retention -------------------------------------------------------------------------------------


#: Dropping a month needs each table to itself for a moment (``DETACH PARTITION``). Waiting for that
#: behind a long read would queue every writer behind the wait, so the detach gives up after
#: ``DETACH_LOCK_TIMEOUT`` and is tried again after a pause, up to ``DETACH_ATTEMPTS`` times: writers
#: wait at most that long at a time.
DETACH_LOCK_TIMEOUT = "100ms"
DETACH_ATTEMPTS = 200
LOCK_NOT_AVAILABLE = "55P03"


def drop_month(connection: Any, month: dt.datetime) -> dict[str, int]:
    """Drop the partitions of the month starting ``month`` from both tables, and that month's rows of
    the rollup tables that exist; returns the rows dropped per table (planner's estimates are not
    used: the rows are counted first, before anything waits on them). Run inside the caller's
    transaction: the month's rollup rows are deleted first (no writer of another month waits for
    that), then writers wait from the detach to the commit (dropping two tables), and for each
    detach attempt at most ``DETACH_LOCK_TIMEOUT``."""
    month = month_start(month)
    end = next_month(month)
    quote = connection.ops.quote_name
    found = [
        (table, partition.name)
        for table in tables()
        for partition in partitions(connection, table)
        if partition.start == month and partition.end == end
    ]
    dropped: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table, name in found:
            cursor.execute(f"SELECT count(*) FROM {quote(name)}")
            dropped[table] = int(cursor.fetchone()[0])
        # The month's rollup rows go first: writers of other months never touch them, so deleting
        # them keeps nobody waiting, while after the detach every writer would wait for it.
        existing = set(connection.introspection.table_names(cursor))
        for rollup in ROLLUP_TABLES:
            if rollup in existing:
                cursor.execute(f"DELETE FROM {quote(rollup)} WHERE start >= %s AND start < %s", [month, end])
        if found:
            detach(connection, found)
        for _, name in found:
            cursor.execute(f"DROP TABLE {quote(name)}")
    return dropped


def detach(connection: Any, found: list[tuple[str, str]]) -> None:
    """Detach the partitions ``found`` ((table, partition) pairs) together, in the caller's
    transaction, writers waiting at most ``DETACH_LOCK_TIMEOUT`` at a time: each attempt is a
    savepoint whose rollback, when a lock is not had in ``DETACH_LOCK_TIMEOUT``, releases the locks
    it took, so writers are not kept waiting between attempts."""
    quote = connection.ops.quote_name
    for attempt in range(1, DETACH_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{DETACH_LOCK_TIMEOUT}'")
                for table, name in found:
                    cursor.execute(f"ALTER TABLE {quote(table)} DETACH PARTITION {quote(name)}")
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = DEFAULT")
            return
        except OperationalError as error:
            cause = error.__cause__
            code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
            if code != LOCK_NOT_AVAILABLE or attempt == DETACH_ATTEMPTS:
                raise
        time.sleep(min(0.02 * attempt, 1.0))


def orphan_executions(connection: Any, since: dt.datetime, until: dt.datetime) -> list[Any]:
    """The ids of the nested executions started in [``since``, ``until``) whose parent is gone (its
    month was dropped)."""
    quote = connection.ops.quote_name
    executions = quote(tables()[0])
    rows = _fetch(
        connection,
        f"SELECT c.id FROM {executions} c WHERE c.started_at >= %s AND c.started_at < %s "
        f"AND c.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {executions} p WHERE p.id = c.parent_id)",
        [since, until],
    )
    return [pk for (pk,) in rows]


def delete_orphan_spans(connection: Any, since: dt.datetime, until: dt.datetime) -> int:
    """Delete the spans started in [``since``, ``until``) whose execution is gone; returns how many."""
    quote = connection.ops.quote_name
    executions, spans = (quote(table) for table in tables())
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {spans} s WHERE s.started_at >= %s AND s.started_at < %s "
            f"AND NOT EXISTS (SELECT 1 FROM {executions} e WHERE e.id = s.execution_id)",
            [since, until],
        )
        return int(cursor.rowcount)


def months_before(connection: Any, cutoff: dt.datetime) -> list[dt.datetime]:
    """The starts of the months that end at or before ``cutoff`` and have a partition in either
    table, oldest first."""
    found = {
        p.start
        for table in tables()
        for p in partitions(connection, table)
        if p.start is not None and p.end is not None and p.end <= cutoff
    }
    return sorted(found)
