"""Prompt labels (SPEC §18): set_label with its history and protected labels, Prompt.load(slug, label),
the default-to-production rule, Agent.prompt_label, and the prompt_label_moved signal."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import override_settings

from llm_agents import Agent, Param
from llm_agents.checks import check_settings
from llm_agents.errors import PromptError
from llm_agents.models import Execution, Prompt, PromptLabel, PromptLabelMove
from llm_agents.signals import prompt_label_moved
from llm_agents.testing import fake_llm

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt():
    prompt = Prompt.objects.create(slug="greeting", name="Greeting")
    for word in ("Hello", "Hi", "Hey"):
        prompt.update_content([{"role": "user", "content": f"{word} {{{{name}}}}"}], model="fake/model")
    return prompt


@pytest.fixture
def editor(django_user_model):
    """A staff user who may change prompts but not promote them."""
    user = django_user_model.objects.create_user("editor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_prompt"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def promoter(django_user_model):
    user = django_user_model.objects.create_user("promoter", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="promote_prompt", content_type__app_label="llm_agents")
    )
    return django_user_model.objects.get(pk=user.pk)


class GreetingAgent(Agent):
    prompt = "greeting"
    name = Param(required=True)


class StagingGreetingAgent(GreetingAgent):
    prompt_label = "staging"


def test_load_uses_the_production_label_else_the_latest_version(prompt):
    assert Prompt.load("greeting").current_version.number == 3
    prompt.set_label("production", 1)
    assert Prompt.load("greeting").current_version.number == 1
    assert Prompt.load("greeting").build(name="Ada")["messages"][0]["content"] == "Hello Ada"
    prompt.set_label("staging", prompt.version(2))
    assert Prompt.load("greeting", label="staging").current_version.number == 2
    assert Prompt.load("greeting", "production").current_version.number == 1


def test_loading_a_label_the_prompt_lacks_names_it(prompt):
    with pytest.raises(PromptError, match="no label 'staging'"):
        Prompt.load("greeting", label="staging")


def test_a_label_on_a_missing_version_is_refused_naming_the_number(prompt):
    with pytest.raises(PromptError, match="no version 7"):
        prompt.set_label("production", 7)
    other = Prompt.objects.create(slug="other", name="Other")
    foreign = other.update_content([{"role": "user", "content": "x"}])
    with pytest.raises(PromptError, match="belongs to prompt 'other'"):
        prompt.set_label("production", foreign)
    assert not PromptLabel.objects.exists()
    assert not PromptLabelMove.objects.exists()


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 101, 3])
def test_a_bad_label_name_is_refused(prompt, name):
    with pytest.raises(ValidationError, match="not a label name"):
        prompt.set_label(name, 1)
    assert not PromptLabel.objects.exists()


def test_every_move_is_kept_in_the_history(prompt, promoter):
    prompt.set_label("production", 1, source="sync")
    prompt.set_label("production", 2, user=promoter)
    prompt.set_label("production", 2, user=promoter)  # already there: nothing changes
    moves = list(prompt.label_moves.order_by("moved_at", "id"))
    assert [(m.label, m.old_number, m.new_number, m.source) for m in moves] == [
        ("production", None, 1, "sync"),
        ("production", 1, 2, "api"),
    ]
    assert moves[0].moved_by is None
    assert moves[1].moved_by == promoter
    label = prompt.labels.get(name="production")
    assert (label.version.number, label.updated_by) == (2, promoter)


def test_a_protected_label_needs_the_promote_permission(prompt, editor, promoter):
    prompt.set_label("staging", 1, user=editor)  # not protected: anyone may move it
    with pytest.raises(PermissionDenied, match="llm_agents.promote_prompt"):
        prompt.set_label("production", 2, user=editor)
    assert not prompt.labels.filter(name="production").exists()
    assert list(prompt.label_moves.values_list("label", flat=True)) == ["staging"]
    prompt.set_label("production", 2, user=promoter)
    prompt.set_label("production", 3)  # code acting for no user may move any label
    assert prompt.label("production").number == 3


def test_the_protected_labels_are_a_setting_read_on_every_access(prompt, editor):
    with override_settings(LLM_AGENTS={"PROTECTED_PROMPT_LABELS": ["production", "staging"]}):
        with pytest.raises(PermissionDenied):
            prompt.set_label("staging", 1, user=editor)
    with override_settings(LLM_AGENTS={"PROTECTED_PROMPT_LABELS": []}):
        prompt.set_label("production", 1, user=editor)
    assert prompt.label("production").number == 1


def test_the_protected_labels_setting_is_checked():
    with override_settings(LLM_AGENTS={"PROTECTED_PROMPT_LABELS": "production"}):
        errors = [message for message in check_settings(None) if message.id == "llm_agents.E030"]
    assert len(errors) == 1
    assert "PROTECTED_PROMPT_LABELS" in errors[0].msg


def test_prompt_label_moved_is_sent_once_the_move_commits(prompt, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, **payload):
        received.append(payload)

    prompt_label_moved.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            prompt.set_label("production", 1)
        with django_capture_on_commit_callbacks(execute=True):
            prompt.set_label("production", 2)
        with django_capture_on_commit_callbacks(execute=True):
            prompt.set_label("production", 2)
    finally:
        prompt_label_moved.disconnect(receiver)
    assert [(p["label"], p["old_version"], p["new_version"].number) for p in received] == [
        ("production", None, 1),
        ("production", received[1]["old_version"], 2),
    ]
    assert received[1]["old_version"].number == 1
    assert received[0]["prompt"] == prompt


def test_agents_use_the_production_label_or_their_own_label(prompt):
    prompt.set_label("production", 1)
    prompt.set_label("staging", 2)
    with fake_llm() as llm:
        GreetingAgent.call(name="Ada")
        StagingGreetingAgent.call(name="Ada")
        prompt.set_label("production", 3)  # the next call sees the move at once
        GreetingAgent.call(name="Ada")
    assert [messages[0]["content"] for _, messages, _ in llm.calls] == ["Hello Ada", "Hi Ada", "Hey Ada"]
    versions = Execution.objects.order_by("started_at").values_list("prompt_version__number", flat=True)
    assert list(versions) == [1, 2, 3]


def test_a_partial_includes_the_production_version_of_the_other_prompt(prompt):
    prompt.set_label("production", 1)
    outer = Prompt.objects.create(slug="outer", name="Outer")
    outer.update_content([{"role": "system", "content": "Say: {{> greeting}}"}])
    assert Prompt.load("outer").build(name="Ada")["messages"][0]["content"] == "Say: Hello Ada"


def test_deleting_a_prompt_deletes_its_labels_and_history(prompt):
    prompt.set_label("production", 1)
    prompt.delete()
    assert not PromptLabel.objects.exists()
    assert not PromptLabelMove.objects.exists()
