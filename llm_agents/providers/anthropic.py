"""Anthropic through the official ``anthropic`` SDK's messages API.

Options, from ``LLM_AGENTS["PROVIDERS"]["anthropic"]`` in its dict form::

    {"class": "llm_agents.providers.anthropic.AnthropicProvider", "api_key": "...", "base_url": "..."}

``api_key`` and ``base_url`` default to the SDK's own (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``).
``default_max_tokens`` (4096) is sent when a request sets no ``max_tokens``, which Anthropic requires.
The API version the SDK speaks by default (2026-10-21) rejects ``temperature``, so an agent's temperature
is not sent unless ``send_temperature`` is true (for a client pinned to ``anthropic-version: 2023-06-01``
through ``default_headers``). Any other option goes to the SDK client's constructor. The SDK's own retries
are switched off: the agent runtime retries.

This module reads every Anthropic message, wherever it comes from (the provider or a raw SDK call), as a
:class:`~llm_agents.providers.base.ProviderResponse`: :func:`response_from` a whole message, and
:class:`MessageStreamReader` a stream of message events (the provider's own streams and the raw SDK's).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..context import provider_call
from ..errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from .base import (
    Deadline,
    Provider,
    ProviderRequest,
    ProviderResponse,
    SDKClients,
    StreamEvent,
    ToolCall,
    Usage,
    attempt_deadline,
    parse_arguments,
)

try:
    import anthropic
    import httpx2
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImproperlyConfigured(
        "The Anthropic provider needs the anthropic SDK: pip install 'django-llm-agents[anthropic]'."
    ) from exc

__all__ = [
    "FINISH_REASONS",
    "AnthropicProvider",
    "MessageStreamReader",
    "finish_reason",
    "map_error",
    "response_from",
    "to_anthropic_messages",
    "usage_from",
]

DEFAULT_MAX_TOKENS = 4096
MODEL_PREFIX = "anthropic/"
#: Anthropic's stop reasons in the vocabulary every provider reports (the OpenAI chat API's). ``pause_turn``
#: (a long turn paused by the server, to be continued by sending it back) is an answer cut short: ``length``.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "pause_turn": "length",
    "refusal": "content_filter",
}
_RESERVED = {"model", "messages", "stream", "system", "max_tokens"}
_UNRESOLVED_AUTH = "Could not resolve authentication method"


class AnthropicProvider(Provider):
    """Messages with the official SDK; one client per provider instance (one async client per event
    loop, since an async HTTP pool belongs to the loop that opened it)."""

    name = "anthropic"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        client_options = dict(options)
        self.default_max_tokens: int = client_options.pop("default_max_tokens", None) or DEFAULT_MAX_TOKENS
        self.send_temperature: bool = bool(client_options.pop("send_temperature", False))
        client_options["max_retries"] = 0
        self.client_options = client_options
        self.clients: SDKClients[anthropic.Anthropic, anthropic.AsyncAnthropic] = SDKClients(
            lambda: _build(anthropic.Anthropic, client_options),
            lambda: _build(anthropic.AsyncAnthropic, client_options),
        )
        self._create_parameters: set[str] | None = None

    @property
    def client(self) -> anthropic.Anthropic:
        """The synchronous SDK client, built on first use."""
        return self.clients.sync()

    @property
    def async_client(self) -> anthropic.AsyncAnthropic:
        """The asynchronous SDK client of the running event loop, built on first use."""
        return self.clients.for_running_loop()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        with self.deadline(request) as deadline, translated_errors(), provider_call():
            arguments = self.create_arguments(request)
            with self.client.messages.with_streaming_response.create(**arguments) as answer:
                deadline.watch(answer.http_response)
                message = answer.parse()
                deadline.release()
        return response_from(message, request.model)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        reader = MessageStreamReader(request.model)
        with self.deadline(request) as deadline, translated_errors():
            with provider_call():
                events = self.client.messages.create(**self.create_arguments(request), stream=True)
            with events:
                deadline.watch(events.response)
                for event in events:
                    deadline.check()
                    if text := reader.add(event):
                        yield StreamEvent(delta=text)
                deadline.check()  # hung up, a stream may just end
                deadline.release()
        yield StreamEvent(response=reader.response())

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        with self.deadline(request, hang_up=False) as deadline, translated_errors(), provider_call():
            message = await deadline.before(
                self.async_client.messages.create(**self.create_arguments(request))
            )
        return response_from(message, request.model)

    async def astream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        reader = MessageStreamReader(request.model)
        with self.deadline(request, hang_up=False) as deadline, translated_errors():
            arguments = self.create_arguments(request)
            with provider_call():
                events = await deadline.before(self.async_client.messages.create(**arguments, stream=True))
            async with events:
                iterator = aiter(events)
                while (event := await deadline.before(anext(iterator, None))) is not None:
                    if text := reader.add(event):
                        yield StreamEvent(delta=text)
        yield StreamEvent(response=reader.response())

    def deadline(self, request: ProviderRequest, *, hang_up: bool = True) -> AbstractContextManager[Deadline]:
        """The wall-clock bound of one request (see :func:`~llm_agents.providers.base.attempt_deadline`)."""
        return attempt_deadline(request.timeout, provider="anthropic", label="Anthropic", hang_up=hang_up)

    def create_arguments(self, request: ProviderRequest) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for ``request``. Parameters the SDK method does not
        name travel in ``extra_body``."""
        system, messages = to_anthropic_messages(request.messages)
        arguments: dict[str, Any] = {
            "model": api_model(request.model),
            "messages": messages,
            "max_tokens": request.max_tokens or self.default_max_tokens,
        }
        if system:
            arguments["system"] = system
        if request.tools:
            arguments["tools"] = [to_anthropic_tool(tool) for tool in request.tools]
        if request.timeout is not None:
            arguments["timeout"] = request.timeout
        extra_body: dict[str, Any] = {}
        if self.send_temperature and request.temperature is not None:
            extra_body["temperature"] = request.temperature
        known = self._known_parameters()
        for key, value in request.params.items():
            if key in _RESERVED:
                continue
            if key in known:
                arguments[key] = value
            else:
                extra_body[key] = value
        if extra_body:
            arguments["extra_body"] = {**arguments.get("extra_body", {}), **extra_body}
        return arguments

    def _known_parameters(self) -> set[str]:
        if self._create_parameters is None:
            create = anthropic.resources.messages.Messages.create
            self._create_parameters = set(inspect.signature(create).parameters) - {"self"}
        return self._create_parameters


def _build(client_class: Callable[..., Any], options: dict[str, Any]) -> Any:
    try:
        return client_class(**options)
    except anthropic.AnthropicError as exc:
        raise map_error(exc) from exc


def api_model(model_id: str) -> str:
    """The model name Anthropic knows: ``anthropic/claude-3-5-haiku`` → ``claude-3-5-haiku``."""
    return model_id.removeprefix(MODEL_PREFIX)


def to_anthropic_messages(
    messages: list[dict[str, Any]],
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system, messages)`` in Anthropic's shape from ours.

    System messages become the ``system`` parameter (joined by a blank line). An assistant's
    ``tool_calls`` become ``tool_use`` blocks and tool results ``tool_result`` blocks of a user turn;
    consecutive messages of one role merge into one turn, as Anthropic requires alternating roles.
    """
    system_parts: list[Any] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            system_parts.append(content or "")
            continue
        if role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _text(content),
            }
            if message.get("is_error"):
                block["is_error"] = True
            role, content = "user", [block]
        elif role == "assistant" and message.get("tool_calls"):
            blocks = _blocks(content)
            blocks += [_tool_use_block(call) for call in message["tool_calls"]]
            content = blocks
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _blocks(turns[-1]["content"]) + _blocks(content)
        else:
            turns.append({"role": role, "content": content if content is not None else ""})
    if all(isinstance(part, str) for part in system_parts):
        system: str | list[dict[str, Any]] = "\n\n".join(part for part in system_parts if part)
    else:
        system = [block for part in system_parts for block in _blocks(part)]
    return system, turns


def _blocks(content: Any) -> list[dict[str, Any]]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments") or {}
    if isinstance(arguments, str):
        arguments = json.loads(arguments) if arguments.strip() else {}
    return {"type": "tool_use", "id": call["id"], "name": call["name"], "input": arguments}


def to_anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if "input_schema" in tool:
        return tool
    converted = {
        "name": tool["name"],
        "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        converted["description"] = tool["description"]
    return converted


def _text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content)


def usage_from(usage: Any) -> Usage:
    """Anthropic's ``input_tokens`` leave out cache reads and writes; ours include them. Cache writes
    (``cache_creation_input_tokens``) are priced at the cache-write price, so they are kept apart too."""
    if usage is None:
        return Usage()
    cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
    cache_creation = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_creation,
        output_tokens=usage.output_tokens or 0,
        cached_tokens=cache_read,
        cache_write_tokens=cache_creation,
    )


def finish_reason(stop_reason: str | None) -> str:
    """Anthropic's ``stop_reason`` in the chat API's words (see :data:`FINISH_REASONS`); an unknown one as it is."""
    return FINISH_REASONS.get(stop_reason or "", stop_reason or "")


def response_from(message: Any, requested_model: str) -> ProviderResponse:
    """A message (``Message``) as our response."""
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for block in message.content or []:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            arguments = block.input if isinstance(block.input, dict) else {"_raw": block.input}
            tool_calls.append(ToolCall(id=block.id, name=block.name, arguments=arguments))
    return ProviderResponse(
        content="".join(texts),
        tool_calls=tool_calls,
        finish_reason=finish_reason(message.stop_reason),
        usage=usage_from(message.usage),
        model=message.model or api_model(requested_model),
    )


class MessageStreamReader:
    """Reads a stream of message events: the model and input usage from ``message_start``, text and
    tool calls from the content blocks, then the stop reason and the cumulative usage of
    ``message_delta``."""

    def __init__(self, requested_model: str) -> None:
        self.requested_model = requested_model
        self.model = ""
        self.parts: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.stop_reason = ""
        self.usage: dict[str, Any] = {}
        self.output_started = False
        self.failure: BaseException | None = None

    def add(self, event: Any) -> str:
        """Read one event; returns the text it carried."""
        kind = getattr(event, "type", "")
        if kind == "message_start":
            self.model = event.message.model or ""
            self.merge_usage(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.tools[event.index] = {"id": block.id, "name": block.name, "json": ""}
            elif block.type == "text" and block.text:
                self.parts.append(block.text)
                self.output_started = True
                return str(block.text)
        elif kind == "content_block_delta":
            self.output_started = True
            delta = event.delta
            if delta.type == "text_delta":
                self.parts.append(delta.text)
                return str(delta.text)
            if delta.type == "input_json_delta" and event.index in self.tools:
                self.tools[event.index]["json"] += delta.partial_json
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self.merge_usage(event.usage)
        return ""

    def merge_usage(self, usage: Any) -> None:
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = getattr(usage, name, None)
            if value is not None:
                self.usage[name] = value

    def response(self) -> ProviderResponse:
        return ProviderResponse(
            content="".join(self.parts),
            tool_calls=[
                ToolCall(id=tool["id"], name=tool["name"], arguments=parse_arguments(tool["json"] or "{}"))
                for _, tool in sorted(self.tools.items())
            ],
            finish_reason=finish_reason(self.stop_reason),
            usage=usage_from(SimpleNamespace(**{"input_tokens": 0, "output_tokens": 0, **self.usage})),
            model=self.model or self.requested_model,
        )


# Error types of Anthropic's error bodies, for errors that arrive inside a 200 stream.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "rate_limit_error": RateLimitError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "invalid_request_error": InvalidRequestError,
    "not_found_error": InvalidRequestError,
    "request_too_large": InvalidRequestError,
    "timeout_error": ProviderTimeoutError,
}


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise the anthropic SDK's exceptions as ``llm_agents.errors`` ones, the original as the cause."""
    try:
        yield
    except anthropic.AnthropicError as exc:
        raise map_error(exc) from exc
    except httpx2.TimeoutException as exc:  # while reading a stream, the SDK lets these through
        raise ProviderTimeoutError(f"Anthropic: {exc or type(exc).__name__}", provider="anthropic") from exc
    except httpx2.TransportError as exc:
        raise ProviderError(
            f"Anthropic: {exc or type(exc).__name__}", retryable=True, provider="anthropic"
        ) from exc
    except TypeError as exc:
        # The SDK reports missing credentials as a TypeError when it builds the request.
        if _UNRESOLVED_AUTH not in str(exc):
            raise
        raise AuthenticationError(f"Anthropic: {exc}", provider="anthropic") from exc


def map_error(exc: Exception) -> ProviderError:
    """The ``llm_agents.errors`` exception for an anthropic SDK exception (raise it ``from`` the original)."""
    status = getattr(exc, "status_code", None)
    details: dict[str, Any] = {"provider": "anthropic", "status_code": status}
    if request_id := getattr(exc, "request_id", None):
        details["request_id"] = request_id
    text = f"Anthropic: {getattr(exc, 'api_message', None) or getattr(exc, 'message', None) or exc}"
    if isinstance(exc, anthropic.CredentialsError):
        return AuthenticationError(text, **details)
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderTimeoutError(text, **details)
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(text, retryable=True, **details)
    if isinstance(exc, anthropic.APIStatusError):
        if status is not None and status < 400:
            error_class = _ERROR_TYPES.get(getattr(exc, "type", None) or "", ProviderError)
            return error_class(text, **details)
        return error_for_status(status, text, details)
    return ProviderError(text, retryable=True, **details)


def error_for_status(status: int | None, text: str, details: dict[str, Any]) -> ProviderError:
    """429 rate limit, 408 timeout, 401/403 authentication, 409 and 5xx (529 overloaded) retryable, other
    4xx invalid."""
    if status == 429:
        return RateLimitError(text, **details)
    if status == 408:
        return ProviderTimeoutError(text, **details)
    if status in (401, 403):
        return AuthenticationError(text, **details)
    if status is not None and 400 <= status < 500 and status != 409:
        return InvalidRequestError(text, **details)
    return ProviderError(text, retryable=True, **details)
