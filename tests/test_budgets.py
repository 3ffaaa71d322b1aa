"""Budgets through Agent.call and llm_agents.budgets: scopes, periods, enforcement, alerts, counters."""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from llm_agents import Agent, Param, Tool, budgets, signals, tenant, trace
from llm_agents.errors import BudgetExceededError
from llm_agents.models import Budget, BudgetReservation, CostConfig, Execution, Span, SpendCounter
from llm_agents.testing import fake_llm

from .factories import BudgetFactory, ExecutionFactory, SpanFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db

MODEL = "gpt-budget"


@pytest.fixture(autouse=True)
def price(db):
    """$1,000 per million input tokens and $2,000 per million output tokens: 1,000 in + 500 out = $2."""
    CostConfig.objects.create(
        model=MODEL,
        input_price_per_mtok=Decimal("1000"),
        output_price_per_mtok=Decimal("2000"),
        effective_from="2020-01-01T00:00Z",
    )


class PlanAgent(Agent):
    model = MODEL
    max_tokens = 100
    retry_backoff = 0
    topic = Param(required=True)

    def user_prompt(self):
        return f"Plan {self.topic}"


class OtherAgent(PlanAgent):
    pass


class CachedAgent(PlanAgent):
    cache_ttl = 60


def call(agent: type[Agent] = PlanAgent, *, cost_usd: int = 2, **params):
    """One call answered for ``cost_usd`` dollars (500 input + 250 output tokens per dollar)."""
    with fake_llm() as llm:
        llm.respond("ok", input_tokens=500 * cost_usd, output_tokens=250 * cost_usd)
        result = agent.call(topic=params.pop("topic", "x"), **params)
    return result, llm


class Received:
    """Collects what a signal sends."""

    def __init__(self, signal):
        self.calls: list[dict] = []
        self.signal = signal

    def __call__(self, sender, **payload):
        self.calls.append({"sender": sender, **payload})

    def __enter__(self):
        self.signal.connect(self, weak=False)
        return self

    def __exit__(self, *exc):
        self.signal.disconnect(self)


def counter_totals() -> dict[tuple[str, str, dt.date], tuple[Decimal, int]]:
    return {(c.scope, c.scope_value, c.day): (c.spend, c.tokens) for c in SpendCounter.objects.all()}


# -- scopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "value", "blocked", "free"),
    [
        ("global", "", {}, None),
        ("agent", "PlanAgent", {}, {"agent": OtherAgent}),
        ("tenant", "acme", {"tenant": "acme"}, {"tenant": "beta"}),
        ("model", MODEL, {}, {"model": "gpt-other"}),
    ],
)
def test_a_hard_stop_refuses_calls_of_its_scope_only(scope, value, blocked, free):
    CostConfig.objects.create(model="gpt-other", input_price_per_mtok=Decimal("1000"),
                              output_price_per_mtok=Decimal("2000"), effective_from="2020-01-01T00:00Z")  # fmt: skip
    BudgetFactory(scope=scope, scope_value=value, limit_usd=Decimal("3"), period=Budget.Period.DAILY)

    def run(options):
        options = dict(options or {})
        agent = options.pop("agent", PlanAgent)
        if "model" in options:
            agent = type("OtherModelAgent", (PlanAgent,), {"model": options["model"]})
        scope = tenant(options["tenant"]) if "tenant" in options else contextlib.nullcontext()
        with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}), scope:
            return call(agent)

    run(blocked)
    run(blocked)  # $2 spent < $3: allowed, reaching $4
    with pytest.raises(BudgetExceededError):
        run(blocked)
    if free is not None:
        result, llm = run(free)
        assert result.content == "ok" and len(llm.calls) == 1


def test_a_budget_counts_spend_recorded_outside_agent_calls():
    budget = BudgetFactory(scope=Budget.Scope.AGENT, scope_value="nightly", limit_usd=Decimal("1"))
    budgets.record("nightly", Decimal("0.75"), 300, model="gpt-4o")
    budgets.record("other", Decimal("5"), 300)
    assert budget.current_spend() == Decimal("0.75")
    assert budget.current_tokens() == 300
    assert budget.percent_used() == 75.0
    assert budget.remaining() == Decimal("0.25")
    assert BudgetFactory(scope=Budget.Scope.MODEL, scope_value="gpt-4o").current_spend() == Decimal("0.75")
    assert BudgetFactory(limit_usd=Decimal("10")).current_spend() == Decimal("5.75")


def test_inactive_budgets_do_not_apply():
    BudgetFactory(limit_usd=Decimal("0"), is_active=False)
    result, _ = call()
    assert result.content == "ok"


def test_token_limit_is_enforced_like_the_dollar_limit():
    BudgetFactory(limit_usd=Decimal("1000"), token_limit=2000)
    call()  # 1,000 + 500 tokens
    call()  # 3,000 tokens now
    with pytest.raises(BudgetExceededError, match="2000 tokens"):
        call()


# -- periods ------------------------------------------------------------------------------------


def test_spend_at_235959_and_000000_lands_on_two_days(paris, frozen_now):
    day = local_today()
    before, after = local_datetime(day, 23, 59, 59), local_datetime(day + dt.timedelta(days=1), 0, 0, 0)
    budgets.record("PlanAgent", Decimal("1"), 10, at=before)
    budgets.record("PlanAgent", Decimal("2"), 20, at=after)
    daily = BudgetFactory(period=Budget.Period.DAILY, limit_usd=Decimal("1"))

    assert SpendCounter.objects.get(scope="global", day=day).spend == Decimal("1")
    assert SpendCounter.objects.get(scope="global", day=day + dt.timedelta(days=1)).spend == Decimal("2")
    frozen_now(before + dt.timedelta(milliseconds=500))
    assert daily.current_spend() == Decimal("1")
    with pytest.raises(BudgetExceededError):  # $1 of $1 spent today
        budgets.check("PlanAgent")
    frozen_now(after + dt.timedelta(milliseconds=500))
    assert daily.current_spend() == Decimal("2")
    daily.limit_usd = Decimal("3")
    daily.save()
    assert budgets.check("PlanAgent") is not None  # a new day: only the 00:00:00 spend counts


def test_the_same_boundary_rebuilt_from_executions(paris):
    day = local_today() - dt.timedelta(days=1)
    ExecutionFactory(started_at=local_datetime(day, 23, 59, 59), input_cost=Decimal("1"), output_cost=0)
    ExecutionFactory(
        started_at=local_datetime(day + dt.timedelta(days=1), 0, 0, 0), input_cost=Decimal("2"), output_cost=0
    )
    budgets.rebuild_counters()
    assert SpendCounter.objects.get(scope="global", day=day).spend == Decimal("1")
    assert SpendCounter.objects.get(scope="global", day=day + dt.timedelta(days=1)).spend == Decimal("2")


def test_weeks_start_on_monday_and_months_on_the_first(frozen_now):
    wednesday = dt.date(2026, 4, 1)  # a Wednesday, first of the month
    frozen_now(local_datetime(wednesday, 12))
    budgets.record("a", Decimal("1"), 1, at=local_datetime(dt.date(2026, 3, 30), 0))  # Monday, March
    budgets.record("a", Decimal("2"), 1, at=local_datetime(dt.date(2026, 3, 29), 23, 59, 59))  # Sunday
    budgets.record("a", Decimal("4"), 1, at=local_datetime(wednesday, 0))
    assert BudgetFactory(period=Budget.Period.WEEKLY).current_spend() == Decimal("5")
    assert BudgetFactory(period=Budget.Period.MONTHLY).current_spend() == Decimal("4")
    assert BudgetFactory(period=Budget.Period.ROLLING, period_days=3).current_spend() == Decimal("5")
    assert BudgetFactory(period=Budget.Period.ROLLING, period_days=4).current_spend() == Decimal("7")


WEDNESDAY = dt.date(2026, 4, 15)  # the week runs from Monday the 13th, the rolling week from the 9th


@pytest.mark.parametrize(
    ("period", "period_days", "spent", "refused"),
    [
        (Budget.Period.DAILY, None, (WEDNESDAY, 0, 0, 0), True),
        (Budget.Period.DAILY, None, (dt.date(2026, 4, 14), 23, 59, 59), False),  # yesterday
        (Budget.Period.WEEKLY, None, (dt.date(2026, 4, 14), 12), True),  # yesterday, Tuesday
        (Budget.Period.WEEKLY, None, (dt.date(2026, 4, 13), 0, 0, 0), True),  # Monday
        (Budget.Period.WEEKLY, None, (dt.date(2026, 4, 12), 23, 59, 59), False),  # Sunday
        (Budget.Period.MONTHLY, None, (dt.date(2026, 4, 14), 12), True),  # yesterday
        (Budget.Period.MONTHLY, None, (dt.date(2026, 4, 1), 0, 0, 0), True),
        (Budget.Period.MONTHLY, None, (dt.date(2026, 3, 31), 23, 59, 59), False),
        (Budget.Period.ROLLING, 7, (dt.date(2026, 4, 14), 12), True),  # yesterday
        (Budget.Period.ROLLING, 7, (dt.date(2026, 4, 9), 0, 0, 0), True),  # 7th day back
        (Budget.Period.ROLLING, 7, (dt.date(2026, 4, 8), 23, 59, 59), False),  # 8th day back
    ],
)
def test_a_hard_stop_refuses_a_call_when_its_period_holds_the_spend(
    paris, frozen_now, period, period_days, spent, refused
):
    """The limit spent (at the local ``(day, hour, minute, second)`` given) from the first local day
    of the period refuses a call made through Agent.call; spent just before it, the call goes ahead.
    In Europe/Paris, where local midnight is not UTC midnight."""
    frozen_now(local_datetime(WEDNESDAY, 10))
    budgets.record("PlanAgent", Decimal("2"), 10, at=local_datetime(*spent))
    BudgetFactory(period=period, period_days=period_days, limit_usd=Decimal("2"))
    if refused:
        with fake_llm() as llm, pytest.raises(BudgetExceededError, match=f"{period} spend \\$2"):
            PlanAgent.call(topic="x")
        assert llm.calls == []
    else:
        result, llm = call()
        assert result.content == "ok" and len(llm.calls) == 1


def test_forecast_projects_the_run_rate_to_the_period_end(frozen_now):
    noon = frozen_now(local_datetime(dt.date(2026, 4, 15), 12))  # half a day into a daily budget
    budgets.record("a", Decimal("3"), 10, at=noon - dt.timedelta(hours=1))
    forecast = BudgetFactory(period=Budget.Period.DAILY, limit_usd=Decimal("5")).forecast()
    assert forecast.spend == Decimal("3")
    assert forecast.projected_spend == Decimal("6")
    assert forecast.projected_percent == 120.0
    assert forecast.will_exceed
    assert forecast.period_end - forecast.period_start == dt.timedelta(days=1)


def test_percent_used_of_a_zero_limit():
    budget = BudgetFactory(limit_usd=Decimal("0"))
    assert budget.percent_used() == 0.0
    budgets.record("a", Decimal("0.01"), 1)
    assert budget.percent_used() == 100.0
    assert budget.remaining() == Decimal("0")


# -- enforcement --------------------------------------------------------------------------------


def test_warning_budgets_never_block_and_say_so_once_per_period():
    BudgetFactory(enforcement=Budget.Enforcement.WARNING, limit_usd=Decimal("3"), period=Budget.Period.DAILY)
    with Received(signals.budget_exceeded) as exceeded:
        for _ in range(4):
            assert call()[0].content == "ok"
    assert len(exceeded.calls) == 1
    assert exceeded.calls[0]["enforcement"] == "warning"
    assert exceeded.calls[0]["spend"] == Decimal("4")
    assert exceeded.calls[0]["sender"] is PlanAgent


def test_hard_stops_say_so_on_every_refused_call():
    budget = BudgetFactory(limit_usd=Decimal("2"))
    call()
    with Received(signals.budget_exceeded) as exceeded:
        for _ in range(3):
            with pytest.raises(BudgetExceededError) as excinfo:
                call()
    assert excinfo.value.budget == budget and excinfo.value.limit == Decimal("2")
    assert [c["enforcement"] for c in exceeded.calls] == ["hard_stop"] * 3
    assert exceeded.calls[0]["spend"] == Decimal("2") and exceeded.calls[0]["agent_type"] == "PlanAgent"


def test_a_blocked_call_is_recorded_and_never_reaches_the_provider():
    BudgetFactory(limit_usd=Decimal("0"))
    with fake_llm() as llm, pytest.raises(BudgetExceededError):
        PlanAgent.call(topic="x")
    assert llm.calls == []
    execution = Execution.objects.get()
    assert execution.status == "error"
    assert execution.error_class == "BudgetExceededError"
    assert execution.chosen_model_id == execution.model_id == MODEL
    assert execution.total_cost == 0 and execution.attempts_count == 0
    assert not Span.objects.exists()
    assert not SpendCounter.objects.exists()
    assert not BudgetReservation.objects.exists()


def test_a_refused_call_counts_as_a_budget_refusal_not_a_model_error(staff_client):
    BudgetFactory(limit_usd=Decimal("0"))
    with fake_llm(), pytest.raises(BudgetExceededError):
        PlanAgent.call(topic="x")
    # Before: counted under "other", as if the model had failed.
    categories = Execution.objects.error_analysis()["categories"]
    assert categories["budget"] == 1 and sum(categories.values()) == 1
    api = staff_client.get("/api/llm-agents/errors/").json()
    assert api["categories"]["budget"] == 1 and api["categories"]["other"] == 0
    dashboard = staff_client.get(reverse("admin:llm_agents_dashboard"), {"period": "7d"})
    assert [(g["category"], g["count"]) for g in dashboard.context["error_groups"]] == [("budget", 1)]
    executions = staff_client.get(
        reverse("admin:llm_agents_execution_changelist"), {"error_category": "budget"}
    )
    assert executions.context["cl"].result_count == 1


def test_alert_fires_once_per_period(frozen_now):
    day = dt.date(2026, 4, 15)
    frozen_now(local_datetime(day, 10))
    BudgetFactory(period=Budget.Period.DAILY, limit_usd=Decimal("10"), alert_at_percentage=50,
                  enforcement=Budget.Enforcement.WARNING)  # fmt: skip
    with Received(signals.budget_alert) as alerts:
        for _ in range(4):
            budgets.record("a", Decimal("2"), 1, at=local_datetime(day, 10))
        assert [a["spend"] for a in alerts.calls] == [Decimal("6")]
        assert alerts.calls[0]["percent_used"] == 60.0 and alerts.calls[0]["limit"] == Decimal("10")
        frozen_now(local_datetime(day + dt.timedelta(days=1), 10))
        for _ in range(4):
            budgets.record("a", Decimal("2"), 1, at=local_datetime(day + dt.timedelta(days=1), 10))
    assert [a["spend"] for a in alerts.calls] == [Decimal("6"), Decimal("6")]


def test_an_alert_claimed_elsewhere_is_not_sent_again():
    """Two processes holding the same stale budget: the conditional UPDATE lets one of them send."""
    budget = BudgetFactory(period=Budget.Period.DAILY)
    stale_copies = [Budget.objects.get(pk=budget.pk) for _ in range(2)]
    today = local_today()
    claims = [budgets._claim(copy, "alerted_on", today, today) for copy in stale_copies]
    assert claims == [True, False]


def test_budget_checked_and_recorded_signals():
    BudgetFactory()
    with Received(signals.budget_checked) as checked, Received(signals.budget_recorded) as recorded:
        call()
    assert [(c["sender"], c["agent_type"], c["tenant_id"]) for c in checked.calls] == [
        (PlanAgent, "PlanAgent", None)
    ]
    assert len(recorded.calls) == 1
    assert recorded.calls[0]["total_cost"] == Decimal("2") and recorded.calls[0]["total_tokens"] == 1500


# -- reservations -------------------------------------------------------------------------------


def test_calls_in_flight_count_but_not_against_themselves():
    BudgetFactory(limit_usd=Decimal("1"))
    first = budgets.check("a", estimated_cost=Decimal("5"))  # more than the limit: still allowed
    assert first is not None and BudgetReservation.objects.get().amount == Decimal("5")
    with pytest.raises(BudgetExceededError, match=r"plus \$5\.00000000 reserved"):
        budgets.check("a", estimated_cost=Decimal("0.01"))
    first.settle(Decimal("0.5"), 100)
    assert not BudgetReservation.objects.exists()
    second = budgets.check("a", estimated_cost=Decimal("0.01"))
    second.release()
    second.settle(Decimal("9"), 1)  # after release: nothing more is recorded
    assert SpendCounter.objects.get(scope="global").spend == Decimal("0.5")


def test_the_estimate_is_prompt_characters_over_4_plus_max_tokens():
    cost, tokens = budgets.estimate_call(MODEL, [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Plan abcd"}], 100)  # fmt: skip
    assert tokens == 5 + 100  # 18 characters -> 5 tokens (rounded up)
    assert cost == Decimal("0.005") + Decimal("0.2")
    assert budgets.estimate_call(MODEL, [{"role": "user", "content": ""}], None) == (Decimal("8.192"), 4096)


def test_the_reservation_is_held_while_the_call_runs():
    """A tool runs between two provider requests of the call: the call's estimate is reserved then."""
    BudgetFactory(limit_usd=Decimal("100"))
    held = []

    class Peek(Tool):
        name = "peek"
        description = "Look at the reservations"

        def run(self):
            held.extend(BudgetReservation.objects.values_list("amount", "tokens", "agent_type", "model"))
            return "seen"

    class Probe(Agent):
        model = MODEL
        max_tokens = 1000
        tools = [Peek]

        def user_prompt(self):
            return "x" * 400  # 100 tokens

    with fake_llm() as llm:
        llm.respond(tool_calls=[{"name": "peek", "arguments": {}}], input_tokens=10, output_tokens=10)
        llm.respond("done", input_tokens=10, output_tokens=10)
        Probe.call()
    assert held == [(Decimal("2.1"), 1100, "Probe", MODEL)]  # 100 x $0.001 + 1,000 x $0.002
    assert not BudgetReservation.objects.exists()


def test_expired_reservations_do_not_count():
    BudgetFactory(limit_usd=Decimal("1"))
    now = timezone.now()
    BudgetReservation.objects.create(
        agent_type="a", amount=Decimal("5"), expires_at=now - dt.timedelta(seconds=1)
    )
    assert budgets.check("a") is not None
    assert budgets.rebuild_counters().expired_reservations == 1


def test_reservations_are_held_released_once_and_expire():
    now = timezone.now()
    held = BudgetReservation.objects.hold(
        BudgetReservation(
            agent_type="a", amount=Decimal("1"), created_at=now, expires_at=now + dt.timedelta(hours=1)
        )
    )
    lapsed = BudgetReservation.objects.create(agent_type="a", amount=Decimal("1"), expires_at=now)
    assert list(BudgetReservation.objects.live(now)) == [held]
    assert list(BudgetReservation.objects.expired(now)) == [lapsed]
    assert BudgetReservation.objects.release(held.id) is True
    assert BudgetReservation.objects.release(held.id) is False
    assert list(BudgetReservation.objects.all()) == [lapsed]


def test_the_budgets_applying_to_a_call():
    applying = {
        BudgetFactory(),
        BudgetFactory(scope=Budget.Scope.AGENT, scope_value="PlanAgent"),
        BudgetFactory(scope=Budget.Scope.TENANT, scope_value="acme"),
        BudgetFactory(scope=Budget.Scope.MODEL, scope_value=MODEL),
        BudgetFactory(enforcement=Budget.Enforcement.WARNING),
    }
    other_model = BudgetFactory(scope=Budget.Scope.MODEL, scope_value="gpt-other")
    BudgetFactory(is_active=False)
    BudgetFactory(scope=Budget.Scope.AGENT, scope_value="OtherAgent")
    BudgetFactory(scope=Budget.Scope.TENANT, scope_value="beta")
    found = Budget.objects.applying_to(agent_type="PlanAgent", tenant_id="acme", model=MODEL)
    assert set(found) == applying
    assert {b.scope for b in Budget.objects.applying_to(agent_type="PlanAgent")} == {"global", "agent"}
    several = Budget.objects.applying_to(agent_type="PlanAgent", tenant_id="acme", model=[MODEL, "gpt-other"])
    assert set(several) == applying | {other_model}


# -- what counts --------------------------------------------------------------------------------


def test_cache_hits_are_free_and_served_even_over_budget():
    budget = BudgetFactory(limit_usd=Decimal("2"))
    call(CachedAgent, topic="same")
    assert budget.current_spend() == Decimal("2")
    with Received(signals.budget_checked) as checked:
        result, llm = call(CachedAgent, topic="same")  # the budget is used up, but this is a hit
    assert result.cached and llm.calls == [] and checked.calls == []
    assert budget.current_spend() == Decimal("2")
    with pytest.raises(BudgetExceededError):
        call(CachedAgent, topic="different")


def test_nested_agents_and_traces_count_each_call_once():
    class Helper(Agent):
        model = MODEL
        question = Param(required=True)

        def user_prompt(self):
            return self.question

    class Boss(Agent):
        model = MODEL
        tools = [Helper]

        def user_prompt(self):
            return "delegate"

    with fake_llm() as llm, trace("nightly"):
        llm.respond(tool_calls=[{"name": "Helper", "arguments": {"question": "q"}}], input_tokens=500,
                    output_tokens=250)  # fmt: skip  # $1
        llm.respond("sub", input_tokens=1000, output_tokens=500)  # $2, the Helper's
        llm.respond("done", input_tokens=2000, output_tokens=1000)  # $4
        Boss.call()
    root = Execution.objects.get(parent=None)
    assert root.agent_type == "nightly" and root.total_cost == Decimal("7")
    today = local_today()
    assert SpendCounter.objects.get(scope="global", day=today).spend == Decimal("7")
    assert SpendCounter.objects.get(scope="agent", scope_value="Boss").spend == Decimal("5")
    assert SpendCounter.objects.get(scope="agent", scope_value="Helper").spend == Decimal("2")
    assert not SpendCounter.objects.filter(scope="agent", scope_value="nightly").exists()
    live = counter_totals()
    budgets.rebuild_counters()
    assert counter_totals() == live


def test_counters_equal_the_sums_of_recorded_costs():
    with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}):
        for n, (who, agent) in enumerate([("acme", PlanAgent), ("beta", OtherAgent), ("acme", OtherAgent)]):
            with tenant(who):
                call(agent, cost_usd=n + 1)
        with fake_llm() as llm:
            llm.fail("server_error")
            with pytest.raises(Exception):  # noqa: B017  (a failed call costs nothing here)
                PlanAgent.call(topic="y")
    live = counter_totals()
    roots = Execution.objects.filter(parent=None)
    today = local_today()
    assert live[("global", "", today)] == (
        roots.aggregate(s=Sum("total_cost"))["s"],
        roots.aggregate(s=Sum("total_tokens"))["s"],
    )
    for who in ("acme", "beta"):
        assert (
            live[("tenant", who, today)][0] == roots.filter(tenant_id=who).aggregate(s=Sum("total_cost"))["s"]
        )
    assert live[("agent", "OtherAgent", today)][0] == Decimal("5")
    assert live[("model", MODEL, today)][0] == Decimal("6")
    budgets.rebuild_counters()
    assert counter_totals() == live


def test_model_counters_count_each_requests_spend_under_the_model_that_answered():
    """A fallback's spend goes to the fallback model, a failed first try's tokens to the primary;
    rebuild_counters attributes the same way."""
    CostConfig.objects.create(model="gpt-fallback", input_price_per_mtok=Decimal("1000"),
                              output_price_per_mtok=Decimal("2000"), effective_from="2020-01-01T00:00Z")  # fmt: skip

    class FallbackAgent(PlanAgent):
        retries = 0
        fallback_models = ["gpt-fallback"]

    with fake_llm() as llm:
        llm.fail("server_error", model=MODEL)
        llm.respond("ok", model="gpt-fallback", input_tokens=1000, output_tokens=500)  # $2
        FallbackAgent.call(topic="x")
    today = local_today()
    live = counter_totals()
    # Before: the $2 counted under MODEL (the configured model) as well as under gpt-fallback.
    assert ("model", MODEL, today) not in live
    assert live[("model", "gpt-fallback", today)] == (Decimal("2"), 1500)
    assert live[("agent", "FallbackAgent", today)] == (Decimal("2"), 1500)
    budgets.rebuild_counters()
    assert counter_totals() == live


def test_rebuilt_model_counters_split_an_executions_spend_by_its_spans():
    """Rows written without the live settlement (a host's ORM writes): each llm span's spend under its
    model, the rest of the execution's under its chosen model, nested executions counted once."""
    root = ExecutionFactory(model_id=MODEL, chosen_model_id="", input_cost=Decimal("5"), output_cost=0,
                            total_tokens=500, agent_type="Writer")  # fmt: skip
    SpanFactory(execution=root, model_id="gpt-a", total_cost=Decimal("1"), input_tokens=100, output_tokens=0)
    SpanFactory(execution=root, model_id="", total_cost=Decimal("0.5"), input_tokens=50, output_tokens=0)
    child = ExecutionFactory(parent=root, model_id="gpt-b", input_cost=Decimal("2"), output_cost=0,
                             total_tokens=200, agent_type="Helper")  # fmt: skip
    SpanFactory(execution=child, model_id="gpt-b", total_cost=Decimal("2"), input_tokens=200, output_tokens=0)
    budgets.rebuild_counters()
    today = local_today()
    totals = counter_totals()
    assert totals[("model", "gpt-a", today)] == (Decimal("1"), 100)
    assert totals[("model", "gpt-b", today)] == (Decimal("2"), 200)
    # Its own $3 (of $5, $2 being the child's): $1 on gpt-a, the rest ($0.5 span + $1.5) on MODEL.
    assert totals[("model", MODEL, today)] == (Decimal("2"), 200)
    assert totals[("agent", "Writer", today)] == (Decimal("3"), 300)
    assert totals[("global", "", today)] == (Decimal("5"), 500)


def test_async_logging_records_spend_once():
    with override_settings(LLM_AGENTS={"ASYNC_LOGGING": True}):
        call()
        call()
    assert Execution.objects.count() == 2
    assert SpendCounter.objects.get(scope="global").spend == Decimal("4")


@pytest.mark.django_db(transaction=True)
def test_spend_is_not_lost_when_the_caller_rolls_back(price):
    """The counters agree with the executions table after the caller's transaction rolls back (on
    PostgreSQL both survive it; on SQLite both join it)."""
    with pytest.raises(RuntimeError), transaction.atomic():
        call()
        raise RuntimeError("caller's own failure")
    live = counter_totals()
    budgets.rebuild_counters()
    assert counter_totals() == live
    assert bool(live) == Execution.objects.exists()


def test_budgets_disabled_checks_and_records_nothing():
    BudgetFactory(limit_usd=Decimal("0"))
    with override_settings(LLM_AGENTS={"BUDGETS_ENABLED": False}):
        assert call()[0].content == "ok"
        assert budgets.check("a") is None
    assert not SpendCounter.objects.exists()


def test_record_refuses_negative_spend():
    with pytest.raises(ValueError, match="negative"):
        budgets.record("a", Decimal("-1"), 0)


# -- rebuilding ---------------------------------------------------------------------------------


def test_rebuild_repairs_drifted_counters():
    call()
    call(OtherAgent, cost_usd=3)
    live = counter_totals()
    SpendCounter.objects.update(spend=Decimal("999"), tokens=1)
    SpendCounter.objects.create(scope="agent", scope_value="Ghost", day=local_today(), spend=Decimal("1"))
    result = budgets.rebuild_counters()
    assert counter_totals() == live
    assert result.counters == len(live)


def test_rebuild_since_a_day_leaves_earlier_days_alone():
    today = local_today()
    old_day = today - dt.timedelta(days=10)
    ExecutionFactory(started_at=local_datetime(old_day, 12), input_cost=Decimal("1"), output_cost=0)
    ExecutionFactory(started_at=local_datetime(today, 0, 0, 1), input_cost=Decimal("2"), output_cost=0)
    budgets.rebuild_counters()
    SpendCounter.objects.update(spend=Decimal("50"))
    budgets.rebuild_counters(since=today - dt.timedelta(days=1), chunk_days=1)
    assert SpendCounter.objects.get(scope="global", day=old_day).spend == Decimal("50")
    assert SpendCounter.objects.get(scope="global", day=today).spend == Decimal("2")


def test_a_check_never_reads_the_executions_table(django_assert_max_num_queries):
    BudgetFactory(limit_usd=Decimal("1000"))
    ExecutionFactory.create_batch(30)
    with django_assert_max_num_queries(8) as queries:
        budgets.check("a", estimated_cost=Decimal("1"))
    assert not any("llm_agents_execution" in q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_a_check_survives_a_session_that_lost_its_prepared_statements(price):
    """A pooler resetting the server session (PostgreSQL): the check falls back to the whole statement."""
    from django.db import connection

    BudgetFactory(limit_usd=Decimal("1"))
    first = budgets.check("a", estimated_cost=Decimal("0.5"))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
    second = budgets.check("a", estimated_cost=Decimal("0.5"))
    assert first is not None and second is not None
    with pytest.raises(BudgetExceededError):
        budgets.check("a", estimated_cost=Decimal("0.5"))
    assert BudgetReservation.objects.count() == 2
    first.release()
    second.release()
