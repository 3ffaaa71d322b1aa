"""The prompt playground (SPEC §18): a prompt version rendered with variables and sent to one model, or
to up to four side by side; each answer is a tracked Execution of agent type ``playground``."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from llm_agents import budgets
from llm_agents.models import Budget, Execution, Prompt
from llm_agents.testing import fake_llm

from .factories import BudgetFactory, CostConfigFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt():
    prompt = Prompt.objects.create(slug="greeting", name="Greeting")
    prompt.update_content(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Greet {{name}} from {{city}}."},
        ],
        model="gpt-4o-mini",
        model_params={"temperature": 0.2, "max_tokens": 64},
    )
    return prompt


@pytest.fixture
def version(prompt):
    return prompt.current_version


def playground_url(prompt, number=1):
    return reverse("admin:llm_agents_prompt_playground", args=[prompt.pk, number])


def run(client, prompt, *models, **variables):
    data = {f"var_{name}": value for name, value in variables.items()}
    return client.post(playground_url(prompt), {**data, "json_variables": "", "models": list(models)})


def test_the_version_page_links_to_its_playground(staff_client, prompt):
    response = staff_client.get(reverse("admin:llm_agents_prompt_version", args=[prompt.pk, 1]))
    assert playground_url(prompt) in response.content.decode()


def test_the_page_offers_one_input_per_variable_and_the_known_models(staff_client, prompt):
    CostConfigFactory(model="claude-sonnet-4")
    response = staff_client.get(playground_url(prompt))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Greet {{name}} from {{city}}." in html  # the version's messages
    form = response.context["form"]
    assert [name for name in form.fields if name.startswith("var_")] == ["var_name", "var_city"]
    assert "json_variables" in form.fields
    assert html.count('name="models"') == 4
    assert 'value="gpt-4o-mini"' in html  # the version's model, chosen by default
    assert '<option value="claude-sonnet-4">' in html


def test_running_one_model_records_a_playground_execution_and_shows_its_answer(staff_client, prompt, version):
    CostConfigFactory(
        model="gpt-4o-mini", input_price_per_mtok=Decimal("1000"), output_price_per_mtok=Decimal("2000")
    )
    with fake_llm() as llm:
        llm.respond("Hello Ada, greetings to Paris!", model="gpt-4o-mini", input_tokens=12, output_tokens=4)
        response = run(staff_client, prompt, "gpt-4o-mini", "", "", "", name="Ada", city="Paris")
    assert response.status_code == 200
    execution = Execution.objects.get()
    assert execution.agent_type == "playground"
    assert execution.prompt_version == version
    assert execution.status == "success"
    assert execution.model_id == "gpt-4o-mini"
    assert execution.temperature == 0.2
    assert execution.parameters == {"name": "Ada", "city": "Paris"}
    assert execution.total_cost == Decimal("0.02")
    assert execution.metadata == {"run_by": "admin"}
    model, messages, params = llm.calls[0]
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Greet Ada from Paris."},
    ]
    assert params == {"temperature": 0.2, "max_tokens": 64}
    html = response.content.decode()
    assert "Hello Ada, greetings to Paris!" in html
    assert "12 in · 4 out" in html
    assert "$0.0200" in html
    assert "null</textarea>" not in html  # no JSON given: the box stays empty
    assert reverse("admin:llm_agents_execution_change", args=[execution.pk]) in html


def test_compare_models_sends_the_same_prompt_to_each_and_shows_both_answers(staff_client, prompt, version):
    with fake_llm() as llm:
        llm.respond("Hi Ada (mini)", model="gpt-4o-mini")
        llm.respond("Hi Ada (4.1)", model="gpt-4.1")
        response = run(staff_client, prompt, "gpt-4o-mini", "gpt-4.1", name="Ada", city="Paris")
    assert [call[0] for call in llm.calls] == ["gpt-4o-mini", "gpt-4.1"]
    assert llm.calls[0][1] == llm.calls[1][1]
    executions = Execution.objects.order_by("started_at")
    assert [(e.agent_type, e.model_id, e.prompt_version_id) for e in executions] == [
        ("playground", "gpt-4o-mini", version.pk),
        ("playground", "gpt-4.1", version.pk),
    ]
    answers = response.context["answers"]
    assert [(answer.model, answer.response) for answer in answers] == [
        ("gpt-4o-mini", "Hi Ada (mini)"),
        ("gpt-4.1", "Hi Ada (4.1)"),
    ]
    html = response.content.decode()
    assert html.index("Hi Ada (mini)") < html.index("Hi Ada (4.1)")


def test_json_variables_fill_what_the_inputs_leave_out(staff_client, prompt):
    with fake_llm() as llm:
        response = staff_client.post(
            playground_url(prompt),
            {"var_name": "Ada", "json_variables": '{"city": "Lyon"}', "models": ["m-1"]},
        )
    assert response.status_code == 200
    assert llm.calls[0][1][1]["content"] == "Greet Ada from Lyon."


def test_a_missing_variable_is_a_form_error_naming_it_and_nothing_runs(staff_client, prompt):
    with fake_llm() as llm:
        response = run(staff_client, prompt, "gpt-4o-mini", name="Ada")
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "Missing variable 'city'" in " ".join(errors["var_city"])
    assert "Missing variable &#x27;city&#x27;" in response.content.decode()
    assert llm.calls == []
    assert not Execution.objects.exists()


def test_more_than_four_models_is_a_form_error(staff_client, prompt):
    with fake_llm() as llm:
        response = run(staff_client, prompt, "m-1", "m-2", "m-3", "m-4", "m-5", name="Ada", city="Paris")
    assert response.context["form"].errors["models"] == ["Choose at most 4 models (got 5)."]
    assert llm.calls == []
    assert not Execution.objects.exists()


def test_no_model_is_a_form_error(staff_client, prompt):
    response = run(staff_client, prompt, "", "", name="Ada", city="Paris")
    assert response.context["form"].errors["models"] == ["Choose a model."]
    assert not Execution.objects.exists()


def test_a_hard_stop_budget_refuses_its_models_column_only(staff_client, prompt):
    BudgetFactory(scope=Budget.Scope.MODEL, scope_value="gpt-4.1", limit_usd=Decimal("1"))
    budgets.record("elsewhere", Decimal("1"), 100, model="gpt-4.1")
    with fake_llm() as llm:
        llm.respond("Hi Ada", model="gpt-4o-mini")
        response = run(staff_client, prompt, "gpt-4.1", "gpt-4o-mini", name="Ada", city="Paris")
    assert response.status_code == 200
    assert [call[0] for call in llm.calls] == ["gpt-4o-mini"]  # no request for the refused model
    refused, answered = response.context["answers"]
    assert refused.status == "error" and refused.error.startswith("BudgetExceededError: ")
    assert answered.status == "success" and answered.response == "Hi Ada"
    recorded = Execution.objects.get(model_id="gpt-4.1")
    assert (recorded.agent_type, recorded.status, recorded.error_class) == (
        "playground",
        "error",
        "BudgetExceededError",
    )
    html = response.content.decode()
    assert "BudgetExceededError" in html and "Hi Ada" in html


def test_a_provider_error_shows_in_its_column_and_is_recorded(staff_client, prompt):
    with fake_llm() as llm:
        llm.fail("invalid_request", model="gpt-4o-mini", message="max_tokens is too large")
        response = run(staff_client, prompt, "gpt-4o-mini", name="Ada", city="Paris")
    assert response.status_code == 200
    (answer,) = response.context["answers"]
    assert answer.status == "error"
    assert "max_tokens is too large" in answer.error
    assert Execution.objects.get().error_message.endswith("max_tokens is too large")
    assert "max_tokens is too large" in response.content.decode()


def test_a_post_without_the_csrf_token_is_refused(staff_superuser, prompt):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_superuser)
    assert client.get(playground_url(prompt)).status_code == 200
    with fake_llm() as llm:
        response = run(client, prompt, "gpt-4o-mini", name="Ada", city="Paris")
    assert response.status_code == 403
    assert llm.calls == []
    assert not Execution.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_are_sent_to_the_login(client, prompt, method):
    response = getattr(client, method)(playground_url(prompt))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert not Execution.objects.exists()


def test_staff_who_may_not_view_prompts_are_refused_and_those_who_may_are_served(
    client, django_user_model, prompt
):
    user = django_user_model.objects.create_user(username="editor", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(playground_url(prompt)).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_prompt"))
    assert client.get(playground_url(prompt)).status_code == 200


def test_an_unknown_version_is_not_found(staff_client, prompt):
    assert staff_client.get(playground_url(prompt, 9)).status_code == 404
