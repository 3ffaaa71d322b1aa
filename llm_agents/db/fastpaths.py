"""Every PostgreSQL-only statement of the product, each beside the portable ORM code that does the
same on any other supported database (SQLite), and which a parity test runs against it on
PostgreSQL: the same input gives the same rows and results either way.

A fast path exists where the ORM's statements cost more than the work (a tracking write of some 60
cast columns, a budget check under lock, a purge of thousands of ids); each says why.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections, models, transaction
from django.db.models import Count, ExpressionWrapper, F, FloatField, IntegerField, Q, QuerySet, Value, Window
from django.db.models.constants import OnConflict
from django.db.models.functions import Floor, RowNumber
from django.db.models.sql import InsertQuery
from django.utils import timezone

from ..periods import calendar_days
from .isolation import single_writer
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
        key = quote(primary_key_name(connection, model))
        return sql + f"ON CONFLICT ON CONSTRAINT {key} DO UPDATE SET {assignments}"

    relax = ", set_config('synchronous_commit', 'off', true)" if relaxed else ""
    executions = insert(execution_model, "document.d -> 'executions'", update_fields)
    spans = insert(span_model, "document.d -> 'spans'", ())
    sql = (
        f"WITH document AS (SELECT %s::jsonb AS d{relax}), executions AS ({executions} RETURNING 1), "
        f"spans AS ({spans}) SELECT count(*) FROM executions"
    )
    known = _documents[shape] = (f"write_{len(_documents)}", sql)
    return known


def primary_key_name(connection: Any, model: Any) -> str:
    """The name of the primary key constraint of ``model``'s table on PostgreSQL. Upserts name it
    rather than the id column: with monthly partitions the key is ``(id, started_at)`` under the same
    name (:mod:`~llm_agents.db.partitions`), so one statement serves both shapes of the table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return str(row[0]) if row else f"{model._meta.db_table}_pkey"


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

# The budget models are looked up by name in the app registry when a function runs: this layer sits
# below the models and imports none of them.


def _budget_models() -> tuple[Any, Any, Any]:
    """``(Budget, BudgetReservation, SpendCounter)``."""
    get = apps.get_model
    return (
        get("llm_agents", "Budget"),
        get("llm_agents", "BudgetReservation"),
        get("llm_agents", "SpendCounter"),
    )


# A hard-stop check locks the budgets that apply, sums their periods' spend and the reservations of
# calls in flight, and reserves the call's estimated cost unless one of them is reached: six ORM
# queries in a transaction, or, on PostgreSQL, one round trip of a statement prepared once per
# session. Settling a call adds to its counters and drops its reservation: one query per counter,
# or one round trip on PostgreSQL. Both PostgreSQL transactions skip the WAL flush wait (see each).


@dataclass(frozen=True)
class BudgetCheck:
    """What a hard-stop check found: whether any active budget applies to the call, whether its
    reservation is now held, and each hard-stop budget that refused it, as
    ``(budget, spend, tokens, reserved)``."""

    applies: bool
    held: bool = False
    refused: list[tuple[Any, Decimal, int, Decimal]] = field(default_factory=list)


def check_and_reserve(
    alias: str,
    reservation: Any,
    estimate: Callable[[], tuple[Decimal, int]],
    today: dt.date,
) -> BudgetCheck:
    """Check the budgets that apply to the call of ``reservation`` (an unsaved row: its agent type,
    tenant, model, end user, ``created_at`` as now and ``expires_at``) and hold it unless a hard stop refuses.
    Its amount and tokens are filled in from ``estimate()`` when a hard-stop budget applies. Periods
    are those containing the local day ``today``.

    The portable path (SQLite's): the hard stops are locked in primary key order and read again under
    the lock, so concurrent callers overshoot a limit by at most one call."""
    Budget, BudgetReservation, SpendCounter = _budget_models()

    now = reservation.created_at
    applying = Budget.objects.using(alias).applying_to(
        agent_type=reservation.agent_type,
        tenant_id=reservation.tenant_id,
        model=reservation.model,
        user_id=reservation.user_id,
    )
    budgets = list(applying.values_list("pk", "enforcement"))
    hard = sorted(pk for pk, enforcement in budgets if enforcement == Budget.Enforcement.HARD_STOP)
    if not hard:
        return BudgetCheck(applies=bool(budgets))
    reservation.amount, reservation.tokens = estimate()
    with single_writer(alias), transaction.atomic(using=alias):
        locked = Budget.objects.using(alias).filter(pk__in=hard).active().hard_stops().locked()
        spent = SpendCounter.objects.using(alias).totals_for(locked, today)
        held = BudgetReservation.objects.using(alias).reserved_for(locked, now)
        refused = []
        for budget in locked:
            (spend, tokens), (reserved, reserved_tokens) = spent[budget.pk], held[budget.pk]
            if budget.is_over(spend + reserved, tokens + reserved_tokens):
                refused.append((budget, spend, tokens, reserved))
        if refused:
            return BudgetCheck(applies=True, refused=refused)
        BudgetReservation.objects.using(alias).hold(reservation)
    return BudgetCheck(applies=True, held=True)


_POSTGRESQL_LOCK = """
SELECT id FROM {budget} WHERE is_active AND enforcement = 'hard_stop' AND ({keys}) ORDER BY id FOR UPDATE
"""
_POSTGRESQL_CHECK = """
WITH now_ AS (
    -- a reservation lives only as long as its call: this transaction's commit skips the WAL flush wait
    SELECT %s::date AS today, %s::timestamptz AS moment, set_config('synchronous_commit', 'off', true)
),
calendar (period, first_day, last_day) AS (
    -- the days of the periods containing today, computed by llm_agents.periods.calendar_days
    VALUES ('daily', %s::date, %s::date), ('weekly', %s::date, %s::date), ('monthly', %s::date, %s::date)
),
periods AS (
    -- any other period is a rolling window of period_days days ending today (models.budgets.days_of_period)
    SELECT b.id, b.scope, b.scope_value, b.limit_usd, b.token_limit,
        COALESCE(c.first_day, n.today - (COALESCE(b.period_days, 1) - 1)) AS first_day,
        COALESCE(c.last_day, n.today) AS last_day
    FROM {budget} b CROSS JOIN now_ n LEFT JOIN calendar c ON c.period = b.period
    WHERE b.is_active AND b.enforcement = 'hard_stop' AND ({keys})
),
usage AS (
    SELECT p.id, p.limit_usd, p.token_limit, c.spend, c.tokens, r.reserved, r.reserved_tokens
    FROM periods p
    CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(spend), 0) AS spend, COALESCE(SUM(tokens), 0) AS tokens FROM {counter}
        WHERE scope = p.scope AND scope_value = p.scope_value AND day >= p.first_day AND day <= p.last_day
    ) c
    CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(amount), 0) AS reserved, COALESCE(SUM(tokens), 0) AS reserved_tokens
        FROM {reservation} x, now_ n
        WHERE x.expires_at > n.moment AND (p.scope = 'global' OR (p.scope = 'agent' AND x.agent_type = p.scope_value)
            OR (p.scope = 'tenant' AND x.tenant_id = p.scope_value) OR (p.scope = 'model' AND x.model = p.scope_value)
            OR (p.scope = 'user' AND x.user_id = p.scope_value))
    ) r
),
inserted AS (
    INSERT INTO {reservation} (id, agent_type, tenant_id, model, user_id, amount, tokens, created_at,
        expires_at)
    SELECT %s::uuid, %s::varchar, %s::varchar, %s::varchar, %s::varchar, %s::numeric, %s::bigint,
        %s::timestamptz, %s::timestamptz
    WHERE EXISTS (SELECT 1 FROM usage) AND NOT EXISTS (
        SELECT 1 FROM usage u WHERE u.spend + u.reserved >= u.limit_usd
            OR (u.token_limit IS NOT NULL AND u.tokens + u.reserved_tokens >= u.token_limit))
    RETURNING id
)
SELECT u.id, u.spend, u.tokens, u.reserved, u.reserved_tokens, u.limit_usd, u.token_limit,
    (SELECT count(*) FROM inserted), (SELECT count(*) FROM {budget} WHERE is_active AND ({keys}))
FROM (SELECT 1) AS one LEFT JOIN usage u ON true
"""


def check_and_reserve_postgresql(
    alias: str,
    reservation: Any,
    estimate: Callable[[], tuple[Decimal, int]],
    today: dt.date,
) -> BudgetCheck:
    """:func:`check_and_reserve` on PostgreSQL: lock the hard-stop budgets that apply (primary key
    order), then, in a statement that sees every reservation committed before the lock was granted,
    sum each one's period spend and reservations and insert the reservation unless one of them is
    reached. The periods' days are parameters (:func:`~llm_agents.periods.calendar_days`;
    a rolling window ends today); the statement only sums.

    One round trip: the check is a statement prepared once per session (planning it costs more than
    running it; :func:`~llm_agents.db.statements.run_prepared`), run after the lock in the same query
    string, which PostgreSQL runs as one transaction. It skips the WAL flush wait: a reservation
    lives only as long as its call. The estimate is one of its parameters, so it is always made."""
    Budget, BudgetReservation, SpendCounter = _budget_models()

    connection = connections[alias]
    quote = connection.ops.quote_name
    keys = Budget.spend_keys(
        reservation.agent_type, reservation.tenant_id, [reservation.model], reservation.user_id
    )
    tables = {"budget": quote(Budget._meta.db_table), "counter": quote(SpendCounter._meta.db_table),
              "reservation": quote(BudgetReservation._meta.db_table),
              "keys": " OR ".join(["(scope = %s AND scope_value = %s)"] * len(keys))}  # fmt: skip
    key_params = [value for key in keys for value in key]
    reservation.amount, reservation.tokens = estimate()
    calendar = calendar_days(today)
    now = reservation.created_at
    params = [
        today, now, *calendar["daily"], *calendar["weekly"], *calendar["monthly"], *key_params,
        reservation.id, reservation.agent_type, reservation.tenant_id, reservation.model, reservation.user_id,
        reservation.amount, reservation.tokens, now, reservation.expires_at,
        *key_params,
    ]  # fmt: skip
    rows = run_prepared(
        connection,
        f"budget_check_{len(keys)}",
        _POSTGRESQL_CHECK.format(**tables),
        params,
        before=[_POSTGRESQL_LOCK.format(**tables)],
        before_params=key_params,
    )
    budget_ids = [row[0] for row in rows if row[0] is not None]
    inserted, applies = rows[0][7], rows[0][8]
    if inserted:
        return BudgetCheck(applies=True, held=True)
    if not budget_ids:
        return BudgetCheck(applies=bool(applies))
    over = {
        row[0]: (row[1], int(row[2]), row[3])
        for row in rows
        if row[1] + row[3] >= row[5] or (row[6] is not None and row[2] + row[4] >= row[6])
    }
    found = Budget.objects.using(alias).in_bulk(list(over))
    return BudgetCheck(applies=True, refused=[(found[pk], *over[pk]) for pk in sorted(over) if pk in found])


def add_spend(
    alias: str, entries: list[tuple[str, str, Decimal, int]], day: dt.date, release: uuid.UUID | None
) -> list[int]:
    """Add ``entries`` (``(scope, scope_value, spend, tokens)``) to the counters of the local ``day``
    and drop the reservation ``release`` of the call they settle, in one transaction; returns the
    primary keys of the active budgets whose scope is one of the keys added to, in order (the
    budgets whose thresholds this spend may have crossed).

    The portable path (SQLite's): :meth:`SpendCounter.objects.add
    <llm_agents.models.budgets.SpendCounterQuerySet.add>`, :meth:`BudgetReservation.objects.release
    <llm_agents.models.budgets.BudgetReservationQuerySet.release>` and :meth:`Budget.objects.for_keys
    <llm_agents.models.budgets.BudgetQuerySet.for_keys>`."""
    Budget, BudgetReservation, SpendCounter = _budget_models()

    entries = sorted(entry for entry in entries if entry[2] or entry[3])
    with single_writer(alias), transaction.atomic(using=alias):
        if release is not None:
            BudgetReservation.objects.using(alias).release(release)
        SpendCounter.objects.using(alias).add(entries, day)
        if not entries:
            return []
        keys = [(scope, value) for scope, value, _, _ in entries]
        return list(Budget.objects.using(alias).for_keys(keys).order_by("pk").values_list("pk", flat=True))


def add_spend_postgresql(
    alias: str, entries: list[tuple[str, str, Decimal, int]], day: dt.date, release: uuid.UUID | None
) -> list[int]:
    """:func:`add_spend` on PostgreSQL in one statement: the reservation's DELETE and one
    ``INSERT … ON CONFLICT DO UPDATE`` of every counter (in key order, so concurrent writers never
    deadlock) as data-modifying CTEs of the SELECT of the budgets that apply, so a call's spend
    costs one round trip whether or not budgets exist; prepared once per session and shape (number
    of counters, a reservation or not). Its transaction does not wait for the WAL
    flush: a server crash may lose the last fraction of a second of increments, which
    ``rebuild_aggregates`` restores from the (durable) executions table."""
    Budget, BudgetReservation, SpendCounter = _budget_models()

    connection = connections[alias]
    quote = connection.ops.quote_name
    entries = sorted(entry for entry in entries if entry[2] or entry[3])
    if release is None and not entries:
        return []
    parts = ["relaxed AS (SELECT set_config('synchronous_commit', 'off', true))"]
    params: list[Any] = []
    if release is not None:
        parts.append(
            f"dropped AS (DELETE FROM {quote(BudgetReservation._meta.db_table)} WHERE {quote('id')} = %s)"
        )
        params.append(release)
    keys = "false"
    if entries:
        table = quote(SpendCounter._meta.db_table)
        columns = ", ".join(quote(name) for name in ("scope", "scope_value", "day", "spend", "tokens"))
        rows = ", ".join(["(%s, %s, %s::date, %s::numeric, %s::bigint)"] * len(entries))
        parts.append(
            f"added AS (INSERT INTO {table} ({columns}) VALUES {rows} "
            f"ON CONFLICT ({quote('scope')}, {quote('scope_value')}, {quote('day')}) DO UPDATE SET "
            f"{quote('spend')} = {table}.{quote('spend')} + EXCLUDED.{quote('spend')}, "
            f"{quote('tokens')} = {table}.{quote('tokens')} + EXCLUDED.{quote('tokens')})"
        )
        params += [
            value
            for scope, key, cost, tokens in entries
            for value in (scope, key, day.isoformat(), str(cost), tokens)
        ]
        keys = " OR ".join(["(b.scope = %s AND b.scope_value = %s)"] * len(entries))
    params += [value for scope, key, _, _ in entries for value in (scope, key)]
    # Joined to ``relaxed`` so that its set_config runs whether or not a budget applies.
    sql = (
        f"WITH {', '.join(parts)} SELECT b.id FROM relaxed "
        f"LEFT JOIN {quote(Budget._meta.db_table)} b ON b.is_active AND ({keys}) ORDER BY b.id"
    )
    key = f"spend_{len(entries)}_{'release' if release is not None else 'keep'}"
    return [row[0] for row in run_prepared(connection, key, sql, params) if row[0] is not None]


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
# PostgreSQL computes continuous percentiles (``percentile_cont``) and full-text matches in the
# query; elsewhere the same figures come from reading only the rows around each percentile, and
# search is a substring match. Also the admin's PostgreSQL-only probes of the executions list.


class PercentileCont(models.Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``: ORM queries use
    it where :func:`is_postgresql`; the portable twins are :func:`percentiles_portable` and
    :func:`grouped_percentile_portable`."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    output_field = FloatField()
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=f"{float(fraction):.10f}", **extra)


def percentiles(queryset: QuerySet[Any], field: str, percents: Sequence[float]) -> list[float | None]:
    """Continuous percentiles of ``field`` over ``queryset``'s rows (the rows with no value left out
    by the caller), rounded to 2 places; None where there is no row."""
    if is_postgresql(connections[queryset.db]):
        return percentiles_postgresql(queryset, field, percents)
    return percentiles_portable(queryset, field, percents)


def percentiles_postgresql(
    queryset: QuerySet[Any], field: str, percents: Sequence[float]
) -> list[float | None]:
    """:func:`percentiles` in one aggregate query (``percentile_cont``). Twin: :func:`percentiles_portable`."""
    keys = [f"p{index}" for index in range(len(percents))]
    row = queryset.aggregate(
        **{key: PercentileCont(field, percent / 100) for key, percent in zip(keys, percents, strict=True)}
    )
    return [None if row[key] is None else round(row[key], 2) for key in keys]


def percentiles_portable(
    queryset: QuerySet[Any], field: str, percents: Iterable[float]
) -> list[float | None]:
    """Exact continuous percentiles where the database has no percentile_cont: one count, then the
    (at most two) neighbouring values of each percentile, fetched by offset."""
    count = queryset.count()
    values: list[float | None] = []
    ordered = queryset.order_by(field).values_list(field, flat=True)
    for percent in percents:
        if not count:
            values.append(None)
            continue
        position = (count - 1) * percent / 100
        lower = int(position)
        pair = [float(value) for value in ordered[lower : lower + 2]]
        upper_value = pair[1] if len(pair) > 1 else pair[0]
        values.append(round(pair[0] + (upper_value - pair[0]) * (position - lower), 2))
    return values


def median_by_walk(queryset: QuerySet[Any], field: str, count: int) -> float | None:
    """The exact continuous median (``percentile_cont(0.5)``: the average of the two middle values
    for an even count) of ``field`` over ``queryset``'s ``count`` rows (the rows with no value left
    out by the caller), on every database: the (one or two) middle values read in order by offset,
    ``ORDER BY field OFFSET (count - 1) / 2 LIMIT 1 or 2``, a walk of half an index where one orders
    the rows by ``field`` (``llm_score_value_idx``) instead of a sort of every value. None for no
    row. Its twins: :class:`PercentileCont` (PostgreSQL) and :func:`grouped_percentile_portable`."""
    if not count:
        return None
    lower = (count - 1) // 2
    ordered = queryset.order_by(field).values_list(field, flat=True)
    middle = [float(value) for value in ordered[lower : lower + 2 - count % 2]]
    if not middle:
        return None
    return middle[0] + (middle[-1] - middle[0]) * 0.5


def grouped_percentile_portable(
    queryset: QuerySet[Any], group: str, field: str, percent: float
) -> dict[Any, float]:
    """``{group value: continuous percentile of field}`` in one query where the database has no
    percentile_cont (on PostgreSQL, :class:`PercentileCont` annotated on the grouped query): each
    group's rows are ranked by a window function and only the (at most two) rows around the
    percentile's position are read."""
    ranked = (
        queryset.filter(**{f"{field}__isnull": False})
        .order_by()
        .annotate(
            position=Window(RowNumber(), partition_by=F(group), order_by=F(field).asc()),
            group_size=Window(Count("pk"), partition_by=F(group)),
        )
        .annotate(
            lower=ExpressionWrapper(
                Floor((F("group_size") - 1) * Value(percent / 100)) + 1, output_field=IntegerField()
            )
        )
        .filter(position__gte=F("lower"), position__lte=F("lower") + 1)
        .values_list(group, field, "position", "group_size")
    )
    found: dict[Any, dict[int, float]] = {}
    sizes: dict[Any, int] = {}
    for key, value, position, size in ranked:
        found.setdefault(key, {})[position] = float(value)
        sizes[key] = size
    result = {}
    for key, values in found.items():
        exact = (sizes[key] - 1) * percent / 100
        lower = int(exact) + 1
        low = values[lower]
        high = values.get(lower + 1, low)
        result[key] = low + (high - low) * (exact - int(exact))
    return result


#: The p95 of the durations of the ``used`` rows counted for a model, as a column of the query over
#: ``used`` that groups them by model (``ExecutionQuerySet.compare_models``). Twin: :func:`used_p95_portable`.
USED_P95_POSTGRESQL = "PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE counted = 1)"


def used_p95_portable(connection: Any, sql: str, params: list[Any]) -> dict[str, float]:
    """``{model_id: continuous p95 of duration_ms}`` over the ``used`` rows counted for each model
    (``sql`` defines ``used`` as common table expressions), where the database has no
    percentile_cont: only the (at most two) rows around each model's percentile position are read,
    ranked by a window function. (FLOOR, not a bare CAST: PostgreSQL's cast rounds, SQLite's truncates.)"""
    with connection.cursor() as cursor:
        cursor.execute(
            sql
            + """
            SELECT model_id, duration_ms, position, size FROM (
                SELECT model_id, duration_ms,
                    ROW_NUMBER() OVER (PARTITION BY model_id ORDER BY duration_ms) AS position,
                    COUNT(*) OVER (PARTITION BY model_id) AS size
                FROM used
                WHERE counted = 1 AND duration_ms IS NOT NULL
            ) ranked
            WHERE position >= CAST(FLOOR((size - 1) * 0.95) AS INTEGER) + 1
                AND position <= CAST(FLOOR((size - 1) * 0.95) AS INTEGER) + 2
            """,
            params,
        )
        rows = cursor.fetchall()
    found: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    for model_id, value, position, size in rows:
        found.setdefault(model_id, {})[position] = float(value)
        sizes[model_id] = size
    result = {}
    for model_id, values in found.items():
        exact = (sizes[model_id] - 1) * 0.95
        low = values[int(exact) + 1]
        high = values.get(int(exact) + 2, low)
        result[model_id] = low + (high - low) * (exact - int(exact))
    return result


class SearchMatch(models.Func):
    """PostgreSQL: text columns as a ``simple`` full-text document of at most ``document_chars``
    characters, matched by ``websearch_to_tsquery(text)``. For the executions the document is
    written out exactly as in the ``llm_exec_search_idx`` index (migration 0009), so that
    PostgreSQL answers it from the index."""

    output_field = models.BooleanField()

    def __init__(self, text: str, columns: Sequence[str], document_chars: int) -> None:
        super().__init__(*(F(column) for column in columns), Value(text))
        self.document_chars = int(document_chars)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        *columns, text = self.get_source_expressions()
        parts = []
        for column in columns:
            sql, _ = compiler.compile(column)
            parts.append(f"COALESCE({sql}, '')" if column.target.null else sql)
        text_sql, text_params = compiler.compile(text)
        joined = " || ' ' || ".join(parts)
        document = f"to_tsvector('simple'::regconfig, left({joined}, {self.document_chars}))"
        return f"{document} @@ websearch_to_tsquery('simple'::regconfig, {text_sql})", list(text_params)


def search_condition(connection: Any, text: str, columns: Sequence[str], *, document_chars: int) -> Q:
    """The rows whose ``columns`` hold every word of ``text`` (stripped, not empty)."""
    if is_postgresql(connection):
        return search_condition_postgresql(text, columns, document_chars=document_chars)
    return search_condition_portable(text, columns)


def search_condition_postgresql(text: str, columns: Sequence[str], *, document_chars: int) -> Q:
    """:func:`search_condition` as a full-text match (:class:`SearchMatch`) a GIN index answers: whole
    words, case-insensitive, in any order, with web-search syntax (``"a phrase"``, ``or``,
    ``-word``). Twin: :func:`search_condition_portable` (the same rows for plain words)."""
    return Q(SearchMatch(text, columns, document_chars))


def search_condition_portable(text: str, columns: Sequence[str]) -> Q:
    """Each word of ``text`` a case-insensitive substring of one of ``columns``."""
    condition = Q()
    for word in text.split():
        condition &= functools.reduce(
            operator.or_, (Q(**{f"{column}__icontains": word}) for column in columns)
        )
    return condition


def distinct_values_postgresql(queryset: QuerySet[Any], column: str) -> list[Any]:
    """The distinct values of ``column`` in the table of ``queryset``, in order, with None last when
    a row has none: a loose index scan, one probe of the column's index per distinct value (a
    recursive query) instead of reading every row as ``SELECT DISTINCT`` does (the admin's filters
    of an unscoped executions list). Twin: :func:`distinct_values_portable`."""
    connection = connections[queryset.db]
    table, column = (
        connection.ops.quote_name(queryset.model._meta.db_table),
        connection.ops.quote_name(column),
    )
    sql = f"""
        WITH RECURSIVE found(value) AS (
            (SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)
            UNION ALL
            SELECT (SELECT {column} FROM {table} WHERE {column} > found.value ORDER BY {column} LIMIT 1)
            FROM found WHERE found.value IS NOT NULL
        )
        SELECT value FROM found WHERE value IS NOT NULL
        UNION ALL
        SELECT NULL WHERE EXISTS (SELECT 1 FROM {table} WHERE {column} IS NULL)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [value for (value,) in cursor.fetchall()]


def distinct_values_portable(queryset: QuerySet[Any], field_name: str) -> list[Any]:
    """The distinct values of field ``field_name`` over the whole table of ``queryset``, in order,
    None last (what Django's ``AllValuesFieldListFilter`` asks with ``SELECT DISTINCT``)."""
    values = list(
        queryset.model._default_manager.using(queryset.db)
        .order_by(field_name)
        .values_list(field_name, flat=True)
        .distinct()
    )
    return [value for value in values if value is not None] + [None] * (None in values)


def row_estimate_postgresql(queryset: QuerySet[Any]) -> int | None:
    """The planner's estimate of the number of rows of ``queryset``'s table (``pg_class.reltuples``;
    of a partitioned table, the sum of its partitions', which autovacuum keeps, unlike the parent's),
    None when there is none: counting a table of millions exactly reads all of it. Twin: the exact
    ``queryset.count()`` of an unfiltered queryset (the same after ``ANALYZE``)."""
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE((SELECT sum(GREATEST(c.reltuples, 0))::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)), "
            "(SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)))",
            [queryset.model._meta.db_table] * 2,
        )
        row = cursor.fetchone()
    return None if not row or row[0] is None else int(row[0])


def datetimes_postgresql(queryset: QuerySet[Any], field_name: str, kind: str, zone: Any) -> list[dt.datetime]:
    """The starts of the years, months or days (``kind``) in time zone ``zone`` that hold a row of
    ``queryset`` (ascending; ``QuerySet.datetimes`` of a queryset over one table, ``USE_TZ`` on):
    each candidate between the first and the last row is probed through the field's index, in one
    query, instead of truncating every row as ``SELECT DISTINCT`` does. Each probe is a ``LIMIT 1``
    subquery, which the planner costs at one row: as a semi-join (``EXISTS``) it priced a partitioned
    table's probes at whole scans, past ``jit_above_cost``, and PostgreSQL's default JIT then took
    over a second to compile them. Twin: :func:`datetimes_portable`."""
    connection = connections[queryset.db]
    query = queryset.query
    zone_name = getattr(zone, "key", None) or str(zone)
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    column = f"{table}.{connection.ops.quote_name(queryset.model._meta.get_field(field_name).column)}"
    try:
        where, params = ("", ()) if not query.where else query.get_compiler(queryset.db).compile(query.where)
    except EmptyResultSet:
        return []  # a queryset of nothing (e.g. a user who may see no tenant)
    except FullResultSet:
        where, params = "", ()
    condition = f"({where}) AND " if where else ""
    sql = f"""
        WITH bounds AS (
            SELECT date_trunc(%s, MIN({column}) AT TIME ZONE %s) AS first,
                   date_trunc(%s, MAX({column}) AT TIME ZONE %s) AS last
            FROM {table} {"WHERE " + where if where else ""}
        )
        SELECT start FROM bounds, generate_series(bounds.first, bounds.last, %s::interval) AS start
        CROSS JOIN LATERAL (
            SELECT 1 FROM {table} WHERE {condition}{column} >= (start AT TIME ZONE %s)
            AND {column} < ((start + %s::interval) AT TIME ZONE %s) LIMIT 1
        ) AS found
        ORDER BY start
    """
    step = f"1 {kind}"
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [kind, zone_name, kind, zone_name, *params, step, *params, zone_name, step, zone_name]
        )
        return [timezone.make_aware(start, zone) for (start,) in cursor.fetchall()]


def datetimes_portable(queryset: QuerySet[Any], field_name: str, kind: str, zone: Any) -> list[dt.datetime]:
    """Portable twin of :func:`datetimes_postgresql`: Django's ``QuerySet.datetimes``."""
    return list(models.QuerySet.datetimes(queryset, field_name, kind, "ASC", zone))  # type: ignore[arg-type]


# -- the quality loop -----------------------------------------------------------------------------
# An execution's tags are a JSON array of strings: on PostgreSQL ``tags @> '["beta"]'``, which the
# GIN index llm_exec_tags_idx (jsonb_path_ops, migration 0017) answers; the twin reads each row's
# array, on any database. Scores point at executions without a database constraint, like spans:
# purging executions deletes their scores by the ids of a chunk.


class JsonArrayHas(models.Func):
    """True when the JSON array in ``column`` holds the string ``value``, read element by element:
    ``json_each`` on SQLite, ``jsonb_array_elements_text`` on PostgreSQL (no index)."""

    output_field = models.BooleanField()

    def __init__(self, column: str, value: str) -> None:
        super().__init__(F(column), Value(value))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        column, value = (compiler.compile(expression) for expression in self.get_source_expressions())
        elements = (
            f"SELECT 1 FROM jsonb_array_elements_text({column[0]}) AS element WHERE element = {value[0]}"
            if is_postgresql(connection)
            else f"SELECT 1 FROM json_each({column[0]}) AS element WHERE element.value = {value[0]}"
        )
        return f"EXISTS ({elements})", [*column[1], *value[1]]


def tag_condition(connection: Any, tag: str) -> Q:
    """The executions whose ``tags`` hold ``tag``."""
    if is_postgresql(connection):
        return tag_condition_postgresql(tag)
    return tag_condition_portable(tag)


def tag_condition_postgresql(tag: str) -> Q:
    """:func:`tag_condition` as JSON containment, ``tags @> '["tag"]'``, which the GIN index
    llm_exec_tags_idx answers. Twin: :func:`tag_condition_portable`."""
    return Q(tags__contains=[tag])


def tag_condition_portable(tag: str) -> Q:
    """:func:`tag_condition` read from each row's array (:class:`JsonArrayHas`); Django's JSON
    ``contains`` lookup is not supported on SQLite."""
    return Q(JsonArrayHas("tags", tag))


def delete_scores(connection: Any, score_model: Any, ids: list[Any]) -> int:
    """Delete the scores of the executions ``ids``; returns how many went."""
    if is_postgresql(connection):
        return delete_scores_postgresql(connection, score_model, ids)
    return delete_scores_portable(connection, score_model, ids)


def delete_scores_postgresql(connection: Any, score_model: Any, ids: list[Any]) -> int:
    """:func:`delete_scores` in one statement for the whole chunk, the ids sent as one array (through
    llm_score_execution_idx). Twin: :func:`delete_scores_portable`."""
    quote = connection.ops.quote_name
    table = quote(score_model._meta.db_table)
    column = quote(score_model._meta.get_field("execution").column)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s::uuid[])", [_uuid_array(ids)])
        return int(cursor.rowcount)


def delete_scores_portable(connection: Any, score_model: Any, ids: list[Any]) -> int:
    """Portable twin of :func:`delete_scores_postgresql`: a DELETE per slice of ids (no signals)."""
    scores = score_model._default_manager.using(connection.alias)
    return sum(
        int(scores.filter(execution_id__in=piece)._raw_delete(connection.alias))
        for piece in id_slices(connection, ids)
    )
