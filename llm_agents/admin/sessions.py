"""Sessions in the admin (SPEC section 16): the executions list's filters by session, end user and
tag, the list of sessions (``Execution.objects.sessions()``, newest activity first) and a session's
page, its conversation in order with what each turn asked, answered, called, cost and was scored."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Q, Sum
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..db.routing import for_analytics
from ..models import Execution, Score
from ..models.querysets import FAILED_STATUSES, ExecutionQuerySet
from ..periods import resolve_period
from .dashboard import DASHBOARD_PERIODS
from .formatting import format_cost, format_ms, shown_json
from .tenancy import admin_tenant_scope

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

SESSIONS_PER_PAGE = 50
TURNS_PER_PAGE = 100
SESSION_PERIODS = (("all", _("All time")), *DASHBOARD_PERIODS)


# -- the executions list's filters ----------------------------------------------------------------


class TextInputFilter(admin.SimpleListFilter):
    """A filter whose value is typed into a box (ids have too many values to list)."""

    template = "admin/llm_agents/execution/text_filter.html"
    placeholder = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: Any) -> Any:
        yield {
            "name": self.parameter_name,
            "value": self.value() or "",
            "placeholder": self.placeholder,
            "selected": bool(self.value()),
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "hidden": [
                (name, value)
                for name, value in changelist.params.items()
                if name not in (self.parameter_name, PAGE_VAR, ERROR_FLAG)
            ],
        }


class SessionFilter(TextInputFilter):
    """The executions of one session (``by_session``)."""

    title = _("session")
    parameter_name = "session_id"
    placeholder = "conv-42"

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.by_session(self.value()) if self.value() else queryset


class UserFilter(TextInputFilter):
    """The executions of one end user (``by_user``)."""

    title = _("end user")
    parameter_name = "user_id"
    placeholder = "u-7"

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.by_user(self.value()) if self.value() else queryset


class TagFilter(TextInputFilter):
    """The executions carrying one tag (``with_tag``)."""

    title = _("tag")
    parameter_name = "tag"
    placeholder = "beta"

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.with_tag(self.value()) if self.value() else queryset


# -- links ----------------------------------------------------------------------------------------


def session_url(session_id: str) -> str:
    return reverse("admin:llm_agents_execution_session", args=[session_id])


def executions_url(**params: str) -> str:
    """The executions list filtered by ``params`` (``session_id``, ``user_id`` or ``tag``)."""
    return f"{reverse('admin:llm_agents_execution_changelist')}?{urlencode(params)}"


def identity_links(execution: Execution) -> dict[str, Any]:
    """An execution's session, end user and tags, each with the page or list it leads to."""
    return {
        "session_url": session_url(execution.session_id) if execution.session_id else None,
        "session_executions_url": executions_url(session_id=execution.session_id)
        if execution.session_id
        else None,
        "user_url": executions_url(user_id=execution.user_id) if execution.user_id else None,
        "user_sessions_url": f"{reverse('admin:llm_agents_execution_sessions')}?{urlencode({'user_id': execution.user_id})}"
        if execution.user_id
        else None,
        "tag_links": [
            (tag, executions_url(tag=tag)) for tag in (execution.tags or []) if isinstance(tag, str)
        ],
    }


# -- the list of sessions -------------------------------------------------------------------------


def selected_period(request: HttpRequest) -> str:
    name = request.GET.get("period", "all")
    return name if name in dict(SESSION_PERIODS) else "all"


def sessions_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> TemplateResponse:
    """One row per session of the executions the request may see, newest activity first; filtered
    by ``?user_id=`` and ``?period=`` (default all time), 50 to a page."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    executions = for_analytics(admin_tenant_scope(request).filter(Execution.objects.all()))
    user_id = request.GET.get("user_id", "").strip()
    if user_id:
        executions = executions.by_user(user_id)
    period_name = selected_period(request)
    if period_name != "all":
        executions = executions.for_period(resolve_period(period_name))
    paginator = Paginator(executions.sessions(), SESSIONS_PER_PAGE)
    page = paginator.get_page(request.GET.get(PAGE_VAR))
    rows = [
        {
            **row,
            "url": session_url(row["session_id"]),
            "user_url": executions_url(user_id=row["user_id"]) if row.get("user_id") else None,
            "cost_display": format_cost(row.get("total_cost")),
        }
        for row in page.object_list
    ]

    def query(**changes: Any) -> str:
        params = {"user_id": user_id, "period": period_name, **changes}
        return "?" + urlencode({key: value for key, value in params.items() if value not in ("", None)})

    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Sessions"),
        "opts": opts,
        "app_label": opts.app_label,
        "rows": rows,
        "page": page,
        "paginator": paginator,
        "previous_url": query(p=page.previous_page_number()) if page.has_previous() else None,
        "next_url": query(p=page.next_page_number()) if page.has_next() else None,
        "user_id": user_id,
        "period": period_name,
        "periods": [
            {"name": key, "label": label, "selected": key == period_name, "url": query(period=key, p="")}
            for key, label in SESSION_PERIODS
        ],
        "changelist_url": reverse("admin:llm_agents_execution_changelist"),
        "dashboard_url": reverse("admin:llm_agents_dashboard"),
    }
    return TemplateResponse(request, "admin/llm_agents/execution/sessions.html", context)


# -- one session ------------------------------------------------------------------------------------


def scores_by_execution(request: HttpRequest, execution_ids: list[Any]) -> dict[Any, list[Score]]:
    """The scores of these executions (one query), newest first, keyed by execution id."""
    found: dict[Any, list[Score]] = defaultdict(list)
    scores = admin_tenant_scope(request).filter(
        Score.objects.filter(execution_id__in=execution_ids).select_related("author"), "tenant_id"
    )
    for score in scores:
        found[score.execution_id].append(score)
    return found


def session_view(model_admin: admin.ModelAdmin, request: HttpRequest, session_id: str) -> TemplateResponse:
    """A session's conversation: its root executions oldest first (100 to a page), each with its
    user prompt, answer, tool calls, scores, cost, duration and status; the totals and the session's
    own scores on top."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    listed = cast("ExecutionQuerySet", model_admin.get_queryset(request))
    executions = listed.by_session(session_id).filter(parent__isnull=True)
    totals = executions.aggregate(
        executions=Count("pk"),
        failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
        total_cost=Sum("total_cost"),
        total_tokens=Sum("total_tokens"),
        duration_ms=Sum("duration_ms"),
        first_started_at=Min("started_at"),
        last_started_at=Max("started_at"),
    )
    session_scores = list(
        admin_tenant_scope(request).filter(
            Score.objects.filter(session_id=session_id, execution__isnull=True).select_related("author"),
            "tenant_id",
        )
    )
    if not totals["executions"] and not session_scores:
        raise Http404(gettext("No session %(id)r.") % {"id": session_id})

    paginator = Paginator(executions.order_by("started_at", "id"), TURNS_PER_PAGE)
    paginator.count = totals["executions"]  # counted above
    page = paginator.get_page(request.GET.get(PAGE_VAR))
    turns = list(page.object_list)
    scores = scores_by_execution(request, [turn.pk for turn in turns])
    user_id = next((turn.user_id for turn in reversed(turns) if turn.user_id), "")
    offset = (page.number - 1) * TURNS_PER_PAGE
    rows = [
        {
            "number": offset + index,
            "execution": turn,
            "url": reverse("admin:llm_agents_execution_change", args=[turn.pk]),
            "scores": scores.get(turn.pk, []),
            "tool_calls": [
                {
                    "name": call.get("name", ""),
                    "arguments": shown_json(call.get("arguments"), 200),
                    "result": shown_json(call.get("result"), 200),
                }
                for call in (turn.tool_calls or [])
                if isinstance(call, dict)
            ],
            "cost_display": format_cost(turn.total_cost),
            "duration_display": format_ms(turn.duration_ms),
        }
        for index, turn in enumerate(turns, start=1)
    ]
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Session %(id)s") % {"id": session_id},
        "opts": opts,
        "app_label": opts.app_label,
        "session_id": session_id,
        "user_id": user_id,
        "user_url": executions_url(user_id=user_id) if user_id else None,
        "totals": {
            **totals,
            "cost_display": format_cost(totals["total_cost"]),
            "duration_display": format_ms(totals["duration_ms"]),
        },
        "session_scores": session_scores,
        "rows": rows,
        "page": page,
        "paginator": paginator,
        "previous_url": f"?{PAGE_VAR}={page.previous_page_number()}" if page.has_previous() else None,
        "next_url": f"?{PAGE_VAR}={page.next_page_number()}" if page.has_next() else None,
        "executions_url": executions_url(session_id=session_id),
        "sessions_url": reverse("admin:llm_agents_execution_sessions"),
    }
    return TemplateResponse(request, "admin/llm_agents/execution/session.html", context)
