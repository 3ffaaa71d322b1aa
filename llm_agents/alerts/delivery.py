"""Alert events and their deliveries: each event is sent to every active channel of its rule (or
budget) by the Celery task ``llm_agents.tasks.deliver_alert``."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from ..events import emit
from ..models import AlertChannel, AlertDelivery, AlertEvent
from ..signals import alert_fired


def record_event(
    *,
    channels: Iterable[AlertChannel],
    rule: Any = None,
    budget: Any = None,
    value: float | None = None,
    threshold: float | None = None,
    baseline: float | None = None,
    payload: dict[str, Any] | None = None,
    fired_at: Any = None,
) -> AlertEvent:
    """Write an :class:`AlertEvent` and one pending :class:`AlertDelivery` per active channel; once
    the transaction commits, send ``alert_fired`` and queue the deliveries."""
    with transaction.atomic():
        event = AlertEvent.objects.create(
            rule=rule, budget=budget, value=value, threshold=threshold, baseline=baseline,
            payload=payload or {}, fired_at=fired_at or timezone.now(),
        )  # fmt: skip
        deliveries = AlertDelivery.objects.bulk_create(
            [AlertDelivery(event=event, channel=channel) for channel in channels if channel.is_active]
        )
        transaction.on_commit(partial(_dispatch, event, [delivery.pk for delivery in deliveries]))
    return event


def _dispatch(event: AlertEvent, delivery_ids: list[int]) -> None:
    emit(alert_fired, sender=AlertEvent, event=event)
    for delivery_id in delivery_ids:
        deliver_alert.delay(delivery_id)


@shared_task(name="llm_agents.tasks.deliver_alert", ignore_result=True)
def deliver_alert(delivery_id: int) -> str:
    """Send one delivery (5 attempts with exponential backoff); returns its final status."""
    raise NotImplementedError("being written")
