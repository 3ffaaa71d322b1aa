"""Every admin page the product has, filled by the example project's ``demo`` command, in a real browser
(the fixtures ``browser`` and ``page`` are in ``tests/browser.py``). Run with ``pytest -m
browser``; ``LLM_AGENTS_SCREENSHOTS=docs/screenshots`` regenerates the documentation's screenshots."""

from __future__ import annotations

import io
import os
import threading

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import override_settings

from example_project.demo.conf import demo_settings
from example_project.demo.management.commands.demo import Command as DemoCommand
from llm_agents.admin.quality import ScoreAdmin
from llm_agents.evals import EVAL_PURPOSE
from llm_agents.models import Batch, Dataset, EvalRun, Execution, Prompt, Score

from .browser import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_data():
    """The demo's data with the demo's settings, and its admin user as log_in expects: a short run, or
    the full ``make demo`` run when screenshots are taken, so that they show what ``make demo`` shows."""
    calls = 400 if os.environ.get("LLM_AGENTS_SCREENSHOTS") else 80
    with override_settings(LLM_AGENTS=demo_settings()):
        run_off_event_loop(
            lambda: call_command(
                DemoCommand(), calls=calls, username="admin", password="s3cret!", stdout=io.StringIO()
            )
        )
        yield


def run_off_event_loop(work) -> None:
    """Run ``work`` as ``manage.py`` runs it, on a thread with no event loop. Playwright's sync API keeps
    one on the test's thread, and there the product writes its rows from worker threads, which the
    demo's own transaction (one commit per phase on SQLite) would keep from the in-memory database's
    tables until it commits: the demo's end users could not rate an answer not written yet."""
    failures = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="demo")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def rows(page, selector: str = "#result_list tbody tr") -> int:
    return page.locator(selector).count()


def test_every_admin_page_shows_the_demo_data(page, live_server, demo_data):
    log_in(page, live_server)
    admin = f"{live_server.url}/admin/llm_agents"

    page.goto(f"{admin}/execution/dashboard/?period=30d")
    assert (
        page.locator('[data-kpi="total_executions"] .value').inner_text()
        == f"{Execution.objects.filter(parent=None, eval_run=None).count():,}"  # evaluations stay out
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
    assert rows(page) == 2  # the ticket summaries, and the evaluation run's
    batch = Batch.objects.get(purpose="ticket_summary")
    page.goto(f"{admin}/batch/{batch.pk}/change/")
    assert rows(page, ".field-requests tbody tr") == batch.requests.count() >= 6
    screenshot(page, "batch")


def test_the_quality_pages_show_the_demo_data(page, live_server, demo_data):
    log_in(page, live_server)
    admin = f"{live_server.url}/admin/llm_agents"

    # The sessions, newest activity first, and a conversation with its feedback and the session's csat.
    sessions = list(Execution.objects.sessions())
    page.goto(f"{admin}/execution/sessions/")
    assert rows(page, "#session-list tbody tr") == min(len(sessions), 50) >= 5
    assert (
        page.locator("#session-list tbody tr").first.get_attribute("data-session")
        == sessions[0]["session_id"]
    )
    screenshot(page, "sessions")
    rated = Score.objects.filter(name="thumbs").values_list("execution__session_id", flat=True)
    surveyed = Score.objects.filter(name="csat").values_list("session_id", flat=True)
    session_id = next(session_id for session_id in surveyed if session_id in set(rated))
    turns = Execution.objects.by_session(session_id).count()
    page.locator("#session-list").get_by_role("link", name=session_id, exact=True).click()
    assert page.locator("li.llm-turn").count() == turns >= 2
    assert page.locator('#session-totals [data-total="executions"]').inner_text() == str(turns)
    assert page.locator('#session-scores [data-score="csat"]').count() == 1
    assert page.locator('#conversation [data-score="thumbs"]').count() >= 1
    screenshot(page, "session")

    # The executions list filters by session, end user and tag.
    page.goto(f"{admin}/execution/?session_id={session_id}")
    assert rows(page) == turns
    page.goto(f"{admin}/execution/?tag=beta")
    assert rows(page) == min(Execution.objects.with_tag("beta").count(), 50) > 0

    # Scores: the list, and the dashboard's tile of a chosen score.
    page.goto(f"{admin}/score/")
    assert rows(page) == min(Score.objects.count(), ScoreAdmin.list_per_page)
    page.goto(f"{admin}/score/?source__exact=human")
    assert rows(page) == Score.objects.filter(source="human").count() > 0
    page.goto(f"{admin}/execution/dashboard/?period=30d&score=helpfulness")
    assert page.locator('[data-kpi="score"][data-score="helpfulness"] .value').inner_text() != ""

    # The dataset with its items and its two runs.
    dataset = Dataset.objects.get()
    page.goto(f"{admin}/dataset/{dataset.pk}/change/")
    assert "call back this afternoon" in page.content()
    assert rows(page, "#dataset-runs tbody tr") == 2
    screenshot(page, "dataset")

    # The run through the Batch API: its summary and every item's scores.
    live, batched = EvalRun.objects.get(mode="sync"), EvalRun.objects.get(mode="batch")
    page.goto(f"{admin}/evalrun/{batched.pk}/change/")
    assert page.locator("#run-summary tr[data-evaluator]").count() == 3
    assert rows(page, "#run-results tbody tr") == batched.item_count == dataset.items.count()
    assert page.locator('#run-results td[data-evaluator="llm_judge"]').count() == batched.item_count
    assert Batch.objects.get(purpose=EVAL_PURPOSE).requests.count() == batched.item_count
    screenshot(page, "evalrun")

    # The two runs compared: the batched small model loses on the judge, significantly.
    page.locator("#id_compare_b").select_option(str(live.pk))
    page.locator("#run-compare button").click()
    page.wait_for_url(f"**/evalrun/{batched.pk}/compare/?b={live.pk}")
    judge = page.locator('#compare-evaluators tr[data-evaluator="llm_judge"]')
    assert judge.locator("td.llm-worse").count() == 1 and judge.locator("td.llm-significant").count() == 1
    differing = batched.compare(live)["items"]
    changed = sum(1 for item in differing if item["a"] != item["b"])
    assert page.locator("#compare-items tr.llm-differs-row").count() == changed > 0
    screenshot(page, "compare")
    page.locator("#only-differing").click()
    assert rows(page, "#compare-items tbody tr") == changed
