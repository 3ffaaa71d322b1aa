"""Executions and spans in the admin: a read-only, filterable list that stays fast at millions of
rows, an execution page with the span tree, and the dashboard (``admin:llm_agents_dashboard``)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..api.export import csv_response
from ..db import fastpaths
from ..db.routing import for_analytics
from ..models import Execution, PromptVersion, Span
from ..models.pagination import LargeTablePaginator
from ..models.querysets import (
    ERROR_CATEGORIES,
    FAILED_STATUSES,
    SEARCH_COLUMNS,
    ExecutionQuerySet,
    error_category,
)
from .attribution import SubjectFilter
from .dashboard import dashboard_view
from .datasets import add_to_dataset
from .formatting import format_cost, format_ms, pretty
from .mixins import ReadOnlyAdminMixin
from .scoring import add_score_view, execution_scores_context
from .sessions import SessionFilter, TagFilter, UserFilter, identity_links, session_view, sessions_view
from .tenancy import TenantScopedAdminMixin

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

PAYLOAD_PREVIEW_CHARS = 1500
HEAVY_FIELDS = (
    "system_prompt",
    "user_prompt",
    "response",
    "parameters",
    "attempts",
    "tool_calls",
    "metadata",
)


class FallbackFilter(admin.SimpleListFilter):
    title = _("fallback")
    parameter_name = "fallback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("yes", _("Used a fallback model")), ("no", _("Configured model answered"))]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.exclude(chosen_model_id="").exclude(chosen_model_id=F("model_id"))
        if self.value() == "no":
            return queryset.filter(Q(chosen_model_id="") | Q(chosen_model_id=F("model_id")))
        return queryset


class RootFilter(admin.SimpleListFilter):
    """Root executions are what the dashboard and the API's analytics count."""

    title = _("nesting")
    parameter_name = "root"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("yes", _("Root executions")), ("no", _("Nested runs"))]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.filter(parent__isnull=True)
        if self.value() == "no":
            return queryset.filter(parent__isnull=False)
        return queryset


class PromptVersionFilter(admin.SimpleListFilter):
    """The executions that used one version of a managed prompt (``slug vN``)."""

    title = _("prompt version")
    parameter_name = "prompt_version"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        versions = PromptVersion.objects.order_by("prompt__slug", "-number")
        return [
            (str(pk), f"{slug} v{number}")
            for pk, slug, number in versions.values_list("pk", "prompt__slug", "number")
        ]

    def has_output(self) -> bool:
        return bool(self.lookup_choices) or self.value() is not None  # applied even with no versions

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"prompt_version must be a version's id, not {value!r}.")
        return queryset.filter(prompt_version_id=int(value))


class MetadataFilter(admin.SimpleListFilter):
    """``key:value`` (or ``key`` alone) typed into a box, as the API's ``metadata`` parameter."""

    title = _("metadata")
    parameter_name = "metadata"
    template = "admin/llm_agents/execution/metadata_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: Any) -> Any:
        yield {
            "value": self.value() or "",
            "selected": bool(self.value()),
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "hidden": [
                (name, value)
                for name, value in changelist.params.items()
                if name not in (self.parameter_name, PAGE_VAR, ERROR_FLAG)
            ],
        }

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if not self.value():
            return queryset
        try:
            return queryset.with_metadata_condition(self.value())
        except ValueError as error:
            raise IncorrectLookupParameters(error) from None


class ErrorCategoryFilter(admin.SimpleListFilter):
    """Failed executions of one category of ``error_analysis()``."""

    title = _("error category")
    parameter_name = "error_category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [(category, category.replace("_", " ")) for category in ERROR_CATEGORIES]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() in ERROR_CATEGORIES:
            return (
                queryset.filter(status__in=FAILED_STATUSES)
                .alias(error_category=error_category())
                .filter(error_category=self.value())
            )
        return queryset


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """Django's filter by each value of a column, whose choices, on PostgreSQL and a list the admin
    does not scope (no tenant), come from skipping through the column's index: one probe per
    distinct value (a recursive query) instead of reading every row, as ``SELECT DISTINCT`` does.
    The columns it is used for lead an index each (``agent_type``, ``model_id``, ``tenant_id``)."""

    def __init__(self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any,
                 field_path: str) -> None:  # fmt: skip
        super().__init__(field, request, params, model, model_admin, field_path)
        queryset = model_admin.get_queryset(request)
        if fastpaths.is_postgresql(connections[queryset.db]) and not queryset.query.where:
            # choices() only iterates over the values; a list serves as the queryset does
            self.lookup_choices = fastpaths.distinct_values_postgresql(queryset, field.column)  # type: ignore[assignment]


class ListedExecutions(ExecutionQuerySet):
    """The executions list's queryset. The admin's date hierarchy asks it for the years, months or
    days that hold rows; on PostgreSQL (with ``USE_TZ``) each candidate between the first and the last
    row is probed through the ``started_at`` index, in one query, instead of truncating every row of
    the period shown, as ``SELECT DISTINCT`` does. Only the date hierarchy calls ``datetimes()`` on it,
    and only iterates over the result, which is therefore a list."""

    def datetimes(self, field_name: str, kind: Any, order: Any = "ASC", tzinfo: Any = None) -> Any:
        if (field_name != "started_at" or kind not in ("year", "month", "day") or order != "ASC"
                or not fastpaths.is_postgresql(connections[self.db]) or not settings.USE_TZ
                or len(self.query.alias_map) > 1):  # fmt: skip
            return super().datetimes(field_name, kind, order, tzinfo)
        return fastpaths.datetimes_postgresql(
            self, field_name, kind, tzinfo or timezone.get_current_timezone()
        )


class ExecutionChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters).defer(*HEAVY_FIELDS)
        return ListedExecutions(model=queryset.model, query=queryset.query, using=queryset.db)


class ExportedChangeList(ExecutionChangeList):
    """The executions list's filters, search and ordering without its page: what "Export CSV" streams."""

    def get_results(self, request: HttpRequest) -> None:
        """The export reads ``queryset`` itself; neither the page nor the count is needed."""


def payload(value: Any) -> dict[str, Any] | None:
    """A payload to show: the whole text, and a preview when it is long."""
    if value in (None, "", [], {}):
        return None
    text = pretty(value)
    truncated = len(text) > PAYLOAD_PREVIEW_CHARS
    return {
        "text": text,
        "preview": text[:PAYLOAD_PREVIEW_CHARS] if truncated else text,
        "truncated": truncated,
        "size": len(text),
    }


MIN_BAR_PCT = 0.5


def timeline_place(offset_ms: float, duration_ms: float, total_ms: float) -> tuple[float, float]:
    """Where a span's bar sits on the execution's timeline, in percent; the bar never leaves it.

    Clock skew between processes can place a span after the execution's end; it is then drawn at
    the right edge rather than outside the page.
    """
    if not total_ms:
        return 0, 100
    offset_pct = min(round(offset_ms * 100 / total_ms, 2), 100 - MIN_BAR_PCT)
    width_pct = min(max(round(duration_ms * 100 / total_ms, 2), MIN_BAR_PCT), 100 - offset_pct)
    return offset_pct, width_pct


def span_tree(execution: Execution) -> list[dict[str, Any]]:
    """The execution's spans as nested nodes (one query), with their place on the timeline."""
    spans = list(execution.spans.order_by("started_at", "id"))
    total_ms = execution.duration_ms or max(
        (
            (span.started_at - execution.started_at).total_seconds() * 1000 + (span.duration_ms or 0)
            for span in spans
        ),
        default=0,
    )
    nodes: dict[uuid.UUID, dict[str, Any]] = {}
    for span in spans:
        offset = max((span.started_at - execution.started_at).total_seconds() * 1000, 0)
        offset_pct, width_pct = timeline_place(offset, span.duration_ms or 0, total_ms)
        nodes[span.pk] = {
            "span": span,
            "children": [],
            "input": payload(span.input),
            "output": payload(span.output),
            "metadata": payload(span.metadata),
            "offset_pct": offset_pct,
            "width_pct": width_pct,
        }
    roots: list[dict[str, Any]] = []
    for span in spans:
        node = nodes[span.pk]
        parent = nodes.get(span.parent_id) if span.parent_id else None
        (parent["children"] if parent else roots).append(node)
    return roots


@admin.register(Execution)
class ExecutionAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["agent", "model_used", "status_badge", "tokens", "cost", "duration", "started_at"]
    list_display_links = ["agent"]
    list_filter = [
        "status",
        RootFilter,
        "kind",
        PromptVersionFilter,
        MetadataFilter,
        SessionFilter,
        UserFilter,
        TagFilter,
        SubjectFilter,
        ("agent_type", IndexedValuesFilter),
        ("model_id", IndexedValuesFilter),
        ("tenant_id", IndexedValuesFilter),
        "started_at",
        "streaming",
        "cache_hit",
        FallbackFilter,
        ErrorCategoryFilter,
    ]
    # Searched through ExecutionQuerySet.search (get_search_results): full-text on PostgreSQL.
    search_fields = ["=id", *SEARCH_COLUMNS]
    search_help_text = _(
        "Every word in the agent, model, error, tenant, prompts or response, or an execution id."
    )
    date_hierarchy = "started_at"
    list_select_related = False
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 50
    change_list_template = "admin/llm_agents/execution/change_list.html"
    change_form_template = "admin/llm_agents/execution/change_form.html"
    fields = ["agent_type"]
    actions = [add_to_dataset]

    def has_add_to_dataset_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("llm_agents.add_datasetitem"))

    # -- list columns --------------------------------------------------------------------------

    def action_checkbox(self, obj: Execution) -> SafeString:
        """Django's checkbox column with the same markup, written out: its widget renders a template
        for every row, a fifth of the page's time."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

    @admin.display(description=_("agent"), ordering="agent_type")
    def agent(self, execution: Execution) -> str:
        return execution.agent_type

    @admin.display(description=_("model"), ordering="model_id")
    def model_used(self, execution: Execution) -> str:
        if execution.used_fallback:
            return format_html(
                '{} <span class="llm-fallback" title="{}">→ {}</span>',
                execution.model_id,
                _("fell back to"),
                execution.chosen_model_id,
            )
        return execution.model_id

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, execution: Execution) -> str:
        return format_html(
            '<span class="llm-status llm-status-{}">{}</span>',
            execution.status,
            execution.get_status_display(),
        )

    @admin.display(description=_("tokens"), ordering="total_tokens")
    def tokens(self, execution: Execution) -> int:
        return execution.total_tokens

    @admin.display(description=_("cost"), ordering="total_cost")
    def cost(self, execution: Execution) -> str:
        return format_cost(execution.total_cost)

    @admin.display(description=_("duration"), ordering="duration_ms")
    def duration(self, execution: Execution) -> str:
        return format_ms(execution.duration_ms)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return cast("ExecutionQuerySet", queryset).search(search_term), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ExportedChangeList if getattr(request, "_llm_agents_export", False) else ExecutionChangeList

    # -- the execution page --------------------------------------------------------------------

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        cache = request.__dict__.setdefault("_llm_agents_executions", {})
        if object_id not in cache:
            queryset = self.get_queryset(request).select_related("parent", "prompt_version__prompt")
            try:
                cache[object_id] = queryset.get(pk=self.model._meta.pk.to_python(object_id))
            except (self.model.DoesNotExist, ValidationError, ValueError):
                cache[object_id] = None
        return cache[object_id]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        execution = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if execution is not None:
            context.update(self.detail_context(request, execution))
        return super().change_view(request, object_id, form_url, context)

    def detail_context(self, request: HttpRequest, execution: Execution) -> dict[str, Any]:
        prompt_version_url = None
        version = execution.prompt_version
        if version is not None:
            prompt_version_url = reverse(
                "admin:llm_agents_prompt_version", args=[version.prompt_id, version.number]
            )
        children: list[dict[str, Any]] = [
            dict(child)
            # Through get_queryset, so a tenant sees only its own nested executions.
            for child in self.get_queryset(request).filter(parent=execution).order_by("started_at").values(
                "id", "agent_type", "kind", "status", "model_id", "total_tokens", "total_cost", "duration_ms",
                "started_at",
            )
        ]  # fmt: skip
        for child in children:
            child["url"] = reverse("admin:llm_agents_execution_change", args=[child["id"]])
        return {
            "execution": execution,
            "spans": span_tree(execution),
            "children": children,
            "prompt_version_url": prompt_version_url,
            "parent_url": reverse("admin:llm_agents_execution_change", args=[execution.parent_id])
            if execution.parent_id
            else None,
            "attempts": execution.attempts if isinstance(execution.attempts, list) else [],
            "tool_calls": [
                {
                    **call,
                    "arguments_text": payload(call.get("arguments")),
                    "result_text": payload(call.get("result")),
                }
                for call in (execution.tool_calls or [])
                if isinstance(call, dict)
            ],
            "texts": [
                (label, payload(value))
                for label, value in (
                    (_("System prompt"), execution.system_prompt),
                    (_("User prompt"), execution.user_prompt),
                    (_("Response"), execution.response),
                )
                if value
            ],
            "parameters_text": payload(execution.parameters),
            "metadata_text": payload(execution.metadata),
            "dashboard_url": reverse("admin:llm_agents_dashboard"),
            **identity_links(execution),
            **execution_scores_context(request, execution),
        }

    # -- the dashboard, sessions, scores --------------------------------------------------------

    def get_urls(self) -> list[Any]:
        return [
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="llm_agents_dashboard"),
            path(
                "sessions/",
                self.admin_site.admin_view(self.sessions_view),
                name="llm_agents_execution_sessions",
            ),
            path(
                "sessions/<path:session_id>/",
                self.admin_site.admin_view(self.session_view),
                name="llm_agents_execution_session",
            ),
            path(
                "<path:object_id>/scores/add/",
                self.admin_site.admin_view(self.add_score_view),
                name="llm_agents_execution_add_score",
            ),
            path(
                "export/",
                # Streamed after the view returns: outside ATOMIC_REQUESTS' transaction, as the API's export/.
                transaction.non_atomic_requests(self.admin_site.admin_view(self.export_view)),
                name="llm_agents_execution_export",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        return dashboard_view(self, request)

    def sessions_view(self, request: HttpRequest) -> TemplateResponse:
        return sessions_view(self, request)

    def session_view(self, request: HttpRequest, session_id: str) -> TemplateResponse:
        return session_view(self, request, session_id)

    def add_score_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        return add_score_view(self, request, object_id)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """Every execution the list shows with the request's filters, search and ordering (all pages),
        streamed as the API's ``export/`` CSV, read on ``ANALYTICS_DATABASE`` as the dashboard is."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        request._llm_agents_export = True  # type: ignore[attr-defined]
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            return HttpResponseBadRequest(
                f"These filters cannot be exported: {error}", content_type="text/plain"
            )
        return csv_response(for_analytics(changelist.queryset))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = {
            "dashboard_url": reverse("admin:llm_agents_dashboard"),
            "export_url": reverse("admin:llm_agents_execution_export"),
            "sessions_url": reverse("admin:llm_agents_execution_sessions"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)


@admin.register(Span)
class SpanAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    tenant_field = "execution__tenant_id"
    list_display = ["name", "kind", "status", "model_id", "total_cost", "duration_ms", "started_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "model_id", "=execution__id"]
    raw_id_fields = ["execution", "parent"]
    show_full_result_count = False
    paginator = LargeTablePaginator
