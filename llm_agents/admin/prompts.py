"""Prompt admin: list with tag filter and current version; a prompt page with version history,
diffs between any two versions, rollback, and a render preview. Editing the content in the admin
creates a new version only when something changed."""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..db.routing import for_analytics
from ..errors import PromptError
from ..models import Execution, Prompt, PromptVersion
from ..models.prompts import (
    MESSAGE_ROLES,
    PROMOTE_PERMISSION,
    is_protected,
    may_move,
    normalize_messages,
    normalize_model_params,
)
from ..models.querysets import prompt_performance
from ..periods import resolve_period
from ..prompts.diff import diff_versions
from .dashboard import DASHBOARD_PERIODS
from .formatting import format_cost, format_ms
from .playground import playground_view
from .prompt_variables import PreviewForm, preview_variable_names
from .tenancy import admin_tenant_scope

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

    from ..models.prompts import PromptQuerySet

ROLE_CHOICES = [(role, role) for role in MESSAGE_ROLES]


class TagsField(forms.CharField):
    """A list of tags edited as comma-separated text."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return ", ".join(json.loads(value))
            except (TypeError, ValueError):
                return value
        return value

    # The field is edited as text but cleans to a list, unlike CharField.to_python's str.
    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return list(dict.fromkeys(tag.strip() for tag in text.split(",") if tag.strip()))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return (initial or []) != self.to_python(data)


class PromptForm(forms.ModelForm):
    """The prompt's details plus the content of its next version (``role_N`` / ``content_N`` rows)."""

    message_count = 2

    tags = TagsField(required=False, help_text=_("Comma-separated."))
    model = forms.CharField(required=False, max_length=255, label=_("Model"))
    model_params = forms.JSONField(
        required=False,
        label=_("Model parameters"),
        help_text=_('JSON object, for example {"temperature": 0.3, "max_tokens": 2048}.'),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
    )
    changelog = forms.CharField(
        required=False,
        label=_("Changelog"),
        help_text=_("Recorded on the new version, if the content changed."),
        widget=forms.TextInput(attrs={"size": 80}),
    )

    class Meta:
        model = Prompt
        fields = ["slug", "name", "description", "tags"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        version = self.instance.current_version if self.instance.pk else None
        if version is not None:
            self.initial.setdefault("model", version.model)
            self.initial.setdefault("model_params", version.model_params)
            for index, message in enumerate(version.messages[: self.message_count]):
                self.initial.setdefault(f"role_{index}", message["role"])
                self.initial.setdefault(f"content_{index}", message["content"])
        for index in range(self.message_count):
            default = "system" if index == 0 and version is None else "user"
            self.initial.setdefault(f"role_{index}", default)

    def clean_model_params(self) -> dict[str, Any]:
        try:
            return normalize_model_params(self.cleaned_data.get("model_params") or {})
        except ValidationError as error:
            raise forms.ValidationError(error.messages) from None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        rows = []
        for index in range(self.message_count):
            content = (cleaned.get(f"content_{index}") or "").replace("\r\n", "\n").strip()
            if content:
                rows.append({"role": cleaned.get(f"role_{index}") or "user", "content": content})
        if not rows:
            raise forms.ValidationError(_("Write at least one message."))
        try:
            cleaned["messages"] = normalize_messages(rows)
        except ValidationError as error:
            raise forms.ValidationError(error.messages) from None
        return cleaned


def prompt_form_class(message_count: int) -> type[PromptForm]:
    fields: dict[str, Any] = {"message_count": message_count}
    for index in range(message_count):
        fields[f"role_{index}"] = forms.ChoiceField(
            choices=ROLE_CHOICES, required=False, label=_("Message %(n)d role") % {"n": index + 1}
        )
        fields[f"content_{index}"] = forms.CharField(
            required=False,
            label=_("Message %(n)d content") % {"n": index + 1},
            widget=forms.Textarea(attrs={"rows": 6, "cols": 100, "class": "vLargeTextField"}),
        )
    return type("PromptForm", (PromptForm,), fields)


class TagFilter(admin.SimpleListFilter):
    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(tag, tag) for tag in Prompt.objects.all_tags()]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.with_tag(self.value()) if self.value() else queryset


PERFORMANCE_PERIODS = (("all", _("All time")), *DASHBOARD_PERIODS)


def version_performance(
    request: HttpRequest, prompt: Prompt, versions: list[PromptVersion]
) -> dict[str, Any]:
    """The prompt page's performance table: each version with the figures of the root executions
    that used it (``by_prompt_version``, one query whatever the number of versions) in the period
    of ``?period=`` (default all time), scoped to the request's tenant like the executions list."""
    name = request.GET.get("period", "all")
    if name not in dict(PERFORMANCE_PERIODS):
        name = "all"
    executions = for_analytics(
        admin_tenant_scope(request).filter(Execution.objects.filter(prompt_version__prompt=prompt))
    )
    period = None if name == "all" else resolve_period(name)
    if period is not None:
        executions = executions.for_period(period)
    found = {row["prompt_version"]: row for row in executions.by_prompt_version()}
    changelist = reverse("admin:llm_agents_execution_changelist")
    rows = []
    for version in versions:
        performance = found.get(version.pk, prompt_performance())
        params = {"root": "yes", "prompt_version": version.pk}
        if period is not None:
            params["started_at__gte"] = timezone.localtime(period.start).isoformat()
            if period.end is not None:
                params["started_at__lt"] = timezone.localtime(period.end).isoformat()
        rows.append(
            {
                **performance,
                "version": version,
                "avg_cost_display": format_cost(performance["avg_cost"]),
                "p50_display": format_ms(performance["p50_duration_ms"]),
                "p95_display": format_ms(performance["p95_duration_ms"]),
                "executions_url": f"{changelist}?{urlencode(params)}",
            }
        )
    return {
        "version_rows": rows,
        "performance_periods": [
            {"name": key, "label": label, "selected": key == name, "url": f"?{urlencode({'period': key})}"}
            for key, label in PERFORMANCE_PERIODS
        ],
    }


#: The prompt page lists this many of the latest label moves.
LABEL_MOVES_SHOWN = 50


class LabelMoveForm(forms.Form):
    """The prompt page's "Move label [name] to version [n]"."""

    name = forms.CharField(max_length=100, label=_("Label"))
    version = forms.IntegerField(min_value=1, label=_("Version"))


def label_panel(request: HttpRequest, prompt: Prompt, can_change: bool) -> dict[str, Any]:
    """The prompt page's labels: each label with its version and who moved it last, whether the
    request's user may move it, the form moving one, and the latest moves (who, when, from, to)."""
    labels = list(prompt.labels.select_related("version", "updated_by").order_by("name"))
    rows = [
        {
            "label": label,
            "protected": is_protected(label.name),
            "may_move": can_change and may_move(label.name, request.user),
        }
        for label in labels
    ]
    moves = list(prompt.label_moves.select_related("moved_by")[: LABEL_MOVES_SHOWN + 1])
    suggested = dict.fromkeys([*(label.name for label in labels), "production", "staging"])
    return {
        "label_rows": rows,
        "label_moves": moves[:LABEL_MOVES_SHOWN],
        "label_moves_cut": len(moves) > LABEL_MOVES_SHOWN,
        "label_form": LabelMoveForm(
            initial={"version": prompt.current_version.number if prompt.current_version else None}
        )
        if can_change
        else None,
        "label_suggestions": list(suggested),
        "promote_permission": PROMOTE_PERMISSION,
        "may_promote": request.user.has_perm(PROMOTE_PERMISSION),
    }


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "tag_list", "current_version_number", "updated_at"]
    list_filter = [TagFilter]
    search_fields = ["slug", "name", "description"]
    prepopulated_fields = {"slug": ["name"]}
    change_form_template = "admin/llm_agents/prompt/change_form.html"

    def get_queryset(self, request: HttpRequest) -> Any:
        return cast("PromptQuerySet", super().get_queryset(request)).with_current_number()

    @admin.display(description=_("tags"))
    def tag_list(self, obj: Prompt) -> str:
        return ", ".join(obj.tags or [])

    @admin.display(description=_("current version"), ordering="current_number")
    def current_version_number(self, obj: Prompt) -> Any:
        return getattr(obj, "current_number", None)

    # -- the edit form -------------------------------------------------------------------------

    def message_count(self, obj: Prompt | None) -> int:
        version = obj.current_version if obj is not None and obj.pk else None
        return len(version.messages) + 1 if version is not None else 2

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = prompt_form_class(self.message_count(obj))
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> _FieldsetSpec:
        rows = [(f"role_{index}", f"content_{index}") for index in range(self.message_count(obj))]
        return [
            (None, {"fields": ["name", "slug", "description", "tags"]}),
            (
                _("Content (saved as a new version only when it changed)"),
                {"fields": ["model", "model_params", *rows, "changelog"]},
            ),
        ]

    def save_model(self, request: HttpRequest, obj: Prompt, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        previous = obj.current_version
        cleaned = form.cleaned_data
        version = obj.update_content(
            cleaned["messages"],
            model=cleaned.get("model") or "",
            model_params=cleaned.get("model_params") or {},
            changelog=cleaned.get("changelog") or "",
            source=PromptVersion.Source.ADMIN,
        )
        if previous is not None and version.pk == previous.pk:
            self.message_user(request, _("Content unchanged: still version %(n)d.") % {"n": version.number})
        else:
            self.message_user(request, _("Saved the content as version %(n)d.") % {"n": version.number})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        prompt = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if prompt is not None:
            versions = list(prompt.versions.order_by("-number"))
            extra_context["versions"] = versions
            extra_context.update(version_performance(request, prompt, versions))
            extra_context["can_rollback"] = self.has_change_permission(request, prompt)
            extra_context.update(label_panel(request, prompt, extra_context["can_rollback"]))
            by_version: dict[int, list[str]] = {}
            for row in extra_context["label_rows"]:
                by_version.setdefault(row["label"].version_id, []).append(row["label"].name)
            for row in extra_context["version_rows"]:
                row["labels"] = by_version.get(row["version"].pk, [])
        return super().change_view(request, object_id, form_url, extra_context)

    # -- extra pages ---------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/diff/", wrap(self.diff_view), name=f"{prefix}_diff"),
            path("<path:object_id>/preview/", wrap(self.preview_view), name=f"{prefix}_preview"),
            path("<path:object_id>/labels/", wrap(self.labels_view), name=f"{prefix}_labels"),
            path(
                "<path:object_id>/versions/<int:number>/",
                wrap(self.version_view),
                name=f"{prefix}_version",
            ),
            path(
                "<path:object_id>/versions/<int:number>/playground/",
                wrap(partial(playground_view, self)),
                name=f"{prefix}_playground",
            ),
            path(
                "<path:object_id>/versions/<int:number>/rollback/",
                wrap(self.rollback_view),
                name=f"{prefix}_rollback",
            ),
            *super().get_urls(),
        ]

    def _prompt_or_404(self, request: HttpRequest, object_id: str, *, change: bool = False) -> Prompt:
        prompt = self.get_object(request, unquote(object_id))
        if prompt is None:
            raise Http404(_("No prompt with that id."))
        allowed = (
            self.has_change_permission(request, prompt)
            if change
            else self.has_view_permission(request, prompt)
        )
        if not allowed:
            raise PermissionDenied
        return prompt

    def _context(self, request: HttpRequest, prompt: Prompt, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": prompt,
            "prompt": prompt,
            "title": title,
            "has_view_permission": self.has_view_permission(request, prompt),
            **extra,
        }

    def version_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        prompt = self._prompt_or_404(request, object_id)
        version = self._version_or_404(prompt, number)
        current = prompt.current_version
        context = self._context(
            request,
            prompt,
            _("%(slug)s — version %(n)d") % {"slug": prompt.slug, "n": number},
            version=version,
            is_current=current is not None and current.pk == version.pk,
            can_rollback=self.has_change_permission(request, prompt),
        )
        return TemplateResponse(request, "admin/llm_agents/prompt/version.html", context)

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        prompt = self._prompt_or_404(request, object_id)
        versions = list(prompt.versions.order_by("-number"))
        numbers = [version.number for version in versions]
        by_number = {version.number: version for version in versions}
        new_default = numbers[0] if numbers else None
        old_default = numbers[1] if len(numbers) > 1 else new_default
        old_number = _int(request.GET.get("old"), old_default)
        new_number = _int(request.GET.get("new"), new_default)
        if versions and (old_number not in by_number or new_number not in by_number):
            raise Http404(_("No such version."))
        diff = diff_versions(by_number[old_number], by_number[new_number]) if versions else None
        context = self._context(
            request,
            prompt,
            _("%(slug)s — diff") % {"slug": prompt.slug},
            versions=versions,
            old=by_number.get(old_number),
            new=by_number.get(new_number),
            diff=diff,
        )
        return TemplateResponse(request, "admin/llm_agents/prompt/diff.html", context)

    def labels_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``name`` and ``version``: move the label (``set_label`` on behalf of the request's
        user, source admin), then back to the prompt page with what happened as a message; a refused
        move (a protected label without the permission, a missing version, a bad name) changes
        nothing and says why."""
        prompt = self._prompt_or_404(request, object_id, change=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        form = LabelMoveForm(request.POST)
        if form.is_valid():
            self._move_label(request, prompt, form.cleaned_data["name"], form.cleaned_data["version"])
        else:
            for field, errors in form.errors.items():
                for error in errors:
                    self.message_user(request, f"{form.fields[field].label}: {error}", messages.ERROR)
        change_url = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change", args=[prompt.pk]
        )
        return HttpResponseRedirect(f"{change_url}#labels")

    def _move_label(self, request: HttpRequest, prompt: Prompt, name: str, number: int) -> None:
        before = prompt.label(name)
        try:
            prompt.set_label(name, number, user=request.user, source=PromptVersion.Source.ADMIN)
        except (PermissionDenied, PromptError) as error:
            self.message_user(request, str(error), messages.ERROR)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            if before is not None and before.number == number:
                self.message_user(
                    request,
                    _("The label “%(name)s” already points at version %(n)d.") % {"name": name, "n": number},
                    messages.WARNING,
                )
            elif before is None:
                self.message_user(
                    request, _("Label “%(name)s” now points at version %(n)d.") % {"name": name, "n": number}
                )
            else:
                self.message_user(
                    request,
                    _("Moved label “%(name)s” from version %(old)d to version %(n)d.")
                    % {"name": name, "old": before.number, "n": number},
                )

    def rollback_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        prompt = self._prompt_or_404(request, object_id, change=True)
        version = self._version_or_404(prompt, number)
        if request.method == "POST":
            previous = prompt.current_version
            created = prompt.rollback_to(number)
            if previous is not None and created.pk == previous.pk:
                self.message_user(
                    request,
                    _("Version %(n)d already has that content; nothing was created.") % {"n": created.number},
                    messages.WARNING,
                )
            else:
                self.message_user(
                    request,
                    _("Rolled back: version %(new)d copies version %(old)d.")
                    % {"new": created.number, "old": number},
                )
            return HttpResponseRedirect(
                reverse(
                    f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
                    args=[prompt.pk],
                )
            )
        context = self._context(
            request,
            prompt,
            _("Roll %(slug)s back to version %(n)d?") % {"slug": prompt.slug, "n": number},
            version=version,
            current=prompt.current_version,
        )
        return TemplateResponse(request, "admin/llm_agents/prompt/rollback.html", context)

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        prompt = self._prompt_or_404(request, object_id)
        versions = list(prompt.versions.order_by("-number"))
        source = request.POST if request.method == "POST" else None
        number = _int((source or request.GET).get("version"), versions[0].number if versions else None)
        version = next((v for v in versions if v.number == number), None)
        if versions and version is None:
            raise Http404(_("No such version."))
        names, error = [], None
        if version is not None:
            try:
                names = preview_variable_names(prompt, version)
            except PromptError as caught:
                error = str(caught)
        form = PreviewForm(source, names=names, versions=versions, initial={"version": number})
        built = None
        if source is not None and form.is_valid() and version is not None and error is None:
            try:
                built = version.build(**form.variables())
            except PromptError as caught:
                error = str(caught)
        context = self._context(
            request,
            prompt,
            _("%(slug)s — preview") % {"slug": prompt.slug},
            form=form,
            version=version,
            built=built,
            params={k: v for k, v in (built or {}).items() if k not in ("model", "messages")},
            error=error,
        )
        return TemplateResponse(request, "admin/llm_agents/prompt/preview.html", context)

    def _version_or_404(self, prompt: Prompt, number: int) -> PromptVersion:
        try:
            return prompt.version(number)
        except PromptError:
            raise Http404(_("No such version.")) from None


def _int(value: Any, default: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    list_display = ["prompt", "number", "model", "source", "changelog", "created_at"]
    list_filter = ["source"]
    search_fields = ["prompt__slug", "changelog"]
    list_select_related = ["prompt"]
    readonly_fields = ["prompt", "number", "messages", "model", "model_params", "changelog", "source"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
