"""The admin in a real browser (the fixtures ``browser`` and ``page`` are in ``tests/browser.py``). Run them
with ``pytest -m browser``. The documentation's screenshots are taken from the demo's data, in
``test_demo_browser.py``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from .browser import log_in
from .factories import ExecutionFactory, SpanFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="admin", email="a@example.com", password="s3cret!"
    )


@pytest.fixture
def activity():
    """A few days of executions on two models, a failure, and one run with nested spans."""
    now = timezone.now()
    for day in range(5):
        for n in range(3):
            ExecutionFactory(
                agent_type="SearchAgent" if n else "WriterAgent",
                model_id="gpt-4o" if n == 2 else "gpt-4o-mini",
                started_at=now - dt.timedelta(days=day, hours=n + 1),
                input_cost=Decimal("0.01") * (n + 1),
                duration_ms=300 + 200 * n,
            )
    ExecutionFactory(agent_type="SearchAgent", failed=True, error_class="RateLimitError",
                     error_message="Rate limit reached", started_at=now - dt.timedelta(hours=3))  # fmt: skip
    traced = ExecutionFactory(
        agent_type="ResearchAgent", model_id="gpt-4o", started_at=now - dt.timedelta(minutes=30)
    )
    llm = SpanFactory(
        execution=traced, name="openai.responses", input=[{"role": "user", "content": "Find papers"}]
    )
    SpanFactory(execution=traced, parent=llm, name="search_papers", kind="tool", input={"query": "llm agents"},
                output={"hits": 3})  # fmt: skip
    return traced


def test_login_and_dashboard_with_charts(page, live_server, admin_user, activity):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/")
    page.get_by_role("link", name="Costs, latency and errors of your agents").click()
    page.wait_for_url("**/admin/llm_agents/execution/dashboard/")
    assert page.locator("svg.llm-chart").count() == 4
    for chart in ("#chart-cost", "#chart-executions", "#chart-models", "#chart-latency"):
        box = page.locator(f"{chart} svg").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 30, chart
    assert page.locator('[data-kpi="total_executions"] .value').inner_text() == "17"
    assert page.locator("#chart-models svg rect.bar").count() == 2

    page.locator('a[data-period="30d"]').click()
    page.wait_for_url("**/dashboard/?period=30d")
    assert page.locator('a[data-period="30d"]').get_attribute("aria-current") == "page"
    assert page.locator('[data-kpi="total_executions"] .value').inner_text() == "17"


def test_chart_link_lands_on_the_filtered_list(page, live_server, admin_user, activity):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/execution/dashboard/?period=7d")
    bar = page.locator('#chart-models svg a[aria-label^="gpt-4o:"]')
    bar.click()
    page.wait_for_url("**/admin/llm_agents/execution/?*model_id=gpt-4o*")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 6  # five days of gpt-4o runs and the traced one
    assert set(page.locator("#result_list tbody td.field-model_used").all_inner_texts()) == {"gpt-4o"}
    assert "gpt-4o" in page.locator("#changelist-filter").inner_text()


def test_keyboard_reaches_chart_links(page, live_server, admin_user, activity):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/execution/dashboard/")
    page.locator("#chart-latency svg a").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/llm_agents/execution/?*duration_ms__gte*")


def test_execution_page_span_tree_expands(page, live_server, admin_user, activity):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/execution/{activity.pk}/change/")
    llm = page.locator("details.llm-span", has_text="openai.responses").first
    assert llm.get_attribute("open") is None
    assert not page.get_by_text('"content": "Find papers"').is_visible()
    llm.locator("summary").first.click()
    assert llm.get_attribute("open") is not None
    assert page.locator("pre", has_text='"content": "Find papers"').first.is_visible()
    tool = page.locator("details.llm-span", has_text="search_papers").last
    tool.locator("summary").first.click()
    assert page.locator("pre", has_text='"hits": 3').first.is_visible()
