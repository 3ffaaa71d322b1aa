"""Every PostgreSQL-only statement of the product, each beside the portable ORM code that does the
same on any other supported database (SQLite), and which a parity test runs against it on
PostgreSQL: the same input gives the same rows and results either way.

A fast path exists where the ORM's statements cost more than the work (a tracking write of some 60
cast columns, a budget check under lock, a purge of thousands of ids); each says why.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from .statements import run_bound, run_prepared


def is_postgresql(connection: Any) -> bool:
    """True when Django ``connection`` is PostgreSQL's, where the fast paths of this module run: the one
    place the product asks which database it is on."""
    return bool(connection.vendor == "postgresql")


# -- tracking writes ------------------------------------------------------------------------------
# Executions and their spans, upserted by their client-made UUIDs. The models are arguments (this
# layer imports no model): ``execution_model`` and ``span_model``.

#: The document statements made so far, by shape: (alias, update fields, relaxed) -> (key, SQL).
_documents: dict[tuple[Any, ...], tuple[str, str]] = {}
#: The INSERT statements compiled so far, per thread and alias (see :func:`insert_statements`).
_statements = threading.local()


def upsert_document(
    connection: Any,
    execution_model: Any,
    span_model: Any,
    document: str,
    update_fields: Sequence[str],
    *,
    relaxed: bool = False,
    large: bool = False,
) -> int:
    """PostgreSQL: write a JSON document ``{"executions": [...], "spans": [...]}`` (rows with every
    field, values as JSON) in one statement: executions inserted, or upserted by id setting
    ``update_fields`` when there are any; spans inserted unless present. Returns how many executions
    were inserted or updated. ``relaxed`` skips the commit's wait for the WAL flush. A ``large``
    document goes as a parameter of its own (:func:`~llm_agents.db.statements.run_bound`), else the
    statement is prepared once per session.

    Why: one round trip and one transaction for both tables, and the server parses the UUIDs, times
    and decimals; the ORM would need a statement per table and the client's casts of some 60
    columns. Twin: :func:`upsert_objects`.
    """
    key, sql = document_statement(
        connection, execution_model, span_model, tuple(update_fields), relaxed=relaxed
    )
    rows = run_bound(connection, sql, [document]) if large else run_prepared(connection, key, sql, [document])
    return int(rows[0][0])


def document_statement(
    connection: Any, execution_model: Any, span_model: Any, update_fields: tuple[str, ...], *, relaxed: bool
) -> tuple[str, str]:
    """The statement of :func:`upsert_document`; returns ``(its key, its SQL)``.

    ``INSERT … SELECT … FROM jsonb_array_elements(…)`` for each table, both as data-modifying
    ``WITH`` queries; the statement returns how many executions it inserted or updated. The server
    casts each value to its column's type, so the client only serialises JSON. JSON fields stay JSON
    (``None`` is SQL NULL where the field allows it, else JSON ``null``). ``update_fields`` empty
    means insert-or-ignore, else upsert those fields by id. The text depends only on that shape, so
    it is prepared once per session (:func:`~llm_agents.db.statements.run_prepared`): its plan, with
    the casts of some 60 columns, costs more than running it.
    """
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
    executions = insert(execution_model, "document.d -> 'executions'", update_fields)
    spans = insert(span_model, "document.d -> 'spans'", ())
    sql = (
        f"WITH document AS (SELECT %s::jsonb AS d{relax}), executions AS ({executions} RETURNING 1), "
        f"spans AS ({spans}) SELECT count(*) FROM executions"
    )
    known = _documents[shape] = (f"write_{len(_documents)}", sql)
    return known


def upsert_objects(
    connection: Any,
    execution_model: Any,
    span_model: Any,
    executions: list[Any],
    spans: list[Any],
    *,
    insert_only: bool,
    update_fields: Sequence[str] = (),
) -> None:
    """Portable twin of :func:`upsert_document`: the same writes of model instances, as the INSERT
    statements Django's bulk_create would run (:func:`insert_statements`), in one transaction.
    ``insert_only`` leaves existing executions alone, else ``update_fields`` are upserted by id."""
    alias = connection.alias
    statements: list[tuple[str, tuple[Any, ...]]] = []
    if executions:
        if insert_only:
            statements += insert_statements(execution_model, executions, alias, on_conflict=OnConflict.IGNORE)
        else:
            statements += insert_statements(execution_model, executions, alias, on_conflict=OnConflict.UPDATE,
                                            update_fields=list(update_fields))  # fmt: skip
    if spans:
        statements += insert_statements(span_model, spans, alias, on_conflict=OnConflict.IGNORE)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def insert_statements(
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


# -- budgets --------------------------------------------------------------------------------------

# (section: budgets)


# -- retention ------------------------------------------------------------------------------------
# Purging old executions by chunks of thousands of ids. On PostgreSQL the ids of a chunk go as one
# array parameter, one statement a table; elsewhere as ``IN (...)`` lists the database's parameter
# limit allows. Each takes the models as arguments.


def id_slices(connection: Any, ids: list[Any]) -> Iterator[list[Any]]:
    """``ids`` in pieces small enough for one ``IN (...)`` on the database of ``connection``."""
    size = connection.features.max_query_params or len(ids) or 1
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _uuid_array(ids: list[Any]) -> str:
    """``ids`` as one PostgreSQL array literal: one parameter for a whole chunk, cheap to send."""
    return "{" + ",".join(str(pk) for pk in ids) + "}"


def child_ids(connection: Any, execution_model: Any, ids: list[Any]) -> list[Any]:
    """The ids of the executions whose parent is one of ``ids``."""
    if is_postgresql(connection):
        return child_ids_postgresql(connection, execution_model, ids)
    return child_ids_portable(connection, execution_model, ids)


def child_ids_postgresql(connection: Any, execution_model: Any, ids: list[Any]) -> list[Any]:
    """:func:`child_ids` in one statement, the ids as one ``uuid[]`` parameter (``= ANY``). Why: a
    chunk of 10,000 ids is one parameter instead of hundreds of statements of bound lists. Twin:
    :func:`child_ids_portable`."""
    quote, meta = connection.ops.quote_name, execution_model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(str(meta.pk.column))} FROM {quote(meta.db_table)} "
            f"WHERE {quote(meta.get_field('parent').column)} = ANY(%s::uuid[])",
            [_uuid_array(ids)],
        )
        return [pk for (pk,) in cursor.fetchall()]


def child_ids_portable(connection: Any, execution_model: Any, ids: list[Any]) -> list[Any]:
    """Portable twin of :func:`child_ids_postgresql`: one ORM query per slice of ids."""
    executions = execution_model._default_manager.using(connection.alias)
    return [
        pk
        for piece in id_slices(connection, ids)
        for pk in executions.filter(parent_id__in=piece).values_list("pk", flat=True)
    ]


def delete_executions(
    connection: Any, execution_model: Any, span_model: Any, request_model: Any, ids: list[Any]
) -> tuple[int, int]:
    """Delete the executions ``ids`` and their spans, unlinking the batch requests (``request_model``)
    that point at them; returns how many executions and spans went. Executions go first: a writer
    re-recording one of them either committed before (its spans are then seen and deleted here) or
    waits for this transaction and writes the execution anew, with its spans."""
    if is_postgresql(connection):
        return delete_executions_postgresql(connection, execution_model, span_model, request_model, ids)
    return delete_executions_portable(connection, execution_model, span_model, request_model, ids)


def delete_executions_postgresql(
    connection: Any, execution_model: Any, span_model: Any, request_model: Any, ids: list[Any]
) -> tuple[int, int]:
    """:func:`delete_executions` in one statement a table for the whole chunk, the ids sent as one
    array. Twin: :func:`delete_executions_portable`."""
    quote = connection.ops.quote_name

    def names(model: Any, column: str) -> tuple[str, str]:
        return quote(model._meta.db_table), quote(model._meta.get_field(column).column)

    requests, request_execution = names(request_model, "execution")
    executions, execution_id = names(execution_model, "id")
    spans, span_execution = names(span_model, "execution")
    array = _uuid_array(ids)
    counts = []
    with connection.cursor() as cursor:
        for sql in (
            f"UPDATE {requests} SET {request_execution} = NULL WHERE {request_execution} = ANY(%s::uuid[])",
            f"DELETE FROM {executions} WHERE {execution_id} = ANY(%s::uuid[])",
            f"DELETE FROM {spans} WHERE {span_execution} = ANY(%s::uuid[])",
        ):
            cursor.execute(sql, [array])
            counts.append(cursor.rowcount)
    return counts[1], counts[2]


def delete_executions_portable(
    connection: Any, execution_model: Any, span_model: Any, request_model: Any, ids: list[Any]
) -> tuple[int, int]:
    """Portable twin of :func:`delete_executions_postgresql`: per slice of ids, an UPDATE and two
    DELETEs (no per-row signals or cascades: as the fast path)."""
    alias = connection.alias
    deleted_executions = deleted_spans = 0
    for piece in id_slices(connection, ids):
        request_model._default_manager.using(alias).filter(execution_id__in=piece).update(execution=None)
        deleted_executions += (
            execution_model._default_manager.using(alias).filter(pk__in=piece)._raw_delete(alias)
        )
        deleted_spans += (
            span_model._default_manager.using(alias).filter(execution_id__in=piece)._raw_delete(alias)
        )
    return deleted_executions, deleted_spans


# -- analytics ------------------------------------------------------------------------------------

# (section: analytics)
