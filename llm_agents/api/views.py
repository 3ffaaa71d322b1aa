"""The API views (SPEC §11). Figures come from the ExecutionQuerySet methods; every view reads its
permissions from ``API_PERMISSION_CLASSES`` and scopes rows to the request's tenant. Executions are
read on ``ANALYTICS_DATABASE`` (:func:`~llm_agents.db.routing.for_analytics`); budgets and batches,
which the product writes and polls, on the primary. Prompts and experiments are in
:mod:`llm_agents.api.prompts`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils.decorators import method_decorator
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView
from rest_framework import generics, mixins, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.pagination import BasePagination
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import __version__
from ..analytics import overview
from ..db.routing import for_analytics
from ..models import Batch, Budget, EvalRun, Execution, PromptExperiment, PromptVersion, Score, Span
from ..models.querysets import COST_GROUPS
from . import serializers as s
from .export import csv_response, export_rows, focus_response, json_lines
from .filters import BatchFilterSet, BudgetFilterSet, ExecutionFilterSet
from .pagination import ApiPagination, ExecutionPagination
from .params import (
    INCLUDE_EVALS,
    include_evals_parameter,
    parse_bool,
    parse_choice,
    parse_int,
    parse_period,
    period_parameters,
    required,
)
from .permissions import ApiPermissionsMixin
from .schema import ApiAutoSchema, ApiSchemaGenerator, api_schema
from .tenancy import tenant_scope

if TYPE_CHECKING:
    from ..models.querysets import ExecutionQuerySet
    from ..periods import Period

    # The mixin below is only ever combined with DRF's generic views: type-check it as one.
    _ApiViewBase = generics.GenericAPIView
else:
    _ApiViewBase = object

DETAIL_FIELDS_ONLY: tuple[str, ...] = (
    "parameters",
    "system_prompt",
    "user_prompt",
    "response",
    "metadata",
    "tool_calls",
)
DETAIL_FIELDS_ONLY += ("attempts", "fallback_chain")


def reject_nul(values: dict[str, Any]) -> None:
    """A NUL character in a parameter is a 400 (PostgreSQL cannot store or compare it)."""
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError({name: ["Null characters are not allowed."]})


class ApiMixin(ApiPermissionsMixin, _ApiViewBase):
    """What every view of the API shares: permissions, schema, pagination, filtering, and the
    formats it reads and writes. Each is set here rather than taken from the project's
    ``REST_FRAMEWORK`` defaults, so the API answers the same in every project; authentication and
    throttling stay the project's."""

    schema = ApiAutoSchema()
    pagination_class: type[BasePagination] | None = ApiPagination
    filter_backends = [DjangoFilterBackend]
    renderer_classes: list[type[BaseRenderer]] = [JSONRenderer, BrowsableAPIRenderer]
    parser_classes: list[type[BaseParser]] = [JSONParser, FormParser, MultiPartParser]
    content_negotiation_class: type[BaseContentNegotiation] = DefaultContentNegotiation
    versioning_class = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        reject_nul({**request.query_params.dict(), **{k: v for k, v in kwargs.items() if isinstance(v, str)}})

    def executions(self) -> ExecutionQuerySet:
        """The executions the request may see, on the analytics database."""
        return for_analytics(tenant_scope(self.request).filter(Execution.objects.all()))


def aggregate_parameters() -> list[OpenApiParameter]:
    """The parameters every aggregate endpoint with a period takes."""
    return [*period_parameters(), include_evals_parameter()]


class AggregateView(ApiMixin, APIView):
    """A GET answering one analytics figure (not paginated). Its figures leave out the executions of
    evaluation runs unless ``include_evals=true``."""

    queryset = Execution.objects.none()  # the model, for the schema
    pagination_class = None

    def period(self) -> Period:
        return parse_period(self.request.query_params)

    def executions(self) -> ExecutionQuerySet:
        executions = super().executions()
        if parse_bool(self.request.query_params, INCLUDE_EVALS):
            return executions.including_evaluations()
        return executions


# -- executions -------------------------------------------------------------------------------


class ExecutionListView(ApiMixin, generics.ListAPIView):
    """Executions, newest first, filtered and paginated."""

    serializer_class = s.ExecutionSerializer
    filterset_class = ExecutionFilterSet
    pagination_class = ExecutionPagination

    def get_queryset(self) -> QuerySet:
        queryset = self.executions().defer(*DETAIL_FIELDS_ONLY).order_by("-started_at", "-id")
        period = parse_period(self.request.query_params, default=None)
        return queryset if period is None else queryset.for_period(period)

    @api_schema(parameters=period_parameters(default=None))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ExecutionDetailView(ApiMixin, generics.RetrieveAPIView):
    """One execution with its spans as a tree (one query for the spans)."""

    serializer_class = s.ExecutionDetailSerializer

    def get_queryset(self) -> QuerySet:
        return self.executions()

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        execution = self.get_object()
        spans = list(for_analytics(execution.spans.order_by("started_at", "id")))
        return Response(self.get_serializer(execution, context={"spans": spans, "request": request}).data)


# -- analytics --------------------------------------------------------------------------------


@extend_schema(parameters=aggregate_parameters(), responses=s.OverviewSerializer)
class OverviewView(AggregateView):
    """The KPIs of the period (default 7d): the admin dashboard's tiles."""

    def get(self, request: Request) -> Response:
        return Response(s.OverviewSerializer(overview(self.executions(), self.period())).data)


@extend_schema(parameters=aggregate_parameters(), responses=s.AgentStatsSerializer(many=True))
class AgentListView(AggregateView):
    """Per-agent statistics (as stats_for) for the period, costliest first."""

    def get(self, request: Request) -> Response:
        rows = self.executions().for_period(self.period()).stats_by_agent()
        return Response(s.AgentStatsSerializer(rows, many=True).data)


@extend_schema(parameters=aggregate_parameters(), responses=s.AgentStatsSerializer)
class AgentStatsView(AggregateView):
    """One agent's statistics for the period (stats_for); zeros for an agent with no executions."""

    def get(self, request: Request, agent_type: str) -> Response:
        row = self.executions().stats_for(agent_type, self.period())
        return Response(s.AgentStatsSerializer({"agent_type": agent_type, **row}).data)


@extend_schema(
    parameters=[
        *aggregate_parameters(),
        OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(COST_GROUPS), description="Default model."),
    ],
    responses=s.CostSummaryRowSerializer(many=True),
)
class CostSummaryView(AggregateView):
    """Costs grouped by model (the model that answered, each llm span's), agent, tenant or day."""

    def get(self, request: Request) -> Response:
        group_by = parse_choice(request.query_params, "group_by", list(COST_GROUPS), "model")
        rows = self.executions().for_period(self.period()).cost_summary(group_by)
        if group_by == "day":
            rows = [{**row, "key": row["key"].isoformat()} for row in rows]
        return Response(s.CostSummaryRowSerializer(rows, many=True).data)


@extend_schema(parameters=[include_evals_parameter()], responses=s.CostForecastSerializer)
class CostForecastView(AggregateView):
    """This calendar month's cost so far, daily average and projection (cost_forecast)."""

    def get(self, request: Request) -> Response:
        return Response(s.CostForecastSerializer(self.executions().cost_forecast()).data)


@extend_schema(
    parameters=[
        OpenApiParameter("agent_type", OpenApiTypes.STR, description="Only this agent."),
        OpenApiParameter("days", OpenApiTypes.INT, description="Number of days, 1–366; default 7."),
        include_evals_parameter(),
    ],
    responses=s.TrendRowSerializer(many=True),
)
class TrendsView(AggregateView):
    """One row per day, oldest first, the last one today, zero-filled (trend_analysis)."""

    def get(self, request: Request) -> Response:
        days = parse_int(request.query_params, "days", 7, 1, 366)
        agent_type = request.query_params.get("agent_type") or None
        rows = self.executions().trend_analysis(agent_type=agent_type, days=days)
        return Response(s.TrendRowSerializer(rows, many=True).data)


@extend_schema(parameters=aggregate_parameters(), responses=s.ModelComparisonSerializer(many=True))
class ModelComparisonView(AggregateView):
    """Per model that answered: the root executions that used it (volume, success rate, latency) and
    the spend attributed to it, most used first."""

    def get(self, request: Request) -> Response:
        rows = self.executions().for_period(self.period()).compare_models()
        return Response(s.ModelComparisonSerializer(rows, many=True).data)


@extend_schema(
    parameters=[
        *aggregate_parameters(),
        OpenApiParameter("agent_type", OpenApiTypes.STR, required=True),
        OpenApiParameter(
            "versions", OpenApiTypes.STR, required=True, description="Comma-separated versions, e.g. 1.0,2.0."
        ),
    ],
    responses={200: s.VERSION_COMPARISON_SCHEMA},
)
class VersionComparisonView(AggregateView):
    """``{version: {total, success_rate, avg_cost}}`` of one agent (compare_versions)."""

    def get(self, request: Request) -> Response:
        agent_type = required(request.query_params, "agent_type")
        versions = list(
            dict.fromkeys(v.strip() for v in required(request.query_params, "versions").split(","))
        )
        versions = [version for version in versions if version]
        if not versions:
            raise ValidationError({"versions": ["Name at least one version, e.g. versions=1.0,2.0."]})
        if len(versions) > 50:
            raise ValidationError({"versions": ["At most 50 versions."]})
        result = self.executions().compare_versions(agent_type, *versions, period=self.period())
        return Response({version: s.VersionStatsSerializer(row).data for version, row in result.items()})


@extend_schema(parameters=aggregate_parameters(), responses=s.ErrorAnalysisSerializer)
class ErrorsView(AggregateView):
    """Failed executions of the period by category, and the 10 latest (error_analysis)."""

    def get(self, request: Request) -> Response:
        return Response(
            s.ErrorAnalysisSerializer(self.executions().for_period(self.period()).error_analysis()).data
        )


# -- export -----------------------------------------------------------------------------------


class ExportContentNegotiation(BaseContentNegotiation):
    """Errors as JSON whatever ``format`` asks for (``format`` here names the export's format)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


EXPORT_FORMATS = ["csv", "json", "focus"]


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class ExportView(ApiMixin, APIView):
    """Every execution matching the executions/ filters, streamed as CSV or JSON; or, as FinOps FOCUS
    cost rows (CSV), every root execution matching them."""

    renderer_classes = [JSONRenderer]
    pagination_class = None
    queryset = Execution.objects.none()  # the model, for the schema
    content_negotiation_class = ExportContentNegotiation
    filterset_class = ExecutionFilterSet

    @api_schema(
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=EXPORT_FORMATS,
                description="Default csv. focus: FinOps FOCUS 1.x cost columns, one row per root execution.",
            ),
            *period_parameters(default=None),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then one row each."
            ),
            (200, "application/json"): OpenApiResponse(s.ExecutionSerializer(many=True)),
        },
        filters=True,
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        export_format = parse_choice(request.query_params, "format", EXPORT_FORMATS, "csv")
        queryset = self.executions().order_by("-started_at", "-id")
        period = parse_period(request.query_params, default=None)
        if period is not None:
            queryset = queryset.for_period(period)
        filterset = ExecutionFilterSet(request.query_params, queryset=queryset, request=request)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        if export_format == "csv":
            return csv_response(filterset.qs)
        if export_format == "focus":
            return focus_response(filterset.qs)
        response = StreamingHttpResponse(
            json_lines(export_rows(filterset.qs)), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="executions.json"'
        return response


# -- budgets and batches ----------------------------------------------------------------------


class TenantWritesMixin:
    """Tell the serializer the tenant a tenant-scoped request writes for (``context["tenant_id"]``);
    such a request with no tenant may read but not write (403)."""

    request: Any

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())  # type: ignore[misc]
        scope = tenant_scope(self.request)
        if not scope.everything:
            if scope.tenant_id is None and self.request.method not in ("GET", "HEAD", "OPTIONS"):
                raise PermissionDenied("No tenant resolves for this request.")
            context["tenant_id"] = scope.tenant_id
        return context


class BudgetViewSet(TenantWritesMixin, ApiMixin, viewsets.ModelViewSet):
    """Budgets, each with its current period's spend; a tenant sees and writes its own only."""

    serializer_class = s.BudgetSerializer
    filterset_class = BudgetFilterSet
    queryset = Budget.objects.all()

    def get_queryset(self) -> QuerySet:
        scope = tenant_scope(self.request)
        queryset = Budget.objects.order_by("name", "id")
        if scope.everything:
            return queryset
        return scope.filter(queryset.filter(scope=Budget.Scope.TENANT), field="scope_value")


class BatchViewSet(ApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Provider batches with their requests counted by status. Batches belong to no tenant: a
    tenant-scoped request sees none."""

    serializer_class = s.BatchSerializer
    filterset_class = BatchFilterSet
    queryset = Batch.objects.all()

    def get_queryset(self) -> QuerySet:
        queryset = Batch.objects.with_request_counts().order_by("-created_at", "-id")
        return queryset if tenant_scope(self.request).everything else queryset.none()


# -- schema -----------------------------------------------------------------------------------


class SchemaView(ApiPermissionsMixin, SpectacularAPIView):
    """The OpenAPI 3 schema of this API (YAML by default; ``?format=json`` for JSON)."""

    schema = ApiAutoSchema()
    versioning_class = None

    generator_class = ApiSchemaGenerator
    custom_settings = {
        "TITLE": "django-llm-agents API",
        "DESCRIPTION": "Executions, analytics, budgets, prompts, batches, sessions, scores, datasets and "
        "evaluation runs tracked by django-llm-agents.",
        "VERSION": __version__,
        "COMPONENT_SPLIT_REQUEST": True,
        "ENUM_NAME_OVERRIDES": {
            "ExecutionStatusEnum": Execution.Status.choices,
            "ExecutionKindEnum": Execution.Kind.choices,
            "SpanStatusEnum": Span.Status.choices,
            "SpanKindEnum": Span.Kind.choices,
            "BatchStatusEnum": Batch.Status.choices,
            "BudgetPeriodEnum": Budget.Period.choices,
            "ScoreSourceEnum": Score.Source.choices,
            "PromptVersionSourceEnum": PromptVersion.Source.choices,
            "PromptExperimentStatusEnum": PromptExperiment.Status.choices,
            "PromptExperimentUnitEnum": PromptExperiment.Unit.choices,
            "ScoreDataTypeEnum": Score.DataType.choices,
            "EvalRunStatusEnum": EvalRun.Status.choices,
            "EvalRunModeEnum": EvalRun.Mode.choices,
        },
    }

    @api_schema(**SCHEMA_KWARGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
