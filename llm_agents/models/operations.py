"""Operations (SPEC §19): alert rules and the channels they reach, the events they fire and each
event's deliveries, and agent pauses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AlertChannel(models.Model):
    """Where alerts go: email addresses, a webhook URL (signed with ``secret``) or a Slack incoming
    webhook."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("email")
        WEBHOOK = "webhook", _("webhook")
        SLACK = "slack", _("Slack")

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.TextField(
        help_text=_(
            "Email addresses separated by commas, or the URL a webhook or Slack message is posted to."
        )
    )
    secret = models.CharField(
        max_length=255, blank=True, help_text=_("Webhooks: the HMAC-SHA256 key their signature is made with.")
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (``ValidationError`` naming the field) and save."""
        self.full_clean()
        super().save(*args, **kwargs)

    @property
    def addresses(self) -> list[str]:
        """An email channel's addresses."""
        return [address.strip() for address in self.target.split(",") if address.strip()]

    def clean(self) -> None:
        if self.kind == self.Kind.EMAIL:
            if not self.addresses:
                raise ValidationError({"target": "An email channel needs at least one address."})
            for address in self.addresses:
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"target": f"{address!r} is not an email address."}) from None
        elif self.kind in (self.Kind.WEBHOOK, self.Kind.SLACK):
            try:
                URLValidator(schemes=["http", "https"])(self.target.strip())
            except ValidationError:
                raise ValidationError({"target": f"{self.target!r} is not an http(s) URL."}) from None
            self.target = self.target.strip()
        if self.secret and self.kind != self.Kind.WEBHOOK:
            raise ValidationError({"secret": "Only webhook channels sign their messages."})


class AlertRule(models.Model):
    """A condition on recent executions (a threshold, or an anomaly against the previous 24 windows)
    that, when met, fires an :class:`AlertEvent` delivered to the rule's channels."""

    class Metric(models.TextChoices):
        COST = "cost", _("cost (USD)")
        EXECUTIONS = "executions", _("executions")
        ERROR_RATE = "error_rate", _("error rate (%)")
        P95_LATENCY = "p95_latency", _("p95 latency (ms)")
        SCORE_MEAN = "score_mean", _("score mean")
        BUDGET_PERCENT = "budget_percent", _("budget used (%)")

    class Comparison(models.TextChoices):
        ABOVE = "above", _("above")
        BELOW = "below", _("below")

    name = models.CharField(max_length=255)
    metric = models.CharField(max_length=20, choices=Metric.choices)
    agent_type = models.CharField(max_length=255, blank=True, help_text=_("Blank: every agent."))
    model_id = models.CharField(max_length=255, blank=True, help_text=_("Blank: every model."))
    tenant_id = models.CharField(max_length=255, blank=True, help_text=_("Blank: every tenant."))
    score_name = models.CharField(max_length=100, blank=True, help_text=_("score_mean: the score's name."))
    budget = models.ForeignKey(
        "llm_agents.Budget",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text=_("budget_percent: the budget whose current period is watched."),
    )
    window_minutes = models.PositiveIntegerField(default=60)
    comparison = models.CharField(max_length=10, choices=Comparison.choices, default=Comparison.ABOVE)
    threshold = models.FloatField(null=True, blank=True)
    anomaly = models.BooleanField(
        default=False,
        help_text=_(
            "Fire when the window's value is more than `sensitivity` standard deviations from the mean "
            "of the previous 24 windows (the threshold is not used)."
        ),
    )
    sensitivity = models.FloatField(default=3.0)
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    cooldown_minutes = models.PositiveIntegerField(default=60)
    pause_agent = models.BooleanField(
        default=False, help_text=_("Also pause the rule's agent (agent_type) when the rule fires.")
    )
    is_active = models.BooleanField(default=True)
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (``ValidationError`` naming the field: a metric with filters that make no sense
        for it is refused) and save."""
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        metric = self.metric
        if not self.anomaly and self.threshold is None:
            errors["threshold"] = "A rule needs a threshold unless it is an anomaly rule."
        if self.anomaly and metric == self.Metric.BUDGET_PERCENT:
            errors["anomaly"] = "budget_percent is a share of a limit; give it a threshold, not anomaly."
        if self.sensitivity is not None and not self.sensitivity > 0:
            errors["sensitivity"] = "sensitivity must be a positive number of standard deviations."
        if self.window_minutes is not None and self.window_minutes < 1:
            errors["window_minutes"] = "window_minutes must be at least 1."
        if metric == self.Metric.SCORE_MEAN and not self.score_name:
            errors["score_name"] = "A score_mean rule needs the score's name."
        if metric != self.Metric.SCORE_MEAN and self.score_name:
            errors["score_name"] = f"score_name only applies to score_mean, not {metric}."
        if metric == self.Metric.BUDGET_PERCENT:
            if self.budget_id is None:
                errors["budget"] = "A budget_percent rule needs a budget."
            for field in ("agent_type", "model_id", "tenant_id"):
                if getattr(self, field):
                    errors[field] = (
                        f"A budget_percent rule watches its budget's scope; {field} must be blank."
                    )
        elif self.budget_id is not None:
            errors["budget"] = f"budget only applies to budget_percent, not {metric}."
        if self.pause_agent and not self.agent_type:
            errors["pause_agent"] = "pause_agent needs the rule's agent_type: the agent to pause."
        if errors:
            raise ValidationError(errors)

    def in_cooldown(self, now: dt.datetime | None = None) -> bool:
        """Whether the rule fired less than ``cooldown_minutes`` before ``now``."""
        if self.last_fired_at is None:
            return False
        now = now or timezone.now()
        return now < self.last_fired_at + dt.timedelta(minutes=self.cooldown_minutes)


class AlertEvent(models.Model):
    """One firing of a rule (or a budget's alert or refusal, section 8): what was measured against
    what, and the message its deliveries carry."""

    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    budget = models.ForeignKey(
        "llm_agents.Budget", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_events"
    )
    fired_at = models.DateTimeField(default=timezone.now)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    baseline = models.FloatField(
        null=True, blank=True, help_text=_("Anomaly rules: the mean of the earlier windows.")
    )
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        indexes = [models.Index(fields=["rule", "-fired_at"], name="llm_alert_event_rule_idx")]

    def __str__(self) -> str:
        source = self.rule or self.budget
        return f"{source} at {self.fired_at:%Y-%m-%d %H:%M}"


class AlertDelivery(models.Model):
    """An event's message to one channel, sent by a Celery task with retries."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alert deliveries"
        indexes = [
            models.Index(
                fields=["status"], condition=Q(status="pending"), name="llm_alert_delivery_pending_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} · {self.status}"


class AgentPauseQuerySet(models.QuerySet["AgentPause"]):
    def in_force(self, now: dt.datetime | None = None) -> AgentPauseQuerySet:
        """Pauses that apply now: no ``until``, or ``until`` still ahead."""
        return self.filter(Q(until__isnull=True) | Q(until__gt=now or timezone.now()))

    def applying_to(
        self, agent_type: str, tenant_id: str | None, now: dt.datetime | None = None
    ) -> AgentPauseQuerySet:
        """Pauses in force for ``agent_type`` called in ``tenant_id`` (a tenant's pause applies
        only inside that tenant; one with a blank tenant applies everywhere)."""
        tenants = Q(tenant_id="") | Q(tenant_id=tenant_id) if tenant_id else Q(tenant_id="")
        return self.in_force(now).filter(tenants, agent_type=agent_type)

    def lift(self, now: dt.datetime | None = None) -> int:
        """End these pauses that are in force (``until`` becomes now; the rows stay, as history);
        returns how many were lifted."""
        now = now or timezone.now()
        return self.in_force(now).update(until=now)


class AgentPause(models.Model):
    """While in force, calls of ``agent_type`` (in ``tenant_id``, or everywhere when blank) raise
    ``AgentPausedError`` before any provider request."""

    agent_type = models.CharField(max_length=255)
    tenant_id = models.CharField(max_length=255, blank=True, help_text=_("Blank: every tenant."))
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule = models.ForeignKey(
        AlertRule,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pauses",
        help_text=_("The alert rule that paused the agent, if one did."),
    )
    created_at = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField(null=True, blank=True, help_text=_("Blank: until lifted."))

    objects = AgentPauseQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent_type", "tenant_id"], name="llm_agent_pause_idx")]

    def __str__(self) -> str:
        where = f" in {self.tenant_id}" if self.tenant_id else ""
        return f"{self.agent_type}{where} paused"

    def in_force(self, now: dt.datetime | None = None) -> bool:
        return self.until is None or self.until > (now or timezone.now())
