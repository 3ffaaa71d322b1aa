"""The admin: every changelist renders for staff, tracking records are read-only, filters work."""

from __future__ import annotations

import pytest
from django.urls import reverse

from llm_agents.models import Budget, Execution

from .factories import (
    BatchFactory,
    BatchRequestFactory,
    BudgetFactory,
    CostConfigFactory,
    ExecutionFactory,
    PromptFactory,
    PromptVersionFactory,
    SpanFactory,
)

pytestmark = pytest.mark.django_db

MODELS = {
    "execution": lambda: ExecutionFactory(agent_type="InvoiceAgent"),
    "span": lambda: SpanFactory(name="lookup_invoice"),
    "prompt": lambda: PromptFactory(slug="invoice-reminder"),
    "promptversion": lambda: PromptVersionFactory(prompt=PromptFactory(slug="invoice-reminder")),
    "costconfig": lambda: CostConfigFactory(model="gpt-4.1-nano"),
    "budget": lambda: BudgetFactory(name="Invoice budget"),
    "batch": lambda: BatchFactory(purpose="invoice_triage"),
    "batchrequest": lambda: BatchRequestFactory(custom_id="invoice-request-0001"),
}
SHOWN = {
    "execution": "InvoiceAgent",
    "span": "lookup_invoice",
    "prompt": "invoice-reminder",
    "promptversion": "invoice-reminder",
    "costconfig": "gpt-4.1-nano",
    "budget": "Invoice budget",
    "batch": "invoice_triage",
    "batchrequest": "invoice-request-0001",
}


def changelist(model: str) -> str:
    return reverse(f"admin:llm_agents_{model}_changelist")


@pytest.mark.parametrize("model", list(MODELS))
def test_changelist_renders_for_staff(staff_client, model):
    MODELS[model]()
    response = staff_client.get(changelist(model))
    assert response.status_code == 200
    assert SHOWN[model] in response.content.decode()
    assert response.context["cl"].result_count == 1


@pytest.mark.parametrize("model", list(MODELS))
def test_change_page_renders_for_staff(staff_client, model):
    instance = MODELS[model]()
    response = staff_client.get(reverse(f"admin:llm_agents_{model}_change", args=[instance.pk]))
    assert response.status_code == 200
    assert SHOWN[model] in response.content.decode()


def test_execution_change_page_shows_the_spans(staff_client):
    execution = ExecutionFactory(agent_type="InvoiceAgent", error_message="", response="Paid in full.")
    SpanFactory(execution=execution, name="fetch_invoice", kind="tool")
    SpanFactory(execution=execution, name="openai.responses")
    response = staff_client.get(reverse("admin:llm_agents_execution_change", args=[execution.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert "fetch_invoice" in content
    assert "openai.responses" in content
    assert "Paid in full." in content


@pytest.mark.parametrize("model", list(MODELS))
def test_anonymous_is_redirected_to_login(client, model):
    MODELS[model]()
    url = changelist(model)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "next=" in response["Location"]


def test_non_staff_user_is_redirected_to_login(client, django_user_model):
    user = django_user_model.objects.create_user(username="reader", password="password")
    client.force_login(user)
    response = client.get(changelist("execution"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_executions_cannot_be_added(staff_client):
    response = staff_client.get(reverse("admin:llm_agents_execution_add"))
    assert response.status_code == 403
    response = staff_client.post(reverse("admin:llm_agents_execution_add"), {"agent_type": "Forged"})
    assert response.status_code == 403
    assert not Execution.objects.exists()


def test_executions_cannot_be_changed(staff_client):
    execution = ExecutionFactory(agent_type="InvoiceAgent", status="success")
    url = reverse("admin:llm_agents_execution_change", args=[execution.pk])
    page = staff_client.get(url)
    assert page.context["has_change_permission"] is False
    assert 'name="agent_type"' not in page.content.decode()
    response = staff_client.post(url, {"agent_type": "Forged", "status": "error"})
    assert response.status_code == 403
    execution.refresh_from_db()
    assert execution.agent_type == "InvoiceAgent"
    assert execution.status == "success"


def test_superuser_can_delete_an_execution(staff_client):
    execution = ExecutionFactory()
    url = reverse("admin:llm_agents_execution_delete", args=[execution.pk])
    response = staff_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Execution.objects.exists()


@pytest.fixture
def executions():
    return {
        "search_error": ExecutionFactory(
            agent_type="SearchAgent", model_id="gpt-4o", status="error", tenant_id="acme", streaming=True
        ),
        "search_ok": ExecutionFactory(
            agent_type="SearchAgent",
            model_id="gpt-4o-mini",
            status="success",
            tenant_id="beta",
            cache_hit=True,
        ),
        "writer_fallback": ExecutionFactory(
            agent_type="WriterAgent",
            model_id="gpt-4o",
            chosen_model_id="claude-sonnet-4",
            status="timeout",
            tenant_id=None,
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "error"}, {"search_error"}),
        ({"status__exact": "timeout"}, {"writer_fallback"}),
        ({"agent_type": "SearchAgent"}, {"search_error", "search_ok"}),
        ({"model_id": "gpt-4o"}, {"search_error", "writer_fallback"}),
        ({"tenant_id": "beta"}, {"search_ok"}),
        ({"tenant_id__isnull": "True"}, {"writer_fallback"}),
        ({"streaming__exact": "1"}, {"search_error"}),
        ({"streaming__exact": "0"}, {"search_ok", "writer_fallback"}),
        ({"cache_hit__exact": "1"}, {"search_ok"}),
        ({"fallback": "yes"}, {"writer_fallback"}),
        ({"fallback": "no"}, {"search_error", "search_ok"}),
        ({"agent_type": "SearchAgent", "status__exact": "success"}, {"search_ok"}),
        ({}, {"search_error", "search_ok", "writer_fallback"}),
    ],
)
def test_execution_list_filters(staff_client, executions, query, expected):
    response = staff_client.get(changelist("execution"), query)
    assert response.status_code == 200
    shown = {execution.pk for execution in response.context["cl"].result_list}
    assert shown == {executions[name].pk for name in expected}


def test_execution_changelist_offers_the_filters(staff_client, executions):
    response = staff_client.get(changelist("execution"))
    titles = {str(spec.title) for spec in response.context["cl"].filter_specs}
    assert {"status", "agent type", "model id", "tenant id", "streaming", "cache hit", "fallback"} <= titles


def test_execution_search_by_agent_and_error(staff_client, executions):
    executions["search_error"].error_message = "Rate limit reached"
    executions["search_error"].save()
    response = staff_client.get(changelist("execution"), {"q": "rate limit"})
    assert {e.pk for e in response.context["cl"].result_list} == {executions["search_error"].pk}


def test_prompt_versions_cannot_be_changed_in_the_admin(staff_client):
    version = PromptVersionFactory(changelog="First version")
    url = reverse("admin:llm_agents_promptversion_change", args=[version.pk])
    response = staff_client.post(url, {"changelog": "Rewritten history"})
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.changelog == "First version"


def test_budgets_can_be_added_in_the_admin(staff_client):
    response = staff_client.post(
        reverse("admin:llm_agents_budget_add"),
        {
            "name": "Search agent daily",
            "scope": "agent",
            "scope_value": "SearchAgent",
            "period": "daily",
            "limit_usd": "5.00",
            "enforcement": "hard_stop",
            "alert_at_percentage": "80",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors

    assert Budget.objects.get().scope_value == "SearchAgent"
