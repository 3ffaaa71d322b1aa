"""Query parameters shared by the API views, parsed in one place.

Each parser raises DRF's ``ValidationError`` keyed by the parameter, so a bad value answers 400
naming the parameter and, for a choice, the valid values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, overload

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

from ..periods import PERIODS, Period, check_day, custom_period, resolve_period

DEFAULT_AGGREGATE_PERIOD = "7d"


def _error(name: str, message: str) -> ValidationError:
    return ValidationError({name: [message]})


def parse_date(params: Mapping[str, Any], name: str) -> dt.date | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        day = dt.date.fromisoformat(str(value))
    except ValueError:
        raise _error(name, f"{value!r} is not an ISO date (YYYY-MM-DD).") from None
    try:
        return check_day(day)
    except ValueError as error:
        raise _error(name, str(error)) from None


@overload
def parse_period(params: Mapping[str, Any], default: str = ...) -> Period: ...
@overload
def parse_period(params: Mapping[str, Any], default: str | None) -> Period | None: ...
def parse_period(params: Mapping[str, Any], default: str | None = DEFAULT_AGGREGATE_PERIOD) -> Period | None:
    """The period named by ``period``, or the days ``start_date``..``end_date`` (both included),
    else ``default`` (None: all time). Giving both forms, or only one of the dates, is a 400."""
    name = params.get("period") or None
    start, end = parse_date(params, "start_date"), parse_date(params, "end_date")
    if name is not None and (start or end):
        raise _error("period", "Give either period or start_date and end_date, not both.")
    if start or end:
        if start is None:
            raise _error("start_date", "start_date is required with end_date.")
        if end is None:
            raise _error("end_date", "end_date is required with start_date.")
        if end < start:
            raise _error("end_date", f"end_date {end} is before start_date {start}.")
        return custom_period(start, end)
    name = name or default
    if name is None:
        return None
    if name not in PERIODS:
        raise _error("period", f"Unknown period {name!r}; valid periods are: {', '.join(PERIODS)}.")
    return resolve_period(name)


def parse_choice(params: Mapping[str, Any], name: str, choices: Sequence[str], default: str) -> str:
    value = params.get(name) or default
    if value not in choices:
        raise _error(name, f"Unknown {name} {value!r}; valid values are: {', '.join(choices)}.")
    return value


def parse_int(params: Mapping[str, Any], name: str, default: int, minimum: int, maximum: int) -> int:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise _error(name, f"{value!r} is not a whole number.") from None
    if not minimum <= number <= maximum:
        raise _error(name, f"{name} must be from {minimum} to {maximum}, not {number}.")
    return number


def parse_bool(params: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """``true`` or ``false`` (absent or empty: ``default``); anything else is a 400 naming the parameter."""
    value = params.get(name)
    if value in (None, ""):
        return default
    if value not in ("true", "false"):
        raise _error(name, f"Unknown {name} {value!r}; valid values are: true, false.")
    return value == "true"


def required(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        raise _error(name, f"{name} is required.")
    return str(value)


def period_parameters(default: str | None = DEFAULT_AGGREGATE_PERIOD) -> list[OpenApiParameter]:
    """The OpenAPI description of ``period``, ``start_date`` and ``end_date``."""
    fallback = f"Default {default}." if default else "Default: all time."
    return [
        OpenApiParameter(
            "period",
            OpenApiTypes.STR,
            enum=list(PERIODS),
            description=f"A named period (calendar periods in TIME_ZONE; 24h…90d end now). {fallback}",
        ),
        OpenApiParameter(
            "start_date",
            OpenApiTypes.DATE,
            description="First day included (with end_date, instead of period).",
        ),
        OpenApiParameter("end_date", OpenApiTypes.DATE, description="Last day included (with start_date)."),
    ]


INCLUDE_EVALS = "include_evals"


def include_evals_parameter() -> OpenApiParameter:
    """The OpenAPI description of ``include_evals`` (the aggregate endpoints)."""
    return OpenApiParameter(
        INCLUDE_EVALS,
        OpenApiTypes.BOOL,
        description="true: count the executions of evaluation runs too (default false: production only).",
    )
