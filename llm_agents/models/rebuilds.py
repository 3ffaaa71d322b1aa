"""Work on the rollups beyond the triggers: installing them, recomputing ``model_spend`` from the
spans, and rebuilding the rollups from the rows (``rebuild_aggregates``, migration 0011)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce, NullIf

from ..db import rollups
from ..db.rollups import ProgressCallback
from ..latency import buckets
from .executions import Execution, Span
from .rollups import spend_by_model


def recompute_model_spend(
    using: str = DEFAULT_DB_ALIAS, *, since: dt.datetime | None = None, chunk_size: int = 10_000
) -> int:
    """Set the ``model_spend`` of every root execution from its llm spans and those of the
    executions nested in it (by ``root_id``), ``chunk_size`` roots at a time, oldest first; for rows
    written without one (a host's own writes, data from before the column). Returns how many rows
    changed. Their rollups follow through the update triggers."""
    changed = 0
    roots = Execution.objects.using(using).filter(parent__isnull=True).order_by("started_at", "id")
    if since is not None:
        roots = roots.filter(started_at__gte=since)
    last: tuple[Any, Any] | None = None
    while True:
        page = roots
        if last is not None:
            page = page.filter(Q(started_at__gt=last[0]) | Q(started_at=last[0], id__gt=last[1]))
        chunk = list(
            page.values_list(
                "id", "started_at", "model_id", "chosen_model_id", "total_cost", "total_tokens", "model_spend"
            )[:chunk_size]  # fmt: skip
        )
        if not chunk:
            return changed
        last = (chunk[-1][1], chunk[-1][0])
        ids = [row[0] for row in chunk]
        spans = (
            Span.objects.using(using)
            .filter(kind="llm")
            .filter(Q(execution_id__in=ids) | Q(execution__root_id__in=ids))
            .annotate(
                root=Coalesce("execution__root_id", "execution_id"),
                answered=Coalesce(NullIf("execution__chosen_model_id", Value("")), "execution__model_id"),
            )
            .values_list("root", "model_id", "answered", "total_cost", "input_tokens", "output_tokens")
        )
        spent: dict[Any, list[tuple[str, Decimal, int]]] = {}
        for root, model, answered, cost, input_tokens, output_tokens in spans:
            spent.setdefault(root, []).append((model or answered, cost, input_tokens + output_tokens))
        updates = []
        for execution_id, _started_at, model_id, chosen_model_id, total_cost, total_tokens, current in chunk:
            spend = spend_by_model(
                chosen_model_id or model_id, total_cost, total_tokens, spent.get(execution_id, [])
            )
            if spend != (current or {}):
                updates.append(Execution(id=execution_id, model_spend=spend))
        Execution.objects.using(using).bulk_update(updates, ["model_spend"], batch_size=1000)
        changed += len(updates)


def rebuild(
    using: str = DEFAULT_DB_ALIAS,
    *,
    since: dt.datetime | None = None,
    progress: ProgressCallback | None = None,
) -> int:
    """Recompute ``model_spend`` where it is missing or stale, then every day's rollups from the
    rows, one UTC day per transaction (``progress(done, total, day)`` after each), from the UTC day
    of ``since`` (default: all). Returns the number of days rebuilt."""
    recompute_model_spend(using, since=since)
    connection = connections[using]
    days = rollups.days_with_rows(connection)
    if since is not None:
        first = since.astimezone(dt.UTC).date()
        days = [day for day in days if day >= first]
    for done, day in enumerate(days, start=1):
        with transaction.atomic(using=using):
            rollups.rebuild_day(connection, day)
        if progress is not None:
            progress(done, len(days), day)
    return len(days)


def install(connection: Any) -> None:
    """Lay out the latency buckets and install the triggers (migration 0011)."""
    rollups.install_buckets(connection, buckets())
    rollups.install_triggers(connection)
