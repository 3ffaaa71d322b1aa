"""Datasets and evaluation runs (SPEC §17): ``datasets/``, ``datasets/{slug}/items/`` and ``evals/``.

Datasets and runs belong to no tenant (like batches): a tenant-scoped request sees none and may not
write them. They are read on the primary, where the runner writes its progress.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from .. import evals, tasks
from ..agents import Agent
from ..evals.target import load_agent, resolve_prompt_version
from ..models import Dataset, DatasetItem, EvalResult, EvalRun, PromptVersion, Score
from .filters import DatasetItemFilterSet, EvalRunFilterSet
from .params import required
from .quality import ScoreSerializer, django_error
from .schema import api_schema
from .serializers import ApiModelSerializer, StorableJSONField, money
from .tenancy import tenant_scope
from .views import ApiMixin

UUID_REGEX = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


class OperatorsOnly(ApiMixin):
    """Rows of no tenant: a tenant-scoped request reads none and writes none (403)."""

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        if request.method not in ("GET", "HEAD", "OPTIONS") and not tenant_scope(request).everything:
            raise PermissionDenied("Datasets and evaluation runs belong to no tenant.")

    def visible(self, queryset: QuerySet) -> QuerySet:
        return queryset if tenant_scope(self.request).everything else queryset.none()


# -- serializers ------------------------------------------------------------------------------


class DatasetSerializer(ApiModelSerializer):
    item_count = serializers.IntegerField(read_only=True, help_text="Items, active or not.")

    class Meta:
        model = Dataset
        fields = ["slug", "name", "description", "item_count", "created_at"]
        read_only_fields = ["item_count", "created_at"]


class DatasetItemSerializer(ApiModelSerializer):
    input = StorableJSONField(help_text="The agent's params: a JSON object.")
    expected_output = StorableJSONField(required=False, allow_null=True, default=None)
    metadata = StorableJSONField(required=False, default=dict, help_text="A JSON object.")

    class Meta:
        model = DatasetItem
        fields = ["id", "input", "expected_output", "metadata", "source_execution", "is_active", "created_at"]
        read_only_fields = ["id", "source_execution", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        dataset: Dataset = self.context["dataset"]
        current = (
            {}
            if self.instance is None
            else {
                "input": self.instance.input,
                "expected_output": self.instance.expected_output,
                "metadata": self.instance.metadata,
            }
        )
        merged = {**current, **attrs}
        try:
            checked = dataset.build_item(
                merged["input"], merged.get("expected_output"), merged.get("metadata")
            )
        except DjangoValidationError as error:
            raise django_error(error) from None
        return {
            **attrs,
            **{
                name: getattr(checked, name)
                for name in ("input", "expected_output", "metadata")
                if name in attrs
            },
        }


class EvaluatorSerializer(serializers.Serializer):
    name = serializers.CharField()
    params = serializers.DictField(required=False, default=dict)


class EvalRunSerializer(ApiModelSerializer):
    dataset: serializers.SlugRelatedField[Dataset] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    agent = serializers.CharField(source="target", read_only=True, help_text="The agent class's dotted path.")
    total_cost = money(read_only=True)
    eval_cost = money(read_only=True)
    summary = serializers.DictField(
        read_only=True, help_text="{evaluator: {n, mean, pass_rate (percent), ci95: [low, high]}}."
    )

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "dataset",
            "name",
            "agent_type",
            "agent",
            "agent_version",
            "model",
            "prompt_version",
            "evaluators",
            "mode",
            "status",
            "item_count",
            "completed_count",
            "failed_count",
            "total_cost",
            "eval_cost",
            "summary",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "completed_at",
        ]
        read_only_fields = fields


class EvalRunCreateSerializer(serializers.Serializer):
    """``POST evals/``: run an agent over a dataset's active items, scored by the evaluators."""

    dataset = serializers.CharField(help_text="The dataset's slug.")
    agent = serializers.CharField(help_text="The agent class's dotted path, e.g. myapp.agents.SearchAgent.")
    evaluators = serializers.ListField(
        child=StorableJSONField(),
        allow_empty=False,
        help_text='Names, or {"name": ..., "params": {...}}: ["exact_match", {"name": "regex", "params": '
        '{"pattern": "^ok"}}].',
    )
    model = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Instead of the agent's."
    )
    prompt_version = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="The number of a version of the agent's managed prompt, used instead of the current one.",
    )
    mode = serializers.ChoiceField(choices=EvalRun.Mode.choices, default=EvalRun.Mode.SYNC)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)


def checked_run_body(data: dict[str, Any]) -> tuple[Dataset, type[Agent], PromptVersion | None]:
    """The dataset, agent class and prompt version a ``POST evals/`` body names, each checked as
    ``evals.create_run`` checks it; a 400 naming the field that does not fit."""
    dataset = Dataset.objects.filter(slug=data["dataset"]).first()
    if dataset is None:
        raise ValidationError({"dataset": [f"No dataset has the slug {data['dataset']!r}."]})
    if not dataset.items.filter(is_active=True).exists():
        raise ValidationError({"dataset": [f"The dataset {dataset.slug!r} has no active item to evaluate."]})
    agent_class = checked("agent", load_agent, data["agent"])
    checked("evaluators", evals.resolve, data["evaluators"])
    prompt_version = checked("prompt_version", resolve_prompt_version, agent_class, data["prompt_version"])
    return dataset, agent_class, prompt_version


def checked(field: str, check: Callable[..., Any], *arguments: Any) -> Any:
    """``check(*arguments)``; its ``ValueError`` as a 400 under ``field``."""
    try:
        return check(*arguments)
    except ValueError as error:
        raise ValidationError({field: [str(error)]}) from None


class EvalResultSerializer(ApiModelSerializer):
    input = serializers.JSONField(source="item.input", read_only=True)
    expected = serializers.JSONField(source="item.expected_output", read_only=True, allow_null=True)
    scores = ScoreSerializer(many=True, read_only=True)

    class Meta:
        model = EvalResult
        fields = ["id", "item", "execution", "input", "expected", "output", "scores", "error", "created_at"]
        read_only_fields = fields


COMPARISON_SCHEMA = {
    "type": "object",
    "description": "{evaluator: {n_paired, mean_a, mean_b, delta, ci95: [low, high], p_value, wins, losses, "
    'ties}, "items": [{item, a: {evaluator: value}, b: {...}}]}; a is the run of parameter a.',
    "additionalProperties": {},
}


# -- datasets ---------------------------------------------------------------------------------


class DatasetViewSet(OperatorsOnly, viewsets.ModelViewSet):
    """Datasets, with how many items each holds."""

    serializer_class = DatasetSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    queryset = Dataset.objects.all()
    filterset_class = None

    def get_queryset(self) -> QuerySet:
        return self.visible(Dataset.objects.annotate(item_count=Count("items")).order_by("slug"))

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        dataset = serializer.save()
        dataset.item_count = 0


class DatasetItemViewSet(OperatorsOnly, viewsets.ModelViewSet):
    """The items of one dataset, oldest first."""

    serializer_class = DatasetItemSerializer
    filterset_class = DatasetItemFilterSet
    lookup_value_regex = UUID_REGEX
    queryset = DatasetItem.objects.all()

    @cached_property
    def dataset(self) -> Dataset:
        """The dataset of the URL; 404 when there is none (or the request may not see it)."""
        return get_object_or_404(self.visible(Dataset.objects.all()), slug=self.kwargs["dataset_slug"])

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular, building the schema
            return DatasetItem.objects.none()
        return DatasetItem.objects.filter(dataset=self.dataset).order_by("created_at", "id")

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if not getattr(self, "swagger_fake_view", False):
            context["dataset"] = self.dataset
        return context

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.save(dataset=self.dataset)


# -- evaluation runs --------------------------------------------------------------------------


class EvalRunViewSet(
    OperatorsOnly, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Evaluation runs, newest first; ``POST`` creates one and starts it through Celery."""

    filterset_class = EvalRunFilterSet
    lookup_value_regex = UUID_REGEX
    queryset = EvalRun.objects.all()

    def get_queryset(self) -> QuerySet:
        return self.visible(EvalRun.objects.select_related("dataset").order_by("-created_at", "-id"))

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "create":
            return EvalRunCreateSerializer
        if self.action == "results":
            return EvalResultSerializer
        return EvalRunSerializer

    @api_schema(request=EvalRunCreateSerializer, responses={202: EvalRunSerializer}, filters=False)
    def create(self, request: Request) -> Response:
        """Create a pending run and start it once the transaction commits (``run_eval`` task)."""
        body = EvalRunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        author = request.user if request.user.is_authenticated else None
        dataset, agent_class, prompt_version = checked_run_body(data)
        try:
            run = evals.create_run(
                dataset,
                agent_class,
                data["evaluators"],
                model=data["model"] or None,
                prompt_version=prompt_version,
                mode=data["mode"],
                name=data["name"],
                created_by=author,
            )
        except ValueError as error:  # what is left to check: what batch mode asks of the agent
            raise ValidationError({"mode": [str(error)]}) from None
        run_id = str(run.pk)
        transaction.on_commit(lambda: tasks.run_eval.delay(run_id), using=run._state.db)
        return Response(EvalRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @api_schema(responses=EvalResultSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None)
    def results(self, request: Request, pk: str) -> Response:
        """The run's results in the items' order: input, expected, output, scores and error."""
        run = self.get_object()
        ordered_scores = Score.objects.order_by("name", "created_at")
        results = (
            run.results.select_related("item")
            .prefetch_related(Prefetch("scores", queryset=ordered_scores))
            .order_by("item__created_at", "item_id")
        )
        page = self.paginate_queryset(results)
        return self.get_paginated_response(EvalResultSerializer(page, many=True).data)

    @api_schema(
        parameters=[
            OpenApiParameter("a", OpenApiTypes.UUID, required=True, description="The run compared (a)."),
            OpenApiParameter(
                "b", OpenApiTypes.UUID, required=True, description="The run it is compared with."
            ),
        ],
        responses={200: OpenApiResponse(COMPARISON_SCHEMA)},
        filters=False,
    )
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def compare(self, request: Request) -> Response:
        """``a.compare(b)``: the two runs item by item, per evaluator."""
        runs = {name: self.run_named(request, name) for name in ("a", "b")}
        return Response(runs["a"].compare(runs["b"]))

    def run_named(self, request: Request, name: str) -> EvalRun:
        value = required(request.query_params, name)
        try:
            run_id = serializers.UUIDField().to_internal_value(value)
        except serializers.ValidationError:
            raise ValidationError({name: [f"{value!r} is not a run id (a UUID)."]}) from None
        run = self.get_queryset().filter(pk=run_id).first()
        if run is None:
            raise ValidationError({name: [f"No evaluation run {run_id}."]})
        return run
