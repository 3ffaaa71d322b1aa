"""A prompt experiment's results page in a real browser (fixtures in ``tests/browser.py``; run with
``pytest -m browser``): its charts and comparison, then Stop and Promote through the buttons."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from .browser import log_in, screenshot
from .test_admin_experiments import make_prompt, make_running_experiment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clear_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="admin", email="a@example.com", password="s3cret!"
    )


@pytest.fixture
def prompt():
    return make_prompt()


@pytest.fixture
def experiment(prompt):
    """Running: v1 (control) against v2 on a dearer model, judged by cost, after 40 users' calls."""
    return make_running_experiment(prompt)


def test_results_page_charts_stop_and_promote(page, live_server, admin_user, experiment, prompt):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/promptexperiment/{experiment.pk}/results/")
    assert page.locator("svg.llm-chart").count() == 4
    box = page.locator("#chart-metric svg").bounding_box()
    assert box and box["width"] > 200 and box["height"] > 30
    assert page.locator("#chart-metric svg .whisker").count() == 2
    verdict = page.locator('#experiment-comparisons li[data-version="2"]')
    assert verdict.inner_text() == "v2 is worse than the control (v1) with p = 0.0001."
    screenshot(page, "experiment-results")

    page.get_by_role("button", name="Stop").click()
    page.wait_for_url(f"**/promptexperiment/{experiment.pk}/results/")
    assert "Stopped “brevity”." in page.locator("ul.messagelist").inner_text()
    assert page.locator("#experiment-lifecycle [data-status]").get_attribute("data-status") == "stopped"
    experiment.refresh_from_db()
    assert experiment.status == "stopped"

    page.get_by_role("button", name="Promote version 2").click()
    page.wait_for_url(f"**/promptexperiment/{experiment.pk}/results/")
    assert "Promoted version 2" in page.locator("ul.messagelist").inner_text()
    assert page.locator("[data-production]").get_attribute("data-production") == "2"
    assert prompt.label("production").number == 2


def test_moving_a_label_from_the_prompt_page(page, live_server, admin_user, prompt):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/prompt/{prompt.pk}/change/")
    page.locator("#id_label_name").fill("staging")
    page.locator("#id_label_version").fill("3")
    page.get_by_role("button", name="Move", exact=True).click()
    page.wait_for_url(f"**/prompt/{prompt.pk}/change/#labels")
    assert "Label “staging” now points at version 3." in page.locator("ul.messagelist").inner_text()
    assert page.locator('#labels tr[data-label="staging"] td[data-version]').inner_text() == "v3"
    assert page.locator('#version-history tr[data-version="3"] .llm-label').inner_text() == "staging"
    screenshot(page, "prompt-labels")
    prompt.refresh_from_db()
    assert prompt.label("staging").number == 3
    assert prompt.versions.count() == 3  # the prompt's own form was not submitted
