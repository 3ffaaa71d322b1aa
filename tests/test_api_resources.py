"""budgets/, prompts/ and batches/."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from llm_agents import budgets
from llm_agents.models import Budget, PromptVersion
from tests.api_support import API
from tests.factories import (
    BatchFactory,
    BatchRequestFactory,
    BudgetFactory,
    PromptFactory,
)

pytestmark = pytest.mark.django_db

AUTH_QUERIES = 2


def get(client, path, **params):
    return client.get(API + path, params)


def post(client, path, data):
    return client.post(API + path, data, content_type="application/json")


# -- budgets ----------------------------------------------------------------------------------


def test_budget_list_shows_spend(staff_client, django_assert_num_queries):
    budgets.record("A", Decimal("30"), 100)
    budgets.record("B", Decimal("10.00072"), 100)
    everything = BudgetFactory(name="all", limit_usd=Decimal("100"))
    agent = BudgetFactory(name="agent a", scope=Budget.Scope.AGENT, scope_value="A", limit_usd=Decimal("20"))
    with django_assert_num_queries(AUTH_QUERIES + 2 + 2):  # count, page, one spend query per budget
        data = get(staff_client, "budgets/").json()
    assert data["count"] == 2
    by_name = {row["name"]: row for row in data["results"]}
    assert by_name["all"]["current_spend"] == "40.00072000"
    assert by_name["all"]["percent_used"] == everything.percent_used()
    assert by_name["all"]["remaining"] == "59.99928000"
    assert by_name["agent a"]["percent_used"] == agent.percent_used() == 150.0
    assert by_name["agent a"]["remaining"] == "0.00000000"


def test_budget_crud(staff_client):
    response = post(
        staff_client,
        "budgets/",
        {"name": "daily", "scope": "agent", "scope_value": "A", "period": "daily", "limit_usd": "5"},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["current_spend"] == "0.00000000" and created["alert_at_percentage"] == 80
    path = f"budgets/{created['id']}/"
    response = staff_client.patch(API + path, {"limit_usd": "7.5"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["limit_usd"] == "7.50000000"
    assert Budget.objects.get().limit_usd == Decimal("7.5")
    response = staff_client.put(
        API + path,
        {"name": "weekly", "scope": "global", "scope_value": "", "period": "weekly", "limit_usd": "9"},
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["scope"] == "global"
    assert get(staff_client, path).json()["name"] == "weekly"
    assert staff_client.delete(API + path).status_code == 204
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "scope": "agent", "limit_usd": "1"}, "scope_value"),
        ({"name": "x", "scope": "global", "scope_value": "A", "limit_usd": "1"}, "scope_value"),
        ({"name": "x", "period": "rolling", "limit_usd": "1"}, "period_days"),
        ({"name": "x", "limit_usd": "-1"}, "limit_usd"),
        ({"name": "x", "limit_usd": "1", "alert_at_percentage": 0}, "alert_at_percentage"),
        ({"name": "x", "limit_usd": "1", "scope": "planet"}, "scope"),
        ({"limit_usd": "1"}, "name"),
    ],
)
def test_budget_validation(staff_client, data, field):
    response = post(staff_client, "budgets/", data)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_budget_filters_and_ordering(staff_client):
    BudgetFactory(name="b", is_active=False)
    BudgetFactory(name="a", scope=Budget.Scope.MODEL, scope_value="gpt-4o")
    assert [r["name"] for r in get(staff_client, "budgets/", is_active="false").json()["results"]] == ["b"]
    assert [r["name"] for r in get(staff_client, "budgets/", scope="model").json()["results"]] == ["a"]
    assert [r["name"] for r in get(staff_client, "budgets/", ordering="-name").json()["results"]] == [
        "b",
        "a",
    ]
    assert get(staff_client, "budgets/", scope="x").status_code == 400


# -- prompts ----------------------------------------------------------------------------------


@pytest.fixture
def prompt():
    prompt = PromptFactory(slug="welcome", tags=["support", "email"])
    prompt.update_content(
        [
            {"role": "system", "content": "You write for {{company}}."},
            {"role": "user", "content": "Greet {{name}}."},
        ],
        model="gpt-4o-mini",
        model_params={"temperature": 0.2},
    )
    prompt.update_content([{"role": "user", "content": "Hello {{name}}{{#vip}}, our VIP{{/vip}}!"}])
    return prompt


def test_prompt_list_and_detail(staff_client, prompt, django_assert_num_queries):
    PromptFactory(slug="other", tags=["sales"])
    with django_assert_num_queries(AUTH_QUERIES + 3):  # the count, the page and the page's labels
        data = get(staff_client, "prompts/").json()
    assert [row["slug"] for row in data["results"]] == ["other", "welcome"]
    assert data["results"][1]["current_version_number"] == 2
    assert data["results"][0]["current_version_number"] is None
    assert [row["slug"] for row in get(staff_client, "prompts/", tag="email").json()["results"]] == [
        "welcome"
    ]
    assert [row["slug"] for row in get(staff_client, "prompts/", search="OTH").json()["results"]] == ["other"]
    detail = get(staff_client, "prompts/welcome/").json()
    assert detail["current_version"]["number"] == 2
    assert detail["current_version"]["messages"] == [
        {"role": "user", "content": "Hello {{name}}{{#vip}}, our VIP{{/vip}}!"}
    ]
    assert get(staff_client, "prompts/missing/").status_code == 404


def test_prompt_versions(staff_client, prompt):
    prompt.rollback_to(1)
    data = get(staff_client, "prompts/welcome/versions/").json()
    assert [(row["number"], row["source"]) for row in data["results"]] == [
        (3, "rollback"),
        (2, "api"),
        (1, "api"),
    ]
    assert get(staff_client, "prompts/welcome/versions/", page_size=1).json()["count"] == 3


def test_render_current_and_given_version(staff_client, prompt):
    response = post(staff_client, "prompts/welcome/render/", {"variables": {"name": "Ada", "vip": True}})
    assert response.status_code == 200, response.content
    assert response.json() == {
        "slug": "welcome",
        "version": 2,
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello Ada, our VIP!"}],
        "model_params": {"temperature": 0.2},
    }
    expected = prompt.build(version=1, company="<Acme>", name="Bo")
    response = post(
        staff_client,
        "prompts/welcome/render/",
        {"variables": {"company": "<Acme>", "name": "Bo"}, "version": 1},
    )
    assert response.json()["messages"] == expected["messages"]
    assert response.json()["messages"][0]["content"] == "You write for <Acme>."


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"variables": {}}, "variables", "'name'"),
        ({"variables": {"name": "x"}, "version": 1}, "variables", "'company'"),
        ({"variables": {"name": "x"}, "version": 9}, "version", "no version 9"),
        ({"variables": {"name": "x"}, "version": 0}, "version", ""),
        ({"variables": ["name"]}, "variables", ""),
        ({"variables": {"name": "x"}, "version": "two"}, "version", ""),
    ],
)
def test_render_errors_name_the_field(staff_client, prompt, data, field, text):
    response = post(staff_client, "prompts/welcome/render/", data)
    assert response.status_code == 400, response.content
    assert text in response.json()[field][0]


def test_render_prompt_without_versions(staff_client):
    PromptFactory(slug="empty")
    response = post(staff_client, "prompts/empty/render/", {})
    assert response.status_code == 400 and "version" in response.json()


def test_render_is_post_only(staff_client, prompt):
    assert get(staff_client, "prompts/welcome/render/").status_code == 405
    assert PromptVersion.objects.count() == 2


# -- batches ----------------------------------------------------------------------------------


def test_batches_with_request_counts(staff_client, django_assert_num_queries):
    batch = BatchFactory(submitted=True)
    BatchRequestFactory.create_batch(2, batch=batch, status="submitted")
    BatchRequestFactory(batch=batch, status="succeeded")
    BatchRequestFactory(batch=batch, status="failed")
    BatchRequestFactory()  # not in a batch
    empty = BatchFactory(purpose="other")
    with django_assert_num_queries(AUTH_QUERIES + 2):
        data = get(staff_client, "batches/").json()
    assert data["count"] == 2
    by_id = {row["id"]: row for row in data["results"]}
    assert by_id[batch.id]["request_counts"] == {"pending": 0, "submitted": 2, "succeeded": 1, "failed": 1}
    assert by_id[empty.id]["request_counts"] == {"pending": 0, "submitted": 0, "succeeded": 0, "failed": 0}
    detail = get(staff_client, f"batches/{batch.id}/").json()
    assert (
        detail["request_counts"]["submitted"] == 2 and detail["provider_batch_id"] == batch.provider_batch_id
    )
    assert [r["id"] for r in get(staff_client, "batches/", purpose="other").json()["results"]] == [empty.id]
    assert [r["id"] for r in get(staff_client, "batches/", status="submitted").json()["results"]] == [
        batch.id
    ]
    assert get(staff_client, "batches/", status="done").status_code == 400
    assert get(staff_client, "batches/999999/").status_code == 404


def test_batches_are_read_only(staff_client):
    batch = BatchFactory()
    assert post(staff_client, "batches/", {"purpose": "x", "model": "y"}).status_code == 405
    assert staff_client.delete(API + f"batches/{batch.id}/").status_code == 405


def test_database_vendor_is_known():
    assert connection.vendor in ("sqlite", "postgresql")
