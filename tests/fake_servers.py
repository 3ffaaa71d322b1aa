"""A local fake of the OpenAI and Anthropic HTTP APIs, for driving the real SDKs in tests.

The server listens on 127.0.0.1 on a free port and answers from a route table. A test scripts its answers
with :meth:`FakeServer.enqueue` (first in, first out) and reads what the SDK sent from
:attr:`FakeServer.requests`::

    def test_something(openai_server):
        openai_server.enqueue(openai_chat("hello", prompt_tokens=10, completion_tokens=2))
        client = openai.OpenAI(api_key="test", base_url=openai_server.url, max_retries=0)
        ...
        assert openai_server.requests[0].json["model"] == "gpt-4o"

``openai_server.url`` is the base URL the openai SDK expects (it ends in ``/v1``); ``anthropic_server.url``
is the one the anthropic SDK expects (the SDK adds ``/v1/...`` itself). Both fixtures serve every route, so
one server can answer both SDKs; ``server.root`` is the bare ``http://127.0.0.1:PORT``.

A reply queued with ``path=`` is used only by requests to that path and before any reply queued without one.
With nothing queued a route answers with its default handler (chat completions and messages echo the last
user message) or, for a path with no route, a 404. Further endpoints are added with :meth:`FakeServer.route`::

    server.route("POST", "/v1/batches", create_batch)            # handler(request) -> Reply
    server.route("GET", "/v1/batches/{batch_id}", retrieve_batch)  # request.params["batch_id"]
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = [
    "FakeServer",
    "RecordedRequest",
    "Reply",
    "anthropic_error",
    "anthropic_message",
    "anthropic_message_stream",
    "anthropic_server",
    "fake_server",
    "openai_chat",
    "openai_chat_stream",
    "openai_error",
    "openai_server",
]


@dataclass
class Reply:
    """One scripted HTTP answer: a JSON ``body`` or, when ``events`` is set, a server-sent event stream.

    ``events`` holds ``(event name or None, data)`` pairs; data that is not a string is JSON-encoded.
    ``delay`` seconds pass before anything is sent (for timeouts); ``event_delay`` between events;
    ``body_delay`` between the pieces of a JSON body, which is sent in ``body_pieces`` pieces after the
    headers (a server that answers at once and then trickles its body).
    """

    status: int = 200
    body: Any = None
    events: list[tuple[str | None, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    event_delay: float = 0.0
    body_delay: float = 0.0
    body_pieces: int = 20


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # values of {placeholders} in the route

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Handler = Callable[[RecordedRequest], Reply]


class FakeServer:
    """A threaded HTTP server with a route table, a queue of scripted replies and a log of requests."""

    def __init__(self, url_suffix: str = "") -> None:
        self.requests: list[RecordedRequest] = []
        #: How many answers the client cut off (the connection closed while the server was still sending).
        self.aborted = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._queue: deque[Reply] = deque()
        self._path_queues: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.root = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = self.root + url_suffix
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-llm-server",
            daemon=True,
        )
        install_default_routes(self)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer ``method pattern`` with ``handler`` when no scripted reply is queued. Later routes win;
        ``{name}`` in the pattern matches one path segment and lands in ``request.params``."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
        self._routes.insert(0, (method.upper(), re.compile(f"^{regex}$"), handler))

    def enqueue(self, *replies: Reply, path: str | None = None) -> None:
        """Script the next answers, in order; with ``path`` only requests to that exact path take them."""
        with self._lock:
            queue = self._queue if path is None else self._path_queues.setdefault(path, deque())
            queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are still unused."""
        with self._lock:
            return len(self._queue) + sum(len(queue) for queue in self._path_queues.values())

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def _reply_for(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            path_queue = self._path_queues.get(request.path)
            if path_queue:
                return path_queue.popleft()
            if self._queue:
                return self._queue.popleft()
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return handler(request)
        return Reply(
            404, {"error": {"message": f"No route for {request.method} {request.path}", "type": "not_found"}}
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self) -> None:
                split = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self._read_body(),
                )
                reply = server._reply_for(request)
                if reply.delay and server._closing.wait(reply.delay):
                    return
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:
                        server.aborted += 1

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.events is None:
                    payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if not reply.body_delay:
                        self.wfile.write(payload)
                        return
                    size = -(-len(payload) // reply.body_pieces)
                    for start in range(0, len(payload), size):
                        self.wfile.write(payload[start : start + size])
                        self.wfile.flush()
                        if server._closing.wait(reply.body_delay):
                            return
                    return
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                for name, data in reply.events:
                    text = data if isinstance(data, str) else json.dumps(data)
                    frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                    self.wfile.write(frame.encode())
                    self.wfile.flush()
                    if reply.event_delay and server._closing.wait(reply.event_delay):
                        return

        return RequestHandler


# OpenAI chat completions ---------------------------------------------------------------------------------


def _openai_usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int, reasoning_tokens: int
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0},
    }


def _openai_tool_calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id", f"call_{index}"),
            "type": "function",
            "function": {
                "name": call["name"],
                "arguments": call["arguments"]
                if isinstance(call.get("arguments"), str)
                else json.dumps(call.get("arguments", {})),
            },
        }
        for index, call in enumerate(tool_calls)
    ]


def openai_chat(
    content: str | None = "",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    finish_reason: str | None = None,
    delay: float = 0.0,
) -> Reply:
    """A chat completion; ``tool_calls`` are ``{"id", "name", "arguments"}`` dicts."""
    message: dict[str, Any] = {"role": "assistant", "content": content or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = _openai_tool_calls(tool_calls)
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": _openai_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens),
    }
    return Reply(body=body, delay=delay)


def openai_chat_stream(
    chunks: Sequence[str] = (),
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    include_usage: bool = True,
    finish_reason: str | None = None,
    event_delay: float = 0.0,
) -> Reply:
    """A streamed chat completion: one chunk per text delta, tool call arguments split in two, then the
    finish reason and (as OpenAI does with ``include_usage``) a last chunk with usage and no choices."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    events += [(None, chunk({"content": text})) for text in chunks]
    for index, call in enumerate(_openai_tool_calls(tool_calls or [])):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        first = {"index": index, "id": call["id"], "type": "function"}
        first["function"] = {"name": call["function"]["name"], "arguments": arguments[:half]}
        events.append((None, chunk({"tool_calls": [first]})))
        events.append(
            (None, chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}))
        )
    events.append((None, chunk({}, finish_reason or ("tool_calls" if tool_calls else "stop"))))
    if include_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = _openai_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens)
        events.append((None, last))
    events.append((None, "[DONE]"))
    return Reply(events=events, event_delay=event_delay)


def openai_error(status: int, message: str = "Scripted error.", *, error_type: str | None = None) -> Reply:
    error_type = error_type or {
        400: "invalid_request_error",
        401: "invalid_request_error",
        404: "invalid_request_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    return Reply(status, {"error": {"message": message, "type": error_type, "param": None, "code": None}})


# Anthropic messages --------------------------------------------------------------------------------------


def _anthropic_usage(
    input_tokens: int, output_tokens: int, cache_read_input_tokens: int, cache_creation_input_tokens: int
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
    }


def anthropic_message(
    content: str = "",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "claude-3-5-haiku-20241022",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    stop_reason: str | None = None,
    delay: float = 0.0,
) -> Reply:
    """A message; ``tool_calls`` are ``{"id", "name", "arguments"}`` dicts, sent as tool_use blocks."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    blocks += [
        {
            "type": "tool_use",
            "id": call.get("id", f"toolu_{index}"),
            "name": call["name"],
            "input": call["arguments"],
        }
        for index, call in enumerate(tool_calls or [])
    ]
    body = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason or ("tool_use" if tool_calls else "end_turn"),
        "stop_sequence": None,
        "usage": _anthropic_usage(
            input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens
        ),
    }
    return Reply(body=body, delay=delay)


def anthropic_message_stream(
    chunks: Sequence[str] = (),
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "claude-3-5-haiku-20241022",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    error: dict[str, Any] | None = None,
    stop_reason: str | None = None,
    event_delay: float = 0.0,
) -> Reply:
    """A streamed message as Anthropic sends it: message_start (input usage), content blocks with deltas,
    message_delta (stop reason, output usage), message_stop. ``error`` (``{"type", "message"}``) replaces
    the end of the stream with an ``error`` event after the text deltas."""
    usage = _anthropic_usage(input_tokens, 1, cache_read_input_tokens, cache_creation_input_tokens)
    start = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": []}
    start |= {"stop_reason": None, "stop_sequence": None, "usage": usage}
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    index = 0
    if chunks:
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        for text in chunks:
            delta = {"type": "text_delta", "text": text}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        if error:
            events.append(("error", {"type": "error", "error": error}))
            return Reply(events=events, event_delay=event_delay)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    for offset, call in enumerate(tool_calls or []):
        block = {
            "type": "tool_use",
            "id": call.get("id", f"toolu_{offset}"),
            "name": call["name"],
            "input": {},
        }
        arguments = json.dumps(call["arguments"])
        half = len(arguments) // 2
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        for part in (arguments[:half], arguments[half:]):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    stop_reason = stop_reason or ("tool_use" if tool_calls else "end_turn")
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    events.append(("message_delta", message_delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return Reply(events=events, event_delay=event_delay)


def anthropic_error(status: int, message: str = "Scripted error.", *, error_type: str | None = None) -> Reply:
    error_type = error_type or {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return Reply(status, {"type": "error", "error": {"type": error_type, "message": message}})


# OpenAI responses ----------------------------------------------------------------------------------------

__all__ += ["openai_response", "openai_response_stream"]


def _responses_usage(
    input_tokens: int, output_tokens: int, cached_tokens: int, reasoning_tokens: int
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def _responses_body(
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
    }


def _responses_output(content: str, tool_calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if content:
        text = {"type": "output_text", "text": content, "annotations": []}
        output.append(
            {
                "type": "message",
                "id": "msg_fake",
                "status": "completed",
                "role": "assistant",
                "content": [text],
            }
        )
    for index, call in enumerate(_openai_tool_calls(tool_calls or [])):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{index}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
        )
    return output


def openai_response(
    content: str = "",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    incomplete_reason: str | None = None,
    delay: float = 0.0,
) -> Reply:
    """A response of the responses API (``POST /v1/responses``): a message with ``content`` and one
    ``function_call`` item per tool call (``{"id", "name", "arguments"}`` dicts); with
    ``incomplete_reason`` (``max_output_tokens``, ``content_filter``) its status is ``incomplete``."""
    usage = _responses_usage(input_tokens, output_tokens, cached_tokens, reasoning_tokens)
    status = "incomplete" if incomplete_reason else "completed"
    output = _responses_output(content, tool_calls)
    return Reply(body=_responses_body(model, status, output, usage, incomplete_reason), delay=delay)


def openai_response_stream(
    chunks: Sequence[str] = (),
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    incomplete_reason: str | None = None,
    event_delay: float = 0.0,
) -> Reply:
    """A streamed response as OpenAI sends it: ``response.created``, one ``response.output_text.delta``
    per chunk, the ``…done`` events, then ``response.completed`` carrying the usage (``response.incomplete``
    with ``incomplete_reason``)."""
    text = "".join(chunks)
    message = {
        "type": "message",
        "id": "msg_fake",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    part = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _responses_body(model, "in_progress", [], None)},
        {"type": "response.in_progress", "response": _responses_body(model, "in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0, "item": message},
        {"type": "response.content_part.added", "item_id": "msg_fake", "output_index": 0, "content_index": 0,
         "part": part},
    ]  # fmt: skip
    location = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    events += [
        {"type": "response.output_text.delta", **location, "delta": chunk, "logprobs": []} for chunk in chunks
    ]
    events.append({"type": "response.output_text.done", **location, "text": text, "logprobs": []})
    events.append({"type": "response.content_part.done", **location, "part": {**part, "text": text}})
    output = _responses_output(text, None)
    if output:
        events.append({"type": "response.output_item.done", "output_index": 0, "item": output[0]})
    usage = _responses_usage(input_tokens, output_tokens, cached_tokens, reasoning_tokens)
    status = "incomplete" if incomplete_reason else "completed"
    final = _responses_body(model, status, output, usage, incomplete_reason)
    events.append({"type": f"response.{status}", "response": final})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return Reply(events=[(event["type"], event) for event in events], event_delay=event_delay)


def _echo_response(request: RecordedRequest) -> Reply:
    payload = request.json or {}
    given = payload.get("input", "")
    text = given if isinstance(given, str) else _last_user_text(given)
    model = payload.get("model", "gpt-4o-mini")
    if payload.get("stream"):
        return openai_response_stream([text], model=model)
    return openai_response(text, model=model)


# Default routes ------------------------------------------------------------------------------------------


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))
    return ""


def _echo_chat_completion(request: RecordedRequest) -> Reply:
    payload = request.json or {}
    text = _last_user_text(payload.get("messages", []))
    if payload.get("stream"):
        return openai_chat_stream([text], model=payload.get("model", "gpt-4o-mini"))
    return openai_chat(text, model=payload.get("model", "gpt-4o-mini"))


def _echo_message(request: RecordedRequest) -> Reply:
    payload = request.json or {}
    text = _last_user_text(payload.get("messages", []))
    if payload.get("stream"):
        return anthropic_message_stream([text], model=payload.get("model", "claude-3-5-haiku"))
    return anthropic_message(text, model=payload.get("model", "claude-3-5-haiku"))


def install_default_routes(server: FakeServer) -> None:
    server.route("POST", "/v1/chat/completions", _echo_chat_completion)
    server.route("POST", "/v1/messages", _echo_message)
    server.route("POST", "/v1/responses", _echo_response)
    server.batches = FakeBatchAPI(server)


# Fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A running :class:`FakeServer`; ``url`` is its bare root."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[FakeServer]:
    """A running :class:`FakeServer` whose ``url`` is the openai SDK's ``base_url`` (``…/v1``)."""
    with FakeServer("/v1") as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[FakeServer]:
    """A running :class:`FakeServer` whose ``url`` is the anthropic SDK's ``base_url``."""
    with FakeServer() as server:
        yield server


# OpenAI Files and Batch API ------------------------------------------------------------------------------

__all__ += ["BatchLineError", "FakeBatchAPI"]


@dataclass
class BatchLineError:
    """What a :attr:`FakeBatchAPI.respond` function returns for a request that fails inside a batch: the
    line goes to the error file with this status and error."""

    status_code: int = 400
    message: str = "Scripted batch request error."
    code: str = "invalid_request_error"


def _batch_echo(custom_id: str, body: dict[str, Any]) -> str:
    given = body.get("input")
    if given is None:
        return _last_user_text(body.get("messages", []))
    return given if isinstance(given, str) else _last_user_text(given)


class FakeBatchAPI:
    """The Files (upload, content, delete) and Batch (create, retrieve, cancel, list) endpoints, simulating
    a batch's lifecycle over the uploaded JSONL. Every :class:`FakeServer` has one as ``server.batches``.

    By default a batch finishes (``completed``) the first time it is retrieved, every line answered by
    :attr:`respond`: a function ``(custom_id, body) -> str | dict | BatchLineError`` — a string is the
    answer's text (usage estimated at characters ÷ 4), a dict the whole response body, a BatchLineError a
    failed line. The default echoes the input. With ``auto_complete = False`` a retrieve answers
    ``in_progress`` until a test calls :meth:`finish`. ``drop`` holds custom ids left out of both files.
    """

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.respond: Callable[[str, dict[str, Any]], Any] = _batch_echo
        self.auto_complete = True
        self.drop: set[str] = set()
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self._ids = 0
        server.route("POST", "/v1/files", self._upload)
        server.route("GET", "/v1/files/{file_id}", self._file)
        server.route("GET", "/v1/files/{file_id}/content", self._content)
        server.route("DELETE", "/v1/files/{file_id}", self._delete)
        server.route("POST", "/v1/batches", self._create)
        server.route("GET", "/v1/batches", self._list)
        server.route("GET", "/v1/batches/{batch_id}", self._retrieve)
        server.route("POST", "/v1/batches/{batch_id}/cancel", self._cancel)

    # -- what tests read -------------------------------------------------------------------------------

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The request lines of a batch's input file."""
        with self.lock:
            content = self.files[self.batches[batch_id]["input_file_id"]]["content"]
        return [json.loads(line) for line in content.splitlines() if line.strip()]

    def submitted_custom_ids(self) -> list[str]:
        """The custom id of every line of every created batch, in order (duplicates kept)."""
        return [line["custom_id"] for batch_id in list(self.batches) for line in self.input_lines(batch_id)]

    def file_content(self, file_id: str) -> bytes:
        with self.lock:
            return self.files[file_id]["content"]

    # -- what tests drive ------------------------------------------------------------------------------

    def finish(
        self, batch_id: str, status: str = "completed", *, answered: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """End a batch as ``status``: completed answers every line; expired and cancelled answer only
        the custom ids in ``answered`` and put the others in the error file (``batch_expired`` /
        ``batch_cancelled``); failed (input validation) writes no files."""
        with self.lock:
            batch = self.batches[batch_id]
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                return batch
            self._finish(batch, status, answered)
            return dict(batch)

    # -- routes ----------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:06d}"

    def _new_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        record = {
            "id": self._next_id("file-fake"),
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[record["id"]] = {**record, "content": content}
        return record

    def _upload(self, request: RecordedRequest) -> Reply:
        fields = _multipart(request)
        upload = fields.get("file")
        if upload is None:
            return openai_error(400, "No file was uploaded.")
        filename, content = upload
        with self.lock:
            record = self._new_file(
                content, filename or "upload.jsonl", (fields.get("purpose") or (None, b""))[1].decode()
            )
        request.body = b""  # do not keep every upload twice in server.requests
        return Reply(body=record)

    def _file(self, request: RecordedRequest) -> Reply:
        with self.lock:
            record = self.files.get(request.params["file_id"])
        if record is None:
            return openai_error(404, "No such file.")
        return Reply(body={key: value for key, value in record.items() if key != "content"})

    def _content(self, request: RecordedRequest) -> Reply:
        with self.lock:
            record = self.files.get(request.params["file_id"])
        if record is None:
            return openai_error(404, "No such file.")
        return Reply(body=record["content"], headers={"Content-Type": "application/octet-stream"})

    def _delete(self, request: RecordedRequest) -> Reply:
        with self.lock:
            deleted = self.files.pop(request.params["file_id"], None) is not None
        return Reply(body={"id": request.params["file_id"], "object": "file", "deleted": deleted})

    def _create(self, request: RecordedRequest) -> Reply:
        payload = request.json or {}
        with self.lock:
            if payload.get("input_file_id") not in self.files:
                return openai_error(400, "No such input file.")
            lines = self.files[payload["input_file_id"]]["content"].count(b"\n")
            batch = {
                "id": self._next_id("batch_fake"),
                "object": "batch",
                "endpoint": payload.get("endpoint"),
                "errors": None,
                "input_file_id": payload["input_file_id"],
                "completion_window": payload.get("completion_window"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "in_progress_at": None,
                "expires_at": int(time.time()) + 86400,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": lines, "completed": 0, "failed": 0},
                "metadata": payload.get("metadata"),
            }
            self.batches[batch["id"]] = batch
            return Reply(body=dict(batch))

    def _list(self, request: RecordedRequest) -> Reply:
        with self.lock:
            data = [dict(batch) for batch in self.batches.values()]
        return Reply(
            body={"object": "list", "data": data, "has_more": False, "first_id": None, "last_id": None}
        )

    def _retrieve(self, request: RecordedRequest) -> Reply:
        with self.lock:
            batch = self.batches.get(request.params["batch_id"])
            if batch is None:
                return openai_error(404, "No such batch.")
            if batch["status"] == "validating":
                batch["status"], batch["in_progress_at"] = "in_progress", int(time.time())
            if self.auto_complete and batch["status"] == "in_progress":
                self._finish(batch, "completed", None)
            elif self.auto_complete and batch["status"] == "cancelling":
                self._finish(batch, "cancelled", ())
            return Reply(body=dict(batch))

    def _cancel(self, request: RecordedRequest) -> Reply:
        with self.lock:
            batch = self.batches.get(request.params["batch_id"])
            if batch is None:
                return openai_error(404, "No such batch.")
            if batch["status"] in ("validating", "in_progress", "finalizing"):
                batch["status"], batch["cancelling_at"] = "cancelling", int(time.time())
            return Reply(body=dict(batch))

    # -- the simulation --------------------------------------------------------------------------------

    def _finish(self, batch: dict[str, Any], status: str, answered: Sequence[str] | None) -> None:
        now = int(time.time())
        batch["status"] = status
        batch[f"{status}_at"] = now
        if status == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [
                    {
                        "code": "invalid_json_line",
                        "message": "Scripted validation failure.",
                        "line": 1,
                        "param": None,
                    }
                ],
            }
            return
        answer_all = status == "completed"
        answered_ids = set(answered or ())
        output, errors = [], []
        content = self.files[batch["input_file_id"]]["content"]
        for raw in content.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            custom_id = line["custom_id"]
            if custom_id in self.drop:
                continue
            request_id = f"req_{custom_id[:24]}"
            if not answer_all and custom_id not in answered_ids:
                error = {
                    "code": f"batch_{status}",
                    "message": f"This request could not be executed before the batch {status}.",
                }
                errors.append(
                    {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": None, "error": error}
                )
                continue
            answer = self.respond(custom_id, line["body"])
            if isinstance(answer, BatchLineError):
                body = {
                    "error": {
                        "message": answer.message,
                        "type": answer.code,
                        "param": None,
                        "code": answer.code,
                    }
                }
                response = {"status_code": answer.status_code, "request_id": request_id, "body": body}
                errors.append(
                    {
                        "id": f"batch_req_{custom_id}",
                        "custom_id": custom_id,
                        "response": response,
                        "error": None,
                    }
                )
                continue
            if isinstance(answer, str):
                answer = self._body(line, answer)
            response = {"status_code": 200, "request_id": request_id, "body": answer}
            output.append(
                {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": response, "error": None}
            )
        batch["request_counts"] = {
            "total": len(output) + len(errors),
            "completed": len(output),
            "failed": len(errors),
        }
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                data = b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in lines)
                batch[key] = self._new_file(data, f"{batch['id']}_{key[:-8]}.jsonl", "batch_output")["id"]

    def _body(self, line: dict[str, Any], text: str) -> dict[str, Any]:
        body = line["body"]
        model = body.get("model", "gpt-4o-mini")
        prompt = json.dumps(body.get("input") or body.get("messages") or "") + (
            body.get("instructions") or ""
        )
        input_tokens = self.input_tokens if self.input_tokens is not None else max(len(prompt) // 4, 1)
        output_tokens = self.output_tokens if self.output_tokens is not None else max(len(text) // 4, 1)
        if line.get("url") == "/v1/chat/completions":
            return openai_chat(
                text, model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
            ).body
        usage = _responses_usage(input_tokens, output_tokens, 0, 0)
        return _responses_body(model, "completed", _responses_output(text, None), usage)


def _multipart(request: RecordedRequest) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, content)."""
    content_type = request.headers.get("content-type", "")
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in request.body.split(b"--" + match.group(1).encode()):
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = (
                filename.group(1).decode() if filename else None,
                content[:-2] if content.endswith(b"\r\n") else content,
            )
    return fields
