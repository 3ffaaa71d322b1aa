"""Argument parsing shared by the management commands."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError
from django.utils.dateparse import parse_date


def parse_day(value: str, option: str) -> dt.date:
    """A ``YYYY-MM-DD`` option value as a date; anything else is a :class:`CommandError` naming ``option``."""
    try:
        day = parse_date(value)
    except ValueError:
        day = None
    if day is None:
        raise CommandError(f"{option} must be a date as YYYY-MM-DD, not {value!r}.")
    return day
