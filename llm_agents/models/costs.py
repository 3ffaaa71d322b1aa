from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .fields import price_field


class CostConfig(models.Model):
    """A price for a model (or a pattern of models) over a span of time, in USD per million tokens."""

    class Source(models.TextChoices):
        MANUAL = "manual", _("manual")
        GENAI_PRICES = "genai_prices", _("genai-prices")

    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=255)
    match_pattern = models.CharField(
        max_length=255, blank=True, help_text=_("Optional regular expression matched against model ids.")
    )
    input_price_per_mtok = price_field()
    output_price_per_mtok = price_field()
    cached_input_price_per_mtok = price_field(
        null=True, blank=True, help_text=_("Empty: cached input tokens cost the input price.")
    )
    cache_write_price_per_mtok = price_field(
        null=True,
        blank=True,
        help_text=_("Empty: genai-prices' cache-write price for the model, else the input price."),
    )
    effective_from = models.DateTimeField(default=timezone.now)
    effective_until = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("cost config")
        ordering = ["model", "-effective_from"]
        indexes = [
            models.Index(fields=["model", "effective_from"], name="llm_costconfig_model_from_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    input_price_per_mtok__gte=0,
                    output_price_per_mtok__gte=0,
                )
                & (Q(cached_input_price_per_mtok__isnull=True) | Q(cached_input_price_per_mtok__gte=0))
                & (Q(cache_write_price_per_mtok__isnull=True) | Q(cache_write_price_per_mtok__gte=0)),
                name="llm_costconfig_prices_gte_0",
            ),
            models.CheckConstraint(
                condition=Q(effective_until__isnull=True) | Q(effective_until__gt=F("effective_from")),
                name="llm_costconfig_until_after_from",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"

    def clean(self) -> None:
        if self.match_pattern:
            try:
                re.compile(self.match_pattern)
            except re.error as exc:
                raise ValidationError({"match_pattern": f"Not a valid regular expression: {exc}"}) from exc
