"""Field factories shared by the models, so money and tokens have one shape everywhere."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models


def money_field(**kwargs: Any) -> models.DecimalField:
    """US dollars, 8 decimal places (a single cached token of a cheap model is ~1e-8 USD)."""
    kwargs.setdefault("default", Decimal("0"))
    return models.DecimalField(max_digits=20, decimal_places=8, **kwargs)


def price_field(**kwargs: Any) -> models.DecimalField:
    """USD per million tokens."""
    return models.DecimalField(max_digits=14, decimal_places=6, **kwargs)


def token_field(**kwargs: Any) -> models.PositiveBigIntegerField:
    kwargs.setdefault("default", 0)
    return models.PositiveBigIntegerField(**kwargs)
