"""Prompts, their labels and their experiments (SPEC §9, §18): ``prompts/`` and ``experiments/``.

Prompts are shared by every tenant: any request the API permits reads and renders them, and only a
request that sees every tenant writes them. Reads go to ``ANALYTICS_DATABASE``; writes, and the
prompt a write starts from, to the primary. Experiments (and their results, which count every
tenant's executions) are read and written on the primary, by requests that see every tenant only.
Moving a protected label (``PROTECTED_PROMPT_LABELS``) also needs ``llm_agents.promote_prompt``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from ..db.routing import for_analytics
from ..errors import PromptError
from ..models import Prompt, PromptExperiment, PromptLabel, PromptLabelMove, PromptVersion
from ..models.prompts import normalize_messages, normalize_model_params, validate_label_name
from ..models.querysets import prompt_performance
from . import serializers as s
from .filters import ExperimentFilterSet, PromptFilterSet
from .params import parse_period, period_parameters
from .quality import django_error
from .schema import api_schema
from .tenancy import tenant_scope
from .views import ApiMixin

#: The largest whole number a body may carry where the database compares it (a JSON number is exact
#: up to here as a float, and every database stores it).
LARGEST_NUMBER = 2**53
LARGEST_VERSION = 2**31 - 1


class SharedRows(ApiMixin):
    """Rows shared by every tenant: a tenant-scoped request may not change them (403)."""

    #: Actions that answer a POST without writing anything.
    reading_actions: frozenset[str] = frozenset()

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        if (
            request.method not in SAFE_METHODS
            and getattr(self, "action", None) not in self.reading_actions
            and not tenant_scope(request).everything
        ):
            raise PermissionDenied(
                "Prompts and experiments are shared by every tenant: a tenant may not change them."
            )


# -- serializers ------------------------------------------------------------------------------


@extend_schema_field({"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 100}})
class TagsField(serializers.ListField):
    """A list of non-empty tags, stripped and without repeats."""

    child = serializers.CharField(max_length=100)

    def to_internal_value(self, data: Any) -> list[str]:
        tags = [tag.strip() for tag in super().to_internal_value(data)]
        if not all(tags):
            raise serializers.ValidationError("Tags must be non-empty strings.")
        return list(dict.fromkeys(tags))


class BoundedJSONField(s.StorableJSONField):
    """JSON the database can store and compare: no NUL, and no whole number beyond ±2**53."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if has_huge_number(value):
            raise serializers.ValidationError(
                f"Numbers must be between -{LARGEST_NUMBER} and {LARGEST_NUMBER}."
            )
        return value


def has_huge_number(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > LARGEST_NUMBER
    if isinstance(value, dict):
        return any(has_huge_number(item) for item in value.values())
    if isinstance(value, list):
        return any(has_huge_number(item) for item in value)
    return False


MESSAGES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant", "developer"]},
            "content": {"type": "string", "description": "A Mustache template."},
        },
        "required": ["role", "content"],
    },
}


@extend_schema_field(MESSAGES_SCHEMA)
class MessagesField(s.StorableJSONField):
    """The messages of a version: ``[{"role", "content"}, …]``, checked by ``normalize_messages``."""


@extend_schema_field({"type": "object", "additionalProperties": {}, "nullable": True})
class ModelParamsField(s.StorableJSONField):
    """Model parameters (temperature, max_tokens, …), checked by ``normalize_model_params``."""


class PromptCreateSerializer(s.ApiModelSerializer):
    """``POST prompts/``: a prompt, without content yet (``POST prompts/{slug}/versions/`` adds it)."""

    tags = TagsField(required=False, default=list)

    class Meta:
        model = Prompt
        fields = ["slug", "name", "description", "tags"]


class PromptVersionCreateSerializer(serializers.Serializer):
    """``POST prompts/{slug}/versions/``: the content of the next version (``update_content``)."""

    messages = MessagesField()
    model = serializers.CharField(
        required=False, allow_blank=True, max_length=255, help_text="Absent: the current version's."
    )
    model_params = ModelParamsField(
        required=False, allow_null=True, help_text="Absent or null: the current version's."
    )
    changelog = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_messages(self, messages: Any) -> list[dict[str, str]]:
        return checked_content(normalize_messages, messages)

    def validate_model_params(self, model_params: Any) -> dict[str, Any] | None:
        return None if model_params is None else checked_content(normalize_model_params, model_params)


def checked_content(normalize: Any, value: Any) -> Any:
    """``normalize(value)``, its ``ValidationError`` as the serializer field's."""
    try:
        return normalize(value)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.messages) from None


class VersionNumberSerializer(serializers.Serializer):
    """A body naming one version of the prompt by its number."""

    version = serializers.IntegerField(min_value=1, max_value=LARGEST_VERSION, help_text="A version number.")


class PromptLabelSerializer(serializers.Serializer):
    """Where a label points, and who moved it there last."""

    name = serializers.CharField()
    version = serializers.IntegerField(source="version.number", help_text="The version's number.")
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField(
        source="updated_by.get_username", allow_null=True, default=None, help_text="The username; null: code."
    )


class PromptLabelMoveSerializer(serializers.ModelSerializer):
    """One move of a label: from ``old_number`` (null: the label was new) to ``new_number``."""

    moved_by = serializers.CharField(
        source="moved_by.get_username", allow_null=True, default=None, help_text="The username; null: code."
    )

    class Meta:
        model = PromptLabelMove
        fields = ["label", "old_number", "new_number", "moved_by", "source", "moved_at"]
        read_only_fields = fields


class PromptLabelHistorySerializer(PromptLabelSerializer):
    history = PromptLabelMoveSerializer(many=True, help_text="The label's moves, newest first.")


# -- prompts ----------------------------------------------------------------------------------

#: The actions that write; they read the prompt from the primary, where they write.
PROMPT_WRITES = frozenset({"create", "create_version", "move_label", "rollback"})


class PromptViewSet(SharedRows, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Managed prompts (shared by every tenant): create them, add versions, move labels, roll back,
    render; each version with its performance."""

    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filterset_class = PromptFilterSet
    queryset = Prompt.objects.all()
    reading_actions = frozenset({"render"})

    def get_queryset(self) -> QuerySet:
        labels = Prefetch("labels", queryset=PromptLabel.objects.select_related("version").order_by("name"))
        queryset = Prompt.objects.with_current_number().prefetch_related(labels).order_by("slug")
        return queryset if self.action in PROMPT_WRITES else for_analytics(queryset)

    def get_serializer_class(self) -> type:
        return {
            "retrieve": s.PromptDetailSerializer,
            "versions": s.PromptVersionPerformanceSerializer,
            "render": s.RenderRequestSerializer,
            "create": PromptCreateSerializer,
            "create_version": PromptVersionCreateSerializer,
            "labels": PromptLabelHistorySerializer,
            "move_label": VersionNumberSerializer,
            "rollback": VersionNumberSerializer,
        }.get(self.action, s.PromptSerializer)

    @api_schema(request=PromptCreateSerializer, responses={201: s.PromptDetailSerializer}, filters=False)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new prompt, without versions; a slug in use is a 400 naming ``slug``."""
        body = PromptCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic(using=Prompt.objects.db):
                prompt = Prompt.objects.create(**body.validated_data)
        except IntegrityError:  # created meanwhile by another request
            raise ValidationError({"slug": ["A prompt with this slug already exists."]}) from None
        created = self.get_queryset().get(pk=prompt.pk)
        return Response(s.PromptDetailSerializer(created).data, status=status.HTTP_201_CREATED)

    @api_schema(
        parameters=period_parameters(default=None),
        responses=s.PromptVersionPerformanceSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def versions(self, request: Request, slug: str) -> Response:
        """The prompt's versions, newest first, each with the performance of the root executions
        that used it in the period (default all time)."""
        prompt = self.get_object()
        period = parse_period(request.query_params, default=None)
        versions = for_analytics(PromptVersion.objects.filter(prompt=prompt).order_by("-number"))
        page = self.paginate_queryset(versions) or []
        executions = self.executions().filter(prompt_version__in=[version.pk for version in page])
        if period is not None:
            executions = executions.for_period(period)
        performance = {row["prompt_version"]: row for row in executions.by_prompt_version()}
        rows = [
            {
                **{field: getattr(version, field) for field in s.PromptVersionSerializer.Meta.fields},
                **performance.get(version.pk, prompt_performance()),
            }
            for version in page
        ]
        return self.get_paginated_response(s.PromptVersionPerformanceSerializer(rows, many=True).data)

    @api_schema(
        request=PromptVersionCreateSerializer,
        responses={
            201: OpenApiResponse(s.PromptVersionSerializer, description="The new version."),
            200: OpenApiResponse(
                s.PromptVersionSerializer, description="The current version: it already has this content."
            ),
        },
        filters=False,
    )
    @versions.mapping.post
    def create_version(self, request: Request, slug: str) -> Response:
        """The next version, as ``prompt.update_content()`` makes it (``source`` api); the current
        version (200) when the content is the same."""
        prompt = self.get_object()
        body = PromptVersionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        current = prompt.current_version
        try:
            version = prompt.update_content(
                data["messages"],
                model=data.get("model"),
                model_params=data.get("model_params"),
                changelog=data["changelog"],
                source=PromptVersion.Source.API,
            )
        except DjangoValidationError as error:
            raise django_error(error) from None
        return version_response(version, current)

    @api_schema(request=VersionNumberSerializer, responses={
        201: OpenApiResponse(s.PromptVersionSerializer, description="The new version (source rollback)."),
        200: OpenApiResponse(s.PromptVersionSerializer, description="The current version: it already has that content."),
    }, filters=False)  # fmt: skip
    @action(detail=True, methods=["post"], filterset_class=None)
    def rollback(self, request: Request, slug: str) -> Response:
        """A new version with the content of ``version`` (``prompt.rollback_to()``)."""
        prompt = self.get_object()
        number = version_number(request)
        current = prompt.current_version
        try:
            version = prompt.rollback_to(number)
        except PromptError as error:
            raise ValidationError({"version": [str(error)]}) from None
        return version_response(version, current)

    @api_schema(responses=PromptLabelHistorySerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def labels(self, request: Request, slug: str) -> Response:
        """The prompt's labels by name, each with the version it points at and its moves, newest first."""
        prompt = self.get_object()
        moves: dict[str, list[PromptLabelMove]] = {}
        for move in for_analytics(prompt.label_moves.select_related("moved_by").order_by("-moved_at", "-id")):
            moves.setdefault(move.label, []).append(move)
        labels = for_analytics(prompt.labels.select_related("version", "updated_by").order_by("name"))
        rows = [
            {
                "name": label.name,
                "version": label.version,
                "updated_at": label.updated_at,
                "updated_by": label.updated_by,
                "history": moves.get(label.name, []),
            }
            for label in labels
        ]
        return Response(PromptLabelHistorySerializer(rows, many=True).data)

    @api_schema(request=VersionNumberSerializer, responses=PromptLabelSerializer, filters=False)
    @action(
        detail=True,
        methods=["post"],
        url_path=r"labels/(?P<name>[-a-zA-Z0-9_]+)",
        url_name="move-label",
        filterset_class=None,
    )
    def move_label(self, request: Request, slug: str, name: str) -> Response:
        """Point label ``name`` at ``version`` (``prompt.set_label()``, kept in its history with
        source api). A protected label needs ``llm_agents.promote_prompt`` (403 otherwise)."""
        prompt = self.get_object()
        number = version_number(request)
        try:
            validate_label_name(name)
        except DjangoValidationError as error:
            raise ValidationError({"name": error.messages}) from None
        try:
            label = prompt.set_label(name, number, user=request.user, source=PromptVersion.Source.API)
        except DjangoPermissionDenied as error:
            raise PermissionDenied(str(error)) from None
        except PromptError as error:
            raise ValidationError({"version": [str(error)]}) from None
        return Response(PromptLabelSerializer(label).data)

    @api_schema(request=s.RenderRequestSerializer, responses=s.RenderResponseSerializer, filters=False)
    @action(detail=True, methods=["post"], filterset_class=None)
    def render(self, request: Request, slug: str) -> Response:
        """Render the current version (or ``version``, or the one ``label`` points at) with
        ``variables``; 400 names a missing one."""
        prompt = self.get_object()
        body = s.RenderRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        variables, number = body.validated_data["variables"], body.validated_data.get("version")
        label = body.validated_data.get("label")
        if "self" in variables:
            raise ValidationError({"variables": ["'self' cannot be a variable name."]})
        if label:
            version = prompt.label(label)
            if version is None:
                raise ValidationError({"label": [f"Prompt '{prompt.slug}' has no label '{label}'."]})
        else:
            try:
                version = prompt.current_version if number is None else prompt.version(number)
            except PromptError as error:
                raise ValidationError({"version": [str(error)]}) from None
        if version is None:
            raise ValidationError({"version": [f"Prompt '{prompt.slug}' has no version yet."]})
        try:
            built = version.build(**variables)
        except PromptError as error:
            key = "variables" if getattr(error, "variable", None) else "prompt"
            raise ValidationError({key: [str(error)]}) from None
        data = {
            "slug": prompt.slug,
            "version": version.number,
            "model": built["model"],
            "messages": built["messages"],
            "model_params": version.model_params or {},
        }
        return Response(s.RenderResponseSerializer(data).data, status=status.HTTP_200_OK)


def version_number(request: Request) -> int:
    """The ``version`` of the body; 400 naming it when it is missing or not a version number."""
    body = VersionNumberSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data["version"]


def version_response(version: PromptVersion, current: PromptVersion | None) -> Response:
    """201 with a version just made, 200 with the current one when nothing was made."""
    made = current is None or version.pk != current.pk
    return Response(
        s.PromptVersionSerializer(version).data,
        status=status.HTTP_201_CREATED if made else status.HTTP_200_OK,
    )


# -- experiments ------------------------------------------------------------------------------

VARIANTS_SCHEMA = {
    "type": "array",
    "minItems": 2,
    "description": "The first variant is the control.",
    "items": {
        "type": "object",
        "properties": {
            "version": {"type": "integer", "minimum": 1, "description": "A version number of the prompt."},
            "weight": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "description": "Default 1."},
        },
        "required": ["version"],
    },
}
GUARDRAILS_SCHEMA = {
    "type": "object",
    "properties": {
        "error_rate_max": {"type": "number", "minimum": 0, "maximum": 100, "description": "Percent."},
        "cost_per_call_max": {"type": "number", "minimum": 0, "description": "USD."},
    },
}
TRIPPED_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "version": {"type": "integer"},
            "reason": {"type": "string"},
            "tripped_at": {"type": "string", "format": "date-time"},
        },
    },
}


@extend_schema_field(VARIANTS_SCHEMA)
class VariantsField(BoundedJSONField):
    """``[{"version": n, "weight": w}, …]``, checked by the experiment."""


@extend_schema_field(GUARDRAILS_SCHEMA)
class GuardrailsField(BoundedJSONField):
    """``{"error_rate_max": percent, "cost_per_call_max": USD}``, checked by the experiment."""


class ExperimentSerializer(s.ApiModelSerializer):
    """A prompt experiment: its variants (the first the control), unit, status and metric."""

    prompt: serializers.SlugRelatedField[Prompt] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="The prompt's slug."
    )
    variants = VariantsField(read_only=True)
    guardrails = GuardrailsField(read_only=True)
    tripped = serializers.SerializerMethodField(help_text="Variants a guardrail took out of the split.")

    class Meta:
        model = PromptExperiment
        fields = [
            "id",
            "prompt",
            "name",
            "variants",
            "unit",
            "status",
            "metric",
            "guardrails",
            "min_samples",
            "tripped",
            "created_at",
            "started_at",
            "stopped_at",
        ]
        read_only_fields = fields

    @extend_schema_field(TRIPPED_SCHEMA)
    def get_tripped(self, experiment: PromptExperiment) -> list[dict[str, Any]]:
        return list(experiment.tripped or [])


class ExperimentCreateSerializer(serializers.Serializer):
    """``POST experiments/``: a draft experiment (``POST experiments/{id}/start/`` starts it)."""

    prompt = serializers.CharField(max_length=255, help_text="The prompt's slug.")
    name = serializers.CharField(max_length=255)
    variants = VariantsField()
    unit = serializers.ChoiceField(choices=PromptExperiment.Unit.choices, default=PromptExperiment.Unit.USER)
    metric = serializers.CharField(
        max_length=100, help_text="cost, latency, error_rate, or the name of a score (higher is better)."
    )
    guardrails = GuardrailsField(required=False, default=dict)
    min_samples = serializers.IntegerField(
        required=False, default=100, min_value=1, max_value=LARGEST_VERSION
    )


class VariantResultSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    executions = serializers.IntegerField(help_text="Finished root executions that used the variant.")
    success_rate = serializers.FloatField(help_text="Percent, 0–100.")
    avg_cost = s.money()
    p50_duration_ms = serializers.FloatField(allow_null=True)
    p95_duration_ms = serializers.FloatField(allow_null=True)
    metric_mean = serializers.FloatField(allow_null=True, help_text="Null: no value yet.")
    ci95 = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="[low, high] of metric_mean."
    )
    tripped = serializers.CharField(
        allow_null=True, help_text="Why a guardrail took it out; null: it did not."
    )


class ComparisonSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    delta = serializers.FloatField(
        allow_null=True, help_text="The variant's metric mean minus the control's."
    )
    ci95 = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    significant = serializers.BooleanField(help_text="p < 0.05 with at least min_samples per variant.")


class ExperimentResultsSerializer(serializers.Serializer):
    metric = serializers.CharField()
    variants = VariantResultSerializer(many=True, help_text="In the experiment's order, the control first.")
    comparisons = ComparisonSerializer(many=True, help_text="Each variant after the control, against it.")


class ExperimentViewSet(SharedRows, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Prompt experiments, newest first. They belong to no tenant: a tenant-scoped request sees none."""

    filterset_class = ExperimentFilterSet
    lookup_value_regex = r"[0-9]+"
    queryset = PromptExperiment.objects.all()

    def get_queryset(self) -> QuerySet:
        queryset = PromptExperiment.objects.select_related("prompt").order_by("-created_at", "-id")
        return queryset if tenant_scope(self.request).everything else queryset.none()

    def get_serializer_class(self) -> type:
        return {
            "create": ExperimentCreateSerializer,
            "promote": VersionNumberSerializer,
            "results": ExperimentResultsSerializer,
        }.get(self.action, ExperimentSerializer)

    @api_schema(request=ExperimentCreateSerializer, responses={201: ExperimentSerializer}, filters=False)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A draft experiment; what the experiment refuses is a 400 naming the field."""
        body = ExperimentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        prompt = Prompt.objects.filter(slug=data.pop("prompt")).first()
        if prompt is None:
            raise ValidationError({"prompt": [f"No prompt has the slug {body.validated_data['prompt']!r}."]})
        experiment = PromptExperiment(prompt=prompt, **data)
        try:
            experiment.save()
        except DjangoValidationError as error:
            raise django_error(error) from None
        return Response(ExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED)

    @api_schema(request=None, responses=ExperimentSerializer, filters=False)
    @action(detail=True, methods=["post"], filterset_class=None)
    def start(self, request: Request, pk: str) -> Response:
        """Start splitting the prompt's ``production`` traffic (a draft only; one running per prompt)."""
        return self.change(lambda experiment: experiment.start(), whole_row="status")

    @api_schema(request=None, responses=ExperimentSerializer, filters=False)
    @action(detail=True, methods=["post"], filterset_class=None)
    def stop(self, request: Request, pk: str) -> Response:
        """Stop the split (a running experiment only)."""
        return self.change(lambda experiment: experiment.stop())

    @api_schema(request=VersionNumberSerializer, responses=ExperimentSerializer, filters=False)
    @action(detail=True, methods=["post"], filterset_class=None)
    def promote(self, request: Request, pk: str) -> Response:
        """Move ``production`` to ``version`` (a variant) and stop the experiment; moving a protected
        label needs ``llm_agents.promote_prompt`` (403 otherwise)."""
        number = version_number(request)
        return self.change(lambda experiment: experiment.promote(number, user=request.user))

    def change(self, change: Callable[[PromptExperiment], None], whole_row: str | None = None) -> Response:
        """Apply ``change`` to the experiment of the URL and answer it; an error about the whole row
        (``full_clean()`` reports the one-running-experiment rule so) is named under ``whole_row``."""
        experiment = self.get_object()
        try:
            change(experiment)
        except DjangoPermissionDenied as error:
            raise PermissionDenied(str(error)) from None
        except DjangoValidationError as error:
            answer = serializers.as_serializer_error(error)
            for whole in (NON_FIELD_ERRORS, api_settings.NON_FIELD_ERRORS_KEY):
                if whole_row is not None and whole in answer:
                    answer[whole_row] = [*answer.get(whole_row, []), *answer.pop(whole)]
            raise ValidationError(answer) from None
        except PromptError as error:
            raise ValidationError({"version": [str(error)]}) from None
        return Response(ExperimentSerializer(experiment).data)

    @api_schema(responses=ExperimentResultsSerializer, filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def results(self, request: Request, pk: str) -> Response:
        """``experiment.results()``: per variant its executions, success rate, cost, latency and
        metric, and each variant against the control."""
        return Response(ExperimentResultsSerializer(self.get_object().results()).data)
