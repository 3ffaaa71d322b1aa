"""Statements PostgreSQL plans once per database session, for the hot paths (tracking writes, budget checks).

Planning a statement of many casts or joins can cost more than running it, and Django's psycopg
connections never prepare (``prepare_threshold`` is None, so a transaction-pooling PgBouncer keeps
working). :func:`run_prepared` sends ``PREPARE`` with the first run and ``EXECUTE`` afterwards, in the
same query string as any statements that go before it: one round trip. A session that cannot keep
prepared statements (the pooler sent the ``EXECUTE`` to another server session) makes that connection
send the statement itself from then on.

:func:`without_jit` runs a block of short aggregate reads without PostgreSQL's JIT compilation.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import DatabaseError, connections, transaction

INLINE = "inline"
#: invalid_sql_statement_name (no such prepared statement), duplicate_prepared_statement
PREPARED_STATEMENT_ERRORS = ("26000", "42P05")


def run_prepared(
    connection: Any,
    key: str,
    sql: str,
    params: Sequence[Any],
    *,
    before: Sequence[str] = (),
    before_params: Sequence[Any] = (),
) -> list[tuple[Any, ...]]:
    """Run ``before`` then ``sql`` (``%s`` placeholders) as one query string, ``sql`` prepared once per
    session under ``key``; returns the rows of the last statement."""
    connection.ensure_connection()
    prepared = prepared_on(connection)
    if prepared.get(INLINE):
        return run_together(connection, [*before, sql], [*before_params, *params])
    name = prepared.get(key)
    statements = list(before)
    if name is None:
        name = f"llm_agents_{key}_{uuid.uuid4().hex[:8]}"  # a fresh name if an earlier PREPARE failed
        numbered = iter(range(1, len(params) + 1))
        statements.insert(0, f"PREPARE {name} AS " + re.sub(r"%s", lambda _: f"${next(numbered)}", sql))
    statements.append(f"EXECUTE {name}({', '.join(['%s'] * len(params))})")
    try:
        rows = run_together(connection, statements, [*before_params, *params])
    except DatabaseError as exc:
        cause = exc.__cause__
        if getattr(cause, "sqlstate", getattr(cause, "pgcode", None)) not in PREPARED_STATEMENT_ERRORS:
            raise
        prepared.clear()
        prepared[INLINE] = name
        if connection.in_atomic_block:
            raise
        return run_together(connection, [*before, sql], [*before_params, *params])
    prepared[key] = name
    return rows


def run_bound(connection: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one statement with its parameters sent apart from the SQL (server-side binding), for a
    parameter of hundreds of kilobytes: Django's psycopg 3 cursors bind on the client, which quotes
    the value into the query text, and the server then scans it as SQL. The statement is planned at
    each run (an unnamed statement, which any pooler passes through). Inside Django's cursor
    wrapper: errors map to django.db's, queries are logged under DEBUG. With psycopg 2 this is an
    ordinary query."""
    from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

    connection.ensure_connection()
    psycopg = _psycopg()
    if psycopg is None or not isinstance(connection.connection, psycopg.Connection):
        cursor = connection.cursor()
    else:
        wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
        cursor = wrapper(psycopg.Cursor(connection.connection), connection)
    with cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def _psycopg() -> Any:
    """The psycopg 3 module, or None where only psycopg 2 is installed."""
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg


def run_together(connection: Any, statements: list[str], params: list[Any]) -> list[tuple[Any, ...]]:
    """Run the statements as one query string (one round trip; PostgreSQL runs it as one transaction
    unless one is open); the rows of the last one that returns any."""
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        cursor.execute(";".join(statements), params)
        if _psycopg() is None:  # psycopg 2 keeps only the last statement's result, and has no nextset()
            return cursor.fetchall() if cursor.description is not None else []
        while True:
            if cursor.description is not None:
                rows = cursor.fetchall()
            if not cursor.nextset():
                break
    return rows


def prepared_on(connection: Any) -> dict[str, str]:
    """The names of the statements prepared on the database session of Django ``connection`` now,
    by key (``{INLINE: …}`` when the session cannot keep them). Kept on the Django connection beside
    the driver's connection they belong to (psycopg 2's take no attributes): a new session starts
    with none."""
    raw = connection.connection
    kept = getattr(connection, "_llm_agents_prepared", None)
    if kept is None or kept[0] is not raw:
        kept = (raw, {})
        connection._llm_agents_prepared = kept
    return kept[1]


@contextlib.contextmanager
def without_jit(alias: str) -> Iterator[None]:
    """Run the block in a transaction on ``alias`` with PostgreSQL's JIT compilation off (``SET LOCAL
    jit = off``; elsewhere just the transaction).

    Why: reads whose estimated cost passes ``jit_above_cost`` (100,000 by default: any read of a few
    hundred thousand rows, or a ``BitmapOr`` of many ranges) are compiled before they run, and for a
    read that takes tens of milliseconds the compilation takes hundreds: at 10M executions the
    alert rules' reads spent 170–260 ms each in ``JIT: … Emission`` and ran in less. A block that
    fails rolls back on its own, so the caller can go on with another.
    """
    connection = connections[alias]
    with transaction.atomic(using=alias):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield
