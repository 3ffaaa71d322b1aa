"""Prompt experiments in the admin (SPEC §18): the list, a form whose variants can be edited while the
experiment is a draft, Start and Stop, and a results page per experiment with each variant's figures,
the comparisons with the control in plain words, server-drawn charts and "Promote version N"."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..errors import PromptError
from ..models import PromptExperiment
from ..models.prompts import PRODUCTION, PROMOTE_PERMISSION, may_move
from .charts import Bar, Interval, bar_list_chart, interval_chart
from .formatting import format_cost, format_ms

#: Metrics for which a lower mean is the better one; for a score, higher is better.
LOWER_IS_BETTER = ("cost", "latency", "error_rate")


def variants_text(variants: Any) -> str:
    """Variants as the form shows them: ``1:50, 2:50`` (version:weight), or JSON when not that shape."""
    if isinstance(variants, list) and all(isinstance(v, dict) and "version" in v for v in variants):
        return ", ".join(f"{v['version']}:{_number(v.get('weight', 1))}" for v in variants)
    return json.dumps(variants)


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class VariantsField(forms.Field):
    """Variants typed as ``1:50, 2:50`` (version:weight, the control first; a weight left out is 1)
    or as the JSON list ``[{"version": 1, "weight": 50}, …]``."""

    widget = forms.TextInput(attrs={"size": 40})

    def prepare_value(self, value: Any) -> Any:
        return value if isinstance(value, str) else variants_text(value)

    def to_python(self, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        text = (value or "").strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ValidationError(_("Not valid JSON: write 1:50, 2:50 or a JSON list.")) from None
            if not isinstance(parsed, list):
                raise ValidationError(_("Write 1:50, 2:50 or a JSON list."))
            return parsed
        variants = []
        for index, part in enumerate((part.strip() for part in text.split(",")), start=1):
            number, _colon, weight = part.partition(":")
            try:
                version = int(number.strip().lstrip("vV"))
                share = float(weight) if weight.strip() else 1
            except ValueError:
                raise ValidationError(
                    _("variant %(n)d: write version:weight (for example 2:50), not %(part)r.")
                    % {"n": index, "part": part}
                ) from None
            variants.append({"version": version, "weight": _number(share)})
        return variants

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return (initial or []) != self.to_python(data)
        except ValidationError:
            return True


class PromptExperimentForm(forms.ModelForm):
    """The experiment's settings; the model's own validation names the field at fault."""

    variants = VariantsField(
        label=_("Variants"),
        help_text=_(
            "Versions and their weights, the control first: 1:50, 2:50 (or JSON "
            '[{"version": 1, "weight": 50}, …]).'
        ),
    )

    class Meta:
        model = PromptExperiment
        fields = ["prompt", "name", "variants", "unit", "metric", "guardrails", "min_samples"]
        widgets = {"guardrails": forms.Textarea(attrs={"rows": 2, "cols": 60})}


def status_badge(experiment: PromptExperiment) -> SafeString:
    css = {"running": "running", "stopped": "success", "draft": "pending"}[experiment.status]
    return format_html(
        '<span class="llm-status llm-status-{}">{}</span>', css, experiment.get_status_display()
    )


def metric_format(metric: str) -> Callable[[float], str]:
    """How a mean of ``metric`` reads: dollars, milliseconds, a percentage, or a score's number."""
    if metric == "cost":
        return format_cost
    if metric == "latency":
        return format_ms
    if metric == "error_rate":
        return lambda value: f"{value:.2f} %"
    return lambda value: f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def comparison_sentence(
    experiment: PromptExperiment, variants: list[dict[str, Any]], row: dict[str, Any]
) -> str:
    """What a comparison says in plain words: better or worse than the control with its p-value, no
    difference, or not significant yet and how many executions each variant needs."""
    control = variants[0]
    variant = next(v for v in variants if v["version"] == row["version"])
    names = {"v": f"v{row['version']}", "control": f"v{control['version']}"}
    fewest = min(control["executions"], variant["executions"])
    if row["p_value"] is None:
        return gettext(
            "%(v)s: not enough data yet to compare with the control (%(control)s); "
            "need %(n)d executions per variant."
        ) % {**names, "n": experiment.min_samples}
    p = f"{row['p_value']:.4f}".rstrip("0").rstrip(".")
    if row["significant"]:
        better = row["delta"] < 0 if experiment.metric in LOWER_IS_BETTER else row["delta"] > 0
        text = (
            gettext("%(v)s is better than the control (%(control)s) with p = %(p)s.")
            if better
            else gettext("%(v)s is worse than the control (%(control)s) with p = %(p)s.")
        )
        return text % {**names, "p": p}
    if fewest < experiment.min_samples:
        return gettext(
            "%(v)s: not significant yet: need %(n)d executions per variant (the fewest so far: %(k)d; "
            "p = %(p)s for now)."
        ) % {**names, "n": experiment.min_samples, "k": fewest, "p": p}
    return gettext("%(v)s: no significant difference from the control (%(control)s), p = %(p)s.") % {
        **names,
        "p": p,
    }


def results_context(experiment: PromptExperiment) -> dict[str, Any]:
    """The results page's figures (``experiment.results()``), formatted, with its sentences and charts."""
    results = experiment.results()
    shown = metric_format(experiment.metric)
    weights = {v["version"]: v.get("weight", 1) for v in experiment.variants}
    total_weight = sum(weights.values()) or 1
    control = experiment.numbers()[0]
    variants = []
    for variant in results["variants"]:
        number = variant["version"]
        variants.append(
            {
                **variant,
                "name": f"v{number}" + (gettext(" (control)") if number == control else ""),
                "share": round(weights.get(number, 0) * 100 / total_weight, 1),
                "avg_cost_display": format_cost(variant["avg_cost"]),
                "p50_display": format_ms(variant["p50_duration_ms"]),
                "p95_display": format_ms(variant["p95_duration_ms"]),
                "metric_display": shown(variant["metric_mean"])
                if variant["metric_mean"] is not None
                else "–",
                "ci95_display": f"[{shown(variant['ci95'][0])}, {shown(variant['ci95'][1])}]"
                if variant["ci95"]
                else "–",
            }
        )
    comparisons = [
        {
            **row,
            "sentence": comparison_sentence(experiment, results["variants"], row),
            "delta_display": ("+" if (row["delta"] or 0) > 0 else "") + shown(row["delta"])
            if row["delta"] is not None
            else "–",
            "ci95_display": f"[{shown(row['ci95'][0])}, {shown(row['ci95'][1])}]" if row["ci95"] else "–",
        }
        for row in results["comparisons"]
    ]
    return {
        "results": results,
        "variants": variants,
        "comparisons": comparisons,
        "tripped": experiment.tripped or [],
        "lower_is_better": experiment.metric in LOWER_IS_BETTER,
        "charts": results_charts(experiment, variants, shown),
    }


def results_charts(
    experiment: PromptExperiment, variants: list[dict[str, Any]], shown: Callable[[float], str]
) -> dict[str, SafeString]:
    metric = experiment.metric
    return {
        "metric": interval_chart(
            [
                Interval(
                    v["name"],
                    v["metric_mean"],
                    low=v["ci95"][0] if v["ci95"] else None,
                    high=v["ci95"][1] if v["ci95"] else None,
                    css_class=_tripped(v),
                )
                for v in variants
            ],
            label=gettext("Mean %(metric)s per variant with its 95%% interval") % {"metric": metric},
            value_format=shown,
            css_class="experiment-metric",
        ),
        "success_rate": bar_list_chart(
            [Bar(v["name"], v["success_rate"], css_class=_tripped(v)) for v in variants],
            label=gettext("Success rate per variant"),
            value_format=lambda value: f"{value:.2f} %",
        ),
        "avg_cost": bar_list_chart(
            [Bar(v["name"], v["avg_cost"], css_class=_tripped(v)) for v in variants],
            label=gettext("Average cost per variant"),
            value_format=format_cost,
        ),
        "p95_latency": bar_list_chart(
            [Bar(v["name"], v["p95_duration_ms"] or 0, css_class=_tripped(v)) for v in variants],
            label=gettext("p95 latency per variant"),
            value_format=format_ms,
            css_class="latency",
        ),
    }


def _tripped(variant: dict[str, Any]) -> str:
    return "tripped" if variant["tripped"] else ""


@admin.register(PromptExperiment)
class PromptExperimentAdmin(admin.ModelAdmin):
    """Experiments are created as drafts, started and stopped here; their variants can change only
    while they are drafts. The results page promotes a variant to the ``production`` label."""

    form = PromptExperimentForm
    list_display = [
        "name",
        "prompt",
        "status_shown",
        "metric",
        "started_at",
        "variants_summary",
        "results_link",
    ]
    list_filter = ["status", "unit", "prompt"]
    list_select_related = ["prompt"]
    search_fields = ["name", "prompt__slug", "metric"]
    date_hierarchy = "created_at"
    actions = ["start_selected", "stop_selected"]
    change_form_template = "admin/llm_agents/promptexperiment/change_form.html"

    lifecycle_fields = ["status", "tripped_shown", "created_at", "started_at", "stopped_at"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        variants = "variants" if self._draft(obj) else "variants_summary"
        return [
            (None, {"fields": ["prompt", "name", variants, "unit", "metric", "guardrails", "min_samples"]}),
            (_("Lifecycle"), {"fields": self.lifecycle_fields}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if self._draft(obj):
            return list(self.lifecycle_fields)
        return ["prompt", "variants", "variants_summary", "unit", *self.lifecycle_fields]

    @staticmethod
    def _draft(obj: PromptExperiment | None) -> bool:
        return obj is None or obj.status == PromptExperiment.Status.DRAFT

    # -- columns ---------------------------------------------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_shown(self, experiment: PromptExperiment) -> SafeString:
        return status_badge(experiment)

    @admin.display(description=_("variants"))
    def variants_summary(self, experiment: PromptExperiment) -> str:
        """``v1 50 % (control) · v2 50 %``, a variant a guardrail took out marked as such."""
        weights = [v.get("weight", 1) for v in experiment.variants or []]
        total = sum(weights) or 1
        tripped = experiment.tripped_numbers()
        parts = []
        for index, (variant, weight) in enumerate(zip(experiment.variants or [], weights, strict=True)):
            text = f"v{variant['version']} {round(weight * 100 / total, 1):g} %"
            if index == 0:
                text += gettext(" (control)")
            if variant["version"] in tripped:
                text += gettext(" (out: guardrail)")
            parts.append(text)
        return " · ".join(parts)

    @admin.display(description=_("taken out by a guardrail"))
    def tripped_shown(self, experiment: PromptExperiment) -> str:
        entries = experiment.tripped or []
        return "; ".join(f"v{entry['version']}: {entry['reason']}" for entry in entries) or "–"

    @admin.display(description=_("results"))
    def results_link(self, experiment: PromptExperiment) -> SafeString:
        return format_html('<a href="{}">{}</a>', self.url("results", experiment), gettext("Results"))

    # -- pages -----------------------------------------------------------------------------------

    def url(self, name: str, experiment: PromptExperiment) -> str:
        return reverse(f"{self.admin_site.name}:llm_agents_promptexperiment_{name}", args=[experiment.pk])

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        prefix = "llm_agents_promptexperiment"
        return [
            path("<path:object_id>/results/", wrap(self.results_view), name=f"{prefix}_results"),
            path("<path:object_id>/start/", wrap(self.start_view), name=f"{prefix}_start"),
            path("<path:object_id>/stop/", wrap(self.stop_view), name=f"{prefix}_stop"),
            path("<path:object_id>/promote/", wrap(self.promote_view), name=f"{prefix}_promote"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        experiment = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if experiment is not None:
            context.update(self.lifecycle_context(request, experiment))
        return super().change_view(request, object_id, form_url, context)

    def lifecycle_context(self, request: HttpRequest, experiment: PromptExperiment) -> dict[str, Any]:
        """What the Start / Stop buttons need (shown to users who may change the experiment)."""
        can_change = self.has_change_permission(request, experiment)
        return {
            "experiment": experiment,
            "can_start": can_change and experiment.status == PromptExperiment.Status.DRAFT,
            "can_stop": can_change and experiment.status == PromptExperiment.Status.RUNNING,
            "start_url": self.url("start", experiment),
            "stop_url": self.url("stop", experiment),
            "results_url": self.url("results", experiment),
        }

    def results_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Per variant the figures of ``experiment.results()``, the comparisons with the control in
        plain words, charts, and a "Promote version N" button per variant once it has started."""
        experiment = self._experiment_or_404(request, object_id)
        can_change = self.has_change_permission(request, experiment)
        context = {
            **self.admin_site.each_context(request),
            **self.lifecycle_context(request, experiment),
            **results_context(experiment),
            "title": gettext("Results of %(name)s") % {"name": experiment.name},
            "opts": self.opts,
            "original": experiment,
            "prompt": experiment.prompt,
            "change_url": self.url("change", experiment),
            "promote_url": self.url("promote", experiment),
            "can_promote": can_change and experiment.status != PromptExperiment.Status.DRAFT,
            "may_move_production": may_move(PRODUCTION, request.user),
            "promote_permission": PROMOTE_PERMISSION,
            "production": experiment.prompt.label(PRODUCTION),
        }
        return TemplateResponse(request, "admin/llm_agents/promptexperiment/results.html", context)

    def start_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._transition(request, object_id, "start")

    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._transition(request, object_id, "stop")

    def promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``version``: move the prompt's ``production`` label to that variant and stop the
        experiment (moving a protected label needs ``llm_agents.promote_prompt``)."""
        experiment = self._experiment_or_404(request, object_id, change=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            number = int(request.POST.get("version", ""))
        except ValueError:
            self.message_user(request, gettext("Choose the version to promote."), messages.ERROR)
            return self._back(request, experiment)
        try:
            experiment.promote(number, user=request.user, source="admin")
        except (PermissionDenied, PromptError) as error:
            self.message_user(request, str(error), messages.ERROR)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(
                request,
                gettext(
                    "Promoted version %(n)d: the label production of %(slug)s points at it; “%(name)s” is stopped."
                )
                % {"n": number, "slug": experiment.prompt.slug, "name": experiment.name},
            )
        return self._back(request, experiment)

    def _transition(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        experiment = self._experiment_or_404(request, object_id, change=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._apply(request, experiment, action)
        return self._back(request, experiment)

    def _apply(self, request: HttpRequest, experiment: PromptExperiment, action: str) -> bool:
        """Start or stop ``experiment``; a refused transition (a second running experiment of the
        prompt, a wrong status) is an error message naming the experiment."""
        try:
            getattr(experiment, action)()
        except ValidationError as error:
            experiment.refresh_from_db()
            failure = (
                gettext("Could not start “%(name)s”: %(why)s")
                if action == "start"
                else gettext("Could not stop “%(name)s”: %(why)s")
            )
            self.message_user(
                request, failure % {"name": experiment.name, "why": " ".join(error.messages)}, messages.ERROR
            )
            return False
        done = gettext("Started “%(name)s”.") if action == "start" else gettext("Stopped “%(name)s”.")
        self.message_user(request, done % {"name": experiment.name})
        return True

    def _back(self, request: HttpRequest, experiment: PromptExperiment) -> HttpResponseRedirect:
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = self.url("results", experiment)
        return HttpResponseRedirect(target)

    def _experiment_or_404(
        self, request: HttpRequest, object_id: str, *, change: bool = False
    ) -> PromptExperiment:
        experiment = self.get_object(request, unquote(object_id))
        if experiment is None:
            raise Http404(gettext("No experiment with that id."))
        allowed = (
            self.has_change_permission(request, experiment)
            if change
            else self.has_view_permission(request, experiment)
        )
        if not allowed:
            raise PermissionDenied
        return experiment

    # -- actions ---------------------------------------------------------------------------------

    @admin.action(description=_("Start the selected experiments"), permissions=["change"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[PromptExperiment]) -> None:
        for experiment in queryset.select_related("prompt"):
            self._apply(request, experiment, "start")

    @admin.action(description=_("Stop the selected experiments"), permissions=["change"])
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[PromptExperiment]) -> None:
        for experiment in queryset.select_related("prompt"):
            self._apply(request, experiment, "stop")
