"""Celery tasks: thin wrappers around plain functions (which tests and commands call too)."""

from __future__ import annotations

import json
from typing import Any

from celery import shared_task
from celery.schedules import crontab
from django.db import DatabaseError

from . import recording, retention
from .spool import spool


@shared_task(acks_late=True, ignore_result=True)
def record_executions(payload: str | dict[str, list[dict[str, Any]]]) -> int:
    """Write finished executions and their spans; idempotent by UUID, so a redelivery is harmless.

    ``payload`` is ``{"executions": [...], "spans": [...]}`` of JSON-safe rows, or that document as a
    JSON string with every field of every row (what ``ASYNC_LOGGING`` sends: see
    ``recording.encode_message``), which goes to PostgreSQL undecoded.

    If the database cannot be reached, the payload goes to this worker's local spool (and the
    message is acknowledged); every later run drains the spool once the database is back.
    """
    try:
        if isinstance(payload, str):
            written = recording.write_document(payload)
        else:
            recording.write_payload(payload)
            written = len(payload.get("executions", []))
    except DatabaseError as exc:
        spool.save(json.loads(payload) if isinstance(payload, str) else payload, exc)
        return 0
    spool.maybe_drain()
    return written


@shared_task(ignore_result=True)
def purge_executions(days: int | None = None, batch_size: int = retention.DEFAULT_BATCH_SIZE) -> int:
    """Delete executions older than ``days`` (default RETENTION_DAYS); returns how many."""
    return retention.purge(days, batch_size=batch_size).executions


@shared_task(ignore_result=True)
def flush_batches(purpose: str | None = None) -> dict[str, Any]:
    """Submit pending batch requests (of ``purpose``, or all) to the Batch API; see ``batches.flush``."""
    from . import batches

    return batches.flush(purpose).as_dict()


@shared_task(ignore_result=True)
def poll_batches() -> dict[str, Any]:
    """Release stale claims, refresh unfinished batches, reconcile finished ones; see ``batches.poll``."""
    from . import batches

    return batches.poll().as_dict()


def beat_schedule() -> dict[str, dict[str, Any]]:
    """A suggested Celery beat schedule for the periodic tasks::

        app.conf.beat_schedule = {**app.conf.beat_schedule, **llm_agents.tasks.beat_schedule()}

    Flush every 5 minutes, poll every 10 minutes (batches take minutes to hours), purge at 03:30.
    """
    return {
        "llm_agents.flush_batches": {"task": "llm_agents.tasks.flush_batches", "schedule": 300.0},
        "llm_agents.poll_batches": {"task": "llm_agents.tasks.poll_batches", "schedule": 600.0},
        "llm_agents.purge_executions": {
            "task": "llm_agents.tasks.purge_executions",
            "schedule": crontab(hour=3, minute=30),
        },
    }
