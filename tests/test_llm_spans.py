"""Manual llm spans: tokens set on a ``span(kind="llm")`` or given to ``record_usage`` are priced like a
provider's answer and rolled up, so an execution's totals are the sum of its llm spans however recorded."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import override_settings

from llm_agents import Agent, Param, Tool, span, trace
from llm_agents.models import CostConfig, Execution, Span
from llm_agents.pricing import calculate_cost
from llm_agents.testing import fake_llm

pytestmark = pytest.mark.django_db

PER_MILLION = Decimal(1_000_000)
# gpt-4o: input, output, cached input per million tokens. acme-cache: and a cache-write price.
GPT_4O = (Decimal("2.5"), Decimal("10"), Decimal("1.25"))
ACME = {"input": Decimal("3"), "output": Decimal("15"), "read": Decimal("0.3"), "write": Decimal("3.75")}


@pytest.fixture
def prices(db):
    CostConfig.objects.create(model="gpt-4o", input_price_per_mtok=GPT_4O[0], output_price_per_mtok=GPT_4O[1],
                              cached_input_price_per_mtok=GPT_4O[2], effective_from="2020-01-01T00:00Z")  # fmt: skip
    CostConfig.objects.create(model="acme-cache", input_price_per_mtok=ACME["input"],
                              output_price_per_mtok=ACME["output"], cached_input_price_per_mtok=ACME["read"],
                              cache_write_price_per_mtok=ACME["write"],
                              effective_from="2020-01-01T00:00Z")  # fmt: skip


def gpt_4o(input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens * GPT_4O[0] + output_tokens * GPT_4O[1]) / PER_MILLION


def llm_span_totals(root: Execution) -> dict[str, int | Decimal]:
    """The sums over every llm span recorded under ``root`` (its own and its nested executions')."""
    spans = Span.objects.filter(kind="llm", execution__root_id=root.pk)
    return spans.aggregate(
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cached_tokens=Sum("cached_tokens"),
        cache_write_tokens=Sum("cache_write_tokens"),
        total_cost=Sum("total_cost"),
    )


def totals(execution: Execution) -> dict[str, int | Decimal]:
    return {
        name: getattr(execution, name)
        for name in ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "total_cost")
    }


class EchoAgent(Agent):
    model = "gpt-4o"
    text = Param(required=True)

    def user_prompt(self):
        return self.text


class ExternalCall(Tool):
    """A tool that calls a model through an SDK the product does not wrap, inside a trace of its own."""

    name = "external_call"
    description = "Ask another model"
    question = Param(required=True)

    def run(self, question):
        with trace("external"), span("vendor-sdk", kind="llm", model_id="gpt-4o") as call:
            call.record_usage(1_000, 100)
        return "answered"


class ToolAgent(Agent):
    model = "gpt-4o"
    tools = [ExternalCall]
    question = Param(required=True)

    def user_prompt(self):
        return self.question


def test_tokens_set_on_a_manual_llm_span_are_priced_and_rolled_up(prices):
    with trace("t") as t, span("x", kind="llm", model_id="gpt-4o") as s:
        s.input_tokens = 100
        s.output_tokens = 20

    root = t.execution
    recorded = root.spans.get()
    assert recorded.total_cost == gpt_4o(100, 20) > 0
    assert (root.input_tokens, root.output_tokens, root.total_tokens) == (100, 20, 120)
    assert root.input_cost == 100 * GPT_4O[0] / PER_MILLION
    assert root.total_cost == recorded.total_cost
    assert root.pricing_source == "config"


def test_record_usage_sets_the_tokens_and_model_prices_and_rolls_up(prices):
    with trace("t") as t, span("vendor", kind="llm") as s:
        cost = s.record_usage(1_000, 50, cached_tokens=200, cache_write_tokens=300, reasoning_tokens=10,
                              model_id="acme-cache")  # fmt: skip

    expected_input = (500 * ACME["input"] + 200 * ACME["read"] + 300 * ACME["write"]) / PER_MILLION
    assert cost.input_cost == expected_input
    assert cost.cache_write_cost == 300 * ACME["write"] / PER_MILLION
    recorded = Span.objects.get()
    assert (recorded.model_id, recorded.input_tokens, recorded.output_tokens, recorded.cached_tokens,
            recorded.cache_write_tokens, recorded.reasoning_tokens) == ("acme-cache", 1_000, 50, 200, 300, 10)  # fmt: skip
    assert recorded.total_cost == cost.total_cost == expected_input + 50 * ACME["output"] / PER_MILLION
    root = t.execution
    assert (root.input_tokens, root.output_tokens, root.cached_tokens, root.cache_write_tokens,
            root.reasoning_tokens, root.total_tokens) == (1_000, 50, 200, 300, 10, 1_050)  # fmt: skip
    assert (root.input_cost, root.total_cost) == (cost.input_cost, cost.total_cost)


def test_record_usage_twice_replaces_the_spans_usage(prices):
    with trace("t") as t, span("vendor", kind="llm", model_id="gpt-4o") as s:
        s.record_usage(5_000, 500)
        s.record_usage(100, 20)

    root = t.execution
    assert (root.input_tokens, root.output_tokens, root.total_cost) == (100, 20, gpt_4o(100, 20))
    assert root.spans.get().total_cost == gpt_4o(100, 20)


def test_execution_totals_are_the_sum_of_llm_spans_however_recorded(prices):
    with fake_llm() as llm:
        llm.respond("r", input_tokens=400, output_tokens=40, cached_tokens=100)
        with trace("pipeline") as t:
            EchoAgent.call(text="hello")
            with span("manual", kind="llm", model_id="gpt-4o") as manual:
                manual.input_tokens, manual.output_tokens = 300, 30
            with span("sdk", kind="llm") as sdk:
                sdk.record_usage(2_000, 200, cached_tokens=500, cache_write_tokens=700, model_id="acme-cache")

    root = t.execution
    assert totals(root) == llm_span_totals(root)
    assert root.input_tokens == 400 + 300 + 2_000
    agent = root.children.get()
    # The agent's own llm span is counted once, in the agent's execution, and once in the trace.
    assert agent.input_tokens == 400
    assert agent.total_cost == agent.spans.get(kind="llm").total_cost


def test_a_manual_llm_span_in_a_trace_inside_an_agent_call_rolls_up_to_the_root(prices):
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"name": "external_call", "arguments": {"question": "q"}}],
                    input_tokens=100, output_tokens=10)  # fmt: skip
        llm.respond("done", input_tokens=120, output_tokens=5)
        with trace("outer") as t:
            ToolAgent.call(question="q")

    root = t.execution
    agent = root.children.get()
    vendor = Span.objects.get(name="vendor-sdk")
    assert vendor.execution_id == agent.pk  # the nested trace is a span of the agent's execution
    assert vendor.total_cost == gpt_4o(1_000, 100)
    assert agent.input_tokens == 100 + 120 + 1_000
    assert agent.total_cost == gpt_4o(100 + 120 + 1_000, 10 + 5 + 100)
    assert totals(root) == totals(agent) == llm_span_totals(root)


def test_a_span_outside_any_execution_is_priced_but_not_recorded(prices):
    with span("vendor", kind="llm", model_id="gpt-4o") as s:
        cost = s.record_usage(100, 20)
    assert s.total_cost == cost.total_cost == gpt_4o(100, 20)
    assert not Execution.objects.exists() and not Span.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"input_tokens": -1, "output_tokens": 0}, "input_tokens"),
        ({"input_tokens": 10, "output_tokens": 0, "reasoning_tokens": -2}, "reasoning_tokens"),
        (
            {"input_tokens": 10, "output_tokens": 0, "cached_tokens": 6, "cache_write_tokens": 5},
            "cache_write_tokens",
        ),
    ],
)
def test_record_usage_rejects_impossible_counts(prices, arguments, named):
    with (
        trace("t"),
        span("vendor", kind="llm", model_id="gpt-4o") as s,
        pytest.raises(ValueError, match=named),
    ):
        s.record_usage(**arguments)


def test_record_usage_needs_a_model(prices):
    with trace("t"), span("vendor", kind="llm") as s, pytest.raises(ValueError, match="model_id"):
        s.record_usage(10, 1)


@override_settings(LLM_AGENTS={"ASYNC_LOGGING": True})
def test_async_logging_keeps_the_usage_of_manual_llm_spans(prices):
    with trace("t") as t, span("vendor", kind="llm") as s:
        cost = s.record_usage(1_000, 50, cached_tokens=200, cache_write_tokens=300, reasoning_tokens=10,
                              model_id="acme-cache")  # fmt: skip

    recorded = Span.objects.get()
    assert (recorded.cache_write_tokens, recorded.reasoning_tokens, recorded.total_cost) == (
        300, 10, cost.total_cost)  # fmt: skip
    root = t.execution
    assert (root.cache_write_tokens, root.reasoning_tokens, root.total_cost) == (300, 10, cost.total_cost)


@pytest.mark.django_db(transaction=True)
def test_a_manual_llm_span_in_async_code_is_priced(prices):
    async def main():
        with trace("async_pipeline") as t, span("vendor", kind="llm", model_id="gpt-4o") as s:
            await asyncio.sleep(0)
            s.record_usage(100, 20)
        return t.execution_id

    root = Execution.objects.get(pk=asyncio.run(main()))
    assert root.total_cost == gpt_4o(100, 20) == calculate_cost("gpt-4o", 100, 20).total_cost
