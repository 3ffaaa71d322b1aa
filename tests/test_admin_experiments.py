"""Prompt labels and experiments in the admin (SPEC §18): the prompt page's labels panel (moving a label,
protected labels, the history), the experiment's form, Start / Stop, its results page and promotion."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.cache import caches
from django.urls import reverse

from llm_agents import Agent, Param
from llm_agents.models import CostConfig, Execution, Prompt, PromptExperiment, PromptLabelMove
from llm_agents.testing import fake_llm

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clear_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


def make_prompt():
    """Prompt "reply": v1 on gpt-4o-mini, v2 on gpt-4o (dearer), v3; production at v1."""
    prompt = Prompt.objects.create(slug="reply", name="Reply")
    prompt.update_content([{"role": "user", "content": "Reply to {{q}} briefly."}], model="gpt-4o-mini")
    prompt.update_content([{"role": "user", "content": "Reply to {{q}}."}], model="gpt-4o")
    prompt.update_content([{"role": "user", "content": "Reply to {{q}} in full."}], model="gpt-4o-mini")
    prompt.set_label("production", 1)
    return prompt


@pytest.fixture
def prompt(db):
    return make_prompt()


@pytest.fixture
def editor(django_user_model):
    """A staff user who may change prompts and experiments, but not move protected labels."""
    user = django_user_model.objects.create_user("editor", is_staff=True)
    for codename in ("view_prompt", "change_prompt", "view_promptexperiment", "change_promptexperiment",
                     "add_promptexperiment"):  # fmt: skip
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label="llm_agents")
        )
    return user


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


def prompt_url(name, *args):
    return reverse(f"admin:llm_agents_prompt_{name}", args=args)


def experiment_url(name, *args):
    return reverse(f"admin:llm_agents_promptexperiment_{name}", args=args)


def texts(response):
    """The messages of the request, forgotten afterwards (the tests do not follow the redirects)."""
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    response.client.cookies.pop("messages", None)
    return shown


def production(prompt):
    return prompt.label("production").number


# -- labels on the prompt page ---------------------------------------------------------------------


def test_the_prompt_page_lists_labels_and_moves_one(staff_client, staff_superuser, prompt):
    html = staff_client.get(prompt_url("change", prompt.pk)).content.decode()
    assert 'id="labels"' in html
    assert 'data-label="production"' in html
    assert prompt_url("version", prompt.pk, 1) in html
    assert prompt_url("labels", prompt.pk) in html  # the move form posts there

    response = staff_client.post(prompt_url("labels", prompt.pk), {"name": "staging", "version": "3"})
    assert response.status_code == 302
    assert response["Location"].endswith(prompt_url("change", prompt.pk) + "#labels")
    assert texts(response) == ["Label “staging” now points at version 3."]
    staging = prompt.labels.get(name="staging")
    assert (staging.version.number, staging.updated_by) == (3, staff_superuser)
    move = prompt.label_moves.get(label="staging")
    assert (move.old_number, move.new_number, move.moved_by, move.source) == (
        None,
        3,
        staff_superuser,
        "admin",
    )

    response = staff_client.post(prompt_url("labels", prompt.pk), {"name": "production", "version": "2"})
    assert texts(response) == ["Moved label “production” from version 1 to version 2."]
    assert production(prompt) == 2

    page = staff_client.get(prompt_url("change", prompt.pk))
    history = page.context["label_moves"]
    assert [(m.label, m.old_number, m.new_number) for m in history] == [
        ("production", 1, 2),
        ("staging", None, 3),
        ("production", None, 1),
    ]
    html = page.content.decode()
    assert 'id="label-history"' in html
    labels_by_version = {row["version"].number: row["labels"] for row in page.context["version_rows"]}
    assert labels_by_version == {3: ["staging"], 2: ["production"], 1: []}


def test_a_protected_label_needs_the_promote_permission(editor_client, editor, prompt):
    page = editor_client.get(prompt_url("change", prompt.pk)).content.decode()
    assert "llm_agents.promote_prompt" in page  # the panel says who may move production

    response = editor_client.post(prompt_url("labels", prompt.pk), {"name": "production", "version": "2"})
    assert response.status_code == 302
    [message] = texts(response)
    assert "production" in message and "llm_agents.promote_prompt" in message
    assert production(prompt) == 1
    assert PromptLabelMove.objects.filter(prompt=prompt).count() == 1  # only the fixture's

    response = editor_client.post(prompt_url("labels", prompt.pk), {"name": "staging", "version": "2"})
    assert texts(response) == ["Label “staging” now points at version 2."]
    assert prompt.labels.get(name="staging").updated_by == editor


def test_a_missing_version_or_a_bad_name_is_refused_with_its_name(staff_client, prompt):
    response = staff_client.post(prompt_url("labels", prompt.pk), {"name": "production", "version": "9"})
    [message] = texts(response)
    assert "9" in message
    response = staff_client.post(prompt_url("labels", prompt.pk), {"name": "bad name!", "version": "2"})
    [message] = texts(response)
    assert "bad name!" in message
    response = staff_client.post(prompt_url("labels", prompt.pk), {"name": "staging", "version": "two"})
    [message] = texts(response)
    assert message.startswith("Version:")
    assert list(prompt.labels.values_list("name", "version__number")) == [("production", 1)]
    assert prompt.label_moves.count() == 1


def test_moving_a_label_needs_change_permission_and_a_post(client, django_user_model, staff_client, prompt):
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_prompt"))
    client.force_login(viewer)
    assert (
        client.post(prompt_url("labels", prompt.pk), {"name": "staging", "version": "2"}).status_code == 403
    )
    assert "label-move" not in client.get(prompt_url("change", prompt.pk)).content.decode()
    client.force_login(django_user_model.objects.get(username="admin"))
    assert client.get(prompt_url("labels", prompt.pk)).status_code == 405
    assert not prompt.labels.filter(name="staging").exists()


# -- the experiment's form and lifecycle -----------------------------------------------------------


def form_data(prompt, **overrides):
    data = {
        "prompt": prompt.pk,
        "name": "brevity",
        "variants": "1:50, 2:50",
        "unit": "user",
        "metric": "cost",
        "guardrails": "{}",
        "min_samples": "100",
    }
    data.update(overrides)
    return data


def test_creating_an_experiment_shows_model_errors_on_their_fields(staff_client, prompt):
    response = staff_client.post(experiment_url("add"), form_data(prompt, variants="1:50, 7:50"))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "has no version 7" in " ".join(form.errors["variants"])
    response = staff_client.post(experiment_url("add"), form_data(prompt, variants="1"))
    assert "at least two" in " ".join(response.context["adminform"].form.errors["variants"])
    response = staff_client.post(experiment_url("add"), form_data(prompt, variants="1:fifty, 2"))
    assert "variant 1" in " ".join(response.context["adminform"].form.errors["variants"])
    response = staff_client.post(experiment_url("add"), form_data(prompt, guardrails='{"error_rate": 5}'))
    assert "error_rate_max" in " ".join(response.context["adminform"].form.errors["guardrails"])
    assert not PromptExperiment.objects.exists()

    response = staff_client.post(
        experiment_url("add"),
        form_data(prompt, variants='[{"version": 1, "weight": 3}, {"version": 3, "weight": 1}]',
                  guardrails='{"error_rate_max": 10}'),
    )  # fmt: skip
    assert response.status_code == 302
    experiment = PromptExperiment.objects.get()
    assert experiment.variants == [{"version": 1, "weight": 3}, {"version": 3, "weight": 1}]
    assert (experiment.status, experiment.guardrails) == ("draft", {"error_rate_max": 10})
    page = staff_client.get(experiment_url("change", experiment.pk))
    assert 'value="1:3, 3:1"' in page.content.decode()


def test_start_and_stop_with_messages(staff_client, prompt):
    experiment = PromptExperiment.objects.create(
        prompt=prompt,
        name="brevity",
        metric="cost",
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )
    page = staff_client.get(experiment_url("change", experiment.pk)).content.decode()
    assert experiment_url("start", experiment.pk) in page
    response = staff_client.post(experiment_url("start", experiment.pk))
    assert response.status_code == 302
    assert texts(response) == ["Started “brevity”."]
    experiment.refresh_from_db()
    assert experiment.status == "running" and experiment.started_at is not None

    page = staff_client.get(experiment_url("change", experiment.pk))
    assert "variants" not in page.context["adminform"].form.fields  # only a draft's variants change
    assert "v1 50 % (control) · v2 50 %" in page.content.decode()

    response = staff_client.post(
        experiment_url("stop", experiment.pk), {"next": experiment_url("changelist")}
    )
    assert response["Location"] == experiment_url("changelist")
    assert texts(response) == ["Stopped “brevity”."]
    response = staff_client.post(experiment_url("stop", experiment.pk))
    [message] = texts(response)
    assert message.startswith("Could not stop “brevity”: Only a running experiment can stop")
    experiment.refresh_from_db()
    assert experiment.status == "stopped"
    assert staff_client.get(experiment_url("start", experiment.pk)).status_code == 405


def test_a_second_running_experiment_of_a_prompt_is_refused(staff_client, prompt):
    variants = [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]
    first = PromptExperiment.objects.create(prompt=prompt, name="first", metric="cost", variants=variants)
    second = PromptExperiment.objects.create(prompt=prompt, name="second", metric="cost", variants=variants)
    assert texts(staff_client.post(experiment_url("start", first.pk))) == ["Started “first”."]
    response = staff_client.post(experiment_url("start", second.pk))
    [message] = texts(response)
    assert message == "Could not start “second”: This prompt already has a running experiment; stop it first."
    second.refresh_from_db()
    assert (second.status, second.started_at) == ("draft", None)

    changelist = staff_client.get(experiment_url("changelist"))
    assert changelist.status_code == 200
    response = staff_client.post(
        experiment_url("changelist"), {"action": "start_selected", "_selected_action": [second.pk]}
    )
    assert "already has a running experiment" in texts(response)[-1]
    assert PromptExperiment.objects.filter(status="running").get() == first


def test_starting_needs_change_permission(client, django_user_model, prompt):
    experiment = PromptExperiment.objects.create(
        prompt=prompt,
        name="brevity",
        metric="cost",
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_promptexperiment"))
    client.force_login(viewer)
    assert client.post(experiment_url("start", experiment.pk)).status_code == 403
    results = client.get(experiment_url("results", experiment.pk))
    assert results.status_code == 200
    assert experiment_url("start", experiment.pk) not in results.content.decode()
    assert "Promote version" not in results.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == "draft"


# -- the results page ------------------------------------------------------------------------------


class ReplyAgent(Agent):
    prompt = "reply"
    q = Param(required=True)


def make_running_experiment(prompt):
    """A running experiment of ``prompt`` (v1 the control, v2 on a dearer model, metric cost, 5
    executions needed) after the calls of 40 users through ``ReplyAgent``; gpt-4o-mini and gpt-4o
    are priced."""
    for model, input_price, output_price in (("gpt-4o-mini", "0.15", "0.6"), ("gpt-4o", "2.5", "10")):
        CostConfig.objects.create(
            model=model, input_price_per_mtok=Decimal(input_price), output_price_per_mtok=Decimal(output_price),
            effective_from="2020-01-01T00:00Z",
        )  # fmt: skip
    experiment = PromptExperiment.objects.create(
        prompt=prompt, name="brevity", metric="cost", min_samples=5,
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )  # fmt: skip
    experiment.start()
    with fake_llm() as llm:
        for n in range(40):
            llm.respond("Sure, here is my reply.", input_tokens=400, output_tokens=100)
            ReplyAgent.call(q="why", _user_id=f"user-{n}")
    return experiment


@pytest.fixture
def running(prompt):
    return make_running_experiment(prompt)


def test_the_results_page_shows_each_variant_and_the_comparison(staff_client, running):
    counts = {
        number: Execution.objects.filter(experiment=running, prompt_version__number=number).count()
        for number in (1, 2)
    }
    assert counts[1] >= 5 and counts[2] >= 5 and counts[1] + counts[2] == 40
    response = staff_client.get(experiment_url("results", running.pk))
    assert response.status_code == 200
    variants = {row["version"]: row for row in response.context["variants"]}
    assert {number: row["executions"] for number, row in variants.items()} == counts
    assert variants[1]["success_rate"] == 100.0
    assert variants[1]["avg_cost"] < variants[2]["avg_cost"]
    [comparison] = response.context["comparisons"]
    assert comparison["significant"] is True
    assert comparison["sentence"] == "v2 is worse than the control (v1) with p = 0.0001."
    html = response.content.decode()
    assert html.count('<svg class="llm-chart') == 4
    assert 'data-version="2"' in html and "Promote version 2" in html
    assert experiment_url("stop", running.pk) in html
    assert "data-tripped" not in html


def test_the_results_page_says_when_more_executions_are_needed(staff_client, running):
    PromptExperiment.objects.filter(pk=running.pk).update(min_samples=500)
    response = staff_client.get(experiment_url("results", running.pk))
    [comparison] = response.context["comparisons"]
    assert comparison["significant"] is False
    assert comparison["sentence"].startswith("v2: not significant yet: need 500 executions per variant")
    assert comparison["sentence"] in response.content.decode()


def test_a_tripped_variant_is_shown_prominently(staff_client, running):
    reason = "error rate 40.00% over 20 executions is above error_rate_max 10%"
    PromptExperiment.objects.filter(pk=running.pk).update(
        tripped=[{"version": 2, "reason": reason, "tripped_at": "2025-01-01T10:00:00+00:00"}]
    )
    html = staff_client.get(experiment_url("results", running.pk)).content.decode()
    assert 'role="alert" data-tripped="2"' in html
    assert reason in html
    assert "taken out of the split by a guardrail" in html
    listed = staff_client.get(experiment_url("changelist")).content.decode()
    assert "v2 50 % (out: guardrail)" in listed


def test_promote_moves_the_production_label_and_stops(staff_client, staff_superuser, running, prompt):
    response = staff_client.post(experiment_url("promote", running.pk), {"version": "2"})
    assert response.status_code == 302
    assert response["Location"] == experiment_url("results", running.pk)
    assert texts(response) == [
        "Promoted version 2: the label production of reply points at it; “brevity” is stopped."
    ]
    assert production(prompt) == 2
    running.refresh_from_db()
    assert running.status == "stopped"
    move = prompt.label_moves.first()
    assert (move.label, move.old_number, move.new_number, move.moved_by, move.source) == (
        "production", 1, 2, staff_superuser, "admin"
    )  # fmt: skip
    response = staff_client.post(experiment_url("promote", running.pk), {"version": "3"})
    assert texts(response) == ["Version 3 is not a variant of this experiment."]
    assert production(prompt) == 2


def test_promote_without_the_permission_is_an_error(editor_client, running, prompt):
    html = editor_client.get(experiment_url("results", running.pk)).content.decode()
    assert "Promote version 2" in html and "llm_agents.promote_prompt" in html
    response = editor_client.post(experiment_url("promote", running.pk), {"version": "2"})
    [message] = texts(response)
    assert "llm_agents.promote_prompt" in message
    assert production(prompt) == 1
    running.refresh_from_db()
    assert running.status == "running"
