"""Anthropic cache writes: recorded apart (``cache_write_tokens``, part of ``input_tokens``) and priced at the
cache-write price, through the real anthropic SDK against the local fake server."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import anthropic
import pytest
from django.test import override_settings
from django.urls import reverse
from genai_prices import Usage, calc_price
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

from llm_agents import Agent, Param, trace
from llm_agents.models import CostConfig, Execution
from llm_agents.pricing import calculate_cost, recompute_costs, sync_costs
from llm_agents.testing import fake_llm
from tests.api_support import API
from tests.fake_servers import FakeServer, anthropic_message, anthropic_message_stream

pytestmark = pytest.mark.django_db

MODEL = "claude-sonnet-4-5"
PER_MILLION = Decimal(1_000_000)
PLACES = Decimal("0.00000001")
# What Anthropic reports: input_tokens leave the cache reads and writes out.
PLAIN, READS, WRITES, OUTPUT = 100, 1_000, 2_000, 50
INPUT = PLAIN + READS + WRITES  # ours include them


def round8(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_UP)


def genai_cost(at: dt.datetime, *, cache_writes: bool = True) -> Decimal:
    """genai-prices' own figure for the call (input and output rounded like ours)."""
    usage = Usage(input_tokens=INPUT, cache_read_tokens=READS, output_tokens=OUTPUT,
                  cache_write_tokens=WRITES if cache_writes else 0)  # fmt: skip
    calculation = calc_price(usage, MODEL, provider_id="anthropic", genai_request_timestamp=at)
    return round8(calculation.input_price) + round8(calculation.output_price)


def config(cache_write_price: str | None, input_price: str = "3") -> CostConfig:
    return CostConfig.objects.create(
        model=MODEL,
        provider="anthropic",
        input_price_per_mtok=Decimal(input_price),
        output_price_per_mtok=Decimal("15"),
        cached_input_price_per_mtok=Decimal("0.3"),
        cache_write_price_per_mtok=Decimal(cache_write_price) if cache_write_price is not None else None,
        effective_from="2020-01-01T00:00Z",
    )


class Summariser(Agent):
    model = MODEL
    retries = 0
    text = Param(required=True)

    def user_prompt(self):
        return self.text


def providers_for(server: FakeServer) -> dict[str, Any]:
    return {"anthropic": {"class": "llm_agents.providers.anthropic.AnthropicProvider", "api_key": "k",
                          "base_url": server.root}}  # fmt: skip


def _reply(stream: bool):
    usage = {"input_tokens": PLAIN, "output_tokens": OUTPUT, "cache_read_input_tokens": READS,
             "cache_creation_input_tokens": WRITES}  # fmt: skip
    return anthropic_message_stream(["Hel", "lo"], **usage) if stream else anthropic_message("Hello", **usage)


def through_the_agent(server: FakeServer, stream: bool) -> Execution:
    server.enqueue(_reply(stream))
    with override_settings(LLM_AGENTS={"PROVIDERS": providers_for(server)}):
        if stream:
            answer = Summariser.stream(text="Hi")
            assert "".join(answer) == "Hello"
            return answer.result.execution
        return Summariser.call(text="Hi").execution


def through_the_raw_sdk(server: FakeServer, stream: bool) -> Execution:
    server.enqueue(_reply(stream))
    client = anthropic.Anthropic(api_key="k", base_url=server.root, max_retries=0)
    with override_settings(LLM_AGENTS={"AUTO_INSTRUMENT": True}):
        result = client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Hi"}],
                                        stream=stream)  # fmt: skip
        if stream:
            list(result)
    return Execution.objects.get()


PATHS = pytest.mark.parametrize(
    ("record", "stream"),
    [(through_the_agent, False), (through_the_agent, True), (through_the_raw_sdk, False),
     (through_the_raw_sdk, True)],
    ids=["agent", "agent-stream", "raw-sdk", "raw-sdk-stream"],
)  # fmt: skip


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def assert_tokens(execution: Execution) -> None:
    assert (execution.input_tokens, execution.cached_tokens, execution.cache_write_tokens,
            execution.output_tokens) == (INPUT, READS, WRITES, OUTPUT)  # fmt: skip
    span = execution.spans.get(kind="llm")
    assert (span.input_tokens, span.cached_tokens, span.cache_write_tokens) == (INPUT, READS, WRITES)
    assert span.total_cost == execution.total_cost


@PATHS
@pytest.mark.django_db(transaction=True)
def test_cache_writes_cost_the_configs_cache_write_price(record, stream, server):
    config(cache_write_price="6")

    execution = record(server, stream)

    assert_tokens(execution)
    expected_input = (PLAIN * 3 + READS * Decimal("0.3") + WRITES * 6) / PER_MILLION
    assert execution.input_cost == expected_input
    assert execution.total_cost == expected_input + OUTPUT * 15 / PER_MILLION
    assert execution.pricing_source == "config"


@PATHS
@pytest.mark.django_db(transaction=True)
def test_without_a_config_cache_writes_cost_genai_prices_cache_write_price(record, stream, server):
    execution = record(server, stream)

    assert_tokens(execution)
    assert execution.pricing_source == "genai_prices"
    at = execution.spans.get(kind="llm").started_at
    assert execution.total_cost == genai_cost(at)
    assert execution.total_cost != genai_cost(at, cache_writes=False)  # not the plain input price


def test_a_config_without_a_cache_write_price_uses_genai_prices_one(server):
    config(cache_write_price=None, input_price="4")
    at = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)

    cost = calculate_cost(MODEL, INPUT, OUTPUT, READS, at=at, provider="anthropic", cache_write_tokens=WRITES)

    genai_write_price = calc_price(Usage(input_tokens=1), MODEL, provider_id="anthropic",
                                   genai_request_timestamp=at).model_price.cache_write_mtok.base  # fmt: skip
    assert genai_write_price != 4
    assert cost.cache_write_cost == WRITES * genai_write_price / PER_MILLION
    assert cost.cache_read_cost == READS * Decimal("0.3") / PER_MILLION
    assert cost.input_cost == (PLAIN * 4) / PER_MILLION + cost.cache_read_cost + cost.cache_write_cost


def test_a_config_for_a_model_genai_prices_does_not_know_prices_cache_writes_as_input():
    CostConfig.objects.create(model="in-house-llm", input_price_per_mtok=Decimal("2"),
                              output_price_per_mtok=Decimal("8"), effective_from="2020-01-01T00:00Z")  # fmt: skip
    cost = calculate_cost("in-house-llm", 1_000, 0, cache_write_tokens=400)
    assert cost.cache_write_cost == 400 * 2 / PER_MILLION
    assert cost.input_cost == 1_000 * 2 / PER_MILLION


def test_fake_llm_cache_writes_are_recorded_and_priced():
    config(cache_write_price="6")
    with fake_llm() as llm:
        llm.respond(
            "ok", input_tokens=INPUT, output_tokens=OUTPUT, cached_tokens=READS, cache_write_tokens=WRITES
        )
        execution = Summariser.call(text="Hi").execution

    assert_tokens(execution)
    assert execution.input_cost == (PLAIN * 3 + READS * Decimal("0.3") + WRITES * 6) / PER_MILLION


def test_fake_llm_refuses_cache_reads_and_writes_beyond_the_input():
    with fake_llm() as llm, pytest.raises(ValueError, match="cache_write_tokens"):
        llm.respond("ok", input_tokens=10, cached_tokens=6, cache_write_tokens=5)


def test_trace_totals_include_the_cache_writes_of_nested_calls():
    config(cache_write_price="6")
    with fake_llm() as llm:
        llm.respond(
            "ok", input_tokens=INPUT, output_tokens=OUTPUT, cached_tokens=READS, cache_write_tokens=WRITES
        )
        with trace("pipeline") as t:
            child = Summariser.call(text="Hi").execution

    root = t.execution
    assert (root.cache_write_tokens, root.total_cost) == (WRITES, child.total_cost)


def test_recompute_costs_prices_cache_writes():
    old = config(cache_write_price="6")
    with fake_llm() as llm:
        llm.respond(
            "ok", input_tokens=INPUT, output_tokens=OUTPUT, cached_tokens=READS, cache_write_tokens=WRITES
        )
        execution = Summariser.call(text="Hi").execution
    old.cache_write_price_per_mtok = Decimal("7.5")
    old.save()

    recompute_costs(since=execution.started_at - dt.timedelta(minutes=1))

    execution.refresh_from_db()
    expected_input = (PLAIN * 3 + READS * Decimal("0.3") + WRITES * Decimal("7.5")) / PER_MILLION
    assert execution.input_cost == expected_input
    assert (
        execution.spans.get().total_cost == execution.total_cost == expected_input + OUTPUT * 15 / PER_MILLION
    )


def test_sync_costs_copies_genai_prices_cache_write_price():
    sync_costs(providers=["anthropic"], models=[MODEL])

    configs = CostConfig.objects.filter(model=MODEL, source=CostConfig.Source.GENAI_PRICES)
    assert configs.exists()
    assert all(c.cache_write_price_per_mtok == Decimal("3.75") for c in configs)  # Anthropic's 1.25 × $3


def test_the_api_and_the_admin_show_cache_writes(staff_client):
    config(cache_write_price="6")
    with fake_llm() as llm:
        llm.respond(
            "ok", input_tokens=INPUT, output_tokens=OUTPUT, cached_tokens=READS, cache_write_tokens=WRITES
        )
        execution = Summariser.call(text="Hi").execution

    listed = staff_client.get(API + "executions/").json()["results"][0]
    assert listed["cache_write_tokens"] == WRITES
    detail = staff_client.get(API + f"executions/{execution.pk}/").json()
    assert detail["cache_write_tokens"] == WRITES
    assert detail["spans"][0]["cache_write_tokens"] == WRITES
    page = staff_client.get(reverse("admin:llm_agents_execution_change", args=[execution.pk]))
    assert f"{WRITES} cache writes" in page.content.decode()


@pytest.fixture
def otel_spans():
    """The in-memory exporter of tests/test_otel.py (a process has one tracer provider)."""
    from tests.test_otel import _exporter

    if not isinstance(otel_trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        otel_trace.set_tracer_provider(provider)
    _exporter.clear()
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": True}):
        yield _exporter
    _exporter.clear()


def test_the_opentelemetry_export_carries_cache_writes(otel_spans):
    with fake_llm() as llm:
        llm.respond(
            "ok", input_tokens=INPUT, output_tokens=OUTPUT, cached_tokens=READS, cache_write_tokens=WRITES
        )
        Summariser.call(text="Hi")

    exported = {span.name: span.attributes for span in otel_spans.get_finished_spans()}
    assert exported[f"chat {MODEL}"][gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == WRITES
    assert (
        exported[f"invoke_agent {Summariser.agent_type}"][gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS]
        == WRITES
    )
