"""The SQL that keeps the rollups (``llm_agents.models.rollups``) exact: triggers and rebuilds.

Rollups are kept by the database itself, in the transaction that writes the rows, whatever writes
them (SPEC section 20):

- on PostgreSQL, statement-level ``AFTER INSERT / UPDATE / DELETE`` triggers with transition tables
  (one pass per statement, however many rows it wrote: a ``bulk_create`` or a COPY of thousands of
  rows is one upsert statement over every rollup table, :func:`one_upsert`, and for an update or a
  delete one cleanup statement) and an ``AFTER TRUNCATE`` trigger that empties the rollups;
- on SQLite, row-level triggers running the same upserts one table at a time for each row.

Both run the same upserts, built here: a written root execution adds its contributions (see
:mod:`llm_agents.models.rollups`) and an updated or deleted one takes its old contributions away, so
an update that changes nothing the rollups keep adds and removes the same amounts. Each statement
upserts its rows in key order, so concurrent writers take the rollup rows' locks in one order.

:func:`rebuild_day` runs the same statements over the rows of one UTC day, after emptying that day's
rollups; ``rebuild_aggregates`` calls it day by day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..failures import ERROR_CLASS_CATEGORIES, ERROR_MESSAGE_KEYWORDS, FAILED_STATUSES

RUNNING = "running"  # Execution.Status.RUNNING (this layer imports no model)

EXECUTIONS = "llm_agents_execution"
BUCKETS = "llm_agents_latency_bucket"
HOURLY, DAILY = "llm_agents_rollup_hourly", "llm_agents_rollup_daily"
HOURLY_TOTALS, DAILY_TOTALS = "llm_agents_totals_hourly", "llm_agents_totals_daily"
HOURLY_LATENCY, DAILY_LATENCY = "llm_agents_latency_hourly", "llm_agents_latency_daily"
HOURLY_DURATIONS, DAILY_DURATIONS = "llm_agents_durations_hourly", "llm_agents_durations_daily"
HOURLY_MODEL_DURATIONS, DAILY_MODEL_DURATIONS = (
    "llm_agents_model_durations_hourly",
    "llm_agents_model_durations_daily",
)
ROLLUP_TABLES = (HOURLY, DAILY, HOURLY_LATENCY, DAILY_LATENCY, HOURLY_DURATIONS, DAILY_DURATIONS,
                 HOURLY_MODEL_DURATIONS, DAILY_MODEL_DURATIONS, HOURLY_TOTALS, DAILY_TOTALS)  # fmt: skip
DAILY_TABLES = (DAILY, DAILY_LATENCY, DAILY_DURATIONS, DAILY_MODEL_DURATIONS, DAILY_TOTALS)

KEYS = ("start", "kind", "agent_type", "agent_version", "model_id", "model_used", "tenant_id", "status",
        "error_category", "prompt_version_id")  # fmt: skip
TOTALS_KEYS = ("start", "agent_type", "model_used", "status", "error_category")
LATENCY_KEYS = ("start", "tenant_id", "model_used", "bucket")
DURATION_KEYS = ("start", "bucket")
# measure -> its contribution, from the columns of ``contributions()``.
MEASURES = {
    "executions": "sign * is_primary",
    "input_tokens": "sign * is_primary * input_tokens",
    "output_tokens": "sign * is_primary * output_tokens",
    "cached_tokens": "sign * is_primary * cached_tokens",
    "cache_write_tokens": "sign * is_primary * cache_write_tokens",
    "reasoning_tokens": "sign * is_primary * reasoning_tokens",
    "total_tokens": "sign * is_primary * total_tokens",
    "input_cost": "sign * is_primary * input_cost",
    "output_cost": "sign * is_primary * output_cost",
    "total_cost": "sign * is_primary * total_cost",
    "cache_hits": "sign * is_primary * cache_hit",
    "duration_sum": "sign * is_primary * COALESCE(duration_ms, 0)",
    "duration_count": "sign * is_primary * has_duration",
    "model_executions": "sign * used",
    "model_tokens": "sign * spent_tokens",
    "model_cost": "sign * spent_cost",
    "model_duration_sum": "sign * used * COALESCE(duration_ms, 0)",
    "model_duration_count": "sign * used * has_duration",
}
LATENCY_MEASURES = {"executions": "sign * is_primary", "model_executions": "sign * used"}
# What a contribution reads of an execution row.
COLUMNS = ("kind", "agent_type", "agent_version", "model_id", "chosen_model_id", "tenant_id", "status",
           "error_class", "error_message", "prompt_version_id", "input_tokens", "output_tokens", "cached_tokens",
           "cache_write_tokens", "reasoning_tokens", "total_tokens", "input_cost", "output_cost", "total_cost",
           "cache_hit", "duration_ms", "started_at", "model_spend")  # fmt: skip


class Dialect:
    """What differs between PostgreSQL and SQLite in these statements."""

    def __init__(self, vendor: str) -> None:
        self.postgresql = vendor == "postgresql"

    def truncate(self, column: str, unit: str) -> str:
        """The UTC hour or day ``column`` falls in, as the rollups' ``start``."""
        if self.postgresql:
            return f"date_trunc('{unit}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        return f"strftime('{'%Y-%m-%d %H:00:00' if unit == 'hour' else '%Y-%m-%d 00:00:00'}', {column})"

    def spend(self, column: str) -> str:
        """``model_spend`` as a JSON object, ``{}`` when it is not one (null, or written otherwise)."""
        if self.postgresql:
            return f"CASE WHEN jsonb_typeof({column}) = 'object' THEN {column} ELSE '{{}}'::jsonb END"
        return (
            f"CASE WHEN json_valid({column}) THEN CASE WHEN json_type({column}) = 'object' THEN {column} "
            "ELSE '{}' END ELSE '{}' END"
        )

    def each(self, column: str) -> str:
        return f"jsonb_each({column})" if self.postgresql else f"json_each({column})"

    def element(self, column: str, index: int, kind: str) -> str:
        """Item ``index`` of the JSON array ``column``, as money or a count."""
        if self.postgresql:
            return f"({column} ->> {index})::{'numeric' if kind == 'money' else 'bigint'}"
        return f"CAST(json_extract({column}, '$[{index}]') AS {'REAL' if kind == 'money' else 'INTEGER'})"

    def contains(self, column: str, keyword: str) -> str:
        """``column`` holds ``keyword``, case-insensitively: what Django's ``icontains`` runs."""
        pattern = "%" + keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        if self.postgresql:
            return f"UPPER({column}::text) LIKE UPPER('{pattern}')"
        return f"{column} LIKE '{pattern}' ESCAPE '\\'"


def quoted(values: tuple[str, ...]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


def error_category(row: str, dialect: Dialect) -> str:
    """The error category of a failed execution, blank for others: ``querysets.error_category()``."""
    whens = []
    for category, classes in ERROR_CLASS_CATEGORIES.items():
        condition = f"{row}.error_class IN ({quoted(classes)})"
        if category == "timeout":
            condition += f" OR {row}.status = 'timeout'"
        whens.append(f"WHEN {condition} THEN '{category}'")
    for category, keywords in ERROR_MESSAGE_KEYWORDS:
        condition = " OR ".join(dialect.contains(f"{row}.error_message", keyword) for keyword in keywords)
        whens.append(f"WHEN {condition} THEN '{category}'")
    return (
        f"CASE WHEN {row}.status NOT IN ({quoted(FAILED_STATUSES)}) THEN '' "
        + " ".join(whens)
        + " ELSE 'other' END"
    )


@dataclass(frozen=True)
class Kept:
    """Which root executions the rollups keep.

    ``settled``: finished ones only. A running one is not kept: an agent call writes its running
    row, then finishes it, and keeping it out spares that first write (and the finish's taking it
    back) the rollups' work; readers add the running rows of a period from the rows
    (``rollup_reads``). False keeps running ones too, as the rollups did before migration 0014.

    ``production``: executions of no evaluation run only (SPEC section 17: evaluations stay out of
    production analytics; the few questions about them read the rows). False before migration 0017
    gave executions their ``eval_run``."""

    settled: bool = True
    production: bool = True

    def condition(self, row: str) -> str:
        """The condition for ``row`` (an alias, ``NEW`` or ``OLD``) to be in the rollups."""
        condition = f"{row}.parent_id IS NULL"
        if self.settled:
            condition += f" AND {row}.status <> '{RUNNING}'"
        if self.production:
            condition += f" AND {row}.eval_run_id IS NULL"
        return condition


KEPT = Kept()


def kept_by(connection: Any, *, settled: bool = True) -> Kept:
    """What the rollups of ``connection``'s database keep: production executions once its
    executions table has ``eval_run_id`` (migration 0017; migrations before it run on tables
    without it)."""
    with connection.cursor() as cursor:
        columns = {
            column.name for column in connection.introspection.get_table_description(cursor, EXECUTIONS)
        }
    return Kept(settled=settled, production="eval_run_id" in columns)


def rows_of(source: str, sign: int, where: str = "", *, kept: Kept = KEPT) -> str:
    """The rows of ``source`` (a table or a transition table) the rollups keep, with their ``sign``."""
    columns = ", ".join(f"r.{column}" for column in COLUMNS)
    condition = f" AND ({where})" if where else ""
    return f"SELECT {sign} AS sign, {columns} FROM {source} r WHERE {kept.condition('r')}{condition}"


def trigger_row(prefix: str, sign: int, *, kept: Kept = KEPT) -> str:
    """SQLite: the ``NEW`` or ``OLD`` row, when the rollups keep it, with its ``sign``."""
    columns = ", ".join(f"{prefix}.{column} AS {column}" for column in COLUMNS)
    return f"SELECT {sign} AS sign, {columns} WHERE {kept.condition(prefix)}"


def contributions(rows: str, dialect: Dialect) -> str:
    """One row per root execution of ``rows`` and model it contributes to: the models of its
    ``model_spend`` (``used`` 1, with what it spent there) and the model that answered
    (``is_primary`` 1, carrying the execution's own measures); both when they are the same."""
    answered = "COALESCE(NULLIF(x.chosen_model_id, ''), x.model_id)"
    executions = f"""
        SELECT x.sign, x.kind, x.agent_type, x.agent_version, x.model_id, COALESCE(x.tenant_id, '') AS tenant_id,
            x.status, {error_category("x", dialect)} AS error_category,
            COALESCE(x.prompt_version_id, 0) AS prompt_version_id, x.input_tokens, x.output_tokens,
            x.cached_tokens, x.cache_write_tokens, x.reasoning_tokens, x.total_tokens, x.input_cost,
            x.output_cost, x.total_cost, CASE WHEN x.cache_hit THEN 1 ELSE 0 END AS cache_hit, x.duration_ms,
            CASE WHEN x.duration_ms IS NULL THEN 0 ELSE 1 END AS has_duration, x.started_at,
            {answered} AS answered, {dialect.spend("x.model_spend")} AS spend
        FROM ({rows}) x"""
    shared = (
        "e.sign, e.kind, e.agent_type, e.agent_version, e.model_id, e.tenant_id, e.status, e.error_category, "
        "e.prompt_version_id, e.input_tokens, e.output_tokens, e.cached_tokens, e.cache_write_tokens, "
        "e.reasoning_tokens, e.total_tokens, e.input_cost, e.output_cost, e.total_cost, e.cache_hit, "
        "e.duration_ms, e.has_duration, e.started_at"
    )
    spent_nothing = f"NOT EXISTS (SELECT 1 FROM {dialect.each('e.spend')} n)"
    return f"""
        SELECT {shared}, s.key AS model_used, CASE WHEN s.key = e.answered THEN 1 ELSE 0 END AS is_primary,
            1 AS used, {dialect.element("s.value", 0, "money")} AS spent_cost,
            {dialect.element("s.value", 1, "count")} AS spent_tokens
        FROM ({executions}) e, {dialect.each("e.spend")} s
        UNION ALL
        SELECT {shared}, e.answered, 1,
            CASE WHEN {spent_nothing} THEN 1 ELSE 0 END,
            CASE WHEN {spent_nothing} THEN e.total_cost ELSE 0 END,
            CASE WHEN {spent_nothing} THEN e.total_tokens ELSE 0 END
        FROM ({executions}) e
        WHERE NOT EXISTS (SELECT 1 FROM {dialect.each("e.spend")} u WHERE u.key = e.answered)"""


def upserts(rows: str, dialect: Dialect, tables: Sequence[str] = ROLLUP_TABLES) -> list[str]:
    """The statements that add the contributions of ``rows`` to the rollup ``tables``, one each."""
    return _upserts(f"({rows})", f"({contributions(rows, dialect)})", dialect, tables)


def one_upsert(rows: str, dialect: Dialect, tables: Sequence[str] = ROLLUP_TABLES) -> str:
    """PostgreSQL: :func:`upserts` as one statement (data-modifying WITH queries), the rows and their
    contributions computed once: a trigger runs one statement, planned once, instead of one a table."""
    found = _upserts("written", "contributed", dialect, tables)
    steps = ", ".join(f"upsert_{index} AS ({statement})" for index, statement in enumerate(found[:-1]))
    return (
        f"WITH written AS MATERIALIZED ({rows}), contributed AS MATERIALIZED "
        f"({contributions('SELECT * FROM written', dialect)}){', ' + steps if steps else ''} {found[-1]}"
    )


def _upserts(rows: str, source: str, dialect: Dialect, tables: Sequence[str]) -> list[str]:
    """The upserts reading the root execution rows from ``rows`` and their contributions from
    ``source`` (subqueries in parentheses, or the names of WITH queries)."""
    statements = []
    for table, unit, key_columns in (
        (HOURLY, "hour", KEYS),
        (DAILY, "day", KEYS),
        (HOURLY_TOTALS, "hour", TOTALS_KEYS),
        (DAILY_TOTALS, "day", TOTALS_KEYS),
    ):
        if table not in tables:
            continue
        keys = ", ".join(key_columns)
        selected = ", ".join(
            [dialect.truncate("c.started_at", unit), *(f"c.{key}" for key in key_columns[1:])]
            + [f"SUM({expression})" for expression in MEASURES.values()]
        )
        positions = ", ".join(str(position) for position in range(1, len(key_columns) + 1))
        updates = ", ".join(f"{measure} = {table}.{measure} + excluded.{measure}" for measure in MEASURES)
        statements.append(
            f"INSERT INTO {table} ({keys}, {', '.join(MEASURES)}) SELECT {selected} FROM {source} c "
            f"WHERE 1 = 1 GROUP BY {positions} ORDER BY {positions} "
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        )
    for table, unit in ((HOURLY_LATENCY, "hour"), (DAILY_LATENCY, "day")):
        if table not in tables:
            continue
        selected = ", ".join(
            [
                dialect.truncate("c.started_at", unit),
                "c.tenant_id",
                "c.model_used",
                bucket_lookup("c.duration_ms"),
            ]
            + [f"SUM({expression})" for expression in LATENCY_MEASURES.values()]
        )
        keys = ", ".join(LATENCY_KEYS)
        updates = ", ".join(
            f"{measure} = {table}.{measure} + excluded.{measure}" for measure in LATENCY_MEASURES
        )
        statements.append(
            f"INSERT INTO {table} ({keys}, {', '.join(LATENCY_MEASURES)}) SELECT {selected} "
            f"FROM {source} c WHERE c.duration_ms IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        )
    for table, unit in ((HOURLY_DURATIONS, "hour"), (DAILY_DURATIONS, "day")):
        if table not in tables:
            continue
        # Every root execution once, straight from the rows: no model to spread it over.
        statements.append(
            f"INSERT INTO {table} (start, bucket, executions) SELECT {dialect.truncate('x.started_at', unit)}, "
            f"{bucket_lookup('x.duration_ms')}, SUM(x.sign) FROM {rows} x WHERE x.duration_ms IS NOT NULL "
            f"GROUP BY 1, 2 ORDER BY 1, 2 ON CONFLICT (start, bucket) DO UPDATE SET "
            f"executions = {table}.executions + excluded.executions"
        )
    for table, unit in ((HOURLY_MODEL_DURATIONS, "hour"), (DAILY_MODEL_DURATIONS, "day")):
        if table not in tables:
            continue
        # Every model a root execution used (``model_executions`` of the latency rollups).
        statements.append(
            f"INSERT INTO {table} (start, model_used, bucket, executions) SELECT "
            f"{dialect.truncate('c.started_at', unit)}, c.model_used, {bucket_lookup('c.duration_ms')}, "
            f"SUM({LATENCY_MEASURES['model_executions']}) FROM {source} c WHERE c.duration_ms IS NOT NULL "
            f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 ON CONFLICT (start, model_used, bucket) DO UPDATE SET "
            f"executions = {table}.executions + excluded.executions"
        )
    return statements


def bucket_lookup(duration: str) -> str:
    """The latency bucket of ``duration`` (milliseconds), from the table of buckets."""
    return f"(SELECT b.bucket FROM {BUCKETS} b WHERE b.upper_ms >= {duration} ORDER BY b.upper_ms LIMIT 1)"


def cleanups(old_rows: str, dialect: Dialect, tables: Sequence[str] = ROLLUP_TABLES) -> list[str]:
    """The statements that delete the rollup rows left with no execution by ``old_rows`` (updated or
    deleted rows), among the hours and days and agents (tenants) they touched: a rollup row exists
    exactly while executions have its key (a re-priced or retried row moved away leaves none)."""
    statements = []
    for table, unit, column, value in (
        (HOURLY, "hour", "agent_type", "o.agent_type"),
        (DAILY, "day", "agent_type", "o.agent_type"),
        (HOURLY_TOTALS, "hour", "agent_type", "o.agent_type"),
        (DAILY_TOTALS, "day", "agent_type", "o.agent_type"),
        (HOURLY_LATENCY, "hour", "tenant_id", "COALESCE(o.tenant_id, '')"),
        (DAILY_LATENCY, "day", "tenant_id", "COALESCE(o.tenant_id, '')"),
    ):
        if table not in tables:
            continue
        statements.append(
            f"DELETE FROM {table} WHERE executions = 0 AND model_executions = 0 AND (start, {column}) IN "
            f"(SELECT DISTINCT {dialect.truncate('o.started_at', unit)}, {value} FROM ({old_rows}) o)"
        )
    for table, unit in (
        (HOURLY_DURATIONS, "hour"),
        (DAILY_DURATIONS, "day"),
        (HOURLY_MODEL_DURATIONS, "hour"),
        (DAILY_MODEL_DURATIONS, "day"),
    ):
        if table not in tables:
            continue
        statements.append(
            f"DELETE FROM {table} WHERE executions = 0 AND start IN "
            f"(SELECT DISTINCT {dialect.truncate('o.started_at', unit)} FROM ({old_rows}) o)"
        )
    return statements


def one_statement(statements: Sequence[str]) -> str:
    """PostgreSQL: several independent data-modifying statements as one (WITH queries)."""
    steps = ", ".join(f"step_{index} AS ({statement})" for index, statement in enumerate(statements[:-1]))
    return f"WITH {steps} {statements[-1]}" if steps else statements[-1]


# -- triggers ---------------------------------------------------------------------------------------

TRIGGER_EVENTS = ("insert", "update", "delete")


def trigger_statements(vendor: str, tables: Sequence[str] = ROLLUP_TABLES, *, kept: Kept = KEPT) -> list[str]:
    """The DDL that installs the triggers on ``vendor``'s executions table, keeping ``tables`` up to
    date with the rows ``kept``."""
    dialect = Dialect(vendor)
    statements = []
    if dialect.postgresql:
        new, old = (rows_of(name, sign, kept=kept) for name, sign in (("new_rows", 1), ("old_rows", -1)))
        sources = {
            "insert": (new, "REFERENCING NEW TABLE AS new_rows"),
            "update": (new + " UNION ALL " + old, "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            "delete": (old, "REFERENCING OLD TABLE AS old_rows"),
        }
        for event, (rows, referencing) in sources.items():
            # A statement that wrote no row the rollups keep (an agent call's running row, an
            # INSERT … ON CONFLICT DO UPDATE that fires the INSERT trigger with no new row, a write
            # of nested executions) returns at once; one that did runs one upsert, and one that
            # changed or deleted such rows one cleanup, each planned once.
            written = {"insert": ("new_rows",), "update": ("new_rows", "old_rows"), "delete": ("old_rows",)}[
                event
            ]
            nothing = " AND ".join(
                f"NOT EXISTS (SELECT 1 FROM {name} r WHERE {kept.condition('r')})" for name in written
            )
            body = f"{one_upsert(rows, dialect, tables)};" if tables else ""
            if event != "insert" and tables:
                body += (
                    f"\nIF EXISTS (SELECT 1 FROM old_rows r WHERE {kept.condition('r')}) THEN "
                    f"{one_statement(cleanups(old, dialect, tables))}; END IF;"
                )
            statements.append(
                f"CREATE OR REPLACE FUNCTION llm_agents_rollup_{event}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$rollup$ BEGIN\nIF {nothing} THEN RETURN NULL; "
                f"END IF;\n{body}\nRETURN NULL; END $rollup$"
            )
            statements.append(
                f"CREATE TRIGGER llm_agents_rollup_{event} AFTER {event.upper()} ON {EXECUTIONS} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION llm_agents_rollup_{event}()"
            )
        statements.append(
            "CREATE OR REPLACE FUNCTION llm_agents_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS "
            # DELETE, not TRUNCATE: a TRUNCATE naming the rollup tables too would find them in use.
            f"$rollup$ BEGIN {' '.join(f'DELETE FROM {table};' for table in tables)} RETURN NULL; END $rollup$"
        )
        statements.append(
            f"CREATE TRIGGER llm_agents_rollup_truncate AFTER TRUNCATE ON {EXECUTIONS} "
            "FOR EACH STATEMENT EXECUTE FUNCTION llm_agents_rollup_truncate()"
        )
        return statements
    new, old = (trigger_row(prefix, sign, kept=kept) for prefix, sign in (("NEW", 1), ("OLD", -1)))
    changes = {
        "insert": (new, kept.condition("NEW")),
        "update": (new + " UNION ALL " + old, f"({kept.condition('NEW')}) OR ({kept.condition('OLD')})"),
        "delete": (old, kept.condition("OLD")),
    }
    for event, (rows, when) in changes.items():
        statements_run = upserts(rows, dialect, tables)
        if event != "insert":
            statements_run += cleanups(old, dialect, tables)
        body = ";\n".join(statements_run)
        statements.append(
            f"CREATE TRIGGER llm_agents_rollup_{event} AFTER {event.upper()} ON {EXECUTIONS} "
            f"FOR EACH ROW WHEN {when} BEGIN\n{body};\nEND"
        )
    return statements


def drop_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [
            *(
                f"DROP TRIGGER IF EXISTS llm_agents_rollup_{event} ON {EXECUTIONS}"
                for event in (*TRIGGER_EVENTS, "truncate")
            ),
            *(
                f"DROP FUNCTION IF EXISTS llm_agents_rollup_{event}()"
                for event in (*TRIGGER_EVENTS, "truncate")
            ),
        ]
    return [f"DROP TRIGGER IF EXISTS llm_agents_rollup_{event}" for event in TRIGGER_EVENTS]


def install_buckets(connection: Any, buckets: Sequence[tuple[int, int]]) -> None:
    """(Re)create the table of latency buckets (``lower``/``upper`` of each, by index) the triggers
    look durations up in. It is no model's table, so Django's test flush leaves it alone."""
    values = ", ".join(f"({index}, {lower}, {upper})" for index, (lower, upper) in enumerate(buckets))
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {BUCKETS} (bucket smallint NOT NULL PRIMARY KEY, "
            "lower_ms bigint NOT NULL, upper_ms bigint NOT NULL UNIQUE)"
        )
        cursor.execute(f"DELETE FROM {BUCKETS}")
        cursor.execute(f"INSERT INTO {BUCKETS} (bucket, lower_ms, upper_ms) VALUES {values}")


def present(connection: Any) -> tuple[str, ...]:
    """The rollup tables ``connection``'s database has: a migration adds them one after another, and
    the triggers and rebuilds keep those there are (migration 0011 runs before 0012 adds durations)."""
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    return tuple(table for table in ROLLUP_TABLES if table in existing)


def install_triggers(connection: Any, *, settled_only: bool = True) -> None:
    """(Re)create the rollup triggers on ``connection``'s executions table (idempotent), keeping the
    rollup tables present: migrations 0011 to 0016, and the partitioning command after it
    rebuilt the table (``settled_only``: see :class:`Kept`)."""
    statements = drop_statements(connection.vendor) + trigger_statements(
        connection.vendor, present(connection), kept=kept_by(connection, settled=settled_only)
    )
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def drop_triggers(connection: Any) -> None:
    """Remove the triggers and the bucket table (migration 0011 unapplied)."""
    with connection.cursor() as cursor:
        for statement in drop_statements(connection.vendor):
            cursor.execute(statement)
        cursor.execute(f"DROP TABLE IF EXISTS {BUCKETS}")


# -- rebuilds ---------------------------------------------------------------------------------------


def literal(moment: dt.datetime, vendor: str) -> str:
    """A UTC moment as an SQL literal (the statements here take no parameters: their patterns hold %)."""
    utc = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if vendor == "postgresql":
        return f"'{utc.isoformat(sep=' ')}+00'::timestamptz"
    return f"'{utc.isoformat(sep=' ')}'"


def rebuild_day(connection: Any, day: dt.date, *, settled_only: bool = True) -> None:
    """Recompute the rollups of one UTC day from its rows. Run it in a transaction: on PostgreSQL it
    locks the executions table against writes (not reads) until that transaction ends, so no write
    lands between emptying the day and adding its rows back (``settled_only``: see :class:`Kept`)."""
    vendor = connection.vendor
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    low, high = literal(start, vendor), literal(start + dt.timedelta(days=1), vendor)
    rows = rows_of(
        EXECUTIONS,
        1,
        f"r.started_at >= {low} AND r.started_at < {high}",
        kept=kept_by(connection, settled=settled_only),
    )
    tables = present(connection)
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {EXECUTIONS} IN SHARE ROW EXCLUSIVE MODE")
        for table in tables:
            cursor.execute(f"DELETE FROM {table} WHERE start >= {low} AND start < {high}")
        for statement in upserts(rows, Dialect(vendor), tables):
            cursor.execute(statement)


def forget(connection: Any, start: dt.datetime, end: dt.datetime) -> None:
    """Drop the rollups of ``start <= hour < end`` (whole UTC days): for retention that dropped the
    rows of those days without deleting them row by row (a dropped partition fires no trigger)."""
    vendor = connection.vendor
    low, high = literal(start, vendor), literal(end, vendor)
    tables = present(connection)
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {table} WHERE start >= {low} AND start < {high}")


def fill_totals(connection: Any, totals: str, source: str) -> None:
    """Fill the ``totals`` table (hourly or daily) with the sums of the ``source`` rollups of the same
    unit, then install the triggers that keep it (migrations 0015 and 0016): no execution row is
    read. On PostgreSQL the executions table is locked against writes until the migration's
    transaction ends, so none lands between the copy and the triggers that keep it up to date."""
    keys = ", ".join(TOTALS_KEYS)
    sums = ", ".join(f"SUM({measure})" for measure in MEASURES)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {EXECUTIONS} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"INSERT INTO {totals} ({keys}, {', '.join(MEASURES)}) SELECT {keys}, {sums} FROM {source} "
            f"GROUP BY {keys} HAVING SUM(executions) <> 0 OR SUM(model_executions) <> 0"
        )
    install_triggers(connection)


def days_with_rows(connection: Any) -> list[dt.date]:
    """The UTC days on which root executions started, or rollups exist (to be emptied), oldest first."""
    dialect = Dialect(connection.vendor)
    sql = " UNION ".join(
        [
            f"SELECT DISTINCT {dialect.truncate('started_at', 'day')} AS day FROM {EXECUTIONS} WHERE parent_id IS NULL"
        ]
        + [f"SELECT DISTINCT start FROM {table}" for table in present(connection) if table in DAILY_TABLES]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT day FROM ({sql}) d ORDER BY day")
        found = [row[0] for row in cursor.fetchall()]
    return [parse_day(value) for value in found]


def parse_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    return dt.date.fromisoformat(str(value)[:10])


ProgressCallback = Callable[[int, int, dt.date], None]
