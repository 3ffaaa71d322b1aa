"""OTEL_EXPORT: executions and spans as OpenTelemetry spans (GenAI semantic conventions).

The spans go through the SDK's real TracerProvider into its in-memory exporter. Attribute names are
compared with the constants of opentelemetry-semantic-conventions, so a name drifting from the
conventions fails here.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import override_settings
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode

from llm_agents import Agent, Param, Tool, trace
from llm_agents.errors import AllModelsExhaustedError
from llm_agents.models import CostConfig, Execution
from llm_agents.testing import fake_llm

pytestmark = pytest.mark.django_db

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans():
    if not isinstance(otel_trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        otel_trace.set_tracer_provider(provider)
    _exporter.clear()
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": True}):
        yield _exporter
    _exporter.clear()


class Weather(Tool):
    name = "weather"
    description = "Weather in a city"
    city = Param(required=True)

    def run(self, city):
        if city == "Atlantis":
            raise ValueError("no such city")
        return {"city": city, "sky": "clear"}


class WeatherAgent(Agent):
    model = "gpt-4o"
    tools = [Weather]
    question = Param(required=True)

    def user_prompt(self):
        return self.question


class Forecaster(Agent):
    model = "fake/forecaster"


class Research(Tool):
    """A tool that asks another agent: its span holds the nested agent's spans."""

    name = "research"
    description = "Ask the forecaster"

    def run(self):
        return Forecaster.call().content


class ResearchAgent(Agent):
    model = "gpt-4o"
    tools = [Research]


def by_name(finished):
    named = {}
    for span in finished:
        named.setdefault(span.name, []).append(span)
    return named


def one(finished, name):
    (span,) = by_name(finished)[name]
    return span


def children(finished, parent):
    return sorted(
        (s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda s: s.start_time,
    )


def ask_about_oslo():
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}], input_tokens=100,
                    output_tokens=10, cached_tokens=40)  # fmt: skip
        llm.respond("Clear in Oslo", input_tokens=150, output_tokens=5, finish_reason="stop")
        return WeatherAgent.call(question="Weather in Oslo?")


def test_an_agent_call_with_a_tool_becomes_a_span_tree(spans):
    CostConfig.objects.create(model="gpt-4o", input_price_per_mtok=Decimal("2.5"), output_price_per_mtok=Decimal("10"),
                              effective_from="2020-01-01T00:00Z")  # fmt: skip
    result = ask_about_oslo()

    finished = spans.get_finished_spans()
    assert sorted(s.name for s in finished) == [
        "chat gpt-4o",
        "chat gpt-4o",
        "execute_tool weather",
        "invoke_agent WeatherAgent",
    ]
    root = one(finished, "invoke_agent WeatherAgent")
    assert root.parent is None
    assert root.kind == SpanKind.INTERNAL
    assert root.status.status_code == StatusCode.UNSET
    assert root.instrumentation_scope.name == "llm_agents"
    assert root.attributes[gen_ai.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert root.attributes[gen_ai.GEN_AI_AGENT_NAME] == "WeatherAgent"
    assert root.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert root.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert root.attributes[gen_ai.GEN_AI_RESPONSE_MODEL] == "gpt-4o"
    assert root.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 250
    assert root.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 15
    assert root.attributes[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 40
    assert root.attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert root.attributes["llm_agents.execution_id"] == str(result.execution_id)
    assert root.attributes["llm_agents.total_cost_usd"] == pytest.approx(float(result.total_cost))
    assert ERROR_TYPE not in root.attributes

    # The agent's own steps, in order, directly under it and in the same trace.
    first, tool, second = children(finished, root)
    assert [first.name, tool.name, second.name] == ["chat gpt-4o", "execute_tool weather", "chat gpt-4o"]
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
    assert first.end_time <= tool.start_time and tool.end_time <= second.start_time
    assert root.start_time <= first.start_time and second.end_time <= root.end_time
    assert children(finished, tool) == []

    assert first.kind == SpanKind.CLIENT
    assert first.attributes[gen_ai.GEN_AI_OPERATION_NAME] == "chat"
    assert first.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert first.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert first.attributes[gen_ai.GEN_AI_RESPONSE_MODEL] == "gpt-4o"
    assert first.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert first.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 10
    assert first.attributes[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 40
    assert second.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 150
    assert second.attributes[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 0
    assert "Weather in Oslo?" in first.attributes[gen_ai.GEN_AI_INPUT_MESSAGES]
    assert "Clear in Oslo" in second.attributes[gen_ai.GEN_AI_OUTPUT_MESSAGES]

    assert tool.kind == SpanKind.INTERNAL
    assert tool.attributes[gen_ai.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool.attributes[gen_ai.GEN_AI_TOOL_NAME] == "weather"
    assert tool.attributes[gen_ai.GEN_AI_TOOL_TYPE] == "function"
    assert tool.attributes[gen_ai.GEN_AI_TOOL_CALL_ID] == "c1"
    assert json.loads(tool.attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Oslo"}
    assert json.loads(tool.attributes[gen_ai.GEN_AI_TOOL_CALL_RESULT]) == {"city": "Oslo", "sky": "clear"}

    # The same tree the database holds.
    execution = Execution.objects.get(pk=result.execution_id)
    recorded = {str(s.id): s for s in execution.spans.all()}
    assert {s.attributes["llm_agents.span_id"] for s in (first, tool, second)} == set(recorded)
    assert recorded[tool.attributes["llm_agents.span_id"]].kind == "tool"


def test_a_tool_that_calls_an_agent_holds_the_nested_agent(spans):
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"id": "r1", "name": "research", "arguments": {}}], model="gpt-4o")
        llm.respond("Sunny, says the forecaster", model="gpt-4o")
        ResearchAgent.call()

    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.parent is None)
    assert root.name == "invoke_agent ResearchAgent"
    assert [s.name for s in children(finished, root)] == [
        "chat gpt-4o",
        "execute_tool research",
        "chat gpt-4o",
    ]
    tool = one(finished, "execute_tool research")
    (marker,) = children(finished, tool)
    assert marker.name == "invoke_agent Forecaster"
    (nested,) = children(finished, marker)
    assert nested.name == "invoke_agent Forecaster"
    assert nested.attributes["llm_agents.kind"] == "agent"
    assert nested.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "fake/forecaster"
    assert [s.name for s in children(finished, nested)] == ["chat fake/forecaster"]
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
    assert len(finished) == 7


def test_nested_agents_keep_their_parent(spans):
    class Inner(Agent):
        model = "fake/inner"

    with trace("pipeline"):
        Inner.call()
    finished = spans.get_finished_spans()
    pipeline = one(finished, "invoke_agent pipeline")
    assert pipeline.parent is None
    (marker,) = children(finished, pipeline)
    assert marker.name == "invoke_agent Inner"
    assert marker.attributes[gen_ai.GEN_AI_AGENT_NAME] == "Inner"
    (inner,) = children(finished, marker)
    assert inner.attributes["llm_agents.kind"] == "agent"
    assert [s.name for s in children(finished, inner)] == ["chat fake/inner"]


@pytest.mark.parametrize("prompts", [True, False])
@pytest.mark.parametrize("responses", [True, False])
def test_content_is_exported_only_when_the_persist_flags_allow(spans, prompts, responses):
    with override_settings(
        LLM_AGENTS={"OTEL_EXPORT": True, "PERSIST_PROMPTS": prompts, "PERSIST_RESPONSES": responses}
    ):
        ask_about_oslo()
    finished = spans.get_finished_spans()
    chats = by_name(finished)["chat gpt-4o"]
    tool = one(finished, "execute_tool weather")
    for chat in chats:
        assert (gen_ai.GEN_AI_INPUT_MESSAGES in chat.attributes) is prompts
        assert (gen_ai.GEN_AI_OUTPUT_MESSAGES in chat.attributes) is responses
    assert (gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS in tool.attributes) is prompts
    assert (gen_ai.GEN_AI_TOOL_CALL_RESULT in tool.attributes) is responses
    exported = " ".join(str(dict(s.attributes)) for s in finished)
    assert ("Weather in Oslo?" in exported) is prompts
    assert ("Clear in Oslo" in exported) is responses
    # Names, models and token counts are not content: they are there either way.
    assert tool.attributes[gen_ai.GEN_AI_TOOL_NAME] == "weather"
    assert chats[0].attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 100


def test_exported_content_is_redacted(spans):
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": True, "REDACT_PATTERNS": [r"Oslo"]}):
        ask_about_oslo()
    finished = spans.get_finished_spans()
    assert all("Oslo" not in str(dict(s.attributes)) for s in finished)
    tool = one(finished, "execute_tool weather")
    assert json.loads(tool.attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "[REDACTED]"}


def test_failures_carry_error_type_and_content_follows_the_persist_flags(spans):
    with override_settings(
        LLM_AGENTS={"OTEL_EXPORT": True, "PERSIST_PROMPTS": False, "PERSIST_RESPONSES": False}
    ):
        with fake_llm() as llm, pytest.raises(AllModelsExhaustedError):
            llm.fail("server_error")
            WeatherAgent.call(question="secret question")
    finished = spans.get_finished_spans()
    root = one(finished, "invoke_agent WeatherAgent")
    assert root.attributes[ERROR_TYPE] == "AllModelsExhaustedError"
    assert root.status.status_code == StatusCode.ERROR
    chat = one(finished, "chat gpt-4o")
    assert chat.parent.span_id == root.context.span_id
    assert chat.attributes[ERROR_TYPE] == "ProviderError"
    assert chat.status.status_code == StatusCode.ERROR
    assert gen_ai.GEN_AI_INPUT_MESSAGES not in chat.attributes
    assert all("secret question" not in str(dict(s.attributes)) for s in finished)


def test_a_failing_tool_sets_error_type_on_its_span_only(spans):
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"id": "c9", "name": "weather", "arguments": {"city": "Atlantis"}}])
        llm.respond("I could not find it")
        WeatherAgent.call(question="Weather in Atlantis?")
    finished = spans.get_finished_spans()
    tool = one(finished, "execute_tool weather")
    assert tool.attributes[ERROR_TYPE] == "ValueError"
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == "no such city"
    root = one(finished, "invoke_agent WeatherAgent")
    assert ERROR_TYPE not in root.attributes
    assert root.status.status_code == StatusCode.UNSET


def test_spans_are_exported_without_tracking_rows(spans):
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": True, "TRACK_EXECUTIONS": False}):
        ask_about_oslo()
    assert Execution.objects.count() == 0
    assert len(spans.get_finished_spans()) == 4


def test_nothing_is_exported_when_the_setting_is_off(spans):
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": False}):
        with fake_llm():
            WeatherAgent.call(question="x")
    assert spans.get_finished_spans() == ()
