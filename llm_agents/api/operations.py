"""Agent pauses (SPEC §19): ``pauses/`` lists and creates them, ``pauses/{id}/lift/`` lifts one.

Writing needs the model permission as well as ``API_PERMISSION_CLASSES``: ``add_agentpause`` to
pause, ``change_agentpause`` to lift (a superuser has both). A tenant-scoped request sees and creates
only its tenant's pauses. Lifting keeps the row (``until`` becomes now), so pauses are never deleted
here. Reads and writes go to the primary: a pause takes effect on the next call.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django_filters import rest_framework as filters
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import AgentPause
from .filters import boolean_filter
from .schema import api_schema
from .serializers import ApiModelSerializer
from .tenancy import tenant_scope
from .views import ApiMixin, TenantWritesMixin

#: The model permission each writing action needs.
WRITE_PERMISSIONS = {"create": "llm_agents.add_agentpause", "lift": "llm_agents.change_agentpause"}


class AgentPauseSerializer(ApiModelSerializer):
    """A pause; ``in_force`` tells whether it applies now."""

    created_by = serializers.CharField(
        source="created_by.get_username",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="The username; null: code.",
    )
    in_force = serializers.SerializerMethodField()

    class Meta:
        model = AgentPause
        fields = ["id", "agent_type", "tenant_id", "reason", "until", "created_by", "created_at", "rule",
                  "in_force"]  # fmt: skip
        read_only_fields = ["id", "created_by", "created_at", "rule", "in_force"]
        extra_kwargs = {
            "agent_type": {"help_text": "The agent type to pause (one no Agent declares is allowed)."},
            "tenant_id": {"help_text": "Blank: every tenant. A tenant-scoped request: its own tenant."},
            "until": {"help_text": "Null: until lifted."},
            "rule": {"help_text": "The alert rule that created the pause (null: created by hand)."},
        }

    def get_in_force(self, pause: AgentPause) -> bool:
        return pause.in_force()

    def validate_agent_type(self, agent_type: str) -> str:
        agent_type = agent_type.strip()
        if not agent_type:
            raise serializers.ValidationError("Name the agent type to pause.")
        return agent_type

    def validate_until(self, until: Any) -> Any:
        if until is not None and until <= timezone.now():
            raise serializers.ValidationError("A pause must end in the future (or be null: until lifted).")
        return until

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tenant_id = self.context.get("tenant_id")
        if tenant_id is not None:
            if attrs.setdefault("tenant_id", tenant_id) != tenant_id:
                raise serializers.ValidationError(
                    {"tenant_id": [f"You may pause your tenant {tenant_id!r} only."]}
                )
        return attrs


class AgentPauseFilterSet(filters.FilterSet):
    active = boolean_filter("active", method="filter_active", help_text="In force now (true) or not (false).")
    agent_type = filters.CharFilter()
    tenant_id = filters.CharFilter(help_text="The pause's tenant (blank: the pauses of every tenant).")

    class Meta:
        model = AgentPause
        fields: list[str] = []

    def filter_active(self, queryset: QuerySet[AgentPause], name: str, value: bool) -> QuerySet[AgentPause]:
        now = timezone.now()
        return queryset.in_force(now) if value else queryset.filter(until__lte=now)  # type: ignore[attr-defined]


class AgentPauseViewSet(TenantWritesMixin, ApiMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Agent pauses, newest first."""

    serializer_class = AgentPauseSerializer
    filterset_class = AgentPauseFilterSet
    lookup_value_regex = r"[0-9]+"
    queryset = AgentPause.objects.all()

    def get_queryset(self) -> QuerySet:
        queryset = AgentPause.objects.select_related("created_by").order_by("-created_at", "-id")
        return tenant_scope(self.request).filter(queryset)

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        needed = WRITE_PERMISSIONS.get(getattr(self, "action", None) or "")
        if needed is not None and not request.user.has_perm(needed):
            raise PermissionDenied(f"Pausing and lifting agents needs the permission {needed}.")

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        user = self.request.user
        serializer.save(created_by=user if user.is_authenticated else None)

    @api_schema(request=AgentPauseSerializer, responses={201: AgentPauseSerializer}, filters=False)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Pause an agent type (in one tenant, or everywhere): its calls raise ``AgentPausedError``
        before any provider request. Bad input is a 400 naming the field."""
        return super().create(request, *args, **kwargs)

    @api_schema(request=None, responses=AgentPauseSerializer, filters=False)
    @action(detail=True, methods=["post"], filterset_class=None)
    def lift(self, request: Request, pk: str) -> Response:
        """End the pause now (``until`` becomes now; the pause stays, as history). A pause no longer in
        force is answered unchanged."""
        pause = self.get_object()
        if AgentPause.objects.filter(pk=pause.pk).lift():
            pause.refresh_from_db()
        return Response(AgentPauseSerializer(pause, context=self.get_serializer_context()).data)
