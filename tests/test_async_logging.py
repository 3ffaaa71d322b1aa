"""ASYNC_LOGGING: records go through the Celery task, idempotently, and never get lost."""

from __future__ import annotations

import json
import logging

import pytest
from celery import Celery
from django.test import override_settings

from llm_agents import Agent, Param, trace
from llm_agents.models import Execution, Span
from llm_agents.tasks import record_executions
from llm_agents.testing import fake_llm
from llm_agents.tracking.rows import payload_for, to_message
from llm_agents.tracking.transport import publisher

pytestmark = pytest.mark.django_db

ASYNC = {"ASYNC_LOGGING": True}


class EchoAgent(Agent):
    model = "fake/echo"
    text = Param(required=True)

    def user_prompt(self):
        return self.text


@override_settings(LLM_AGENTS=ASYNC)
def test_async_logging_writes_through_the_task_without_a_running_row():
    seen_during_call = []

    class Peek(EchoAgent):
        def user_prompt(self):
            seen_during_call.append(Execution.objects.count())
            return self.text

    result = Peek.call(text="hello")
    assert seen_during_call == [0]
    execution = Execution.objects.get()
    assert (execution.pk, execution.status, execution.response) == (result.execution_id, "success", "hello")
    assert Span.objects.filter(execution=execution).count() == 1


@override_settings(LLM_AGENTS=ASYNC)
def test_a_trace_and_its_nested_runs_travel_in_one_message(monkeypatch):
    sent = []
    original = record_executions.apply_async

    def spy(args=None, **kwargs):
        sent.append(args[0])
        return original(args=args, **kwargs)

    monkeypatch.setattr(record_executions, "apply_async", spy)
    with trace("pipeline"):
        EchoAgent.call(text="a")
        EchoAgent.call(text="b")
    assert len(sent) == 1
    message = json.loads(sent[0])  # one JSON string: the worker decodes it without Celery's object hook
    assert [row["agent_type"] for row in message["executions"]] == ["pipeline", "EchoAgent", "EchoAgent"]
    root = Execution.objects.get(parent__isnull=True)
    assert root.children.count() == 2


def test_the_task_is_idempotent():
    with override_settings(LLM_AGENTS={"TRACK_EXECUTIONS": False}):
        pass
    from llm_agents.tracking.records import ExecutionRecord, SpanRecord

    record = ExecutionRecord(kind="agent", agent_type="Replayed", status="success", model_id="fake/x")
    record.spans.append(SpanRecord(name="fake/x", kind="llm", status="ok"))
    payload = to_message(payload_for([record]))
    record_executions.apply(args=[payload])
    record_executions.apply(args=[payload])  # a redelivered message
    assert Execution.objects.filter(agent_type="Replayed").count() == 1
    assert Span.objects.filter(execution_id=record.id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_unreachable_broker_falls_back_to_a_synchronous_write_and_says_so_once(caplog):
    down = Celery("broker_down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    down.conf.update(broker_connection_timeout=0.5, broker_connection_retry=False, task_always_eager=False)
    from celery import _state

    previous = _state.get_current_app()
    down.set_current()
    try:
        with override_settings(LLM_AGENTS=ASYNC), caplog.at_level(logging.WARNING, logger="llm_agents"):
            results = [EchoAgent.call(text=f"call {n}") for n in range(5)]
            assert publisher.flush(timeout=30)
    finally:
        previous.set_current()
    assert [r.content for r in results] == [f"call {n}" for n in range(5)]
    assert Execution.objects.filter(pk__in=[r.execution_id for r in results]).count() == 5
    warnings = [r for r in caplog.records if "could not reach the Celery broker" in r.getMessage()]
    assert len(warnings) == 1


def test_fake_llm_scripts_do_not_leak_between_blocks():
    with fake_llm() as llm:
        llm.respond("scripted")
    assert EchoAgent.call(text="echo").content == "echo"
