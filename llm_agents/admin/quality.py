"""The quality loop in the admin (SPEC sections 16 and 17): scores and their configs, datasets with
their items, and evaluation runs with their summary, their results and two runs side by side."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import Dataset, DatasetItem, EvalResult, EvalRun, Score, ScoreConfig
from .executions import IndexedValuesFilter
from .formatting import format_cost, shown_json
from .sessions import session_url
from .tenancy import TenantScopedAdminMixin

#: A dataset's page edits its items inline up to this many; beyond, it links to their list.
INLINE_ITEMS_MAX = 200
RESULTS_PER_PAGE = 50
COMPARED_ITEMS_PER_PAGE = 50
RUNS_SHOWN = 20


def shown_value(value: Any) -> str:
    """An evaluator's value as the run pages show it: True/False, or a number to at most 4 places."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def status_badge(status: str, label: str) -> SafeString:
    return format_html('<span class="llm-status llm-status-{}">{}</span>', status, label)


# -- scores ---------------------------------------------------------------------------------------


class ScoreConfigForm(forms.ModelForm):
    class Meta:
        model = ScoreConfig
        fields = ["name", "data_type", "min_value", "max_value", "categories", "description"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        low, high = cleaned.get("min_value"), cleaned.get("max_value")
        if low is not None and high is not None and low > high:
            self.add_error("max_value", _("The highest value must not be below the lowest."))
        categories = cleaned.get("categories")
        if categories is not None and (
            not isinstance(categories, list) or not all(isinstance(value, str) for value in categories)
        ):
            self.add_error("categories", _('A list of strings, for example ["happy", "neutral", "unhappy"].'))
        elif cleaned.get("data_type") == ScoreConfig.DataType.CATEGORICAL and not categories:
            self.add_error("categories", _("A categorical score needs its categories."))
        return cleaned


@admin.register(ScoreConfig)
class ScoreConfigAdmin(admin.ModelAdmin):
    form = ScoreConfigForm
    list_display = ["name", "data_type", "min_value", "max_value", "categories_shown", "description"]
    list_filter = ["data_type"]
    search_fields = ["name", "description"]

    @admin.display(description=_("categories"))
    def categories_shown(self, config: ScoreConfig) -> str:
        return ", ".join(str(category) for category in config.categories or []) or "–"


@admin.register(Score)
class ScoreAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Scores are added through ``scores.add`` (the execution page's form, the API, feedback and
    evaluation runs), which validates them; here they are read, commented on and deleted."""

    list_display = ["name", "shown_value", "data_type", "source", "subject", "author", "created_at"]
    list_filter = [("name", IndexedValuesFilter), "source", "data_type", "created_at"]
    search_fields = ["name", "comment", "string_value", "=session_id"]
    search_help_text = _("A name, a category, words of the comment, or a session id.")
    list_select_related = ["author"]
    raw_id_fields = ["execution", "eval_run", "eval_result", "author"]
    show_full_result_count = False
    fields = [
        "name", "data_type", "shown_value", "string_value", "value", "comment", "source", "author", "subject",
        "eval_run", "tenant_id", "created_at",
    ]  # fmt: skip
    readonly_fields = [
        "name", "data_type", "shown_value", "string_value", "value", "source", "author", "subject", "eval_run",
        "tenant_id", "created_at",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Score | None = None) -> bool:
        if obj is not None and obj.source == Score.Source.EVALUATOR:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description=_("value"))
    def shown_value(self, score: Score) -> Any:
        value = score.display_value
        return "–" if value is None else value

    @admin.display(description=_("of"))
    def subject(self, score: Score) -> SafeString:
        if score.execution_id:
            return format_html(
                '<a href="{}">{} {}</a>',
                reverse("admin:llm_agents_execution_change", args=[score.execution_id]),
                _("execution"),
                str(score.execution_id)[:8],
            )
        return format_html(
            '<a href="{}">{} {}</a>', session_url(score.session_id), _("session"), score.session_id
        )


# -- datasets -------------------------------------------------------------------------------------


class DatasetItemForm(forms.ModelForm):
    class Meta:
        model = DatasetItem
        fields = ["dataset", "input", "expected_output", "metadata", "is_active", "source_execution"]

    def clean_input(self) -> Any:
        value = self.cleaned_data.get("input")
        if not isinstance(value, dict):
            raise forms.ValidationError(
                _('A JSON object of the agent\'s params, for example {"query": "…"}.')
            )
        return value

    def clean_metadata(self) -> Any:
        value = self.cleaned_data.get("metadata")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(_("A JSON object."))
        return value


class DatasetItemInline(admin.StackedInline):
    model = DatasetItem
    form = DatasetItemForm
    fields = ["input", "expected_output", "metadata", "is_active", "source_execution"]
    raw_id_fields = ["source_execution"]
    extra = 1
    show_change_link = True


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "item_count", "run_count", "created_at"]
    search_fields = ["slug", "name", "description"]
    prepopulated_fields = {"slug": ["name"]}
    change_form_template = "admin/llm_agents/dataset/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Dataset]:
        return (
            super()
            .get_queryset(request)
            .annotate(item_count=Count("items", distinct=True), run_count=Count("runs", distinct=True))
        )

    @admin.display(description=_("items"), ordering="item_count")
    def item_count(self, dataset: Dataset) -> SafeString:
        url = reverse("admin:llm_agents_datasetitem_changelist") + f"?dataset__id__exact={dataset.pk}"
        return format_html('<a href="{}">{}</a>', url, getattr(dataset, "item_count", 0))

    @admin.display(description=_("evaluation runs"), ordering="run_count")
    def run_count(self, dataset: Dataset) -> SafeString:
        url = reverse("admin:llm_agents_evalrun_changelist") + f"?dataset__id__exact={dataset.pk}"
        return format_html('<a href="{}">{}</a>', url, getattr(dataset, "run_count", 0))

    def get_inlines(
        self, request: HttpRequest, obj: Dataset | None
    ) -> list[type[admin.options.InlineModelAdmin]]:
        if obj is not None and getattr(obj, "item_count", 0) > INLINE_ITEMS_MAX:
            return []
        return [DatasetItemInline]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        dataset = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if dataset is not None:
            context.update(
                {
                    "items_url": reverse("admin:llm_agents_datasetitem_changelist")
                    + f"?dataset__id__exact={dataset.pk}",
                    "items_inline": getattr(dataset, "item_count", 0) <= INLINE_ITEMS_MAX,
                    "item_count": getattr(dataset, "item_count", 0),
                    "runs": [
                        {
                            "run": run,
                            "url": reverse("admin:llm_agents_evalrun_change", args=[run.pk]),
                            "cost_display": format_cost(run.total_cost),
                        }
                        for run in dataset.runs.order_by("-created_at")[:RUNS_SHOWN]
                    ],
                    "runs_url": reverse("admin:llm_agents_evalrun_changelist")
                    + f"?dataset__id__exact={dataset.pk}",
                }
            )
        return super().change_view(request, object_id, form_url, context)


@admin.register(DatasetItem)
class DatasetItemAdmin(admin.ModelAdmin):
    form = DatasetItemForm
    list_display = ["short_id", "dataset", "input_shown", "expected_shown", "is_active", "created_at"]
    list_filter = ["dataset", "is_active"]
    list_select_related = ["dataset"]
    search_fields = ["=id", "dataset__slug"]
    raw_id_fields = ["source_execution"]

    @admin.display(description=_("item"), ordering="created_at")
    def short_id(self, item: DatasetItem) -> str:
        return str(item.pk)[:8]

    @admin.display(description=_("input"))
    def input_shown(self, item: DatasetItem) -> str:
        return shown_json(item.input, 120)

    @admin.display(description=_("expected output"))
    def expected_shown(self, item: DatasetItem) -> str:
        return shown_json(item.expected_output, 120) or "–"


# -- evaluation runs ------------------------------------------------------------------------------


def evaluator_names(run: EvalRun) -> list[str]:
    """The run's evaluators in their order, then any other name its summary holds."""
    return list(dict.fromkeys([*run.evaluator_names(), *(run.summary or {})]))


def summary_rows(run: EvalRun) -> list[dict[str, Any]]:
    summary = run.summary or {}
    return [{"evaluator": name, **(summary.get(name) or {})} for name in evaluator_names(run)]


def result_rows(results: list[EvalResult], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        by_name = {score.name: score for score in result.scores.all()}
        rows.append(
            {
                "result": result,
                "input": shown_json(result.item.input, None),
                "expected": shown_json(result.item.expected_output, None),
                "output": shown_json(result.output, None),
                "scores": [
                    (
                        name,
                        by_name.get(name),
                        shown_value(by_name[name].display_value) if name in by_name else "–",
                    )
                    for name in names
                ],
                "execution_url": reverse("admin:llm_agents_execution_change", args=[result.execution_id])
                if result.execution_id
                else None,
            }
        )
    return rows


def differs(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) > 1e-9
    return a != b


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    """Runs are started by ``evals.run``, the API and ``run_eval``; here they are read and compared."""

    list_display = [
        "__str__", "dataset", "agent_type", "model_shown", "status_shown", "progress", "failed_count", "cost",
        "created_at",
    ]  # fmt: skip
    list_filter = ["status", "mode", "dataset", "agent_type"]
    list_select_related = ["dataset"]
    search_fields = ["name", "agent_type", "target"]
    date_hierarchy = "created_at"
    change_form_template = "admin/llm_agents/evalrun/change_form.html"
    actions = ["compare_selected"]
    fields = ["name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: EvalRun | None = None) -> bool:
        return False

    @admin.display(description=_("model"), ordering="model")
    def model_shown(self, run: EvalRun) -> str:
        return run.model or gettext("(the agent's)")

    @admin.display(description=_("status"), ordering="status")
    def status_shown(self, run: EvalRun) -> SafeString:
        return status_badge(run.status, run.get_status_display())

    @admin.display(description=_("done"))
    def progress(self, run: EvalRun) -> str:
        return f"{run.completed_count} / {run.item_count}"

    @admin.display(description=_("cost"), ordering="total_cost")
    def cost(self, run: EvalRun) -> str:
        return format_cost((run.total_cost or 0) + (run.eval_cost or 0))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/compare/",
                self.admin_site.admin_view(self.compare_view),
                name="llm_agents_evalrun_compare",
            ),
            *super().get_urls(),
        ]

    # -- the run's page ------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        run = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if run is not None:
            context.update(self.run_context(request, run))
        return super().change_view(request, object_id, form_url, context)

    def run_context(self, request: HttpRequest, run: EvalRun) -> dict[str, Any]:
        names = evaluator_names(run)
        results = (
            run.results.select_related("item")
            .prefetch_related(Prefetch("scores", queryset=Score.objects.order_by("name")))
            .order_by("created_at", "id")
        )
        paginator = Paginator(results, RESULTS_PER_PAGE)
        page = paginator.get_page(request.GET.get(PAGE_VAR))
        return {
            "run": run,
            "evaluator_names": names,
            "summary_rows": summary_rows(run),
            "result_rows": result_rows(list(page.object_list), names),
            "results_page": page,
            "previous_url": f"?{PAGE_VAR}={page.previous_page_number()}" if page.has_previous() else None,
            "next_url": f"?{PAGE_VAR}={page.next_page_number()}" if page.has_next() else None,
            "other_runs": list(
                EvalRun.objects.filter(dataset_id=run.dataset_id)
                .exclude(pk=run.pk)
                .order_by("-created_at")[:50]
            ),
            "compare_url": reverse("admin:llm_agents_evalrun_compare", args=[run.pk]),
            "dataset_url": reverse("admin:llm_agents_dataset_change", args=[run.dataset_id]),
            "executions_url": reverse("admin:llm_agents_execution_changelist")
            + f"?eval_run__id__exact={run.pk}",
            "total_cost_display": format_cost(run.total_cost),
            "eval_cost_display": format_cost(run.eval_cost),
        }

    # -- two runs side by side -----------------------------------------------------------------

    @admin.action(description=_("Compare the two selected runs"))
    def compare_selected(
        self, request: HttpRequest, queryset: QuerySet[EvalRun]
    ) -> HttpResponseRedirect | None:
        runs = list(queryset.order_by("-created_at")[:3])
        if len(runs) != 2:
            self.message_user(request, gettext("Select exactly two runs to compare."), messages.WARNING)
            return None
        newer, older = runs
        url = reverse("admin:llm_agents_evalrun_compare", args=[newer.pk])
        return HttpResponseRedirect(f"{url}?{urlencode({'b': older.pk})}")

    def compare_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """Run A (this one) against run B (``?b=``): ``A.compare(B)`` per evaluator, and the items
        side by side, each evaluator's cell marked where the two runs score differently."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404(gettext("No evaluation run %(id)s.") % {"id": object_id})
        other = None
        if request.GET.get("b"):
            other = self.get_object(request, request.GET["b"])
            if other is None:
                raise Http404(gettext("No evaluation run %(id)s.") % {"id": request.GET["b"]})
        only_differing = request.GET.get("differing") == "1"
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": gettext("Compare evaluation runs"),
            "opts": self.model._meta,
            "app_label": self.model._meta.app_label,
            "run": run,
            "other": other,
            "other_runs": list(
                EvalRun.objects.filter(dataset_id=run.dataset_id)
                .exclude(pk=run.pk)
                .order_by("-created_at")[:50]
            ),
            "only_differing": only_differing,
            "run_url": reverse("admin:llm_agents_evalrun_change", args=[run.pk]),
        }
        if other is not None:
            context.update(self.comparison_context(request, run, other, only_differing))
        return TemplateResponse(request, "admin/llm_agents/evalrun/compare.html", context)

    def comparison_context(
        self, request: HttpRequest, run: EvalRun, other: EvalRun, only_differing: bool
    ) -> dict[str, Any]:
        comparison = run.compare(other)
        names = [name for name in comparison if name != "items"]
        rows = []
        for entry in comparison.get("items", []):
            a, b = entry.get("a") or {}, entry.get("b") or {}
            cells = [
                {
                    "evaluator": name,
                    "a": shown_value(a.get(name)),
                    "b": shown_value(b.get(name)),
                    "differs": differs(a.get(name), b.get(name)),
                }
                for name in names
            ]
            if only_differing and not any(cell["differs"] for cell in cells):
                continue
            rows.append(
                {"item": entry.get("item"), "cells": cells, "differs": any(c["differs"] for c in cells)}
            )
        paginator = Paginator(rows, COMPARED_ITEMS_PER_PAGE)
        page = paginator.get_page(request.GET.get(PAGE_VAR))
        shown = list(page.object_list)
        to_id = DatasetItem._meta.pk.to_python
        item_ids = [to_id(getattr(row["item"], "pk", row["item"])) for row in shown]
        items = DatasetItem.objects.in_bulk(item_ids)
        outputs = {
            (result.run_id, result.item_id): result
            for result in EvalResult.objects.filter(run__in=[run, other], item_id__in=item_ids)
        }
        for row, item_id in zip(shown, item_ids, strict=True):
            item = items.get(item_id)
            result_a, result_b = outputs.get((run.pk, item_id)), outputs.get((other.pk, item_id))
            row.update(
                {
                    "item_id": item_id,
                    "input": shown_json(item.input if item else None),
                    "expected": shown_json(item.expected_output if item else None),
                    "output_a": shown_json(result_a.output) if result_a else "",
                    "output_b": shown_json(result_b.output) if result_b else "",
                    "error_a": result_a.error if result_a else "",
                    "error_b": result_b.error if result_b else "",
                }
            )

        def query(**changes: Any) -> str:
            params = {"b": other.pk, "differing": "1" if only_differing else "", **changes}
            return "?" + urlencode({key: value for key, value in params.items() if value not in ("", None)})

        return {
            "evaluators": [{"evaluator": name, **comparison[name]} for name in names],
            "item_rows": shown,
            "items_page": page,
            "item_count": paginator.count,
            "previous_url": query(p=page.previous_page_number()) if page.has_previous() else None,
            "next_url": query(p=page.next_page_number()) if page.has_next() else None,
            "differing_url": query(differing="1", p=""),
            "all_items_url": query(differing="", p=""),
            "other_url": reverse("admin:llm_agents_evalrun_change", args=[other.pk]),
        }
