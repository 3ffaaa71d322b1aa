"""The variables a prompt version is rendered with in the admin: one text input per name its messages
(and their partials) use, plus a JSON box. Shared by the preview and the playground."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from ..models import Prompt, PromptVersion
from ..models.prompts import resolve_partials
from ..prompts.rendering import variable_names


def preview_variable_names(prompt: Prompt, version: PromptVersion) -> list[str]:
    """The names the version's messages and their partials use, for the preview form."""
    templates = [message["content"] for message in version.messages]
    partials = resolve_partials(prompt.slug, templates)
    names: dict[str, None] = {}
    for template in [*templates, *partials.values()]:
        names.update(dict.fromkeys(variable_names(template)))
    return list(names)


class VariablesJSONField(forms.JSONField):
    """Optional JSON, shown empty (not ``null``) when none was given."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


class PreviewForm(forms.Form):
    """One text input per variable (left empty: not supplied), plus optional JSON for lists, objects
    and empty strings (JSON wins)."""

    version = forms.TypedChoiceField(coerce=int, label=_("Version"))
    json_variables = VariablesJSONField(
        required=False,
        label=_("Variables as JSON"),
        help_text=_(
            'Optional, for lists and objects: {"items": [{"name": "a"}]}. Overrides the fields above.'
        ),
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
    )

    def __init__(self, *args: Any, names: list[str], versions: list[PromptVersion], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["version"]).choices = [
            (v.number, f"v{v.number}") for v in versions
        ]
        self.names = names
        for name in names:
            self.fields[f"var_{name}"] = forms.CharField(
                required=False, label=name, strip=False, widget=forms.TextInput(attrs={"size": 60})
            )

    def clean_json_variables(self) -> dict[str, Any]:
        value = self.cleaned_data.get("json_variables")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(_("Give a JSON object."))
        return value

    def variables(self) -> dict[str, Any]:
        values = {}
        for name in self.names:
            value = self.cleaned_data.get(f"var_{name}")
            if value:
                values[name] = value
        values.update(self.cleaned_data.get("json_variables") or {})
        return values
