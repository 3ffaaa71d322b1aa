"""Sessions, scores and end-user feedback (SPEC §16): ``sessions/``, ``scores/`` and ``feedback/``.

Sessions and scores are read on ``ANALYTICS_DATABASE`` and scoped to the request's tenant like the
executions; a score is written on the primary. ``feedback/`` is the one endpoint open to anyone: the
signed token in its body is the permission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import scores
from ..db.routing import for_analytics
from ..models import Execution, Score
from ..models.quality_queries import SCORE_GROUPS
from .filters import ScoreFilterSet, SessionFilterSet
from .params import (
    include_evals_parameter,
    parse_choice,
    parse_period,
    period_parameters,
    required,
)
from .schema import ERROR_SCHEMA, api_schema
from .serializers import EXECUTION_LIST_FIELDS, ApiModelSerializer, StorableJSONField, money
from .tenancy import tenant_scope
from .throttling import FeedbackThrottle
from .views import AggregateView, ApiMixin

if TYPE_CHECKING:
    from ..models.querysets import ExecutionQuerySet

SCORE_VALUE_SCHEMA = {
    "oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
    "description": "A number, true or false, or a category (validated by the name's ScoreConfig, if any).",
}


@extend_schema_field(SCORE_VALUE_SCHEMA)
class ScoreValueField(StorableJSONField):
    """A score's value as given: a number, a boolean or a category."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if value is None or not isinstance(value, bool | int | float | str):
            raise serializers.ValidationError("Give a number, true or false, or a category (a string).")
        return value


def django_error(error: DjangoValidationError) -> ValidationError:
    """A model's ``ValidationError`` as DRF's, keyed by the fields it names."""
    return ValidationError(serializers.as_serializer_error(error))


# -- serializers ------------------------------------------------------------------------------


class ScoreSerializer(ApiModelSerializer):
    """A score of an execution, or of a session (``execution`` null)."""

    class Meta:
        model = Score
        fields = [
            "id",
            "execution",
            "session_id",
            "name",
            "data_type",
            "value",
            "string_value",
            "comment",
            "source",
            "author",
            "eval_run",
            "tenant_id",
            "created_at",
        ]
        read_only_fields = fields


class ScoreCreateSerializer(serializers.Serializer):
    """``POST scores/``: a score of an execution, or of a session."""

    execution = serializers.UUIDField(required=False, help_text="The execution judged (or give session_id).")
    session_id = serializers.CharField(
        required=False, max_length=255, help_text="The session judged as a whole (or give execution)."
    )
    name = serializers.CharField(max_length=100)
    value = ScoreValueField()
    comment = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("execution") is None and not attrs.get("session_id"):
            raise ValidationError({"execution": ["Give execution or session_id (the subject of the score)."]})
        if attrs.get("execution") is not None and attrs.get("session_id"):
            raise ValidationError({"session_id": ["Give execution or session_id, not both."]})
        return attrs


class FeedbackSerializer(serializers.Serializer):
    """``POST feedback/``: an end user's vote on the execution the token names."""

    token = serializers.CharField(
        help_text="The execution's feedback_token, as the server put it in the page."
    )
    name = serializers.CharField(max_length=100, help_text="The score's name, e.g. thumbs.")
    value = ScoreValueField()
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class SessionSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    user_id = serializers.CharField(allow_blank=True, help_text="The most recent non-blank one.")
    executions = serializers.IntegerField(help_text="Root executions of the session.")
    first_started_at = serializers.DateTimeField()
    last_started_at = serializers.DateTimeField()
    total_cost = money()
    total_tokens = serializers.IntegerField()
    failed = serializers.IntegerField()


class SessionExecutionSerializer(ApiModelSerializer):
    """One execution of a session, with what was asked and answered, and its scores."""

    scores = ScoreSerializer(many=True, read_only=True)

    class Meta:
        model = Execution
        fields = [
            *EXECUTION_LIST_FIELDS,
            "session_id",
            "user_id",
            "tags",
            "user_prompt",
            "response",
            "scores",
        ]
        read_only_fields = fields


class SessionDetailSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    user_id = serializers.CharField(allow_blank=True)
    executions = SessionExecutionSerializer(many=True, help_text="Root executions, oldest first.")
    scores = ScoreSerializer(many=True, help_text="Scores of the session as a whole, oldest first.")


SCORE_SUMMARY_SCHEMA = {
    "type": "object",
    "description": "numeric: {name, data_type, count, mean, min, max, p50}; boolean: {name, data_type, "
    "count, true_rate}; categorical: {name, data_type, count, distribution}.",
    "properties": {
        "name": {"type": "string"},
        "data_type": {"type": "string", "enum": [choice for choice, _ in Score.DataType.choices]},
        "count": {"type": "integer"},
        "mean": {"type": "number", "nullable": True},
        "min": {"type": "number", "nullable": True},
        "max": {"type": "number", "nullable": True},
        "p50": {"type": "number", "nullable": True},
        "true_rate": {"type": "number", "description": "Percentage 0–100."},
        "distribution": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["name", "data_type", "count"],
}
SCORES_BY_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "description": "{key, count} and, by the scores' data type, mean, true_rate (percentage 0–100) or "
        "distribution ({category: count}).",
        "properties": {
            "key": {
                "description": "The group: agent type, model, agent version, prompt version id, or ISO day."
            },
            "count": {"type": "integer"},
            "mean": {"type": "number", "nullable": True},
            "true_rate": {"type": "number"},
            "distribution": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["key", "count"],
    },
}


# -- sessions ---------------------------------------------------------------------------------


class SessionListView(ApiMixin, generics.ListAPIView):
    """One row per session (``sessions()``), newest activity first."""

    serializer_class = SessionSerializer
    filterset_class = SessionFilterSet
    queryset = Execution.objects.none()  # the model, for the schema

    def get_queryset(self) -> QuerySet:
        period = parse_period(self.request.query_params, default=None)
        executions = self.executions()
        return executions if period is None else executions.for_period(period)

    def filter_queryset(self, queryset: QuerySet) -> Any:
        """The session rows of the executions the filters leave (a lazy sequence the paginator slices)."""
        executions = cast("ExecutionQuerySet", super().filter_queryset(queryset))
        return executions.sessions()

    @api_schema(parameters=period_parameters(default=None))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class SessionDetailView(ApiMixin, APIView):
    """A session's root executions, oldest first, each with its scores, and the session's own scores;
    404 for a session the request sees neither an execution nor a score of."""

    queryset = Execution.objects.none()  # the model, for the schema
    pagination_class = None

    @api_schema(responses=SessionDetailSerializer, filters=False)
    def get(self, request: Request, session_id: str) -> Response:
        in_session = self.executions().by_session(session_id)
        row = next(iter(in_session.sessions()), None)
        ordered_scores = for_analytics(Score.objects.order_by("created_at", "id"))
        session_scores = list(
            tenant_scope(request).filter(ordered_scores.filter(execution__isnull=True, session_id=session_id))
        )
        if row is None and not session_scores:
            raise NotFound(f"No session {session_id!r}.")
        executions = (
            in_session.analysed_roots()
            .order_by("started_at", "id")
            .prefetch_related(Prefetch("scores", queryset=ordered_scores))
            if row is not None
            else []
        )
        data = {
            "session_id": session_id,
            "user_id": row["user_id"] if row is not None else "",
            "executions": executions,
            "scores": session_scores,
        }
        return Response(SessionDetailSerializer(data).data)


# -- scores -----------------------------------------------------------------------------------


class ScoreListView(ApiMixin, generics.ListCreateAPIView):
    """Scores, newest first; ``POST`` adds one (source ``api``, the user as author)."""

    filterset_class = ScoreFilterSet
    queryset = Score.objects.all()

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ScoreCreateSerializer if self.request.method == "POST" else ScoreSerializer

    def get_queryset(self) -> QuerySet:
        queryset = tenant_scope(self.request).filter(
            for_analytics(Score.objects.order_by("-created_at", "-id"))
        )
        period = parse_period(self.request.query_params, default=None)
        if period is None:
            return queryset
        queryset = queryset.filter(created_at__gte=period.start)
        return queryset if period.end is None else queryset.filter(created_at__lt=period.end)

    @api_schema(parameters=period_parameters(default=None))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @api_schema(request=ScoreCreateSerializer, responses={201: ScoreSerializer}, filters=False)
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = ScoreCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        scope = tenant_scope(request)
        if not scope.everything and scope.tenant_id is None:
            raise PermissionDenied("No tenant resolves for this request.")
        author = request.user if request.user.is_authenticated else None
        options = {"comment": data["comment"], "source": Score.Source.API, "author": author}
        try:
            if data.get("execution") is not None:
                execution = scope.filter(Execution.objects.all()).filter(pk=data["execution"]).first()
                if execution is None:
                    raise ValidationError({"execution": [f"No execution {data['execution']}."]})
                score = scores.add(execution, data["name"], data["value"], **options)
            else:
                session_id = data["session_id"]
                if (
                    not scope.everything
                    and not scope.filter(Execution.objects.by_session(session_id)).exists()
                ):
                    raise ValidationError({"session_id": [f"No session {session_id!r}."]})
                score = scores.add_session(session_id, data["name"], data["value"], **options)
        except DjangoValidationError as error:
            raise django_error(error) from None
        return Response(ScoreSerializer(score).data, status=status.HTTP_201_CREATED)


@extend_schema(
    parameters=[
        OpenApiParameter("name", OpenApiTypes.STR, required=True, description="The scores' name."),
        OpenApiParameter(
            "group_by",
            OpenApiTypes.STR,
            enum=list(SCORE_GROUPS),
            description="Absent: one summary of every score; given: a list of {key, count, mean} rows.",
        ),
        *period_parameters(default=None),
        include_evals_parameter(),
    ],
    responses={200: OpenApiResponse({"oneOf": [SCORE_SUMMARY_SCHEMA, SCORES_BY_SCHEMA]})},
)
class ScoreSummaryView(AggregateView):
    """``score_summary(name)`` over the scores of the request's executions (executions started in the
    period, default all time), or with ``group_by`` the rows of ``scores_by(name, group_by)``."""

    def get(self, request: Request) -> Response:
        params = request.query_params
        name = required(params, "name")
        group_by = params.get("group_by") or None
        if group_by is not None:
            group_by = parse_choice(params, "group_by", list(SCORE_GROUPS), group_by)
        executions = self.executions()
        period = parse_period(params, default=None)
        if period is not None:
            executions = executions.for_period(period)
        if group_by is None:
            return Response(executions.score_summary(name))
        rows = executions.scores_by(name, group_by)
        return Response([{**row, "key": jsonable_key(row["key"])} for row in rows])


def jsonable_key(key: Any) -> Any:
    """A group's key as JSON has it (a day as an ISO date)."""
    return key.isoformat() if hasattr(key, "isoformat") else key


# -- feedback ---------------------------------------------------------------------------------


class FeedbackView(ApiMixin, APIView):
    """An end user's vote, with no login: the signed ``token`` names the execution and is the
    permission. A second vote of the same token and name replaces the first (200 instead of 201).

    No authentication class runs, so a browser holding a session cookie posts without a CSRF token
    (DRF checks CSRF only for session-authenticated requests); the throttle limits each address."""

    authentication_classes: list[Any] = []
    throttle_classes = [FeedbackThrottle]
    queryset = Score.objects.none()  # the model, for the schema
    pagination_class = None

    def get_permissions(self) -> list[Any]:
        return [AllowAny()]

    @api_schema(
        request=FeedbackSerializer,
        responses={
            201: OpenApiResponse(ScoreSerializer, description="The vote, recorded."),
            200: OpenApiResponse(
                ScoreSerializer, description="The vote, replacing this token's earlier one."
            ),
            429: OpenApiResponse(
                ERROR_SCHEMA, description="Too many votes from this address (FEEDBACK_THROTTLE_RATE)."
            ),
        },
        filters=False,
        auth=[],
    )
    def post(self, request: Request) -> Response:
        body = FeedbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            score, earlier = scores.vote(data["token"], data["name"], data["value"], data["comment"])
        except scores.FeedbackTokenError as error:
            raise ValidationError({"token": [f"{str(error).capitalize()}."]}) from None
        except DjangoValidationError as error:
            raise django_error(error) from None
        answer = status.HTTP_200_OK if earlier else status.HTTP_201_CREATED
        return Response(ScoreSerializer(score).data, status=answer)
