"""OpenAI (and OpenAI-compatible servers) through the official ``openai`` SDK's chat completions.

Options, from ``LLM_AGENTS["PROVIDERS"]["openai"]`` in its dict form::

    {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": "...", "base_url": "http://localhost:8000/v1"}

``api_key``, ``base_url`` and ``organization`` default to the SDK's own (``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``OPENAI_ORG_ID``). ``max_tokens_param`` names the body field that carries
``max_tokens``: ``max_completion_tokens`` against OpenAI itself, ``max_tokens`` when a custom base URL is set
(what most compatible servers understand). Any other option goes to the SDK client's constructor. The SDK's
own retries are switched off: the agent runtime retries.

OpenAI's reasoning models (the o1, o3 and o4 families and gpt-5…) reject any temperature but 1, so an
agent's temperature is not sent to them (see :func:`accepts_temperature`).

This module reads every answer of OpenAI's APIs, wherever it comes from (the provider, a raw SDK call, a
batch result), as a :class:`~llm_agents.providers.base.ProviderResponse`: chat completions
(:func:`response_from`, streamed through :class:`ChatStreamReader`), the Responses API
(:func:`responses_response_from`, streamed through :class:`ResponsesStreamReader`), JSON bodies of either
(:func:`body_response_from`) and the lines of a Batch API output or error file (:func:`read_batch_line`).
Finish reasons are given in the chat API's words (``stop``, ``length``, ``tool_calls``, ``content_filter``),
which every provider and path reports.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
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
    import httpx2
    import openai
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImproperlyConfigured(
        "The OpenAI provider needs the openai SDK: pip install 'django-llm-agents[openai]'."
    ) from exc

__all__ = [
    "BatchOutputLine",
    "ChatStreamReader",
    "OpenAIProvider",
    "ResponseFailedError",
    "ResponsesStreamReader",
    "accepts_temperature",
    "body_response_from",
    "chat_finish_reason",
    "map_error",
    "parse_arguments",
    "read_batch_line",
    "response_from",
    "responses_finish_reason",
    "responses_response_from",
    "to_openai_messages",
    "usage_from",
]

_RESERVED = {"model", "messages", "stream", "stream_options"}
# o1, o1-mini, o3-pro, o4-mini-2025-04-16, gpt-5, gpt-5-mini, gpt-5.1, … (an "openai/" prefix allowed).
_REASONING_MODEL = re.compile(r"^(?:openai/)?(?:o\d+(?:$|-)|gpt-5)")


class OpenAIProvider(Provider):
    """Chat completions with the official SDK; one client per provider instance (one async client per
    event loop, since an async HTTP pool belongs to the loop that opened it)."""

    name = "openai"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        client_options = dict(options)
        self.max_tokens_param: str = client_options.pop("max_tokens_param", None) or (
            "max_tokens"
            if client_options.get("base_url") or os.environ.get("OPENAI_BASE_URL")
            else "max_completion_tokens"
        )
        if client_options.get("base_url") is None:
            client_options.pop("base_url", None)
        client_options["max_retries"] = 0
        self.client_options = client_options
        self.clients: SDKClients[openai.OpenAI, openai.AsyncOpenAI] = SDKClients(
            lambda: _build(openai.OpenAI, client_options), lambda: _build(openai.AsyncOpenAI, client_options)
        )
        self._create_parameters: set[str] | None = None

    @property
    def client(self) -> openai.OpenAI:
        """The synchronous SDK client, built on first use."""
        return self.clients.sync()

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The asynchronous SDK client of the running event loop, built on first use."""
        return self.clients.for_running_loop()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        with self.deadline(request) as deadline, translated_errors(), provider_call():
            arguments = self.create_arguments(request)
            with self.client.chat.completions.with_streaming_response.create(**arguments) as answer:
                deadline.watch(answer.http_response)
                completion = answer.parse()
                deadline.release()
        return response_from(completion, request.model)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        reader = ChatStreamReader(request.model)
        with self.deadline(request) as deadline, translated_errors():
            with provider_call():
                chunks = self.client.chat.completions.create(**self.create_arguments(request, stream=True))
            with chunks:
                deadline.watch(chunks.response)
                for chunk in chunks:
                    deadline.check()
                    if delta := reader.add(chunk):
                        yield StreamEvent(delta=delta)
                deadline.check()  # hung up, a stream may just end
                deadline.release()
        yield StreamEvent(response=reader.response())

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        with self.deadline(request, hang_up=False) as deadline, translated_errors(), provider_call():
            create = self.async_client.chat.completions.create(**self.create_arguments(request))
            completion = await deadline.before(create)
        return response_from(completion, request.model)

    async def astream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        reader = ChatStreamReader(request.model)
        with self.deadline(request, hang_up=False) as deadline, translated_errors():
            arguments = self.create_arguments(request, stream=True)
            with provider_call():
                chunks = await deadline.before(self.async_client.chat.completions.create(**arguments))
            async with chunks:
                iterator = aiter(chunks)
                while (chunk := await deadline.before(anext(iterator, None))) is not None:
                    if delta := reader.add(chunk):
                        yield StreamEvent(delta=delta)
        yield StreamEvent(response=reader.response())

    def deadline(self, request: ProviderRequest, *, hang_up: bool = True) -> AbstractContextManager[Deadline]:
        """The wall-clock bound of one request (see :func:`~llm_agents.providers.base.attempt_deadline`)."""
        return attempt_deadline(request.timeout, provider="openai", label="OpenAI", hang_up=hang_up)

    def create_arguments(self, request: ProviderRequest, *, stream: bool = False) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request``. Parameters the SDK method
        does not name travel in ``extra_body``, so any server-specific field passes through. A reasoning
        model gets no ``temperature``."""
        arguments: dict[str, Any] = {"model": request.model, "messages": to_openai_messages(request.messages)}
        if request.tools:
            arguments["tools"] = [to_openai_tool(tool) for tool in request.tools]
        if request.temperature is not None and accepts_temperature(request.model):
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            arguments[self.max_tokens_param] = request.max_tokens
        if request.timeout is not None:
            arguments["timeout"] = request.timeout
        if stream:
            arguments["stream"] = True
            arguments["stream_options"] = {"include_usage": True}
        known = self._known_parameters()
        extra_body: dict[str, Any] = {}
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
            create = openai.resources.chat.completions.Completions.create
            self._create_parameters = set(inspect.signature(create).parameters) - {"self"}
        return self._create_parameters


def accepts_temperature(model: str) -> bool:
    """False for OpenAI's reasoning models (o1, o3, o4 families, gpt-5…), which answer 400 to a
    temperature other than 1."""
    return not _REASONING_MODEL.match(model.lower())


def _build(client_class: Callable[..., Any], options: dict[str, Any]) -> Any:
    try:
        return client_class(**options)
    except openai.OpenAIError as exc:
        raise AuthenticationError(f"OpenAI: {exc}", provider="openai") from exc


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our message shape to OpenAI's: assistant ``tool_calls`` become function calls with JSON-encoded
    arguments; tool results keep only ``tool_call_id`` and ``content`` (a string)."""
    translated = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            translated.append(
                {"role": "tool", "tool_call_id": message.get("tool_call_id", ""), "content": _text(message)}
            )
        elif role == "assistant" and message.get("tool_calls"):
            assistant = {key: value for key, value in message.items() if key != "tool_calls"}
            assistant["content"] = message.get("content") or None
            assistant["tool_calls"] = [_to_openai_tool_call(call) for call in message["tool_calls"]]
            translated.append(assistant)
        else:
            translated.append(dict(message))
    return translated


def _to_openai_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    if "function" in call:
        return call
    arguments = call.get("arguments", {})
    return {
        "id": call["id"],
        "type": "function",
        "function": {
            "name": call["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def to_openai_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function":
        return tool
    function = {
        "name": tool["name"],
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content)


def usage_from(usage: Any) -> Usage:
    """OpenAI's usage: ``prompt_tokens`` already includes the cached ones."""
    if usage is None:
        return Usage()
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_tokens=getattr(prompt_details, "cached_tokens", None) or 0,
        reasoning_tokens=getattr(completion_details, "reasoning_tokens", None) or 0,
    )


def chat_finish_reason(reason: str | None) -> str:
    """A chat completion's ``finish_reason`` (the deprecated ``function_call`` is ``tool_calls``)."""
    return "tool_calls" if reason == "function_call" else reason or ""


def response_from(completion: Any, requested_model: str) -> ProviderResponse:
    """A chat completion (``ChatCompletion``) as our response."""
    choice = completion.choices[0] if completion.choices else None
    message = choice.message if choice else None
    tool_calls = [
        ToolCall(id=call.id, name=call.function.name, arguments=parse_arguments(call.function.arguments))
        for call in (getattr(message, "tool_calls", None) or [])
        if getattr(call, "function", None) is not None
    ]
    return ProviderResponse(
        content=(message.content or getattr(message, "refusal", None) or "") if message else "",
        tool_calls=tool_calls,
        finish_reason=chat_finish_reason(choice.finish_reason) if choice else "",
        usage=usage_from(completion.usage),
        model=completion.model or requested_model,
    )


def responses_finish_reason(status: str | None, incomplete_reason: str | None, *, tool_calls: bool) -> str:
    """A Responses API answer's end in the chat API's words: ``completed`` is ``stop`` (``tool_calls`` when
    it asks for function calls), ``incomplete`` is ``content_filter`` when the filter stopped it and
    ``length`` otherwise (``max_output_tokens`` and other limits). A response that did not end (failed,
    cancelled, in progress) has none."""
    if status == "completed":
        return "tool_calls" if tool_calls else "stop"
    if status == "incomplete":
        return "content_filter" if incomplete_reason == "content_filter" else "length"
    return ""


def responses_usage_from(usage: Any) -> Usage:
    """The Responses API's usage: ``input_tokens`` already includes the cached ones."""
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=getattr(usage, "input_tokens", None) or 0,
        output_tokens=getattr(usage, "output_tokens", None) or 0,
        cached_tokens=getattr(getattr(usage, "input_tokens_details", None), "cached_tokens", None) or 0,
        reasoning_tokens=getattr(getattr(usage, "output_tokens_details", None), "reasoning_tokens", None)
        or 0,
    )


def responses_response_from(response: Any, requested_model: str) -> ProviderResponse:
    """A Responses API answer (``Response``) as our response: the output text (or the refusal, when there
    is no text), the function calls, the finish reason and usage."""
    texts: list[str] = []
    refusals: list[str] = []
    tool_calls: list[ToolCall] = []
    for item in getattr(response, "output", None) or []:
        kind = getattr(item, "type", None)
        if kind == "function_call":
            tool_calls.append(
                ToolCall(id=item.call_id, name=item.name, arguments=parse_arguments(item.arguments))
            )
        elif kind == "message":
            for part in getattr(item, "content", None) or []:
                if getattr(part, "type", None) == "output_text":
                    texts.append(part.text or "")
                elif getattr(part, "type", None) == "refusal":
                    refusals.append(part.refusal or "")
    incomplete = getattr(getattr(response, "incomplete_details", None), "reason", None)
    return ProviderResponse(
        content="".join(texts) or "".join(refusals),
        tool_calls=tool_calls,
        finish_reason=responses_finish_reason(
            getattr(response, "status", None), incomplete, tool_calls=bool(tool_calls)
        ),
        usage=responses_usage_from(getattr(response, "usage", None)),
        model=getattr(response, "model", None) or requested_model,
    )


def body_response_from(body: dict[str, Any], requested_model: str = "") -> ProviderResponse:
    """A JSON body of either API (a batch result line's): a chat completion when it has ``choices``, else a
    Responses API answer. Read as the SDK reads it, without validation."""
    if "choices" in body:
        return response_from(openai.types.chat.ChatCompletion.construct(**body), requested_model)
    return responses_response_from(openai.types.responses.Response.construct(**body), requested_model)


class ChatStreamReader:
    """Reads a chat completion stream (``ChatCompletionChunk``s): text, tool calls assembled from their
    fragments, the finish reason, and usage from the last chunk (sent when the request asks with
    ``stream_options={"include_usage": True}``, as the provider does)."""

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason = ""
        self.usage = Usage()
        self.output_started = False
        self.failure: BaseException | None = None

    def add(self, chunk: Any) -> str:
        """Read one chunk; returns the text it carried."""
        text = self._read(chunk)
        if not self.output_started:
            self.output_started = bool(text) or any(
                getattr(choice.delta, "tool_calls", None) or getattr(choice.delta, "refusal", None)
                for choice in chunk.choices or []
                if choice.delta is not None
            )
        return text

    def _read(self, chunk: Any) -> str:
        if chunk.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = usage_from(chunk.usage)
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if choice.finish_reason:
            self.finish_reason = chat_finish_reason(choice.finish_reason)
        delta = choice.delta
        if delta is None:
            return ""
        for fragment in delta.tool_calls or []:
            call = self.tool_calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            if fragment.id:
                call["id"] = fragment.id
            if fragment.function is not None:
                call["name"] += fragment.function.name or ""
                call["arguments"] += fragment.function.arguments or ""
        if getattr(delta, "refusal", None):
            self.refusal.append(delta.refusal)
        if delta.content:
            self.parts.append(delta.content)
            return delta.content
        return ""

    def response(self) -> ProviderResponse:
        return ProviderResponse(
            content="".join(self.parts) or "".join(self.refusal),
            tool_calls=[
                ToolCall(id=call["id"], name=call["name"], arguments=parse_arguments(call["arguments"]))
                for _, call in sorted(self.tool_calls.items())
            ],
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
        )


class ResponseFailedError(Exception):
    """A streamed Responses API answer that ended with ``response.failed`` or an ``error`` event."""


class ResponsesStreamReader:
    """Reads a Responses API stream: the text deltas, then the final response (``response.completed``,
    ``response.incomplete`` or ``response.failed``) for the output, finish reason and usage. A
    ``response.failed`` or ``error`` event sets ``failure`` (the SDK does not raise for those)."""

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.parts: list[str] = []
        self.final: Any = None
        self.output_started = False
        self.failure: BaseException | None = None

    def add(self, event: Any) -> str:
        """Read one event; returns the output text it carried."""
        kind = getattr(event, "type", "") or ""
        text = ""
        if kind == "response.output_text.delta":
            text = event.delta or ""
            self.parts.append(text)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = event.response
            if kind == "response.failed":
                error = getattr(event.response, "error", None)
                self.failure = ResponseFailedError(getattr(error, "message", None) or "The response failed.")
        elif kind == "error":
            self.failure = ResponseFailedError(
                getattr(event, "message", None) or "The response stream failed."
            )
        if kind.endswith(".delta"):
            self.output_started = True
        return text

    def response(self) -> ProviderResponse:
        if self.final is None:
            return ProviderResponse(content="".join(self.parts), model=self.model)
        answer = responses_response_from(self.final, self.model)
        answer.content = answer.content or "".join(self.parts)
        return answer


@dataclass
class BatchOutputLine:
    """One line of a Batch API output or error file: the answer (``ok``), or why there is none (the
    ``response`` is then empty)."""

    custom_id: str
    ok: bool
    response: ProviderResponse = field(default_factory=ProviderResponse)
    status_code: int | None = None
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    body: dict[str, Any] = field(default_factory=dict)


def read_batch_line(raw: bytes | str) -> BatchOutputLine:
    """Read one output/error file line (``{"custom_id", "response": {"status_code", "request_id", "body"},
    "error"}``); its body is a chat completion or a Responses API answer, read as the live API's is."""
    line = json.loads(raw)
    custom_id = str(line.get("custom_id", ""))
    answer = line.get("response") or {}
    body = answer.get("body") or {}
    status_code = answer.get("status_code")
    request_id = str(answer.get("request_id") or "")
    error = line.get("error") or (body.get("error") if isinstance(body, dict) else None)
    if error or (status_code is not None and status_code != 200):
        error = error or {}
        return BatchOutputLine(
            custom_id=custom_id,
            ok=False,
            status_code=status_code,
            error_code=str(error.get("code") or error.get("type") or ""),
            error_message=str(error.get("message") or f"the request answered HTTP {status_code}"),
            request_id=request_id,
            body=body if isinstance(body, dict) else {},
        )
    return BatchOutputLine(
        custom_id=custom_id,
        ok=True,
        response=body_response_from(body),
        status_code=status_code,
        request_id=request_id,
        body=body,
    )


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise the openai SDK's exceptions as ``llm_agents.errors`` ones, the original as the cause."""
    try:
        yield
    except openai.OpenAIError as exc:
        raise map_error(exc) from exc
    except httpx2.TimeoutException as exc:  # while reading a stream, the SDK lets these through
        raise ProviderTimeoutError(f"OpenAI: {exc or type(exc).__name__}", provider="openai") from exc
    except httpx2.TransportError as exc:
        raise ProviderError(
            f"OpenAI: {exc or type(exc).__name__}", retryable=True, provider="openai"
        ) from exc


def map_error(exc: Exception) -> ProviderError:
    """The ``llm_agents.errors`` exception for an openai SDK exception (raise it ``from`` the original)."""
    status = getattr(exc, "status_code", None)
    details: dict[str, Any] = {"provider": "openai", "status_code": status}
    if request_id := getattr(exc, "request_id", None):
        details["request_id"] = request_id
    text = f"OpenAI: {getattr(exc, 'message', None) or exc}"
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeoutError(text, **details)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(text, retryable=True, **details)
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(status, text, details)
    return ProviderError(text, retryable=True, **details)


def error_for_status(status: int | None, text: str, details: dict[str, Any]) -> ProviderError:
    """429 rate limit, 408 timeout, 401/403 authentication, 409 and 5xx retryable, other 4xx invalid."""
    if status == 429:
        return RateLimitError(text, **details)
    if status == 408:
        return ProviderTimeoutError(text, **details)
    if status in (401, 403):
        return AuthenticationError(text, **details)
    if status is not None and 400 <= status < 500 and status != 409:
        return InvalidRequestError(text, **details)
    return ProviderError(text, retryable=True, **details)
