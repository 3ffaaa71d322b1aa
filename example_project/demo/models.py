"""The demo's own model: support tickets, the host's objects whose LLM cost the admin shows
(``ExecutionInline`` and the "LLM cost" column of ``admin.py``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SupportTicket(models.Model):
    """A customer's support ticket; the agents' calls made for it are attributed to it."""

    class Status(models.TextChoices):
        OPEN = "open", "open"
        PENDING = "pending", "waiting for the customer"
        CLOSED = "closed", "closed"

    subject = models.CharField(max_length=200)
    customer = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"
