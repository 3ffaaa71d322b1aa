"""An agent's ``timeout`` bounds each attempt end to end: the real SDKs against a local server that answers at
once and then dribbles its stream (or trickles its body) for far longer than the timeout.

Timings are loose on purpose (the machine may be loaded): a dribble lasts 5 s and a timeout of 1 s must
stop it well before half of that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from llm_agents import Agent
from llm_agents.errors import AllModelsExhaustedError, ProviderTimeoutError
from llm_agents.models import Execution
from llm_agents.providers import ProviderRequest
from llm_agents.providers.anthropic import AnthropicProvider
from llm_agents.providers.openai import OpenAIProvider
from llm_agents.testing import fake_llm
from tests import fake_servers
from tests.fake_servers import (
    FakeServer,
    Reply,
    anthropic_message,
    anthropic_message_stream,
    openai_chat,
    openai_chat_stream,
)

openai_server = fake_servers.openai_server
anthropic_server = fake_servers.anthropic_server

DRIBBLE = 5.0  # seconds the slow server takes to finish its answer
TIMEOUT = 1.0
WELL_BEFORE = DRIBBLE / 2


def dribbled_chat() -> Reply:
    return openai_chat_stream(["word "] * 17, event_delay=0.3)


def dribbled_message() -> Reply:
    return anthropic_message_stream(["word "] * 15, event_delay=0.3)


def trickled(reply: Reply) -> Reply:
    """Headers at once, then the body in 20 pieces over 5 s."""
    return dataclasses.replace(reply, body_delay=DRIBBLE / 20)


def request(model: str) -> ProviderRequest:
    return ProviderRequest(model=model, messages=[{"role": "user", "content": "Hi"}], timeout=TIMEOUT)


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def wait_for_abort(server: FakeServer) -> None:
    """The server notices the closed connection at its next write: the client did hang up."""
    deadline = time.monotonic() + DRIBBLE
    while server.aborted == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.aborted == 1


async def drain(events: Any) -> None:
    async for _ in events:
        pass


@pytest.fixture
def openai_provider(openai_server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider(api_key="k", base_url=openai_server.url)


@pytest.fixture
def anthropic_provider(anthropic_server: FakeServer) -> AnthropicProvider:
    return AnthropicProvider(api_key="k", base_url=anthropic_server.url)


class TestProviders:
    def test_openai_stream_is_cut_off_at_the_deadline(self, openai_provider, openai_server):
        openai_server.enqueue(dribbled_chat())

        error, elapsed = timed(lambda: list(openai_provider.stream(request("gpt-4o"))))

        assert isinstance(error, ProviderTimeoutError)
        assert error.retryable is True
        assert TIMEOUT * 0.9 <= elapsed < WELL_BEFORE
        wait_for_abort(openai_server)

    def test_openai_trickled_body_is_cut_off(self, openai_provider, openai_server):
        openai_server.enqueue(trickled(openai_chat("slow " * 200)))

        error, elapsed = timed(lambda: openai_provider.complete(request("gpt-4o")))

        assert isinstance(error, ProviderTimeoutError)
        assert elapsed < WELL_BEFORE
        wait_for_abort(openai_server)

    def test_openai_async_stream_and_body(self, openai_provider, openai_server):
        openai_server.enqueue(dribbled_chat(), trickled(openai_chat("slow " * 200)))

        error, elapsed = timed(lambda: asyncio.run(drain(openai_provider.astream(request("gpt-4o")))))
        assert isinstance(error, ProviderTimeoutError)
        assert elapsed < WELL_BEFORE

        error, elapsed = timed(lambda: asyncio.run(openai_provider.acomplete(request("gpt-4o"))))
        assert isinstance(error, ProviderTimeoutError)
        assert elapsed < WELL_BEFORE

    def test_anthropic_stream_is_cut_off_at_the_deadline(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(dribbled_message())

        error, elapsed = timed(lambda: list(anthropic_provider.stream(request("claude-3-5-haiku"))))

        assert isinstance(error, ProviderTimeoutError)
        assert TIMEOUT * 0.9 <= elapsed < WELL_BEFORE
        wait_for_abort(anthropic_server)

    def test_anthropic_trickled_body_is_cut_off(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(trickled(anthropic_message("slow " * 200)))

        error, elapsed = timed(lambda: anthropic_provider.complete(request("claude-3-5-haiku")))

        assert isinstance(error, ProviderTimeoutError)
        assert elapsed < WELL_BEFORE
        wait_for_abort(anthropic_server)

    def test_anthropic_async_stream_and_body(self, anthropic_provider, anthropic_server):
        anthropic_server.enqueue(dribbled_message(), trickled(anthropic_message("slow " * 200)))

        error, elapsed = timed(
            lambda: asyncio.run(drain(anthropic_provider.astream(request("claude-3-5-haiku"))))
        )
        assert isinstance(error, ProviderTimeoutError)
        assert elapsed < WELL_BEFORE

        error, elapsed = timed(lambda: asyncio.run(anthropic_provider.acomplete(request("claude-3-5-haiku"))))
        assert isinstance(error, ProviderTimeoutError)
        assert elapsed < WELL_BEFORE

    def test_an_answer_within_the_timeout_is_untouched(self, openai_provider, openai_server):
        openai_server.enqueue(openai_chat_stream(["a", "b", "c"], event_delay=0.05), openai_chat("fine"))

        events = list(openai_provider.stream(request("gpt-4o")))

        assert events[-1].response.content == "abc"
        assert openai_provider.complete(request("gpt-4o")).content == "fine"
        time.sleep(TIMEOUT * 1.5)  # past the deadlines of both: the pooled connection still serves
        assert openai_provider.complete(request("gpt-4o")).content == "Hi"


# Through the agent runtime -------------------------------------------------------------------------------


class SlowAgent(Agent):
    model = "gpt-4o"
    timeout = TIMEOUT
    retries = 0
    retry_backoff = 0

    def user_prompt(self) -> str:
        return "Hi"


class RetryingSlowAgent(SlowAgent):
    retries = 1


def providers(openai_url: str) -> dict[str, Any]:
    return {
        "LLM_AGENTS": {
            "PROVIDERS": {
                "openai": {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": "k",
                           "base_url": openai_url},
                "fake": "llm_agents.providers.fake.FakeProvider",
            }
        }
    }  # fmt: skip


def assert_timed_out(error: BaseException | None, elapsed: float) -> Execution:
    assert isinstance(error, AllModelsExhaustedError)
    assert isinstance(error.last_error, ProviderTimeoutError)
    assert elapsed < WELL_BEFORE
    execution = Execution.objects.get()
    assert execution.status == "timeout"
    span = execution.spans.get(kind="llm")
    assert (span.status, span.error_class) == ("error", "ProviderTimeoutError")
    return execution


@pytest.mark.django_db(transaction=True)
class TestAgents:
    def test_call(self, openai_server):
        openai_server.enqueue(trickled(openai_chat("slow " * 200)))

        with override_settings(**providers(openai_server.url)):
            error, elapsed = timed(SlowAgent.call)

        assert_timed_out(error, elapsed)

    def test_acall(self, openai_server):
        openai_server.enqueue(trickled(openai_chat("slow " * 200)))

        with override_settings(**providers(openai_server.url)):
            error, elapsed = timed(lambda: asyncio.run(SlowAgent.acall()))

        assert_timed_out(error, elapsed)

    def test_stream_keeps_the_partial_answer_and_is_not_started_again(self, openai_server):
        openai_server.enqueue(dribbled_chat(), openai_chat("a second answer"))
        chunks: list[str] = []

        with override_settings(**providers(openai_server.url)):
            error, elapsed = timed(lambda: chunks.extend(RetryingSlowAgent.stream()))

        execution = assert_timed_out(error, elapsed)
        assert chunks and set(chunks) == {"word "}
        assert execution.response == "".join(chunks)
        assert execution.spans.get(kind="llm").output["content"] == "".join(chunks)
        assert len(openai_server.requests) == 1  # the caller has text already: no second answer after it

    def test_async_stream(self, openai_server):
        openai_server.enqueue(dribbled_chat())

        async def consume() -> list[str]:
            return [chunk async for chunk in SlowAgent.stream()]

        with override_settings(**providers(openai_server.url)):
            error, elapsed = timed(lambda: asyncio.run(consume()))

        assert_timed_out(error, elapsed)

    def test_a_timeout_before_any_text_is_retried(self, openai_server):
        openai_server.enqueue(trickled(openai_chat("slow " * 200)), openai_chat("quick"))

        with override_settings(**providers(openai_server.url)):
            result = RetryingSlowAgent.call()

        assert result.content == "quick"
        execution = result.execution
        assert execution.status == "success"
        assert [span.status for span in execution.spans.order_by("started_at")] == ["error", "ok"]

    def test_fake_llm_delay_longer_than_the_timeout(self):
        with fake_llm() as llm:
            llm.respond("late", delay=DRIBBLE)
            error, elapsed = timed(SlowAgent.call)

        assert_timed_out(error, elapsed)
