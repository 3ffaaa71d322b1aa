"""The small interface every provider implements, and the shapes it speaks.

Messages use one shape for every provider (the OpenAI chat shape):
``{"role": "system" | "user" | "assistant" | "tool", "content": str}``; an assistant message that
asked for tools carries ``"tool_calls": [{"id", "name", "arguments"}]`` and a tool result message
carries ``"tool_call_id"`` and ``"name"``. Adapters translate to and from their SDK.

A request's ``timeout`` bounds it end to end (see :func:`attempt_deadline`): the SDK's own timeouts, which
bound each read, cover the connection and the wait for the answer's headers; from the headers on, a
watchdog thread hangs up the connection at the deadline, so a server that dribbles its stream or trickles
its body is cut off too.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ProviderError, ProviderTimeoutError

SyncClient = TypeVar("SyncClient")
AsyncClient = TypeVar("AsyncClient")
T = TypeVar("T")


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
    """What an answer said, however it came (a provider's call, a raw SDK call, streamed or not, a batch
    result line): text, tool calls, finish reason (in the chat API's words), usage and the model that
    answered. The provider modules' readers build it; nothing else reads a provider's answer."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""  # the model id the provider reports


def parse_arguments(raw: str | None) -> dict[str, Any]:
    """Tool call arguments sent as JSON text, as a dict; arguments that are not a JSON object are kept
    under ``_raw``."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


class StreamReader(Protocol):
    """Reads one streamed answer, chunk by chunk or event by event (each provider module has one per
    stream shape): :meth:`add` returns the text the item carried; ``output_started`` turns true with the
    first item that carried any output (text, tool calls, a refusal), ``failure`` is set by a stream that
    reported its own failure; :meth:`response` is the answer read so far."""

    output_started: bool
    failure: BaseException | None

    def add(self, item: Any) -> str: ...

    def response(self) -> ProviderResponse: ...


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


# -- wall-clock deadlines -------------------------------------------------------------------------------


class Deadline:
    """The wall-clock end of one provider request (none when ``timeout`` is None). A connection handed to
    :meth:`watch` is hung up when it passes (by the watchdog thread), which wakes a read blocked on it;
    :meth:`release` once the answer is read, before the connection goes back to the pool, so that a later
    request on it is never hung up."""

    def __init__(self, timeout: float | None, *, provider: str = "", label: str = "") -> None:
        self.timeout = timeout
        self.provider = provider
        self.label = label or provider
        self.at = time.monotonic() + timeout if timeout is not None else math.inf
        self._expired = False
        self._released = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def passed(self) -> bool:
        return self._expired or time.monotonic() >= self.at

    def watch(self, response: Any) -> None:
        """Hang up the connection of ``response`` (the SDK's httpx response, headers read) at the
        deadline, or at once if it has passed."""
        if self.timeout is None or getattr(response, "http_version", "") == "HTTP/2":
            return  # an HTTP/2 connection carries other requests too: the per-read timeouts and checks apply
        extensions = getattr(response, "extensions", None) or {}
        stream = extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._released:
                return
            if not self._expired:
                self._sockets.append(sock)
                return
        _hang_up(sock)

    def expire(self) -> None:
        with self._lock:
            if self._released:
                return
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _hang_up(sock)

    def release(self) -> None:
        """The answer is read: leave its connection alone from now on."""
        with self._lock:
            self._released = True
            self._sockets = []

    @property
    def released(self) -> bool:
        return self._released

    def check(self) -> None:
        """Raise :class:`ProviderTimeoutError` once the deadline has passed."""
        if self.passed():
            raise self.error()

    def error(self) -> ProviderTimeoutError:
        return ProviderTimeoutError(
            f"{self.label}: no complete answer within the timeout of {self.timeout:g} s",
            provider=self.provider,
        )

    async def before(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` until the deadline; it is cancelled then (its connection closes with it)."""
        if self.timeout is None:
            return await awaitable
        try:
            async with asyncio.timeout(max(self.at - time.monotonic(), 0.0)):
                return await awaitable
        except TimeoutError as exc:
            raise self.error() from exc


def _hang_up(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS: wakes the reader
    except OSError:
        pass  # closed already


class _Watchdog:
    """One daemon thread that expires deadlines as they pass (started on first use, again after a fork)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._condition:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="llm-agents-deadlines", daemon=True)
                self._thread.start()
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    while self._heap and self._heap[0][2].released:
                        heapq.heappop(self._heap)
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    if wait is not None and wait <= 0:
                        break
                    self._condition.wait(wait)
                deadline = heapq.heappop(self._heap)[2]
            deadline.expire()


watchdog = _Watchdog()


@contextmanager
def attempt_deadline(
    timeout: float | None, *, provider: str, label: str = "", hang_up: bool = True
) -> Iterator[Deadline]:
    """Bound one provider request by ``timeout`` seconds of wall-clock time (None: unbounded).

    Inside the block, hand the SDK's httpx response to ``deadline.watch`` as soon as its headers are in
    (with ``hang_up`` the watchdog hangs it up at the deadline; async code awaits through
    ``deadline.before`` instead), and ``deadline.release()`` once the answer is read. A failure once the
    deadline has passed (but for an HTTP error status the server answered) leaves the block as
    :class:`ProviderTimeoutError`, the failure as its cause.
    """
    deadline = Deadline(timeout, provider=provider, label=label)
    if hang_up and timeout is not None:
        watchdog.add(deadline)
    try:
        yield deadline
    except ProviderTimeoutError:
        raise
    except Exception as exc:
        if not deadline.passed() or getattr(exc, "status_code", None) is not None:
            raise  # in time, or the server's own answer (an HTTP error status), however late
        error = deadline.error()
        if isinstance(exc, ProviderError):
            error.input_tokens, error.output_tokens = exc.input_tokens, exc.output_tokens
        raise error from exc
    finally:
        deadline.release()
