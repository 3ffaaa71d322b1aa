"""With MULTI_TENANCY, every endpoint answers with the request's tenant's rows only (SPEC §14)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from django.test import override_settings

from llm_agents.models import Budget
from tests.api_support import API, TENANCY, body
from tests.factories import BatchFactory, BudgetFactory, ExecutionFactory, PromptVersionFactory, SpanFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tenancy")]


@pytest.fixture
def tenancy():
    with override_settings(LLM_AGENTS=TENANCY):
        yield


@pytest.fixture
def rows():
    """acme: 2 executions (one failed), $1 each; globex: 3 executions (one failed), $5 each."""
    acme = [
        ExecutionFactory(tenant_id="acme", input_cost=Decimal("1"), output_cost=Decimal("0")),
        ExecutionFactory(tenant_id="acme", input_cost=Decimal("1"), output_cost=Decimal("0"), failed=True),
    ]
    globex = [
        ExecutionFactory(
            tenant_id="globex", input_cost=Decimal("5"), output_cost=Decimal("0"), model_id="gpt-4o"
        ),
        ExecutionFactory(tenant_id="globex", input_cost=Decimal("5"), output_cost=Decimal("0")),
        ExecutionFactory(tenant_id="globex", input_cost=Decimal("5"), output_cost=Decimal("0"), failed=True),
    ]
    SpanFactory(execution=acme[0])
    return {"acme": acme, "globex": globex}


def get(client, path, tenant="acme", **params):
    headers = {"X-Tenant": tenant} if tenant else {}
    return client.get(API + path, params, headers=headers)


def test_every_aggregate_counts_the_tenant_only(staff_client, rows):
    overview = get(staff_client, "overview/").json()
    assert overview["total_executions"] == 2 and overview["total_cost"] == "2.00000000"
    assert overview["failed"] == 1
    agents = get(staff_client, "agents/").json()
    assert [(row["agent_type"], row["total"]) for row in agents] == [("SupportAgent", 2)]
    assert get(staff_client, "agents/SupportAgent/stats/").json()["total"] == 2
    summary = get(staff_client, "costs/summary/", group_by="tenant").json()
    assert [(row["key"], row["executions"]) for row in summary] == [("acme", 2)]
    assert sum(r["executions"] for r in get(staff_client, "costs/summary/", group_by="model").json()) == 2
    assert get(staff_client, "costs/forecast/").json()["month_to_date"] == "2.00000000"
    assert sum(row["executions"] for row in get(staff_client, "trends/").json()) == 2
    models = get(staff_client, "comparison/models/").json()
    assert [(row["model_id"], row["executions"]) for row in models] == [("gpt-4o-mini", 2)]
    versions = get(staff_client, "comparison/versions/", agent_type="SupportAgent", versions="1.0").json()
    assert versions["1.0"]["total"] == 2
    errors = get(staff_client, "errors/").json()
    assert sum(errors["categories"].values()) == 1
    assert [row["id"] for row in errors["recent"]] == [str(rows["acme"][1].id)]


def test_executions_list_detail_and_export(staff_client, rows):
    listed = get(staff_client, "executions/").json()
    assert listed["count"] == 2
    assert {row["tenant_id"] for row in listed["results"]} == {"acme"}
    assert get(staff_client, "executions/", tenant_id="globex").json()["count"] == 0
    assert get(staff_client, f"executions/{rows['acme'][0].id}/").json()["spans"][0]["name"]
    assert get(staff_client, f"executions/{rows['globex'][0].id}/").status_code == 404
    exported = list(csv.DictReader(io.StringIO(body(get(staff_client, "export/")).decode())))
    assert sorted(row["id"] for row in exported) == sorted(str(e.id) for e in rows["acme"])
    exported = json.loads(body(get(staff_client, "export/", tenant="globex", format="json")))
    assert sorted(row["id"] for row in exported) == sorted(str(e.id) for e in rows["globex"])


def test_budgets_are_the_tenants_own(staff_client):
    own = BudgetFactory(name="acme", scope=Budget.Scope.TENANT, scope_value="acme")
    other = BudgetFactory(name="globex", scope=Budget.Scope.TENANT, scope_value="globex")
    BudgetFactory(name="global")
    listed = get(staff_client, "budgets/").json()
    assert [row["name"] for row in listed["results"]] == ["acme"]
    assert get(staff_client, f"budgets/{own.id}/").status_code == 200
    assert get(staff_client, f"budgets/{other.id}/").status_code == 404
    headers = {"X-Tenant": "acme"}
    assert staff_client.delete(API + f"budgets/{other.id}/", headers=headers).status_code == 404
    response = staff_client.post(
        API + "budgets/",
        {"name": "x", "scope": "tenant", "scope_value": "globex", "limit_usd": "1"},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400 and "scope" in response.json()
    response = staff_client.post(
        API + "budgets/",
        {"name": "x", "scope": "tenant", "scope_value": "acme", "limit_usd": "1"},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 201


def test_batches_belong_to_no_tenant(staff_client):
    batch = BatchFactory()
    assert get(staff_client, "batches/").json()["count"] == 0
    assert get(staff_client, f"batches/{batch.id}/").status_code == 404
    assert get(staff_client, "batches/", tenant=None).json()["count"] == 1  # a superuser with no tenant


def test_prompts_are_shared(staff_client):
    prompt = PromptVersionFactory().prompt
    assert get(staff_client, "prompts/").json()["count"] == 1
    assert get(staff_client, f"prompts/{prompt.slug}/").status_code == 200


def test_no_tenant_superuser_sees_everything(staff_client, rows):
    assert get(staff_client, "overview/", tenant=None).json()["total_executions"] == 5
    assert get(staff_client, "executions/", tenant=None).json()["count"] == 5
    assert get(staff_client, f"executions/{rows['globex'][0].id}/", tenant=None).status_code == 200


def test_no_tenant_staff_sees_nothing(client, django_user_model, rows):
    client.force_login(django_user_model.objects.create_user("staff", password="x", is_staff=True))
    BudgetFactory()
    BatchFactory()
    overview = get(client, "overview/", tenant=None).json()
    assert overview["total_executions"] == 0 and overview["total_cost"] == "0.00000000"
    assert get(client, "executions/", tenant=None).json()["count"] == 0
    assert get(client, f"executions/{rows['acme'][0].id}/", tenant=None).status_code == 404
    assert get(client, "agents/", tenant=None).json() == []
    assert get(client, "costs/summary/", tenant=None).json() == []
    assert get(client, "costs/forecast/", tenant=None).json()["month_to_date"] == "0.00000000"
    assert get(client, "comparison/models/", tenant=None).json() == []
    assert get(client, "errors/", tenant=None).json()["recent"] == []
    assert get(client, "budgets/", tenant=None).json()["count"] == 0
    assert get(client, "batches/", tenant=None).json()["count"] == 0
    assert body(get(client, "export/", tenant=None, format="json")).strip() == b"[\n]"
    response = client.post(API + "budgets/", {"name": "x", "limit_usd": "1"}, content_type="application/json")
    assert response.status_code == 403
    # With a tenant, the same user sees that tenant.
    assert get(client, "overview/").json()["total_executions"] == 2


def test_without_multi_tenancy_nothing_is_scoped(staff_client, rows):
    with override_settings(LLM_AGENTS={"TENANT_RESOLVER": "tests.api_support.tenant_from_header"}):
        assert get(staff_client, "overview/").json()["total_executions"] == 5
