"""Deleting executions older than the retention period, in chunks that keep writers moving."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db import router, transaction
from django.utils import timezone

from .conf import app_settings

DEFAULT_BATCH_SIZE = 2000


@dataclass
class PurgeResult:
    executions: int = 0
    spans: int = 0
    chunks: int = 0


def cutoff_for(days: int | None) -> dt.datetime | None:
    """The moment before which executions go: ``days`` ago, else ``RETENTION_DAYS`` ago (None: keep all)."""
    days = app_settings.RETENTION_DAYS if days is None else days
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"days must be a whole number >= 0, not {days!r}.")
    return timezone.now() - dt.timedelta(days=days)


def _with_descendants(ids: list) -> list:
    from .models import Execution

    found, level = list(ids), list(ids)
    while level:
        level = list(Execution.objects.filter(parent_id__in=level).values_list("pk", flat=True))
        found.extend(level)
    return found


def purge(
    days: int | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete root executions started before the cutoff, with their nested executions and spans.

    Each chunk of ``batch_size`` root executions is deleted in its own short transaction, so
    concurrent writers wait at most one chunk. ``dry_run`` counts instead of deleting.
    """
    from .models import BatchRequest, Execution, Span

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size!r}.")
    result = PurgeResult()
    cutoff = cutoff_for(days)
    if cutoff is None:
        return result
    old_roots = Execution.objects.filter(parent__isnull=True, started_at__lt=cutoff)
    if dry_run:
        ids = _with_descendants(list(old_roots.values_list("pk", flat=True)))
        result.executions = len(ids)
        result.spans = Span.objects.filter(execution_id__in=ids).count() if ids else 0
        return result
    alias = router.db_for_write(Execution)
    while True:
        with transaction.atomic(using=alias):
            roots = list(old_roots.order_by("started_at").values_list("pk", flat=True)[:batch_size])
            if not roots:
                break
            ids = _with_descendants(roots)
            BatchRequest.objects.filter(execution_id__in=ids).update(execution=None)
            result.spans += Span.objects.filter(execution_id__in=ids)._raw_delete(alias)
            result.executions += Execution.objects.filter(pk__in=ids)._raw_delete(alias)
            result.chunks += 1
        if progress is not None:
            progress(result)
    return result
