"""The database writes of tracking: Execution and Span rows, upserted by their client-made UUIDs.

:func:`write_payload` writes rows (Python values or the JSON-safe rows of a message),
:func:`write_document` a ``record_executions`` document, :func:`write_isolated` outside the
caller's transaction (:mod:`~llm_agents.db.isolation`). On PostgreSQL each write is one prepared
statement (:mod:`~llm_agents.db.fastpaths`); elsewhere the INSERT statements bulk_create would run.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

from django.db import connections, router, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from ..db.isolation import run_isolated
from ..db.statements import run_bound, run_prepared
from .rows import from_payload, storable, to_payload, with_defaults


def write_payload(
    payload: dict[str, list[dict[str, Any]]],
    *,
    insert_only: bool = False,
    typed: bool = False,
    durable: bool = True,
) -> None:
    """Write ``{"executions": [...], "spans": [...]}`` (the Celery message, or the same rows with
    Python values) atomically: executions upserted by id (parents first), spans inserted unless
    present. ``insert_only`` leaves an existing execution alone (the start row). ``typed`` says
    the values are Python objects already (not the JSON of a Celery message). ``durable`` False
    commits without waiting for the WAL flush on PostgreSQL (``DURABLE_TRACKING_WRITES``), unless
    the write joins a transaction that is already open, whose commit that would change.

    On PostgreSQL everything is one statement (:func:`_document_statement`): one round trip, one
    transaction. Elsewhere the INSERT statements bulk_create would run, in one transaction.
    """
    from ..models import Execution, Span

    alias = router.db_for_write(Execution)
    connection = connections[alias]
    executions_rows, span_rows = payload.get("executions", []), payload.get("spans", [])
    if not executions_rows and not span_rows:
        return
    if connection.vendor == "postgresql":
        if typed:
            executions_rows, span_rows = to_payload(executions_rows), to_payload(span_rows)
        relaxed = not durable and not connection.in_atomic_block
        update = (
            ()
            if insert_only
            else tuple(sorted({name for row in executions_rows for name in row} - {"id", "created_at"}))
        )
        key, sql = _document_statement(connection, update, relaxed=relaxed)
        document = storable(
            json.dumps(
                {
                    "executions": with_defaults(Execution, executions_rows),
                    "spans": with_defaults(Span, span_rows),
                },
                separators=(",", ":"),
            )
        )
        run_prepared(connection, key, sql, [document])
        return
    _write_statements(connection, alias, executions_rows, span_rows, insert_only=insert_only, typed=typed)


def write_document(document: str) -> int:
    """Write a document made by :func:`encode_message` (rows with every field), as ``write_payload``
    would; returns how many executions it holds. PostgreSQL receives the text as it is, as a
    parameter of its own (and counts them); elsewhere it is decoded and written as rows."""
    from ..models import Execution

    connection = connections[router.db_for_write(Execution)]
    if connection.vendor != "postgresql":
        payload = json.loads(document)
        write_payload(payload)
        return len(payload["executions"])
    _, sql = _document_statement(connection, _every_field(Execution), relaxed=False)
    return int(run_bound(connection, sql, [storable(document)])[0][0])


@functools.cache
def _every_field(model: Any) -> tuple[str, ...]:
    """The fields an upsert of a complete row sets: all but the id and the creation time."""
    return tuple(
        sorted(f.attname for f in model._meta.concrete_fields if f.attname not in ("id", "created_at"))
    )


def _write_statements(
    connection: Any,
    alias: str,
    executions_rows: list[dict[str, Any]],
    span_rows: list[dict[str, Any]],
    *,
    insert_only: bool,
    typed: bool,
) -> None:
    """The writes of :func:`write_payload` off PostgreSQL: bulk_create's statements, one transaction."""
    from ..models import Execution, Span

    if typed:
        executions = [Execution(**row) for row in executions_rows]
        spans = [Span(**row) for row in span_rows]
    else:
        executions = from_payload(Execution, executions_rows)
        spans = from_payload(Span, span_rows)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    if executions:
        if insert_only:
            statements += _insert_statements(Execution, executions, alias, on_conflict=OnConflict.IGNORE)
        else:
            update_fields = sorted({name for row in executions_rows for name in row} - {"id", "created_at"})
            statements += _insert_statements(Execution, executions, alias, on_conflict=OnConflict.UPDATE,
                                             update_fields=update_fields)  # fmt: skip
    if spans:
        statements += _insert_statements(Span, spans, alias, on_conflict=OnConflict.IGNORE)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


_statements = threading.local()
#: The document statements made so far, by shape: (alias, update fields, relaxed) -> (key, SQL).
_documents: dict[tuple[Any, ...], tuple[str, str]] = {}


def _document_statement(connection: Any, update_fields: tuple[str, ...], *, relaxed: bool) -> tuple[str, str]:
    """One PostgreSQL statement writing a JSON document ``{"executions": [...], "spans": [...]}``;
    returns ``(its key, its SQL)``.

    ``INSERT … SELECT … FROM jsonb_array_elements(…)`` for each table, both as data-modifying
    ``WITH`` queries; the statement returns how many executions it inserted or updated. The server
    casts each value to its column's type (it parses UUIDs, times and decimals), so the client only
    serialises JSON. JSON fields stay JSON (``None`` is SQL NULL where the field allows it, else
    JSON ``null``). ``update_fields`` empty means insert-or-ignore, else upsert those fields by id;
    ``relaxed`` skips the commit's wait for the WAL flush. The text depends only on that shape, so
    it is prepared once per session (:func:`~llm_agents.db.statements.run_prepared`): its plan, with
    the casts of some 60 columns, costs more than running it.
    """
    from ..models import Execution, Span

    shape = (connection.alias, update_fields, relaxed)
    known = _documents.get(shape)
    if known is not None:
        return known
    quote = connection.ops.quote_name

    def insert(model: Any, rows: str, update: tuple[str, ...]) -> str:
        fields = list(model._meta.concrete_fields)

        def value(model_field: Any) -> str:
            name = f"'{model_field.attname}'"  # a Python identifier: nothing to escape
            if model_field.get_internal_type() == "JSONField":
                return f"NULLIF(r -> {name}, 'null')" if model_field.null else f"r -> {name}"
            return (
                f"(r ->> {name})::{model_field.db_type(connection).split('(')[0]}"  # no length: no truncation
            )

        sql = (
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT {', '.join(value(f) for f in fields)} FROM document, jsonb_array_elements({rows}) AS r "
        )
        if not update:
            return sql + "ON CONFLICT DO NOTHING"
        columns = [quote(model._meta.get_field(name).column) for name in update]
        assignments = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns)
        return sql + f"ON CONFLICT ({quote(model._meta.pk.column)}) DO UPDATE SET {assignments}"

    relax = ", set_config('synchronous_commit', 'off', true)" if relaxed else ""
    executions = insert(Execution, "document.d -> 'executions'", update_fields)
    spans = insert(Span, "document.d -> 'spans'", ())
    sql = (
        f"WITH document AS (SELECT %s::jsonb AS d{relax}), executions AS ({executions} RETURNING 1), "
        f"spans AS ({spans}) SELECT count(*) FROM executions"
    )
    known = _documents[shape] = (f"write_{len(_documents)}", sql)
    return known


def _insert_statements(
    model: Any,
    objs: list[Any],
    alias: str,
    *,
    on_conflict: OnConflict,
    update_fields: list[str] | None = None,
) -> list[tuple[str, tuple[Any, ...]]]:
    """The INSERT … ON CONFLICT statements Django's bulk_create would run, without running them.

    The SQL of a statement shape (model, conflict handling, row count) is compiled once per thread;
    only the parameters are prepared per call, by the same compiler methods bulk_create uses.
    """
    opts = model._meta
    fields = list(opts.concrete_fields)
    connection = connections[alias]
    batch_size = connection.ops.bulk_batch_size(fields, objs) or len(objs)
    cache = _statements.__dict__.setdefault(alias, {})
    statements = []
    for start in range(0, len(objs), batch_size):
        batch = objs[start : start + batch_size]
        key = (opts.label, on_conflict, tuple(update_fields or ()), len(batch), connection.vendor)
        compiled = cache.get(key)
        if compiled is None or compiled[1].connection is not connection:
            query = InsertQuery(
                model,
                on_conflict=on_conflict,
                update_fields=[opts.get_field(name) for name in update_fields or ()],
                unique_fields=[opts.pk] if on_conflict == OnConflict.UPDATE else [],
            )
            query.insert_values(fields, batch)
            compiler = query.get_compiler(using=alias)
            ((sql, params),) = compiler.as_sql()
            cache[key] = compiled = (sql, compiler)
            statements.append((sql, params))
            continue
        sql, compiler = compiled
        value_rows = [
            [compiler.prepare_value(f, compiler.pre_save_val(f, obj)) for f in fields] for obj in batch
        ]
        _, param_rows = compiler.assemble_as_sql(fields, value_rows)
        statements.append((sql, tuple(p for row in param_rows for p in row)))
    return statements


def write_isolated(
    payload: dict[str, list[dict[str, Any]]], *, insert_only: bool = False, durable: bool = True
) -> None:
    """:func:`write_payload` of Python values outside the caller's transaction, so that our rows survive
    its rollback, and off an event loop's thread (a ``trace()`` in ``async def`` code); on SQLite
    the rows join the caller's transaction (:func:`~llm_agents.db.isolation.run_isolated`)."""
    from ..models import Execution

    run_isolated(
        lambda: write_payload(payload, insert_only=insert_only, typed=True, durable=durable),
        router.db_for_write(Execution),
    )
