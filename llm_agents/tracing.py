"""Context for tracking: the current tenant (and, with the agent runtime, the trace/span stack).

Context variables keep this correct across threads and asyncio tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.utils.module_loading import import_string

from .conf import app_settings

_tenant: ContextVar[str | None] = ContextVar("llm_agents_tenant", default=None)


@contextmanager
def tenant(tenant_id: Any) -> Iterator[str]:
    """Record and scope everything inside the block under ``tenant_id``::

    with tenant("acme"):
        SearchAgent.call(query="x")
    """
    value = str(tenant_id)
    token = _tenant.set(value)
    try:
        yield value
    finally:
        _tenant.reset(token)


def resolve_tenant_id(*args: Any) -> str | None:
    """Call ``TENANT_RESOLVER`` (with the request in API views, with no argument elsewhere)."""
    path = app_settings.TENANT_RESOLVER
    if not path:
        return None
    value = import_string(path)(*args)
    return None if value is None or value == "" else str(value)


def current_tenant_id() -> str | None:
    """The tenant of an enclosing ``tenant()`` block, else what ``TENANT_RESOLVER`` returns."""
    value = _tenant.get()
    return value if value is not None else resolve_tenant_id()


# -- traces and spans ---------------------------------------------------------------------------

_execution: ContextVar[Any] = ContextVar("llm_agents_execution", default=None)
_span: ContextVar[Any] = ContextVar("llm_agents_span", default=None)


def current_execution() -> Any:
    """The :class:`~llm_agents.recording.ExecutionRecord` being recorded here, if any."""
    return _execution.get()


def current_span() -> Any:
    return _span.get()


@contextmanager
def activate(record: Any) -> Iterator[Any]:
    """Make ``record`` the current execution (its spans start at the top level)."""
    execution_token = _execution.set(record)
    span_token = _span.set(None)
    try:
        yield record
    finally:
        _span.reset(span_token)
        _execution.reset(execution_token)


@contextmanager
def span(name: str, kind: str = "custom", **fields: Any) -> Iterator[Any]:
    """A step inside the current execution. Set ``input``, ``output`` or ``metadata`` on the yielded
    span. Outside any execution the span is not recorded (the block still runs).

    An ``llm`` span stands for a model call: its usage, given by ``record_usage(...)`` or by setting
    its token attributes inside the block, is priced and added to the execution's totals.
    """
    from .recording import SpanRecord

    record = SpanRecord(name=name, kind=kind, parent=_span.get(), **fields)
    execution = _execution.get()
    if execution is not None:
        execution.add_span(record)
    token = _span.set(record)
    try:
        yield record
    except BaseException as exc:
        record.settle_usage()
        record.finish(exc)
        raise
    else:
        record.settle_usage()
        record.finish()
    finally:
        _span.reset(token)


class Trace:
    """What ``trace()`` yields: ``execution_id``, ``execution`` (lazy) and ``metadata``.

    A trace opened inside another execution is recorded as a span of it: ``span`` is that span,
    and ``execution`` the enclosing execution.
    """

    def __init__(self, record: Any, span: Any = None) -> None:
        self.record = record
        self.span = span

    @property
    def execution_id(self) -> Any:
        return self.record.id

    @property
    def execution(self) -> Any:
        from .models import Execution

        return Execution.objects.get(pk=self.record.id)

    @property
    def metadata(self) -> dict[str, Any]:
        if self.span is not None:
            return self.span.metadata
        return self.record.fields.setdefault("metadata", {})


@contextmanager
def trace(name: str, metadata: dict[str, Any] | None = None) -> Iterator[Any]:
    """Record the block as an Execution of kind ``trace`` named ``name`` (its ``agent_type``).

    Agent calls inside become child executions; a trace inside another execution becomes a span.
    """
    from . import recording

    parent = _execution.get()
    if parent is not None:
        with span(name, kind="custom", metadata=dict(metadata or {})) as nested:
            yield Trace(parent, span=nested)
        return
    record = recording.ExecutionRecord(kind="trace", agent_type=name)
    record.fields.update(
        status="running",
        metadata=dict(metadata or {}),
        tenant_id=current_tenant_id() if app_settings.MULTI_TENANCY else None,
    )
    recording.start(record)
    with activate(record):
        try:
            yield Trace(record)
        except BaseException as exc:
            recording.complete(record, error=exc)
            raise
        else:
            recording.complete(record)


def traced(name: str | None = None, metadata: dict[str, Any] | None = None) -> Any:
    """Decorator form of :func:`trace` (sync or async functions); the name defaults to the function's."""
    import functools
    import inspect

    def decorate(function: Any) -> Any:
        trace_name = name or function.__qualname__
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with trace(trace_name, metadata=metadata):
                    return await function(*args, **kwargs)

            return async_wrapper

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace(trace_name, metadata=metadata):
                return function(*args, **kwargs)

        return wrapper

    if callable(name):
        function, name = name, None
        return decorate(function)
    return decorate
