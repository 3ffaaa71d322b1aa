"""Agent pauses: create one to stop an agent without a deploy, lift it to let the agent run again.

A pause is never deleted by lifting it: its ``until`` becomes the moment it was lifted, so the list
keeps the history of who paused what, why, and for how long.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from ..agents import Agent
from ..models import AgentPause, Execution
from ..models.operations import AgentPauseQuerySet
from .tenancy import TenantScopedAdminMixin, admin_tenant_scope


def declared_agent_types() -> set[str]:
    """The agent types of the Agent subclasses this process has imported."""
    found, pending = set(), list(Agent.__subclasses__())
    while pending:
        cls = pending.pop()
        found.add(cls.agent_type)
        pending.extend(cls.__subclasses__())
    return found


def is_known_agent_type(agent_type: str) -> bool:
    """Whether an Agent subclass declares ``agent_type`` or an agent execution of it was recorded."""
    return (
        agent_type in declared_agent_types()
        or Execution.objects.filter(kind=Execution.Kind.AGENT, agent_type=agent_type).exists()
    )


class InForceFilter(admin.SimpleListFilter):
    title = "in force"
    parameter_name = "in_force"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No (lifted or expired)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return cast(AgentPauseQuerySet, queryset).in_force()
        if self.value() == "no":
            return queryset.filter(until__lte=timezone.now())
        return queryset


@admin.register(AgentPause)
class AgentPauseAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["agent_type", "tenant_label", "reason", "created_by", "created_at", "until",
                    "in_force_label", "rule_link"]  # fmt: skip
    list_filter = [InForceFilter, "created_at"]
    search_fields = ["agent_type", "tenant_id", "reason"]
    list_select_related = ["created_by", "rule"]
    fields = ["agent_type", "tenant_id", "reason", "until", "created_by", "created_at", "rule_link"]
    actions = ["lift"]

    def get_readonly_fields(self, request: HttpRequest, obj: AgentPause | None = None) -> list[str]:
        readonly = ["created_by", "created_at", "rule_link"]
        if obj is not None:
            readonly[:0] = ["agent_type", "tenant_id"]  # what was paused is history
        elif not admin_tenant_scope(request).everything:
            readonly.insert(0, "tenant_id")  # a tenant pauses its own calls only
        return readonly

    def has_add_permission(self, request: HttpRequest) -> bool:
        scope = admin_tenant_scope(request)
        return (scope.everything or scope.tenant_id is not None) and super().has_add_permission(request)

    def save_model(self, request: HttpRequest, obj: AgentPause, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user if request.user.is_authenticated else None
            scope = admin_tenant_scope(request)
            if not scope.everything and scope.tenant_id is not None:
                obj.tenant_id = scope.tenant_id
        super().save_model(request, obj, form, change)
        if not is_known_agent_type(obj.agent_type):
            self.message_user(
                request,
                f"No Agent subclass declares the agent type {obj.agent_type!r} and no execution of it was "
                "recorded: check its spelling. The pause is saved and applies to it once it runs.",
                messages.WARNING,
            )

    @admin.display(description="tenant", ordering="tenant_id")
    def tenant_label(self, pause: AgentPause) -> str:
        return pause.tenant_id or "every tenant"

    @admin.display(description="in force", boolean=True)
    def in_force_label(self, pause: AgentPause) -> bool:
        return pause.in_force()

    @admin.display(description="alert rule")
    def rule_link(self, pause: AgentPause) -> str:
        if pause.rule is None:
            return "-"
        url = reverse("admin:llm_agents_alertrule_change", args=[pause.rule.pk])
        return format_html('<a href="{}">{}</a>', url, pause.rule.name)

    @admin.action(description="Lift the selected pauses (the agents run again)", permissions=["change"])
    def lift(self, request: HttpRequest, queryset: AgentPauseQuerySet) -> None:
        lifted = queryset.lift(timezone.now())
        self.message_user(request, f"{lifted} pause(s) lifted.", messages.SUCCESS)
