"""Every admin page the product has, filled by the example project's ``demo`` command, in a real browser
(the fixtures ``browser`` and ``page`` are in ``tests/browser.py``). Run with ``pytest -m
browser``; ``LLM_AGENTS_SCREENSHOTS=docs/screenshots`` regenerates the documentation's screenshots."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import call_command
from django.test import override_settings

from example_project.demo.conf import demo_settings
from example_project.demo.management.commands.demo import Command as DemoCommand
from llm_agents.models import Batch, Execution, Prompt

from .browser import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_data():
    """The demo's data with the demo's settings, and its admin user as log_in expects: a short run, or
    the full ``make demo`` run when screenshots are taken, so that they show what ``make demo`` shows."""
    calls = 400 if os.environ.get("LLM_AGENTS_SCREENSHOTS") else 80
    with override_settings(LLM_AGENTS=demo_settings()):
        call_command(DemoCommand(), calls=calls, username="admin", password="s3cret!", stdout=io.StringIO())
        yield


def rows(page, selector: str = "#result_list tbody tr") -> int:
    return page.locator(selector).count()


def test_every_admin_page_shows_the_demo_data(page, live_server, demo_data):
    log_in(page, live_server)
    admin = f"{live_server.url}/admin/llm_agents"

    page.goto(f"{admin}/execution/dashboard/?period=30d")
    assert (
        page.locator('[data-kpi="total_executions"] .value').inner_text()
        == f"{Execution.objects.filter(parent=None).count():,}"
    )
    assert page.locator("svg.llm-chart").count() == 4
    for chart in ("#chart-cost", "#chart-executions", "#chart-models", "#chart-latency"):
        box = page.locator(f"{chart} svg").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 30, chart
    assert page.locator("#chart-models svg rect.bar").count() >= 3
    assert rows(page, "#top-agents tbody tr") >= 3
    screenshot(page, "dashboard")

    page.goto(f"{admin}/execution/")
    assert rows(page) == 50  # a full page
    screenshot(page, "executions")

    digest = Execution.objects.filter(agent_type="nightly_digest", status="success").latest("started_at")
    page.goto(f"{admin}/execution/{digest.pk}/change/")
    # retrieval and rank inside it, the agent calls, the nested trace, the llm requests
    assert page.locator("details.llm-span").count() >= 5
    page.locator("details.llm-span", has_text="retrieval").first.locator("summary").first.click()
    screenshot(page, "execution")

    page.goto(f"{admin}/prompt/")
    assert rows(page) == 3
    screenshot(page, "prompts")
    summarise = Prompt.objects.get(slug="summarise")
    page.goto(f"{admin}/prompt/{summarise.pk}/change/")
    assert rows(page, "#version-history tbody tr") == summarise.versions.count() >= 3
    assert any("{{> house-style}}" in box.input_value() for box in page.locator("textarea").all())
    screenshot(page, "prompt")

    page.goto(f"{admin}/budget/")
    assert rows(page) == 3
    assert page.locator(".llm-budget-bar").count() == 3
    spend = page.locator("#result_list td.field-spend_bar").all_inner_texts()
    assert all(not text.startswith("$0E") and not text.startswith("$0.00000000 ") for text in spend), spend
    screenshot(page, "budgets")

    page.goto(f"{admin}/batch/")
    assert rows(page) == 1
    batch = Batch.objects.get()
    page.goto(f"{admin}/batch/{batch.pk}/change/")
    assert rows(page, ".field-requests tbody tr") == batch.requests.count() >= 6
    screenshot(page, "batch")
