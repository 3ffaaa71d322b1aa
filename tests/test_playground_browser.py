"""The prompt playground in a real browser (the fixtures ``browser`` and ``page`` are in
``tests/browser.py``): from a version's page, run the prompt on one model, then compare two. The live
server runs in this process, so ``fake_llm()`` answers its calls."""

from __future__ import annotations

import pytest

from llm_agents.models import Execution, Prompt
from llm_agents.testing import fake_llm

from .browser import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="admin", email="a@example.com", password="s3cret!"
    )


@pytest.fixture
def prompt():
    prompt = Prompt.objects.create(slug="greeting", name="Greeting")
    prompt.update_content(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet {{name}}."}],
        model="gpt-4o-mini",
        model_params={"temperature": 0.2},
    )
    return prompt


def test_run_a_version_on_one_model_then_compare_two(page, live_server, admin_user, prompt):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm_agents/prompt/{prompt.pk}/versions/1/")
    page.get_by_role("link", name="Playground").click()
    page.wait_for_url(f"**/admin/llm_agents/prompt/{prompt.pk}/versions/1/playground/")
    assert page.get_by_label("Model:", exact=True).input_value() == "gpt-4o-mini"

    with fake_llm() as llm:
        llm.respond("Hello Ada!", model="gpt-4o-mini")
        page.get_by_label("name:", exact=True).fill("Ada")
        page.get_by_role("button", name="Run").click()
        answer = page.locator('.playground-answer[data-model="gpt-4o-mini"]')
        answer.locator(".playground-response").wait_for()
        assert answer.locator(".playground-response").inner_text() == "Hello Ada!"
        assert answer.locator(".status-success").inner_text() == "success"
        screenshot(page, "prompt-playground")

        llm.respond("Hi Ada (mini)", model="gpt-4o-mini")
        llm.respond("Hi Ada (4.1)", model="gpt-4.1")
        page.get_by_label("Compare with (model 2)").fill("gpt-4.1")
        page.get_by_role("button", name="Run").click()
        page.locator('.playground-answer[data-model="gpt-4.1"]').wait_for()
        columns = page.locator(".playground-answer")
        assert columns.count() == 2
        assert [text.strip() for text in columns.locator(".playground-response").all_inner_texts()] == [
            "Hi Ada (mini)",
            "Hi Ada (4.1)",
        ]
        boxes = [columns.nth(index).bounding_box() for index in range(2)]
        assert boxes[0] and boxes[1] and boxes[0]["x"] < boxes[1]["x"]  # side by side
        screenshot(page, "prompt-playground-compare")
    assert llm.calls[-1][1][1]["content"] == "Greet Ada."
    assert Execution.objects.filter(agent_type="playground").count() == 3

    page.locator('.playground-answer[data-model="gpt-4.1"]').get_by_role(
        "link", name="view the execution"
    ).click()
    page.wait_for_url("**/admin/llm_agents/execution/*/change/")
