"""django-filter FilterSets of the list endpoints (and of ``export/``).

Every choice answers 400 naming the valid values; periods (``period``, ``start_date``,
``end_date``) are parsed by :func:`llm_agents.api.params.parse_period`, not here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from ..models import Batch, Budget, Execution, Prompt

if TYPE_CHECKING:
    from ..models.prompts import PromptQuerySet

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
    search = filters.CharFilter(
        method="filter_search",
        help_text="Case-insensitive text in agent_type, model_id, error_class, error_message or "
        "tenant_id, or an execution id.",
    )
    ordering = ordering_filter(
        ["started_at", "total_cost", "duration_ms", "total_tokens", "agent_type", "model_id", "status"],
        help_text="Sort field, - for descending; default -started_at.",
    )

    class Meta:
        model = Execution
        fields: list[str] = []

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        condition = Q()
        for field in ("agent_type", "model_id", "error_class", "error_message", "tenant_id"):
            condition |= Q(**{f"{field}__icontains": value})
        try:
            condition |= Q(pk=uuid.UUID(value.strip()))
        except ValueError:
            pass
        return queryset.filter(condition)


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


class BatchFilterSet(filters.FilterSet):
    status = choice_filter("status", Batch.Status.choices)
    purpose = filters.CharFilter()
    model = filters.CharFilter()
    ordering = ordering_filter(["created_at", "submitted_at", "completed_at", "request_count"])

    class Meta:
        model = Batch
        fields: list[str] = []
