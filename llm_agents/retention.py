"""Deleting executions older than the retention period, in chunks that keep writers moving."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from .conf import app_settings
from .db import fastpaths, partitions

DEFAULT_BATCH_SIZE = 10_000


@dataclass
class PurgeResult:
    executions: int = 0
    spans: int = 0
    chunks: int = 0
    #: Months dropped whole (monthly partitions), counted in ``executions`` and ``spans`` too.
    months: int = 0


def cutoff_for(days: int | None) -> dt.datetime | None:
    """The moment before which executions go: ``days`` ago, else ``RETENTION_DAYS`` ago (None: keep all)."""
    days = app_settings.RETENTION_DAYS if days is None else days
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"days must be a whole number >= 0, not {days!r}.")
    return timezone.now() - dt.timedelta(days=days)


def _with_descendants(ids: list, alias: str) -> list:
    from .models import Execution

    connection = connections[alias]
    found, level = list(ids), list(ids)
    while level:
        level = fastpaths.child_ids(connection, Execution, level)
        found.extend(level)
    return found


def _delete(ids: list, alias: str) -> tuple[int, int]:
    """Delete the executions ``ids``, their spans and their scores; returns how many executions and
    spans went (:func:`~llm_agents.db.fastpaths.delete_executions`,
    :func:`~llm_agents.db.fastpaths.delete_scores`)."""
    from .models import BatchRequest, Execution, Score, Span

    connection = connections[alias]
    deleted = fastpaths.delete_executions(connection, Execution, Span, BatchRequest, ids)
    fastpaths.delete_scores(connection, Score, ids)
    return deleted


def purge(
    days: int | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete root executions started before the cutoff, with their nested executions and spans.

    With monthly partitions (``PARTITIONING``, tables converted) the months that end before the cutoff
    are dropped whole first, one transaction each, with their rollup rows; rows are deleted only in
    the boundary month. Each chunk of ``batch_size`` root executions (the oldest first) is deleted in its own short
    transaction, so concurrent writers wait at most one chunk. Batch requests pointing at a deleted
    execution keep their result and lose the link. ``dry_run`` counts instead of deleting.
    """
    from .models import Execution, Span

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size!r}.")
    result = PurgeResult()
    cutoff = cutoff_for(days)
    if cutoff is None:
        return result
    alias = router.db_for_write(Execution)
    old_roots = Execution.objects.using(alias).filter(parent__isnull=True, started_at__lt=cutoff)
    if dry_run:
        ids = _with_descendants(list(old_roots.values_list("pk", flat=True)), alias)
        result.executions = len(ids)
        result.spans = sum(Span.objects.using(alias).filter(execution_id__in=piece).count()
                           for piece in fastpaths.id_slices(connections[alias], ids))  # fmt: skip
        return result
    connection = connections[alias]
    boundary = None
    if app_settings.PARTITIONING == "monthly" and partitions.is_partitioned(
        connection, Execution._meta.db_table
    ):
        boundary = _drop_months(connection, cutoff, result, progress)
    reached = None  # the start of the last chunk's newest root: the next chunk starts there
    while True:
        chunk = old_roots if reached is None else old_roots.filter(started_at__gte=reached)
        roots = list(chunk.order_by("started_at").values_list("pk", "started_at")[:batch_size])
        if not roots:
            break
        reached = roots[-1][1]
        ids = _with_descendants([pk for pk, _ in roots], alias)
        # The transaction starts with a write: SQLite then waits for a concurrent writer instead of
        # failing with "database is locked", as it does when a read transaction turns into a write.
        with transaction.atomic(using=alias):
            executions, spans = _delete(ids, alias)
        result.executions += executions
        result.spans += spans
        result.chunks += 1
        if progress is not None:
            progress(result)
    if boundary is not None:
        _delete_orphans(connection, boundary, cutoff, result)
    return result


#: How far past the cutoff :func:`_delete_orphans` looks for the nested executions and spans of
#: executions whose month was dropped (they start while their execution runs).
ORPHAN_GRACE = dt.timedelta(days=1)


def _drop_months(
    connection: Any, cutoff: dt.datetime, result: PurgeResult, progress: Callable[[PurgeResult], None] | None
) -> dt.datetime | None:
    """Drop the partitions of the months that end at or before ``cutoff``, one month a transaction
    (its rollup rows go with it); returns the end of the last month dropped, None when none was."""
    from .models import Execution, Span

    boundary = None
    for month in partitions.months_before(connection, cutoff):
        with transaction.atomic(using=connection.alias):
            _delete_month_scores(connection, month)
            dropped = partitions.drop_month(connection, month)
        result.executions += dropped.get(Execution._meta.db_table, 0)
        result.spans += dropped.get(Span._meta.db_table, 0)
        result.months += 1
        boundary = partitions.next_month(month)
        if progress is not None:
            progress(result)
    return boundary


def _delete_month_scores(connection: Any, month: dt.datetime) -> int:
    """Delete the scores of the executions of the month starting ``month`` (its partition is about
    to be dropped; scores live in a table of their own); returns how many went."""
    from .models import Execution, Score

    started = {"started_at__gte": month, "started_at__lt": partitions.next_month(month)}
    executions = Execution.objects.using(connection.alias).filter(**started).values("pk")
    return int(
        Score.objects.using(connection.alias)
        .filter(execution_id__in=executions)
        ._raw_delete(connection.alias)
    )


def _delete_orphans(connection: Any, boundary: dt.datetime, cutoff: dt.datetime, result: PurgeResult) -> None:
    """Delete the nested executions and the spans that started after ``boundary`` (in a month that
    stays) but whose execution went with a dropped month: a run that crossed the month's end."""
    window = (boundary, max(cutoff, boundary) + ORPHAN_GRACE)
    orphans = partitions.orphan_executions(connection, *window)
    if orphans:
        with transaction.atomic(using=connection.alias):
            executions, spans = _delete(_with_descendants(orphans, connection.alias), connection.alias)
        result.executions += executions
        result.spans += spans
    with transaction.atomic(using=connection.alias):
        result.spans += partitions.delete_orphan_spans(connection, *window)
