"""Claims: the rows that say "these requests are being submitted".

A claim is a Batch with status ``pending`` and no ``provider_batch_id`` whose requests are ``submitted``.
Flush makes one per group of requests, submits it, and then fills in the provider's ids; a claim that
never got them (a crashed flusher) is released by poll once older than ``BATCH_STALE_CLAIM_AFTER``.
On SQLite (no row locks, one writer at a time) flush and poll take the process's single writer lock
(:func:`~llm_agents.db.isolation.single_writer`); on PostgreSQL they run concurrently on row locks.
"""

from __future__ import annotations

import datetime as dt

from django.db import router, transaction
from django.utils import timezone

from ..conf import app_settings
from ..db.isolation import single_writer
from ..models import Batch, BatchRequest

__all__ = ["db_alias", "release_claim", "release_stale_claims", "single_writer"]


def db_alias() -> str:
    return router.db_for_write(BatchRequest)


def release_claim(batch_id: int, *, reason: str = "claim released") -> bool:
    """Return the requests of an unsubmitted claim to ``pending`` and delete the claim.

    Returns False when the claim was submitted (or released) meanwhile: the conditional UPDATE that
    opens the transaction locks the Batch row, so this and the flusher's "submitted" update cannot
    both succeed.
    """
    alias = db_alias()
    with transaction.atomic(using=alias):
        claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.PENDING, provider_batch_id="")
        if not claimed.update(error=reason):
            return False
        BatchRequest.objects.filter(batch_id=batch_id, status=BatchRequest.Status.SUBMITTED).update(
            status=BatchRequest.Status.PENDING, batch=None, updated_at=timezone.now()
        )
        Batch.objects.filter(pk=batch_id).delete()
    return True


def release_stale_claims(now: dt.datetime | None = None) -> int:
    """Release claims older than ``BATCH_STALE_CLAIM_AFTER`` (by the Batch's ``created_at``); returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=app_settings.BATCH_STALE_CLAIM_AFTER)
    stale = Batch.objects.filter(status=Batch.Status.PENDING, provider_batch_id="", created_at__lt=cutoff)
    return sum(
        release_claim(batch_id, reason="stale claim released")
        for batch_id in stale.values_list("pk", flat=True)
    )
