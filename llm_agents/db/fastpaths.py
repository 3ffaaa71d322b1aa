"""Every PostgreSQL-only statement of the product, each beside the portable ORM code that does the
same on any other supported database (SQLite), and which a parity test runs against it on
PostgreSQL: the same input gives the same rows and results either way.

A fast path exists where the ORM's statements cost more than the work (a tracking write of some 60
cast columns, a budget check under lock, a purge of thousands of ids); each says why.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from ..periods import calendar_days
from .isolation import single_writer
from .statements import run_prepared

if TYPE_CHECKING:
    from ..models import Budget, BudgetReservation

# -- tracking writes ------------------------------------------------------------------------------

# (section: tracking writes)


# -- budgets --------------------------------------------------------------------------------------

# (section: budgets)
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
    refused: list[tuple[Budget, Decimal, int, Decimal]] = field(default_factory=list)


def check_and_reserve(
    alias: str,
    reservation: BudgetReservation,
    estimate: Callable[[], tuple[Decimal, int]],
    today: dt.date,
) -> BudgetCheck:
    """Check the budgets that apply to the call of ``reservation`` (an unsaved row: its agent type,
    tenant, model, ``created_at`` as now and ``expires_at``) and hold it unless a hard stop refuses.
    Its amount and tokens are filled in from ``estimate()`` when a hard-stop budget applies. Periods
    are those containing the local day ``today``.

    The portable path (SQLite's): the hard stops are locked in primary key order and read again under
    the lock, so concurrent callers overshoot a limit by at most one call."""
    from ..models import Budget, BudgetReservation, SpendCounter

    now = reservation.created_at
    applying = Budget.objects.using(alias).applying_to(
        agent_type=reservation.agent_type, tenant_id=reservation.tenant_id, model=reservation.model
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
            OR (p.scope = 'tenant' AND x.tenant_id = p.scope_value) OR (p.scope = 'model' AND x.model = p.scope_value))
    ) r
),
inserted AS (
    INSERT INTO {reservation} (id, agent_type, tenant_id, model, amount, tokens, created_at, expires_at)
    SELECT %s::uuid, %s::varchar, %s::varchar, %s::varchar, %s::numeric, %s::bigint, %s::timestamptz, %s::timestamptz
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
    reservation: BudgetReservation,
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
    from ..models import Budget, BudgetReservation, SpendCounter
    from ..models.budgets import spend_keys

    connection = connections[alias]
    quote = connection.ops.quote_name
    keys = spend_keys(reservation.agent_type, reservation.tenant_id, [reservation.model])
    tables = {"budget": quote(Budget._meta.db_table), "counter": quote(SpendCounter._meta.db_table),
              "reservation": quote(BudgetReservation._meta.db_table),
              "keys": " OR ".join(["(scope = %s AND scope_value = %s)"] * len(keys))}  # fmt: skip
    key_params = [value for key in keys for value in key]
    reservation.amount, reservation.tokens = estimate()
    calendar = calendar_days(today)
    now = reservation.created_at
    params = [
        today, now, *calendar["daily"], *calendar["weekly"], *calendar["monthly"], *key_params,
        reservation.id, reservation.agent_type, reservation.tenant_id, reservation.model,
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
) -> None:
    """Add ``entries`` (``(scope, scope_value, spend, tokens)``) to the counters of the local ``day``
    and drop the reservation ``release`` of the call they settle, in one transaction.

    The portable path (SQLite's): :meth:`SpendCounter.objects.add
    <llm_agents.models.budgets.SpendCounterQuerySet.add>` and :meth:`BudgetReservation.objects.release
    <llm_agents.models.budgets.BudgetReservationQuerySet.release>`."""
    from ..models import BudgetReservation, SpendCounter

    with single_writer(alias), transaction.atomic(using=alias):
        if release is not None:
            BudgetReservation.objects.using(alias).release(release)
        SpendCounter.objects.using(alias).add(entries, day)


def add_spend_postgresql(
    alias: str, entries: list[tuple[str, str, Decimal, int]], day: dt.date, release: uuid.UUID | None
) -> None:
    """:func:`add_spend` on PostgreSQL in one round trip: the reservation's DELETE and one
    ``INSERT … ON CONFLICT DO UPDATE`` of every counter (in key order, so concurrent writers never
    deadlock) sent as one query string, which PostgreSQL runs as one implicit transaction. That
    transaction does not wait for the WAL flush: a server crash may lose the last fraction of a
    second of increments, which ``rebuild_aggregates`` restores from the (durable) executions table."""
    from ..models import BudgetReservation, SpendCounter

    connection = connections[alias]
    quote = connection.ops.quote_name
    statements: list[tuple[str, list[Any]]] = [("SELECT set_config('synchronous_commit', 'off', true)", [])]
    if release is not None:
        table = quote(BudgetReservation._meta.db_table)
        statements.append((f"DELETE FROM {table} WHERE {quote('id')} = %s", [release]))
    entries = sorted(entry for entry in entries if entry[2] or entry[3])
    if entries:
        table = quote(SpendCounter._meta.db_table)
        columns = ", ".join(quote(name) for name in ("scope", "scope_value", "day", "spend", "tokens"))
        rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(entries))
        statements.append(
            (
                f"INSERT INTO {table} ({columns}) VALUES {rows} "
                f"ON CONFLICT ({quote('scope')}, {quote('scope_value')}, {quote('day')}) DO UPDATE SET "
                f"{quote('spend')} = {table}.{quote('spend')} + EXCLUDED.{quote('spend')}, "
                f"{quote('tokens')} = {table}.{quote('tokens')} + EXCLUDED.{quote('tokens')}",
                [
                    value
                    for scope, key, cost, tokens in entries
                    for value in (scope, key, day.isoformat(), str(cost), tokens)
                ],
            )
        )
    if len(statements) == 1:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            ";".join(sql for sql, _ in statements), [p for _, params in statements for p in params]
        )


# -- retention ------------------------------------------------------------------------------------

# (section: retention)


# -- analytics ------------------------------------------------------------------------------------

# (section: analytics)
