"""Prompt writes, labels and experiments over the HTTP API (SPEC §18, §21): prompts/ POST,
prompts/{slug}/versions/ POST, prompts/{slug}/labels/, prompts/{slug}/rollback/, and experiments/."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings

from llm_agents import Agent, Param, scores
from llm_agents.models import Execution, Prompt, PromptExperiment, PromptLabel, PromptLabelMove
from llm_agents.testing import fake_llm
from tests.api_support import API, TENANCY
from tests.factories import ExecutionFactory
from tests.test_read_replica import ON_REPLICA, REPLICA, Queries, replica_alias  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def get(client, path, **params):
    return client.get(API + path, params)


def post(client, path, data=None, **headers):
    return client.post(API + path, data or {}, content_type="application/json", headers=headers)


@pytest.fixture
def prompt():
    prompt = Prompt.objects.create(slug="greeting", name="Greeting")
    prompt.update_content([{"role": "user", "content": "Hello {{name}}"}], model="fake/model")
    prompt.update_content([{"role": "user", "content": "Hi {{name}}"}], model_params={"temperature": 0.3})
    return prompt


def staff_user(django_user_model, username, *permissions):
    user = django_user_model.objects.create_user(username, password="secret", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label="llm_agents")
        )
    return user


@pytest.fixture
def editor(django_user_model):
    """Staff who may change prompts but lacks ``llm_agents.promote_prompt``."""
    return staff_user(django_user_model, "editor", "change_prompt")


@pytest.fixture
def promoter(django_user_model):
    return staff_user(django_user_model, "promoter", "promote_prompt")


# -- prompts ----------------------------------------------------------------------------------


def test_create_a_prompt(staff_client):
    response = post(
        staff_client,
        "prompts/",
        {"slug": "welcome", "name": "Welcome", "tags": ["support", " support", "mail"]},
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert {key: data[key] for key in ("slug", "name", "description", "tags", "labels")} == {
        "slug": "welcome",
        "name": "Welcome",
        "description": "",
        "tags": ["support", "mail"],
        "labels": {},
    }
    assert data["current_version_number"] is None and data["current_version"] is None
    assert Prompt.objects.get(slug="welcome").tags == ["support", "mail"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"slug": "greeting", "name": "Again"}, "slug"),
        ({"slug": "has space", "name": "X"}, "slug"),
        ({"name": "No slug"}, "slug"),
        ({"slug": "x"}, "name"),
        ({"slug": "x", "name": "X", "tags": "support"}, "tags"),
        ({"slug": "x", "name": "X", "tags": [" "]}, "tags"),
    ],
)
def test_a_bad_prompt_is_a_400_naming_the_field(staff_client, prompt, data, field):
    response = post(staff_client, "prompts/", data)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert list(Prompt.objects.values_list("slug", flat=True)) == ["greeting"]


def test_create_a_version(staff_client, prompt):
    content = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hey {{name}}"}]
    }
    response = post(staff_client, "prompts/greeting/versions/", {**content, "changelog": "Shorter"})
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["number"], data["source"], data["changelog"]) == (3, "api", "Shorter")
    assert data["messages"] == content["messages"]
    # The model and its parameters are the current version's unless given.
    assert (data["model"], data["model_params"]) == ("fake/model", {"temperature": 0.3})

    again = post(staff_client, "prompts/greeting/versions/", content)
    assert again.status_code == 200, again.content
    assert again.json()["number"] == 3
    assert prompt.versions.count() == 3

    changed = post(staff_client, "prompts/greeting/versions/", {**content, "model": "", "model_params": {}})
    assert changed.status_code == 201
    assert (changed.json()["number"], changed.json()["model"], changed.json()["model_params"]) == (4, "", {})
    assert [row["number"] for row in get(staff_client, "prompts/greeting/versions/").json()["results"]] == [
        4,
        3,
        2,
        1,
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "Hello"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages"),
        ({"messages": [{"role": "user", "content": "{{#open}} never closed"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "nul \x00"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "ok"}], "model_params": {"model": "x"}}, "model_params"),
        ({"messages": [{"role": "user", "content": "ok"}], "model_params": [1]}, "model_params"),
        ({"messages": [{"role": "user", "content": "ok"}], "model": "m" * 256}, "model"),
    ],
)
def test_a_bad_version_is_a_400_naming_the_field(staff_client, prompt, body, field):
    response = post(staff_client, "prompts/greeting/versions/", body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert prompt.versions.count() == 2


def test_versions_of_a_missing_prompt_are_a_404(staff_client):
    assert post(staff_client, "prompts/missing/versions/", {"messages": []}).status_code == 404


def test_rollback(staff_client, prompt):
    response = post(staff_client, "prompts/greeting/rollback/", {"version": 1})
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["number"], data["source"], data["changelog"]) == (3, "rollback", "Rollback to version 1")
    assert data["messages"] == prompt.version(1).messages

    again = post(staff_client, "prompts/greeting/rollback/", {"version": 1})
    assert (again.status_code, again.json()["number"]) == (200, 3)

    missing = post(staff_client, "prompts/greeting/rollback/", {"version": 7})
    assert missing.status_code == 400 and "no version 7" in missing.json()["version"][0]
    assert post(staff_client, "prompts/greeting/rollback/", {}).status_code == 400
    assert prompt.versions.count() == 3


# -- labels -----------------------------------------------------------------------------------


def test_move_a_label(client, editor, prompt):
    client.force_login(editor)
    editor_client = client
    response = post(editor_client, "prompts/greeting/labels/staging/", {"version": 1})
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["name"], data["version"], data["updated_by"]) == ("staging", 1, "editor")
    assert data["updated_at"]
    move = PromptLabelMove.objects.get()
    assert (move.label, move.old_number, move.new_number, move.source) == ("staging", None, 1, "api")
    assert move.moved_by.username == "editor"

    assert post(editor_client, "prompts/greeting/labels/staging/", {"version": 2}).json()["version"] == 2
    assert get(editor_client, "prompts/greeting/").json()["labels"] == {"staging": 2}
    assert get(editor_client, "prompts/").json()["results"][0]["labels"] == {"staging": 2}


def test_a_protected_label_needs_the_promote_permission(client, editor, promoter, prompt):
    client.force_login(editor)
    refused = post(client, "prompts/greeting/labels/production/", {"version": 2})
    assert refused.status_code == 403, refused.content
    assert "llm_agents.promote_prompt" in refused.json()["detail"]
    assert not PromptLabel.objects.exists() and not PromptLabelMove.objects.exists()

    client.force_login(promoter)
    allowed = post(client, "prompts/greeting/labels/production/", {"version": 2})
    assert allowed.status_code == 200, allowed.content
    assert (allowed.json()["version"], allowed.json()["updated_by"]) == (2, "promoter")
    assert Prompt.load("greeting").current_version.number == 2


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"version": 9}, "no version 9"),
        ({}, "required"),
        ({"version": "two"}, "integer"),
        ({"version": 0}, ""),
    ],
)
def test_a_label_on_a_version_the_prompt_lacks_is_a_400_naming_version(staff_client, prompt, body, text):
    response = post(staff_client, "prompts/greeting/labels/staging/", body)
    assert response.status_code == 400, response.content
    assert text in response.json()["version"][0]
    assert not PromptLabel.objects.exists()


def test_a_label_name_too_long_is_a_400_naming_name(staff_client, prompt):
    response = post(staff_client, f"prompts/greeting/labels/{'x' * 101}/", {"version": 1})
    assert response.status_code == 400 and "name" in response.json()


def test_labels_with_their_history(staff_client, prompt):
    for name, number in (("production", 1), ("staging", 1), ("production", 2)):
        assert post(staff_client, f"prompts/greeting/labels/{name}/", {"version": number}).status_code == 200
    data = get(staff_client, "prompts/greeting/labels/").json()
    assert [(row["name"], row["version"], row["updated_by"]) for row in data] == [
        ("production", 2, "admin"),
        ("staging", 1, "admin"),
    ]
    assert [
        (m["label"], m["old_number"], m["new_number"], m["moved_by"], m["source"]) for m in data[0]["history"]
    ] == [
        ("production", 1, 2, "admin", "api"),
        ("production", None, 1, "admin", "api"),
    ]
    assert len(data[1]["history"]) == 1


def test_render_a_label(staff_client, prompt):
    prompt.set_label("staging", 1)
    response = post(
        staff_client, "prompts/greeting/render/", {"variables": {"name": "Ada"}, "label": "staging"}
    )
    assert response.status_code == 200, response.content
    assert (response.json()["version"], response.json()["messages"][0]["content"]) == (1, "Hello Ada")
    missing = post(staff_client, "prompts/greeting/render/", {"variables": {"name": "Ada"}, "label": "qa"})
    assert missing.status_code == 400 and "no label 'qa'" in missing.json()["label"][0]
    both = post(staff_client, "prompts/greeting/render/", {"label": "staging", "version": 1})
    assert both.status_code == 400 and "label" in both.json()


@override_settings(LLM_AGENTS=TENANCY)
def test_a_tenant_reads_prompts_but_does_not_write_them(staff_client, prompt):
    assert get(staff_client, "prompts/greeting/").status_code == 200
    body = {"messages": [{"role": "user", "content": "Yo"}]}
    assert post(staff_client, "prompts/greeting/versions/", body, X_Tenant="acme").status_code == 403
    assert (
        post(staff_client, "prompts/", {"slug": "mine", "name": "Mine"}, X_Tenant="acme").status_code == 403
    )
    assert (
        post(staff_client, "prompts/greeting/labels/staging/", {"version": 1}, X_Tenant="acme").status_code
        == 403
    )
    render = post(staff_client, "prompts/greeting/render/", {"variables": {"name": "A"}}, X_Tenant="acme")
    assert render.status_code == 200
    assert prompt.versions.count() == 2 and Prompt.objects.count() == 1


# -- performance ------------------------------------------------------------------------------


def test_a_versions_performance_carries_its_score_means(staff_client, prompt):
    first, second = prompt.version(1), prompt.version(2)
    for value in (4, 2):
        scores.add(ExecutionFactory(prompt_version=first), "helpfulness", value)
    ExecutionFactory(prompt_version=second)
    rows = {row["number"]: row for row in get(staff_client, "prompts/greeting/versions/").json()["results"]}
    assert rows[1]["executions"] == 2
    assert rows[1]["scores"] == {"helpfulness": 3.0}
    assert (rows[2]["executions"], rows[2]["scores"]) == (1, {})


# -- experiments ------------------------------------------------------------------------------

EXPERIMENT = {
    "prompt": "greeting",
    "name": "Shorter greeting",
    "variants": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    "metric": "cost",
}


def create_experiment(client, **changes):
    response = post(client, "experiments/", {**EXPERIMENT, **changes})
    assert response.status_code == 201, response.content
    return response.json()


def test_create_list_and_read_experiments(staff_client, prompt):
    other = Prompt.objects.create(slug="other", name="Other")
    for word in ("a", "b"):
        other.update_content([{"role": "user", "content": word}])
    data = create_experiment(staff_client, guardrails={"error_rate_max": 10}, min_samples=20, unit="session")
    assert {
        key: data[key] for key in ("prompt", "name", "unit", "status", "metric", "guardrails", "min_samples")
    } == {
        "prompt": "greeting",
        "name": "Shorter greeting",
        "unit": "session",
        "status": "draft",
        "metric": "cost",
        "guardrails": {"error_rate_max": 10},
        "min_samples": 20,
    }
    assert data["variants"] == EXPERIMENT["variants"] and data["tripped"] == []
    defaults = create_experiment(staff_client, prompt="other", name="Other test")
    assert (defaults["unit"], defaults["min_samples"], defaults["guardrails"]) == ("user", 100, {})

    assert [row["id"] for row in get(staff_client, "experiments/").json()["results"]] == [
        defaults["id"],
        data["id"],
    ]
    assert [row["id"] for row in get(staff_client, "experiments/", prompt="greeting").json()["results"]] == [
        data["id"]
    ]
    assert get(staff_client, "experiments/", status="running").json()["results"] == []
    assert get(staff_client, "experiments/", status="paused").status_code == 400
    assert get(staff_client, f"experiments/{data['id']}/").json() == data
    assert get(staff_client, "experiments/999999/").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"variants": [{"version": 1, "weight": 1}, {"version": 2, "weight": 0}]}, "variants", "above 0"),
        ({"variants": [{"version": 1, "weight": -1}, {"version": 2}]}, "variants", "above 0"),
        ({"variants": [{"version": 1}, {"version": 3}]}, "variants", "no version 3"),
        ({"variants": [{"version": 1}]}, "variants", "at least two"),
        ({"variants": [{"version": 1}, {"version": 2**60}]}, "variants", "between"),
        ({"guardrails": {"error_rate_max": 150}}, "guardrails", "percentage"),
        ({"guardrails": {"latency_max": 3}}, "guardrails", "latency_max"),
        ({"metric": " "}, "metric", ""),
        ({"unit": "planet"}, "unit", ""),
        ({"min_samples": 0}, "min_samples", ""),
        ({"prompt": "missing"}, "prompt", "missing"),
    ],
)
def test_a_bad_experiment_is_a_400_naming_the_field(staff_client, prompt, changes, field, text):
    other = Prompt.objects.create(slug="other", name="Other")
    for word in ("a", "b", "c"):
        other.update_content([{"role": "user", "content": word}])  # other has a version 3; greeting has not
    response = post(staff_client, "experiments/", {**EXPERIMENT, **changes})
    assert response.status_code == 400, response.content
    assert text in response.json()[field][0]
    assert not PromptExperiment.objects.exists()


def test_start_stop_and_one_running_experiment_per_prompt(staff_client, prompt):
    first, second = create_experiment(staff_client), create_experiment(staff_client, name="Second")
    started = post(staff_client, f"experiments/{first['id']}/start/")
    assert started.status_code == 200, started.content
    assert started.json()["status"] == "running" and started.json()["started_at"]

    refused = post(staff_client, f"experiments/{second['id']}/start/")
    assert refused.status_code == 400, refused.content
    assert "already has a running experiment" in refused.json()["status"][0]
    assert PromptExperiment.objects.get(pk=second["id"]).status == "draft"
    assert post(staff_client, f"experiments/{first['id']}/start/").status_code == 400

    stopped = post(staff_client, f"experiments/{first['id']}/stop/")
    assert (stopped.status_code, stopped.json()["status"]) == (200, "stopped")
    assert stopped.json()["stopped_at"]
    assert "running" in post(staff_client, f"experiments/{first['id']}/stop/").json()["status"][0]
    assert post(staff_client, f"experiments/{second['id']}/start/").status_code == 200


def test_promote_needs_the_promote_permission(client, staff_superuser, editor, promoter, prompt):
    client.force_login(staff_superuser)
    experiment = create_experiment(client)
    post(client, f"experiments/{experiment['id']}/start/")

    client.force_login(editor)
    refused = post(client, f"experiments/{experiment['id']}/promote/", {"version": 2})
    assert refused.status_code == 403, refused.content
    assert PromptExperiment.objects.get(pk=experiment["id"]).status == "running"
    assert not PromptLabel.objects.exists()

    client.force_login(promoter)
    assert (
        "not a variant"
        in post(client, f"experiments/{experiment['id']}/promote/", {"version": 5}).json()["version"][0]
    )
    assert post(client, f"experiments/{experiment['id']}/promote/", {}).status_code == 400
    promoted = post(client, f"experiments/{experiment['id']}/promote/", {"version": 2})
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["status"] == "stopped"
    assert prompt.label("production").number == 2
    assert PromptLabelMove.objects.get().moved_by.username == "promoter"


@override_settings(LLM_AGENTS=TENANCY)
def test_a_tenant_sees_no_experiment_and_writes_none(staff_client, prompt):
    experiment = create_experiment(staff_client)
    assert staff_client.get(API + "experiments/", headers={"X-Tenant": "acme"}).json()["results"] == []
    assert (
        staff_client.get(API + f"experiments/{experiment['id']}/", headers={"X-Tenant": "acme"}).status_code
        == 404
    )
    assert post(staff_client, "experiments/", EXPERIMENT, X_Tenant="acme").status_code == 403
    assert PromptExperiment.objects.count() == 1


class GreetingAgent(Agent):
    prompt = "greeting"
    name = Param(required=True)


def test_results_count_the_executions_of_each_variant(staff_client, prompt):
    experiment = create_experiment(staff_client, metric="helpfulness")
    assert post(staff_client, f"experiments/{experiment['id']}/start/").status_code == 200
    users = [f"user-{n}" for n in range(12)]
    with fake_llm() as llm:
        llm.respond("Hello!", model="fake/model", input_tokens=10, output_tokens=5)
        for user in users + users[:3]:  # three users come back: same variant again
            GreetingAgent.call(name="Ada", _user_id=user)
    executions = Execution.objects.filter(experiment_id=experiment["id"])
    assert executions.count() == 15
    for execution in executions:
        scores.add(execution, "helpfulness", 1 if execution.prompt_version.number == 2 else 0)
    recorded = Counter(executions.values_list("prompt_version__number", flat=True))
    by_user = {
        user: set(executions.filter(user_id=user).values_list("prompt_version__number", flat=True))
        for user in users
    }
    assert all(len(numbers) == 1 for numbers in by_user.values())

    response = get(staff_client, f"experiments/{experiment['id']}/results/")
    assert response.status_code == 200, response.content
    data = response.json()
    expected = PromptExperiment.objects.get(pk=experiment["id"]).results()
    assert data["comparisons"] == expected["comparisons"]
    assert [{**row, "avg_cost": Decimal(row["avg_cost"])} for row in data["variants"]] == expected["variants"]
    assert data["metric"] == "helpfulness"
    assert [(row["version"], row["executions"]) for row in data["variants"]] == [
        (1, recorded[1]),
        (2, recorded[2]),
    ]
    assert recorded[1] and recorded[2]  # twelve users split across both variants
    control, variant = data["variants"]
    assert (control["success_rate"], control["metric_mean"], variant["metric_mean"]) == (100.0, 0.0, 1.0)
    assert isinstance(control["avg_cost"], str) and Decimal(control["avg_cost"]) >= 0
    assert control["tripped"] is None
    comparison = data["comparisons"][0]
    assert (comparison["version"], comparison["delta"]) == (2, 1.0)
    assert comparison["significant"] is False  # fewer than min_samples (100) per variant


def test_results_of_an_experiment_with_no_execution(staff_client, prompt):
    experiment = create_experiment(staff_client)
    data = get(staff_client, f"experiments/{experiment['id']}/results/").json()
    assert data["metric"] == "cost"
    assert [
        (row["version"], row["executions"], row["avg_cost"], row["ci95"]) for row in data["variants"]
    ] == [
        (1, 0, "0.00000000", None),
        (2, 0, "0.00000000", None),
    ]
    assert data["comparisons"] == [
        {"version": 2, "delta": None, "ci95": None, "p_value": None, "significant": False}
    ]


# -- databases --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", REPLICA])
def test_writes_go_to_the_primary_when_reads_go_to_the_analytics_database(staff_client):
    """The replica is read-only: a write sent there would fail (a 500), a read sent to the primary
    would not show in its queries."""
    with override_settings(LLM_AGENTS=ON_REPLICA):
        assert post(staff_client, "prompts/", {"slug": "greeting", "name": "Greeting"}).status_code == 201
        for content in ("Hello {{name}}", "Hi {{name}}"):
            body = {"messages": [{"role": "user", "content": content}]}
            assert post(staff_client, "prompts/greeting/versions/", body).status_code == 201
        assert post(staff_client, "prompts/greeting/labels/production/", {"version": 1}).status_code == 200
        assert post(staff_client, "prompts/greeting/rollback/", {"version": 1}).status_code == 201
        experiment = create_experiment(staff_client)
        assert post(staff_client, f"experiments/{experiment['id']}/start/").status_code == 200
        with Queries() as queries:
            listed = get(staff_client, "prompts/").json()["results"]
        assert listed[0]["labels"] == {"production": 1}
        assert queries.on(REPLICA) and not queries.on("default")
