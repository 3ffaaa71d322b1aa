"""Completion hooks: what runs after every execution completes (budgets and OpenTelemetry are two).

A project (and the next capabilities: rollups, alerts) attaches with
``llm_agents.tracking.lifecycle.add_completion_hook``; the tracking core imports none of them.
"""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from llm_agents import Agent, Param, trace
from llm_agents.budgets import settle_completed
from llm_agents.errors import AllModelsExhaustedError
from llm_agents.models import Execution
from llm_agents.otel import export_completed
from llm_agents.testing import fake_llm
from llm_agents.tracking import lifecycle

pytestmark = pytest.mark.django_db


class HookAgent(Agent):
    model = "gpt-4o-mini"
    question = Param(required=True)

    def user_prompt(self):
        return self.question


@pytest.fixture
def completed():
    seen = []

    def hook(record):
        seen.append((record.kind, record.agent_type, record.id, record.parent is None))

    lifecycle.add_completion_hook(hook)
    yield seen
    lifecycle.remove_completion_hook(hook)


def test_a_hook_sees_every_completed_execution_nested_ones_first(completed):
    with fake_llm() as llm:
        llm.respond("fine")
        with trace("checkout") as outer:
            result = HookAgent.call(question="ok?")

    assert completed == [
        ("agent", "HookAgent", result.execution_id, False),
        ("trace", "checkout", outer.execution_id, True),
    ]
    # the rows were written before the hooks ran
    assert Execution.objects.filter(pk__in=[result.execution_id, outer.execution_id]).count() == 2


def test_a_hook_sees_failed_executions_and_asynchronously_logged_ones(completed):
    with fake_llm() as llm, override_settings(LLM_AGENTS={"ASYNC_LOGGING": True}):
        llm.fail("server_error")
        with pytest.raises(AllModelsExhaustedError):
            HookAgent.call(question="ok?")

    assert [(kind, name) for kind, name, _, _ in completed] == [("agent", "HookAgent")]
    assert Execution.objects.get(pk=completed[0][2]).status == "error"


def test_a_hook_that_raises_is_logged_and_the_call_goes_on(caplog):
    def broken(record):
        raise RuntimeError("hook broke")

    lifecycle.add_completion_hook(broken)
    try:
        with fake_llm() as llm, caplog.at_level(logging.ERROR, logger="llm_agents"):
            llm.respond("fine")
            result = HookAgent.call(question="ok?")
    finally:
        lifecycle.remove_completion_hook(broken)

    assert result.content == "fine"
    assert Execution.objects.get(pk=result.execution_id).status == "success"
    assert any("hook broke" in (record.exc_text or "") for record in caplog.records)


def test_a_hook_added_twice_runs_once(completed):
    lifecycle.add_completion_hook(lifecycle.completion_hooks()[-1])
    with fake_llm() as llm:
        llm.respond("fine")
        HookAgent.call(question="ok?")
    assert len(completed) == 1


def test_the_app_registers_budgets_always_and_opentelemetry_while_it_is_on():
    assert settle_completed in lifecycle.completion_hooks()
    assert export_completed not in lifecycle.completion_hooks()
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": True}):
        assert export_completed in lifecycle.completion_hooks()
        assert settle_completed in lifecycle.completion_hooks()
    assert export_completed not in lifecycle.completion_hooks()
