"""AUTO_INSTRUMENT: raw openai / anthropic SDK calls, driven with the real SDKs against the fake server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from django.test import override_settings

from llm_agents import Agent, Param, Tool, trace
from llm_agents.instrumentation import ENTRY_POINTS, install, installed
from llm_agents.models import CostConfig, Execution, Span
from llm_agents.providers import ProviderRequest
from llm_agents.providers.anthropic import AnthropicProvider
from llm_agents.providers.openai import OpenAIProvider
from tests.fake_servers import (
    FakeServer,
    Reply,
    anthropic_error,
    anthropic_message,
    anthropic_message_stream,
    openai_chat,
    openai_chat_stream,
    openai_error,
    openai_response,
    openai_response_stream,
)

ON = {"AUTO_INSTRUMENT": True}

# Prices per million tokens: input, output, cached input.
GPT_4O = (Decimal("2.5"), Decimal("10"), Decimal("1.25"))
HAIKU = (Decimal("0.8"), Decimal("4"), Decimal("0.08"))


def cost(prices: tuple[Decimal, Decimal, Decimal], input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens * prices[0] + output_tokens * prices[1]) / Decimal(1_000_000)


@pytest.fixture
def prices(db):
    CostConfig.objects.create(model="gpt-4o", input_price_per_mtok=GPT_4O[0], output_price_per_mtok=GPT_4O[1],
                              cached_input_price_per_mtok=GPT_4O[2], effective_from="2020-01-01T00:00Z")  # fmt: skip
    CostConfig.objects.create(model="claude-haiku-4-5", input_price_per_mtok=HAIKU[0],
                              output_price_per_mtok=HAIKU[1], cached_input_price_per_mtok=HAIKU[2],
                              effective_from="2020-01-01T00:00Z")  # fmt: skip


@pytest.fixture
def server():
    """One fake server for both SDKs: openai's base URL is ``root/v1``, anthropic's the root."""
    with FakeServer() as fake:
        yield fake


# The three entry points, each able to script an answer and make a call (sync or async, plain or streamed).


@dataclass
class EntryPoint:
    name: str
    provider: str
    model: str
    prices: tuple[Decimal, Decimal, Decimal]
    reply: Callable[..., Reply]
    stream_reply: Callable[..., Reply]
    call: Callable[[FakeServer, str, bool], str]
    acall: Callable[[FakeServer, str, bool], Any]
    events_before_text: int  # in the scripted stream, each followed by a 50 ms pause


def _openai(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.root + "/v1", max_retries=0)


def _async_openai(server: FakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=server.root + "/v1", max_retries=0)


def _anthropic(server: FakeServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", base_url=server.root, max_retries=0)


def _async_anthropic(server: FakeServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test", base_url=server.root, max_retries=0)


CHAT_MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def _chat_arguments(stream: bool) -> dict[str, Any]:
    arguments: dict[str, Any] = {"model": "gpt-4o", "messages": CHAT_MESSAGES, "temperature": 0.2}
    if stream:
        arguments.update(stream=True, stream_options={"include_usage": True})
    return arguments


def chat_call(server: FakeServer, _: str, stream: bool) -> str:
    result = _openai(server).chat.completions.create(**_chat_arguments(stream))
    if not stream:
        return result.choices[0].message.content
    return "".join(chunk.choices[0].delta.content or "" for chunk in result if chunk.choices)


async def chat_acall(server: FakeServer, _: str, stream: bool) -> str:
    result = await _async_openai(server).chat.completions.create(**_chat_arguments(stream))
    if not stream:
        return result.choices[0].message.content
    return "".join([chunk.choices[0].delta.content or "" async for chunk in result if chunk.choices])


def responses_call(server: FakeServer, _: str, stream: bool) -> str:
    result = _openai(server).responses.create(
        model="gpt-4o", instructions="Be brief.", input="Hi", stream=stream
    )
    if not stream:
        return result.output_text
    return "".join(event.delta for event in result if event.type == "response.output_text.delta")


async def responses_acall(server: FakeServer, _: str, stream: bool) -> str:
    client = _async_openai(server)
    result = await client.responses.create(
        model="gpt-4o", instructions="Be brief.", input="Hi", stream=stream
    )
    if not stream:
        return result.output_text
    return "".join([event.delta async for event in result if event.type == "response.output_text.delta"])


def _messages_arguments(stream: bool) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}], "stream": stream}  # fmt: skip


def _message_text(events: list[Any]) -> str:
    return "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def messages_call(server: FakeServer, _: str, stream: bool) -> str:
    result = _anthropic(server).messages.create(**_messages_arguments(stream))
    return _message_text(list(result)) if stream else result.content[0].text


async def messages_acall(server: FakeServer, _: str, stream: bool) -> str:
    result = await _async_anthropic(server).messages.create(**_messages_arguments(stream))
    return _message_text([event async for event in result]) if stream else result.content[0].text


CHAT = EntryPoint(
    "openai.chat.completions", "openai", "gpt-4o", GPT_4O,
    lambda text, i, o: openai_chat(text, model="gpt-4o-2024-08-06", prompt_tokens=i, completion_tokens=o),
    lambda chunks, i, o: openai_chat_stream(chunks, model="gpt-4o-2024-08-06", prompt_tokens=i,
                                            completion_tokens=o, event_delay=0.05),
    chat_call, chat_acall, 1,
)  # fmt: skip
RESPONSES = EntryPoint(
    "openai.responses", "openai", "gpt-4o", GPT_4O,
    lambda text, i, o: openai_response(text, model="gpt-4o-2024-08-06", input_tokens=i, output_tokens=o),
    lambda chunks, i, o: openai_response_stream(chunks, model="gpt-4o-2024-08-06", input_tokens=i,
                                                output_tokens=o, event_delay=0.05),
    responses_call, responses_acall, 4,
)  # fmt: skip
MESSAGES = EntryPoint(
    "anthropic.messages", "anthropic", "claude-haiku-4-5", HAIKU,
    lambda text, i, o: anthropic_message(text, input_tokens=i, output_tokens=o),
    lambda chunks, i, o: anthropic_message_stream(chunks, input_tokens=i, output_tokens=o, event_delay=0.05),
    messages_call, messages_acall, 3,
)  # fmt: skip
ENTRIES = pytest.mark.parametrize("entry", [CHAT, RESPONSES, MESSAGES], ids=lambda e: e.name)
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def run(entry: EntryPoint, server: FakeServer, mode: str, *, stream: bool) -> str:
    if mode == "async":
        return asyncio.run(entry.acall(server, "Hi", stream))
    return entry.call(server, "Hi", stream)


def script(
    entry: EntryPoint, server: FakeServer, *, stream: bool, input_tokens: int, output_tokens: int
) -> None:
    if stream:
        server.enqueue(entry.stream_reply(["Hel", "lo", "!"], input_tokens, output_tokens))
    else:
        server.enqueue(entry.reply("Hello!", input_tokens, output_tokens))


# Outside any trace: an Execution of kind llm of its own -------------------------------------------------------


@ENTRIES
@MODES
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.django_db(transaction=True)
def test_a_call_outside_any_trace_is_an_llm_execution(entry, mode, stream, server, prices):
    script(entry, server, stream=stream, input_tokens=1200, output_tokens=300)

    with override_settings(LLM_AGENTS=ON):
        text = run(entry, server, mode, stream=stream)

    assert text == "Hello!"
    execution = Execution.objects.get()
    assert (execution.kind, execution.agent_type, execution.status) == ("llm", entry.name, "success")
    assert (execution.model_id, execution.chosen_model_id, execution.provider) == (
        entry.model,
        entry.model,
        entry.provider,
    )
    assert (execution.input_tokens, execution.output_tokens, execution.total_tokens) == (1200, 300, 1500)
    assert execution.total_cost == cost(entry.prices, 1200, 300)
    assert execution.pricing_source == "config"
    assert execution.streaming is stream
    assert execution.response == "Hello!"
    assert execution.system_prompt == "Be brief."
    assert execution.user_prompt == "Hi"
    assert execution.attempts_count == 1
    assert execution.duration_ms is not None and execution.completed_at is not None
    assert execution.parent_id is None
    span = Span.objects.get()
    assert (span.execution_id, span.kind, span.status, span.model_id) == (
        execution.id,
        "llm",
        "ok",
        entry.model,
    )
    assert (span.input_tokens, span.output_tokens, span.total_cost) == (1200, 300, execution.total_cost)
    assert span.output["content"] == "Hello!"
    if stream:
        # Events come 50 ms apart: the first text arrives after ``events_before_text`` pauses, the last
        # one two pauses later. How late a loaded machine reads them is open, so only the order is fixed:
        # no first token before the server sent it, and the first token before the end of the stream.
        first_text = entry.events_before_text * 50
        assert first_text - 10 <= span.time_to_first_token_ms < span.duration_ms
        assert first_text - 10 <= execution.time_to_first_token_ms < execution.duration_ms
    else:
        assert execution.time_to_first_token_ms is None
    if entry is CHAT:
        assert execution.temperature == 0.2
        assert execution.parameters["temperature"] == 0.2


# Inside a trace: llm spans of it, their usage in its totals ----------------------------------------------------


@MODES
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.django_db(transaction=True)
def test_calls_inside_a_trace_are_llm_spans_rolled_into_it(mode, stream, server, prices):
    for entry, (i, o) in zip([CHAT, RESPONSES, MESSAGES], [(100, 10), (200, 20), (400, 40)], strict=True):
        script(entry, server, stream=stream, input_tokens=i, output_tokens=o)

    with override_settings(LLM_AGENTS=ON), trace("pipeline") as t:
        texts = [run(entry, server, mode, stream=stream) for entry in (CHAT, RESPONSES, MESSAGES)]

    assert texts == ["Hello!"] * 3
    execution = Execution.objects.get()  # the trace, and nothing else
    assert (execution.id, execution.kind, execution.agent_type) == (t.execution_id, "trace", "pipeline")
    assert (execution.input_tokens, execution.output_tokens) == (700, 70)
    expected = cost(GPT_4O, 100, 10) + cost(GPT_4O, 200, 20) + cost(HAIKU, 400, 40)
    assert execution.total_cost == expected
    spans = list(Span.objects.filter(execution=execution).order_by("started_at"))
    assert [(s.kind, s.model_id, s.provider, s.metadata["sdk_method"]) for s in spans] == [
        ("llm", "gpt-4o", "openai", "openai.chat.completions"),
        ("llm", "gpt-4o", "openai", "openai.responses"),
        ("llm", "claude-haiku-4-5", "anthropic", "anthropic.messages"),
    ]
    assert [(s.input_tokens, s.output_tokens) for s in spans] == [(100, 10), (200, 20), (400, 40)]
    assert sum(s.total_cost for s in spans) == expected
    assert all(s.status == "ok" for s in spans)
    assert all((s.time_to_first_token_ms is not None) is stream for s in spans)


@pytest.mark.django_db
def test_a_call_inside_a_span_is_nested_under_it(server, prices):
    script(CHAT, server, stream=False, input_tokens=10, output_tokens=5)

    with override_settings(LLM_AGENTS=ON), trace("rag"):
        from llm_agents import span

        with span("answer", kind="custom") as outer:
            CHAT.call(server, "Hi", False)

    llm = Span.objects.get(kind="llm")
    assert llm.parent_id == outer.id
    assert llm.input == CHAT_MESSAGES


# The setting, read on every call --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_setting_is_read_on_every_call(server, prices):
    for entry in (CHAT, RESPONSES, MESSAGES):
        assert entry.call(server, "Hi", False) == "Hi"  # off by default: the echo answers, nothing recorded
    assert Execution.objects.count() == Span.objects.count() == 0

    with override_settings(LLM_AGENTS=ON):
        for entry in (CHAT, RESPONSES, MESSAGES):
            entry.call(server, "Hi", True)
    assert sorted(Execution.objects.values_list("agent_type", flat=True)) == [
        "anthropic.messages",
        "openai.chat.completions",
        "openai.responses",
    ]

    with override_settings(LLM_AGENTS={"AUTO_INSTRUMENT": False}), trace("off"):
        for entry in (CHAT, RESPONSES, MESSAGES):
            entry.call(server, "Hi", False)
    assert Execution.objects.filter(kind="llm").count() == 3
    assert not Span.objects.filter(execution__agent_type="off").exists()


@pytest.mark.django_db(transaction=True)
def test_async_calls_follow_the_setting_too(server, prices):
    asyncio.run(CHAT.acall(server, "Hi", True))
    assert Execution.objects.count() == 0
    with override_settings(LLM_AGENTS=ON):
        asyncio.run(MESSAGES.acall(server, "Hi", True))
    assert Execution.objects.get().agent_type == "anthropic.messages"


# Failures ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failing_call_is_recorded_and_still_raised(server, prices):
    server.enqueue(openai_error(429, "Slow down."))

    with override_settings(LLM_AGENTS=ON), pytest.raises(openai.RateLimitError, match="Slow down"):
        CHAT.call(server, "Hi", False)

    execution = Execution.objects.get()
    assert (execution.kind, execution.status, execution.error_class) == ("llm", "error", "RateLimitError")
    assert "Slow down." in execution.error_message
    assert (execution.rate_limited, execution.retryable) == (True, True)
    assert execution.total_tokens == 0 and execution.completed_at is not None
    span = Span.objects.get()
    assert (span.status, span.error_class) == ("error", "RateLimitError")


@pytest.mark.django_db(transaction=True)
def test_a_failing_async_call_is_recorded_and_still_raised(server, prices):
    server.enqueue(anthropic_error(400, "Bad messages."))

    with override_settings(LLM_AGENTS=ON), pytest.raises(anthropic.BadRequestError):
        asyncio.run(MESSAGES.acall(server, "Hi", False))

    execution = Execution.objects.get()
    assert (execution.status, execution.error_class, execution.retryable) == (
        "error",
        "BadRequestError",
        False,
    )


@MODES
@pytest.mark.django_db(transaction=True)
def test_a_stream_that_fails_midway_is_recorded_with_what_it_read(mode, server, prices):
    server.enqueue(anthropic_message_stream(["Par", "tial"], input_tokens=30,
                                            error={"type": "overloaded_error", "message": "Overloaded"}))  # fmt: skip

    with override_settings(LLM_AGENTS=ON), pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        run(MESSAGES, server, mode, stream=True)

    execution = Execution.objects.get()
    assert (execution.status, execution.error_class) == ("error", "APIStatusError")
    assert (execution.input_tokens, execution.response) == (30, "Partial")
    assert execution.time_to_first_token_ms is not None


@pytest.mark.django_db
def test_a_responses_stream_that_reports_failure_is_an_error(server, prices):
    failed = openai_response("", input_tokens=50, output_tokens=0).body
    failed.update(status="failed", error={"code": "server_error", "message": "The model crashed."})
    events = [{"type": "response.created", "response": {**failed, "status": "in_progress", "error": None}},
              {"type": "response.failed", "response": failed}]  # fmt: skip
    server.enqueue(Reply(events=[(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)]))

    with override_settings(LLM_AGENTS=ON):
        assert RESPONSES.call(server, "Hi", True) == ""  # the SDK hands the failure over as an event

    execution = Execution.objects.get()
    assert (execution.status, execution.error_class) == ("error", "ResponseFailedError")
    assert execution.error_message == "The model crashed."
    assert execution.input_tokens == 50


@pytest.mark.django_db
def test_a_failing_call_inside_a_trace_is_an_error_span(server, prices):
    server.enqueue(openai_error(500), openai_response("Recovered.", input_tokens=10, output_tokens=2))

    with override_settings(LLM_AGENTS=ON), trace("retrying"):
        with pytest.raises(openai.InternalServerError):
            RESPONSES.call(server, "Hi", False)
        RESPONSES.call(server, "Hi", False)

    execution = Execution.objects.get()
    assert (execution.status, execution.input_tokens, execution.output_tokens) == ("success", 10, 2)
    assert list(Span.objects.order_by("started_at").values_list("status", "error_class")) == [
        ("error", "InternalServerError"),
        ("ok", ""),
    ]


# Streams closed early --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stream_closed_early_is_recorded_when_closed(server, prices):
    server.enqueue(openai_chat_stream(["one", " two", " three"], prompt_tokens=10, completion_tokens=3))

    with override_settings(LLM_AGENTS=ON):
        with _openai(server).chat.completions.create(**_chat_arguments(True)) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            assert Execution.objects.get().status == "running"  # the start row, written at once

    execution = Execution.objects.get()
    assert (execution.status, execution.response, execution.total_tokens) == ("success", "one", 0)
    assert isinstance(stream, openai.Stream)


@pytest.mark.django_db(transaction=True)
def test_an_async_stream_closed_early_is_recorded_when_closed(server, prices):
    server.enqueue(anthropic_message_stream(["one", " two", " three"], input_tokens=10))

    async def main() -> None:
        result = await _async_anthropic(server).messages.create(**_messages_arguments(True))
        assert isinstance(result, anthropic.AsyncStream)
        async with result as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break

    with override_settings(LLM_AGENTS=ON):
        asyncio.run(main())

    execution = Execution.objects.get()
    assert (execution.status, execution.response, execution.input_tokens) == ("success", "one", 10)


# Our own providers are not counted twice --------------------------------------------------------------------------


def providers_for(server: FakeServer) -> dict[str, Any]:
    return {
        "openai": {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": "k",
                   "base_url": server.root + "/v1"},
        "anthropic": {"class": "llm_agents.providers.anthropic.AnthropicProvider", "api_key": "k",
                      "base_url": server.root},
    }  # fmt: skip


class Summariser(Agent):
    model = "gpt-4o"
    fallback_models = ["claude-haiku-4-5"]
    retry_backoff = 0
    text = Param(required=True)

    def user_prompt(self) -> str:
        return f"Summarise: {self.text}"


@pytest.mark.django_db
def test_an_agent_call_through_our_provider_is_recorded_once(server, prices):
    server.enqueue(openai_chat("Short.", prompt_tokens=100, completion_tokens=10))

    with override_settings(LLM_AGENTS={**ON, "PROVIDERS": providers_for(server)}):
        result = Summariser.call(text="long text")

    assert result.content == "Short."
    execution = Execution.objects.get()
    assert (execution.kind, execution.input_tokens, execution.output_tokens) == ("agent", 100, 10)
    assert execution.total_cost == cost(GPT_4O, 100, 10)
    assert Span.objects.get().kind == "llm"


@pytest.mark.django_db
def test_a_streaming_agent_with_a_fallback_is_recorded_once(server, prices):
    server.enqueue(openai_error(503), path="/v1/chat/completions")
    server.enqueue(
        anthropic_message_stream(["Sh", "ort."], input_tokens=100, output_tokens=10), path="/v1/messages"
    )

    with override_settings(LLM_AGENTS={**ON, "PROVIDERS": providers_for(server)}):
        stream = Summariser.stream(text="long text")
        assert "".join(stream) == "Short."

    execution = Execution.objects.get()
    assert (execution.kind, execution.chosen_model_id) == ("agent", "claude-haiku-4-5")
    assert (execution.input_tokens, execution.output_tokens) == (100, 10)
    assert Span.objects.count() == 2  # the failed openai request and the anthropic one


@pytest.mark.django_db(transaction=True)
def test_our_providers_async_sdk_calls_are_not_tracked(server, prices):
    request = ProviderRequest(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    haiku = ProviderRequest(model="claude-haiku-4-5", messages=[{"role": "user", "content": "Hi"}])
    openai_provider = OpenAIProvider(api_key="k", base_url=server.root + "/v1")
    anthropic_provider = AnthropicProvider(api_key="k", base_url=server.root)

    async def main() -> None:
        await openai_provider.acomplete(request)
        [event async for event in openai_provider.astream(request)]
        await anthropic_provider.acomplete(haiku)
        [event async for event in anthropic_provider.astream(haiku)]
        # A raw call after the provider's: tracked (the provider's flag does not leak).
        await _async_openai(server).chat.completions.create(**_chat_arguments(False))

    with override_settings(LLM_AGENTS=ON), trace("providers") as t:
        asyncio.run(main())

    assert len(server.requests) == 5
    assert list(Span.objects.values_list("execution_id", "metadata__sdk_method")) == [
        (t.execution_id, "openai.chat.completions")
    ]


class Search(Tool):
    name = "search"
    description = "Search the web."
    query = Param(required=True)

    def run(self, query: str) -> str:
        # A tool that calls the SDK itself: that request belongs to the agent's execution.
        client = anthropic.Anthropic(api_key="k", base_url=self.server_root, max_retries=0)
        return client.messages.create(**_messages_arguments(False)).content[0].text


class Researcher(Agent):
    model = "gpt-4o"
    tools = [Search]
    topic = Param(required=True)

    def user_prompt(self) -> str:
        return f"Research {self.topic}"


@pytest.mark.django_db
def test_a_raw_call_inside_an_agent_run_counts_towards_the_agent(server, prices):
    Search.server_root = server.root
    server.enqueue(openai_chat(tool_calls=[{"id": "c1", "name": "search", "arguments": {"query": "x"}}],
                               prompt_tokens=100, completion_tokens=10), path="/v1/chat/completions")  # fmt: skip
    server.enqueue(openai_chat("Done.", prompt_tokens=200, completion_tokens=20), path="/v1/chat/completions")
    server.enqueue(anthropic_message("Found it.", input_tokens=400, output_tokens=40), path="/v1/messages")

    with override_settings(LLM_AGENTS={**ON, "PROVIDERS": providers_for(server)}):
        result = Researcher.call(topic="x")

    assert result.content == "Done."
    execution = Execution.objects.get()
    assert (execution.input_tokens, execution.output_tokens) == (700, 70)
    assert execution.total_cost == cost(GPT_4O, 300, 30) + cost(HAIKU, 400, 40)
    kinds = Span.objects.order_by("started_at").values_list("kind", "model_id")
    assert list(kinds) == [
        ("llm", "gpt-4o"),
        ("tool", ""),
        ("llm", "claude-haiku-4-5"),
        ("llm", "gpt-4o"),
    ]
    assert Span.objects.get(model_id="claude-haiku-4-5").parent.kind == "tool"


# Never breaking the caller -------------------------------------------------------------------------------------


def failing_resolver() -> str:
    raise RuntimeError("tenant lookup failed")


@pytest.mark.django_db
def test_a_tracking_failure_is_logged_and_the_call_still_answers(server, prices, caplog):
    settings = {**ON, "MULTI_TENANCY": True, "TENANT_RESOLVER": "tests.test_instrumentation.failing_resolver"}

    with override_settings(LLM_AGENTS=settings), caplog.at_level(logging.ERROR, logger="llm_agents"):
        assert CHAT.call(server, "Hi", False) == "Hi"

    assert "could not track an SDK call" in caplog.text
    assert "tenant lookup failed" in caplog.text
    assert Execution.objects.count() == 0


@pytest.mark.django_db
def test_raw_response_calls_pass_through_untracked(server, prices):
    with override_settings(LLM_AGENTS=ON):
        raw = _openai(server).chat.completions.with_raw_response.create(**_chat_arguments(False))
        assert raw.parse().choices[0].message.content == "Hi"
    assert Execution.objects.count() == 0


# Installation ----------------------------------------------------------------------------------------------------


def test_the_app_wrapped_every_entry_point_once():
    assert len(installed()) == len(ENTRY_POINTS) == 6
    assert install() == []  # already wrapped: nothing wrapped again
    create = openai.resources.chat.completions.Completions.create
    assert create.__name__ == "create"
    assert not getattr(create.__wrapped__, "_llm_agents_instrumented", False)
