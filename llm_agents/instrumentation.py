"""AUTO_INSTRUMENT: calls made straight through the openai and anthropic SDKs, tracked.

:func:`install` (run by the app's ``ready()`` when an SDK is importable) wraps, once, the ``create``
method of these SDK resource classes:

=================================================  ====================================  =========
SDK method                                         recorded as (``agent_type``)          provider
=================================================  ====================================  =========
``OpenAI().chat.completions.create``               ``openai.chat.completions``           openai
``OpenAI().responses.create``                      ``openai.responses``                  openai
``Anthropic().messages.create``                    ``anthropic.messages``                anthropic
=================================================  ====================================  =========

and the same methods of ``AsyncOpenAI`` / ``AsyncAnthropic``. Each wrapper reads
``LLM_AGENTS["AUTO_INSTRUMENT"]`` on every call and passes straight through when it is off, so the
setting can be switched at run time.

With it on, a call becomes one ``llm`` span of the execution being recorded (a ``trace()`` block,
an agent run) whose tokens and cost are added to that execution, or, outside any execution, an
Execution of kind ``llm`` of its own holding that one span. A streamed call (``stream=True``) is
recorded when its stream ends (exhausted, closed or failed): time to first token, and usage from the
final chunk or event. Answers and streams are read by the provider modules' readers
(:mod:`llm_agents.providers.openai`, :mod:`llm_agents.providers.anthropic`), as the providers' own are.
Calls made by our own providers are recorded by the agent and not again here.
Tracking failures are logged on the ``llm_agents`` logger; the SDK's result and exceptions reach
the caller unchanged.

Budgets apply as to an agent call: before the request is sent, the budgets of the call (global, its
tenant, its model, and the agent type of the enclosing agent or trace, else the SDK method's name)
are checked, and a hard stop raises :class:`~llm_agents.errors.BudgetExceededError` without sending
anything; the refused call is recorded (status ``error``). The estimated cost reserved is settled
with the call's real cost when it ends (its stream, for a streamed call).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from . import budgets, context
from .conf import app_settings
from .context import provider_call
from .errors import BudgetExceededError
from .pricing import Cost
from .providers.base import ProviderResponse, StreamReader
from .tracking import lifecycle
from .tracking.records import ExecutionRecord, SpanRecord, elapsed_ms

logger = logging.getLogger("llm_agents")

__all__ = ["ENTRY_POINTS", "EntryPoint", "install", "installed", "provider_call"]


@dataclass(frozen=True)
class EntryPoint:
    """One SDK method that :func:`install` wraps; ``name`` is the ``agent_type`` of its executions."""

    module: str
    class_name: str
    name: str
    provider: str
    api: str  # chat | responses | messages
    is_async: bool


ENTRY_POINTS = (
    EntryPoint("openai.resources.chat.completions", "Completions", "openai.chat.completions", "openai", "chat", False),
    EntryPoint("openai.resources.chat.completions", "AsyncCompletions", "openai.chat.completions", "openai", "chat",
               True),
    EntryPoint("openai.resources.responses", "Responses", "openai.responses", "openai", "responses", False),
    EntryPoint("openai.resources.responses", "AsyncResponses", "openai.responses", "openai", "responses", True),
    EntryPoint("anthropic.resources.messages", "Messages", "anthropic.messages", "anthropic", "messages", False),
    EntryPoint("anthropic.resources.messages", "AsyncMessages", "anthropic.messages", "anthropic", "messages",
               True),
)  # fmt: skip

_MARK = "_llm_agents_instrumented"
_RAW_RESPONSE_HEADER = "x-stainless-raw-response"
_install_lock = threading.Lock()

# -- installing -----------------------------------------------------------------------------------


def install() -> list[str]:
    """Wrap the ``create`` method of every importable entry point; safe to call again (a wrapped
    method is left alone). Returns ``"module.Class"`` of the methods wrapped by this call."""
    wrapped = []
    with _install_lock:
        for entry in ENTRY_POINTS:
            try:
                module = importlib.import_module(entry.module)
            except ImportError:
                continue
            resource = getattr(module, entry.class_name, None)
            if resource is None:
                continue
            create = getattr(resource, "__dict__", {}).get("create")
            if create is None or getattr(create, _MARK, False):
                continue
            wrapper = _async_wrapper(create, entry) if entry.is_async else _sync_wrapper(create, entry)
            setattr(wrapper, _MARK, True)
            resource.create = wrapper
            wrapped.append(f"{entry.module}.{entry.class_name}")
    return wrapped


def installed() -> list[str]:
    """``"module.Class"`` of the entry points whose ``create`` is wrapped now."""
    names = []
    for entry in ENTRY_POINTS:
        try:
            module = importlib.import_module(entry.module)
        except ImportError:
            continue
        create = getattr(getattr(module, entry.class_name, None), "create", None)
        if getattr(create, _MARK, False):
            names.append(f"{entry.module}.{entry.class_name}")
    return names


def _tracking_wanted(kwargs: dict[str, Any]) -> bool:
    if context.in_provider_call():
        return False
    try:
        if not app_settings.AUTO_INSTRUMENT:
            return False
    except Exception:  # settings not configured: nothing to record into
        return False
    headers = kwargs.get("extra_headers")
    if isinstance(headers, dict) and any(str(name).lower() == _RAW_RESPONSE_HEADER for name in headers):
        return False  # .with_raw_response / .with_streaming_response: the body is the caller's to read
    return True


def _sync_wrapper(create: Callable[..., Any], entry: EntryPoint) -> Callable[..., Any]:
    @functools.wraps(create)
    def create_tracked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _tracking_wanted(kwargs):
            return create(self, *args, **kwargs)
        call = _safely(_begin, entry, kwargs)
        if call is None:
            return create(self, *args, **kwargs)
        call.check_budgets()  # BudgetExceededError: refused, recorded, nothing sent
        try:
            result = create(self, *args, **kwargs)
        except BaseException as exc:
            _safely(call.end, error=exc)
            raise
        if call.streaming:
            return _safely(_track_stream, result, call) or result
        _safely(call.end, response=result)
        return result

    return create_tracked


def _async_wrapper(create: Callable[..., Any], entry: EntryPoint) -> Callable[..., Any]:
    @functools.wraps(create)
    async def create_tracked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _tracking_wanted(kwargs):
            return await create(self, *args, **kwargs)
        if context.current_execution() is None:  # an execution of its own: its start row is a write
            call = await _off_loop(_safely, _begin, entry, kwargs)
        else:
            call = _safely(_begin, entry, kwargs)
        if call is None:
            return await create(self, *args, **kwargs)
        if app_settings.BUDGETS_ENABLED:  # the check queries the database: off the event loop
            await _off_loop(call.check_budgets)
        try:
            result = await create(self, *args, **kwargs)
        except BaseException as exc:
            await _off_loop(_safely, call.end, error=exc)
            raise
        if call.streaming:
            return _safely(_track_async_stream, result, call) or result
        await _off_loop(_safely, call.end, response=result)
        return result

    return create_tracked


def _safely(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except Exception:
        logger.exception(
            "llm_agents could not track an SDK call (%s)", getattr(function, "__name__", function)
        )
        return None


async def _off_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``function`` on a worker thread (it may price or write), keeping this context."""
    from asgiref.sync import sync_to_async

    def run() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(run, thread_sensitive=False)()


# -- one call -------------------------------------------------------------------------------------


def _begin(entry: EntryPoint, kwargs: dict[str, Any]) -> TrackedCall:
    call = TrackedCall(entry, kwargs)
    call.start()
    return call


class TrackedCall:
    """One SDK request being recorded: its llm span, and its own execution outside any other."""

    def __init__(self, entry: EntryPoint, kwargs: dict[str, Any]) -> None:
        self.entry = entry
        self.model = str(kwargs.get("model") or "")
        self.streaming = kwargs.get("stream") is True
        self.ended = False
        self.first_token_at: dt.datetime | None = None
        messages, system_prompt, user_prompt = request_messages(entry.api, kwargs)
        execution = context.current_execution()
        self.own: ExecutionRecord | None = None
        if execution is None:
            temperature = kwargs.get("temperature")
            execution = self.own = lifecycle.begin_execution(
                "llm",
                entry.name,
                write_start=False,  # written by start(), once the call is known to be tracked
                status="running",
                model_id=self.model,
                chosen_model_id=self.model,
                provider=entry.provider,
                temperature=temperature if isinstance(temperature, int | float) else None,
                streaming=self.streaming,
                parameters=request_parameters(kwargs),
                system_prompt=system_prompt,
                user_prompt=user_prompt,
                fallback_chain=[self.model],
                tenant_id=context.current_tenant_id() if app_settings.MULTI_TENANCY else None,
            )
        self.execution = execution
        self.span = SpanRecord(
            name=self.model,
            kind="llm",
            parent=context.current_span() if self.own is None else None,
            model_id=self.model,
            provider=entry.provider,
            input=messages,
            metadata={"sdk_method": entry.name},
        )
        execution.add_span(self.span)
        self.reader = stream_reader(entry.api, self.model) if self.streaming else None
        self.max_tokens = next(
            (
                value
                for value in (
                    kwargs.get(name) for name in ("max_tokens", "max_completion_tokens", "max_output_tokens")
                )
                if isinstance(value, int) and not isinstance(value, bool)
            ),
            None,
        )
        self.reservation: budgets.Reservation | None = None

    def check_budgets(self) -> None:
        """Check the budgets that apply to this call, reserving its estimated cost, before it is sent.
        A hard stop that refuses it ends the call (recorded with ``BudgetExceededError``) and raises;
        a failure of the check itself is logged and lets the call through."""
        execution = self.execution
        try:
            self.reservation = budgets.check_call(
                agent_type=execution.agent_type,
                tenant_id=execution.tenant_id,
                user_id=execution.user_id,
                model=self.model,
                messages=[m for m in self.span.input or [] if isinstance(m, dict)],
                max_tokens=self.max_tokens,
                at=self.span.started_at,
            )
        except BudgetExceededError as exc:
            _safely(self.end, error=exc)
            raise
        except Exception:
            logger.exception("llm_agents could not check the budgets of an SDK call; it goes ahead")
            return
        if self.own is not None:
            self.own.budget_reservation = self.reservation  # settled when its execution completes

    def start(self) -> None:
        if self.own is not None:
            lifecycle.start(self.own)

    def observe(self, item: Any) -> None:
        """Read one chunk or event of a stream."""
        if self.reader is None:
            return
        self.reader.add(item)
        if self.reader.output_started and self.first_token_at is None:
            self.first_token_at = timezone.now()

    def end(self, *, response: Any = None, error: BaseException | None = None) -> None:
        """Record the outcome (once): the answer of a plain call, or what the stream read."""
        if self.ended:
            return
        self.ended = True
        if self.reader is not None:
            outcome = self.reader.response()
            error = error or self.reader.failure
        elif response is not None:
            outcome = read_answer(self.entry.api, response, self.model)
        else:
            outcome = ProviderResponse()
        span = self.span
        cost = self.account(outcome)
        if error is None or outcome.content or outcome.tool_calls:
            span.output = {
                "content": outcome.content,
                "tool_calls": [vars(call) for call in outcome.tool_calls],
            }
        if outcome.model:
            span.metadata["response_model"] = outcome.model
        if self.first_token_at is not None:
            span.time_to_first_token_ms = elapsed_ms(span.started_at, self.first_token_at)
        span.finish(error)
        if self.own is not None:
            self.complete_own(outcome, cost, error)
        elif self.reservation is not None:
            # In an enclosing execution: this call's spend counts now, not again when that one ends.
            self.reservation.settle(
                cost.total_cost,
                outcome.usage.total_tokens,
                models=[self.model],
                at=self.execution.started_at,
            )
            span.budget_settled = True

    def account(self, outcome: ProviderResponse) -> Cost:
        """Price the answer's usage on the span and add it to the execution (the span's own path)."""
        usage = outcome.usage
        input_tokens = max(usage.input_tokens, 0)
        cached_tokens = min(max(usage.cached_tokens, 0), input_tokens)
        cache_write_tokens = min(max(usage.cache_write_tokens, 0), input_tokens - cached_tokens)
        return self.span.account(input_tokens, max(usage.output_tokens, 0), cached_tokens, cache_write_tokens,
                                 max(usage.reasoning_tokens, 0))  # fmt: skip

    def complete_own(self, outcome: ProviderResponse, cost: Cost, error: BaseException | None) -> None:
        record = self.own
        assert record is not None
        mapped = provider_error(self.entry.provider, error)
        record.response, record.finish_reason = outcome.content, outcome.finish_reason
        record.pricing_source = cost.source
        record.tool_calls = [vars(call) for call in outcome.tool_calls]
        record.tool_calls_count = len(outcome.tool_calls)
        record.rate_limited = type(mapped).__name__ == "RateLimitError"
        record.retryable = bool(getattr(mapped, "retryable", False)) if error is not None else False
        record.attempts = [
            {
                "model_id": self.model,
                "status": "success" if error is None else "error",
                "error_class": type(error).__name__ if error is not None else "",
                "error_message": str(error) if error is not None else "",
                "duration_ms": self.span.duration_ms,
                "input_tokens": outcome.usage.input_tokens,
                "output_tokens": outcome.usage.output_tokens,
                "started_at": self.span.started_at.isoformat(),
            }
        ]
        record.attempts_count = 1
        if self.first_token_at is not None:
            record.time_to_first_token_ms = elapsed_ms(record.started_at, self.first_token_at)
        if outcome.model:
            record.metadata["response_model"] = outcome.model
        lifecycle.complete(record, error=error)


def provider_error(provider: str, error: BaseException | None) -> Any:
    """Our ``llm_agents.errors`` reading of an SDK exception (for ``retryable`` and ``rate_limited``)."""
    if not isinstance(error, Exception):
        return None
    try:
        module = importlib.import_module(f"llm_agents.providers.{provider}")
        sdk = importlib.import_module(provider)
        base = sdk.OpenAIError if provider == "openai" else sdk.AnthropicError
    except Exception:
        return None
    return module.map_error(error) if isinstance(error, base) else None


# -- streams --------------------------------------------------------------------------------------


def _track_stream(stream: Any, call: TrackedCall) -> Any:
    """Record ``call`` as the caller iterates ``stream`` (the SDK's own object, returned as it is)."""
    iterator = stream._iterator

    def tracked() -> Iterator[Any]:
        try:
            for item in iterator:
                _safely(call.observe, item)
                yield item
        except GeneratorExit:
            _safely(call.end)
            raise
        except BaseException as exc:
            _safely(call.end, error=exc)
            raise
        _safely(call.end)

    stream._iterator = tracked()
    owner = weakref.ref(stream)  # no cycle through the stream: a dropped stream closes at once

    def close() -> None:
        try:
            if (current := owner()) is not None:
                type(current).close(current)
        finally:
            _safely(call.end)

    stream.close = close
    return stream


def _track_async_stream(stream: Any, call: TrackedCall) -> Any:
    iterator = stream._iterator

    async def tracked() -> AsyncIterator[Any]:
        try:
            async for item in iterator:
                _safely(call.observe, item)
                yield item
        except GeneratorExit:
            await _end_off_loop(call)
            raise
        except BaseException as exc:
            await _end_off_loop(call, error=exc)
            raise
        await _end_off_loop(call)

    stream._iterator = tracked()
    owner = weakref.ref(stream)

    async def close() -> None:
        try:
            if (current := owner()) is not None:
                await type(current).close(current)
        finally:
            await _end_off_loop(call)

    stream.close = close
    return stream


async def _end_off_loop(call: TrackedCall, error: BaseException | None = None) -> None:
    if call.ended:
        return
    try:
        await _off_loop(_safely, call.end, error=error)
    except BaseException:  # e.g. the loop is shutting down while a dropped stream is finalised
        logger.warning("llm_agents could not record the end of an SDK stream", exc_info=True)


# -- answers --------------------------------------------------------------------------------------


def stream_reader(api: str, model: str) -> StreamReader:
    """The provider module's reader of a stream of ``api`` (chat, responses or messages)."""
    if api == "messages":
        from .providers import anthropic

        return anthropic.MessageStreamReader(model)
    from .providers import openai

    return openai.ChatStreamReader(model) if api == "chat" else openai.ResponsesStreamReader(model)


def read_answer(api: str, answer: Any, model: str) -> ProviderResponse:
    """The provider module's reading of a whole answer of ``api`` (chat, responses or messages)."""
    if api == "messages":
        from .providers import anthropic

        return anthropic.response_from(answer, model)
    from .providers import openai

    if api == "chat":
        return openai.response_from(answer, model)
    return openai.responses_response_from(answer, model)


# -- requests -------------------------------------------------------------------------------------

_CONTENT_KEYS = {"messages", "input", "system", "instructions", "extra_headers", "extra_query", "timeout"}


def request_messages(api: str, kwargs: dict[str, Any]) -> tuple[Any, str, str]:
    """``(span input, system prompt, user prompt)`` of a request. Iterables other than lists and
    tuples are left unread: the SDK has to consume them."""
    system: Any = kwargs.get("instructions") if api == "responses" else kwargs.get("system")
    if api == "chat":
        given = kwargs.get("messages")
    else:
        given = kwargs.get("input") if api == "responses" else kwargs.get("messages")
    if isinstance(given, str):
        messages: list[Any] = [{"role": "user", "content": given}]
    elif isinstance(given, list | tuple):
        messages = list(given)
    else:
        messages = []
    messages = [message if isinstance(message, dict) else _plain(message) for message in messages]
    if isinstance(system, str | list) and system:
        messages.insert(0, {"role": "system", "content": system})
    system_prompt = "\n\n".join(
        _text(m.get("content"))
        for m in messages
        if isinstance(m, dict) and m.get("role") in ("system", "developer")
    )
    user_prompt = "\n\n".join(
        _text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"
    )
    return _jsonable(messages), system_prompt, user_prompt


def request_parameters(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters (not its messages), without the SDK's "not given" sentinels."""
    parameters = {
        key: value
        for key, value in kwargs.items()
        if key not in _CONTENT_KEYS and type(value).__name__ not in ("Omit", "NotGiven")
    }
    return _jsonable(parameters) or {}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def _jsonable(value: Any) -> Any:
    def default(item: Any) -> Any:
        plain = _plain(item)
        return plain if plain is not item else str(item)

    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError):
        return None
