"""The budgets' PostgreSQL fast paths (llm_agents.db.fastpaths) give the rows and results of their
portable ORM twins on the same data.

Each test runs the portable path on every database and checks what it did; on PostgreSQL it then
rebuilds the same data, runs the fast path, and checks that it did exactly the same.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import DEFAULT_DB_ALIAS, connection

from llm_agents.db import fastpaths
from llm_agents.models import Budget, BudgetReservation, SpendCounter

from .factories import BudgetFactory, local_datetime

pytestmark = pytest.mark.django_db

WEDNESDAY = dt.date(2026, 4, 15)  # the week runs from Monday the 13th, the month from the 1st
AGENT, TENANT, MODEL = "PlanAgent", "acme", "gpt-parity"
RESERVATION_ID = uuid.UUID("00000000-0000-0000-0000-00000000c0de")


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def paths(portable, fast):
    """The portable path, then, on PostgreSQL, the fast path."""
    return [portable, fast] if on_postgresql() else [portable]


def counters() -> set[tuple[str, str, dt.date, Decimal, int]]:
    return set(SpendCounter.objects.values_list("scope", "scope_value", "day", "spend", "tokens"))


def reservations() -> set[tuple[uuid.UUID, str, str, str, Decimal, int, dt.datetime, dt.datetime]]:
    return set(
        BudgetReservation.objects.values_list(
            "id", "agent_type", "tenant_id", "model", "amount", "tokens", "created_at", "expires_at"
        )
    )


def spend(scope: str, value: str, day: dt.date, amount: str, tokens: int = 100) -> None:
    SpendCounter.objects.create(scope=scope, scope_value=value, day=day, spend=Decimal(amount), tokens=tokens)


def day(month: int, number: int) -> dt.date:
    return dt.date(2026, month, number)


# -- the budget check ---------------------------------------------------------------------------


def spend_around_wednesday() -> None:
    """Counters just inside and just outside each period of WEDNESDAY, under every key of the call
    and under keys of other calls; reservations live and expired, of this call's scopes and others'."""
    now = local_datetime(WEDNESDAY, 10)
    for scope, value in [("global", ""), ("agent", AGENT), ("tenant", TENANT), ("model", MODEL)]:
        spend(scope, value, day(3, 31), "100")  # the month before
        spend(scope, value, day(4, 1), "1")  # the month's first day
        spend(scope, value, day(4, 12), "10")  # the Sunday before the week
        spend(scope, value, day(4, 13), "2")  # Monday
        spend(scope, value, day(4, 14), "3")  # yesterday
        spend(scope, value, WEDNESDAY, "4")
        spend(scope, value, day(4, 16), "0.5")  # tomorrow (spend recorded with a later ``at``)
    spend("agent", "OtherAgent", WEDNESDAY, "1000")
    spend("tenant", "beta", WEDNESDAY, "1000")
    hour = dt.timedelta(hours=1)
    for agent_type, tenant_id, model, expires_at in [
        (AGENT, "", "", now + hour),
        ("OtherAgent", TENANT, "", now + hour),
        ("OtherAgent", "beta", MODEL, now + hour),
        ("OtherAgent", "beta", "gpt-other", now + hour),
        (AGENT, TENANT, MODEL, now),  # expired: expires_at is not after now
    ]:
        BudgetReservation.objects.create(
            agent_type=agent_type, tenant_id=tenant_id, model=model, amount=Decimal("0.25"), tokens=7,
            created_at=now - hour, expires_at=expires_at,
        )  # fmt: skip


def budgets_of_every_period(limits: dict[str, Decimal], token_limit: int | None = None) -> dict[str, Budget]:
    found = {
        "global monthly": BudgetFactory(period=Budget.Period.MONTHLY),
        "agent weekly": BudgetFactory(scope="agent", scope_value=AGENT, period=Budget.Period.WEEKLY),
        "tenant daily": BudgetFactory(scope="tenant", scope_value=TENANT, period=Budget.Period.DAILY),
        "model rolling": BudgetFactory(
            scope="model",
            scope_value=MODEL,
            period=Budget.Period.ROLLING,
            period_days=3,
            token_limit=token_limit,
        ),  # fmt: skip
    }
    for name, budget in found.items():
        budget.limit_usd = limits.get(name, Decimal("1000"))
        budget.save()
    # Never counted: a warning budget, an inactive one, another agent's.
    BudgetFactory(enforcement=Budget.Enforcement.WARNING, limit_usd=Decimal("0"))
    BudgetFactory(is_active=False, limit_usd=Decimal("0"))
    BudgetFactory(scope="agent", scope_value="OtherAgent", limit_usd=Decimal("0"))
    return found


# The periods' spend on WEDNESDAY (see spend_around_wednesday) and the reservations of calls in flight:
#   global monthly  (04-01..04-30) 1 + 10 + 2 + 3 + 4 + 0.5 = 20.5, 600 tokens; reserved 4 × 0.25, 28 tokens
#   agent weekly    (04-13..04-19) 2 + 3 + 4 + 0.5 = 9.5, 400 tokens; reserved 0.25, 7 tokens
#   tenant daily    (04-15) 4, 100 tokens; reserved 0.25, 7 tokens
#   model rolling   (3 days: 04-13..04-15) 2 + 3 + 4 = 9, 300 tokens; reserved 0.25, 7 tokens
EXPECTED = {
    "global monthly": (Decimal("20.5"), 600, Decimal("1")),
    "agent weekly": (Decimal("9.5"), 400, Decimal("0.25")),
    "tenant daily": (Decimal("4"), 100, Decimal("0.25")),
    "model rolling": (Decimal("9"), 300, Decimal("0.25")),
}


def check(path, agent_type: str = AGENT, tenant_id: str = TENANT, model: str = MODEL):
    now = local_datetime(WEDNESDAY, 10)
    row = BudgetReservation(
        id=RESERVATION_ID, agent_type=agent_type, tenant_id=tenant_id, model=model,
        created_at=now, expires_at=now + dt.timedelta(hours=1),
    )  # fmt: skip
    outcome = path(DEFAULT_DB_ALIAS, row, lambda: (Decimal("1.5"), 40), WEDNESDAY)
    refused = [(budget.pk, spent, tokens, reserved) for budget, spent, tokens, reserved in outcome.refused]
    return (outcome.applies, outcome.held, refused, row.amount, row.tokens), reservations()


@pytest.mark.parametrize(
    ("limits", "token_limit", "refusing"),
    [
        ({}, None, []),
        ({"global monthly": Decimal("21.5")}, None, ["global monthly"]),  # 20.5 + 1 reserved reach it
        ({"global monthly": Decimal("21.51")}, None, []),
        (
            {"agent weekly": Decimal("9.75"), "tenant daily": Decimal("4.25")},
            None,
            ["agent weekly", "tenant daily"],
        ),
        ({"agent weekly": Decimal("9.76"), "tenant daily": Decimal("4.26")}, None, []),
        ({"model rolling": Decimal("9.25")}, None, ["model rolling"]),
        ({}, 307, ["model rolling"]),  # the token limit: 300 + 7 reserved
        ({}, 308, []),
    ],
)
def test_the_check_finds_the_same_spend_and_holds_the_same_reservation(limits, token_limit, refusing):
    spend_around_wednesday()
    found = budgets_of_every_period(limits, token_limit)
    before = reservations()
    results = []
    for path in paths(fastpaths.check_and_reserve, fastpaths.check_and_reserve_postgresql):
        outcome, rows = check(path)
        results.append((outcome, rows))
        BudgetReservation.objects.filter(pk=RESERVATION_ID).delete()
        assert reservations() == before
    expected_refused = [(found[name].pk, *EXPECTED[name]) for name in refusing]
    outcome, rows = results[0]
    assert outcome == (True, not refusing, sorted(expected_refused), Decimal("1.5"), 40)
    now = local_datetime(WEDNESDAY, 10)
    held = {(RESERVATION_ID, AGENT, TENANT, MODEL, Decimal("1.5"), 40, now, now + dt.timedelta(hours=1))}
    assert rows == (before | held if not refusing else before)
    assert all(result == results[0] for result in results)


@pytest.mark.parametrize(("warning", "applies"), [(True, True), (False, False)])
def test_a_check_without_a_hard_stop_holds_nothing(warning, applies):
    """(The estimate is a parameter of PostgreSQL's one statement, so that path always makes it; the
    portable one only when a hard stop applies. Nothing is held either way.)"""
    spend_around_wednesday()
    BudgetFactory(scope="agent", scope_value="OtherAgent", limit_usd=Decimal("0"))  # not this call's
    if warning:
        BudgetFactory(enforcement=Budget.Enforcement.WARNING, limit_usd=Decimal("0"))
    before = reservations()
    for path in paths(fastpaths.check_and_reserve, fastpaths.check_and_reserve_postgresql):
        (found, held, refused, _, _), rows = check(path)
        assert (found, held, refused, rows) == (applies, False, [], before)


# -- the spend write ----------------------------------------------------------------------------


def counters_of_a_day() -> None:
    spend("global", "", WEDNESDAY, "1.25", 10)
    spend("agent", AGENT, WEDNESDAY, "0.5", 5)
    spend("model", MODEL, day(4, 14), "7", 70)  # another day: untouched
    now = local_datetime(WEDNESDAY, 10)
    for reservation_id in (RESERVATION_ID, uuid.uuid4()):
        BudgetReservation.objects.create(
            id=reservation_id, agent_type=AGENT, amount=Decimal("2"), tokens=9, created_at=now,
            expires_at=now + dt.timedelta(hours=1),
        )  # fmt: skip


ENTRIES = [
    ("global", "", Decimal("0.12345678"), 30),
    ("agent", AGENT, Decimal("0.12345678"), 30),
    ("tenant", TENANT, Decimal("0.12345678"), 30),
    ("model", MODEL, Decimal("0.1"), 20),
    ("model", "gpt-cheap", Decimal("0.02345678"), 10),
    ("model", "gpt-free", Decimal("0"), 0),  # nothing to add: no row
]


@pytest.mark.parametrize("release", [RESERVATION_ID, None])
def test_the_spend_write_adds_the_same_counters_and_drops_the_same_reservation(release):
    applying_budgets = [
        BudgetFactory(),
        BudgetFactory(scope=Budget.Scope.AGENT, scope_value=AGENT, enforcement=Budget.Enforcement.WARNING),
        BudgetFactory(scope=Budget.Scope.MODEL, scope_value="gpt-cheap"),
    ]
    BudgetFactory(scope=Budget.Scope.AGENT, scope_value=AGENT, is_active=False)
    BudgetFactory(scope=Budget.Scope.AGENT, scope_value="OtherAgent")
    BudgetFactory(scope=Budget.Scope.MODEL, scope_value="gpt-free")
    results = []
    for path in paths(fastpaths.add_spend, fastpaths.add_spend_postgresql):
        SpendCounter.objects.all().delete()
        BudgetReservation.objects.all().delete()
        counters_of_a_day()
        before = reservations()
        applying = path(DEFAULT_DB_ALIAS, ENTRIES, WEDNESDAY, release)
        results.append((counters(), before - reservations(), applying))
    expected_counters = {
        ("global", "", WEDNESDAY, Decimal("1.37345678"), 40),
        ("agent", AGENT, WEDNESDAY, Decimal("0.62345678"), 35),
        ("tenant", TENANT, WEDNESDAY, Decimal("0.12345678"), 30),
        ("model", MODEL, WEDNESDAY, Decimal("0.1"), 20),
        ("model", MODEL, day(4, 14), Decimal("7"), 70),
        ("model", "gpt-cheap", WEDNESDAY, Decimal("0.02345678"), 10),
    }
    counted, dropped, applying = results[0]
    assert counted == expected_counters
    assert {row[0] for row in dropped} == ({release} if release else set())
    # The active budgets of the keys added to, in order: not the inactive one, nor another agent's,
    # nor the model whose entry added nothing.
    assert applying == [budget.pk for budget in applying_budgets]
    assert all(result == results[0] for result in results)


def test_a_spend_write_of_nothing_changes_nothing():
    for path in paths(fastpaths.add_spend, fastpaths.add_spend_postgresql):
        SpendCounter.objects.all().delete()
        BudgetReservation.objects.all().delete()
        counters_of_a_day()
        before = (counters(), reservations())
        assert path(DEFAULT_DB_ALIAS, [("global", "", Decimal("0"), 0)], WEDNESDAY, None) == []
        assert (counters(), reservations()) == before
