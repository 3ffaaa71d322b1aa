"""django-filter FilterSets of the list endpoints (and of ``export/``).

Every choice answers 400 naming the valid values; periods (``period``, ``start_date``,
``end_date``) are parsed by :func:`llm_agents.api.params.parse_period`, not here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from ..models import Batch, Budget, DatasetItem, EvalRun, Execution, Prompt, PromptExperiment, Score
from ..models.querysets import parse_metadata_condition

if TYPE_CHECKING:
    from ..models.prompts import PromptQuerySet
    from ..models.querysets import ExecutionQuerySet

BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


def invalid_choice_message(name: str, values: Sequence[str]) -> dict[str, str]:
    return {"invalid_choice": f"Unknown {name} %(value)s; valid values are: {', '.join(values)}."}


def choice_filter(name: str, choices: Sequence[tuple[str, Any]], **kwargs: Any) -> filters.ChoiceFilter:
    values = [value for value, _ in choices]
    return filters.ChoiceFilter(
        choices=choices, error_messages=invalid_choice_message(name, values), **kwargs
    )


@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanFilter(filters.TypedChoiceFilter):
    """``true`` or ``false``; anything else is a 400 (django-filter's BooleanFilter ignores it)."""


def boolean_filter(name: str, **kwargs: Any) -> StrictBooleanFilter:
    return StrictBooleanFilter(
        choices=BOOLEAN_CHOICES,
        coerce=lambda value: value == "true",
        error_messages=invalid_choice_message(name, ["true", "false"]),
        **kwargs,
    )


def ordering_filter(fields: Sequence[str], **kwargs: Any) -> filters.OrderingFilter:
    values = [prefix + field for field in fields for prefix in ("", "-")]
    return filters.OrderingFilter(
        fields=list(fields), error_messages=invalid_choice_message("ordering", values), **kwargs
    )


def money_filter(lookup: str, help_text: str) -> filters.NumberFilter:
    return filters.NumberFilter(
        field_name="total_cost",
        lookup_expr=lookup,
        min_value=Decimal("0"),
        max_value=Decimal("999999999999"),
        max_digits=20,
        decimal_places=8,
        help_text=help_text,
    )


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 datetime, converted to UTC (offsets beyond what the database accepts are fine)."""

    def clean(self, value: Any) -> dt.datetime | None:
        moment = super().clean(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError(f"{value} is out of range.", code="invalid") from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class MetadataField(forms.CharField):
    def clean(self, value: Any) -> str:
        text: str = super().clean(value)
        if text:
            try:
                parse_metadata_condition(text)
            except ValueError as error:
                raise ValidationError(str(error), code="invalid") from None
        return text


@extend_schema_field(OpenApiTypes.STR)
class MetadataFilter(filters.CharFilter):
    """``key:value`` or ``key`` against the executions' ``metadata`` (``with_metadata_condition``)."""

    field_class = MetadataField

    def filter(self, queryset: ExecutionQuerySet, value: str) -> ExecutionQuerySet:
        return queryset.with_metadata_condition(value) if value else queryset


@extend_schema_field(OpenApiTypes.INT)
class IntegerFilter(filters.NumberFilter):
    """A whole number (django-filter's NumberFilter takes decimals) that a 64-bit column can hold:
    a larger one is a 400 naming the parameter, where the database would fail on it (SQLite cannot
    bind it)."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class ContentTypeField(forms.CharField):
    """A model as ``app_label.model`` (``shop.order``), cleaned to its ContentType."""

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return None
        app_label, _, model = text.partition(".")
        try:
            return ContentType.objects.get_by_natural_key(app_label, model.lower())
        except ContentType.DoesNotExist:
            raise ValidationError(
                f"No model {text!r}: give app_label.model, as shop.order.", code="invalid"
            ) from None


@extend_schema_field(OpenApiTypes.STR)
class SubjectTypeFilter(filters.CharFilter):
    """The executions attributed to objects of one model (``subject_type``)."""

    field_class = ContentTypeField

    def filter(self, queryset: ExecutionQuerySet, value: Any) -> ExecutionQuerySet:
        return queryset.filter(subject_type_id=value.pk) if value is not None else queryset


class ExecutionFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("prompt_version_number") is not None and not cleaned.get("prompt"):
            self.add_error(
                "prompt_version_number", "Give the prompt's slug as prompt with prompt_version_number."
            )
        return cleaned


class ExecutionFilterSet(filters.FilterSet):
    status = choice_filter("status", Execution.Status.choices)
    agent_type = filters.CharFilter()
    model_id = filters.CharFilter()
    tenant_id = filters.CharFilter()
    version = filters.CharFilter(field_name="agent_version", help_text="The agent version.")
    streaming = boolean_filter("streaming")
    cache_hit = boolean_filter("cache_hit")
    min_cost = money_filter("gte", "total_cost at least this (USD).")
    max_cost = money_filter("lte", "total_cost at most this (USD).")
    started_after = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", help_text="Started at or after (ISO 8601)."
    )
    started_before = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt", help_text="Started before (ISO 8601)."
    )
    kind = choice_filter("kind", Execution.Kind.choices)
    root_only = boolean_filter(
        "root_only",
        method="filter_root_only",
        help_text="true: root executions only (no parent), what the analytics count.",
    )
    prompt_version = IntegerFilter(
        field_name="prompt_version_id", min_value=1, help_text="The id of the prompt version used."
    )
    prompt = filters.CharFilter(
        field_name="prompt_version__prompt__slug", help_text="The slug of the managed prompt used."
    )
    prompt_version_number = IntegerFilter(
        field_name="prompt_version__number",
        min_value=1,
        help_text="The number of the prompt version used (with prompt).",
    )
    metadata = MetadataFilter(
        help_text="key:value — metadata[key] equals value (a string, or the JSON number, true, false "
        "or null it spells); key alone — the metadata has the key."
    )
    subject_type = SubjectTypeFilter(
        help_text="The model of the objects the executions are attributed to, as app_label.model."
    )
    subject_id = filters.CharFilter(help_text="The primary key of the object they are attributed to.")
    search = filters.CharFilter(
        method="filter_search",
        help_text="Every word in agent_type, model_id, error_class, error_message, tenant_id, "
        "system_prompt, user_prompt or response, or an execution id. PostgreSQL: full-text (whole "
        'words, "a phrase", or, -word); elsewhere case-insensitive substrings.',
    )
    ordering = ordering_filter(
        ["started_at", "total_cost", "duration_ms", "total_tokens", "agent_type", "model_id", "status"],
        help_text="Sort field, - for descending; default -started_at.",
    )

    class Meta:
        model = Execution
        fields: list[str] = []
        form = ExecutionFilterForm

    def filter_root_only(self, queryset: ExecutionQuerySet, name: str, value: bool) -> ExecutionQuerySet:
        return queryset.root_executions() if value else queryset

    def filter_search(self, queryset: ExecutionQuerySet, name: str, value: str) -> ExecutionQuerySet:
        return queryset.search(value)


class BudgetFilterSet(filters.FilterSet):
    scope = choice_filter("scope", Budget.Scope.choices)
    period = choice_filter("period", Budget.Period.choices)
    enforcement = choice_filter("enforcement", Budget.Enforcement.choices)
    is_active = boolean_filter("is_active")
    ordering = ordering_filter(["name", "limit_usd", "created_at"])

    class Meta:
        model = Budget
        fields: list[str] = []


class PromptFilterSet(filters.FilterSet):
    tag = filters.CharFilter(method="filter_tag", help_text="Prompts tagged with this tag.")
    search = filters.CharFilter(method="filter_search", help_text="Text in the slug, name or description.")
    ordering = ordering_filter(["slug", "name", "updated_at"])

    class Meta:
        model = Prompt
        fields: list[str] = []

    def filter_tag(self, queryset: PromptQuerySet, name: str, value: str) -> PromptQuerySet:
        return queryset.with_tag(value)

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(slug__icontains=value) | Q(name__icontains=value) | Q(description__icontains=value)
        )


class ExperimentFilterSet(filters.FilterSet):
    prompt = filters.CharFilter(field_name="prompt__slug", help_text="The prompt's slug.")
    status = choice_filter("status", PromptExperiment.Status.choices)

    class Meta:
        model = PromptExperiment
        fields: list[str] = []


class BatchFilterSet(filters.FilterSet):
    status = choice_filter("status", Batch.Status.choices)
    purpose = filters.CharFilter()
    model = filters.CharFilter()
    ordering = ordering_filter(["created_at", "submitted_at", "completed_at", "request_count"])

    class Meta:
        model = Batch
        fields: list[str] = []


class SessionFilterSet(filters.FilterSet):
    """Filters of ``sessions/``: they choose the executions the session rows are counted from."""

    user_id = filters.CharFilter(help_text="The end user's id.")
    agent_type = filters.CharFilter(help_text="Sessions in which this agent ran (its executions only).")
    tag = filters.CharFilter(method="filter_tag", help_text="Executions carrying this tag.")

    class Meta:
        model = Execution
        fields: list[str] = []

    def filter_tag(self, queryset: ExecutionQuerySet, name: str, value: str) -> ExecutionQuerySet:
        return queryset.with_tag(value)


class ScoreFilterSet(filters.FilterSet):
    name = filters.CharFilter()
    source = choice_filter("source", Score.Source.choices)
    data_type = choice_filter("data_type", Score.DataType.choices)
    execution = filters.UUIDFilter(field_name="execution_id", help_text="The id of the execution judged.")
    session_id = filters.CharFilter(
        help_text="The scores' session_id (a session's own scores have no execution)."
    )

    class Meta:
        model = Score
        fields: list[str] = []


class DatasetItemFilterSet(filters.FilterSet):
    is_active = boolean_filter("is_active")

    class Meta:
        model = DatasetItem
        fields: list[str] = []


class EvalRunFilterSet(filters.FilterSet):
    dataset = filters.CharFilter(field_name="dataset__slug", help_text="The dataset's slug.")
    agent_type = filters.CharFilter()
    status = choice_filter("status", EvalRun.Status.choices)
    mode = choice_filter("mode", EvalRun.Mode.choices)

    class Meta:
        model = EvalRun
        fields: list[str] = []
