"""What LLM calls cost per object of the host's: per order, per document, per customer.

Executions are attributed to an object with ``Agent.call(..., _subject=obj)``, ``trace(...,
subject=obj)`` or ``with attribute_to(obj):``; ``Execution.objects.for_object(obj)`` lists them and
``Execution.objects.cost_by_subject(Model)`` ranks a model's objects by cost.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Sum

from .models import Execution
from .models.querysets import ExecutionQuerySet
from .money import money

__all__ = ["cost_of"]


def cost_of(obj: Any, executions: ExecutionQuerySet | None = None) -> dict[str, Any]:
    """``{total_cost, executions, total_tokens}`` of the root executions attributed to ``obj`` (a
    saved model instance, else ``TypeError``), the executions nested in them included in their
    totals and evaluation runs' executions left out, as in the other analytics. One query.

    ``executions`` narrows what is counted (e.g. one tenant's, or a period's); default: all."""
    executions = Execution.objects.all() if executions is None else executions
    totals = (
        executions.for_object(obj)
        .analysed_roots()
        .aggregate(total_cost=Sum("total_cost"), executions=Count("*"), total_tokens=Sum("total_tokens"))
    )
    return {
        "total_cost": money(totals["total_cost"]),
        "executions": totals["executions"],
        "total_tokens": totals["total_tokens"] or 0,
    }
