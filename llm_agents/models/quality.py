"""The quality loop (SPEC sections 16 and 17): scores of executions and sessions, their configs,
datasets of inputs with expected outputs, and evaluation runs of an agent over a dataset."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .fields import money_field


class ScoreConfig(models.Model):
    """What the scores of one name may hold: scores of ``name`` are validated against it."""

    class DataType(models.TextChoices):
        NUMERIC = "numeric", _("numeric")
        BOOLEAN = "boolean", _("boolean")
        CATEGORICAL = "categorical", _("categorical")

    name = models.CharField(max_length=100, unique=True)
    data_type = models.CharField(max_length=12, choices=DataType.choices, default=DataType.NUMERIC)
    min_value = models.FloatField(null=True, blank=True, help_text=_("Lowest numeric value allowed (none: no bound)."))
    max_value = models.FloatField(null=True, blank=True, help_text=_("Highest numeric value allowed (none: no bound)."))
    categories = models.JSONField(default=list, blank=True, help_text=_("The values a categorical score may take."))
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("score config")

    def __str__(self) -> str:
        return self.name


class Score(models.Model):
    """A judgement of an execution, or of a whole session (``session_id`` and no execution)."""

    DataType = ScoreConfig.DataType

    class Source(models.TextChoices):
        HUMAN = "human", _("human")
        API = "api", _("API")
        EVALUATOR = "evaluator", _("evaluator")
        FEEDBACK = "feedback", _("end-user feedback")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No database constraint, like spans: executions are purged in bulk; their scores go with them
    # (``Execution.delete`` cascades through the ORM, purge deletes them by execution).
    execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="scores",
        db_constraint=False,
    )
    session_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=100)
    data_type = models.CharField(max_length=12, choices=DataType.choices, default=DataType.NUMERIC)
    value = models.FloatField(null=True, blank=True, help_text=_("Numeric value; booleans are 1.0 or 0.0."))
    string_value = models.CharField(max_length=255, blank=True, help_text=_("The category of a categorical score."))
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    eval_run = models.ForeignKey(
        "llm_agents.EvalRun", null=True, blank=True, on_delete=models.CASCADE, related_name="scores"
    )
    eval_result = models.ForeignKey(
        "llm_agents.EvalResult", null=True, blank=True, on_delete=models.CASCADE, related_name="scores"
    )
    tenant_id = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # score_summary(name) and scores_by(name, ...): every score of a name, with what they read.
            models.Index(fields=["name", "created_at"], name="llm_score_name_idx"),
            models.Index(fields=["execution", "name"], name="llm_score_execution_idx"),
            models.Index(
                fields=["session_id", "name"], condition=~Q(session_id=""), name="llm_score_session_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(execution__isnull=False) | ~Q(session_id=""), name="llm_score_has_subject"
            ),
        ]

    def __str__(self) -> str:
        shown = self.string_value if self.data_type == self.DataType.CATEGORICAL else self.value
        return f"{self.name} = {shown}"

    @property
    def display_value(self) -> Any:
        """The value as it was given: a category, True/False, or a number."""
        if self.data_type == self.DataType.CATEGORICAL:
            return self.string_value
        if self.data_type == self.DataType.BOOLEAN:
            return None if self.value is None else self.value >= 0.5
        return self.value


class Dataset(models.Model):
    """Inputs for an agent, with the outputs expected of it: what evaluation runs run over."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug


class DatasetItem(models.Model):
    """One input of a dataset (the agent's params) and the output expected for it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    input = models.JSONField(help_text=_("The agent's params."))
    expected_output = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source_execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["dataset", "created_at"], name="llm_dataset_item_idx")]

    def __str__(self) -> str:
        return f"{self.dataset.slug} item {self.pk}"


class EvalRun(models.Model):
    """An agent run over every active item of a dataset, each output scored by the evaluators."""

    class Mode(models.TextChoices):
        SYNC = "sync", _("sync")
        BATCH = "batch", _("batch")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        COMPLETED = "completed", _("completed")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=255, blank=True)
    agent_type = models.CharField(max_length=255)
    target = models.CharField(max_length=500, help_text=_("The dotted path of the agent class."))
    agent_version = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=255, blank=True, help_text=_("The model used instead of the agent's."))
    prompt_version = models.ForeignKey(
        "llm_agents.PromptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evaluators = models.JSONField(default=list, blank=True, help_text=_("[{name, params}]"))
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.SYNC)
    concurrency = models.PositiveIntegerField(default=4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    item_count = models.PositiveIntegerField(default=0)
    completed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    total_cost = money_field(help_text=_("What the agent calls cost."))
    eval_cost = money_field(help_text=_("What the evaluators' own model calls (judges) cost."))
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("evaluation run")
        indexes = [models.Index(fields=["dataset", "created_at"], name="llm_eval_run_dataset_idx")]

    def __str__(self) -> str:
        return self.name or f"{self.agent_type} on {self.dataset_id}"


class EvalResult(models.Model):
    """One item of an evaluation run: the agent's output for it, its scores (``scores``), or why
    it has none (``error``)."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="+")
    execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    output = models.JSONField(null=True, blank=True, help_text=_("The response text, or the parsed answer."))
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "item"], name="llm_eval_result_unique")]

    def __str__(self) -> str:
        return f"{self.run_id} / {self.item_id}"
