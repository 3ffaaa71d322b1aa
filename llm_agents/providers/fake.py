"""The offline provider for ``fake/…`` models: answers deterministically with no key and no network."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Provider, ProviderRequest, ProviderResponse, StreamEvent, Usage


def estimate_tokens(text: str) -> int:
    """Characters ÷ 4, at least 1 for non-empty text (the usual rough rule)."""
    return (len(text) + 3) // 4 if text else 0


def messages_text(messages: list[dict[str, Any]]) -> str:
    return "".join(str(message.get("content") or "") for message in messages)


def echo(request: ProviderRequest) -> ProviderResponse:
    """Answer with the last user (or tool) message, tokens estimated as characters ÷ 4."""
    last = next(
        (m for m in reversed(request.messages) if m.get("role") in ("user", "tool")),
        {"content": ""},
    )
    content = str(last.get("content") or "")
    return ProviderResponse(
        content=content,
        finish_reason="stop",
        usage=Usage(
            input_tokens=estimate_tokens(messages_text(request.messages)),
            output_tokens=estimate_tokens(content),
        ),
        model=request.model,
    )


def chunked(response: ProviderResponse, chunks: list[str] | None = None) -> Iterator[StreamEvent]:
    """Stream ``response`` as text deltas (words, or the given chunks) and then the whole response."""
    if chunks is None:
        words = response.content.split(" ")
        chunks = [word if i == 0 else " " + word for i, word in enumerate(words)] if response.content else []
    for chunk in chunks:
        yield StreamEvent(delta=chunk)
    yield StreamEvent(response=response)


class FakeProvider(Provider):
    """Echoes the last user message; see :func:`echo`."""

    name = "fake"

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        return echo(request)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        return chunked(echo(request))
