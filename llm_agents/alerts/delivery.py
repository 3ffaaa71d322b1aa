"""Alert events and their deliveries: each event is sent to every active channel of its rule (or
budget) by the Celery task ``llm_agents.tasks.deliver_alert``, one task per delivery, so a channel
that is down never holds up the others.

A delivery is tried up to :data:`MAX_ATTEMPTS` times, waiting :data:`RETRY_BASE_SECONDS` after the
first failure and twice as long after each next one (30, 60, 120, 240 seconds); each attempt is
counted and its error kept in ``last_error``. Deliveries are sent at least once: a delivery already
sent or failed is never sent again, but a worker that dies between sending and recording it sends it
again, so receivers tell repeats apart by ``event_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from celery import shared_task
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..events import emit
from ..models import AlertChannel, AlertDelivery, AlertEvent
from ..signals import alert_fired
from .messages import AlertMessage, compose, describe_budget, describe_rule

#: Attempts in all, the first included.
MAX_ATTEMPTS = 5
#: Seconds before the first retry; each next retry waits twice as long.
RETRY_BASE_SECONDS = 30
#: Seconds a webhook or Slack endpoint has to answer.
HTTP_TIMEOUT = 10
#: The header carrying a webhook body's HMAC-SHA256 signature: ``sha256=<hex digest>``.
SIGNATURE_HEADER = "X-LLM-Agents-Signature"
#: How much of an endpoint's error answer ``last_error`` keeps.
ERROR_BODY_CHARS = 200


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
    the transaction commits, send ``alert_fired`` and queue the deliveries.

    The event's payload starts with a snapshot of the rule (or budget), which ``payload`` extends or
    overrides: a message tells what fired even after the rule is edited."""
    snapshot = (
        describe_rule(rule) if rule is not None else describe_budget(budget) if budget is not None else {}
    )
    with transaction.atomic():
        event = AlertEvent.objects.create(
            rule=rule, budget=budget, value=value, threshold=threshold, baseline=baseline,
            payload={**snapshot, **(payload or {})}, fired_at=fired_at or timezone.now(),
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


@shared_task(bind=True, name="llm_agents.tasks.deliver_alert", ignore_result=True, max_retries=None)
def deliver_alert(self: Any, delivery_id: int) -> Any:
    """Send one delivery (5 attempts with exponential backoff); returns its status after this attempt,
    or the retry that makes the next one."""
    outcome = attempt(delivery_id)
    if outcome.retry_in is not None:
        # Returned, not raised: Celery schedules the next attempt either way, and an eager Celery
        # (tests, the example project) runs it at once instead of propagating the Retry.
        return self.retry(countdown=outcome.retry_in, throw=False)
    return outcome.status


@dataclass(slots=True)
class Outcome:
    """What one attempt left: the delivery's status, and the seconds until the next attempt if one
    is due."""

    status: str
    retry_in: int | None = None


def backoff(attempts: int) -> int:
    """Seconds to wait after the ``attempts``-th failed attempt: 30, 60, 120, 240."""
    return RETRY_BASE_SECONDS * 2 ** (attempts - 1)


def attempt(delivery_id: int) -> Outcome:
    """Make one attempt at a pending delivery: claim it (counting the attempt), send it, and record
    ``sent`` or the error (``failed`` once the attempts are used up). A delivery that is no longer
    pending, or whose channel was deactivated, is not sent."""
    delivery = AlertDelivery.objects.select_related("channel", "event").filter(pk=delivery_id).first()
    if delivery is None:
        return Outcome("deleted")
    if delivery.status != AlertDelivery.Status.PENDING:
        return Outcome(delivery.status)
    if not delivery.channel.is_active:
        AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
            status=AlertDelivery.Status.FAILED, last_error="The channel was deactivated before sending."
        )
        return Outcome(AlertDelivery.Status.FAILED)
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status=AlertDelivery.Status.PENDING, attempts__lt=MAX_ATTEMPTS
    ).update(attempts=F("attempts") + 1)
    if not claimed:
        # Sent meanwhile, or its attempts used up by a worker that died before recording the last one.
        AlertDelivery.objects.filter(
            pk=delivery_id, status=AlertDelivery.Status.PENDING, attempts__gte=MAX_ATTEMPTS
        ).update(status=AlertDelivery.Status.FAILED)
        return Outcome(AlertDelivery.objects.values_list("status", flat=True).get(pk=delivery_id))
    attempts = delivery.attempts + 1
    error = send(delivery.channel, compose(delivery.event))
    pending = AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING)
    if error is None:
        pending.update(status=AlertDelivery.Status.SENT, sent_at=timezone.now(), last_error="")
        return Outcome(AlertDelivery.Status.SENT)
    if attempts >= MAX_ATTEMPTS:
        pending.update(status=AlertDelivery.Status.FAILED, last_error=error)
        return Outcome(AlertDelivery.Status.FAILED)
    pending.update(last_error=error)
    return Outcome(AlertDelivery.Status.PENDING, retry_in=backoff(attempts))


def send(channel: AlertChannel, message: AlertMessage) -> str | None:
    """Send ``message`` to ``channel``; None when it went, else what went wrong."""
    try:
        if channel.kind == AlertChannel.Kind.EMAIL:
            send_mail(message.subject, message.text, None, channel.addresses, fail_silently=False)
            return None
        if channel.kind == AlertChannel.Kind.SLACK:
            return post_json(channel.target, json.dumps({"text": message.summary}).encode())
        body = json.dumps(message.body).encode()
        return post_json(channel.target, body, signature(body, channel.secret) if channel.secret else None)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def signature(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``: ``sha256=`` and the hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook answering with a redirect did not take the alert (following it would re-send the
    body as a GET, or elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def post_json(url: str, body: bytes, signed: str | None = None) -> str | None:
    """POST ``body`` as JSON to ``url``; None for a 2xx answer, else the status and the start of the
    answer (or the connection's error)."""
    headers = {"Content-Type": "application/json", "User-Agent": "django-llm-agents alerts"}
    if signed:
        headers[SIGNATURE_HEADER] = signed
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT):
            return None
    except urllib.error.HTTPError as exc:
        answer = exc.read(ERROR_BODY_CHARS).decode(errors="replace").strip()
        return f"HTTP {exc.code} from {url}" + (f": {answer}" if answer else "")
    except urllib.error.URLError as exc:
        return f"{url} could not be reached: {exc.reason}"
