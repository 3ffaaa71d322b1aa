from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Count, Q
from django.utils.translation import gettext_lazy as _

from .fields import money_field, token_field


class BatchQuerySet(models.QuerySet):
    def with_request_counts(self) -> BatchQuerySet:
        """Annotate ``pending_requests``, ``submitted_requests``, ``succeeded_requests`` and
        ``failed_requests`` (one query, counted in the database)."""
        return self.annotate(
            **{
                f"{status}_requests": Count("requests", filter=Q(requests__status=status))
                for status in BatchRequest.Status.values
            }
        )

    def unfinished(self) -> BatchQuerySet:
        """Submitted to the provider and not finished there yet."""
        return self.filter(status=Batch.Status.SUBMITTED).exclude(provider_batch_id="")

    def awaiting_reconciliation(self) -> BatchQuerySet:
        """Finished at the provider (completed, failed, expired, cancelled) and not reconciled yet."""
        return self.filter(status__in=Batch.FINISHED, reconciled_at__isnull=True).exclude(
            provider_batch_id=""
        )


class Batch(models.Model):
    """One provider batch (an OpenAI Batch API job) holding up to 50,000 requests."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUBMITTED = "submitted", _("submitted")
        COMPLETED = "completed", _("completed")
        FAILED = "failed", _("failed")
        EXPIRED = "expired", _("expired")
        CANCELLED = "cancelled", _("cancelled")

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.EXPIRED, Status.CANCELLED)

    purpose = models.CharField(max_length=255)
    model = models.CharField(max_length=255)
    provider = models.CharField(max_length=50, default="openai")
    provider_batch_id = models.CharField(max_length=255, blank=True)
    input_file_id = models.CharField(max_length=255, blank=True)
    output_file_id = models.CharField(max_length=255, blank=True)
    error_file_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    request_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = BatchQuerySet.as_manager()

    class Meta:
        verbose_name_plural = _("batches")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="llm_batch_status_created_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_batch_id"],
                condition=~models.Q(provider_batch_id=""),
                name="llm_batch_unique_provider_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.model} ({self.status})"


def new_custom_id() -> str:
    return uuid.uuid4().hex


class BatchRequest(models.Model):
    """One request waiting for, inside, or answered by a provider batch."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUBMITTED = "submitted", _("submitted")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    custom_id = models.CharField(max_length=64, unique=True, default=new_custom_id)
    purpose = models.CharField(max_length=255)
    model = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    payload = models.JSONField(default=dict)
    routing = models.JSONField(default=dict, blank=True)
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    result = models.JSONField(null=True, blank=True)
    input_tokens = token_field()
    output_tokens = token_field()
    total_cost = money_field()
    execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="batch_requests",
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["status", "purpose", "model", "created_at"], name="llm_batchreq_claim_idx"),
        ]

    def __str__(self) -> str:
        return self.custom_id
