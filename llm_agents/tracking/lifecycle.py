"""The life of an execution record: begun, started (its ``running`` row), completed.

:func:`begin_execution` is how every kind of execution starts (agent calls, ``trace()``, raw SDK
calls, batch results); :func:`complete` closes a record, rolls its totals into its parent, writes it
(:mod:`~llm_agents.tracking.transport`), then runs the **completion hooks**: functions registered
with :func:`add_completion_hook` that receive every completed record, in every logging mode, on
the caller's side. The app registers budget settlement and, while ``OTEL_EXPORT`` is on, the
OpenTelemetry export; a hook that raises is logged and never reaches the caller.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from .. import context
from ..conf import app_settings
from ..db.isolation import on_event_loop, on_worker
from .records import EXECUTION_VALUES, ExecutionRecord, elapsed_ms
from .rows import execution_row, payload_for
from .transport import send_async, write_or_spool
from .writer import write_isolated

logger = logging.getLogger("llm_agents")

CompletionHook = Callable[[ExecutionRecord], None]
_completion_hooks: list[CompletionHook] = []


def add_completion_hook(hook: CompletionHook) -> None:
    """Run ``hook(record)`` after every execution completes (once, however often it is added)."""
    if hook not in _completion_hooks:
        _completion_hooks.append(hook)


def remove_completion_hook(hook: CompletionHook) -> None:
    if hook in _completion_hooks:
        _completion_hooks.remove(hook)


def completion_hooks() -> list[CompletionHook]:
    """The hooks registered now, in the order they run."""
    return list(_completion_hooks)


def begin_execution(
    kind: str,
    agent_type: str,
    *,
    parent: ExecutionRecord | None = None,
    id: uuid.UUID | None = None,
    started_at: dt.datetime | None = None,
    write_start: bool = True,
    **values: Any,
) -> ExecutionRecord:
    """A new execution record of ``kind`` named ``agent_type``, nested in ``parent``, with the given
    Execution column ``values`` (the record's attributes of those names; any other name is a
    ``TypeError``); its ``running`` row is written unless ``write_start`` is False (a record made
    after the fact, such as a batch result).

    The session, user, tags and evaluation run not given in ``values`` are ``parent``'s (nested
    executions inherit them), else the context's (``session()``, ``evaluating()``). So is the object
    the execution is attributed to (``subject_type_id``, ``subject_id``), except that a parent
    attributed to none leaves a nested execution to the context's (``attribute_to()``)."""
    unknown = values.keys() - EXECUTION_VALUES
    if unknown:
        raise TypeError(f"begin_execution() got values for no Execution field: {', '.join(sorted(unknown))}")
    inherited: dict[str, Any]
    if parent is not None:
        inherited = {"session_id": parent.session_id, "user_id": parent.user_id, "tags": list(parent.tags),
                     "eval_run_id": parent.eval_run_id}  # fmt: skip
    else:
        scope = context.current_session()
        inherited = {"session_id": scope.session_id, "user_id": scope.user_id, "tags": list(scope.tags),
                     "eval_run_id": context.current_eval_run_id()}  # fmt: skip
    subject = context.current_subject()
    if parent is not None and parent.subject_id:
        inherited.update(subject_type_id=parent.subject_type_id, subject_id=parent.subject_id)
    elif subject is not None:
        inherited.update(subject_values(subject))
    values = {**inherited, **values}
    record = ExecutionRecord(
        kind=kind,
        agent_type=agent_type,
        parent=parent,
        id=id if id is not None else uuid.uuid4(),
        started_at=started_at if started_at is not None else timezone.now(),
        **values,
    )
    if write_start:
        start(record)
    return record


def subject_values(obj: Any) -> dict[str, Any]:
    """The Execution columns attributing an execution to ``obj``, a saved model instance
    (:func:`~llm_agents.context.checked_subject`): its content type (Django caches it after the first
    look-up, made on a worker thread when called on an event loop's) and its primary key as text."""
    obj = context.checked_subject(obj)
    if on_event_loop():
        content_type = on_worker(lambda: ContentType.objects.get_for_model(obj))
    else:
        content_type = ContentType.objects.get_for_model(obj)
    return {"subject_type_id": content_type.pk, "subject_id": str(obj.pk)}


def start(record: ExecutionRecord) -> None:
    """Write the ``running`` row of a starting execution (synchronous mode only)."""
    if not app_settings.TRACK_EXECUTIONS or app_settings.ASYNC_LOGGING:
        return
    if record.parent is not None and not record.parent.written:
        return
    try:
        # Overwritten when the execution finishes: it never waits for the WAL flush.
        write_isolated({"executions": [execution_row(record)], "spans": []}, insert_only=True, durable=False)
        record.written = True
    except Exception:
        logger.debug("llm_agents could not write the start of execution %s; it is written at the end",
                     record.id, exc_info=True)  # fmt: skip


def finish(record: ExecutionRecord) -> None:
    """Write a finished execution: at once (synchronous), or with its root (``ASYNC_LOGGING``)."""
    if not app_settings.TRACK_EXECUTIONS:
        return
    if app_settings.ASYNC_LOGGING:
        if record.parent is None:
            send_async(payload_for(record.walk()))
        return
    if record.parent is not None and not record.parent.written:
        return  # written with its parent, which did not reach the database yet
    records = record.walk() if not record.written else [record]
    write_or_spool(payload_for(records), durable=app_settings.DURABLE_TRACKING_WRITES)
    record.written = True


def failure_status(error: BaseException) -> str:
    """``timeout`` when the (last) failure was a timeout, else ``error``."""
    from ..errors import AllModelsExhaustedError, ProviderTimeoutError

    if isinstance(error, AllModelsExhaustedError):
        error = error.last_error or error
    if isinstance(error, ProviderTimeoutError | TimeoutError) or type(error).__name__.endswith(
        ("Timeout", "TimeoutError")
    ):
        return "timeout"  # ours, the standard library's, or an SDK's (APITimeoutError, ReadTimeout)
    return "error"


def complete(record: ExecutionRecord, error: BaseException | None = None) -> None:
    """Close ``record`` (status, completion time, duration), roll its totals into its parent, write
    it, then run the completion hooks."""
    now = timezone.now()
    record.completed_at = now
    record.duration_ms = elapsed_ms(record.started_at, now)
    if error is None:
        record.status = "success"
    else:
        record.status = failure_status(error)
        record.error_class = type(error).__name__
        record.error_message = str(error)
    if record.parent is not None:
        record.parent.add_child_totals(record)
    finish(record)
    run_completion_hooks(record)


def run_completion_hooks(record: ExecutionRecord) -> None:
    for hook in list(_completion_hooks):
        try:
            hook(record)
        except Exception:
            logger.exception(
                "llm_agents: completion hook %s failed for execution %s",
                getattr(hook, "__qualname__", hook),
                record.id,
            )
