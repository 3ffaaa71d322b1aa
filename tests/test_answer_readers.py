"""One reader per answer shape: the same answer, read live, streamed or from a batch output line, is the same
``ProviderResponse`` (content, tool calls, finish reason, usage, model). Driven with the real SDKs against
the fake server; the readers are the provider modules' own, which the providers, the raw SDK
instrumentation and batch reconciliation all call."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from llm_agents.providers import ProviderRequest, ProviderResponse, ToolCall, Usage
from llm_agents.providers.anthropic import AnthropicProvider, MessageStreamReader
from llm_agents.providers.anthropic import response_from as message_response
from llm_agents.providers.openai import (
    ChatStreamReader,
    OpenAIProvider,
    ResponsesStreamReader,
    read_batch_line,
    responses_response_from,
)
from llm_agents.providers.openai import response_from as chat_response
from tests.fake_servers import (
    FakeServer,
    Reply,
    anthropic_message,
    anthropic_message_stream,
    openai_chat,
    openai_chat_stream,
    openai_response,
    openai_response_stream,
)

TOOL_CALLS = [{"id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def batch_line(body: dict[str, Any]) -> str:
    """A Batch API output file line carrying ``body`` as its answer."""
    answer = {"status_code": 200, "request_id": "req_1", "body": body}
    return json.dumps({"id": "batch_req_1", "custom_id": "r1", "response": answer, "error": None})


def stream_through(reader: Any, items: Any) -> tuple[str, ProviderResponse]:
    deltas = "".join(reader.add(item) for item in items)
    return deltas, reader.response()


def final(events: list[Any]) -> ProviderResponse:
    assert events[-1].response is not None
    return events[-1].response


# -- chat completions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "tool_calls", "finish_reason"), [
    ("Hello there.", None, "stop"),
    ("Cut sh", None, "length"),
    ("", TOOL_CALLS, "tool_calls"),
])  # fmt: skip
def test_a_chat_completion_reads_the_same_live_streamed_and_from_a_batch_line(
    server, text, tool_calls, finish_reason
):
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "cached_tokens": 64, "reasoning_tokens": 8}
    live = openai_chat(text, tool_calls=tool_calls, finish_reason=finish_reason, **usage)
    streamed = openai_chat_stream([text[:3], text[3:]] if text else [], tool_calls=tool_calls,
                                  finish_reason=finish_reason, **usage)  # fmt: skip
    provider = OpenAIProvider(api_key="k", base_url=server.root + "/v1")
    client = openai.OpenAI(api_key="k", base_url=server.root + "/v1", max_retries=0)
    server.enqueue(live, streamed, live, streamed)

    through_the_provider = provider.complete(ProviderRequest(model="gpt-4o-mini", messages=MESSAGES))
    provider_stream = list(provider.stream(ProviderRequest(model="gpt-4o-mini", messages=MESSAGES)))
    raw = chat_response(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), "gpt-4o-mini")
    raw_deltas, raw_streamed = stream_through(
        ChatStreamReader("gpt-4o-mini"),
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True),
    )
    from_the_batch = read_batch_line(batch_line(live.body))

    expected = ProviderResponse(
        content=text,
        tool_calls=[ToolCall(id="call_1", name="lookup", arguments={"q": "x"})] if tool_calls else [],
        finish_reason=finish_reason,
        usage=Usage(input_tokens=120, output_tokens=30, cached_tokens=64, reasoning_tokens=8),
        model="gpt-4o-mini-2024-07-18",
    )
    assert through_the_provider == expected
    assert final(provider_stream) == expected
    assert "".join(event.delta for event in provider_stream) == text
    assert raw == expected
    assert (raw_deltas, raw_streamed) == (text, expected)
    assert from_the_batch.ok
    assert (from_the_batch.custom_id, from_the_batch.request_id) == ("r1", "req_1")
    assert from_the_batch.response == expected


# -- the Responses API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("incomplete_reason", "finish_reason"), [
    (None, "stop"),
    ("max_output_tokens", "length"),
    ("content_filter", "content_filter"),
])  # fmt: skip
def test_a_responses_answer_reads_the_same_live_streamed_and_from_a_batch_line(
    server, incomplete_reason, finish_reason
):
    usage = {"input_tokens": 200, "output_tokens": 40, "cached_tokens": 128, "reasoning_tokens": 16}
    live = openai_response("Hello there.", incomplete_reason=incomplete_reason, **usage)
    streamed = openai_response_stream(["Hello ", "there."], incomplete_reason=incomplete_reason, **usage)
    client = openai.OpenAI(api_key="k", base_url=server.root + "/v1", max_retries=0)
    server.enqueue(live, streamed)

    raw = responses_response_from(client.responses.create(model="gpt-4o-mini", input="Hi"), "gpt-4o-mini")
    reader = ResponsesStreamReader("gpt-4o-mini")
    deltas, raw_streamed = stream_through(
        reader, client.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
    )
    from_the_batch = read_batch_line(batch_line(live.body))

    expected = ProviderResponse(
        content="Hello there.",
        finish_reason=finish_reason,
        usage=Usage(input_tokens=200, output_tokens=40, cached_tokens=128, reasoning_tokens=16),
        model="gpt-4o-mini-2024-07-18",
    )
    assert raw == expected
    assert (deltas, raw_streamed) == ("Hello there.", expected)
    assert (reader.output_started, reader.failure) == (True, None)
    assert from_the_batch.response == expected


def test_a_responses_answer_with_function_calls_reads_the_same_live_and_from_a_batch_line(server):
    live = openai_response("", tool_calls=TOOL_CALLS)
    client = openai.OpenAI(api_key="k", base_url=server.root + "/v1", max_retries=0)
    server.enqueue(live)

    raw = responses_response_from(client.responses.create(model="gpt-4o-mini", input="Hi"), "gpt-4o-mini")

    assert raw.tool_calls == [ToolCall(id="call_1", name="lookup", arguments={"q": "x"})]
    assert raw.finish_reason == "tool_calls"
    assert read_batch_line(batch_line(live.body)).response == raw


def test_a_failed_batch_line_has_an_empty_answer():
    line = read_batch_line(json.dumps({
        "custom_id": "r2",
        "response": {"status_code": 429, "request_id": "req_2",
                     "body": {"error": {"message": "Slow down.", "code": "rate_limit_exceeded"}}},
        "error": None,
    }))  # fmt: skip

    assert not line.ok
    assert (line.status_code, line.error_code, line.error_message) == (
        429,
        "rate_limit_exceeded",
        "Slow down.",
    )
    assert line.response == ProviderResponse()


# -- Anthropic messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "tool_calls", "stop_reason", "finish_reason"), [
    ("Hello there.", None, "end_turn", "stop"),
    ("Cut sh", None, "max_tokens", "length"),
    ("Let me look.", TOOL_CALLS, "tool_use", "tool_calls"),
    ("I can't.", None, "refusal", "content_filter"),
])  # fmt: skip
def test_an_anthropic_message_reads_the_same_live_and_streamed(
    server, text, tool_calls, stop_reason, finish_reason
):
    usage = {"input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 300,
             "cache_creation_input_tokens": 100}  # fmt: skip
    live: Reply = anthropic_message(text, tool_calls=tool_calls, stop_reason=stop_reason, **usage)
    streamed = anthropic_message_stream([text[:3], text[3:]], tool_calls=tool_calls, stop_reason=stop_reason,
                                        **usage)  # fmt: skip
    provider = AnthropicProvider(api_key="k", base_url=server.root)
    client = anthropic.Anthropic(api_key="k", base_url=server.root, max_retries=0)
    server.enqueue(live, streamed, live, streamed)
    request = ProviderRequest(model="claude-3-5-haiku", messages=MESSAGES)

    through_the_provider = provider.complete(request)
    provider_stream = list(provider.stream(request))
    raw = message_response(
        client.messages.create(model="claude-3-5-haiku", max_tokens=100, messages=MESSAGES),
        "claude-3-5-haiku",
    )
    reader = MessageStreamReader("claude-3-5-haiku")
    raw_deltas, raw_streamed = stream_through(
        reader,
        client.messages.create(model="claude-3-5-haiku", max_tokens=100, messages=MESSAGES, stream=True),
    )

    expected = ProviderResponse(
        content=text,
        tool_calls=[ToolCall(id="call_1", name="lookup", arguments={"q": "x"})] if tool_calls else [],
        finish_reason=finish_reason,
        usage=Usage(input_tokens=450, output_tokens=20, cached_tokens=300, cache_write_tokens=100),
        model="claude-3-5-haiku-20241022",
    )
    assert through_the_provider == expected
    assert final(provider_stream) == expected
    assert "".join(event.delta for event in provider_stream) == text
    assert raw == expected
    assert (raw_deltas, raw_streamed) == (text, expected)
    assert (reader.output_started, reader.failure) == (True, None)
