"""Serializers of the API: model rows, and the shapes of the analytics answers (which also give
the OpenAPI schema its response bodies)."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Batch, BatchRequest, Budget, Execution, Prompt, PromptVersion, Span
from ..models.querysets import ERROR_CATEGORIES


class DecimalString(serializers.DecimalField):
    """A decimal written as a string in fixed notation, whatever the project's
    ``REST_FRAMEWORK["COERCE_DECIMAL_TO_STRING"]`` says."""

    coerce_to_string = True


class WholeNumber(serializers.BigIntegerField):
    """A 64-bit whole number written as a JSON number, whatever the project's
    ``REST_FRAMEWORK["COERCE_BIGINT_TO_STRING"]`` says."""

    coerce_to_string = False


# A ModelSerializer whose decimals and big integers keep the schema's types in every project (no
# docstring: drf-spectacular would show it as the description of every serializer built on it).
class ApiModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DecimalField: DecimalString,
        models.BigIntegerField: WholeNumber,
        models.BigAutoField: WholeNumber,
    }


def has_nul(value: Any) -> bool:
    """Whether a NUL character is in ``value`` or in any string or key inside it (PostgreSQL stores
    none, in text or in jsonb)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


class StorableJSONField(serializers.JSONField):
    """Any JSON value the database can store: no NUL character in its strings or keys."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if has_nul(value):
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


def money(**kwargs: Any) -> serializers.DecimalField:
    """US dollars as a decimal string with 8 places (as stored)."""
    return DecimalString(max_digits=30, decimal_places=8, **kwargs)


# -- executions and spans ---------------------------------------------------------------------

EXECUTION_LIST_FIELDS = [
    "id",
    "kind",
    "agent_type",
    "agent_version",
    "model_id",
    "chosen_model_id",
    "provider",
    "status",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "input_cost",
    "output_cost",
    "total_cost",
    "pricing_source",
    "duration_ms",
    "time_to_first_token_ms",
    "started_at",
    "completed_at",
    "streaming",
    "cache_hit",
    "attempts_count",
    "tool_calls_count",
    "rate_limited",
    "retryable",
    "error_class",
    "error_message",
    "tenant_id",
    "parent",
    "prompt_version",
]


def content_type_label(content_type_id: int) -> str:
    """A content type's id as ``app_label.model`` (``shop.order``); content types are cached."""
    content_type = ContentType.objects.get_for_id(content_type_id)
    return f"{content_type.app_label}.{content_type.model}"


@extend_schema_field(OpenApiTypes.STR)
class ContentTypeLabel(serializers.Field):
    """A content type's id shown as ``app_label.model`` (``shop.order``)."""

    def to_representation(self, value: int) -> str:
        return content_type_label(value)


def subject_type_field() -> ContentTypeLabel:
    return ContentTypeLabel(
        source="subject_type_id",
        read_only=True,
        allow_null=True,
        help_text="The model of the object the execution is attributed to, as app_label.model (null: none).",
    )


SUBJECT_FIELDS = ["subject_type", "subject_id"]


class ExecutionSerializer(ApiModelSerializer):
    """One row of ``executions/``: everything but the prompts, response and JSON details."""

    subject_type = subject_type_field()

    class Meta:
        model = Execution
        fields = [*EXECUTION_LIST_FIELDS, *SUBJECT_FIELDS]
        read_only_fields = fields


class SpanSerializer(ApiModelSerializer):
    class Meta:
        model = Span
        fields = [
            "id",
            "parent",
            "name",
            "kind",
            "status",
            "model_id",
            "provider",
            "input",
            "output",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "total_cost",
            "duration_ms",
            "time_to_first_token_ms",
            "error_class",
            "error_message",
            "metadata",
            "started_at",
            "completed_at",
        ]
        read_only_fields = fields


class SpanNodeSerializer(SpanSerializer):
    """A span with its child spans (the schema of the tree ``executions/{id}/`` answers)."""

    class Meta(SpanSerializer.Meta):
        fields = [*SpanSerializer.Meta.fields, "children"]
        read_only_fields = fields


SpanNodeSerializer._declared_fields["children"] = SpanNodeSerializer(many=True, read_only=True)


def span_tree(spans: list[Span]) -> list[dict[str, Any]]:
    """Serialize ``spans`` (one execution's, in start order) as a tree: each span's ``children``
    are the spans whose parent it is, in start order. A span whose parent is missing is a root."""
    nodes = []
    by_id: dict[Any, dict[str, Any]] = {}
    for span in spans:
        node = dict(SpanSerializer(span).data)
        node["children"] = []
        nodes.append((span, node))
        by_id[span.pk] = node
    roots: list[dict[str, Any]] = []
    for span, node in nodes:
        parent = by_id.get(span.parent_id) if span.parent_id else None
        (parent["children"] if parent is not None and parent is not node else roots).append(node)
    return roots


class ExecutionDetailSerializer(ApiModelSerializer):
    """``executions/{id}/``: every field of the execution and its spans as a tree."""

    spans = serializers.SerializerMethodField()
    subject_type = subject_type_field()

    class Meta:
        model = Execution
        fields = [
            *EXECUTION_LIST_FIELDS,
            *SUBJECT_FIELDS,
            "temperature",
            "created_at",
            "parameters",
            "system_prompt",
            "user_prompt",
            "response",
            "metadata",
            "tool_calls",
            "attempts",
            "fallback_chain",
            "fallback_reason",
            "spans",
        ]
        read_only_fields = fields

    @extend_schema_field(SpanNodeSerializer(many=True))
    def get_spans(self, execution: Execution) -> list[dict[str, Any]]:
        return span_tree(self.context["spans"])


# -- analytics --------------------------------------------------------------------------------


class OverviewSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="The period's name, or custom for start_date/end_date.")
    total_executions = serializers.IntegerField()
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    success_rate = serializers.FloatField(help_text="Percentage 0–100.")
    avg_duration_ms = serializers.FloatField()
    p50_duration_ms = serializers.FloatField(allow_null=True)
    p95_duration_ms = serializers.FloatField(allow_null=True)
    p99_duration_ms = serializers.FloatField(allow_null=True)
    total_cost = money()
    projected_monthly_cost = money(help_text="This calendar month's projection (cost_forecast).")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    active_agents = serializers.IntegerField()


class AgentStatsSerializer(serializers.Serializer):
    agent_type = serializers.CharField()
    total = serializers.IntegerField()
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    success_rate = serializers.FloatField()
    avg_cost = money()
    total_cost = money()
    avg_duration_ms = serializers.FloatField()
    total_tokens = serializers.IntegerField()


class CostSummaryRowSerializer(serializers.Serializer):
    key = serializers.CharField(
        allow_null=True, help_text="The model id, agent type, tenant id (null: none) or ISO day."
    )
    total_cost = money()
    executions = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class CostForecastSerializer(serializers.Serializer):
    month_to_date = money()
    projected_month_total = money()
    daily_average = money()


class TrendRowSerializer(serializers.Serializer):
    date = serializers.DateField()
    executions = serializers.IntegerField()
    cost = money()
    avg_duration_ms = serializers.FloatField()


class ModelComparisonSerializer(serializers.Serializer):
    model_id = serializers.CharField()
    executions = serializers.IntegerField()
    success_rate = serializers.FloatField()
    avg_duration_ms = serializers.FloatField()
    p95_duration_ms = serializers.FloatField(allow_null=True)
    avg_cost = money()
    total_tokens = serializers.IntegerField()


class VersionStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    success_rate = serializers.FloatField()
    avg_cost = money()
    scores = serializers.DictField(child=serializers.FloatField(), help_text="{score name: mean}.")


MONEY_SCHEMA = {"type": "string", "format": "decimal", "pattern": r"^-?\d{0,22}(?:\.\d{0,8})?$"}
VERSION_COMPARISON_SCHEMA = {
    "type": "object",
    "description": "Keyed by agent version, in the order asked for.",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "success_rate": {"type": "number", "format": "double"},
            "avg_cost": MONEY_SCHEMA,
            "scores": {
                "type": "object",
                "description": "{score name: mean} of the version's scored executions.",
                "additionalProperties": {"type": "number", "format": "double"},
            },
        },
        "required": ["total", "success_rate", "avg_cost", "scores"],
    },
}


class RecentErrorSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    agent_type = serializers.CharField()
    model_id = serializers.CharField()
    error_class = serializers.CharField()
    error_message = serializers.CharField()
    started_at = serializers.DateTimeField()


class ErrorCategoriesSerializer(serializers.Serializer):
    pass


for _category in ERROR_CATEGORIES:
    ErrorCategoriesSerializer._declared_fields[_category] = serializers.IntegerField()


class ErrorAnalysisSerializer(serializers.Serializer):
    categories = ErrorCategoriesSerializer()
    recent = RecentErrorSerializer(many=True, help_text="The 10 latest failures, newest first.")


# -- budgets ----------------------------------------------------------------------------------


class BudgetSerializer(ApiModelSerializer):
    current_spend = money(read_only=True)
    percent_used = serializers.FloatField(read_only=True)
    remaining = money(read_only=True)
    alert_at_percentage = serializers.IntegerField(min_value=1, max_value=100, default=80)
    period_days = serializers.IntegerField(min_value=1, max_value=3650, allow_null=True, required=False)
    limit_usd = DecimalString(max_digits=20, decimal_places=8, min_value=0)

    class Meta:
        model = Budget
        fields = [
            "id",
            "name",
            "scope",
            "scope_value",
            "period",
            "period_days",
            "limit_usd",
            "token_limit",
            "enforcement",
            "alert_at_percentage",
            "is_active",
            "created_at",
            "updated_at",
            "current_spend",
            "percent_used",
            "remaining",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"token_limit": {"max_value": 2**62}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        candidate = Budget(**{**self._current_values(), **attrs})
        try:
            candidate.clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(serializers.as_serializer_error(error)) from None
        tenant_id = self.context.get("tenant_id")
        if tenant_id is not None and (
            candidate.scope != Budget.Scope.TENANT or candidate.scope_value != tenant_id
        ):
            raise serializers.ValidationError(
                {"scope": [f"Your budgets must have scope tenant and scope_value {tenant_id!r}."]}
            )
        return attrs

    def _current_values(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        editable = {field.name for field in Budget._meta.concrete_fields} - {"id", "created_at", "updated_at"}
        return {name: getattr(self.instance, name) for name in editable}

    def to_representation(self, budget: Budget) -> dict[str, Any]:
        # One spend figure per budget, so current_spend, percent_used and remaining agree (and the
        # three cost one query).
        spend = budget.current_spend()
        budget.current_spend = lambda: spend  # type: ignore[method-assign]
        return super().to_representation(budget)


# -- prompts ----------------------------------------------------------------------------------


class PromptVersionSerializer(ApiModelSerializer):
    class Meta:
        model = PromptVersion
        fields = ["number", "messages", "model", "model_params", "changelog", "source", "created_at"]
        read_only_fields = fields


class PromptVersionPerformanceSerializer(PromptVersionSerializer):
    """A version of ``prompts/{slug}/versions/`` with the performance of the root executions that
    used it in the request's period (``by_prompt_version``)."""

    executions = serializers.IntegerField(help_text="Root executions that used the version.")
    success_rate = serializers.FloatField(help_text="Percent, 0–100.")
    avg_cost = money()
    p50_duration_ms = serializers.FloatField(allow_null=True)
    p95_duration_ms = serializers.FloatField(allow_null=True)
    scores = serializers.DictField(child=serializers.FloatField(), help_text="{score name: mean}.")

    class Meta(PromptVersionSerializer.Meta):
        fields = [
            *PromptVersionSerializer.Meta.fields,
            "executions",
            "success_rate",
            "avg_cost",
            "p50_duration_ms",
            "p95_duration_ms",
            "scores",
        ]
        read_only_fields = fields


LABELS_SCHEMA = {
    "type": "object",
    "description": '{label name: version number}, e.g. {"production": 3}.',
    "additionalProperties": {"type": "integer"},
}


class PromptSerializer(ApiModelSerializer):
    current_version_number = serializers.IntegerField(
        source="current_number", read_only=True, allow_null=True, help_text="None before the first version."
    )
    labels = serializers.SerializerMethodField()

    class Meta:
        model = Prompt
        fields = [
            "slug",
            "name",
            "description",
            "tags",
            "current_version_number",
            "labels",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(LABELS_SCHEMA)
    def get_labels(self, prompt: Prompt) -> dict[str, int]:
        """Where each label points (the page's labels come in one query: prefetch ``labels__version``)."""
        return {label.name: label.version.number for label in prompt.labels.all()}


class PromptDetailSerializer(PromptSerializer):
    current_version = serializers.SerializerMethodField()

    class Meta(PromptSerializer.Meta):
        fields = [*PromptSerializer.Meta.fields, "current_version"]
        read_only_fields = fields

    @extend_schema_field(PromptVersionSerializer(allow_null=True))
    def get_current_version(self, prompt: Prompt) -> dict[str, Any] | None:
        version = prompt.current_version
        return PromptVersionSerializer(version).data if version is not None else None


class RenderRequestSerializer(serializers.Serializer):
    variables = serializers.DictField(required=False, default=dict, help_text="Template variables by name.")
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**31 - 1,
        help_text="A version number; default the current one.",
    )
    # A declared field (DRF takes it off the class), not Field.label.
    label = serializers.CharField(  # type: ignore[assignment]
        required=False,
        allow_null=True,
        max_length=100,
        help_text="Render the version this label points at (instead of version).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("version") is not None and attrs.get("label"):
            raise serializers.ValidationError({"label": ["Give version or label, not both."]})
        return attrs


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_blank=True)


class RenderResponseSerializer(serializers.Serializer):
    slug = serializers.CharField()
    version = serializers.IntegerField()
    model = serializers.CharField(allow_null=True)
    messages = MessageSerializer(many=True)
    model_params = serializers.DictField()


# -- batches ----------------------------------------------------------------------------------


class RequestCountsSerializer(serializers.Serializer):
    pass


for _status in BatchRequest.Status.values:
    RequestCountsSerializer._declared_fields[_status] = serializers.IntegerField(source=f"{_status}_requests")


class BatchSerializer(ApiModelSerializer):
    request_counts = RequestCountsSerializer(source="*", read_only=True)

    class Meta:
        model = Batch
        fields = [
            "id",
            "purpose",
            "model",
            "provider",
            "provider_batch_id",
            "input_file_id",
            "output_file_id",
            "error_file_id",
            "status",
            "request_count",
            "request_counts",
            "created_at",
            "submitted_at",
            "completed_at",
            "reconciled_at",
            "error",
        ]
        read_only_fields = fields
