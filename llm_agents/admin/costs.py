"""Cost configs: prices per model over time, validated so two never overlap."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Q

from ..models import CostConfig


class CostConfigForm(forms.ModelForm):
    class Meta:
        model = CostConfig
        fields = [
            "provider",
            "model",
            "match_pattern",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "cached_input_price_per_mtok",
            "cache_write_price_per_mtok",
            "effective_from",
            "effective_until",
            "source",
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("effective_from"), data.get("effective_until")
        if start and end and end <= start:
            raise ValidationError({"effective_until": "Must be after effective from."})
        model, provider = data.get("model"), data.get("provider", "")
        if model and start:
            overlapping = CostConfig.objects.filter(model=model, provider=provider,
                                                    match_pattern=data.get("match_pattern", ""))  # fmt: skip
            if self.instance.pk:
                overlapping = overlapping.exclude(pk=self.instance.pk)
            overlapping = overlapping.filter(Q(effective_until__isnull=True) | Q(effective_until__gt=start))
            if end is not None:
                overlapping = overlapping.filter(effective_from__lt=end)
            other = overlapping.order_by("effective_from").first()
            if other is not None:
                until = f"{other.effective_until:%Y-%m-%d %H:%M}" if other.effective_until else "no end"
                raise ValidationError(
                    f"{model} already has a price from {other.effective_from:%Y-%m-%d %H:%M} to {until} that "
                    "overlaps this one. End that one first (set its effective until), or change these dates."
                )
        return data


@admin.register(CostConfig)
class CostConfigAdmin(admin.ModelAdmin):
    form = CostConfigForm
    list_display = [
        "model",
        "provider",
        "match_pattern",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "cached_input_price_per_mtok",
        "cache_write_price_per_mtok",
        "effective_from",
        "effective_until",
        "source",
    ]
    list_filter = ["provider", "source", "effective_from", "effective_until"]
    search_fields = ["model", "match_pattern"]
    date_hierarchy = "effective_from"
