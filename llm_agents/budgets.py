"""Budget enforcement: check before a call, record its spend after it.

``Agent.call`` checks its budgets after the cache lookup and before the first provider request
(:func:`check_call`), and its spend is recorded when its execution completes (:func:`settle_execution`,
called by the recording layer for every execution, on the caller's side in every logging mode)::

    reservation = budgets.check("SearchAgent", tenant_id="acme", model="gpt-4o", user_id="u-7",
                                estimated_cost=Decimal("0.02"))
    ...                                         # the call; BudgetExceededError above if a hard stop refused it
    reservation.settle(total_cost, total_tokens) if reservation else budgets.record("SearchAgent", ...)

Spend lives in :class:`~llm_agents.models.SpendCounter` rows, one per scope key (global, agent type,
tenant, model, end user) and local day, incremented with ``F()``-style upserts; a budget's spend is the
sum of the rows of its period. A hard-stop check locks the budgets it applies (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite has a single writer), adds the spend of the period and the reservations of calls in
flight, refuses the call when that reaches the limit, and otherwise reserves the call's estimated cost
before the lock is released. So concurrent callers overshoot a limit by at most one call.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import DatabaseError, connections, router, transaction
from django.db.models import (
    BigIntegerField,
    DecimalField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Greatest, NullIf, TruncDate
from django.utils import timezone

from . import signals
from .conf import app_settings
from .db.isolation import run_isolated, single_writer
from .errors import BudgetExceededError
from .events import emit
from .periods import day_range, local_now

if TYPE_CHECKING:
    from .models import Budget
    from .models.budgets import Key
    from .tracking.records import ExecutionRecord

__all__ = [
    "Reservation",
    "check",
    "check_call",
    "estimate_call",
    "rebuild_counters",
    "record",
    "settle_execution",
    "settle_executions",
]

logger = logging.getLogger("llm_agents")

ZERO = Decimal("0")
#: Output tokens reserved for a call that sets no ``max_tokens``.
DEFAULT_MAX_TOKENS = 4096
#: Characters per token when estimating a prompt's tokens.
CHARS_PER_TOKEN = 4
#: How long a reservation counts if its call is never settled (the process died mid-call).
RESERVATION_TTL = dt.timedelta(hours=1)

T = TypeVar("T")


def local_day(moment: dt.datetime) -> dt.date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


# -- checking -----------------------------------------------------------------------------------


@dataclass
class Reservation:
    """What :func:`check` let through. ``settle()`` records the call's actual spend (and drops the
    reservation, in the same transaction); ``release()`` drops the reservation and records nothing.
    Both are safe to call more than once; only the first counts."""

    agent_type: str
    tenant_id: str | None
    model: str | None
    user_id: str = ""
    amount: Decimal = ZERO
    tokens: int = 0
    at: dt.datetime = field(default_factory=timezone.now)
    sender: Any = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    held: bool = False  # a BudgetReservation row counts against hard-stop budgets
    done: bool = False

    def settle(
        self,
        total_cost: Decimal | int | str,
        total_tokens: int,
        *,
        models: Iterable[str | None] | None = None,
        at: dt.datetime | None = None,
        by_model: dict[str, tuple[Decimal, int]] | None = None,
    ) -> None:
        """Record ``total_cost``/``total_tokens`` for this call (against ``models``, default the model
        checked; or, with ``by_model``, each model's own ``(cost, tokens)``) and drop the reservation."""
        if self.done:
            return
        self.done = True
        _spend(
            self.agent_type, self.tenant_id, [self.model] if models is None else list(models),
            total_cost, total_tokens, at or self.at, user_id=self.user_id, reservation=self,
            sender=self.sender, by_model=by_model,
        )  # fmt: skip

    def release(self) -> None:
        """Drop the reservation without recording spend."""
        if self.done:
            return
        self.done = True
        if self.held:
            from .models import BudgetReservation

            _isolated(lambda: BudgetReservation.objects.release(self.id))


def check(
    agent_type: str,
    tenant_id: str | None = None,
    model: str | None = None,
    estimated_cost: Decimal | int | str | None = None,
    *,
    user_id: str | None = None,
    estimated_tokens: int = 0,
    at: dt.datetime | None = None,
    sender: Any = None,
) -> Reservation | None:
    """Check the active budgets that apply to a call about to be made (by the end user ``user_id``,
    if any).

    Raises :class:`~llm_agents.errors.BudgetExceededError` when a hard-stop budget's period spend plus
    the reservations of calls in flight reaches its limit (or its token limit); otherwise reserves
    ``estimated_cost`` (and ``estimated_tokens``) against hard-stop budgets and returns the
    :class:`Reservation`. Returns None when no budget applies or ``BUDGETS_ENABLED`` is off.
    ``at`` is when the call started (its spend is counted on that local day).
    """
    cost = Decimal(str(estimated_cost)) if estimated_cost is not None else ZERO
    return _check(
        agent_type,
        tenant_id,
        model,
        lambda: (cost, int(estimated_tokens)),
        user_id=user_id,
        at=at,
        sender=sender,
    )


def estimate_call(
    model: str, messages: Iterable[dict[str, Any]], max_tokens: int | None, at: dt.datetime | None = None
) -> tuple[Decimal, int]:
    """``(cost, tokens)`` reserved for a call: every rendered message character ÷ 4 as input tokens at
    the input price, plus ``max_tokens`` (or 4,096) output tokens at the output price."""
    from .pricing import calculate_cost

    characters = sum(len(_text(message.get("content"))) for message in messages)
    input_tokens = math.ceil(characters / CHARS_PER_TOKEN)
    output_tokens = max_tokens or DEFAULT_MAX_TOKENS
    try:
        cost = calculate_cost(model, input_tokens, output_tokens, at=at).total_cost
    except DatabaseError:
        cost = ZERO
    return cost, input_tokens + output_tokens


def check_call(
    *,
    agent_type: str,
    tenant_id: str | None,
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int | None,
    at: dt.datetime,
    user_id: str | None = None,
    sender: Any = None,
) -> Reservation | None:
    """:func:`check` for an agent call, reserving :func:`estimate_call` (computed only when a hard-stop
    budget applies)."""
    return _check(
        agent_type,
        tenant_id,
        model,
        lambda: estimate_call(model, messages, max_tokens, at),
        user_id=user_id,
        at=at,
        sender=sender,
    )


def _check(
    agent_type: str,
    tenant_id: str | None,
    model: str | None,
    estimate: Callable[[], tuple[Decimal, int]],
    *,
    user_id: str | None,
    at: dt.datetime | None,
    sender: Any,
) -> Reservation | None:
    if not app_settings.BUDGETS_ENABLED:
        return None
    from .models import Budget

    sender = sender if sender is not None else Budget
    user_id = "" if user_id is None else str(user_id)
    emit(signals.budget_checked, sender=sender, agent_type=agent_type, tenant_id=tenant_id, user_id=user_id)
    now = timezone.now()
    reservation = Reservation(agent_type, tenant_id, model, user_id, at=at or now, sender=sender)
    try:
        applies, refused = _isolated(lambda: _check_and_reserve(reservation, estimate, now))
    except DatabaseError:
        logger.exception("llm_agents could not check the budgets of %s; the call goes ahead", agent_type)
        return None
    for budget, spend, _tokens, _reserved in refused:
        emit(signals.budget_exceeded, sender=sender, agent_type=agent_type, tenant_id=tenant_id,
             user_id=user_id, budget=budget, spend=spend, limit=budget.limit_usd,
             enforcement=budget.enforcement)  # fmt: skip
    if refused:
        budget, spend, tokens, reserved = refused[0]
        limit = f"${budget.limit_usd}"
        if budget.token_limit is not None:
            limit += f" or {budget.token_limit} tokens"
        raise BudgetExceededError(
            f"Budget {budget.name!r} refused the call: {budget.period} spend ${spend} ({tokens} tokens) "
            f"plus ${reserved} reserved by calls in flight reaches its limit of {limit}.",
            budget=budget,
            spend=spend,
            limit=budget.limit_usd,
        )
    return reservation if applies else None


def _check_and_reserve(
    reservation: Reservation, estimate: Callable[[], tuple[Decimal, int]], now: dt.datetime
) -> tuple[bool, list[tuple[Budget, Decimal, int, Decimal]]]:
    """``(any budget applies, [(refusing budget, spend, tokens, reserved), ...])``; reserves when none
    refuses (:mod:`llm_agents.db.fastpaths`: one round trip on PostgreSQL)."""
    from .db.fastpaths import check_and_reserve, check_and_reserve_postgresql, is_postgresql
    from .models import BudgetReservation

    alias = router.db_for_write(BudgetReservation)
    tenant_id = "" if reservation.tenant_id in (None, "") else str(reservation.tenant_id)
    row = BudgetReservation(
        id=reservation.id,
        agent_type=reservation.agent_type,
        tenant_id=tenant_id,
        model=reservation.model or "",
        user_id=reservation.user_id,
        created_at=now,
        expires_at=now + RESERVATION_TTL,
    )
    check_and_hold = check_and_reserve_postgresql if is_postgresql(connections[alias]) else check_and_reserve
    outcome = check_and_hold(alias, row, estimate, local_day(now))
    reservation.amount, reservation.tokens = row.amount, row.tokens
    reservation.held = outcome.held
    return outcome.applies, outcome.refused


# -- recording ----------------------------------------------------------------------------------


def record(
    agent_type: str,
    total_cost: Decimal | int | str,
    total_tokens: int,
    tenant_id: str | None = None,
    model: str | None = None,
    *,
    user_id: str | None = None,
    at: dt.datetime | None = None,
    sender: Any = None,
) -> None:
    """Record spend made outside an agent call (on the local day of ``at``, default now), for the end
    user ``user_id`` if given.

    Counters are kept beside the executions table; spend recorded here with no execution behind it
    is not restored by ``rebuild_aggregates``.
    """
    _spend(
        agent_type, tenant_id, [model], total_cost, total_tokens, at or timezone.now(), user_id=user_id,
        sender=sender,
    )  # fmt: skip


def settle_completed(record: ExecutionRecord) -> None:
    """The completion hook (registered by the app): :func:`settle_execution`, its failures logged."""
    try:
        settle_execution(record)
    except Exception:
        logger.exception("llm_agents could not record the budget spend of execution %s", record.id)


def settle_execution(record: ExecutionRecord) -> None:
    """Record the spend of a finished execution: its own cost and tokens (its totals less those of the
    executions nested in it, which record their own) against its agent type, tenant and end user,
    and against the model of each of its llm spans that model's part (:func:`spend_by_model`). Settles the
    reservation its budget check made, if any. Spans whose spend was recorded when their call ended
    (raw SDK calls in a trace, checked on their own) are not counted again."""
    reservation: Reservation | None = getattr(record, "budget_reservation", None)
    if not app_settings.BUDGETS_ENABLED:
        if reservation is not None:
            reservation.release()
        return
    settled = [span for span in record.spans if span.kind == "llm" and span.budget_settled]
    cost = record.total_cost - sum((child.total_cost for child in record.children), ZERO)
    cost -= sum((span.total_cost for span in settled), ZERO)
    tokens = record.total_tokens - sum(child.total_tokens for child in record.children)
    tokens -= sum(span.input_tokens + span.output_tokens for span in settled)
    cost, tokens = max(cost, ZERO), max(tokens, 0)
    by_model = spend_by_model(record, cost, tokens)
    if reservation is not None:
        reservation.settle(cost, tokens, models=[], at=record.started_at, by_model=by_model)
    elif cost or tokens:
        _spend(record.agent_type, record.tenant_id, [], cost, tokens, record.started_at,
               user_id=record.user_id, sender=None, by_model=by_model)  # fmt: skip


def settle_executions(records: Iterable[ExecutionRecord]) -> None:
    """Record the spend of executions written together with no budget check before them (a batch's
    results), as :func:`settle_execution` would one by one, in one counter write per agent type,
    tenant, end user and day."""
    if not app_settings.BUDGETS_ENABLED:
        return
    groups: dict[
        tuple[str, str | None, str, dt.date], tuple[dt.datetime, list[Any], dict[str, list[Any]]]
    ] = {}
    for record in records:
        cost, tokens = max(record.total_cost, ZERO), max(record.total_tokens, 0)
        if not (cost or tokens):
            continue
        key = (record.agent_type, record.tenant_id, record.user_id, local_day(record.started_at))
        _, totals, models = groups.setdefault(key, (record.started_at, [ZERO, 0], {}))
        totals[0] += cost
        totals[1] += tokens
        for model, (model_cost, model_tokens) in spend_by_model(record, cost, tokens).items():
            entry = models.setdefault(model, [ZERO, 0])
            entry[0] += model_cost
            entry[1] += model_tokens
    for (agent_type, tenant_id, user_id, _), (at, (cost, tokens), models) in groups.items():
        by_model = {model: (model_cost, model_tokens) for model, (model_cost, model_tokens) in models.items()}
        _spend(agent_type, tenant_id, [], cost, tokens, at, user_id=user_id, sender=None, by_model=by_model)


def spend_by_model(record: ExecutionRecord, cost: Decimal, tokens: int) -> dict[str, tuple[Decimal, int]]:
    """``{model: (cost, tokens)}`` of an execution's own spend ``cost``/``tokens``: each llm span's spend
    goes to its model (a span without one to the execution's), and what the spans do not cover to
    the execution's ``chosen_model_id``, else its ``model_id`` (the same rule as ``cost_by_model``)."""
    own_model = record.chosen_model_id or record.model_id
    found: dict[str, list[Any]] = {}
    covered, covered_tokens = ZERO, 0
    for span in record.spans:
        if span.kind != "llm" or span.budget_settled:
            continue
        span_tokens = span.input_tokens + span.output_tokens
        if not (span.total_cost or span_tokens):
            continue
        entry = found.setdefault(span.model_id or own_model, [ZERO, 0])
        entry[0] += span.total_cost
        entry[1] += span_tokens
        covered += span.total_cost
        covered_tokens += span_tokens
    if cost > covered or tokens > covered_tokens:
        entry = found.setdefault(own_model, [ZERO, 0])
        entry[0] += max(cost - covered, ZERO)
        entry[1] += max(tokens - covered_tokens, 0)
    return {model: (amount, count) for model, (amount, count) in found.items() if model}


def _spend(
    agent_type: str,
    tenant_id: str | None,
    models: list[str | None],
    total_cost: Decimal | int | str,
    total_tokens: int,
    at: dt.datetime,
    *,
    user_id: str | None = None,
    reservation: Reservation | None = None,
    sender: Any,
    by_model: dict[str, tuple[Decimal, int]] | None = None,
) -> None:
    """Add spend to the counters: ``total_cost``/``total_tokens`` under the global, agent, tenant and
    end user keys and each of ``models``; each model of ``by_model`` under its own key with its own
    part."""
    if not app_settings.BUDGETS_ENABLED:
        return
    from .models import Budget
    from .models.budgets import spend_keys

    cost, tokens = Decimal(str(total_cost)), int(total_tokens)
    if cost < 0 or tokens < 0:
        raise ValueError(f"Spend must not be negative (got ${cost}, {tokens} tokens).")
    sender = sender if sender is not None else Budget
    keys = spend_keys(agent_type, tenant_id, models, user_id)
    entries = [(scope, value, cost, tokens) for scope, value in keys]
    for model, (model_cost, model_tokens) in (by_model or {}).items():
        if model and (model_cost or model_tokens) and ("model", model) not in {e[:2] for e in entries}:
            entries.append(("model", model, Decimal(str(model_cost)), int(model_tokens)))
    entries.sort()
    held = reservation.id if reservation is not None and reservation.held else None
    if not (cost or tokens or held):
        return
    now = timezone.now()
    notices = _isolated(lambda: _write_spend(entries, local_day(at), held, now))
    user_id = "" if user_id is None else str(user_id)
    emit(signals.budget_recorded, sender=sender, agent_type=agent_type, tenant_id=tenant_id, user_id=user_id,
         total_cost=cost, total_tokens=tokens)  # fmt: skip
    for signal, budget, spend, percent in notices:
        if signal is signals.budget_alert:
            emit(
                signal,
                sender=sender,
                budget=budget,
                spend=spend,
                limit=budget.limit_usd,
                percent_used=percent,
            )
        else:
            emit(signal, sender=sender, agent_type=agent_type, tenant_id=tenant_id, user_id=user_id,
                 budget=budget, spend=spend, limit=budget.limit_usd,
                 enforcement=budget.enforcement)  # fmt: skip


def _write_spend(
    entries: list[tuple[str, str, Decimal, int]],
    day: dt.date,
    reservation_id: uuid.UUID | None,
    now: dt.datetime,
) -> list[tuple[Any, Budget, Decimal, float]]:
    """Add to the counters and drop the reservation, in one transaction (one round trip on PostgreSQL:
    :mod:`llm_agents.db.fastpaths`); then the alerts and warning-budget notices this spend crossed
    into, each claimed once per period."""
    from .db.fastpaths import add_spend, add_spend_postgresql, is_postgresql
    from .models import SpendCounter

    alias = router.db_for_write(SpendCounter)
    entries = [entry for entry in entries if entry[2] or entry[3]]
    add = add_spend_postgresql if is_postgresql(connections[alias]) else add_spend
    applying = add(alias, entries, day, reservation_id)
    return _crossed_thresholds(applying, now) if applying else []


def _crossed_thresholds(budget_ids: list[int], now: dt.datetime) -> list[tuple[Any, Budget, Decimal, float]]:
    """``budget_alert`` at ``alert_at_percentage`` and, for warning budgets, ``budget_exceeded`` at the
    limit, among the budgets ``budget_ids``: each once per budget per period, claimed by an atomic
    conditional UPDATE so that the "once" holds across processes."""
    from .models import Budget, SpendCounter

    budgets = list(Budget.objects.filter(pk__in=budget_ids, is_active=True).order_by("pk"))
    if not budgets:
        return []
    today = local_day(now)
    usage = SpendCounter.objects.totals_for(budgets, today)
    notices = []
    for budget in budgets:
        spend, tokens = usage[budget.pk]
        first = budget.period_days_range(today)[0]
        percent = budget.percent_of_limit(spend)
        if percent >= budget.alert_at_percentage and _claim(budget, "alerted_on", first, today):
            notices.append((signals.budget_alert, budget, spend, percent))
        if (
            budget.enforcement == Budget.Enforcement.WARNING
            and budget.is_over(spend, tokens)
            and _claim(budget, "exceeded_on", first, today)
        ):
            notices.append((signals.budget_exceeded, budget, spend, percent))
    return notices


def _claim(budget: Budget, column: str, period_first: dt.date, today: dt.date) -> bool:
    """Mark ``column`` for this period; True for the one caller whose UPDATE changed the row.

    A rolling budget's "period" is its window: once marked, it fires again when the marked day has
    left the window."""
    from .models import Budget

    marked = getattr(budget, column)
    if marked is not None and marked >= period_first:
        return False
    claimed = (
        Budget.objects.filter(pk=budget.pk)
        .filter(Q(**{f"{column}__isnull": True}) | Q(**{f"{column}__lt": period_first}))
        .update(**{column: today})
    )
    return claimed == 1


def _isolated(work: Callable[[], T]) -> T:
    """Run budget queries outside the caller's transaction (whose rollback must not undo spend, and
    which must not hold a budget's lock) and off an event loop's thread."""
    from .models import SpendCounter

    return run_isolated(work, router.db_for_write(SpendCounter))


def _text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else str(content)


# -- rebuilding ---------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    """What :func:`rebuild_counters` did: days covered, counter rows written, chunks, and the expired
    reservations removed."""

    first_day: dt.date | None = None
    last_day: dt.date | None = None
    counters: int = 0
    chunks: int = 0
    expired_reservations: int = 0


def rebuild_counters(
    since: dt.date | None = None,
    *,
    chunk_days: int = 31,
    progress: Callable[[RebuildResult], None] | None = None,
) -> RebuildResult:
    """Recompute the spend counters from the executions table, from the local day ``since`` (default:
    the first execution) to today.

    A counter is the sum over the executions started that day of each one's own spend (its
    ``total_cost`` and ``total_tokens`` less those of its direct children, which count on their own),
    under its agent type, tenant, end user, ``model_id`` and ``chosen_model_id``. Each chunk of ``chunk_days``
    days is replaced in one transaction, so budgets never read a half-written period. Spend recorded
    while the rebuild runs may be counted twice or missed: rebuild when traffic is quiet, or again.
    """
    from .models import BudgetReservation, Execution, SpendCounter

    if chunk_days < 1:
        raise ValueError(f"chunk_days must be at least 1, not {chunk_days!r}.")
    result = RebuildResult()
    today = local_now().date()
    bounds = Execution.objects.aggregate(first=Min("started_at"), last=Max("started_at"))
    first = since or (local_day(bounds["first"]) if bounds["first"] else today)
    last = max(today, local_day(bounds["last"])) if bounds["last"] else today
    result.first_day, result.last_day = first, last
    alias = router.db_for_write(SpendCounter)
    start = first
    while start <= last:
        end = min(start + dt.timedelta(days=chunk_days - 1), last)
        rows = _counter_rows(start, end)
        with single_writer(alias), transaction.atomic(using=alias):
            SpendCounter.objects.filter(day__gte=start, day__lte=end).delete()
            SpendCounter.objects.bulk_create(rows, batch_size=1000)
        result.counters += len(rows)
        result.chunks += 1
        if progress is not None:
            progress(result)
        start = end + dt.timedelta(days=1)
    with single_writer(alias), transaction.atomic(using=alias):
        outside = SpendCounter.objects.filter(day__gt=last)
        if since is None:
            outside = outside | SpendCounter.objects.filter(day__lt=first)
        outside.delete()
        result.expired_reservations, _ = BudgetReservation.objects.expired(timezone.now()).delete()
    return result


def _counter_rows(first: dt.date, last: dt.date) -> list[Any]:
    """The SpendCounter rows of the local days ``first``..``last``, computed in the database with the
    attribution of :func:`settle_execution`: each execution's own spend under its agent type, tenant
    and end user, and under the models of its llm spans (what they do not cover under its own model)."""
    from .models import Execution, Span, SpendCounter
    from .models.budgets import spend_keys

    zone = timezone.get_default_timezone()
    start, end = day_range(first, last)
    own = (
        Execution.objects.filter(started_at__gte=start, started_at__lt=end)
        .annotate(local_day=TruncDate("started_at", tzinfo=zone))
        .values("local_day", "agent_type", "tenant_id", "user_id")
        .annotate(cost=Sum("total_cost"), tokens=Sum("total_tokens"))
        .order_by()
    )
    nested = (
        Execution.objects.filter(parent__started_at__gte=start, parent__started_at__lt=end)
        .annotate(
            local_day=TruncDate("parent__started_at", tzinfo=zone),
            parent_agent_type=F("parent__agent_type"),
            parent_tenant_id=F("parent__tenant_id"),
            parent_user_id=F("parent__user_id"),
        )
        .values("local_day", "parent_agent_type", "parent_tenant_id", "parent_user_id")
        .annotate(cost=Sum("total_cost"), tokens=Sum("total_tokens"))
        .order_by()
    )
    spent = Q(kind="llm") & (Q(total_cost__gt=0) | Q(input_tokens__gt=0) | Q(output_tokens__gt=0))
    own_model = Coalesce(NullIf("chosen_model_id", Value("")), "model_id")
    by_span = (
        Span.objects.filter(spent, execution__started_at__gte=start, execution__started_at__lt=end)
        .annotate(
            local_day=TruncDate("execution__started_at", tzinfo=zone),
            model=Coalesce(
                NullIf("model_id", Value("")),
                NullIf("execution__chosen_model_id", Value("")),
                "execution__model_id",
            ),
        )
        .values("local_day", "model")
        .annotate(
            cost=Sum("total_cost"),
            tokens=Sum(F("input_tokens") + F("output_tokens"), output_field=BigIntegerField()),
        )
        .order_by()
    )

    money = DecimalField(max_digits=20, decimal_places=8)
    children = Execution.objects.filter(parent=OuterRef("pk")).order_by().values("parent")
    spans = Span.objects.filter(spent, execution=OuterRef("pk")).order_by().values("execution")
    rest = (
        Execution.objects.filter(started_at__gte=start, started_at__lt=end)
        .annotate(
            rest_cost=ExpressionWrapper(
                F("total_cost")
                - _sum_of(children, "total_cost", money)
                - _sum_of(spans, "total_cost", money),
                output_field=money,
            ),
            rest_tokens=ExpressionWrapper(
                F("total_tokens")
                - _sum_of(children, "total_tokens", BigIntegerField())
                - _sum_of(spans, F("input_tokens") + F("output_tokens"), BigIntegerField()),
                output_field=BigIntegerField(),
            ),
        )
        .filter(Q(rest_cost__gt=0) | Q(rest_tokens__gt=0))
        .annotate(local_day=TruncDate("started_at", tzinfo=zone), model=own_model)
        .values("local_day", "model")
        .annotate(
            cost=Sum(Greatest("rest_cost", Value(ZERO, output_field=money)), output_field=money),
            tokens=Sum(Greatest("rest_tokens", Value(0, output_field=BigIntegerField()))),
        )
        .order_by()
    )
    totals: dict[tuple[str, str, dt.date], list[Any]] = {}

    def add(day: dt.date, keys: list[Key], cost: Any, tokens: Any, sign: int) -> None:
        for scope, value in keys:
            entry = totals.setdefault((scope, value, day), [ZERO, 0])
            entry[0] += sign * Decimal(str(cost or 0))
            entry[1] += sign * int(tokens or 0)

    for row in own:
        keys = spend_keys(row["agent_type"], row["tenant_id"], [], row["user_id"])
        add(row["local_day"], keys, row["cost"], row["tokens"], 1)
    for child in nested:
        keys = spend_keys(child["parent_agent_type"], child["parent_tenant_id"], [], child["parent_user_id"])
        add(child["local_day"], keys, child["cost"], child["tokens"], -1)
    for spent_row in [*by_span, *rest]:
        if spent_row["model"]:
            keys = [("model", spent_row["model"])]
            add(spent_row["local_day"], keys, spent_row["cost"], spent_row["tokens"], 1)
    return [
        SpendCounter(scope=scope, scope_value=value, day=day, spend=max(spend, ZERO), tokens=max(tokens, 0))
        for (scope, value, day), (spend, tokens) in sorted(totals.items())
        if spend > 0 or tokens > 0
    ]


def _sum_of(rows: Any, expression: Any, output_field: Any) -> Coalesce:
    """The sum of ``expression`` over ``rows`` (a queryset grouped on the outer row's key), as a
    scalar subquery; 0 when there is none."""
    total = rows.annotate(total=Sum(expression, output_field=output_field)).values("total")[:1]
    return Coalesce(Subquery(total, output_field=output_field), Value(0, output_field=output_field))
