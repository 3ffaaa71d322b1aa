"""The context of the code running now, kept in context variables (correct across threads and
asyncio tasks): the tenant, the session (and end user, tags), the host's object calls are made for,
the evaluation run, the execution and span being recorded, and whether an SDK call is one of our
providers' own. The bottom of the
package: it imports nothing of it but the settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils.module_loading import import_string

from .conf import app_settings

__all__ = [
    "SessionScope",
    "activate",
    "attribute_to",
    "checked_subject",
    "current_eval_run_id",
    "current_session",
    "evaluating",
    "session",
    "current_execution",
    "current_span",
    "current_subject",
    "current_tenant_id",
    "in_provider_call",
    "provider_call",
    "resolve_tenant_id",
    "set_current_span",
    "tenant",
]

_tenant: ContextVar[str | None] = ContextVar("llm_agents_tenant", default=None)
_execution: ContextVar[Any] = ContextVar("llm_agents_execution", default=None)
_span: ContextVar[Any] = ContextVar("llm_agents_span", default=None)
_provider_call: ContextVar[bool] = ContextVar("llm_agents_provider_call", default=False)
_eval_run: ContextVar[Any] = ContextVar("llm_agents_eval_run", default=None)


# -- the tenant -----------------------------------------------------------------------------------


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


# -- the session, the end user and the tags ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionScope:
    """What executions started now are recorded under: ``session_id``, ``user_id``, ``tags``."""

    session_id: str = ""
    user_id: str = ""
    tags: tuple[str, ...] = ()

    def within(
        self, session_id: Any = None, user_id: Any = None, tags: Iterable[Any] | None = None
    ) -> SessionScope:
        """This scope with ``session_id`` and ``user_id`` replaced when given, ``tags`` added."""
        added = tuple(str(tag) for tag in tags or ())
        return SessionScope(
            session_id=self.session_id if session_id is None else str(session_id),
            user_id=self.user_id if user_id is None else str(user_id),
            tags=tuple(dict.fromkeys((*self.tags, *added))),
        )


NO_SESSION = SessionScope()
_session: ContextVar[SessionScope] = ContextVar("llm_agents_session", default=NO_SESSION)


@contextmanager
def session(
    session_id: Any = None, *, user_id: Any = None, tags: Iterable[Any] | None = None
) -> Iterator[SessionScope]:
    """Record every execution started inside the block (nested ones too) under a session, an end
    user and tags::

    with session("conv-42", user_id="u-7", tags=["beta"]):
        SupportAgent.call(question="...")

    Blocks nest: an inner block's session and user replace the outer's, its tags are added."""
    scope = _session.get().within(session_id, user_id, tags)
    token = _session.set(scope)
    try:
        yield scope
    finally:
        _session.reset(token)


def current_session() -> SessionScope:
    """The session, user and tags of the enclosing ``session()`` blocks (empty outside any)."""
    return _session.get()


# -- the host's object the calls are made for ---------------------------------------------------------

_subject: ContextVar[models.Model | None] = ContextVar("llm_agents_subject", default=None)


def checked_subject(obj: Any) -> models.Model:
    """``obj`` when it is a saved model instance (what an execution can be attributed to), else a
    ``TypeError`` naming it."""
    if not isinstance(obj, models.Model):
        raise TypeError(
            f"Executions are attributed to a saved model instance, not {obj!r} ({type(obj).__name__})"
        )
    if obj.pk is None:
        raise TypeError(
            f"Executions are attributed to a saved model instance: {obj!r} has no primary key yet"
        )
    return obj


@contextmanager
def attribute_to(obj: Any) -> Iterator[models.Model]:
    """Attribute every execution started inside the block (nested ones too) to ``obj``, a saved
    model instance of the host's (an order, a ticket, a document)::

    with attribute_to(ticket):
        TriageAgent.call(text=ticket.body)

    Anything but a saved model instance raises ``TypeError`` before the block runs. An inner block
    replaces the outer's object."""
    token = _subject.set(checked_subject(obj))
    try:
        yield obj
    finally:
        _subject.reset(token)


def current_subject() -> models.Model | None:
    """The object of the enclosing ``attribute_to()`` block, if any."""
    return _subject.get()


# -- the evaluation run -----------------------------------------------------------------------------


@contextmanager
def evaluating(run_id: Any) -> Iterator[Any]:
    """Record every execution started inside the block as part of the evaluation run ``run_id``."""
    token = _eval_run.set(run_id)
    try:
        yield run_id
    finally:
        _eval_run.reset(token)


def current_eval_run_id() -> Any:
    """The id of the evaluation run executions started here belong to, if any."""
    return _eval_run.get()


# -- the execution and span being recorded ----------------------------------------------------------


def current_execution() -> Any:
    """The :class:`~llm_agents.tracking.records.ExecutionRecord` being recorded here, if any."""
    return _execution.get()


def current_span() -> Any:
    """The :class:`~llm_agents.tracking.records.SpanRecord` open here, if any."""
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
def set_current_span(record: Any) -> Iterator[Any]:
    """Make ``record`` the current span inside the block."""
    token = _span.set(record)
    try:
        yield record
    finally:
        _span.reset(token)


# -- our providers' own SDK calls -------------------------------------------------------------------


@contextmanager
def provider_call() -> Iterator[None]:
    """Mark the SDK calls made inside the block as our providers' own: the agent records them, so
    AUTO_INSTRUMENT lets them through untracked. Keep the block around the ``create`` call itself."""
    token = _provider_call.set(True)
    try:
        yield
    finally:
        _provider_call.reset(token)


def in_provider_call() -> bool:
    return _provider_call.get()
