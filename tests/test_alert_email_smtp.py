"""Alert email through Django's SMTP backend to a real SMTP server on loopback (aiosmtpd), and to an
address where nothing listens."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from llm_agents.alerts.delivery import MAX_ATTEMPTS, record_event
from llm_agents.models import AlertChannel, AlertDelivery, AlertRule

pytestmark = pytest.mark.django_db


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def smtp_settings(port: int):
    return override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_HOST_USER="",
        EMAIL_HOST_PASSWORD="",
        EMAIL_TIMEOUT=5,
        DEFAULT_FROM_EMAIL="alerts@example.com",
    )


def fire(captured, port: int) -> AlertDelivery:
    email = AlertChannel.objects.create(name="Ops", kind="email", target="ops@example.com, cto@example.com")
    rule = AlertRule.objects.create(
        name="Latency up", metric="p95_latency", threshold=2000, agent_type="SearchAgent"
    )
    with smtp_settings(port), captured(execute=True):
        record_event(channels=[email], rule=rule, value=3250.0, threshold=2000.0)
    return AlertDelivery.objects.get()


def test_an_alert_reaches_a_real_smtp_server(smtp_server, django_capture_on_commit_callbacks):
    controller, inbox = smtp_server

    delivery = fire(django_capture_on_commit_callbacks, controller.port)

    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "alerts@example.com"
    assert sorted(envelope.rcpt_tos) == ["cto@example.com", "ops@example.com"]
    message = message_from_bytes(envelope.content)
    assert str(make_header(decode_header(message["Subject"]))) == (
        "[LLM alert] Latency up: p95_latency 3,250 ms > 2,000 ms"
    )
    body = message.get_payload(decode=True).decode()
    assert "Value of p95_latency: 3,250 ms" in body
    assert "Filters: agent_type=SearchAgent" in body


def test_an_unreachable_smtp_server_fails_the_delivery_with_the_error(django_capture_on_commit_callbacks):
    delivery = fire(django_capture_on_commit_callbacks, free_port())

    assert delivery.status == "failed"
    assert delivery.attempts == MAX_ATTEMPTS
    assert delivery.sent_at is None
    assert delivery.last_error.startswith("ConnectionRefusedError: ")
