"""The prompt playground (SPEC §18): from a prompt version's admin page, staff render the version
with variables and send it to one model, or to up to four side by side ("compare models").

Each answer is a real call of the agent type ``playground``, tracked as any other: one Execution per
model, with ``prompt_version`` set to the version and the version's model parameters (temperature,
max tokens, ...) applied; budgets, retries and pricing apply too. A refused or failed call shows its
error in its model's column, and its execution is recorded with that error.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from ..agents import Agent
from ..agents.base import Run
from ..conf import app_settings
from ..errors import PromptError
from ..models import CostConfig, PromptVersion
from ..redaction import current_redactor
from .formatting import format_cost, format_ms
from .prompt_variables import PreviewForm, preview_variable_names

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

#: The most models one playground run sends the prompt to.
MAX_MODELS = 4

PLAYGROUND_AGENT_TYPE = "playground"


# -- the call -------------------------------------------------------------------------------------


class PlaygroundAgent(Agent):
    """The agent of playground runs: it sends the prompt version it is run with
    (``Run(agent, model=..., prompt_version=...)``), rendered with its variables. The variables are
    the prompt's, not declared Params, and are recorded as the execution's parameters; ``run_by``
    (the staff user) goes into its metadata."""

    agent_type = PLAYGROUND_AGENT_TYPE

    def __init__(self, variables: Mapping[str, Any], *, run_by: str = "") -> None:
        self.params = dict(variables)
        self.run_by = run_by

    def execution_metadata(self) -> dict[str, Any]:
        return {"run_by": self.run_by} if self.run_by else {}


@dataclass(slots=True)
class PlaygroundAnswer:
    """One model's column: what its execution recorded, or the error that ended it."""

    model: str
    execution_id: uuid.UUID | None
    status: str
    response: str = ""
    error: str = ""
    chosen_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    total_cost: Decimal = Decimal("0")
    duration_ms: int | None = None

    @property
    def cost_display(self) -> str:
        return format_cost(self.total_cost)

    @property
    def duration_display(self) -> str:
        return format_ms(self.duration_ms)

    @property
    def execution_url(self) -> str:
        if self.execution_id is None:
            return ""
        return reverse("admin:llm_agents_execution_change", args=[self.execution_id])


def run_playground(
    version: PromptVersion, variables: Mapping[str, Any], models: list[str], *, run_by: str = ""
) -> list[PlaygroundAnswer]:
    """Send ``version`` rendered with ``variables`` to each of ``models``, one after another, as a
    ``playground`` call; one answer per model, in their order. A call that raises (a hard-stop
    budget, a provider error, an unknown model) gives an answer carrying its error, redacted as the
    stored execution's is; the other models are still asked."""
    answers = []
    redactor = current_redactor()
    for model in models:
        run = Run(
            PlaygroundAgent(variables, run_by=run_by), streaming=False, model=model, prompt_version=version
        )
        error: Exception | None = None
        try:
            run.call()
        except Exception as caught:  # shown in the model's column: the page itself never fails for it
            error = caught
        record = getattr(run, "record", None)  # None when the call ended before its execution began
        if record is None:
            message = f"{type(error).__name__}: {error}" if error is not None else ""
            answers.append(PlaygroundAnswer(model=model, execution_id=None, status="error",
                                            error=redactor.error(message)))  # fmt: skip
            continue
        answers.append(
            PlaygroundAnswer(
                model=model,
                execution_id=record.id,
                status=record.status,
                response=record.response,
                error=redactor.error(f"{record.error_class}: {record.error_message}") if error else "",
                chosen_model=record.chosen_model_id,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                total_cost=record.total_cost,
                duration_ms=record.duration_ms,
            )
        )
    return answers


# -- the form -------------------------------------------------------------------------------------


class ModelInputs(forms.Widget):
    """``count`` text inputs sharing one name (the first the model, the others the models to compare
    with), each offering the known models from a datalist."""

    template_name = "admin/llm_agents/prompt/includes/playground_models.html"

    def __init__(self, count: int = MAX_MODELS, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.count = count
        self.choices: list[str] = []

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        values = data.getlist(name) if hasattr(data, "getlist") else data.get(name, [])
        return list(values) if isinstance(values, list | tuple) else [values]

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data

    def id_for_label(self, id_: str) -> str:
        return f"{id_}_0" if id_ else id_

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        values = [str(item) for item in (value or [])]
        values += [""] * (self.count - len(values))
        base = context["widget"]["attrs"].get("id") or f"id_{name}"
        context["widget"]["inputs"] = [
            {"id": f"{base}_{index}", "value": item} for index, item in enumerate(values)
        ]
        context["widget"]["datalist_id"] = f"{base}_known"
        context["widget"]["choices"] = self.choices
        return context


class ModelsField(forms.Field):
    """The models to run: one to ``MAX_MODELS`` names, blanks dropped, in the order given."""

    widget = ModelInputs
    default_error_messages = {
        "required": _("Choose a model."),
        "too_many": _("Choose at most %(max)d models (got %(count)d)."),
        "too_long": _("A model name has at most 255 characters: %(model)s…"),
    }

    def to_python(self, value: Any) -> list[str]:
        items = value if isinstance(value, list | tuple) else [value] if value else []
        return [str(item).strip() for item in items if item is not None and str(item).strip()]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_MODELS:
            raise forms.ValidationError(
                self.error_messages["too_many"],
                code="too_many",
                params={"max": MAX_MODELS, "count": len(value)},
            )
        for model in value:
            if len(model) > 255:
                raise forms.ValidationError(
                    self.error_messages["too_long"], code="too_long", params={"model": model[:40]}
                )


class PlaygroundForm(PreviewForm):
    """The preview's variables (one input per name, plus JSON) and the models to run. Valid only
    when the version renders with the variables: a missing variable is an error on its input."""

    models = ModelsField(
        label=_("Model"),
        help_text=_(
            "The first box is the model to run; fill up to three more to compare models side by side."
        ),
    )

    def __init__(
        self, *args: Any, version: PromptVersion, names: list[str], known_models: list[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, names=names, versions=[version], **kwargs)
        del self.fields["version"]
        self.prompt_version = version
        self.fields["models"].widget.choices = known_models
        self.order_fields([*(f"var_{name}" for name in names), "json_variables", "models"])
        self.rendered: dict[str, Any] | None = None

    def clean(self) -> dict[str, Any]:
        super().clean()
        if "json_variables" not in self.errors:
            try:
                self.rendered = self.prompt_version.build(**self.variables())
            except PromptError as error:
                field = f"var_{error.variable}" if error.variable else None
                self.add_error(field if field in self.fields else None, str(error))
        return self.cleaned_data


def known_models(version: PromptVersion) -> list[str]:
    """The models the model inputs offer: the version's, the default model, then every model with a
    cost config."""
    configured = CostConfig.objects.order_by("model").values_list("model", flat=True).distinct()
    names = [version.model, app_settings.DEFAULT_MODEL, *configured]
    return list(dict.fromkeys(name for name in names if name))


# -- the page -------------------------------------------------------------------------------------


def playground_view(
    model_admin: ModelAdmin, request: HttpRequest, object_id: str, number: int
) -> HttpResponse:
    """The playground of version ``number`` of a prompt (``PromptAdmin.get_urls`` routes it): for
    staff who may view the prompt. A POST (CSRF-checked) runs the models and shows their answers."""
    prompt = model_admin.get_object(request, unquote(object_id))
    if prompt is None:
        raise Http404(_("No prompt with that id."))
    if not model_admin.has_view_permission(request, prompt):
        raise PermissionDenied
    try:
        version = prompt.version(number)
    except PromptError:
        raise Http404(_("No such version.")) from None
    names: list[str] = []
    error = None
    try:
        names = preview_variable_names(prompt, version)
    except PromptError as caught:  # a missing partial or a cycle: nothing can run until it is fixed
        error = str(caught)
    form = PlaygroundForm(
        request.POST if request.method == "POST" else None,
        version=version,
        names=names,
        known_models=known_models(version),
        initial={"models": [version.model or app_settings.DEFAULT_MODEL]},
    )
    answers: list[PlaygroundAnswer] = []
    if request.method == "POST" and error is None and form.is_valid():
        answers = run_playground(
            version, form.variables(), form.cleaned_data["models"], run_by=request.user.get_username()
        )
    opts = model_admin.opts
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "original": prompt,
        "prompt": prompt,
        "version": version,
        "title": _("%(slug)s — version %(n)d playground") % {"slug": prompt.slug, "n": number},
        "has_view_permission": True,
        "form": form,
        "error": error,
        "answers": answers,
        "rendered": form.rendered if answers else None,
        "max_models": MAX_MODELS,
    }
    return TemplateResponse(request, "admin/llm_agents/prompt/playground.html", context)
