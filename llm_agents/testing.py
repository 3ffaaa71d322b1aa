"""Test your agents without a network: ``fake_llm()`` answers for every provider while active.

::

    from llm_agents.testing import fake_llm

    with fake_llm() as llm:
        llm.respond("hello", model="gpt-4o", input_tokens=10, output_tokens=5)
        llm.fail("rate_limit", model="gpt-4o")
        result = MyAgent.call(query="x")
        assert llm.calls[0][0] == "gpt-4o"

Scripted answers are used first in, first out: a model's own queue before the any-model queue.
With none left, the offline provider's echo answers.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .providers import intercept, stop_intercepting
from .providers.base import Provider, ProviderRequest, ProviderResponse, StreamEvent, ToolCall, Usage
from .providers.fake import chunked, echo, estimate_tokens, messages_text

FAILURES = {
    "rate_limit": (errors.RateLimitError, "Rate limit reached (fake)", 429),
    "timeout": (errors.ProviderTimeoutError, "Request timed out (fake)", None),
    "server_error": (errors.ProviderError, "Internal server error (fake)", 500),
    "auth": (errors.AuthenticationError, "Invalid API key (fake)", 401),
    "invalid_request": (errors.InvalidRequestError, "Invalid request (fake)", 400),
}


@dataclass
class Scripted:
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[str] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    failure: str | None = None
    message: str | None = None
    delay: float = 0.0

    def response(self, request: ProviderRequest) -> ProviderResponse:
        content = "".join(self.chunks) if self.chunks is not None else self.content
        calls = [
            ToolCall(id=call.get("id") or f"call_{uuid.uuid4().hex[:12]}", name=call["name"],
                     arguments=dict(call.get("arguments") or {}))
            for call in self.tool_calls
        ]  # fmt: skip
        input_tokens = (
            self.input_tokens
            if self.input_tokens is not None
            else estimate_tokens(messages_text(request.messages))
        )
        return ProviderResponse(
            content=content,
            tool_calls=calls,
            finish_reason=self.finish_reason or ("tool_calls" if calls else "stop"),
            usage=Usage(
                input_tokens=input_tokens,
                output_tokens=self.output_tokens
                if self.output_tokens is not None
                else estimate_tokens(content),
                cached_tokens=self.cached_tokens,
                cache_write_tokens=self.cache_write_tokens,
                reasoning_tokens=self.reasoning_tokens,
            ),
            model=request.model,
        )

    def raise_failure(self) -> None:
        error_class, default_message, status_code = FAILURES[self.failure or ""]
        raise error_class(self.message or default_message, status_code=status_code)


class FakeLLM(Provider):
    """The object ``fake_llm()`` yields: script answers and failures, then inspect ``calls``."""

    name = "fake_llm"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._any: deque[Scripted] = deque()
        self._by_model: dict[str, deque[Scripted]] = {}
        self.calls: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []

    def _queue(self, model: str | None) -> deque[Scripted]:
        return self._any if model is None else self._by_model.setdefault(model, deque())

    def respond(
        self,
        content: str = "",
        *,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        tool_calls: list[dict[str, Any]] | None = None,
        chunks: list[str] | None = None,
        finish_reason: str | None = None,
        delay: float = 0.0,
    ) -> FakeLLM:
        """Queue an answer (for ``model`` only, or for any model). Tokens default to characters ÷ 4.
        ``input_tokens`` includes ``cached_tokens`` (cache reads) and ``cache_write_tokens`` (cache writes)."""
        if input_tokens is not None and cached_tokens + cache_write_tokens > input_tokens:
            raise ValueError(
                "cached_tokens + cache_write_tokens cannot exceed input_tokens "
                "(input_tokens includes cache reads and writes)."
            )
        with self._lock:
            self._queue(model).append(
                Scripted(
                    content=content,
                    tool_calls=list(tool_calls or []),
                    chunks=list(chunks) if chunks is not None else None,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cached_tokens=cached_tokens,
                    cache_write_tokens=cache_write_tokens,
                    reasoning_tokens=reasoning_tokens,
                    finish_reason=finish_reason,
                    delay=delay,
                )
            )
        return self

    def fail(
        self, kind: str, *, model: str | None = None, message: str | None = None, delay: float = 0.0
    ) -> FakeLLM:
        """Queue a failure: rate_limit, timeout, server_error, auth or invalid_request, raised after
        ``delay`` seconds."""
        if kind not in FAILURES:
            raise ValueError(f"Unknown failure {kind!r}; choose one of: {', '.join(FAILURES)}.")
        with self._lock:
            self._queue(model).append(Scripted(failure=kind, message=message, delay=delay))
        return self

    def _next(self, request: ProviderRequest) -> Scripted | None:
        params = dict(request.params)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.tools:
            params["tools"] = request.tools
        with self._lock:
            self.calls.append((request.model, [dict(m) for m in request.messages], params))
            for queue in (self._by_model.get(request.model), self._any):
                if queue:
                    return queue.popleft()
        return None

    def _answer(self, request: ProviderRequest) -> tuple[ProviderResponse, list[str] | None]:
        scripted = self._next(request)
        if scripted is None:
            return echo(request), None
        if scripted.delay:
            if request.timeout is not None and scripted.delay > request.timeout:
                time.sleep(request.timeout)  # as a real provider would: cut off at the deadline
                raise errors.ProviderTimeoutError(
                    f"fake_llm: no complete answer within the timeout of {request.timeout:g} s"
                )
            time.sleep(scripted.delay)
        if scripted.failure:
            scripted.raise_failure()
        return scripted.response(request), scripted.chunks

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        return self._answer(request)[0]

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        response, chunks = self._answer(request)
        return chunked(response, chunks)

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        return self.complete(request)


@contextmanager
def fake_llm() -> Iterator[FakeLLM]:
    """Intercept every provider (in every thread) while the block runs."""
    llm = FakeLLM()
    intercept(llm)
    try:
        yield llm
    finally:
        stop_intercepting(llm)
