"""The OpenAI and Anthropic providers, driving the real SDKs against the local fake server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from django.test import override_settings

from llm_agents import Agent, Param, Tool
from llm_agents.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from llm_agents.providers import ProviderRequest, StreamEvent, ToolCall, Usage, get_provider
from llm_agents.providers.anthropic import AnthropicProvider
from llm_agents.providers.fake import FakeProvider
from llm_agents.providers.openai import OpenAIProvider
from tests import fake_servers
from tests.fake_servers import (
    FakeServer,
    anthropic_error,
    anthropic_message,
    anthropic_message_stream,
    openai_chat,
    openai_chat_stream,
    openai_error,
)

openai_server = fake_servers.openai_server
anthropic_server = fake_servers.anthropic_server

WEATHER_TOOL = {
    "name": "weather",
    "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def request(model: str = "gpt-4o", **kwargs: Any) -> ProviderRequest:
    messages = kwargs.pop(
        "messages", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    return ProviderRequest(model=model, messages=messages, **kwargs)


def tool_round_trip_messages(tool_call: ToolCall) -> list[dict[str, Any]]:
    """The conversation an agent sends after running the tool the model asked for."""
    return [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": tool_call.id, "name": tool_call.name, "arguments": tool_call.arguments}],
        },
        {"role": "tool", "tool_call_id": tool_call.id, "name": tool_call.name, "content": '{"temp": 21}'},
    ]


def collect(events: Any) -> tuple[list[str], StreamEvent]:
    events = list(events)
    assert events[-1].response is not None
    assert all(event.response is None for event in events[:-1])
    return [event.delta for event in events[:-1]], events[-1]


async def acollect(events: AsyncIterator[StreamEvent]) -> tuple[list[str], StreamEvent]:
    return collect([event async for event in events])


def closed_port_url(suffix: str = "") -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{suffix}"


# OpenAI ----------------------------------------------------------------------------------------------------


@pytest.fixture
def openai_provider(openai_server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider(api_key="test-key", base_url=openai_server.url)


class TestOpenAIComplete:
    def test_content_model_and_usage_with_cached_and_reasoning_tokens(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat(
                "Hello!", prompt_tokens=120, completion_tokens=30, cached_tokens=100, reasoning_tokens=12
            )
        )

        response = openai_provider.complete(request(temperature=0.2, max_tokens=50))

        assert response.content == "Hello!"
        assert response.finish_reason == "stop"
        assert response.model == "gpt-4o-mini-2024-07-18"
        assert response.tool_calls == []
        assert response.usage == Usage(
            input_tokens=120, output_tokens=30, cached_tokens=100, reasoning_tokens=12
        )
        sent = openai_server.requests[0]
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == "Bearer test-key"
        assert sent.json == {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "temperature": 0.2,
            "max_tokens": 50,
        }

    def test_missing_usage_reads_as_zero(self, openai_provider, openai_server):
        reply = openai_chat("ok")
        del reply.body["usage"]
        openai_server.enqueue(reply)

        assert openai_provider.complete(request()).usage == Usage()

    def test_max_tokens_field_follows_the_endpoint(self, openai_server, monkeypatch):
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        assert OpenAIProvider(api_key="k").max_tokens_param == "max_completion_tokens"
        assert OpenAIProvider(api_key="k", base_url=openai_server.url).max_tokens_param == "max_tokens"
        provider = OpenAIProvider(
            api_key="k", base_url=openai_server.url, max_tokens_param="max_completion_tokens"
        )

        provider.complete(request(max_tokens=64))

        assert openai_server.requests[0].json["max_completion_tokens"] == 64
        assert "max_tokens" not in openai_server.requests[0].json

    def test_params_pass_through_named_or_not(self, openai_provider, openai_server):
        openai_provider.complete(
            request(params={"top_p": 0.5, "seed": 7, "top_k": 20, "stream": True, "model": "other"})
        )

        body = openai_server.requests[0].json
        assert body["top_p"] == 0.5
        assert body["seed"] == 7
        assert body["top_k"] == 20  # not a parameter of the SDK method: sent through extra_body
        assert body["model"] == "gpt-4o"
        assert "stream" not in body

    def test_refusal_is_the_content(self, openai_provider, openai_server):
        reply = openai_chat(None)
        reply.body["choices"][0]["message"]["refusal"] = "I can't help with that."
        openai_server.enqueue(reply)

        assert openai_provider.complete(request()).content == "I can't help with that."

    def test_one_client_per_provider_and_no_sdk_retries(self, openai_provider, openai_server):
        openai_server.enqueue(openai_error(500))

        with pytest.raises(ProviderError):
            openai_provider.complete(request())

        assert openai_provider.client is openai_provider.client
        assert openai_provider.client.max_retries == 0
        assert len(openai_server.requests) == 1


class TestOpenAITools:
    def test_tool_call_round_trip(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat(tool_calls=[{"id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}]),
            openai_chat("21 degrees in Paris."),
        )

        first = openai_provider.complete(
            request(messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL])
        )
        assert first.finish_reason == "tool_calls"
        assert first.content == ""
        assert first.tool_calls == [ToolCall(id="call_1", name="weather", arguments={"city": "Paris"})]

        second = openai_provider.complete(
            request(messages=tool_round_trip_messages(first.tool_calls[0]), tools=[WEATHER_TOOL])
        )
        assert second.content == "21 degrees in Paris."

        assert openai_server.requests[0].json["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Current weather of a city.",
                    "parameters": WEATHER_TOOL["parameters"],
                },
            }
        ]
        assert openai_server.requests[1].json["messages"] == [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        ]

    def test_arguments_that_are_not_a_json_object_are_kept_raw(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat(tool_calls=[{"id": "c", "name": "weather", "arguments": "{not json"}])
        )

        assert openai_provider.complete(request()).tool_calls[0].arguments == {"_raw": "{not json"}


class TestOpenAIStream:
    def test_deltas_then_response_with_usage(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat_stream(
                ["Hel", "lo", " there"],
                prompt_tokens=40,
                completion_tokens=3,
                cached_tokens=32,
                reasoning_tokens=2,
            )
        )

        deltas, last = collect(openai_provider.stream(request()))

        assert deltas == ["Hel", "lo", " there"]
        assert last.response.content == "Hello there"
        assert last.response.finish_reason == "stop"
        assert last.response.usage == Usage(
            input_tokens=40, output_tokens=3, cached_tokens=32, reasoning_tokens=2
        )
        body = openai_server.requests[0].json
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}

    def test_tool_calls_are_assembled_from_fragments(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat_stream(
                tool_calls=[
                    {"id": "call_a", "name": "weather", "arguments": {"city": "Paris"}},
                    {"id": "call_b", "name": "weather", "arguments": {"city": "Oslo"}},
                ]
            )
        )

        deltas, last = collect(openai_provider.stream(request(tools=[WEATHER_TOOL])))

        assert deltas == []
        assert last.response.finish_reason == "tool_calls"
        assert last.response.tool_calls == [
            ToolCall(id="call_a", name="weather", arguments={"city": "Paris"}),
            ToolCall(id="call_b", name="weather", arguments={"city": "Oslo"}),
        ]

    def test_error_status_on_a_stream(self, openai_provider, openai_server):
        openai_server.enqueue(openai_error(429))

        with pytest.raises(RateLimitError):
            list(openai_provider.stream(request()))


class TestOpenAIAsync:
    def test_acomplete(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat("async hello", prompt_tokens=9, completion_tokens=2, cached_tokens=4)
        )

        response = asyncio.run(openai_provider.acomplete(request()))

        assert response.content == "async hello"
        assert response.usage == Usage(input_tokens=9, output_tokens=2, cached_tokens=4)
        assert openai_server.requests[0].headers["x-stainless-async"].startswith("async")

    def test_astream(self, openai_provider, openai_server):
        openai_server.enqueue(
            openai_chat_stream(["a", "b"], prompt_tokens=5, completion_tokens=2, reasoning_tokens=1)
        )

        deltas, last = asyncio.run(acollect(openai_provider.astream(request())))

        assert deltas == ["a", "b"]
        assert last.response.content == "ab"
        assert last.response.usage == Usage(input_tokens=5, output_tokens=2, reasoning_tokens=1)

    def test_one_async_client_per_event_loop(self, openai_provider, openai_server):
        async def call_twice() -> tuple[Any, Any]:
            await openai_provider.acomplete(request())
            first = openai_provider.async_client
            await openai_provider.acomplete(request())
            return first, openai_provider.async_client

        first, second = asyncio.run(call_twice())
        assert first is second
        third, _ = asyncio.run(call_twice())  # a new loop gets its own client and still works
        assert third is not first
        assert len(openai_server.requests) == 4

    def test_async_errors_are_mapped(self, openai_provider, openai_server):
        openai_server.enqueue(openai_error(401), openai_error(503))

        with pytest.raises(AuthenticationError):
            asyncio.run(openai_provider.acomplete(request()))
        with pytest.raises(ProviderError) as excinfo:
            asyncio.run(acollect(openai_provider.astream(request())))
        assert excinfo.value.retryable is True
        assert excinfo.value.status_code == 503


ERROR_CASES = [
    (429, RateLimitError, True, openai.RateLimitError, anthropic.RateLimitError),
    (401, AuthenticationError, False, openai.AuthenticationError, anthropic.AuthenticationError),
    (403, AuthenticationError, False, openai.PermissionDeniedError, anthropic.PermissionDeniedError),
    (400, InvalidRequestError, False, openai.BadRequestError, anthropic.BadRequestError),
    (404, InvalidRequestError, False, openai.NotFoundError, anthropic.NotFoundError),
    (422, InvalidRequestError, False, openai.UnprocessableEntityError, anthropic.UnprocessableEntityError),
    (500, ProviderError, True, openai.InternalServerError, anthropic.InternalServerError),
    (503, ProviderError, True, openai.InternalServerError, anthropic.InternalServerError),
]


class TestOpenAIErrors:
    @pytest.mark.parametrize(("status", "error_class", "retryable", "sdk_class", "_"), ERROR_CASES)
    def test_status_codes(self, openai_provider, openai_server, status, error_class, retryable, sdk_class, _):
        openai_server.enqueue(openai_error(status, "Nope."))

        with pytest.raises(error_class) as excinfo:
            openai_provider.complete(request())

        error = excinfo.value
        assert type(error) is error_class
        assert error.retryable is retryable
        assert error.status_code == status
        assert "Nope." in str(error)
        assert isinstance(error.__cause__, sdk_class)

    def test_timeout(self, openai_provider, openai_server):
        openai_server.enqueue(openai_chat("too late", delay=2))

        with pytest.raises(ProviderTimeoutError) as excinfo:
            openai_provider.complete(request(timeout=0.2))

        assert excinfo.value.retryable is True
        assert isinstance(excinfo.value.__cause__, openai.APITimeoutError)

    def test_timeout_while_streaming(self, openai_provider, openai_server):
        openai_server.enqueue(openai_chat_stream(["a", "b", "c"], event_delay=1))

        with pytest.raises(ProviderTimeoutError):
            list(openai_provider.stream(request(timeout=0.2)))

    def test_connection_error_is_retryable(self):
        provider = OpenAIProvider(api_key="k", base_url=closed_port_url("/v1"))

        with pytest.raises(ProviderError) as excinfo:
            provider.complete(request())

        assert type(excinfo.value) is ProviderError
        assert excinfo.value.retryable is True
        assert excinfo.value.status_code is None
        assert isinstance(excinfo.value.__cause__, openai.APIConnectionError)

    def test_missing_api_key(self, openai_server, monkeypatch):
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
        provider = OpenAIProvider(base_url=openai_server.url)

        with pytest.raises(AuthenticationError):
            provider.complete(request())
        assert openai_server.requests == []


# Anthropic -------------------------------------------------------------------------------------------------


@pytest.fixture
def anthropic_provider(anthropic_server: FakeServer) -> AnthropicProvider:
    return AnthropicProvider(api_key="test-key", base_url=anthropic_server.url)


class TestAnthropicComplete:
    def test_request_translation_and_cache_token_arithmetic(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(
            anthropic_message(
                "Hello!",
                input_tokens=50,
                output_tokens=20,
                cache_read_input_tokens=1000,
                cache_creation_input_tokens=200,
            )
        )

        response = anthropic_provider.complete(request("anthropic/claude-3-5-haiku", temperature=0.0))

        assert response.content == "Hello!"
        assert response.finish_reason == "stop"
        assert response.model == "claude-3-5-haiku-20241022"
        # Anthropic's input_tokens leave cache reads and writes out; ours count them.
        assert response.usage == Usage(
            input_tokens=1250, output_tokens=20, cached_tokens=1000, cache_write_tokens=200
        )
        sent = anthropic_server.requests[0]
        assert sent.path == "/v1/messages"
        assert sent.json == {
            "model": "claude-3-5-haiku",
            "max_tokens": 4096,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}],
        }

    def test_max_tokens_timeout_and_params(self, anthropic_provider, anthropic_server):
        anthropic_provider.complete(
            request(
                "claude-haiku-4-5",
                max_tokens=100,
                timeout=30,
                params={"stop_sequences": ["END"], "beta_x": 1},
            )
        )

        body = anthropic_server.requests[0].json
        assert body["model"] == "claude-haiku-4-5"
        assert body["max_tokens"] == 100
        assert body["stop_sequences"] == ["END"]
        assert body["beta_x"] == 1
        assert anthropic_server.requests[0].headers["x-stainless-timeout"] == "30"

    def test_temperature_only_when_asked(self, anthropic_server):
        provider = AnthropicProvider(
            api_key="k",
            base_url=anthropic_server.url,
            send_temperature=True,
            default_max_tokens=512,
            default_headers={"anthropic-version": "2023-06-01"},
        )

        provider.complete(request("claude-3-5-haiku", temperature=0.3))

        sent = anthropic_server.requests[0]
        assert sent.json["temperature"] == 0.3
        assert sent.json["max_tokens"] == 512
        assert sent.headers["anthropic-version"] == "2023-06-01"

    def test_several_system_messages_are_joined(self, anthropic_provider, anthropic_server):
        messages = [
            {"role": "system", "content": "One."},
            {"role": "system", "content": "Two."},
            {"role": "user", "content": "Hi"},
        ]

        anthropic_provider.complete(request("claude-3-5-haiku", messages=messages))

        assert anthropic_server.requests[0].json["system"] == "One.\n\nTwo."

    def test_one_client_per_provider_and_no_sdk_retries(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(anthropic_error(529))

        with pytest.raises(ProviderError):
            anthropic_provider.complete(request("claude-3-5-haiku"))

        assert anthropic_provider.client is anthropic_provider.client
        assert anthropic_provider.client.max_retries == 0
        assert len(anthropic_server.requests) == 1


class TestAnthropicTools:
    def test_tool_call_round_trip(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(
            anthropic_message(
                "Let me check.",
                tool_calls=[{"id": "toolu_1", "name": "weather", "arguments": {"city": "Paris"}}],
            ),
            anthropic_message("21 degrees in Paris."),
        )

        first = anthropic_provider.complete(
            request(
                "claude-3-5-haiku", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
            )
        )
        assert first.content == "Let me check."
        assert first.finish_reason == "tool_calls"
        assert first.tool_calls == [ToolCall(id="toolu_1", name="weather", arguments={"city": "Paris"})]

        messages = tool_round_trip_messages(first.tool_calls[0])
        messages[2]["content"] = "Let me check."
        messages[2]["tool_calls"].append({"id": "toolu_2", "name": "weather", "arguments": {"city": "Oslo"}})
        messages.append(
            {"role": "tool", "tool_call_id": "toolu_2", "name": "weather", "content": {"temp": 3}}
        )
        second = anthropic_provider.complete(
            request("claude-3-5-haiku", messages=messages, tools=[WEATHER_TOOL])
        )
        assert second.content == "21 degrees in Paris."

        assert anthropic_server.requests[0].json["tools"] == [
            {
                "name": "weather",
                "description": "Current weather of a city.",
                "input_schema": WEATHER_TOOL["parameters"],
            }
        ]
        body = anthropic_server.requests[1].json
        assert body["system"] == "Use tools."
        assert body["messages"] == [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp": 21}'},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"temp": 3}'},
                ],
            },
        ]


class TestAnthropicStream:
    def test_deltas_then_response_with_usage(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(
            anthropic_message_stream(
                ["Hel", "lo"],
                input_tokens=7,
                output_tokens=9,
                cache_read_input_tokens=300,
                cache_creation_input_tokens=3,
            )
        )

        deltas, last = collect(anthropic_provider.stream(request("anthropic/claude-3-5-haiku")))

        assert deltas == ["Hel", "lo"]
        assert last.response.content == "Hello"
        assert last.response.finish_reason == "stop"
        assert last.response.usage == Usage(
            input_tokens=310, output_tokens=9, cached_tokens=300, cache_write_tokens=3
        )
        body = anthropic_server.requests[0].json
        assert body["stream"] is True
        assert body["model"] == "claude-3-5-haiku"

    def test_tool_use_in_a_stream(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(
            anthropic_message_stream(
                ["Checking."],
                tool_calls=[{"id": "toolu_9", "name": "weather", "arguments": {"city": "Rome"}}],
            )
        )

        deltas, last = collect(anthropic_provider.stream(request("claude-3-5-haiku", tools=[WEATHER_TOOL])))

        assert deltas == ["Checking."]
        assert last.response.finish_reason == "tool_calls"
        assert last.response.tool_calls == [
            ToolCall(id="toolu_9", name="weather", arguments={"city": "Rome"})
        ]

    def test_error_event_inside_a_stream(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(
            anthropic_message_stream(
                ["partial"], error={"type": "overloaded_error", "message": "Overloaded"}
            ),
            anthropic_message_stream(["partial"], error={"type": "rate_limit_error", "message": "Slow down"}),
        )

        with pytest.raises(ProviderError) as excinfo:
            list(anthropic_provider.stream(request("claude-3-5-haiku")))
        assert type(excinfo.value) is ProviderError
        assert excinfo.value.retryable is True
        assert "Overloaded" in str(excinfo.value)
        with pytest.raises(RateLimitError):
            list(anthropic_provider.stream(request("claude-3-5-haiku")))


class TestAnthropicAsync:
    def test_acomplete(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(anthropic_message("async hi", input_tokens=5, cache_read_input_tokens=5))

        response = asyncio.run(anthropic_provider.acomplete(request("claude-3-5-haiku")))

        assert response.content == "async hi"
        assert response.usage == Usage(input_tokens=10, output_tokens=5, cached_tokens=5)
        assert anthropic_server.requests[0].headers["x-stainless-async"].startswith("async")

    def test_astream(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(anthropic_message_stream(["x", "y"], input_tokens=2, output_tokens=2))

        deltas, last = asyncio.run(acollect(anthropic_provider.astream(request("claude-3-5-haiku"))))

        assert deltas == ["x", "y"]
        assert last.response.content == "xy"
        assert last.response.usage == Usage(input_tokens=2, output_tokens=2)

    def test_async_errors_are_mapped(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(anthropic_error(429), anthropic_error(400))

        with pytest.raises(RateLimitError):
            asyncio.run(anthropic_provider.acomplete(request("claude-3-5-haiku")))
        with pytest.raises(InvalidRequestError):
            asyncio.run(acollect(anthropic_provider.astream(request("claude-3-5-haiku"))))


class TestAnthropicErrors:
    @pytest.mark.parametrize(("status", "error_class", "retryable", "_", "sdk_class"), ERROR_CASES)
    def test_status_codes(
        self,
        anthropic_provider,
        anthropic_server,
        status,
        error_class,
        retryable,
        _,
        sdk_class,
    ):
        anthropic_server.enqueue(anthropic_error(status, "Nope."))

        with pytest.raises(error_class) as excinfo:
            anthropic_provider.complete(request("claude-3-5-haiku"))

        error = excinfo.value
        assert type(error) is error_class
        assert error.retryable is retryable
        assert error.status_code == status
        assert "Nope." in str(error)
        assert isinstance(error.__cause__, sdk_class)

    def test_overloaded_is_retryable(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(anthropic_error(529, "Overloaded"))

        with pytest.raises(ProviderError) as excinfo:
            anthropic_provider.complete(request("claude-3-5-haiku"))

        assert excinfo.value.retryable is True
        assert excinfo.value.status_code == 529

    def test_timeout(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(anthropic_message("too late", delay=2))

        with pytest.raises(ProviderTimeoutError) as excinfo:
            anthropic_provider.complete(request("claude-3-5-haiku", timeout=0.2))

        assert excinfo.value.retryable is True
        assert isinstance(excinfo.value.__cause__, anthropic.APITimeoutError)

    def test_connection_error_is_retryable(self):
        provider = AnthropicProvider(api_key="k", base_url=closed_port_url())

        with pytest.raises(ProviderError) as excinfo:
            provider.complete(request("claude-3-5-haiku"))

        assert type(excinfo.value) is ProviderError
        assert excinfo.value.retryable is True
        assert isinstance(excinfo.value.__cause__, anthropic.APIConnectionError)

    def test_missing_api_key(self, anthropic_server, monkeypatch):
        for name in (
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_PROFILE",
            "ANTHROPIC_CONFIG_DIR",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", "/nonexistent")
        provider = AnthropicProvider(base_url=anthropic_server.url)

        with pytest.raises(AuthenticationError):
            provider.complete(request("claude-3-5-haiku"))
        assert anthropic_server.requests == []


# Routing through the PROVIDERS setting ---------------------------------------------------------------------


def test_providers_setting_options_reach_the_sdk_clients(openai_server, anthropic_server):
    providers = {
        "openai": {
            "class": "llm_agents.providers.openai.OpenAIProvider",
            "api_key": "o-key",
            "base_url": openai_server.url,
        },
        "anthropic": {
            "class": "llm_agents.providers.anthropic.AnthropicProvider",
            "api_key": "a-key",
            "base_url": anthropic_server.url,
        },
        "fake": "llm_agents.providers.fake.FakeProvider",
    }
    with override_settings(LLM_AGENTS={"PROVIDERS": providers}):
        name, provider = get_provider("gpt-4o-mini")
        assert (name, type(provider)) == ("openai", OpenAIProvider)
        assert provider.complete(request("gpt-4o-mini")).content == "Hi"
        name, provider = get_provider("anthropic/claude-3-5-haiku")
        assert (name, type(provider)) == ("anthropic", AnthropicProvider)
        assert provider.complete(request("anthropic/claude-3-5-haiku")).content == "Hi"
        assert get_provider("claude-haiku-4-5")[1] is provider

    assert openai_server.requests[0].headers["authorization"] == "Bearer o-key"
    assert anthropic_server.requests[0].headers["authorization"] == "Bearer a-key"


# Through the Agent runtime (these record executions, so they use the database) -----------------------------


class Weather(Tool):
    name = "weather"
    description = "Current weather of a city."
    city = Param(required=True)

    def run(self, city: str) -> dict[str, Any]:
        return {"city": city, "temp": 21}


class WeatherAgent(Agent):
    model = "gpt-4o"
    fallback_models = ["anthropic/claude-3-5-haiku"]
    tools = [Weather]
    city = Param(required=True)

    def system_prompt(self) -> str:
        return "Use tools."

    def user_prompt(self) -> str:
        return f"Weather in {self.city}?"


def providers_for(openai_url: str, anthropic_url: str) -> dict[str, Any]:
    return {
        "openai": {
            "class": "llm_agents.providers.openai.OpenAIProvider",
            "api_key": "k",
            "base_url": openai_url,
        },
        "anthropic": {
            "class": "llm_agents.providers.anthropic.AnthropicProvider",
            "api_key": "k",
            "base_url": anthropic_url,
        },
        "fake": "llm_agents.providers.fake.FakeProvider",
    }


@pytest.mark.django_db
def test_agent_tool_loop_over_the_openai_sdk(openai_server, anthropic_server):
    openai_server.enqueue(
        openai_chat(
            tool_calls=[{"id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}], prompt_tokens=50
        ),
        openai_chat(
            "21 degrees.", prompt_tokens=80, completion_tokens=4, cached_tokens=50, reasoning_tokens=2
        ),
    )

    with override_settings(LLM_AGENTS={"PROVIDERS": providers_for(openai_server.url, anthropic_server.url)}):
        result = WeatherAgent.call(city="Paris")

    assert result.content == "21 degrees."
    assert result.tool_calls[0]["result"] == {"city": "Paris", "temp": 21}
    execution = result.execution
    assert (execution.provider, execution.status) == ("openai", "success")
    assert (execution.input_tokens, execution.output_tokens) == (130, 9)
    assert (execution.cached_tokens, execution.reasoning_tokens) == (50, 2)
    tool_message = openai_server.requests[1].json["messages"][-1]
    assert tool_message == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"city": "Paris", "temp": 21}',
    }
    assert anthropic_server.requests == []


@pytest.mark.django_db
def test_agent_falls_back_from_openai_to_anthropic_streaming(openai_server, anthropic_server):
    openai_server.enqueue(openai_error(503))
    anthropic_server.enqueue(
        anthropic_message_stream(
            ["Sunny", " in Oslo."], input_tokens=10, cache_read_input_tokens=90, output_tokens=4
        )
    )

    with override_settings(LLM_AGENTS={"PROVIDERS": providers_for(openai_server.url, anthropic_server.url)}):
        stream = WeatherAgent.stream(city="Oslo")
        chunks = list(stream)

    assert chunks == ["Sunny", " in Oslo."]
    execution = stream.result.execution
    assert execution.chosen_model_id == "anthropic/claude-3-5-haiku"
    assert [attempt["status"] for attempt in execution.attempts] == ["error", "success"]
    assert execution.attempts[0]["error_class"] == "ProviderError"
    assert (execution.input_tokens, execution.cached_tokens, execution.output_tokens) == (100, 90, 4)
    assert anthropic_server.requests[0].json["model"] == "claude-3-5-haiku"


# Reasoning models and temperature ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("gpt-4o", True),
        ("gpt-4.1-mini", True),
        ("o1", False),
        ("o1-mini", False),
        ("o3-mini-2025-01-31", False),
        ("o4-mini", False),
        ("gpt-5", False),
        ("gpt-5-mini", False),
        ("gpt-5.1", False),
    ],
)
def test_openai_reasoning_models_get_no_temperature(openai_provider, openai_server, model, sent):
    openai_provider.complete(request(model, temperature=0.2))
    body = openai_server.requests[0].json
    assert ("temperature" in body) is sent
    if sent:
        assert body["temperature"] == 0.2


# The offline provider's simulated latency -------------------------------------------------------------------


def test_offline_provider_answers_at_once_by_default():
    provider = FakeProvider()
    assert provider.simulated_latency("fake/x") == 0.0
    started = time.perf_counter()
    assert provider.complete(request("fake/x")).content == "Hi"
    assert time.perf_counter() - started < 0.5


def test_offline_provider_simulates_a_log_normal_latency_per_model():
    provider = FakeProvider(
        latency={"fake/slow": {"median_ms": 40, "p95_ms": 160}, "*": {"median_ms": 2, "p95_ms": 4}}, seed=3
    )
    slow = sorted(provider.simulated_latency("fake/slow") for _ in range(2000))
    assert 0.036 < slow[1000] < 0.044  # the median
    assert 0.14 < slow[1900] < 0.18  # the 95th percentile
    assert max(provider.simulated_latency("fake/other") for _ in range(100)) < 0.02  # "*" for the rest

    timed = FakeProvider(latency={"fake/slow": {"median_ms": 60, "p95_ms": 60}})
    started = time.perf_counter()
    assert timed.complete(request("fake/slow")).content == "Hi"
    assert time.perf_counter() - started >= 0.055


def test_offline_provider_stream_spends_part_of_the_latency_before_the_first_token():
    provider = FakeProvider(latency={"fake/slow": {"median_ms": 100, "p95_ms": 100}})
    started = time.perf_counter()
    events = provider.stream(request("fake/slow", messages=[{"role": "user", "content": "one two three"}]))
    first = next(events)
    first_token = time.perf_counter() - started
    rest = list(events)
    total = time.perf_counter() - started
    assert first.delta == "one" and rest[-1].response.content == "one two three"
    assert first_token >= 0.03 and total - first_token >= 0.065  # 30 % before the first token, 70 % after


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        ([40, 160], "must map model ids"),
        ({"fake/x": {"median_ms": 40}}, r"latency\['fake/x'\] must be"),
        ({"fake/x": {"median_ms": 40, "p95_ms": 20}}, "0 < median_ms <= p95_ms"),
        ({"fake/x": {"median_ms": 0, "p95_ms": 20}}, "0 < median_ms <= p95_ms"),
    ],
)
def test_offline_provider_names_a_bad_latency_option(latency, message):
    with pytest.raises(ValueError, match=message):
        FakeProvider(latency=latency)


@pytest.mark.django_db
def test_agent_durations_follow_the_offline_latency_setting():
    class SlowAgent(Agent):
        model = "fake/slow"

        def user_prompt(self) -> str:
            return "Hello"

    slow = {
        "class": "llm_agents.providers.fake.FakeProvider",
        "latency": {"fake/slow": {"median_ms": 50, "p95_ms": 50}},
    }
    with override_settings(LLM_AGENTS={"PROVIDERS": {"fake": slow}}):
        execution = SlowAgent.call().execution
    assert execution.duration_ms >= 50
