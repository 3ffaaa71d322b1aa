"""Scores in the admin (SPEC section 16): an execution page's scores and its form to add a human
score (``scores.add`` with ``source="human"`` and the staff user as author), and the dashboard's
tile with a chosen score over the period (``score_summary``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import connections
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import scores
from ..db import fastpaths
from ..models import Execution, Score, ScoreConfig
from .tenancy import admin_tenant_scope

TRUE_WORDS = {"true", "yes"}
FALSE_WORDS = {"false", "no"}
SCORE_NAMES_SHOWN = 50


class ScoreForm(forms.Form):
    """What a person types to score an execution; ``scores.add`` validates the value."""

    name = forms.CharField(max_length=Score._meta.get_field("name").max_length, label=_("Name"))
    value = forms.CharField(
        max_length=255,
        label=_("Value"),
        help_text=_("A number, true or false, or a category (as the score's config says)."),
    )
    comment = forms.CharField(
        required=False, label=_("Comment"), widget=forms.Textarea(attrs={"rows": 2, "cols": 60})
    )


def typed_value(text: str, config: ScoreConfig | None) -> Any:
    """The value typed into the form as ``scores.add`` takes it: a bool, a number or a category, as
    the score's config says, or as the text looks when there is none. Text that does not fit stays
    text, for ``scores.add`` to refuse with its reason."""
    text = text.strip()
    word = text.lower()
    data_type = config.data_type if config is not None else None
    if data_type == ScoreConfig.DataType.CATEGORICAL:
        return text
    if data_type == ScoreConfig.DataType.BOOLEAN or (data_type is None and word in TRUE_WORDS | FALSE_WORDS):
        if word in TRUE_WORDS | {"1"}:
            return True
        if word in FALSE_WORDS | {"0"}:
            return False
        return text
    try:
        return float(text)
    except ValueError:
        return text


def error_messages(error: ValidationError) -> list[str]:
    """Each message of ``error``, prefixed with the field it names when it names one."""
    if hasattr(error, "error_dict"):
        return [
            message if field == NON_FIELD_ERRORS else f"{field}: {message}"
            for field, field_messages in error.message_dict.items()
            for message in field_messages
        ]
    return list(error.messages)


def can_add_score(request: HttpRequest) -> bool:
    return bool(request.user.has_perm("llm_agents.add_score"))


def execution_scores_context(request: HttpRequest, execution: Execution) -> dict[str, Any]:
    """The execution page's scores (newest first) and its form to add one (two queries)."""
    return {
        "scores": list(execution.scores.select_related("author").order_by("-created_at")),
        "score_form": ScoreForm(),
        "score_configs": list(ScoreConfig.objects.all()),
        "can_add_score": can_add_score(request),
        "add_score_url": reverse("admin:llm_agents_execution_add_score", args=[execution.pk]),
    }


def add_score_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponseBase:
    """POST: a human score of the execution by the staff user, through ``scores.add``; what does not
    fit is reported with the field it concerns, and nothing is stored. Back to the execution page."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not (model_admin.has_view_permission(request) and can_add_score(request)):
        raise PermissionDenied
    execution = model_admin.get_object(request, unquote(object_id))
    if execution is None:
        raise Http404(gettext("No execution %(id)s.") % {"id": object_id})
    back = reverse("admin:llm_agents_execution_change", args=[execution.pk]) + "#scores"
    form = ScoreForm(request.POST)
    if not form.is_valid():
        for field, field_errors in form.errors.items():
            for message in field_errors:
                messages.error(request, f"{field}: {message}")
        return HttpResponseRedirect(back)
    name = form.cleaned_data["name"].strip()
    config = ScoreConfig.objects.filter(name=name).first()
    try:
        score = scores.add(
            execution,
            name,
            typed_value(form.cleaned_data["value"], config),
            comment=form.cleaned_data["comment"],
            source="human",
            author=request.user,
        )
    except ValidationError as error:
        for message in error_messages(error):
            messages.error(request, gettext("The score was not added. %(reason)s") % {"reason": message})
        return HttpResponseRedirect(back)
    messages.success(
        request,
        gettext("Score %(name)s = %(value)s added.") % {"name": score.name, "value": score.display_value},
    )
    return HttpResponseRedirect(back)


# -- the dashboard's tile -------------------------------------------------------------------------


def score_names(request: HttpRequest, using: str) -> list[str]:
    """The names the dashboard offers: those of the score configs, then those scores carry (on
    PostgreSQL, read from the name index one probe per name), the first 50, read from the
    database ``using`` (the dashboard's: ``ANALYTICS_DATABASE`` when set)."""
    configured = list(ScoreConfig.objects.using(using).values_list("name", flat=True))
    scope = admin_tenant_scope(request)
    queryset = scope.filter(Score.objects.using(using).all(), "tenant_id")
    if scope.everything and fastpaths.is_postgresql(connections[queryset.db]):
        used = fastpaths.distinct_values_postgresql(queryset, "name")
    else:
        used = list(queryset.order_by("name").values_list("name", flat=True).distinct()[:SCORE_NAMES_SHOWN])
    return list(dict.fromkeys([*configured, *used]))[:SCORE_NAMES_SHOWN]


def two_places(value: float) -> str:
    """``value`` rounded (``number_format`` alone would cut) to two decimal places."""
    return number_format(round(float(value), 2), 2)


def summary_display(summary: dict[str, Any]) -> tuple[str, str]:
    """The tile's figure and its detail line for a ``score_summary`` answer."""
    count = summary.get("count") or 0
    counted = gettext("%(count)s scores") % {"count": number_format(count, force_grouping=True)}
    if not count:
        return "–", gettext("no scores in this period")
    if "true_rate" in summary:
        return f"{summary['true_rate']:.2f} %", gettext("true, of %(counted)s") % {"counted": counted}
    if "distribution" in summary:
        distribution = sorted(summary["distribution"].items(), key=lambda pair: -pair[1])
        top, top_count = distribution[0]
        share = round(top_count * 100 / count, 1)
        return str(top), gettext("%(share)s %% of %(counted)s") % {"share": share, "counted": counted}
    mean = summary.get("mean")
    shown = "–" if mean is None else two_places(mean)
    detail = gettext("mean of %(counted)s") % {"counted": counted}
    if summary.get("min") is not None and summary.get("max") is not None:
        detail = gettext("mean of %(counted)s, %(low)s to %(high)s") % {
            "counted": counted,
            "low": two_places(summary["min"]),
            "high": two_places(summary["max"]),
        }
    return shown, detail


def score_tile(request: HttpRequest, scoped: Any, period_name: str) -> dict[str, Any] | None:
    """The dashboard's score tile: ``score_summary`` of the score chosen with ``?score=`` (the first
    offered by default) over the dashboard's executions; None when no score has a name yet."""
    names = score_names(request, scoped.db)
    if not names:
        return None
    chosen = request.GET.get("score", "")
    name = chosen if chosen in names else names[0]
    summary = scoped.score_summary(name)
    value, detail = summary_display(summary)
    return {
        "name": name,
        "names": names,
        "summary": summary,
        "value": value,
        "detail": detail,
        "period": period_name,
        "url": f"{reverse('admin:llm_agents_score_changelist')}?{urlencode({'name': name})}",
    }
