"""Batch API results: priced at genai-prices' batch price where it has one, else at the standard
price × ``BATCH_DISCOUNT``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

from ..conf import app_settings

if TYPE_CHECKING:
    from genai_prices.types import PriceCalculation

#: The genai-prices request context that selects a model's batch price variant.
BATCH_CONTEXT = {"processing": "batch"}


def has_batch_price(calculation: PriceCalculation, at: dt.datetime) -> bool:
    """Whether genai-prices has a batch price for the calculated model at ``at``.

    genai-prices applies price variants only to a provider's own models, and only while the variant's
    constraint (usually a start date) holds.
    """
    model, provider = calculation.model, calculation.provider
    if not any(model is candidate for candidate in provider.models):
        return False
    for variant in model.price_variants or ():
        if variant.constraint is not None and not variant.constraint.active(at):
            continue
        if any(BATCH_CONTEXT.get(key) != value for key, value in variant.when.items()):
            continue
        if any(price is not None for price in vars(variant.prices).values()):
            return True
    return False


def batch_discount() -> Decimal:
    return Decimal(str(app_settings.BATCH_DISCOUNT))
