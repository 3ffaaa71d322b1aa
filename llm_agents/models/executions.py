from __future__ import annotations

import uuid

from django.contrib.contenttypes.fields import GenericForeignKey
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .fields import money_field, token_field
from .indexes import CoveringIndex
from .querysets import ExecutionQuerySet


class Execution(models.Model):
    """One tracked unit of work: an agent call, a ``trace()`` block, a raw SDK call or a batch result."""

    class Kind(models.TextChoices):
        AGENT = "agent", _("agent")
        TRACE = "trace", _("trace")
        LLM = "llm", _("LLM call")
        BATCH = "batch", _("batch result")

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        SUCCESS = "success", _("success")
        ERROR = "error", _("error")
        TIMEOUT = "timeout", _("timeout")

    class PricingSource(models.TextChoices):
        CONFIG = "config", _("cost config")
        GENAI_PRICES = "genai_prices", _("genai-prices")
        UNKNOWN = "unknown", _("unknown")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.AGENT)
    agent_type = models.CharField(max_length=255)
    agent_version = models.CharField(max_length=50, blank=True)
    model_id = models.CharField(max_length=255, blank=True, help_text=_("The model the agent asked for."))
    chosen_model_id = models.CharField(
        max_length=255, blank=True, help_text=_("The model that answered (differs after a fallback).")
    )
    provider = models.CharField(max_length=50, blank=True)
    temperature = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    finish_reason = models.CharField(max_length=50, blank=True)

    input_tokens = token_field(help_text=_("Includes cached tokens and cache writes."))
    output_tokens = token_field()
    cached_tokens = token_field(help_text=_("Input tokens read from the provider's prompt cache."))
    cache_write_tokens = token_field(help_text=_("Input tokens written to the provider's prompt cache."))
    reasoning_tokens = token_field()
    total_tokens = token_field()
    input_cost = money_field()
    output_cost = money_field()
    total_cost = money_field()
    pricing_source = models.CharField(
        max_length=20, choices=PricingSource.choices, default=PricingSource.UNKNOWN
    )

    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    parameters = models.JSONField(default=dict, blank=True)
    system_prompt = models.TextField(blank=True)
    user_prompt = models.TextField(blank=True)
    response = models.TextField(blank=True)
    error_class = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    streaming = models.BooleanField(default=False)
    tool_calls = models.JSONField(default=list, blank=True)
    tool_calls_count = models.PositiveIntegerField(default=0)
    attempts = models.JSONField(default=list, blank=True)
    attempts_count = models.PositiveIntegerField(default=0)
    fallback_chain = models.JSONField(default=list, blank=True)
    fallback_reason = models.CharField(max_length=255, blank=True)
    cache_hit = models.BooleanField(default=False)
    retryable = models.BooleanField(default=False)
    rate_limited = models.BooleanField(default=False)

    tenant_id = models.CharField(max_length=255, null=True, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    # Denormalised so that spend inside nested executions is attributed to its root execution in one
    # join (spend by model, section 15), however deep the nesting. Rows written without it (a user's
    # own ORM writes) count as their own root: read it as Coalesce(root_id, id).
    root_id = models.UUIDField(
        null=True,
        blank=True,
        editable=False,
        help_text=_("The outermost execution this one is nested in (its own id for a root execution)."),
    )
    # Spend by the model that answered (section 15), recorded when the execution is written:
    # {model: [cost, tokens]} over the llm spans of this execution and of those nested in it, with what
    # its totals hold beyond them under the model that answered. Empty when no llm span spent anything
    # (rows a host writes itself, too): then all of it belongs to the model that answered.
    # ``rebuild_aggregates`` recomputes it from the spans.
    model_spend = models.JSONField(
        null=True,
        blank=True,
        default=dict,
        editable=False,
        help_text=_(
            "Cost and tokens by the model that spent them, for this execution and those nested in it."
        ),
    )
    prompt_version = models.ForeignKey(
        "llm_agents.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )

    # The conversation and the end user (the host's ids) and the labels of the call (SPEC section 16).
    session_id = models.CharField(max_length=255, blank=True, default="")
    user_id = models.CharField(max_length=255, blank=True, default="", help_text=_("The end user's id."))
    tags = models.JSONField(default=list, blank=True)
    # Set on the executions of an evaluation run, which stay out of production analytics (section 17).
    # Deleting the run deletes them.
    eval_run = models.ForeignKey(
        "llm_agents.EvalRun",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="executions",
        db_index=False,
        db_constraint=False,
    )
    # The prompt experiment that chose prompt_version (section 18).
    experiment = models.ForeignKey(
        "llm_agents.PromptExperiment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
        db_index=False,
        db_constraint=False,
    )
    # The host's object the call was made for (SPEC section 19): an order, a ticket, a document.
    # Nested executions inherit it; ``cost_of(obj)`` and ``for_object(obj)`` read it.
    subject_type = models.ForeignKey(
        "contenttypes.ContentType",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    subject_id = models.CharField(max_length=255, blank=True, default="")
    subject = GenericForeignKey("subject_type", "subject_id")

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        indexes = [
            models.Index(fields=["started_at"], name="llm_exec_started_idx"),
            # Root executions of no evaluation run by time (what the analytics count), covering the
            # columns they read (overview/, the dashboard, cost_forecast, cost_by_model), so
            # PostgreSQL answers them from the index alone.
            CoveringIndex(
                fields=["started_at"],
                condition=Q(parent__isnull=True, eval_run__isnull=True),
                covering=[
                    "status",
                    "total_cost",
                    "duration_ms",
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                    "agent_type",
                    "model_id",
                    # The alert rules' keys: their reads of the rows around the window boundaries
                    # group by tenant and by the model that answered.
                    "tenant_id",
                    "chosen_model_id",
                ],
                name="llm_exec_root_cover_idx",
            ),
            # Nested executions (a few in a hundred) by agent, covering the other keys lists filter
            # on: an executions list counts its root executions from the rollups and these from here.
            CoveringIndex(
                fields=["agent_type", "started_at"],
                condition=Q(parent__isnull=False),
                covering=["model_id", "tenant_id", "status", "kind"],
                name="llm_exec_nested_idx",
            ),
            models.Index(fields=["agent_type", "started_at"], name="llm_exec_agent_started_idx"),
            models.Index(fields=["model_id", "started_at"], name="llm_exec_model_started_idx"),
            models.Index(fields=["tenant_id", "started_at"], name="llm_exec_tenant_started_idx"),
            models.Index(fields=["status", "started_at"], name="llm_exec_status_started_idx"),
            # A session's executions in order (by_session, the session page) and sessions(): one
            # row per session from this index alone. Executions of no session (most, for many
            # hosts) are left out, like those of no end user below. Tags have a GIN index on
            # PostgreSQL (migration 0017; SQLite has no index for a JSON array's members).
            CoveringIndex(
                fields=["session_id", "started_at"],
                condition=~Q(session_id=""),
                covering=["parent", "user_id", "status", "total_cost", "total_tokens"],
                name="llm_exec_session_idx",
            ),
            models.Index(
                fields=["user_id", "started_at"], condition=~Q(user_id=""), name="llm_exec_user_idx"
            ),
            models.Index(
                fields=["eval_run"], condition=Q(eval_run__isnull=False), name="llm_exec_eval_run_idx"
            ),
            CoveringIndex(
                fields=["experiment", "prompt_version"],
                condition=Q(experiment__isnull=False, parent__isnull=True, eval_run__isnull=True),
                covering=["id", "status", "total_cost", "duration_ms"],
                name="llm_exec_experiment_idx",
            ),
            # An object's executions and their cost (for_object, cost_of, cost_by_subject).
            CoveringIndex(
                fields=["subject_type", "subject_id", "started_at"],
                condition=~Q(subject_id=""),
                covering=["parent", "eval_run", "total_cost", "total_tokens"],
                name="llm_exec_subject_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(cached_tokens__lte=F("input_tokens")), name="llm_exec_cached_lte_input"
            ),
            models.CheckConstraint(
                condition=Q(input_cost__gte=0, output_cost__gte=0, total_cost__gte=0),
                name="llm_exec_costs_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["agent", "trace", "llm", "batch"]), name="llm_exec_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "success", "error", "timeout"]),
                name="llm_exec_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_type} {self.status} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def used_fallback(self) -> bool:
        return bool(self.chosen_model_id) and self.chosen_model_id != self.model_id


class Span(models.Model):
    """A step inside an execution: a provider request, a tool run, a nested agent or a custom block."""

    class Kind(models.TextChoices):
        LLM = "llm", _("LLM request")
        TOOL = "tool", _("tool")
        AGENT = "agent", _("agent")
        RETRIEVER = "retriever", _("retriever")
        CUSTOM = "custom", _("custom")

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        OK = "ok", _("ok")
        ERROR = "error", _("error")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Both are looked up through the (execution, started_at) index: spans are always read per execution.
    # Neither is a database constraint: its checks, one per deleted row, were most of a purge's time.
    # Spans are written in the transaction that writes their execution and deleted with it (the ORM
    # cascades, purge deletes them by execution), so none is left without its execution (docs/retention.md).
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="spans", db_index=False, db_constraint=False
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        db_index=False,
        db_constraint=False,
    )
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CUSTOM)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    model_id = models.CharField(max_length=255, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    input_tokens = token_field()
    output_tokens = token_field()
    cached_tokens = token_field()
    cache_write_tokens = token_field()
    reasoning_tokens = token_field()
    total_cost = money_field()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    error_class = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        indexes = [
            models.Index(fields=["execution", "started_at"], name="llm_span_execution_started_idx"),
            # A span's children, found when the ORM deletes a span (its cascade) and when a tree is
            # read; root spans (most) are left out.
            models.Index(fields=["parent"], condition=Q(parent__isnull=False), name="llm_span_parent_idx"),
            # The llm spans of a period, covering what spend by model reads (cost_by_model,
            # cost_summary("model"), compare_models), so PostgreSQL answers from the index alone.
            CoveringIndex(
                fields=["started_at"],
                condition=Q(kind="llm"),
                covering=["execution", "model_id", "total_cost", "input_tokens", "output_tokens"],
                name="llm_span_llm_started_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(cached_tokens__lte=F("input_tokens")), name="llm_span_cached_lte_input"
            ),
            models.CheckConstraint(condition=Q(total_cost__gte=0), name="llm_span_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
