"""Named time periods, resolved in ``settings.TIME_ZONE``.

Calendar periods (today, yesterday, this_week, this_month) run from local midnight to local
midnight; rolling periods (last_7_days, last_30_days, 24h, 7d, 30d, 90d) end now. Weeks start on
Monday.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

CALENDAR_PERIODS = ("today", "yesterday", "this_week", "this_month")
ROLLING_PERIODS = {
    "last_7_days": dt.timedelta(days=7),
    "last_30_days": dt.timedelta(days=30),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "90d": dt.timedelta(days=90),
}
PERIODS = (*CALENDAR_PERIODS, *ROLLING_PERIODS)
# The days whose local midnights exist in every time zone (a day's margin at each end of the calendar).
FIRST_DAY = dt.date.min + dt.timedelta(days=1)
LAST_DAY = dt.date.max - dt.timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """A half-open time range ``start <= t < end``; ``end`` None means "up to now"."""

    name: str
    start: dt.datetime
    end: dt.datetime | None

    def previous(self) -> Period:
        """The window of the same length just before this one (for "change since" figures)."""
        end = self.end or timezone.now()
        return Period(f"previous_{self.name}", self.start - (end - self.start), self.start)


def custom_period(first: dt.date, last: dt.date) -> Period:
    """Both days included, in ``TIME_ZONE`` (the API's ``start_date``/``end_date``)."""
    if last < first:
        raise ValueError(f"end date {last} is before start date {first}.")
    start, end = day_range(first, last)
    return Period("custom", start, end)


def local_now() -> dt.datetime:
    return timezone.localtime(timezone.now(), timezone.get_default_timezone())


def start_of_day(day: dt.date) -> dt.datetime:
    """Local midnight at the start of ``day`` as an aware datetime."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_default_timezone())


def check_day(day: dt.date) -> dt.date:
    """``day``, or ``ValueError`` when it is too close to the ends of the calendar to have a local
    midnight in every time zone."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day} is outside the supported dates, {FIRST_DAY} to {LAST_DAY}.")
    return day


def day_range(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Both days included: local midnight of ``first`` to local midnight after ``last``."""
    return start_of_day(check_day(first)), start_of_day(check_day(last) + dt.timedelta(days=1))


def resolve_period(name: str, now: dt.datetime | None = None) -> Period:
    """Return the :class:`Period` called ``name``; an unknown name raises ``ValueError``."""
    now = timezone.localtime(now or timezone.now(), timezone.get_default_timezone())
    today = now.date()
    if name in ROLLING_PERIODS:
        return Period(name, now - ROLLING_PERIODS[name], None)
    if name == "today":
        start, end = day_range(today, today)
    elif name == "yesterday":
        yesterday = today - dt.timedelta(days=1)
        start, end = day_range(yesterday, yesterday)
    elif name == "this_week":
        start, end = day_range(*calendar_days(today)["weekly"])
    elif name == "this_month":
        start, end = day_range(*calendar_days(today)["monthly"])
    else:
        raise ValueError(f"Unknown period {name!r}; valid periods are: {', '.join(PERIODS)}.")
    return Period(name, start, end)


def calendar_days(today: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """The first and last local day (both included) of the daily, weekly and monthly periods that
    contain ``today``, by name. Weeks start on Monday. The one rule for calendar periods: named
    periods, budget periods (``Budget.period_days_range``) and the PostgreSQL budget check, which
    receives these days as parameters."""
    monday = today - dt.timedelta(days=today.weekday())
    first = today.replace(day=1)
    return {
        "daily": (today, today),
        "weekly": (monday, monday + dt.timedelta(days=6)),
        "monthly": (first, last_day_of_month(first)),
    }


def last_day_of_month(day: dt.date) -> dt.date:
    next_month = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return next_month - dt.timedelta(days=1)
