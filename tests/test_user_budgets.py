"""Budgets of scope ``user`` (SPEC section 19): the end user of ``session(user_id=)``, ``trace(user_id=)``
or ``_user_id`` has a budget of their own, enforced on agent calls and on raw SDK calls alike, while
other users (and calls with no user) go on."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import openai
import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from llm_agents import budgets, session, signals, trace
from llm_agents.errors import BudgetExceededError
from llm_agents.models import Budget, BudgetReservation, CostConfig, Execution, SpendCounter
from llm_agents.testing import fake_llm
from tests.api_support import API
from tests.factories import BudgetFactory, ExecutionFactory, local_today
from tests.fake_servers import FakeServer, openai_chat
from tests.test_budgets import MODEL, PlanAgent, Received, call

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def price(db):
    """$1,000 per million input tokens and $2,000 per million output tokens, for the agent's model
    and for gpt-4o (raw SDK calls): 1,000 in + 500 out = $2."""
    for model in (MODEL, "gpt-4o"):
        CostConfig.objects.create(
            model=model,
            input_price_per_mtok=Decimal("1000"),
            output_price_per_mtok=Decimal("2000"),
            effective_from="2020-01-01T00:00Z",
        )


def user_spend(user_id: str) -> tuple[Decimal, int] | None:
    counter = SpendCounter.objects.filter(scope="user", scope_value=user_id, day=local_today()).first()
    return None if counter is None else (counter.spend, counter.tokens)


def user_budget(user_id: str = "u-7", limit: str = "3", **values) -> Budget:
    return BudgetFactory(scope=Budget.Scope.USER, scope_value=user_id, limit_usd=Decimal(limit), **values)


# -- spend and the hard stop -----------------------------------------------------------------------


def test_a_call_spends_under_its_users_key_and_a_call_without_a_user_under_none():
    call(_user_id="u-7")
    with session("conv-1", user_id="u-8"):
        call()
    call()  # no end user
    assert user_spend("u-7") == (Decimal("2"), 1500)
    assert user_spend("u-8") == (Decimal("2"), 1500)
    assert SpendCounter.objects.filter(scope="user").count() == 2
    assert SpendCounter.objects.get(scope="global").spend == Decimal("6")


def test_a_user_over_their_budget_is_refused_while_other_users_go_on():
    budget = user_budget("u-7", limit="3")
    call(_user_id="u-7")  # $2 of $3
    call(_user_id="u-7")  # $4: the limit is reached, but the call was let through before it
    with fake_llm() as llm, pytest.raises(BudgetExceededError) as refused:
        PlanAgent.call(topic="x", _user_id="u-7")
    assert llm.calls == []  # refused before any provider request
    assert refused.value.budget == budget and refused.value.spend == Decimal("4")
    assert "$4" in str(refused.value) and budget.name in str(refused.value)
    # Other users, and calls with no user, are not counted under u-7's budget.
    for user in ("u-8", None):
        result, _ = call(_user_id=user) if user else call()
        assert result.execution.status == "success"
    refusal = Execution.objects.get(status="error")
    assert (refusal.user_id, refusal.error_class) == ("u-7", "BudgetExceededError")
    assert budget.current_spend() == Decimal("4") and budget.percent_used() == 133.33
    assert not BudgetReservation.objects.exists()


def test_the_user_comes_from_the_session_and_from_the_enclosing_trace():
    user_budget("u-7", limit="1")
    call(_user_id="u-7")  # $2: over
    with session("conv-1", user_id="u-7"), pytest.raises(BudgetExceededError):
        call()
    with trace("Pipeline", user_id="u-7"), pytest.raises(BudgetExceededError):
        call()  # nested: inherits the trace's user
    with session("conv-1", user_id="u-9"):
        call()
    assert Execution.objects.filter(error_class="BudgetExceededError").count() == 2


def test_a_warning_user_budget_never_blocks_and_signals_carry_the_user():
    budget = user_budget("u-7", limit="3", enforcement=Budget.Enforcement.WARNING, alert_at_percentage=50)
    with (
        Received(signals.budget_exceeded) as exceeded,
        Received(signals.budget_alert) as alerted,
        Received(signals.budget_checked) as checked,
        Received(signals.budget_recorded) as recorded,
    ):
        for _ in range(3):
            call(_user_id="u-7")
    assert Execution.objects.filter(status="success").count() == 3
    assert [(c["budget"], c["user_id"], c["spend"]) for c in exceeded.calls] == [
        (budget, "u-7", Decimal("4"))
    ]
    assert [(c["budget"], c["percent_used"]) for c in alerted.calls] == [(budget, 66.67)]
    assert {c["user_id"] for c in checked.calls} == {c["user_id"] for c in recorded.calls} == {"u-7"}


def test_refusals_signal_the_user():
    budget = user_budget("u-7", limit="0")
    with Received(signals.budget_exceeded) as exceeded, pytest.raises(BudgetExceededError):
        call(_user_id="u-7")
    assert [(c["budget"], c["user_id"], c["enforcement"]) for c in exceeded.calls] == [
        (budget, "u-7", "hard_stop")
    ]


def test_a_reservation_counts_against_its_users_budget_only():
    user_budget("u-7", limit="3")
    held = budgets.check("PlanAgent", model=MODEL, user_id="u-7", estimated_cost="3")
    assert held is not None and BudgetReservation.objects.get().user_id == "u-7"
    # $3 held by u-7's call in flight reaches u-7's limit: u-7's next check is refused, u-8's is not.
    with pytest.raises(BudgetExceededError, match=r"plus \$3\.00000000 reserved"):
        budgets.check("PlanAgent", model=MODEL, user_id="u-7", estimated_cost="0.6")
    assert budgets.check("PlanAgent", model=MODEL, user_id="u-8", estimated_cost="0.6") is None  # no budget
    held.settle(Decimal("1"), 100)
    assert not BudgetReservation.objects.exists()
    assert user_spend("u-7") == (Decimal("1"), 100)
    assert budgets.check("PlanAgent", model=MODEL, user_id="u-7", estimated_cost="0.6") is not None


def test_record_counts_spend_made_outside_an_agent_call_for_a_user():
    budget = user_budget("u-7", limit="10")
    budgets.record("Importer", "2.5", 10, user_id="u-7")
    budgets.record("Importer", "1", 10)
    assert budget.current_usage() == (Decimal("2.5"), 10)


# -- raw SDK calls ---------------------------------------------------------------------------------


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def ask(server: FakeServer) -> None:
    openai.OpenAI(api_key="test", base_url=server.root + "/v1", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=10
    )


def test_a_raw_sdk_call_is_checked_against_the_sessions_users_budget(server):
    user_budget("u-7", limit="1")
    server.enqueue(openai_chat("Hello", model="gpt-4o", prompt_tokens=1000, completion_tokens=500))  # $2
    with override_settings(LLM_AGENTS={"AUTO_INSTRUMENT": True}):
        with session("conv-1", user_id="u-7"):
            ask(server)  # $2 of $1: let through, now over
            with pytest.raises(BudgetExceededError):
                ask(server)
        server.enqueue(openai_chat("Hello", model="gpt-4o", prompt_tokens=1000, completion_tokens=500))
        with trace("Pipeline", user_id="u-8"):
            ask(server)  # another user, inside a trace
    assert len(server.requests_to("/v1/chat/completions")) == 2
    assert user_spend("u-7") == (Decimal("2"), 1500)
    assert user_spend("u-8") == (Decimal("2"), 1500)
    refused = Execution.objects.get(error_class="BudgetExceededError")
    assert (refused.kind, refused.user_id) == ("llm", "u-7")


# -- the budget's executions, matching budgets, rebuilding -------------------------------------------


def test_applying_to_and_executions_of_a_user_budget():
    budget = user_budget("u-7")
    other = user_budget("u-8")
    everyone = BudgetFactory()
    assert set(Budget.objects.applying_to(agent_type="PlanAgent", user_id="u-7")) == {budget, everyone}
    assert set(Budget.objects.applying_to(agent_type="PlanAgent")) == {everyone}
    assert set(Budget.objects.applying_to(agent_type="PlanAgent", user_id="")) == {everyone}
    mine = ExecutionFactory(user_id="u-7")
    ExecutionFactory(user_id="u-8")
    ExecutionFactory(user_id="u-7", started_at=timezone.now() - dt.timedelta(days=40))  # another period
    assert list(budget.executions()) == [mine]
    assert other.executions().count() == 1


def test_rebuilding_restores_the_user_counters():
    call(_user_id="u-7")
    with trace("Pipeline", user_id="u-8"):
        call()
    before = sorted(SpendCounter.objects.values_list("scope", "scope_value", "spend", "tokens"))
    assert ("user", "u-7", Decimal("2"), 1500) in before and ("user", "u-8", Decimal("2"), 1500) in before
    SpendCounter.objects.all().delete()
    budgets.rebuild_counters()
    after = sorted(SpendCounter.objects.values_list("scope", "scope_value", "spend", "tokens"))
    assert after == before


def test_a_user_budget_needs_a_user_id():
    with pytest.raises(ValidationError) as error:
        Budget(name="u", scope=Budget.Scope.USER, scope_value="", limit_usd=Decimal("1")).full_clean()
    assert error.value.message_dict["scope_value"] == ["A user budget needs a scope value."]
    assert not Budget.objects.exists()


# -- admin and API -------------------------------------------------------------------------------


def test_the_api_creates_and_filters_user_budgets(staff_client):
    response = staff_client.post(
        API + "budgets/",
        {"name": "Per user", "scope": "user", "scope_value": "u-7", "limit_usd": "5"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["scope"] == "user"
    call(_user_id="u-7")
    listed = staff_client.get(API + "budgets/", {"scope": "user"}).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [(row["scope_value"], row["current_spend"], row["percent_used"]) for row in rows] == [
        ("u-7", "2.00000000", 40.0)
    ]
    missing = staff_client.post(
        API + "budgets/",
        {"name": "No user", "scope": "user", "limit_usd": "5"},
        content_type="application/json",
    )
    assert missing.status_code == 400 and "scope_value" in missing.json()
    assert Budget.objects.count() == 1


def test_the_admin_lists_and_adds_user_budgets(staff_client):
    budget = user_budget("u-7", limit="4")
    call(_user_id="u-7")
    changelist = staff_client.get(reverse("admin:llm_agents_budget_changelist"), {"scope__exact": "user"})
    html = changelist.content.decode()
    assert changelist.status_code == 200 and "u-7" in html and "50.00%" in html
    form = staff_client.get(reverse("admin:llm_agents_budget_add")).content.decode()
    assert '<option value="user">end user</option>' in form
    assert staff_client.get(reverse("admin:llm_agents_budget_change", args=[budget.pk])).status_code == 200
