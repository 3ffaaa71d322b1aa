"""Tracing: ``trace()`` records a block as an execution, ``span()`` a step inside one, ``traced``
decorates a function; ``tenant()`` scopes what runs inside to a tenant, ``session()`` records it
under a session, an end user and tags, ``attribute_to()`` attributes it to an object of the host's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .conf import app_settings
from .context import (
    activate,
    attribute_to,
    current_execution,
    current_span,
    current_tenant_id,
    session,
    set_current_span,
    tenant,
)
from .tracking import lifecycle
from .tracking.records import ExecutionRecord, SpanRecord

__all__ = ["Trace", "attribute_to", "current_tenant_id", "session", "span", "tenant", "trace", "traced"]


@contextmanager
def span(name: str, kind: str = "custom", **fields: Any) -> Iterator[Any]:
    """A step inside the current execution. Set ``input``, ``output`` or ``metadata`` on the yielded
    span. Outside any execution the span is not recorded (the block still runs).

    An ``llm`` span stands for a model call: its usage, given by ``record_usage(...)`` or by setting
    its token attributes inside the block, is priced and added to the execution's totals.
    """
    record = SpanRecord(name=name, kind=kind, parent=current_span(), **fields)
    execution = current_execution()
    if execution is not None:
        execution.add_span(record)
    with set_current_span(record):
        try:
            yield record
        except BaseException as exc:
            record.settle_usage()
            record.finish(exc)
            raise
        else:
            record.settle_usage()
            record.finish()


class Trace:
    """What ``trace()`` yields: ``execution_id``, ``execution`` (lazy) and ``metadata``.

    A trace opened inside another execution is recorded as a span of it: ``span`` is that span,
    and ``execution`` the enclosing execution.
    """

    def __init__(self, record: ExecutionRecord, span: SpanRecord | None = None) -> None:
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
        return self.record.metadata


@contextmanager
def trace(
    name: str,
    metadata: dict[str, Any] | None = None,
    *,
    session_id: Any = None,
    user_id: Any = None,
    tags: Iterable[Any] | None = None,
    subject: Any = None,
) -> Iterator[Any]:
    """Record the block as an Execution of kind ``trace`` named ``name`` (its ``agent_type``).

    Agent calls inside become child executions; a trace inside another execution becomes a span.
    ``session_id``, ``user_id`` and ``tags`` apply as a ``session()`` block around it would, and
    ``subject`` (a saved model instance, else ``TypeError``) as an ``attribute_to()`` block would.
    """
    if subject is not None:
        with (
            attribute_to(subject),
            trace(name, metadata, session_id=session_id, user_id=user_id, tags=tags) as block,
        ):
            yield block
        return
    if session_id is not None or user_id is not None or tags is not None:
        with session(session_id, user_id=user_id, tags=tags):
            with trace(name, metadata) as traced_block:
                yield traced_block
        return
    parent = current_execution()
    if parent is not None:
        with span(name, kind="custom", metadata=dict(metadata or {})) as nested:
            yield Trace(parent, span=nested)
        return
    record = lifecycle.begin_execution(
        "trace",
        name,
        status="running",
        metadata=dict(metadata or {}),
        tenant_id=current_tenant_id() if app_settings.MULTI_TENANCY else None,
    )
    with activate(record):
        try:
            yield Trace(record)
        except BaseException as exc:
            lifecycle.complete(record, error=exc)
            raise
        else:
            lifecycle.complete(record)


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
