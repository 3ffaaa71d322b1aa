"""The operations pages in a real browser (fixtures in ``tests/browser.py``; run with ``pytest -m
browser``): a test alert sent from the channel list to a webhook on loopback, read back in the event
log with its delivery's status; an agent paused from the admin, with the warning for an agent type no
agent declares, then lifted by the list action."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from llm_agents.alerts.delivery import SIGNATURE_HEADER
from llm_agents.models import AgentPause, AlertChannel, AlertDelivery

from .browser import log_in, screenshot
from .fake_servers import Reply
from .test_alert_delivery import SECRET, verified

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="admin", email="a@example.com", password="s3cret!"
    )


def run_action(page, name: str, label: str) -> None:
    """Tick the row named ``name`` in a changelist and run the action labelled ``label``."""
    page.get_by_role("row", name=name).get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option(label=label)
    page.get_by_role("button", name="Go").click()


def test_a_test_alert_reaches_a_signed_webhook_and_shows_in_the_event_log(
    page, live_server, admin_user, fake_server
):
    received = []

    def hook(request):
        received.append(request)
        ok = verified(request.body, request.headers.get(SIGNATURE_HEADER.lower(), ""), SECRET)
        return Reply(204 if ok else 401, b"")

    fake_server.route("POST", "/hook", hook)
    AlertChannel.objects.create(
        name="Ops hook", kind="webhook", target=fake_server.root + "/hook", secret=SECRET
    )
    log_in(page, live_server)

    page.goto(f"{live_server.url}/admin/llm_agents/alertchannel/")
    run_action(page, "Ops hook", "Send a test alert")
    assert "Ops hook (webhook): test alert sent." in page.locator("ul.messagelist").inner_text()
    (request,) = received
    assert json.loads(request.body)["test"] is True

    page.goto(f"{live_server.url}/admin/llm_agents/alertevent/")
    assert "1 sent" in page.locator("#result_list").inner_text()
    screenshot(page, "alert-events")
    page.locator("#result_list tbody tr a").first.click()
    deliveries = page.locator(".inline-group").inner_text()
    assert "Ops hook" in deliveries and "sent" in deliveries
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 1)


def test_pausing_an_unknown_agent_type_warns_and_the_pause_is_lifted_by_the_action(
    page, live_server, admin_user
):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/agentpause/add/")
    page.locator("#id_agent_type").fill("SuportAgent")
    page.locator("#id_reason").fill("refund loop")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/agentpause/")
    notes = page.locator("ul.messagelist").inner_text()
    assert "'SuportAgent'" in notes and "check its spelling" in notes
    pause = AgentPause.objects.get()
    assert pause.created_by == admin_user and pause.in_force()
    screenshot(page, "agent-pauses")

    run_action(page, "SuportAgent", "Lift the selected pauses (the agents run again)")
    assert "1 pause(s) lifted." in page.locator("ul.messagelist").inner_text()
    pause.refresh_from_db()
    assert not pause.in_force() and pause.until <= timezone.now()
