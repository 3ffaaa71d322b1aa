"""Alert deliveries (SPEC §19): email, signed webhooks and Slack sent by the Celery task with retries;
budget alerts and refusals reaching a budget's channels; the alert admin."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from llm_agents import Agent, Param, signals, tenant
from llm_agents.alerts import budgets as budget_alerts
from llm_agents.alerts import delivery
from llm_agents.alerts.budgets import REFUSAL_QUIET
from llm_agents.alerts.delivery import (
    MAX_ATTEMPTS,
    RETRY_BASE_SECONDS,
    SIGNATURE_HEADER,
    backoff,
    deliver_alert,
    record_event,
)
from llm_agents.errors import BudgetExceededError
from llm_agents.models import AlertChannel, AlertDelivery, AlertEvent, AlertRule, Budget
from llm_agents.testing import fake_llm

from .factories import BudgetFactory, CostConfigFactory
from .fake_servers import Reply

pytestmark = pytest.mark.django_db

SECRET = "s3cret-key"


def verified(body: bytes, header: str, secret: str) -> bool:
    """What docs/operations.md tells a receiver to do: HMAC-SHA256 over the raw body, compared in
    constant time with the header's value."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header or "")


@pytest.fixture
def receiver(fake_server):
    """A webhook receiver on loopback: ``/hook`` answers 204 to a body signed with ``SECRET`` and 401
    otherwise; ``/slack`` answers ``ok``; ``/down`` answers 500."""

    def hook(request):
        if not verified(request.body, request.headers.get(SIGNATURE_HEADER.lower(), ""), SECRET):
            return Reply(401, {"error": "bad signature"})
        return Reply(204, b"")

    fake_server.route("POST", "/hook", hook)
    fake_server.route("POST", "/slack", lambda request: Reply(200, b"ok"))
    fake_server.route("POST", "/down", lambda request: Reply(500, {"error": "database is on fire"}))
    return fake_server


def channel(kind: str, target: str, **fields) -> AlertChannel:
    return AlertChannel.objects.create(
        name=fields.pop("name", f"{kind} channel"), kind=kind, target=target, **fields
    )


def rule(**fields) -> AlertRule:
    defaults = {"name": "Errors up", "metric": AlertRule.Metric.ERROR_RATE, "threshold": 5.0}
    return AlertRule.objects.create(**{**defaults, **fields})


def fire(captured, channels, rule_=None, **fields) -> AlertEvent:
    """Record an event as the rule evaluation does, and run what waits for the commit."""
    rule_ = rule_ or rule()
    with captured(execute=True):
        return record_event(
            channels=channels,
            rule=rule_,
            value=fields.pop("value", 12.5),
            threshold=rule_.threshold,
            **fields,
        )


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- webhooks and Slack -----------------------------------------------------------------------------


def test_a_signed_webhook_is_verified_by_the_receiver_and_carries_numbers(
    receiver, django_capture_on_commit_callbacks
):
    hook = channel("webhook", receiver.root + "/hook", secret=SECRET)
    errors = rule(agent_type="SearchAgent", window_minutes=15)

    event = fire(django_capture_on_commit_callbacks, [hook], errors)

    (request,) = receiver.requests_to("/hook")
    assert request.headers["content-type"] == "application/json"
    assert request.headers[SIGNATURE_HEADER.lower()].startswith("sha256=")
    body = request.json
    assert body["rule"] == "Errors up"
    assert body["metric"] == "error_rate"
    assert body["value"] == 12.5 and isinstance(body["value"], float)
    assert body["threshold"] == 5.0
    assert body["event_id"] == event.pk
    assert body["window_minutes"] == 15
    assert body["filters"] == {"agent_type": "SearchAgent"}
    assert body["test"] is False
    assert body["fired_at"].endswith("Z")
    sent = AlertDelivery.objects.get()
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, "")
    assert sent.sent_at is not None


def test_a_webhook_signed_with_another_secret_is_refused_by_the_receiver(
    receiver, django_capture_on_commit_callbacks
):
    hook = channel("webhook", receiver.root + "/hook", secret="not-the-receivers")

    fire(django_capture_on_commit_callbacks, [hook])

    delivery_ = AlertDelivery.objects.get()
    assert delivery_.status == "failed"
    assert delivery_.attempts == MAX_ATTEMPTS
    assert delivery_.last_error.startswith("HTTP 401 from ")
    assert "bad signature" in delivery_.last_error


def test_slack_gets_one_line_of_text(receiver, django_capture_on_commit_callbacks):
    slack = channel("slack", receiver.root + "/slack")

    fire(django_capture_on_commit_callbacks, [slack], rule(tenant_id="acme"))

    (request,) = receiver.requests_to("/slack")
    assert request.json == {"text": "Errors up: error_rate 12.5% > 5% (last 60 min, tenant_id=acme)"}
    assert SIGNATURE_HEADER.lower() not in request.headers
    assert AlertDelivery.objects.get().status == "sent"


def test_an_anomaly_names_the_baseline(receiver, django_capture_on_commit_callbacks):
    slack = channel("slack", receiver.root + "/slack")
    spike = rule(name="Cost spike", metric="cost", threshold=None, anomaly=True, sensitivity=3)

    fire(django_capture_on_commit_callbacks, [slack], spike, value=4.2, baseline=0.5)

    assert receiver.requests_to("/slack")[0].json["text"] == (
        "Cost spike: cost $4.2 is more than 3 standard deviations above the mean $0.5 (last 60 min)"
    )


def test_a_budget_percent_rule_speaks_of_the_budget_not_of_a_window(
    receiver, django_capture_on_commit_callbacks
):
    slack = channel("slack", receiver.root + "/slack")
    watched = rule(
        name="Month", metric="budget_percent", threshold=80.0, budget=BudgetFactory(name="Monthly")
    )

    fire(django_capture_on_commit_callbacks, [slack], watched, value=87.5)

    assert (
        receiver.requests_to("/slack")[0].json["text"] == "Month: budget_percent 87.5% > 80% (budget=Monthly)"
    )


# -- email ------------------------------------------------------------------------------------------


def test_an_email_names_the_rule_and_lists_the_figures(
    mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.DEFAULT_FROM_EMAIL = "alerts@example.com"
    email = channel("email", "ops@example.com, oncall@example.com")

    fire(django_capture_on_commit_callbacks, [email], rule(agent_type="SearchAgent"))

    (message,) = mailoutbox
    assert message.subject == "[LLM alert] Errors up: error_rate 12.5% > 5%"
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert message.from_email == "alerts@example.com"
    assert "Value of error_rate: 12.5%" in message.body
    assert "Threshold: above 5%" in message.body
    assert "Window: the last 60 minutes" in message.body
    assert "Filters: agent_type=SearchAgent" in message.body
    assert AlertDelivery.objects.get().status == "sent"


# -- failures, retries, idempotency -----------------------------------------------------------------


def test_an_endpoint_that_is_down_is_retried_then_failed_and_the_others_are_still_sent(
    receiver, mailoutbox, django_capture_on_commit_callbacks
):
    down = channel("webhook", receiver.root + "/down", name="down")
    refused = channel("webhook", f"http://127.0.0.1:{closed_port()}/hook", name="refused")
    slack = channel("slack", receiver.root + "/slack", name="slack")
    email = channel("email", "ops@example.com", name="email")

    event = fire(django_capture_on_commit_callbacks, [down, refused, slack, email])

    by_channel = {d.channel.name: d for d in event.deliveries.select_related("channel")}
    assert len(receiver.requests_to("/down")) == MAX_ATTEMPTS == 5
    assert by_channel["down"].status == "failed"
    assert by_channel["down"].attempts == 5
    assert by_channel["down"].last_error == (
        f'HTTP 500 from {receiver.root}/down: {{"error": "database is on fire"}}'
    )
    assert by_channel["refused"].status == "failed"
    assert by_channel["refused"].attempts == 5
    assert "could not be reached" in by_channel["refused"].last_error
    assert "Connection refused" in by_channel["refused"].last_error
    assert by_channel["slack"].status == "sent" and by_channel["slack"].attempts == 1
    assert by_channel["email"].status == "sent" and len(mailoutbox) == 1


def test_a_retry_that_succeeds_ends_sent_with_the_attempts_counted(
    receiver, django_capture_on_commit_callbacks
):
    slack = channel("slack", receiver.root + "/slack")
    receiver.enqueue(Reply(503, {"error": "busy"}), Reply(502, b"bad gateway"), path="/slack")

    fire(django_capture_on_commit_callbacks, [slack])

    sent = AlertDelivery.objects.get()
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 3, "")
    assert len(receiver.requests_to("/slack")) == 3


def test_the_backoff_doubles_from_its_base():
    assert RETRY_BASE_SECONDS == 30
    assert [backoff(attempt) for attempt in range(1, MAX_ATTEMPTS)] == [30, 60, 120, 240]


def test_a_failed_attempt_before_the_last_asks_for_a_retry_after_the_backoff(receiver):
    down = channel("webhook", receiver.root + "/down")
    event = record_event(channels=[down], rule=rule(), value=9.0, threshold=5.0)
    pending = event.deliveries.get()

    first = delivery.attempt(pending.pk)
    second = delivery.attempt(pending.pk)

    assert (first.status, first.retry_in) == ("pending", 30)
    assert (second.status, second.retry_in) == ("pending", 60)
    pending.refresh_from_db()
    assert pending.attempts == 2 and pending.last_error.startswith("HTTP 500")


def test_a_delivery_already_sent_is_not_sent_again(receiver, django_capture_on_commit_callbacks):
    slack = channel("slack", receiver.root + "/slack")
    fire(django_capture_on_commit_callbacks, [slack])
    sent = AlertDelivery.objects.get()

    assert deliver_alert.delay(sent.pk).get() == "sent"
    assert deliver_alert.delay(sent.pk).get() == "sent"

    assert len(receiver.requests_to("/slack")) == 1
    sent.refresh_from_db()
    assert sent.attempts == 1


def test_a_failed_delivery_is_not_tried_again(receiver, django_capture_on_commit_callbacks):
    down = channel("webhook", receiver.root + "/down")
    fire(django_capture_on_commit_callbacks, [down])
    failed = AlertDelivery.objects.get()

    assert deliver_alert.delay(failed.pk).get() == "failed"

    assert len(receiver.requests_to("/down")) == MAX_ATTEMPTS


def test_a_pending_delivery_whose_attempts_are_used_up_is_failed_without_sending(receiver):
    slack = channel("slack", receiver.root + "/slack")
    event = record_event(channels=[slack], rule=rule(), value=9.0, threshold=5.0)
    event.deliveries.update(
        attempts=MAX_ATTEMPTS, last_error="HTTP 500 from …"
    )  # a worker died after its last try

    assert deliver_alert.delay(event.deliveries.get().pk).get() == "failed"

    assert receiver.requests == []
    assert event.deliveries.get().last_error == "HTTP 500 from …"


def test_an_inactive_channel_gets_no_delivery(receiver, django_capture_on_commit_callbacks):
    slack = channel("slack", receiver.root + "/slack", is_active=False)

    event = fire(django_capture_on_commit_callbacks, [slack])

    assert event.deliveries.count() == 0
    assert receiver.requests == []


def test_a_channel_deactivated_before_sending_is_not_sent(receiver):
    slack = channel("slack", receiver.root + "/slack")
    event = record_event(channels=[slack], rule=rule(), value=9.0, threshold=5.0)
    AlertChannel.objects.filter(pk=slack.pk).update(is_active=False)

    assert deliver_alert.delay(event.deliveries.get().pk).get() == "failed"

    assert receiver.requests == []
    assert "deactivated" in event.deliveries.get().last_error


def test_the_event_keeps_what_fired_after_the_rule_is_edited(receiver, django_capture_on_commit_callbacks):
    slack = channel("slack", receiver.root + "/slack")
    errors = rule()
    event = record_event(channels=[slack], rule=errors, value=9.0, threshold=5.0)
    errors.name = "Renamed"
    errors.save()

    with django_capture_on_commit_callbacks(execute=True):
        deliver_alert.delay(event.deliveries.get().pk)

    assert receiver.requests_to("/slack")[0].json["text"].startswith("Errors up: ")


def test_alert_fired_is_sent_once_the_event_commits(receiver, django_capture_on_commit_callbacks):
    received = []

    def listen(sender, event, **kwargs):
        received.append((event.pk, event.deliveries.count()))

    signals.alert_fired.connect(listen)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            event = record_event(
                channels=[channel("slack", receiver.root + "/slack")], rule=rule(), value=9.0
            )
            assert received == []
        for callback in callbacks:
            callback()
    finally:
        signals.alert_fired.disconnect(listen)
    assert received == [(event.pk, 1)]


# -- budget channels --------------------------------------------------------------------------------

MODEL = "gpt-alerts"


@pytest.fixture
def price(db):
    """$1,000 per million input tokens and $2,000 per million output tokens: a call of 1,000 input and
    500 output tokens costs $2."""
    CostConfigFactory(
        model=MODEL, input_price_per_mtok=Decimal("1000"), output_price_per_mtok=Decimal("2000")
    )


class PlanAgent(Agent):
    model = MODEL
    max_tokens = 100
    topic = Param(required=True)

    def user_prompt(self):
        return f"Plan {self.topic}"


def spend_two_dollars(tenant_id: str | None = None):
    scope = tenant(tenant_id) if tenant_id else contextlib.nullcontext()
    with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}), fake_llm() as llm, scope:
        llm.respond("ok", input_tokens=1000, output_tokens=500)
        return PlanAgent.call(topic="x")


def test_a_budget_alert_reaches_the_budgets_channels(
    price, receiver, mailoutbox, django_capture_on_commit_callbacks
):
    slack = channel("slack", receiver.root + "/slack")
    email = channel("email", "finance@example.com")
    budget = BudgetFactory(name="Monthly", limit_usd=Decimal("2.50"), enforcement=Budget.Enforcement.WARNING)
    budget.channels.add(slack, email)

    with django_capture_on_commit_callbacks(execute=True):
        spend_two_dollars()
        spend_two_dollars()  # past the limit: the warning budget's budget_exceeded

    alert, exceeded = AlertEvent.objects.order_by("fired_at", "id")
    assert (alert.budget, alert.rule, alert.value, alert.threshold) == (budget, None, 80.0, 80.0)
    assert alert.payload["kind"] == "budget_alert"
    assert exceeded.payload["kind"] == "budget_exceeded" and exceeded.value == 160.0
    texts = [request.json["text"] for request in receiver.requests_to("/slack")]
    assert texts[0] == "Budget Monthly: 80% used ($2 of $2.5), alert at 80%"
    assert texts[1] == "Budget Monthly reached its limit: 160% used ($4 of $2.5)"
    assert [message.subject for message in mailoutbox] == [f"[LLM alert] {text}" for text in texts]
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_hard_stop_reports_its_refusals_once_an_hour(
    price, receiver, django_capture_on_commit_callbacks, frozen_now
):
    hook = channel("webhook", receiver.root + "/hook", secret=SECRET)
    budget = BudgetFactory(
        name="Free tier", scope=Budget.Scope.TENANT, scope_value="umbrella", limit_usd=Decimal("0")
    )
    budget.channels.add(hook)
    start = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            with pytest.raises(BudgetExceededError):
                spend_two_dollars(tenant_id="umbrella")

    (event,) = AlertEvent.objects.all()
    assert event.budget == budget and event.payload["kind"] == "budget_refused"
    body = receiver.requests_to("/hook")[0].json
    assert (body["budget"], body["rule"], body["tenant_id"], body["agent_type"]) == (
        "Free tier",
        None,
        "umbrella",
        "PlanAgent",
    )
    assert body["filters"] == {"tenant": "umbrella"}
    assert AlertDelivery.objects.get().status == "sent"  # the receiver verified its signature

    # Another process (nothing remembered in memory) finds the event of the hour in the database.
    budget_alerts.budgets_with_channels.clear()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(BudgetExceededError):
        spend_two_dollars(tenant_id="umbrella")
    assert AlertEvent.objects.count() == 1

    frozen_now(start + REFUSAL_QUIET + REFUSAL_QUIET / 10)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(BudgetExceededError):
        spend_two_dollars(tenant_id="umbrella")

    assert AlertEvent.objects.count() == 2
    assert len(receiver.requests_to("/hook")) == 2


def test_a_budget_without_channels_costs_no_alert_query(price):
    BudgetFactory(limit_usd=Decimal("0"))
    with pytest.raises(BudgetExceededError):
        spend_two_dollars()  # reads which budgets have channels (once a minute per process)

    with CaptureQueriesContext(connection) as queries, pytest.raises(BudgetExceededError):
        spend_two_dollars()

    assert queries.captured_queries  # the call itself did query
    tables = ('"llm_agents_alert', '"llm_agents_budget_channels"')
    touched = [query["sql"] for query in queries.captured_queries if any(t in query["sql"] for t in tables)]
    assert touched == []
    assert AlertEvent.objects.count() == 0


def test_a_failing_alert_write_never_breaks_the_call(price, receiver, caplog, monkeypatch):
    budget = BudgetFactory(limit_usd=Decimal("2.50"), enforcement=Budget.Enforcement.WARNING)
    budget.channels.add(channel("slack", receiver.root + "/slack"))

    def broken(*args, **kwargs):
        raise RuntimeError("the event table is gone")

    monkeypatch.setattr(budget_alerts, "record_event", broken)
    result = spend_two_dollars()

    assert result.content == "ok"
    assert "could not record a budget alert" in caplog.text
    assert AlertEvent.objects.count() == 0


# -- admin ------------------------------------------------------------------------------------------


def test_the_alert_admin_pages_render(staff_client, receiver, django_capture_on_commit_callbacks):
    hook = channel("webhook", receiver.root + "/hook?token=abc", secret=SECRET, name="Ops hook")
    down = channel("webhook", receiver.root + "/down", name="Down hook")
    errors = rule(agent_type="SearchAgent")
    errors.channels.add(hook, down)
    event = fire(django_capture_on_commit_callbacks, [hook, down], errors)

    rules = staff_client.get(reverse("admin:llm_agents_alertrule_changelist"))
    channels = staff_client.get(reverse("admin:llm_agents_alertchannel_changelist"))
    events = staff_client.get(reverse("admin:llm_agents_alertevent_changelist"))
    failed_only = staff_client.get(
        reverse("admin:llm_agents_alertevent_changelist") + "?deliveries__status=failed"
    )
    page = staff_client.get(reverse("admin:llm_agents_alertevent_change", args=[event.pk]))
    channel_page = staff_client.get(reverse("admin:llm_agents_alertchannel_change", args=[hook.pk]))

    assert rules.status_code == channels.status_code == events.status_code == page.status_code == 200
    assert (
        "agent_type=SearchAgent" in rules.text
        and "&gt; 5%" in rules.text
        and "Down hook, Ops hook" in rules.text
    )
    assert SECRET not in channels.text and "token=abc" not in channels.text
    assert f"{receiver.root}/…" in channels.text
    assert SECRET not in channel_page.text
    assert "1 sent" in events.text and "1 failed" in events.text
    assert "llm_agents/admin.css" in events.text
    assert 'class="llm-status llm-status-failed">1 failed' in events.text
    assert failed_only.status_code == 200 and "Errors up" in failed_only.text
    assert "HTTP 500 from" in page.text and "database is on fire" in page.text
    assert "agent_type=SearchAgent" in page.text
    assert "Errors up: error_rate 12.5% &gt; 5% (last 60 min, agent_type=SearchAgent)" in page.text


def test_the_rule_form_shows_the_models_errors_on_their_fields(staff_client):
    response = staff_client.post(
        reverse("admin:llm_agents_alertrule_add"),
        {"name": "Odd", "metric": "budget_percent", "agent_type": "SearchAgent", "comparison": "above",
         "threshold": "80", "sensitivity": "3", "window_minutes": "60", "cooldown_minutes": "60",
         "is_active": "on"},
    )  # fmt: skip

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "A budget_percent rule needs a budget." in errors["budget"]
    assert "must be blank" in errors["agent_type"][0]
    assert AlertRule.objects.count() == 0


def test_the_channel_form_keeps_the_secret_when_left_blank(staff_client):
    hook = channel("webhook", "https://hooks.example.com/in", secret=SECRET, name="Hook")
    url = reverse("admin:llm_agents_alertchannel_change", args=[hook.pk])
    fields = {"name": "Hook", "kind": "webhook", "target": "https://hooks.example.com/in", "is_active": "on"}

    assert staff_client.post(url, {**fields, "secret": ""}).status_code == 302
    hook.refresh_from_db()
    assert hook.secret == SECRET
    assert staff_client.post(url, {**fields, "remove_secret": "on"}).status_code == 302
    hook.refresh_from_db()
    assert hook.secret == ""


@pytest.mark.django_db(transaction=True)
def test_the_test_alert_action_reports_each_channel(staff_client, receiver, mailoutbox):
    slack = channel("slack", receiver.root + "/slack", name="Slack")
    down = channel("webhook", receiver.root + "/down", name="Down")
    off = channel("email", "ops@example.com", name="Off", is_active=False)

    response = staff_client.post(
        reverse("admin:llm_agents_alertchannel_changelist"),
        {"action": "send_test_alert", "_selected_action": [slack.pk, down.pk, off.pk]},
        follow=True,
    )

    notes = [str(message) for message in response.context["messages"]]
    assert "Slack (Slack): test alert sent." in notes
    assert any(note.startswith("Down (webhook): failed after 5 attempts: HTTP 500") for note in notes)
    assert "Off (email): inactive, not sent." in notes
    (event,) = AlertEvent.objects.all()
    assert event.payload["test"] is True and event.rule is None and event.budget is None
    text = receiver.requests_to("/slack")[0].json["text"]
    assert text == "Test alert from django-llm-agents"
    assert mailoutbox == []
    assert json.loads(receiver.requests_to("/down")[0].body)["test"] is True


def test_a_budgets_channels_are_chosen_on_its_admin_page(staff_client):
    ops = channel("email", "ops@example.com", name="Ops")
    budget = Budget.objects.create(name="Month", limit_usd=Decimal("100"))
    url = reverse("admin:llm_agents_budget_change", args=[budget.pk])
    page = staff_client.get(url)
    assert 'name="channels"' in page.text
    fields = {"name": "Month", "scope": "global", "scope_value": "", "period": "monthly", "limit_usd": "100",
              "enforcement": "hard_stop", "alert_at_percentage": "80", "is_active": "on", "channels": [ops.pk]}  # fmt: skip

    assert staff_client.post(url, fields).status_code == 302
    assert list(budget.channels.all()) == [ops]
