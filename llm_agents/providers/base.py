"""The small interface every provider implements, and the shapes it speaks.

Messages use one shape for every provider (the OpenAI chat shape):
``{"role": "system" | "user" | "assistant" | "tool", "content": str}``; an assistant message that
asked for tools carries ``"tool_calls": [{"id", "name", "arguments"}]`` and a tool result message
carries ``"tool_call_id"`` and ``"name"``. Adapters translate to and from their SDK.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

SyncClient = TypeVar("SyncClient")
AsyncClient = TypeVar("AsyncClient")


@dataclass
class Usage:
    input_tokens: int = 0  # includes cached tokens and cache writes
    output_tokens: int = 0
    cached_tokens: int = 0  # read from the provider's prompt cache
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # written to the provider's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class ProviderRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "description", "parameters"}]
    params: dict[str, Any] = field(default_factory=dict)  # other model parameters, passed through


@dataclass
class ProviderResponse:
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""  # the model id the provider reports


@dataclass
class StreamEvent:
    """A text delta; the last event of a stream carries the complete ``response`` instead."""

    delta: str = ""
    response: ProviderResponse | None = None


class Provider:
    """Base class of providers. Subclasses implement ``complete`` and ``stream`` (and may override
    the async forms, which by default run the sync ones in a worker thread)."""

    name = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        raise NotImplementedError

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        raise NotImplementedError

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.complete, thread_sensitive=False)(request)

    async def astream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        for event in self.stream(request):
            yield event


class SDKClients(Generic[SyncClient, AsyncClient]):
    """An SDK's clients for one provider instance: the synchronous client, built on first use, and
    one asynchronous client per event loop, since an async HTTP pool belongs to the loop that opened it."""

    def __init__(self, build_sync: Callable[[], SyncClient], build_async: Callable[[], AsyncClient]) -> None:
        self._build_sync = build_sync
        self._build_async = build_async
        self._sync: SyncClient | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def sync(self) -> SyncClient:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._build_sync()
        return self._sync

    def for_running_loop(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = self._async[loop] = self._build_async()
        return client
