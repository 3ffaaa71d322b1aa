"""The dashboard page (``admin:llm_agents_dashboard``): the KPIs of ``overview/`` for a period with
their change against the previous period, server-drawn charts, top agents, recent executions and
recent errors. Every figure links into the executions list, filtered to what it counts. It reads
``ANALYTICS_DATABASE`` (:func:`~llm_agents.db.routing.for_analytics`)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from ..analytics import LATENCY_PERCENTS, overview
from ..db.routing import for_analytics
from ..models import Execution, rollup_reads
from ..models.querysets import ERROR_CATEGORIES, FAILED_STATUSES, error_category
from ..periods import Period, resolve_period
from .charts import Bar, Column, Segment, bar_list_chart, column_chart, stacked_column_chart
from .formatting import change, format_cost, format_count, format_ms
from .scoring import score_tile
from .tenancy import admin_tenant_scope

DASHBOARD_PERIODS = (("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"))
DEFAULT_PERIOD = "7d"
STATUSES = ("success", "error", "timeout", "running")


# -- links --------------------------------------------------------------------------------------


def moment(value: Any) -> str:
    return timezone.localtime(value).isoformat()


class Links:
    """URLs of the executions list filtered to the dashboard's period (root executions only)."""

    def __init__(self, period: Period) -> None:
        self.base = reverse("admin:llm_agents_execution_changelist")
        self.period = {"root": "yes", "started_at__gte": moment(period.start)}
        if period.end:
            self.period["started_at__lt"] = moment(period.end)
        self.period_query = urlencode(self.period)
        # The query of each (start, end) range, encoded once: a chart links each day several times.
        self.ranges: dict[tuple[Any, Any], tuple[dict[str, str], str]] = {}

    def __call__(self, within_period: bool = True, **params: Any) -> str:
        if within_period:
            return self._url(self.period, self.period_query, params)
        return self._url({"root": "yes"}, "root=yes", params)

    def between(self, start: Any, end: Any, **params: Any) -> str:
        found = self.ranges.get((start, end))
        if found is None:
            query = {"root": "yes", "started_at__gte": moment(start), "started_at__lt": moment(end)}
            found = self.ranges[start, end] = (query, urlencode(query))
        return self._url(*found, params)

    def _url(self, query: Mapping[str, str], encoded: str, params: Mapping[str, Any]) -> str:
        """The list's URL with ``query`` (``encoded`` already) and ``params``, which win over it."""
        if not params:
            return f"{self.base}?{encoded}"
        if query.keys() & params.keys():
            return f"{self.base}?{urlencode({**query, **params})}"
        return f"{self.base}?{encoded}&{urlencode(params)}"

    def export(self) -> str:
        """The CSV export of the period's root executions (what the dashboard counts)."""
        return f"{reverse('admin:llm_agents_execution_export')}?{urlencode(self.period)}"


# -- the page ---------------------------------------------------------------------------------


def selected_period(request: HttpRequest) -> str:
    name = request.GET.get("period", DEFAULT_PERIOD)
    return name if name in dict(DASHBOARD_PERIODS) else DEFAULT_PERIOD


def kpi_tiles(
    now: Mapping[str, Any], before: Mapping[str, Any], links: Links, forecast: Decimal
) -> list[dict[str, Any]]:
    def tile(label: str, key: str, shown: str, *, lower_is_better: bool = False, **extra: Any) -> dict:
        delta = change(now[key], before[key])
        if key == "success_rate" and before["total_executions"]:
            delta = round(float(now[key]) - float(before[key]), 2)
        return {
            "label": label,
            "key": key,
            "value": shown,
            "change": delta,
            "change_unit": "pts" if key == "success_rate" else "%",
            "good": None if not delta else (delta < 0) == lower_is_better,
            **extra,
        }

    return [
        tile(
            _("Executions"),
            "total_executions",
            format_count(now["total_executions"]),
            url=links(),
            detail=_("%(failed)s failed") % {"failed": number_format(now["failed"], force_grouping=True)},
        ),
        tile(
            _("Success rate"),
            "success_rate",
            f"{now['success_rate']:.2f} %",
            url=links(status__exact="success"),
        ),
        tile(
            _("Average latency"),
            "avg_duration_ms",
            format_ms(now["avg_duration_ms"]),
            lower_is_better=True,
            detail=_("p50 %(p50)s") % {"p50": format_ms(now["p50_duration_ms"])},
        ),
        tile(
            _("p95 latency"),
            "p95_duration_ms",
            format_ms(now["p95_duration_ms"]),
            lower_is_better=True,
            url=links(duration_ms__gte=int(now["p95_duration_ms"] or 0)),
            detail=_("p99 %(p99)s") % {"p99": format_ms(now["p99_duration_ms"])},
        ),
        tile(
            _("Total cost"),
            "total_cost",
            format_cost(now["total_cost"]),
            lower_is_better=True,
            url=links(),
            detail=_("this month projected %(cost)s") % {"cost": format_cost(forecast)},
        ),
        tile(
            _("Tokens in"),
            "input_tokens",
            format_count(now["input_tokens"]),
            detail=number_format(now["input_tokens"], force_grouping=True),
        ),
        tile(
            _("Tokens out"),
            "output_tokens",
            format_count(now["output_tokens"]),
            detail=number_format(now["output_tokens"], force_grouping=True),
        ),
        tile(_("Active agents"), "active_agents", format_count(now["active_agents"])),
    ]


def day_label(start: Any, unit: str) -> str:
    local = timezone.localtime(start)
    return local.strftime("%H:00") if unit == "hour" else local.strftime("%b %-d")


def charts(executions: Any, period: Period, links: Links, percentiles: Mapping[str, Any]) -> dict[str, Any]:
    unit = "hour" if period.name == "24h" else "day"
    timeline = executions.timeline(period, unit)
    cost_bars = [
        Bar(
            day_label(row["start"], unit),
            row["total_cost"],
            url=links.between(row["start"], row["end"]),
            title=f"{day_label(row['start'], unit)}: {format_cost(row['total_cost'])}, "
            f"{row['executions']} executions",
        )
        for row in timeline
    ]
    status_columns = [
        Column(
            day_label(row["start"], unit),
            [
                Segment(status, row[status], links.between(row["start"], row["end"], status__exact=status))
                for status in STATUSES
            ],
        )
        for row in timeline
    ]
    models = executions.cost_by_model(period)
    model_bars = [
        Bar(
            row["model_id"] or _("(none)"),
            row["total_cost"] or 0,
            url=links(model_id=row["model_id"]),
            title=f"{row['model_id']}: {format_cost(row['total_cost'])} over {row['executions']} executions",
        )
        for row in models[:10]
    ]
    latency_bars = [
        Bar(
            f"p{percent}",
            percentiles[f"p{percent}"] or 0,
            url=links(duration_ms__gte=int(percentiles[f"p{percent}"] or 0)),
            title=_("%(share)s%% of executions took longer than %(ms)s")
            % {"share": 100 - percent, "ms": format_ms(percentiles[f"p{percent}"])},
        )
        for percent in LATENCY_PERCENTS
    ]
    period_label = dict(DASHBOARD_PERIODS)[period.name]
    return {
        "unit": unit,
        "cost_per_day": column_chart(
            cost_bars, label=_("Cost per %(unit)s, last %(period)s") % {"unit": unit, "period": period_label},
            value_format=format_cost, css_class="cost",
        ),
        "executions_per_day": stacked_column_chart(
            status_columns,
            label=_("Executions per %(unit)s by status, last %(period)s") % {"unit": unit, "period": period_label},
            value_format=format_count,
        ),
        "cost_by_model": bar_list_chart(
            model_bars, label=_("Cost by model, last %(period)s") % {"period": period_label},
            value_format=format_cost, css_class="models",
        ),
        "latency": bar_list_chart(
            latency_bars, label=_("Latency percentiles, last %(period)s") % {"period": period_label},
            value_format=format_ms, label_width=60, css_class="latency",
        ),
        "models": models,
        "timeline": timeline,
        "statuses": [(status, links(status__exact=status)) for status in STATUSES],
    }  # fmt: skip


def recent_errors(executions: Any, links: Links) -> list[dict[str, Any]]:
    """The latest failures of the period grouped by error category, largest group first."""
    analysis = executions.error_analysis()
    latest = (
        executions.analysed_roots()
        .filter(status__in=FAILED_STATUSES)
        .annotate(category=error_category())
        .order_by("-started_at")
        .values("id", "agent_type", "model_id", "error_class", "error_message", "started_at", "category")[:20]
    )
    by_category: dict[str, list[dict[str, Any]]] = {}
    for row in latest:
        by_category.setdefault(row["category"], []).append(row)
    groups = [
        {
            "category": category,
            "label": category.replace("_", " ").capitalize(),
            "count": analysis["categories"][category],
            "url": links(error_category=category),
            "recent": by_category.get(category, [])[:5],
        }
        for category in ERROR_CATEGORIES
        if analysis["categories"][category]
    ]
    return sorted(groups, key=lambda group: -group["count"])


def dashboard_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> TemplateResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    name = selected_period(request)
    period = resolve_period(name)
    executions = for_analytics(admin_tenant_scope(request).filter(Execution.objects.all()))

    scoped = executions.for_period(period)
    # The summary, the agents and the error categories of the period: one read of the rollups.
    with rollup_reads.shared_totals(scoped, ("agent_type", "status", "error_category")):
        return render_dashboard(model_admin, request, name, period, executions, scoped)


def render_dashboard(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    name: str,
    period: Period,
    executions: Any,
    scoped: Any,
) -> TemplateResponse:
    links = Links(period)
    now = overview(executions, period)
    before = overview(executions, period.previous(), forecast=False)  # the month's projection is shown once
    percentiles = {f"p{percent}": now[f"p{percent}_duration_ms"] for percent in LATENCY_PERCENTS}
    agents = scoped.summary_by("agent_type")[:10]
    for row in agents:
        row["url"] = links(agent_type=row["agent_type"])
        row["failed_url"] = links(agent_type=row["agent_type"], status__in=",".join(FAILED_STATUSES))
    recent = list(
        scoped.analysed_roots()
        .order_by("-started_at")
        .values(
            "id", "agent_type", "model_id", "chosen_model_id", "status", "total_tokens",
            "total_cost", "duration_ms", "started_at",
        )[:10]
    )  # fmt: skip
    opts = model_admin.model._meta
    kept = {"score": request.GET["score"]} if request.GET.get("score") else {}  # the score tile's choice
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("LLM agents dashboard"),
        "opts": opts,
        "app_label": opts.app_label,
        "periods": [
            {
                "name": key,
                "label": label,
                "selected": key == name,
                "url": f"?{urlencode({'period': key, **kept})}",
            }
            for key, label in DASHBOARD_PERIODS
        ],
        "period": period,
        "period_label": dict(DASHBOARD_PERIODS)[name],
        "overview": now,
        "previous": before,
        "tiles": kpi_tiles(now, before, links, now["projected_monthly_cost"]),
        "score_tile": score_tile(request, scoped, name),
        "sessions_url": reverse("admin:llm_agents_execution_sessions"),
        "charts": charts(executions, period, links, percentiles),
        "percentiles": percentiles,
        "agents": agents,
        "recent": recent,
        "error_groups": recent_errors(scoped, links),
        "failed_url": links(status__in=",".join(FAILED_STATUSES)),
        "all_url": links(),
        "export_url": links.export(),
        "changelist_url": reverse("admin:llm_agents_execution_changelist"),
    }
    return TemplateResponse(request, "admin/llm_agents/dashboard.html", context)
