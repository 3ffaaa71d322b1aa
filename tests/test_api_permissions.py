"""API_PERMISSION_CLASSES guards every view, schema/ included; staff only by default."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from tests.api_support import API, GET_ENDPOINTS
from tests.factories import BatchFactory, BudgetFactory, ExecutionFactory, PromptVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects():
    return {
        "execution": ExecutionFactory(),
        "budget": BudgetFactory(),
        "batch": BatchFactory(),
        "prompt": PromptVersionFactory().prompt,
    }


def every_path(objects):
    return [
        *GET_ENDPOINTS,
        f"executions/{objects['execution'].id}/",
        f"budgets/{objects['budget'].id}/",
        f"batches/{objects['batch'].id}/",
        f"prompts/{objects['prompt'].slug}/",
        f"prompts/{objects['prompt'].slug}/versions/",
    ]


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user(username="member", password="password")


def test_anonymous_is_refused_everywhere(client, objects):
    for path in every_path(objects):
        assert client.get(API + path).status_code == 403, path
    render = client.post(
        API + f"prompts/{objects['prompt'].slug}/render/", {}, content_type="application/json"
    )
    assert render.status_code == 403
    assert client.post(API + "budgets/", {}, content_type="application/json").status_code == 403
    assert client.delete(API + f"budgets/{objects['budget'].id}/").status_code == 403
    assert (
        client.post(API + "pauses/", {"agent_type": "x"}, content_type="application/json").status_code == 403
    )


def test_non_staff_is_refused_everywhere(client, member, objects):
    client.force_login(member)
    for path in every_path(objects):
        assert client.get(API + path).status_code == 403, path
    assert client.delete(API + f"budgets/{objects['budget'].id}/").status_code == 403


def test_wrong_basic_credentials_are_refused(client, objects):
    # 403 rather than 401: DRF answers 401 only when the first authentication class (here the
    # session) asks for credentials with a WWW-Authenticate header.
    credentials = base64.b64encode(b"nobody:wrong").decode()
    response = client.get(API + "overview/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid username/password."}


def test_staff_is_allowed_everywhere(client, django_user_model, objects):
    staff = django_user_model.objects.create_user(username="staff", password="password", is_staff=True)
    client.force_login(staff)
    for path in every_path(objects):
        assert client.get(API + path).status_code == 200, path


def test_staff_with_basic_auth(client, django_user_model):
    django_user_model.objects.create_user(username="staff", password="secret", is_staff=True)
    credentials = base64.b64encode(b"staff:secret").decode()
    assert client.get(API + "overview/", HTTP_AUTHORIZATION=f"Basic {credentials}").status_code == 200


def test_permission_classes_are_read_from_settings(client, member, objects):
    with override_settings(LLM_AGENTS={"API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]}):
        for path in every_path(objects):
            assert client.get(API + path).status_code == 200, path
    client.force_login(member)
    with override_settings(
        LLM_AGENTS={"API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    ):
        assert client.get(API + "schema/").status_code == 200
        assert client.get(API + "overview/").status_code == 200
    assert client.get(API + "overview/").status_code == 403


def test_schema_is_openapi_3_and_lists_every_path(staff_client):
    response = staff_client.get(API + "schema/", {"format": "json"})
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for path in [
        "overview/",
        "executions/",
        "executions/{id}/",
        "agents/",
        "agents/{agent_type}/stats/",
        "costs/summary/",
        "costs/forecast/",
        "trends/",
        "comparison/models/",
        "comparison/versions/",
        "errors/",
        "budgets/",
        "budgets/{id}/",
        "prompts/",
        "prompts/{slug}/",
        "prompts/{slug}/versions/",
        "prompts/{slug}/render/",
        "batches/",
        "batches/{id}/",
        "pauses/",
        "pauses/{id}/",
        "pauses/{id}/lift/",
        "export/",
        "schema/",
    ]:
        assert API + path in paths, path
    assert not any(path.startswith("/admin") for path in paths)
    parameters = {p["name"]: p for p in schema["paths"][API + "executions/"]["get"]["parameters"]}
    assert set(parameters) >= {
        "status",
        "agent_type",
        "model_id",
        "tenant_id",
        "version",
        "streaming",
        "cache_hit",
        "min_cost",
        "max_cost",
        "started_after",
        "started_before",
        "search",
        "ordering",
        "page",
        "page_size",
        "period",
        "start_date",
        "end_date",
    }
    assert parameters["status"]["schema"]["enum"] == ["error", "running", "success", "timeout"]
    assert parameters["page_size"]["schema"]["maximum"] == 500
    overview = schema["paths"][API + "overview/"]["get"]
    assert "30d" in {p["name"]: p for p in overview["parameters"]}["period"]["schema"]["enum"]
    ref = overview["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    properties = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert "p95_duration_ms" in properties and "projected_monthly_cost" in properties
    summary = schema["paths"][API + "costs/summary/"]["get"]
    group_by = {p["name"]: p for p in summary["parameters"]}["group_by"]
    assert set(group_by["schema"]["enum"]) == {"model", "agent", "tenant", "day"}
    export = schema["paths"][API + "export/"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"text/csv", "application/json"}
