"""Figures as the admin pages show them: money, durations, counts, changes between periods."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.utils.formats import number_format
from django.utils.text import Truncator


def format_cost(value: Decimal | float | None) -> str:
    value = float(value or 0)
    places = 2 if abs(value) >= 10 or value == 0 else 4
    return "$" + number_format(value, places, force_grouping=True)


def format_ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{number_format(round(value), 0, force_grouping=True)} ms"


def format_count(value: float | None) -> str:
    value = float(value or 0)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit * 10:
            return f"{value / limit:.1f}{suffix}".replace(".0", "")
    return number_format(round(value), 0, force_grouping=True)


def change(current: float | Decimal | None, previous: float | Decimal | None) -> float | None:
    """Percentage change from ``previous`` to ``current``; None when there is nothing to compare."""
    if current is None or previous is None or not previous:
        return None
    return round((float(current) - float(previous)) * 100 / float(previous), 1)


def pretty(value: Any) -> str:
    """JSON pretty-printed (a string stays as it is)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def shown_json(value: Any, limit: int | None = 300) -> str:
    """:func:`pretty` of a JSON value (None: nothing), cut to ``limit`` characters (None: whole)."""
    if value is None:
        return ""
    text = pretty(value)
    return Truncator(text).chars(limit) if limit else text
