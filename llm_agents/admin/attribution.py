"""Executions attributed to the host's objects in the admin (SPEC section 19): ``ExecutionInline``,
which a host adds to its own ModelAdmin to show an object's executions and what they cost, and the
executions list's filter by object that its "all executions" link opens."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.contenttypes.admin import GenericTabularInline
from django.contrib.contenttypes.forms import BaseGenericInlineFormSet
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..attribution import cost_of
from ..models import Execution
from ..models.querysets import ExecutionQuerySet
from .formatting import format_cost, format_ms
from .tenancy import TenantScopedAdminMixin

#: The columns an ExecutionInline reads (the list's own, not the prompts and responses).
LISTED_FIELDS = (
    "id", "started_at", "agent_type", "model_id", "chosen_model_id", "status", "total_cost", "total_tokens",
    "duration_ms", "subject_type", "subject_id", "parent", "eval_run",
)  # fmt: skip


def object_executions_url(obj: Any) -> str:
    """The executions list filtered to the root executions attributed to ``obj``."""
    content_type = ContentType.objects.get_for_model(obj)
    query = urlencode({"subject_type": content_type.pk, "subject_id": str(obj.pk), "root": "yes"})
    return f"{reverse('admin:llm_agents_execution_changelist')}?{query}"


class SubjectFilter(admin.ListFilter):
    """The executions attributed to one object, as ``?subject_type=<content type id>&subject_id=<pk>``
    (the link of :class:`ExecutionInline`): shown only while applied, with the object's name."""

    title = _("attributed to")
    parameters = ("subject_type", "subject_id")

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        self.values: dict[str, str] = {}
        for name in self.parameters:
            if name in params:
                value = params.pop(name)
                self.values[name] = str(value[-1] if isinstance(value, list) else value)

    def has_output(self) -> bool:
        return bool(self.values)

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        type_id, object_id = self.values.get("subject_type", ""), self.values.get("subject_id", "")
        if not type_id.isdigit() or not object_id:
            raise IncorrectLookupParameters(
                "subject_type (a content type's id) and subject_id (an object's primary key) go together."
            )
        return queryset.filter(subject_type_id=int(type_id), subject_id=object_id)

    def subject_name(self) -> str:
        """The object's name, or its model's and primary key's when it is gone or unknown."""
        type_id, object_id = self.values.get("subject_type", ""), self.values.get("subject_id", "")
        try:
            model = ContentType.objects.get_for_id(int(type_id)).model_class()
        except (ValueError, ContentType.DoesNotExist):
            return object_id
        if model is None:
            return object_id
        try:
            return str(model._default_manager.get(pk=object_id))
        except (ObjectDoesNotExist, ValueError, TypeError):
            return f"{model._meta.verbose_name} {object_id}"

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": False,
            "query_string": changelist.get_query_string(remove=list(self.parameters)),
            "display": gettext("All"),
        }
        yield {
            "selected": True,
            "query_string": changelist.get_query_string(),
            "display": self.subject_name(),
        }


class AttributedExecutions(BaseGenericInlineFormSet):
    """The object's newest root executions, at most ``limit`` of them, and its totals (``summary``)."""

    limit = 20

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.summary: dict[str, Any] | None = None
        if self.instance is not None and self.instance.pk is not None:
            totals = cost_of(self.instance, cast(ExecutionQuerySet, self.queryset))
            self.summary = {
                **totals,
                "cost": format_cost(totals["total_cost"]),
                "shown": min(totals["executions"], self.limit),
                "url": object_executions_url(self.instance),
            }

    def get_queryset(self) -> Any:
        if not hasattr(self, "_queryset"):
            self._queryset = cast(ExecutionQuerySet, self.queryset)[: self.limit]
        return self._queryset


class ExecutionInline(TenantScopedAdminMixin, GenericTabularInline):
    """The executions of an object of the host's, read-only, newest first, with its total cost::

    from llm_agents.admin import ExecutionInline

    @admin.register(SupportTicket)
    class SupportTicketAdmin(admin.ModelAdmin):
        inlines = [ExecutionInline]

    Rows are the object's root executions outside evaluation runs (nested ones are in their totals),
    the newest ``limit`` of them; a link opens the executions list filtered to the object."""

    model = Execution
    ct_field = "subject_type"
    ct_fk_field = "subject_id"
    formset = AttributedExecutions  # type: ignore[assignment]
    template = "admin/llm_agents/edit_inline/executions.html"
    verbose_name = _("LLM execution")
    verbose_name_plural = _("LLM executions")
    fields = readonly_fields = (
        "started_at",
        "agent_type",
        "model_used",
        "status",
        "cost",
        "tokens",
        "duration",
        "link",
    )
    ordering = ("-started_at", "-id")
    extra = 0
    can_delete = False
    #: How many executions are listed (the newest); the link shows them all.
    limit = 20

    def get_queryset(self, request: HttpRequest) -> Any:
        return (
            super()
            .get_queryset(request)
            .filter(parent__isnull=True, eval_run__isnull=True)
            .only(*LISTED_FIELDS)
        )

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.limit = self.limit  # type: ignore[attr-defined]
        return formset

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("model"))
    def model_used(self, execution: Execution) -> str:
        return execution.chosen_model_id or execution.model_id

    @admin.display(description=_("cost"))
    def cost(self, execution: Execution) -> str:
        return format_cost(execution.total_cost)

    @admin.display(description=_("tokens"))
    def tokens(self, execution: Execution) -> int:
        return execution.total_tokens

    @admin.display(description=_("duration"))
    def duration(self, execution: Execution) -> str:
        return format_ms(execution.duration_ms)

    @admin.display(description=_("execution"))
    def link(self, execution: Execution) -> str:
        url = reverse("admin:llm_agents_execution_change", args=[execution.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("View"))
