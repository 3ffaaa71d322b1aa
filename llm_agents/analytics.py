"""Figures shared by the API's ``overview/`` and the admin dashboard, from the QuerySet methods."""

from __future__ import annotations

from typing import Any

from django.db import connections

from .db import fastpaths
from .models.querysets import ExecutionQuerySet
from .periods import Period

LATENCY_PERCENTS = (50, 95, 99)


def overview(executions: ExecutionQuerySet, period: Period, *, forecast: bool = True) -> dict[str, Any]:
    """The KPIs of ``executions`` (already scoped, e.g. to a tenant) over ``period``: ``summary()``,
    the duration ``percentiles()`` and, unless ``forecast`` is False, ``cost_forecast()``.

    Root executions only; a constant number of queries: on PostgreSQL the summary and the
    percentiles are one pass over the period's rows, and the forecast a second query. They run on
    the database of ``executions``: the dashboard and ``overview/`` pass them on ``ANALYTICS_DATABASE``.
    """
    scoped = executions.for_period(period)
    if fastpaths.is_postgresql(connections[scoped.db]):
        summary = scoped._summary(LATENCY_PERCENTS)
        latency = summary["percentiles"]
    else:
        summary = scoped.summary()
        latency = scoped.percentiles("duration_ms", LATENCY_PERCENTS)
    projected = executions.cost_forecast()["projected_month_total"] if forecast else None
    return {
        "period": period.name,
        "total_executions": summary["total"],
        "successful": summary["successful"],
        "failed": summary["failed"],
        "success_rate": summary["success_rate"],
        "avg_duration_ms": summary["avg_duration_ms"],
        "p50_duration_ms": latency["p50"],
        "p95_duration_ms": latency["p95"],
        "p99_duration_ms": latency["p99"],
        "total_cost": summary["total_cost"],
        "projected_monthly_cost": projected,
        "input_tokens": summary["input_tokens"],
        "output_tokens": summary["output_tokens"],
        "total_tokens": summary["total_tokens"],
        "active_agents": summary["active_agents"],
    }
