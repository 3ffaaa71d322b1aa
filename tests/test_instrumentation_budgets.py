"""Hard stops cover every tracked call (SPEC section 15): with AUTO_INSTRUMENT a raw SDK call is checked
against its budgets before the request is sent, and its spend settles its reservation when it ends.
Driven with the real openai SDK against the fake server."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest
from django.test import override_settings

from llm_agents import budgets, trace
from llm_agents.errors import BudgetExceededError
from llm_agents.models import BudgetReservation, CostConfig, Execution, Span, SpendCounter
from tests.factories import BudgetFactory, local_today
from tests.fake_servers import FakeServer, openai_chat, openai_chat_stream

pytestmark = pytest.mark.django_db

ON = {"AUTO_INSTRUMENT": True}
MESSAGES = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def prices(db):
    """gpt-4o at $1,000 per million input tokens and $2,000 per million output tokens: 1,000 + 500 = $2."""
    CostConfig.objects.create(model="gpt-4o", input_price_per_mtok=Decimal("1000"),
                              output_price_per_mtok=Decimal("2000"), effective_from="2020-01-01T00:00Z")  # fmt: skip


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def client(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.root + "/v1", max_retries=0)


def ask(server: FakeServer, **arguments) -> openai.types.chat.ChatCompletion:
    return client(server).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=10, **arguments
    )


def answer(server: FakeServer) -> None:
    server.enqueue(openai_chat("Hello", model="gpt-4o", prompt_tokens=1000, completion_tokens=500))  # $2


def spend(scope: str, value: str = "") -> tuple[Decimal, int] | None:
    counter = SpendCounter.objects.filter(scope=scope, scope_value=value, day=local_today()).first()
    return None if counter is None else (counter.spend, counter.tokens)


@pytest.mark.parametrize(
    ("scope", "value"),
    [("global", ""), ("model", "gpt-4o"), ("agent", "openai.chat.completions"), ("tenant", "acme")],
)
def test_a_hard_stop_refuses_a_raw_call_before_it_is_sent(server, scope, value):
    BudgetFactory(scope=scope, scope_value=value, limit_usd=Decimal("0"))
    settings = {**ON, "MULTI_TENANCY": True, "TENANT_RESOLVER": "tests.test_instrumentation_budgets.acme"}
    with override_settings(LLM_AGENTS=settings), pytest.raises(BudgetExceededError):
        ask(server)
    assert server.requests_to(CHAT) == []  # before: the request went out
    execution = Execution.objects.get()
    assert (execution.kind, execution.status, execution.error_class) == (
        "llm",
        "error",
        "BudgetExceededError",
    )
    assert execution.total_cost == 0
    assert Execution.objects.error_analysis()["categories"]["budget"] == 1
    assert not BudgetReservation.objects.exists()


def acme() -> str:
    return "acme"


def test_in_a_trace_the_agent_scope_is_the_trace_name(server):
    BudgetFactory(scope="agent", scope_value="nightly", limit_usd=Decimal("0"))
    answer(server)
    with override_settings(LLM_AGENTS=ON):
        with trace("daytime"):
            ask(server)  # another trace: no budget of its own
        with pytest.raises(BudgetExceededError), trace("nightly"):
            ask(server)
    assert len(server.requests_to(CHAT)) == 1
    refused = Span.objects.get(execution__agent_type="nightly")
    assert (refused.kind, refused.status, refused.error_class) == ("llm", "error", "BudgetExceededError")
    assert Execution.objects.get(agent_type="nightly").error_class == "BudgetExceededError"


def test_a_raw_call_in_a_trace_settles_its_spend_when_it_ends_and_counts_once(server):
    BudgetFactory(scope="model", scope_value="gpt-4o", limit_usd=Decimal("3"))
    answer(server)
    with override_settings(LLM_AGENTS=ON), trace("pipeline"):
        ask(server)  # $2 of $3
        assert spend("model", "gpt-4o") == (Decimal("2"), 1500)  # counted as soon as the call ended
        assert not BudgetReservation.objects.exists()
        BudgetFactory(scope="global", limit_usd=Decimal("2"))  # reached by the $2 already settled
        with pytest.raises(BudgetExceededError):
            ask(server)
    assert len(server.requests_to(CHAT)) == 1
    # The trace's completion does not count the settled call again.
    assert spend("model", "gpt-4o") == (Decimal("2"), 1500)
    assert spend("global") == (Decimal("2"), 1500)
    assert spend("agent", "pipeline") == (Decimal("2"), 1500)
    live = {(c.scope, c.scope_value): c.spend for c in SpendCounter.objects.all()}
    budgets.rebuild_counters()
    assert {(c.scope, c.scope_value): c.spend for c in SpendCounter.objects.all()} == live


def test_a_streamed_call_holds_its_reservation_until_its_stream_ends(server):
    BudgetFactory(scope="global", limit_usd=Decimal("100"))
    server.enqueue(
        openai_chat_stream(["Hel", "lo"], model="gpt-4o", prompt_tokens=1000, completion_tokens=500)
    )
    with override_settings(LLM_AGENTS=ON):
        stream = ask(server, stream=True, stream_options={"include_usage": True})
        assert BudgetReservation.objects.count() == 1
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "Hello"
    assert not BudgetReservation.objects.exists()
    assert spend("global") == (Decimal("2"), 1500)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_async_call_is_checked_and_settled(server, stream):
    BudgetFactory(scope="model", scope_value="gpt-4o", limit_usd=Decimal("3"))
    if stream:
        server.enqueue(
            openai_chat_stream(["Hel", "lo"], model="gpt-4o", prompt_tokens=1000, completion_tokens=500)
        )
    else:
        answer(server)

    async def ask_async() -> str:
        async_client = openai.AsyncOpenAI(api_key="test", base_url=server.root + "/v1", max_retries=0)
        arguments = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        result = await async_client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=10, **arguments
        )
        if not stream:
            return result.choices[0].message.content
        return "".join([chunk.choices[0].delta.content or "" async for chunk in result if chunk.choices])

    with override_settings(LLM_AGENTS=ON):
        assert asyncio.run(ask_async()) == "Hello"
        assert spend("model", "gpt-4o") == (Decimal("2"), 1500)
        BudgetFactory(scope="global", limit_usd=Decimal("1"))
        with pytest.raises(BudgetExceededError):
            asyncio.run(ask_async())
    assert len(server.requests_to(CHAT)) == 1
    assert not BudgetReservation.objects.exists()
    assert Execution.objects.filter(error_class="BudgetExceededError").count() == 1


def test_without_auto_instrument_budgets_do_not_see_raw_calls(server):
    BudgetFactory(scope="global", limit_usd=Decimal("0"))
    answer(server)
    with override_settings(LLM_AGENTS={"AUTO_INSTRUMENT": False}):
        assert ask(server).choices[0].message.content == "Hello"
    assert not Execution.objects.exists()
