"""Celery tasks: thin wrappers around plain functions (which tests and commands call too).

``record_executions`` lives with the rest of the tracking transport and ``deliver_alert`` with the
alert deliveries; both are registered under this module's name (``llm_agents.tasks.…``), where
Celery's autodiscovery finds them.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.schedules import crontab

from . import retention
from .alerts.delivery import deliver_alert
from .db import partitions
from .tracking.transport import record_executions

__all__ = [
    "beat_schedule",
    "deliver_alert",
    "ensure_partitions",
    "evaluate_alerts",
    "flush_batches",
    "poll_batches",
    "purge_executions",
    "record_executions",
    "run_eval",
]


@shared_task(ignore_result=True)
def purge_executions(days: int | None = None, batch_size: int = retention.DEFAULT_BATCH_SIZE) -> int:
    """Delete executions older than ``days`` (default RETENTION_DAYS); returns how many."""
    return retention.purge(days, batch_size=batch_size).executions


@shared_task(ignore_result=True)
def ensure_partitions(ahead: int = partitions.DEFAULT_AHEAD) -> list[str]:
    """With ``PARTITIONING = "monthly"`` on PostgreSQL, create the partitions of the current month and
    the ``ahead`` coming ones (pg_partman's maintenance when it keeps the tables); returns the names
    of those created. Does nothing otherwise."""
    return partitions.maintain(ahead=ahead)


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


@shared_task(ignore_result=True, name="llm_agents.tasks.run_eval")
def run_eval(run_id: str) -> str:
    """Execute the pending evaluation run ``run_id`` (see ``evals.execute``); returns its status. A run
    that is no longer pending (a repeated delivery) is left as it is."""
    from . import evals

    return str(evals.execute(run_id).status)


@shared_task(ignore_result=True)
def evaluate_alerts() -> int:
    """Evaluate every active alert rule now (see ``alerts.evaluation.evaluate``); returns how many
    fired."""
    from .alerts import evaluation

    return len(evaluation.evaluate())


def beat_schedule() -> dict[str, dict[str, Any]]:
    """A suggested Celery beat schedule for the periodic tasks::

        app.conf.beat_schedule = {**app.conf.beat_schedule, **llm_agents.tasks.beat_schedule()}

    Evaluate the alert rules every minute, flush every 5 minutes, poll every 10 minutes (batches take
    minutes to hours), purge at 03:30, create the coming months' partitions at 03:10 (nothing unless
    ``PARTITIONING`` is set).
    """
    return {
        "llm_agents.evaluate_alerts": {"task": "llm_agents.tasks.evaluate_alerts", "schedule": 60.0},
        "llm_agents.flush_batches": {"task": "llm_agents.tasks.flush_batches", "schedule": 300.0},
        "llm_agents.poll_batches": {"task": "llm_agents.tasks.poll_batches", "schedule": 600.0},
        "llm_agents.purge_executions": {
            "task": "llm_agents.tasks.purge_executions",
            "schedule": crontab(hour=3, minute=30),
        },
        "llm_agents.ensure_partitions": {
            "task": "llm_agents.tasks.ensure_partitions",
            "schedule": crontab(hour=3, minute=10),
        },
    }
