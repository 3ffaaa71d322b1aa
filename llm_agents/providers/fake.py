"""The offline provider for ``fake/…`` models: answers deterministically with no key and no network.

It answers at once unless ``latency`` is given in its ``PROVIDERS`` options: then each call waits a
time drawn from a log-normal distribution per model (the usual shape of API latencies), so durations,
percentiles and time to first token look like those of a real provider::

    "fake": {"class": "llm_agents.providers.fake.FakeProvider",
             "latency": {"fake/large": {"median_ms": 60, "p95_ms": 240}, "*": {"median_ms": 20, "p95_ms": 60}}}
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


#: Share of a streamed answer's latency spent before its first token.
FIRST_TOKEN_SHARE = 0.3
#: z-score of the 95th percentile of a normal distribution.
Z_95 = 1.6449


@dataclass(frozen=True)
class LatencyDistribution:
    """A log-normal latency: half the calls are faster than ``median_ms``, 95 % faster than ``p95_ms``."""

    median_ms: float
    p95_ms: float

    def sample(self, rng: random.Random) -> float:
        """One latency, in seconds."""
        sigma = math.log(self.p95_ms / self.median_ms) / Z_95
        return rng.lognormvariate(math.log(self.median_ms), sigma) / 1000


def parse_latency(latency: Mapping[str, Any] | None) -> dict[str, LatencyDistribution]:
    """``{model or "*": {"median_ms", "p95_ms"}}`` as distributions; ``ValueError`` naming what is wrong."""
    if latency is None:
        return {}
    if not isinstance(latency, Mapping):
        raise ValueError('The fake provider\'s "latency" must map model ids (or "*") to {median_ms, p95_ms}.')
    distributions = {}
    for model, spec in latency.items():
        if not isinstance(spec, Mapping) or set(spec) != {"median_ms", "p95_ms"}:
            raise ValueError(f"latency[{model!r}] must be {{'median_ms': …, 'p95_ms': …}}, not {spec!r}.")
        median, p95 = spec["median_ms"], spec["p95_ms"]
        if not all(isinstance(value, int | float) and value > 0 for value in (median, p95)) or p95 < median:
            raise ValueError(f"latency[{model!r}] needs 0 < median_ms <= p95_ms, not {median!r} and {p95!r}.")
        distributions[str(model)] = LatencyDistribution(float(median), float(p95))
    return distributions


def paced(events: Iterator[StreamEvent], seconds: float) -> Iterator[StreamEvent]:
    """``events`` spread over ``seconds``: :data:`FIRST_TOKEN_SHARE` of it before the first, the rest
    evenly before each of the others."""
    events_list = list(events)
    time.sleep(seconds * FIRST_TOKEN_SHARE)
    gap = seconds * (1 - FIRST_TOKEN_SHARE) / max(len(events_list) - 1, 1)
    for index, event in enumerate(events_list):
        if index:
            time.sleep(gap)
        yield event


class FakeProvider(Provider):
    """Echoes the last user message (see :func:`echo`), after the simulated ``latency`` if one is set
    for the model (or for ``"*"``); ``seed`` makes the drawn latencies repeatable."""

    name = "fake"

    def __init__(self, *, latency: Mapping[str, Any] | None = None, seed: int | None = None, **options: Any):
        super().__init__(**options)
        self.latency = parse_latency(latency)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def simulated_latency(self, model: str) -> float:
        """Seconds the next call to ``model`` takes (0 without a ``latency`` for it)."""
        distribution = self.latency.get(model) or self.latency.get("*")
        if distribution is None:
            return 0.0
        with self._rng_lock:
            return distribution.sample(self._rng)

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        seconds = self.simulated_latency(request.model)
        if seconds:
            time.sleep(seconds)
        return echo(request)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        seconds = self.simulated_latency(request.model)
        events = chunked(echo(request))
        return paced(events, seconds) if seconds else events
