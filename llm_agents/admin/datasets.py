"""The executions list's action "Add to dataset…" (SPEC section 17): an intermediate page choosing
an existing dataset or naming a new one, then ``dataset.add_executions(selected)``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import Dataset

PREVIEW_ROWS = 10


class AddToDatasetForm(forms.Form):
    """An existing dataset, or the slug (and name) of a new one."""

    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.all(),
        required=False,
        label=_("Existing dataset"),
        empty_label=_("— a new dataset —"),
    )
    slug = forms.SlugField(max_length=100, required=False, label=_("New dataset's slug"))
    name = forms.CharField(max_length=255, required=False, label=_("New dataset's name"))

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        dataset, slug = cleaned.get("dataset"), cleaned.get("slug")
        if dataset is not None and slug:
            self.add_error("slug", _("Choose an existing dataset or give a new slug, not both."))
        elif dataset is None and not slug and "slug" not in self.errors:
            self.add_error("dataset", _("Choose a dataset, or give a slug to create one."))
        elif slug and Dataset.objects.filter(slug=slug).exists():
            self.add_error(
                "slug", _("A dataset with slug %(slug)r exists; choose it above.") % {"slug": slug}
            )
        return cleaned

    def dataset_to_fill(self) -> Dataset:
        """The chosen dataset, or the new one (created here)."""
        chosen: Dataset | None = self.cleaned_data["dataset"]
        if chosen is not None:
            return chosen
        slug = self.cleaned_data["slug"]
        return Dataset.objects.create(slug=slug, name=self.cleaned_data["name"] or slug)


@admin.action(description=_("Add to dataset…"), permissions=["add_to_dataset"])
def add_to_dataset(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
    """Copy the selected executions into a dataset (their parameters as input, their response as
    the expected output), after a page that chooses it."""
    form = AddToDatasetForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        with transaction.atomic():
            dataset = form.dataset_to_fill()
            items = dataset.add_executions(queryset.defer(None).order_by("started_at"))
        model_admin.message_user(
            request,
            format_html(
                gettext("Added {} executions to the dataset {}."),
                len(items),
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:llm_agents_dataset_change", args=[dataset.pk]),
                    dataset,
                ),
            ),
            messages.SUCCESS,
        )
        return None
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Add executions to a dataset"),
        "opts": opts,
        "app_label": opts.app_label,
        "form": form,
        "count": queryset.count(),
        "preview": list(queryset.order_by("-started_at")[:PREVIEW_ROWS]),
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "action": "add_to_dataset",
    }
    return TemplateResponse(request, "admin/llm_agents/execution/add_to_dataset.html", context)
