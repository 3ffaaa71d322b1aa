"""Figures shared by the API's ``overview/`` and the admin dashboard, from the QuerySet methods."""

from __future__ import annotations

from typing import Any

from .periods import Period
from .querysets import ExecutionQuerySet


def overview(executions: ExecutionQuerySet, period: Period) -> dict[str, Any]:
    """The KPIs of ``executions`` (already scoped, e.g. to a tenant) over ``period``.

    Root executions only; a constant number of queries (3 on PostgreSQL).
    """
    scoped = executions.for_period(period)
    summary = scoped.summary()
    latency = scoped.percentiles("duration_ms", (50, 95, 99))
    forecast = executions.cost_forecast()
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
        "projected_monthly_cost": forecast["projected_month_total"],
        "input_tokens": summary["input_tokens"],
        "output_tokens": summary["output_tokens"],
        "total_tokens": summary["total_tokens"],
        "active_agents": summary["active_agents"],
    }
