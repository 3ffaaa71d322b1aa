"""OTEL_EXPORT: executions and spans as OpenTelemetry spans (GenAI semantic conventions)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from llm_agents import Agent, Param, Tool, trace
from llm_agents.errors import AllModelsExhaustedError
from llm_agents.models import CostConfig
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
        return {"city": city, "sky": "clear"}


class WeatherAgent(Agent):
    model = "gpt-4o"
    tools = [Weather]
    question = Param(required=True)

    def user_prompt(self):
        return self.question


def by_name(finished):
    return {span.name: span for span in finished}


def test_an_agent_call_with_a_tool_becomes_a_span_tree(spans):
    CostConfig.objects.create(model="gpt-4o", input_price_per_mtok=Decimal("2.5"), output_price_per_mtok=Decimal("10"),
                              effective_from="2020-01-01T00:00Z")  # fmt: skip
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}], input_tokens=100,
                    output_tokens=10, cached_tokens=40)  # fmt: skip
        llm.respond("Clear in Oslo", input_tokens=150, output_tokens=5)
        result = WeatherAgent.call(question="Weather in Oslo?")

    finished = spans.get_finished_spans()
    named = by_name(finished)
    assert (
        set(named) == {"invoke_agent WeatherAgent", "chat gpt-4o", "execute_tool weather"}
        or len(finished) == 4
    )
    root = named["invoke_agent WeatherAgent"]
    assert root.parent is None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "WeatherAgent"
    assert root.attributes["gen_ai.request.model"] == "gpt-4o"
    assert root.attributes["gen_ai.response.model"] == "gpt-4o"
    assert root.attributes["gen_ai.usage.input_tokens"] == 250
    assert root.attributes["gen_ai.usage.output_tokens"] == 15
    assert root.attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert root.attributes["llm_agents.execution_id"] == str(result.execution_id)
    chats = [s for s in finished if s.name == "chat gpt-4o"]
    tools = [s for s in finished if s.name == "execute_tool weather"]
    assert len(chats) == 2 and len(tools) == 1
    for child in (*chats, *tools):
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    first = min(chats, key=lambda s: s.start_time)
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.usage.input_tokens"] == 100
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert "Weather in Oslo?" in first.attributes["gen_ai.input.messages"]
    assert tools[0].attributes["gen_ai.tool.name"] == "weather"
    assert tools[0].attributes["gen_ai.operation.name"] == "execute_tool"
    assert root.start_time <= first.start_time <= first.end_time <= root.end_time


def test_nested_agents_keep_their_parent(spans):
    class Inner(Agent):
        model = "fake/inner"

    with trace("pipeline"):
        Inner.call()
    named = by_name(spans.get_finished_spans())
    pipeline, marker = named["invoke_agent pipeline"], named["invoke_agent Inner"]
    # the nested execution itself, under the pipeline's "agent" span that marks it
    (inner,) = [s for s in spans.get_finished_spans() if s.attributes.get("llm_agents.kind") == "agent"]
    assert marker.parent.span_id == pipeline.context.span_id
    assert inner.parent.span_id == marker.context.span_id
    assert named["chat fake/inner"].parent.span_id == inner.context.span_id


def test_failures_carry_error_type_and_content_follows_the_persist_flags(spans):
    with override_settings(
        LLM_AGENTS={"OTEL_EXPORT": True, "PERSIST_PROMPTS": False, "PERSIST_RESPONSES": False}
    ):
        with fake_llm() as llm, pytest.raises(AllModelsExhaustedError):
            llm.fail("server_error")
            WeatherAgent.call(question="secret question")
    finished = spans.get_finished_spans()
    root = by_name(finished)["invoke_agent WeatherAgent"]
    assert root.attributes["error.type"] == "AllModelsExhaustedError"
    assert root.status.status_code == StatusCode.ERROR
    chat = by_name(finished)["chat gpt-4o"]
    assert chat.attributes["error.type"] == "ProviderError"
    assert "gen_ai.input.messages" not in chat.attributes
    assert all("secret question" not in str(s.attributes) for s in finished)


def test_nothing_is_exported_when_the_setting_is_off(spans):
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": False}):
        with fake_llm():
            WeatherAgent.call(question="x")
    assert spans.get_finished_spans() == ()
