"""Budget alerts and refusals (SPEC §8) sent to a budget's ``channels`` (§19).

``budget_alert`` (once per period) and a warning budget's ``budget_exceeded`` (once per period) each
record one event. A hard-stop budget sends ``budget_exceeded`` on every call it refuses; its channels
hear of it at most once per :data:`REFUSAL_QUIET` per budget, claimed under the budget's row lock so
that the "once" holds across processes.

The receivers run on the agent call's path, so they cost nothing for a budget without channels: each
process keeps the ids of the budgets that have an active channel (one query, read again after
:data:`CHANNELS_TTL` seconds and whenever channels change in this process), and a budget that is not
among them is left alone without a query. Their work runs outside the caller's transaction, and what
fails in it is logged and never breaks the call.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from decimal import Decimal
from typing import Any

from django.db import router, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from ..db.isolation import run_isolated
from ..models import AlertChannel, AlertEvent, Budget
from ..signals import budget_alert, budget_exceeded
from .delivery import record_event
from .messages import BUDGET_ALERT, BUDGET_EXCEEDED, BUDGET_REFUSED

logger = logging.getLogger("llm_agents")

#: A hard-stop budget's refusals reach its channels at most once per this.
REFUSAL_QUIET = dt.timedelta(hours=1)
#: Seconds a process trusts its list of the budgets that have active channels.
CHANNELS_TTL = 60.0


class BudgetsWithChannels:
    """The ids of the budgets with at least one active channel, read at most every ``ttl`` seconds;
    and, per budget, until when its refusals are quiet (an event was sent within the hour)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._ids: frozenset[int] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()
        self.quiet_until: dict[int, dt.datetime] = {}

    def __contains__(self, budget_id: object) -> bool:
        with self._lock:
            if self._ids is None or time.monotonic() - self._read_at > self.ttl:
                self._ids = frozenset(
                    Budget.channels.through.objects.filter(alertchannel__is_active=True).values_list(
                        "budget_id", flat=True
                    )
                )
                self._read_at = time.monotonic()
            return budget_id in self._ids

    def clear(self, **kwargs: Any) -> None:
        """Forget what was read (a receiver of the signals that change channels)."""
        with self._lock:
            self._ids = None
            self.quiet_until.clear()


budgets_with_channels = BudgetsWithChannels(CHANNELS_TTL)


def install() -> None:
    """Connect the receivers (called from ``AppConfig.ready()``)."""
    budget_alert.connect(alerted, dispatch_uid="llm_agents_alerts_budget_alert")
    budget_exceeded.connect(exceeded, dispatch_uid="llm_agents_alerts_budget_exceeded")
    clear = budgets_with_channels.clear
    m2m_changed.connect(clear, sender=Budget.channels.through, dispatch_uid="llm_agents_budget_channels")
    for signal, name in ((post_save, "saved"), (post_delete, "deleted")):
        signal.connect(clear, sender=AlertChannel, dispatch_uid=f"llm_agents_alert_channel_{name}")
        signal.connect(clear, sender=Budget, dispatch_uid=f"llm_agents_budget_channels_{name}")


def alerted(
    sender: Any, *, budget: Budget, spend: Decimal, limit: Decimal, percent_used: float, **kwargs: Any
) -> None:
    """``budget_alert``: the budget reached ``alert_at_percentage`` this period."""
    if budget.pk not in budgets_with_channels:
        return
    payload = {
        "kind": BUDGET_ALERT,
        "spend": float(spend),
        "limit": float(limit),
        "percent_used": percent_used,
    }
    _isolated(lambda: _record(budget, percent_used, float(budget.alert_at_percentage), payload))


def exceeded(
    sender: Any,
    *,
    budget: Budget,
    spend: Decimal,
    limit: Decimal,
    enforcement: str,
    agent_type: str | None = None,
    tenant_id: str | None = None,
    user_id: str | None = None,
    **kwargs: Any,
) -> None:
    """``budget_exceeded``: a warning budget reached its limit (once per period), or a hard stop
    refused a call (every refused call; sent on at most once per :data:`REFUSAL_QUIET`)."""
    if budget.pk not in budgets_with_channels:
        return
    percent = budget.percent_of_limit(spend)
    payload: dict[str, Any] = {"spend": float(spend), "limit": float(limit), "percent_used": percent}
    if enforcement != Budget.Enforcement.HARD_STOP:
        _isolated(lambda: _record(budget, percent, 100.0, {**payload, "kind": BUDGET_EXCEEDED}))
        return
    now = timezone.now()
    quiet = budgets_with_channels.quiet_until.get(budget.pk)
    if quiet is not None and now < quiet:
        return
    payload.update(
        kind=BUDGET_REFUSED,
        agent_type=agent_type or "",
        tenant_id=tenant_id or "",
        user_id=user_id or "",
        quiet_minutes=int(REFUSAL_QUIET.total_seconds() // 60),
    )
    last = _isolated(lambda: _record_refusal(budget, percent, payload, now))
    if last is not None:
        budgets_with_channels.quiet_until[budget.pk] = last + REFUSAL_QUIET


def _record(budget: Budget, value: float, threshold: float, payload: dict[str, Any]) -> AlertEvent | None:
    channels = list(budget.channels.filter(is_active=True))
    if not channels:
        return None
    return record_event(channels=channels, budget=budget, value=value, threshold=threshold, payload=payload)


def _record_refusal(
    budget: Budget, percent: float, payload: dict[str, Any], now: dt.datetime
) -> dt.datetime | None:
    """Record a refusal event unless one was recorded within the quiet time; returns when the latest
    refusal event fired (None when the budget has no active channel left)."""
    with transaction.atomic():
        Budget.objects.filter(pk=budget.pk).locked()
        latest = (
            AlertEvent.objects.filter(
                budget=budget, payload__kind=BUDGET_REFUSED, fired_at__gt=now - REFUSAL_QUIET
            )
            .values_list("fired_at", flat=True)
            .first()
        )
        if latest is not None:
            return latest
        event = _record(budget, percent, 100.0, payload)
        return event.fired_at if event is not None else None


def _isolated(work: Any) -> Any:
    try:
        return run_isolated(work, router.db_for_write(AlertEvent))
    except Exception:
        logger.exception("llm_agents could not record a budget alert for its channels")
        return None
