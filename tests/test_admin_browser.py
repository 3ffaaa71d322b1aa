"""The admin in a real browser (the fixtures ``browser`` and ``page`` are in ``tests/browser.py``). Run them
with ``pytest -m browser``. The documentation's screenshots are taken from the demo's data, in
``test_demo_browser.py``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from .browser import log_in, screenshot
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


# -- the quality loop: sessions, scores, datasets, evaluation runs ----------------------------------


@pytest.fixture
def conversation():
    """Session conv-42 (user u-7, tag beta): a greeting, then a question answered through a tool call;
    and a call of another session."""
    from llm_agents import session
    from llm_agents.testing import fake_llm

    from .test_admin_quality import SupportAgent

    with fake_llm() as llm:
        llm.respond("Hello! How can I help?")
        llm.respond(tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": {"order": "A-17"}}])
        llm.respond("Order A-17 has shipped.")
        llm.respond("Our hours are 9 to 5.")
        with session("conv-42", user_id="u-7", tags=["beta"]):
            greeting = SupportAgent.call(question="Hi there").execution
            answer = SupportAgent.call(question="Where is order A-17?").execution
        SupportAgent.call(question="When are you open?", _session_id="conv-99")
    return [greeting, answer]


@pytest.fixture
def evaluated():
    """Two runs (``evals.run``) over a two-item dataset: the candidate gets the refund question
    right, the baseline does not."""
    from .test_admin_quality import faq, run_of

    dataset, (hours, refund) = faq(
        "support-faq", [("When are you open?", "9 to 5"), ("Can I get a refund?", "Yes, within 30 days")]
    )
    baseline = run_of(dataset, "baseline", ["9 to 5", "No refunds"])
    candidate = run_of(dataset, "candidate", ["9 to 5", "Yes, within 30 days"])
    return {"a": candidate, "b": baseline, "hours": hours, "refund": refund}


def test_session_page_from_the_executions_list(page, live_server, admin_user, conversation):
    greeting, answer = conversation
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/execution/")
    page.get_by_role("link", name="Sessions", exact=True).click()
    page.wait_for_url("**/admin/llm_agents/execution/sessions/")
    assert page.locator("#session-list tbody tr").count() == 2
    page.get_by_role("link", name="conv-42").click()
    page.wait_for_url("**/admin/llm_agents/execution/sessions/conv-42/")
    turns = page.locator("li.llm-turn")
    assert turns.count() == 2
    assert turns.nth(0).get_attribute("data-execution") == str(greeting.pk)
    assert "Hello! How can I help?" in turns.nth(0).inner_text()
    second = turns.nth(1).inner_text()
    assert (
        "Where is order A-17?" in second and "lookup_order" in second and "Order A-17 has shipped." in second
    )
    assert page.locator('#session-totals [data-total="executions"]').inner_text() == "2"
    screenshot(page, "session")
    turns.nth(1).locator("a.llm-turn-link").click()
    page.wait_for_url(f"**/admin/llm_agents/execution/{answer.pk}/change/")
    assert page.locator("#execution-session").inner_text() == "conv-42"


def test_add_a_score_from_the_execution_page(page, live_server, admin_user, conversation):
    from llm_agents.models import Score, ScoreConfig

    ScoreConfig.objects.create(name="helpfulness", min_value=1, max_value=5)
    execution = conversation[1]
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/execution/{execution.pk}/change/")
    page.get_by_label("Name", exact=True).fill("helpfulness")
    page.get_by_label("Value", exact=True).fill("7")
    page.get_by_role("button", name="Add score").click()
    page.wait_for_load_state()
    assert "value:" in page.locator("ul.messagelist li.error").inner_text()
    assert not Score.objects.exists()

    page.get_by_label("Name", exact=True).fill("helpfulness")
    page.get_by_label("Value", exact=True).fill("4")
    page.get_by_label("Comment", exact=True).fill("Found the order")
    page.get_by_role("button", name="Add score").click()
    page.wait_for_load_state()
    assert "Score helpfulness = 4.0 added." in page.locator("ul.messagelist li.success").inner_text()
    row = page.locator('#score-table tr[data-score="helpfulness"]')
    screenshot(page, "execution-scores")
    assert "Found the order" in row.inner_text() and "admin" in row.inner_text()
    score = Score.objects.get()
    assert (score.value, score.source, score.author.username) == (4.0, "human", "admin")


def test_add_executions_to_a_dataset_with_the_action(page, live_server, admin_user, conversation):
    from llm_agents.models import Dataset

    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/execution/?session_id=conv-42")
    assert page.locator("#result_list tbody tr").count() == 2
    page.locator("#action-toggle").check()
    page.locator('select[name="action"]').select_option("add_to_dataset")
    page.locator('button[name="index"]').click()
    page.wait_for_selector("#add-to-dataset-form")
    assert "2 executions will be copied" in page.locator("#content-main").inner_text()
    page.get_by_label("New dataset's slug").fill("tickets")
    page.get_by_label("New dataset's name").fill("Tickets")
    page.get_by_role("button", name="Add to dataset").click()
    page.wait_for_url("**/admin/llm_agents/execution/?session_id=conv-42")
    assert "Added 2 executions to the dataset Tickets." in page.locator("ul.messagelist").inner_text()
    page.locator("ul.messagelist").get_by_role("link", name="Tickets").click()
    page.wait_for_url("**/admin/llm_agents/dataset/*/change/")
    assert page.locator("textarea", has_text="Where is order A-17?").count() == 1
    page.get_by_role("button", name="Save", exact=True).click()  # the blank extra item adds nothing
    page.wait_for_url("**/admin/llm_agents/dataset/")
    assert "was changed successfully" in page.locator("ul.messagelist").inner_text()
    assert Dataset.objects.get(slug="tickets").items.count() == 2


def test_eval_run_page_and_comparing_two_runs(page, live_server, admin_user, evaluated):
    a, b = evaluated["a"], evaluated["b"]
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/evalrun/{b.pk}/change/")
    summary = page.locator('#run-summary tr[data-evaluator="exact_match"]')
    assert summary.locator("td.mean").inner_text() == "0.5000"
    assert "50.00 %" in summary.inner_text()
    refund = page.locator(f'#run-results tr[data-item="{evaluated["refund"].pk}"]')
    assert "No refunds" in refund.inner_text() and "Yes, within 30 days" in refund.inner_text()
    assert refund.locator('td[data-evaluator="exact_match"]').inner_text() == "False"
    screenshot(page, "eval-run")

    page.locator("#id_compare_b").select_option(str(a.pk))
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(f"**/admin/llm_agents/evalrun/{b.pk}/compare/?b={a.pk}")
    delta = page.locator('#compare-evaluators tr[data-evaluator="exact_match"] td.delta')
    assert delta.inner_text() == "-0.5000"


def test_compare_page_highlights_differences(page, live_server, admin_user, evaluated):
    a, b = evaluated["a"], evaluated["b"]
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/evalrun/")
    page.locator(f'input.action-select[value="{a.pk}"]').check()
    page.locator(f'input.action-select[value="{b.pk}"]').check()
    page.locator('select[name="action"]').select_option("compare_selected")
    page.locator('button[name="index"]').click()
    page.wait_for_url(f"**/admin/llm_agents/evalrun/{a.pk}/compare/?b={b.pk}")
    assert (
        page.locator('#compare-evaluators tr[data-evaluator="exact_match"] td.delta').inner_text()
        == "+0.5000"
    )
    differing = page.locator("td.llm-differs")
    assert differing.count() == 2  # exact_match and similarity of the refund item
    refund = page.locator(f'tr[data-item="{evaluated["refund"].pk}"]')
    assert refund.locator("td.llm-differs").count() == 2
    same = page.locator(f'tr[data-item="{evaluated["hours"].pk}"] td.llm-pair').first
    highlighted = differing.first.evaluate("cell => getComputedStyle(cell).backgroundColor")
    plain = same.evaluate("cell => getComputedStyle(cell).backgroundColor")
    assert highlighted != plain
    screenshot(page, "eval-compare")
    page.locator("#only-differing").click()
    page.wait_for_url("**differing=1**")
    assert page.locator("#compare-items tbody tr").count() == 1
