"""The small interface every provider implements, and the shapes it speaks.

Messages use one shape for every provider (the OpenAI chat shape):
``{"role": "system" | "user" | "assistant" | "tool", "content": str}``; an assistant message that
asked for tools carries ``"tool_calls": [{"id", "name", "arguments"}]`` and a tool result message
carries ``"tool_call_id"`` and ``"name"``. Adapters translate to and from their SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    input_tokens: int = 0  # includes cached tokens
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

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
