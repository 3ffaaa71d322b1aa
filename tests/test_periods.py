"""Named periods: calendar periods in TIME_ZONE, rolling windows ending now, between()."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from llm_agents.models import Execution
from llm_agents.periods import PERIODS, resolve_period

from .factories import ExecutionFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC


def ids(queryset):
    return set(queryset.values_list("pk", flat=True))


# -- resolve_period with a fixed "now" ---------------------------------------------------------


def test_today_in_paris_is_local_midnight_to_local_midnight(paris):
    period = resolve_period("today", now=dt.datetime(2026, 11, 25, 0, 30, tzinfo=UTC))  # 01:30 in Paris
    assert period.start == dt.datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    assert period.end == dt.datetime(2026, 11, 25, 23, 0, tzinfo=UTC)


def test_today_uses_the_local_date_not_the_utc_date(paris):
    # 23:30 UTC on the 24th is already the 25th in Paris.
    period = resolve_period("today", now=dt.datetime(2026, 11, 24, 23, 30, tzinfo=UTC))
    assert period.start == dt.datetime(2026, 11, 25, 0, 0, tzinfo=PARIS)


def test_today_on_a_daylight_saving_day_lasts_23_hours(paris):
    period = resolve_period("today", now=dt.datetime(2026, 3, 29, 12, 0, tzinfo=PARIS))
    assert period.start == dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert period.end == dt.datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


def test_yesterday(paris):
    period = resolve_period("yesterday", now=dt.datetime(2026, 12, 1, 8, 0, tzinfo=PARIS))
    assert period.start == dt.datetime(2026, 11, 30, 0, 0, tzinfo=PARIS)
    assert period.end == dt.datetime(2026, 12, 1, 0, 0, tzinfo=PARIS)


@pytest.mark.parametrize(
    "now",
    [
        dt.datetime(2026, 11, 23, 0, 0, tzinfo=PARIS),  # Monday, first instant
        dt.datetime(2026, 11, 25, 15, 0, tzinfo=PARIS),  # Wednesday
        dt.datetime(2026, 11, 29, 23, 59, 59, tzinfo=PARIS),  # Sunday, last second
    ],
)
def test_this_week_starts_on_monday(paris, now):
    period = resolve_period("this_week", now=now)
    assert period.start == dt.datetime(2026, 11, 23, 0, 0, tzinfo=PARIS)
    assert period.end == dt.datetime(2026, 11, 30, 0, 0, tzinfo=PARIS)


def test_this_month(paris):
    period = resolve_period("this_month", now=dt.datetime(2026, 2, 14, 9, 0, tzinfo=PARIS))
    assert period.start == dt.datetime(2026, 2, 1, 0, 0, tzinfo=PARIS)
    assert period.end == dt.datetime(2026, 3, 1, 0, 0, tzinfo=PARIS)


def test_this_month_in_december_ends_in_january(paris):
    period = resolve_period("this_month", now=dt.datetime(2026, 12, 31, 23, 0, tzinfo=PARIS))
    assert period.start == dt.datetime(2026, 12, 1, 0, 0, tzinfo=PARIS)
    assert period.end == dt.datetime(2027, 1, 1, 0, 0, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("name", "length"),
    [
        ("last_7_days", dt.timedelta(days=7)),
        ("last_30_days", dt.timedelta(days=30)),
        ("24h", dt.timedelta(hours=24)),
        ("7d", dt.timedelta(days=7)),
        ("30d", dt.timedelta(days=30)),
        ("90d", dt.timedelta(days=90)),
    ],
)
def test_rolling_periods_end_now(name, length):
    now = dt.datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC)
    period = resolve_period(name, now=now)
    assert period.start == now - length
    assert period.end is None


def test_unknown_period_names_the_valid_ones():
    with pytest.raises(ValueError) as excinfo:
        resolve_period("fortnight")
    message = str(excinfo.value)
    assert "fortnight" in message
    for name in (
        "today",
        "yesterday",
        "this_week",
        "this_month",
        "last_7_days",
        "last_30_days",
        "24h",
        "7d",
        "30d",
        "90d",
    ):
        assert name in message
    assert len(PERIODS) == 10


# -- the time scopes against rows in the database ---------------------------------------------


def test_today_and_yesterday_split_at_local_midnight(paris):
    today = local_today()
    yesterday = today - dt.timedelta(days=1)
    last_second_of_yesterday = ExecutionFactory(started_at=local_datetime(yesterday, 23, 59, 59))
    first_second_of_today = ExecutionFactory(started_at=local_datetime(today, 0, 0, 0))
    start_of_yesterday = ExecutionFactory(started_at=local_datetime(yesterday, 0, 0, 0))
    day_before = ExecutionFactory(started_at=local_datetime(yesterday, 0, 0, 0) - dt.timedelta(seconds=1))

    assert ids(Execution.objects.today()) == {first_second_of_today.pk}
    assert ids(Execution.objects.yesterday()) == {last_second_of_yesterday.pk, start_of_yesterday.pk}
    assert day_before.pk not in ids(Execution.objects.yesterday())


def test_local_midnight_in_paris_is_not_utc_midnight(paris):
    today = local_today()
    row = ExecutionFactory(started_at=local_datetime(today, 0, 0, 0))
    # Paris is ahead of UTC, so local midnight is still the previous day in UTC.
    assert timezone.localtime(row.started_at, dt.UTC).date() == today - dt.timedelta(days=1)
    assert ids(Execution.objects.today()) == {row.pk}
    assert ids(Execution.objects.yesterday()) == set()


def test_this_week_starts_monday_local(paris):
    today = local_today()
    monday = today - dt.timedelta(days=today.weekday())
    first_of_week = ExecutionFactory(started_at=local_datetime(monday, 0, 0, 0))
    last_of_previous_week = ExecutionFactory(
        started_at=local_datetime(monday, 0, 0, 0) - dt.timedelta(seconds=1)
    )
    now_row = ExecutionFactory(started_at=timezone.now())

    assert ids(Execution.objects.this_week()) == {first_of_week.pk, now_row.pk}
    assert last_of_previous_week.pk not in ids(Execution.objects.this_week())


def test_this_month_starts_on_the_first_local(paris):
    first = local_today().replace(day=1)
    first_of_month = ExecutionFactory(started_at=local_datetime(first, 0, 0, 0))
    end_of_last_month = ExecutionFactory(started_at=local_datetime(first, 0, 0, 0) - dt.timedelta(seconds=1))

    assert ids(Execution.objects.this_month()) == {first_of_month.pk}
    assert end_of_last_month.pk not in ids(Execution.objects.this_month())


@pytest.mark.parametrize(
    ("scope", "days"),
    [("last_7_days", 7), ("last_30_days", 30)],
)
def test_rolling_scopes_end_now(scope, days):
    now = timezone.now()
    inside = ExecutionFactory(started_at=now - dt.timedelta(days=days) + dt.timedelta(minutes=1))
    outside = ExecutionFactory(started_at=now - dt.timedelta(days=days) - dt.timedelta(minutes=1))
    recent = ExecutionFactory(started_at=now - dt.timedelta(seconds=1))

    assert ids(getattr(Execution.objects, scope)()) == {inside.pk, recent.pk}
    assert outside.pk not in ids(getattr(Execution.objects, scope)())


def test_last_n_days():
    now = timezone.now()
    inside = ExecutionFactory(started_at=now - dt.timedelta(days=3) + dt.timedelta(minutes=1))
    ExecutionFactory(started_at=now - dt.timedelta(days=3) - dt.timedelta(minutes=1))

    assert ids(Execution.objects.last_n_days(3)) == {inside.pk}


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_last_n_days_rejects_anything_but_a_positive_whole_number(bad):
    with pytest.raises(ValueError):
        Execution.objects.last_n_days(bad)


def test_between_dates_includes_both_days(paris):
    first = dt.date(2026, 3, 10)
    last = dt.date(2026, 3, 12)
    before = ExecutionFactory(started_at=dt.datetime(2026, 3, 9, 23, 59, 59, tzinfo=PARIS))
    start = ExecutionFactory(started_at=dt.datetime(2026, 3, 10, 0, 0, 0, tzinfo=PARIS))
    middle = ExecutionFactory(started_at=dt.datetime(2026, 3, 11, 12, 0, 0, tzinfo=PARIS))
    last_second = ExecutionFactory(started_at=dt.datetime(2026, 3, 12, 23, 59, 59, tzinfo=PARIS))
    after = ExecutionFactory(started_at=dt.datetime(2026, 3, 13, 0, 0, 0, tzinfo=PARIS))

    result = ids(Execution.objects.between(first, last))
    assert result == {start.pk, middle.pk, last_second.pk}
    assert before.pk not in result
    assert after.pk not in result


def test_between_the_same_date_is_that_whole_day(paris):
    day = dt.date(2026, 3, 10)
    row = ExecutionFactory(started_at=dt.datetime(2026, 3, 10, 23, 30, tzinfo=PARIS))
    ExecutionFactory(started_at=dt.datetime(2026, 3, 11, 0, 0, tzinfo=PARIS))
    assert ids(Execution.objects.between(day, day)) == {row.pk}


def test_between_datetimes_is_half_open():
    start = dt.datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    end = dt.datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    at_start = ExecutionFactory(started_at=start)
    inside = ExecutionFactory(started_at=end - dt.timedelta(microseconds=1))
    at_end = ExecutionFactory(started_at=end)
    ExecutionFactory(started_at=start - dt.timedelta(microseconds=1))

    result = ids(Execution.objects.between(start, end))
    assert result == {at_start.pk, inside.pk}
    assert at_end.pk not in result


def test_between_refuses_a_date_and_a_datetime():
    with pytest.raises(ValueError):
        Execution.objects.between(dt.date(2026, 3, 10), dt.datetime(2026, 3, 11, tzinfo=UTC))
