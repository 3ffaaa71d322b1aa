"""The Agent class: declare a model, prompts and params; ``call``, ``acall`` or ``stream`` it."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Generator, Iterator
from decimal import Decimal
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.db import DatabaseError, close_old_connections, router
from django.utils import timezone

from .. import budgets, context, signals, tracing
from ..conf import app_settings
from ..errors import (
    AgentPausedError,
    AllModelsExhaustedError,
    AuthenticationError,
    ProviderError,
    RateLimitError,
    RunawayAgentError,
)
from ..events import emit
from ..money import money
from ..providers import get_provider, provider_name_for
from ..providers.base import ProviderRequest, ProviderResponse, ToolCall
from ..tracking import lifecycle
from ..tracking.records import ExecutionRecord, SpanRecord, elapsed_ms
from .params import bind_params, collect_params
from .result import AgentResult
from .tools import AgentTool, Tool

logger = logging.getLogger("llm_agents")


class Agent:
    """Subclass, set class attributes and Params, and implement ``user_prompt`` (and optionally
    ``system_prompt`` and ``execution_metadata``). See the agents documentation."""

    agent_type: ClassVar[str] = ""
    model: ClassVar[str | None] = None
    fallback_models: ClassVar[list[str]] = []
    temperature: ClassVar[float | None] = None
    max_tokens: ClassVar[int | None] = None
    version: ClassVar[str] = "1.0"
    timeout: ClassVar[float | None] = None
    retries: ClassVar[int | None] = None
    retry_backoff: ClassVar[float] = 0.4
    cache_ttl: ClassVar[int | None] = None
    tools: ClassVar[list[Any]] = []
    max_tool_iterations: ClassVar[int] = 5
    prompt: ClassVar[str | None] = None
    #: The label of ``prompt`` to use (None: ``production`` when the prompt has it, else the latest).
    prompt_label: ClassVar[str | None] = None
    schema: ClassVar[Any] = None
    description: ClassVar[str] = ""
    # Runaway limits (None: no limit); going past one raises RunawayAgentError.
    #: US dollars one call may cost, nested agents included; checked after each provider response.
    max_cost_per_call: ClassVar[Decimal | float | int | None] = None
    #: Tool runs in one call.
    max_tool_calls: ClassVar[int | None] = None
    #: Runs of one tool with the same arguments in one call.
    max_identical_tool_calls: ClassVar[int | None] = 3

    _agent_type_is_set: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "agent_type" in vars(cls):
            cls._agent_type_is_set = True
        elif not cls._agent_type_is_set:
            cls.agent_type = cls.__name__
        check_runaway_limits(cls)

    def __init__(self, **params: Any) -> None:
        values = bind_params(self.agent_type or type(self).__name__, collect_params(type(self)), params)
        self.__dict__.update(values)
        self.params = values

    # -- what users override ------------------------------------------------------------------

    def system_prompt(self) -> str:
        return ""

    def user_prompt(self) -> str:
        return ""

    def execution_metadata(self) -> dict[str, Any]:
        return {}

    def messages(self) -> list[dict[str, Any]]:
        """The messages sent to the model: the system prompt (if any), then the user prompt."""
        system, user = self.system_prompt(), self.user_prompt()
        messages = [{"role": "system", "content": system}] if system else []
        return [*messages, {"role": "user", "content": user}]

    # -- entry points -------------------------------------------------------------------------

    @classmethod
    def call(cls, **params: Any) -> AgentResult:
        """Run the agent and return an :class:`AgentResult`; records exactly one Execution.

        ``_session_id``, ``_user_id`` and ``_tags`` record it (and the executions nested in it)
        under a session, an end user and tags, as a ``session()`` block would; ``_subject`` (a saved
        model instance) attributes them to that object, as an ``attribute_to()`` block would."""
        params, session = session_arguments(params)
        run = Run(cls(**params), streaming=False, session=session)
        return _drain(run.execute())

    @classmethod
    async def acall(cls, **params: Any) -> AgentResult:
        """``call`` on a worker thread, so that neither the provider nor the database blocks the loop."""
        params, session = session_arguments(params)
        agent = cls(**params)

        def run() -> AgentResult:
            try:
                return _drain(Run(agent, streaming=False, session=session).execute())
            finally:
                close_old_connections()  # as at the end of a request: honours CONN_MAX_AGE

        return await sync_to_async(run, thread_sensitive=False)()

    @classmethod
    def stream(cls, **params: Any) -> AgentStream:
        """Iterate the answer's text chunks; ``.result`` holds the AgentResult once exhausted."""
        params, session = session_arguments(params)
        return AgentStream(Run(cls(**params), streaming=True, session=session))


RUNAWAY_LIMITS = {
    "max_cost_per_call": ((Decimal, float, int), "a number of US dollars"),
    "max_tool_calls": ((int,), "a whole number"),
    "max_identical_tool_calls": ((int,), "a whole number"),
}


def check_runaway_limits(cls: type[Agent]) -> None:
    """Refuse, when the class is created, a runaway limit that is not None or a finite number ≥ 0."""
    for name, (kinds, kind_name) in RUNAWAY_LIMITS.items():
        value = getattr(cls, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise TypeError(f"{cls.__name__}.{name} must be {kind_name} or None (got {value!r}).")
        if not Decimal(str(value)).is_finite() or value < 0:
            raise ValueError(f"{cls.__name__}.{name} must be a finite number ≥ 0 (got {value!r}).")


SESSION_ARGUMENTS = {
    "_session_id": "session_id",
    "_user_id": "user_id",
    "_tags": "tags",
    "_subject": "subject",
}


def session_arguments(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent's own parameters, and the session values given as ``_session_id``, ``_user_id``,
    ``_tags`` (by their Execution field names) and ``_subject`` (as ``subject``; None: none)."""
    own = {name: value for name, value in params.items() if name not in SESSION_ARGUMENTS}
    session = {SESSION_ARGUMENTS[name]: value for name, value in params.items() if name in SESSION_ARGUMENTS}
    if "tags" in session:
        tags = session["tags"]
        if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
            raise TypeError(f"_tags must be a list of strings (got {tags!r})")
    if session.get("subject") is not None:
        context.checked_subject(session["subject"])
    else:
        session.pop("subject", None)
    return own, session


def _drain(generator: Generator[str, None, AgentResult]) -> AgentResult:
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


class AgentStream:
    """Text chunks of a streaming agent call; ``result`` once the stream is exhausted."""

    def __init__(self, run: Run) -> None:
        self._generator = run.execute()
        self.result: AgentResult | None = None

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                chunk = next(self._generator)
            except StopIteration as stop:
                self.result = stop.value
                return
            yield chunk

    async def __aiter__(self) -> AsyncIterator[str]:
        """Iterate from async code: the stream runs on one worker thread, chunks come through a queue."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def produce() -> None:
            try:
                for chunk in self:
                    loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except BaseException as exc:  # handed to the consumer, which raises it
                loop.call_soon_threadsafe(chunks.put_nowait, exc)
            finally:
                close_old_connections()
                loop.call_soon_threadsafe(chunks.put_nowait, done)

        producer = loop.run_in_executor(None, contextvars.copy_context().run, produce)
        while (item := await chunks.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
        await producer


class Run:
    """One call of one agent: tenant → cache → attempts (retries, fallbacks) → tools → record.

    ``model`` replaces the agent's model and drops its fallbacks, ``prompt_version`` (a PromptVersion)
    replaces its prompt's current version: what an evaluation run's overrides do (``llm_agents.evals``)."""

    def __init__(
        self,
        agent: Agent,
        *,
        streaming: bool,
        session: dict[str, Any] | None = None,
        model: str | None = None,
        prompt_version: Any = None,
    ) -> None:
        self.agent = agent
        self.session = session or {}
        self.cls = type(agent)
        self.streaming = streaming
        self.model_override = model
        self.prompt_version_override = prompt_version
        self.model = model or self.cls.model or app_settings.DEFAULT_MODEL
        self.fallback_models = [] if model else list(self.cls.fallback_models)
        self.temperature = (
            self.cls.temperature if self.cls.temperature is not None else app_settings.DEFAULT_TEMPERATURE
        )
        self.timeout = self.cls.timeout if self.cls.timeout is not None else app_settings.DEFAULT_TIMEOUT
        self.retries = self.cls.retries if self.cls.retries is not None else app_settings.DEFAULT_RETRIES
        self.max_tokens = self.cls.max_tokens
        self.extra_params: dict[str, Any] = {}
        self.prompt_version: Any = None
        self.experiment: Any = None
        self.tools = {tool.name: tool for tool in map(tool_for, self.cls.tools)}
        self.attempts: list[dict[str, Any]] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.identical_tool_calls: Counter[tuple[str, str]] = Counter()  # (name, canonical arguments)
        self.fallback_chain: list[str] = []
        self.fallback_reason = ""
        self.rate_limited = False
        self.time_to_first_token_ms: int | None = None
        self.partial_response: str | None = None  # text streamed to the caller by a request that then failed
        self.pricing_source = "unknown"
        self.chosen_model = ""
        self.provider_name = ""

    # -- the call -----------------------------------------------------------------------------

    def call(self) -> AgentResult:
        """Run the call to its end and return its result (``Agent.call`` with this Run's overrides)."""
        return _drain(self.execute())

    def execute(self) -> Generator[str, None, AgentResult]:
        tenant_id = self.resolve_tenant()
        parent = context.current_execution()
        session_values = self.session_values(parent)
        units = {"session_id": parent.session_id, "user_id": parent.user_id} if parent is not None else {}
        messages = self.build_messages(**{**units, **session_values, "tenant_id": tenant_id})
        record = lifecycle.begin_execution(
            "agent",
            self.cls.agent_type,
            parent=parent,
            status="running",
            agent_version=str(self.cls.version),
            model_id=self.model,
            chosen_model_id="",
            temperature=self.temperature,
            tenant_id=tenant_id,
            parameters=self.agent.params,
            metadata=self.safe_metadata(),
            streaming=self.streaming,
            system_prompt="\n\n".join(m["content"] for m in messages if m["role"] == "system"),
            user_prompt="\n\n".join(m["content"] for m in messages if m["role"] == "user"),
            prompt_version_id=getattr(self.prompt_version, "pk", None),
            experiment_id=getattr(self.experiment, "pk", None),
            **session_values,
        )
        self.record = record
        agent_span = None
        if parent is not None:
            agent_span = SpanRecord(
                name=self.cls.agent_type, kind="agent", parent=context.current_span(),
                metadata={"execution_id": str(record.id)},
            )  # fmt: skip
            parent.add_span(agent_span)
        emit(
            signals.execution_started, sender=self.cls, agent_type=self.cls.agent_type, model=self.model,
            tenant_id=tenant_id, execution_id=record.id,
        )  # fmt: skip
        error: BaseException | None = None
        try:
            with context.activate(record):
                result = yield from self.answer(messages, tenant_id)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.finish(error)
            if agent_span is not None:
                agent_span.total_cost = record.total_cost
                agent_span.input_tokens = record.input_tokens
                agent_span.output_tokens = record.output_tokens
                agent_span.cached_tokens = record.cached_tokens
                agent_span.cache_write_tokens = record.cache_write_tokens
                agent_span.reasoning_tokens = record.reasoning_tokens
                agent_span.model_id = self.chosen_model or self.model
                agent_span.finish(error)

    def answer(
        self, messages: list[dict[str, Any]], tenant_id: str | None
    ) -> Generator[str, None, AgentResult]:
        self.refuse_if_paused(tenant_id)
        cache_key = self.cache_key(messages, tenant_id) if self.cls.cache_ttl else None
        if cache_key is not None:
            hit = caches[app_settings.CACHE_ALIAS].get(cache_key)
            if hit is not None:
                emit(signals.cache_hit, sender=self.cls, agent_type=self.cls.agent_type, cache_key=cache_key)
                record = self.record
                record.cache_hit, record.chosen_model_id = True, self.model
                record.response, record.finish_reason = hit["content"], hit.get("finish_reason", "")
                self.chosen_model = self.model
                if self.streaming and hit["content"]:
                    yield hit["content"]
                return self.result(hit["content"], hit.get("finish_reason", ""), cached=True)
            emit(signals.cache_miss, sender=self.cls, agent_type=self.cls.agent_type, cache_key=cache_key)

        # Budgets: a hard stop raises BudgetExceededError here, before any provider is asked. The
        # reservation is settled with the call's spend when the record completes (lifecycle.complete).
        self.record.budget_reservation = budgets.check_call(
            agent_type=self.cls.agent_type, tenant_id=tenant_id, user_id=self.record.user_id,
            model=self.model, messages=messages, max_tokens=self.max_tokens, at=self.record.started_at,
            sender=self.cls,
        )  # fmt: skip

        response = yield from self.first_response(messages)
        response = yield from self.tool_loop(messages, response)
        self.record.response, self.record.finish_reason = response.content, response.finish_reason
        result = self.result(response.content, response.finish_reason, cached=False)
        if cache_key is not None:
            caches[app_settings.CACHE_ALIAS].set(
                cache_key,
                {"content": response.content, "finish_reason": response.finish_reason},
                self.cls.cache_ttl,
            )
            emit(signals.cache_written, sender=self.cls, agent_type=self.cls.agent_type, cache_key=cache_key)
        return result

    def first_response(self, messages: list[dict[str, Any]]) -> Generator[str, None, ProviderResponse]:
        """Try each model of ``[model] + fallback_models``, each with its retries."""
        models = [self.model, *self.fallback_models]
        last_error: BaseException | None = None
        for index, model in enumerate(models):
            self.fallback_chain.append(model)
            try:
                response = yield from self.request_with_retries(model, messages, count_attempts=True)
            except AuthenticationError:
                raise
            except ProviderError as exc:
                last_error = exc
                if index == 0:
                    self.fallback_reason = f"{type(exc).__name__}: {exc}"[:255]
                if self.partial_response is not None:
                    break  # the caller has part of this answer: another would not follow it sensibly
                continue
            if model != self.model:
                emit(signals.fallback_used, sender=self.cls, agent_type=self.cls.agent_type, primary_model=self.model,
                     used_model=model, attempts_made=len(self.attempts))  # fmt: skip
            else:
                self.fallback_reason = ""
            return response
        tried = list(self.fallback_chain)
        emit(
            signals.all_models_exhausted, sender=self.cls, agent_type=self.cls.agent_type, models_tried=tried
        )
        raise AllModelsExhaustedError(
            f"All models failed for {self.cls.agent_type} ({', '.join(tried)}): {last_error}",
            models_tried=tried,
            last_error=last_error,
        ) from last_error

    def request_with_retries(
        self, model: str, messages: list[dict[str, Any]], *, count_attempts: bool
    ) -> Generator[str, None, ProviderResponse]:
        for retry in range(self.retries + 1):
            try:
                return (yield from self.request(model, messages, count_attempts=count_attempts))
            except ProviderError as exc:
                if (
                    not exc.retryable
                    or retry == self.retries
                    or isinstance(exc, AuthenticationError)
                    or self.partial_response is not None
                ):
                    raise
                if self.cls.retry_backoff:
                    time.sleep(self.cls.retry_backoff * 2**retry)
        raise AssertionError("unreachable")

    def request(
        self, model: str, messages: list[dict[str, Any]], *, count_attempts: bool
    ) -> Generator[str, None, ProviderResponse]:
        """One provider request: one llm span (and one attempt when ``count_attempts``)."""
        provider_name, provider = get_provider(model)
        request = ProviderRequest(
            model=model,
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout=self.timeout,
            tools=[tool.definition() for tool in self.tools.values()],
            params=dict(self.extra_params),
        )
        span = SpanRecord(name=model, kind="llm", parent=context.current_span(), model_id=model,
                          provider=provider_name, input=[dict(m) for m in messages])  # fmt: skip
        self.record.add_span(span)
        first_token_at = None
        streamed: list[str] = []
        try:
            if self.streaming:
                response = None
                for event in provider.stream(request):
                    if event.response is not None:
                        response = event.response
                    elif event.delta:
                        if first_token_at is None:
                            first_token_at = timezone.now()
                        streamed.append(event.delta)
                        yield event.delta
                if response is None:
                    raise ProviderError(f"The {provider_name} stream ended without a final response.")
            else:
                response = provider.complete(request)
        except ProviderError as exc:
            self.rate_limited = self.rate_limited or isinstance(exc, RateLimitError)
            self.account(span, exc.input_tokens, exc.output_tokens)
            if streamed:
                self.partial_response = "".join(streamed)
                span.output = {"content": self.partial_response, "tool_calls": [], "partial": True}
                self.record.response = self.partial_response
            span.finish(exc)
            if count_attempts:
                self.attempts.append(self.attempt(span, exc))
            raise
        usage = response.usage
        self.account(span, usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cache_write_tokens,
                     usage.reasoning_tokens)  # fmt: skip
        if first_token_at is not None:
            span.time_to_first_token_ms = elapsed_ms(span.started_at, first_token_at)
            if self.time_to_first_token_ms is None:
                self.time_to_first_token_ms = elapsed_ms(self.record.started_at, first_token_at)
        span.output = {
            "content": response.content,
            "tool_calls": [vars(call) for call in response.tool_calls],
        }
        span.finish()
        if count_attempts:
            self.attempts.append(self.attempt(span, None))
        self.chosen_model, self.provider_name = model, provider_name
        self.check_cost()
        return response

    def account(self, span: SpanRecord, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
                cache_write_tokens: int = 0, reasoning_tokens: int = 0) -> None:  # fmt: skip
        """Price a request's tokens at the rate in force when it started, on its span and the execution."""
        cost = span.account(input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens)
        if input_tokens or output_tokens:
            self.pricing_source = cost.source

    @staticmethod
    def attempt(span: SpanRecord, error: ProviderError | None) -> dict[str, Any]:
        return {
            "model_id": span.model_id,
            "status": "success" if error is None else lifecycle.failure_status(error),
            "error_class": type(error).__name__ if error else "",
            "error_message": str(error) if error else "",
            "duration_ms": span.duration_ms,
            "input_tokens": span.input_tokens,
            "output_tokens": span.output_tokens,
            "started_at": span.started_at.isoformat(),
        }

    def tool_loop(
        self, messages: list[dict[str, Any]], response: ProviderResponse
    ) -> Generator[str, None, ProviderResponse]:
        """Run the tools the model asks for, then ask again, up to ``max_tool_iterations`` rounds."""
        messages = list(messages)
        for _ in range(self.cls.max_tool_iterations):
            if not response.tool_calls:
                break
            messages.append({
                "role": "assistant", "content": response.content,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
            })  # fmt: skip
            for call in response.tool_calls:
                self.check_tool_limits(call)
                result = self.run_tool(call)
                content = result if isinstance(result, str) else json.dumps(result, default=str)
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
                )
            self.check_cost()  # nested agents run as tools added their cost
            response = yield from self.request_with_retries(self.chosen_model, messages, count_attempts=False)
        return response

    def refuse_if_paused(self, tenant_id: str | None) -> None:
        """Raise AgentPausedError while an AgentPause applies to this agent in ``tenant_id``: before
        the cache, the budgets and any provider request. One indexed query on the primary database; while
        the database is down, the call goes ahead."""
        from ..models import AgentPause

        alias = router.db_for_write(AgentPause)
        try:
            pause = AgentPause.objects.using(alias).applying_to(self.cls.agent_type, tenant_id).first()
        except DatabaseError:
            # Like the budgets: while the database is down the call goes ahead (its record is spooled).
            logger.warning(
                "llm_agents could not read the pauses of %s; the call goes ahead", self.cls.agent_type
            )
            return
        if pause is None:
            return
        where = f" in tenant {pause.tenant_id!r}" if pause.tenant_id else ""
        until = f"until {pause.until.isoformat()}" if pause.until else "until lifted"
        reason = pause.reason or "no reason given"
        raise AgentPausedError(f"{self.cls.agent_type} is paused{where} {until}: {reason}", pause=pause)

    def check_tool_limits(self, call: ToolCall) -> None:
        """Raise RunawayAgentError instead of running the tool call that would go past
        ``max_tool_calls`` or ``max_identical_tool_calls`` (so it is neither run nor recorded)."""
        agent_type, limit = self.cls.agent_type, self.cls.max_tool_calls
        if limit is not None and len(self.tool_calls) >= limit:
            raise RunawayAgentError(
                f"{agent_type} asked for a tool call ({call.name}) after {len(self.tool_calls)} tool runs: "
                f"max_tool_calls is {limit}.",
                limit="max_tool_calls",
                value=limit,
            )
        key = (call.name, json.dumps(call.arguments, sort_keys=True, separators=(",", ":"), default=str))
        limit = self.cls.max_identical_tool_calls
        if limit is not None and self.identical_tool_calls[key] >= limit:
            raise RunawayAgentError(
                f"{agent_type} asked for {call.name} with the same arguments after {limit} identical runs: "
                f"max_identical_tool_calls is {limit}.",
                limit="max_identical_tool_calls",
                value=limit,
            )
        self.identical_tool_calls[key] += 1

    def check_cost(self) -> None:
        """Raise RunawayAgentError once the call's running cost (nested agents included) is past
        ``max_cost_per_call``: no further request is made."""
        limit = self.cls.max_cost_per_call
        cost = self.record.total_cost
        if limit is not None and cost > Decimal(str(limit)):
            raise RunawayAgentError(
                f"{self.cls.agent_type} cost ${money(cost)} so far: max_cost_per_call is ${limit}.",
                limit="max_cost_per_call",
                value=limit,
            )

    def run_tool(self, call: ToolCall) -> Any:
        metadata = {"tool_call_id": call.id}
        with tracing.span(call.name, kind="tool", input=call.arguments, metadata=metadata) as span:
            tool = self.tools.get(call.name)
            try:
                if tool is None:
                    raise LookupError(f"The model asked for an unknown tool {call.name!r}.")
                result = tool.invoke(call.arguments)
            except Exception as exc:  # the model is told, and may recover
                span.status = "error"
                span.error_class, span.error_message = type(exc).__name__, str(exc)
                result = {"error": f"{type(exc).__name__}: {exc}"}
            span.output = result
        self.tool_calls.append(
            {"id": call.id, "name": call.name, "arguments": call.arguments, "result": result}
        )
        return result

    # -- bookkeeping --------------------------------------------------------------------------

    def finish(self, error: BaseException | None) -> None:
        record = self.record
        record.chosen_model_id = self.chosen_model or self.model
        record.provider = self.provider_name or provider_name_for(self.model)
        record.attempts, record.attempts_count = self.attempts, len(self.attempts)
        record.fallback_chain = self.fallback_chain if len(self.fallback_chain) > 1 else []
        record.fallback_reason = self.fallback_reason if len(self.fallback_chain) > 1 else ""
        record.tool_calls, record.tool_calls_count = self.tool_calls, len(self.tool_calls)
        record.rate_limited = self.rate_limited
        record.retryable = bool(getattr(error, "retryable", False)) if error else False
        record.pricing_source = self.pricing_source
        record.time_to_first_token_ms = self.time_to_first_token_ms
        lifecycle.complete(record, error=error)
        payload = {
            "agent_type": self.cls.agent_type, "execution_id": record.id, "model": self.model,
            "model_used": record.chosen_model_id, "tenant_id": record.tenant_id,
            "status": record.status, "duration_ms": record.duration_ms,
            "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
            "total_tokens": record.total_tokens, "input_cost": record.input_cost,
            "output_cost": record.output_cost, "total_cost": record.total_cost,
            "cached": record.cache_hit, "attempts_made": len(self.attempts),
            "finish_reason": record.finish_reason,
            "time_to_first_token_ms": self.time_to_first_token_ms,
        }  # fmt: skip
        if error is None:
            emit(signals.execution_completed, sender=self.cls, **payload)
        else:
            emit(signals.execution_failed, sender=self.cls, error_class=type(error).__name__,
                 error_message=str(error), **payload)  # fmt: skip

    def result(self, content: str, finish_reason: str, *, cached: bool) -> AgentResult:
        record = self.record
        now = timezone.now()
        return AgentResult(
            content=content,
            parsed=self.parse(content),
            execution_id=self.record.id,
            model_id=self.model,
            chosen_model_id=self.chosen_model or self.model,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            total_tokens=record.total_tokens,
            total_cost=record.total_cost,
            duration_ms=elapsed_ms(self.record.started_at, now),
            cached=cached,
            tool_calls=list(self.tool_calls),
            finish_reason=finish_reason,
            time_to_first_token_ms=self.time_to_first_token_ms,
        )

    def parse(self, content: str) -> Any:
        schema = self.cls.schema
        if schema is None:
            return None
        if hasattr(schema, "model_validate_json"):
            return schema.model_validate_json(content)
        return json.loads(content)

    def build_messages(self, **units: Any) -> list[dict[str, Any]]:
        """The messages to send; from the agent's managed prompt when it has one: the version its
        ``prompt_label`` points at (the ``production`` label, else the latest version, by default),
        or a running experiment's variant for ``units`` (``tenant_id``, ``session_id``, ``user_id``)."""
        slug = self.cls.prompt
        if self.prompt_version_override is not None:
            built = self.prompt_version_override.build(**self.agent.params)
            self.prompt_version = self.prompt_version_override
        elif not slug:
            return self.agent.messages()
        else:
            from ..models import Prompt

            prompt = Prompt.load(
                slug, self.cls.prompt_label, user_id=units.get("user_id"),
                session_id=units.get("session_id"), tenant_id=units.get("tenant_id"),
            )  # fmt: skip
            built = prompt.build(**self.agent.params)
            self.prompt_version = prompt.current_version
            self.experiment = prompt.experiment
        self.model = self.model_override or self.cls.model or built.pop("model", None) or self.model
        messages = built.pop("messages")
        if self.cls.temperature is None and "temperature" in built:
            self.temperature = built.pop("temperature")
        if self.max_tokens is None and "max_tokens" in built:
            self.max_tokens = built.pop("max_tokens")
        built.pop("model", None)
        self.extra_params = built
        return messages

    def session_values(self, parent: ExecutionRecord | None) -> dict[str, Any]:
        """The session values given to this call, its tags added to those it would inherit, and the
        columns attributing it to its ``_subject``."""
        values: dict[str, Any] = {
            name: str(value) for name, value in self.session.items() if name not in ("tags", "subject")
        }
        if "tags" in self.session:
            inherited = parent.tags if parent is not None else context.current_session().tags
            values["tags"] = list(dict.fromkeys([*inherited, *self.session["tags"]]))
        if "subject" in self.session:
            values.update(lifecycle.subject_values(self.session["subject"]))
        return values

    def resolve_tenant(self) -> str | None:
        if not app_settings.MULTI_TENANCY:
            return None
        try:
            return context.current_tenant_id()
        except Exception:
            logger.exception("TENANT_RESOLVER raised; the call is recorded without a tenant")
            return None

    def safe_metadata(self) -> dict[str, Any]:
        try:
            return dict(self.agent.execution_metadata() or {})
        except Exception:
            logger.exception(
                "%s.execution_metadata() raised; the call is recorded without metadata", self.cls.__name__
            )
            return {}

    def cache_key(self, messages: list[dict[str, Any]], tenant_id: str | None) -> str:
        material = json.dumps(
            {
                "agent": f"{self.cls.__module__}.{self.cls.__qualname__}",
                "version": str(self.cls.version),
                "model": self.model,
                "fallback_models": self.fallback_models,
                "temperature": self.temperature,
                "messages": messages,
                "params": self.agent.params,
                "tools": sorted(self.tools),
                "tenant": tenant_id,
            },
            sort_keys=True,
            default=str,
        )
        return "llm_agents:response:" + hashlib.sha256(material.encode()).hexdigest()


def tool_for(item: Any) -> Any:
    """The tool object for an entry of ``Agent.tools`` (a Tool subclass or an Agent subclass)."""
    if isinstance(item, type) and issubclass(item, Agent):
        return AgentTool(item)
    if isinstance(item, type) and issubclass(item, Tool):
        return item
    raise TypeError(f"{item!r} in Agent.tools is neither a Tool nor an Agent subclass.")
