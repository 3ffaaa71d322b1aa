"""Finish reasons in OpenAI's chat words (``stop, length, tool_calls, content_filter``) for every provider and
every path: agents, raw SDK calls, batch results and the Responses API, streamed or not. The same state of an
answer records the same word whichever way it came."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from django.test import override_settings

from llm_agents import Agent, batches
from llm_agents.models import Execution
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

pytestmark = pytest.mark.django_db

STATES = ["stop", "length", "tool_calls", "content_filter"]
TOOL_CALLS = [{"id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]
#: How Anthropic says each state.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
#: How the Responses API says each state: an incomplete response's reason (tool calls are output items).
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def tools_for(state: str) -> list[dict[str, Any]] | None:
    return TOOL_CALLS if state == "tool_calls" else None


def chat(state: str, stream: bool) -> Reply:
    if stream:
        return openai_chat_stream(["Some text"], tool_calls=tools_for(state), finish_reason=state)
    return openai_chat("Some text", tool_calls=tools_for(state), finish_reason=state)


def message(state: str, stream: bool) -> Reply:
    build = anthropic_message_stream if stream else anthropic_message
    text: Any = ["Some text"] if stream else "Some text"
    return build(text, tool_calls=tools_for(state), stop_reason=STOP_REASONS[state])


def response(state: str, stream: bool) -> Reply:
    if stream:
        return openai_response_stream(["Some text"], incomplete_reason=INCOMPLETE_REASONS.get(state))
    return openai_response(
        "Some text", tool_calls=tools_for(state), incomplete_reason=INCOMPLETE_REASONS.get(state)
    )


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def providers(server: FakeServer, **extra: Any) -> dict[str, Any]:
    return {
        "LLM_AGENTS": {
            "PROVIDERS": {
                "openai": {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": "k",
                           "base_url": server.root + "/v1"},
                "anthropic": {"class": "llm_agents.providers.anthropic.AnthropicProvider", "api_key": "k",
                              "base_url": server.root},
                "fake": "llm_agents.providers.fake.FakeProvider",
            },
            **extra,
        }
    }  # fmt: skip


# -- agents -----------------------------------------------------------------------------------------------


class Answerer(Agent):
    model = "gpt-4o"
    retries = 0

    def user_prompt(self) -> str:
        return "Hi"


class ClaudeAnswerer(Answerer):
    model = "claude-haiku-4-5"


@pytest.mark.parametrize(
    "state", ["stop", "length", "content_filter"]
)  # tool_calls: the agent runs the tools
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("agent", "reply"), [(Answerer, chat), (ClaudeAnswerer, message)])
def test_agents(server, agent, reply, stream, state):
    server.enqueue(reply(state, stream))

    with override_settings(**providers(server)):
        if stream:
            call = agent.stream()
            list(call)
            result = call.result
        else:
            result = agent.call()

    assert result.finish_reason == state
    assert result.execution.finish_reason == state


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("stop_sequence", "stop"), ("model_context_window_exceeded", "length"), ("pause_turn", "length")],
)
def test_anthropics_other_stop_reasons(server, stop_reason, finish_reason):
    server.enqueue(anthropic_message("Some text", stop_reason=stop_reason))

    with override_settings(**providers(server)):
        result = ClaudeAnswerer.call()

    assert result.execution.finish_reason == finish_reason


# -- raw SDK calls (AUTO_INSTRUMENT) ----------------------------------------------------------------------


def call_chat(server: FakeServer, stream: bool) -> None:
    client = openai.OpenAI(api_key="k", base_url=server.root + "/v1", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}],
                                            stream=stream)  # fmt: skip
    if stream:
        list(answer)


def call_responses(server: FakeServer, stream: bool) -> None:
    client = openai.OpenAI(api_key="k", base_url=server.root + "/v1", max_retries=0)
    answer = client.responses.create(model="gpt-4o", input="Hi", stream=stream)
    if stream:
        list(answer)


def call_messages(server: FakeServer, stream: bool) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=server.root, max_retries=0)
    answer = client.messages.create(model="claude-haiku-4-5", max_tokens=100,
                                    messages=[{"role": "user", "content": "Hi"}], stream=stream)  # fmt: skip
    if stream:
        list(answer)


RAW_CASES = [
    (call, reply, stream, state)
    for call, reply in ((call_chat, chat), (call_responses, response), (call_messages, message))
    for stream in (False, True)
    for state in STATES
    if not (reply is response and stream and state == "tool_calls")  # the scripted stream carries text only
]


@pytest.mark.parametrize(("call", "reply", "stream", "state"), RAW_CASES)
def test_raw_sdk_calls(server, call, reply, stream, state):
    server.enqueue(reply(state, stream))

    with override_settings(LLM_AGENTS={"AUTO_INSTRUMENT": True}):
        call(server, stream)

    assert Execution.objects.get().finish_reason == state


def test_the_deprecated_function_call_is_tool_calls(server):
    server.enqueue(openai_chat("", tool_calls=TOOL_CALLS, finish_reason="function_call"))

    with override_settings(LLM_AGENTS={"AUTO_INSTRUMENT": True}):
        call_chat(server, False)

    assert Execution.objects.get().finish_reason == "tool_calls"


# -- batch results ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(("endpoint", "reply"), [("/v1/responses", response), ("/v1/chat/completions", chat)])
def test_batch_results(server, endpoint, reply, state):
    handled: list[batches.BatchResult] = []
    batches.register_handler("finish", lambda request, result: handled.append(result))
    try:
        with override_settings(**providers(server, BATCH_ENDPOINT=endpoint)):
            request = batches.enqueue(purpose="finish", model="gpt-4o-mini", input="Hi")
            batches.flush()
            server.batches.respond = lambda custom_id, body: reply(state, False).body
            batches.poll()
    finally:
        batches.handlers._handlers.clear()

    request.refresh_from_db()
    assert request.result["finish_reason"] == state
    assert request.execution.finish_reason == state
    assert [result.finish_reason for result in handled] == [state]
