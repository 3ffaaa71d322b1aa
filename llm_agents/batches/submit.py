"""Flush: claim pending requests, write the JSONL input file, upload it and create the provider batch."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from .. import signals
from ..conf import app_settings
from ..events import emit
from ..models import Batch, BatchRequest
from .claims import db_alias, release_claim, single_writer
from .client import batch_client
from .formats import ENDPOINTS, request_line

__all__ = ["MAX_BYTES", "MAX_REQUESTS", "FlushReport", "cancel", "flush"]

logger = logging.getLogger("llm_agents")

#: The Batch API's limits per batch: requests, and bytes of the input file.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
COMPLETION_WINDOW = "24h"
#: Input files larger than this are written to a temporary file on disk rather than kept in memory.
IN_MEMORY_BYTES = 32 * 1024 * 1024
READ_CHUNK = 2_000
MOVE_CHUNK = 5_000

Progress = Callable[[str], None]


@dataclass
class FlushReport:
    """What a flush did: the batches it submitted, and the groups whose submission failed."""

    batches: list[Batch] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(batch.request_count for batch in self.batches)

    def as_dict(self) -> dict[str, Any]:
        return {"batches": len(self.batches), "requests": self.requests, "errors": list(self.errors)}


def flush(
    purpose: str | None = None,
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_BYTES,
    progress: Progress | None = None,
) -> FlushReport:
    """Submit every pending request (of ``purpose``, or of all purposes) to the Batch API.

    Requests are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (so concurrent flushers never take the
    same request), grouped by purpose and model, and split at ``max_requests`` requests or ``max_bytes``
    of JSONL per batch. A submission that fails returns its requests to pending and leaves no Batch
    behind; the failure is logged and listed in the report, and the other groups go on.
    """
    report = FlushReport()
    if not app_settings.BATCH_ENABLED:
        return report
    endpoint = app_settings.BATCH_ENDPOINT
    if endpoint not in ENDPOINTS:
        raise ValueError(f"BATCH_ENDPOINT must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
    max_requests = min(max_requests, MAX_REQUESTS)
    alias = db_alias()
    with single_writer(alias):
        pending = BatchRequest.objects.filter(status=BatchRequest.Status.PENDING)
        if purpose is not None:
            pending = pending.filter(purpose=purpose)
        groups = list(pending.order_by().values_list("purpose", "model").distinct())
        if groups:
            client = batch_client()
        for group_purpose, model in groups:
            # A group whose submission fails is left for the next flush (its requests are pending again).
            submitted = True
            while submitted and (claim := _claim(group_purpose, model, max_requests)) is not None:
                try:
                    parts = _split(claim, endpoint, max_bytes)
                except Exception as exc:
                    message = f"{group_purpose}/{model}: could not write the input file: {type(exc).__name__}: {exc}"
                    logger.exception("llm_agents batch %s", message)
                    report.errors.append(message)
                    break
                submitted = all([_submit(client, part, endpoint, report, progress) for part in parts])
    return report


def _claim(purpose: str, model: str, limit: int) -> Batch | None:
    """Claim up to ``limit`` pending requests of one purpose and model in a new pending Batch."""
    with transaction.atomic(using=db_alias()):
        batch = Batch.objects.create(
            purpose=purpose, model=model, provider=app_settings.BATCH_PROVIDER, status=Batch.Status.PENDING
        )
        claimable = (
            BatchRequest.objects.filter(status=BatchRequest.Status.PENDING, purpose=purpose, model=model)
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values("pk")[:limit]
        )
        count = BatchRequest.objects.filter(pk__in=Subquery(claimable)).update(
            status=BatchRequest.Status.SUBMITTED, batch=batch, updated_at=timezone.now()
        )
        if not count:
            transaction.set_rollback(True, using=db_alias())
            return None
        batch.request_count = count
        Batch.objects.filter(pk=batch.pk).update(request_count=count)
    return batch


@dataclass
class _Part:
    batch: Batch
    file: IO[bytes]
    count: int = 0
    size: int = 0
    custom_ids: list[str] = field(default_factory=list)


def _split(claim: Batch, endpoint: str, max_bytes: int) -> list[_Part]:
    """Write the claim's JSONL, starting a new file (and a new claim) wherever ``max_bytes`` would be passed."""
    parts = [_Part(claim, tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES))]
    rows = (
        BatchRequest.objects.filter(batch=claim, status=BatchRequest.Status.SUBMITTED)
        .order_by("created_at")
        .values_list("custom_id", "model", "payload")
    )
    try:
        for custom_id, model, payload in rows.iterator(chunk_size=READ_CHUNK):
            line = request_line(custom_id, endpoint, model, payload)
            if len(line) > max_bytes:
                raise ValueError(f"request {custom_id} alone is larger than the {max_bytes}-byte batch limit")
            part = parts[-1]
            if part.size + len(line) > max_bytes:
                part = _Part(claim, tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES))
                parts.append(part)
            part.file.write(line)
            part.size += len(line)
            part.count += 1
            if len(parts) > 1:
                part.custom_ids.append(custom_id)
    except Exception:
        for part in parts:
            part.file.close()
        release_claim(claim.pk, reason="could not write the input file")
        raise
    if len(parts) > 1:
        _move_overflow(claim, parts)
    return parts


def _move_overflow(claim: Batch, parts: list[_Part]) -> None:
    with transaction.atomic(using=db_alias()):
        for part in parts[1:]:
            part.batch = Batch.objects.create(
                purpose=claim.purpose,
                model=claim.model,
                provider=claim.provider,
                status=Batch.Status.PENDING,
                request_count=part.count,
            )
            for start in range(0, len(part.custom_ids), MOVE_CHUNK):
                BatchRequest.objects.filter(
                    batch=claim, custom_id__in=part.custom_ids[start : start + MOVE_CHUNK]
                ).update(batch=part.batch)
            part.custom_ids = []
        claim.request_count = parts[0].count
        Batch.objects.filter(pk=claim.pk).update(request_count=claim.request_count)


def _submit(client: Any, part: _Part, endpoint: str, report: FlushReport, progress: Progress | None) -> bool:
    batch = part.batch
    input_file_id = ""
    try:
        with part.file:
            part.file.seek(0)
            uploaded = client.files.create(
                file=(f"llm_agents_batch_{batch.pk}.jsonl", part.file, "application/jsonl"), purpose="batch"
            )
        input_file_id = uploaded.id
        created = client.batches.create(
            input_file_id=input_file_id,
            endpoint=endpoint,
            completion_window=COMPLETION_WINDOW,
            metadata={"llm_agents_batch": str(batch.pk), "purpose": batch.purpose[:512]},
        )
    except Exception as exc:
        released = release_claim(batch.pk, reason=f"submission failed: {exc}")
        if input_file_id:
            _delete_file(client, input_file_id)
        message = f"{batch.purpose}/{batch.model}: submitting {part.count} requests failed: {type(exc).__name__}: {exc}"
        logger.error(
            "llm_agents batch %s%s", message, "" if released else " (the claim was already released)"
        )
        report.errors.append(message)
        if progress:
            progress(message)
        return False
    now = timezone.now()
    submitted = Batch.objects.filter(pk=batch.pk, status=Batch.Status.PENDING, provider_batch_id="").update(
        status=Batch.Status.SUBMITTED,
        provider_batch_id=created.id,
        input_file_id=input_file_id,
        submitted_at=now,
        error="",
    )
    if not submitted:
        # Poll released this claim as stale while we were uploading: its requests are pending again
        # (and may be in another batch by now), so this provider batch must not run.
        logger.error(
            "llm_agents batch claim %s was released before its submission finished; cancelling %s",
            batch.pk,
            created.id,
        )
        _cancel_remote(client, created.id)
        report.errors.append(
            f"{batch.purpose}/{batch.model}: claim {batch.pk} was released during submission"
        )
        return False
    batch.status, batch.provider_batch_id, batch.input_file_id, batch.submitted_at = (
        Batch.Status.SUBMITTED,
        created.id,
        input_file_id,
        now,
    )
    report.batches.append(batch)
    if progress:
        progress(
            f"submitted batch {batch.pk} ({created.id}): {part.count} {batch.purpose} requests for {batch.model}"
        )
    emit(signals.batch_submitted, sender=Batch, batch=batch)
    return True


def _delete_file(client: Any, file_id: str) -> None:
    try:
        client.files.delete(file_id)
    except Exception:
        logger.warning("llm_agents could not delete the unused batch input file %s", file_id, exc_info=True)


def _cancel_remote(client: Any, provider_batch_id: str) -> None:
    try:
        client.batches.cancel(provider_batch_id)
    except Exception:
        logger.exception("llm_agents could not cancel provider batch %s", provider_batch_id)


def cancel(batch: Batch) -> bool:
    """Cancel a batch: an unsubmitted claim is released at once (its requests go back to pending); a
    submitted batch is cancelled at the provider, and the next poll fails its unanswered requests.
    Returns False when there was nothing to cancel (the batch had finished)."""
    if not batch.provider_batch_id:
        return release_claim(batch.pk, reason="cancelled")
    if batch.status != Batch.Status.SUBMITTED:
        return False
    batch_client().batches.cancel(batch.provider_batch_id)
    return True
