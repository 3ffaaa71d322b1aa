from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone
from genai_prices.data_snapshot import get_snapshot

from llm_agents.models import CostConfig
from llm_agents.pricing import Cost, calculate_cost, cost_config_for

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# genai-prices' gpt-4o has a batch price from 2026-10-14; the first moment is before it, the second after.
BEFORE_BATCH_PRICES = dt.datetime(2026, 1, 15, 12, tzinfo=UTC)
WITH_BATCH_PRICES = dt.datetime(2026, 11, 1, 12, tzinfo=UTC)


def config(model: str, input_price: str, output_price: str, **fields) -> CostConfig:
    fields.setdefault("effective_from", dt.datetime(2024, 1, 1, tzinfo=UTC))
    return CostConfig.objects.create(
        model=model,
        input_price_per_mtok=Decimal(input_price),
        output_price_per_mtok=Decimal(output_price),
        **fields,
    )


def genai_prices(model_ref: str, provider_id: str, at: dt.datetime, context: dict[str, str] | None = None):
    """genai-prices' own per-million prices for the model at ``at`` (read from its data, not hard-coded)."""
    provider, model = get_snapshot().find_provider_model(model_ref, None, provider_id, None)
    assert provider.id == provider_id
    return model.get_prices(at, context)


def unknown_model() -> str:
    return f"no-such-model-{uuid.uuid4().hex[:8]}"


# Cost configs


def test_config_price_per_million_tokens():
    config("acme-large", "2", "8")
    cost = calculate_cost("acme-large", 1_000, 500)
    # 1,000 × $2 / 1M = $0.002; 500 × $8 / 1M = $0.004
    assert cost == Cost(Decimal("0.002"), Decimal("0.004"), Decimal("0.006"), "config")


def test_exact_model_beats_a_newer_pattern():
    config("acme-large", "2", "8")
    config(
        "acme family",
        "100",
        "100",
        match_pattern=r"acme-.*",
        effective_from=dt.datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert calculate_cost("acme-large", 1_000, 500).total_cost == Decimal("0.006")
    # The pattern prices the rest of the family: 1,000 × $100 / 1M + 500 × $100 / 1M
    small = calculate_cost("acme-small", 1_000, 500)
    assert (small.input_cost, small.output_cost, small.source) == (Decimal("0.1"), Decimal("0.05"), "config")


def test_pattern_must_match_the_whole_model_id():
    config("acme numbered", "1", "1", match_pattern=r"acme-\d+")
    assert calculate_cost("acme-12", 1_000_000, 0).total_cost == Decimal("1")
    assert calculate_cost("acme-12-mini", 1_000_000, 0).source == "unknown"
    assert calculate_cost("my-acme-12", 1_000_000, 0).source == "unknown"


def test_latest_effective_from_not_after_at_wins():
    config("acme-large", "1", "1", effective_from=dt.datetime(2024, 1, 1, tzinfo=UTC))
    config("acme-large", "2", "2", effective_from=dt.datetime(2024, 6, 1, tzinfo=UTC))
    config("acme-large", "3", "3", effective_from=dt.datetime(2025, 1, 1, tzinfo=UTC))
    at = dt.datetime(2024, 9, 1, tzinfo=UTC)
    assert calculate_cost("acme-large", 1_000_000, 1_000_000, at=at).total_cost == Decimal("4")
    assert calculate_cost(
        "acme-large", 1_000_000, 1_000_000, at=dt.datetime(2024, 6, 1, tzinfo=UTC)
    ).total_cost == (Decimal("4"))
    assert calculate_cost(
        "acme-large", 1_000_000, 1_000_000, at=dt.datetime(2024, 3, 1, tzinfo=UTC)
    ).total_cost == (Decimal("2"))
    assert calculate_cost("acme-large", 1_000_000, 1_000_000).total_cost == Decimal("6")


def test_effective_until_is_excluded():
    config("acme-large", "5", "5", effective_from=dt.datetime(2023, 1, 1, tzinfo=UTC))
    config(
        "acme-large",
        "1",
        "1",
        effective_from=dt.datetime(2024, 1, 1, tzinfo=UTC),
        effective_until=dt.datetime(2024, 2, 1, tzinfo=UTC),
    )
    just_before = dt.datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert calculate_cost("acme-large", 1_000_000, 0, at=just_before).input_cost == Decimal("1")
    # At effective_until the promotion has ended: the older open-ended config applies again.
    assert calculate_cost("acme-large", 1_000_000, 0, at=dt.datetime(2024, 2, 1, tzinfo=UTC)).input_cost == (
        Decimal("5")
    )


def test_a_config_not_yet_effective_does_not_apply():
    config("acme-large", "1", "1", effective_from=timezone.now() + dt.timedelta(days=1))
    assert calculate_cost("acme-large", 1_000, 1_000).source == "unknown"


def test_historical_price_differs_from_the_current_one():
    config(
        "acme-large",
        "10",
        "30",
        effective_from=dt.datetime(2024, 1, 1, tzinfo=UTC),
        effective_until=dt.datetime(2025, 1, 1, tzinfo=UTC),
    )
    config("acme-large", "2", "6", effective_from=dt.datetime(2025, 1, 1, tzinfo=UTC))
    then = calculate_cost("acme-large", 2_000, 1_000, at=dt.datetime(2024, 6, 1, tzinfo=UTC))
    now = calculate_cost("acme-large", 2_000, 1_000)
    # 2,000 × $10 / 1M + 1,000 × $30 / 1M, then 2,000 × $2 / 1M + 1,000 × $6 / 1M
    assert (then.input_cost, then.output_cost, then.total_cost) == (
        Decimal("0.02"),
        Decimal("0.03"),
        Decimal("0.05"),
    )
    assert (now.input_cost, now.output_cost, now.total_cost) == (
        Decimal("0.004"),
        Decimal("0.006"),
        Decimal("0.01"),
    )


def test_cached_tokens_are_priced_at_the_cached_price():
    config("acme-large", "3", "15", cached_input_price_per_mtok=Decimal("0.3"))
    cost = calculate_cost("acme-large", 10_000, 1_000, cached_tokens=4_000)
    # 6,000 uncached × $3 / 1M = $0.018; 4,000 cached × $0.30 / 1M = $0.0012; 1,000 × $15 / 1M = $0.015
    assert cost == Cost(
        Decimal("0.0192"), Decimal("0.015"), Decimal("0.0342"), "config", cache_read_cost=Decimal("0.0012")
    )


def test_cache_writes_are_priced_at_the_cache_write_price():
    config("acme-large", "3", "15", cached_input_price_per_mtok=Decimal("0.3"),
           cache_write_price_per_mtok=Decimal("6"))  # fmt: skip
    cost = calculate_cost("acme-large", 10_000, 1_000, cached_tokens=4_000, cache_write_tokens=2_000)
    # 4,000 plain × $3 = $0.012; 4,000 read × $0.30 = $0.0012; 2,000 written × $6 = $0.012; 1,000 × $15 = $0.015
    assert cost == Cost(Decimal("0.0252"), Decimal("0.015"), Decimal("0.0402"), "config",
                        cache_read_cost=Decimal("0.0012"), cache_write_cost=Decimal("0.012"))  # fmt: skip


def test_batch_cache_writes_get_the_discount_too():
    config("acme-large", "3", "15", cache_write_price_per_mtok=Decimal("6"))
    with override_settings(LLM_AGENTS={"BATCH_DISCOUNT": 0.5}):
        cost = calculate_cost("acme-large", 3_000, 0, cache_write_tokens=2_000, batch=True)
    assert (cost.input_cost, cost.cache_write_cost) == (Decimal("0.0075"), Decimal("0.006"))


def test_genai_prices_splits_the_cache_reads_and_writes_of_its_input_cost():
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=10_000, cache_read_tokens=3_000, cache_write_tokens=2_000, output_tokens=500)
    at = BEFORE_BATCH_PRICES
    expected = calc_price(usage, "claude-sonnet-4-5", provider_id="anthropic", genai_request_timestamp=at)
    prices = genai_prices("claude-sonnet-4-5", "anthropic", at)
    cost = calculate_cost("claude-sonnet-4-5", 10_000, 500, cached_tokens=3_000, at=at, provider="anthropic",
                          cache_write_tokens=2_000)  # fmt: skip
    assert (cost.input_cost, cost.output_cost) == (expected.input_price, expected.output_price)
    assert cost.cache_read_cost == 3_000 * prices.cache_read_mtok.base / 1_000_000
    assert cost.cache_write_cost == 2_000 * prices.cache_write_mtok.base / 1_000_000
    assert prices.cache_write_mtok.base > prices.input_mtok.base


def test_cached_tokens_fall_back_to_the_input_price():
    config("acme-large", "3", "15")
    cost = calculate_cost("acme-large", 10_000, 1_000, cached_tokens=4_000)
    # 10,000 × $3 / 1M: without a cached price, cached tokens cost the input price
    assert cost == Cost(
        Decimal("0.03"), Decimal("0.015"), Decimal("0.045"), "config", cache_read_cost=Decimal("0.012")
    )


def test_provider_prefers_its_own_or_blank_configs():
    config("acme-large", "9", "9", provider="azure", effective_from=dt.datetime(2024, 6, 1, tzinfo=UTC))
    config("acme-large", "2", "2")
    assert calculate_cost("acme-large", 1_000_000, 0, provider="openai").input_cost == Decimal("2")
    assert calculate_cost("acme-large", 1_000_000, 0, provider="azure").input_cost == Decimal("9")
    # Without a provider, the latest config wins whatever its provider.
    assert calculate_cost("acme-large", 1_000_000, 0).input_cost == Decimal("9")


def test_same_start_named_provider_beats_blank_and_other_provider_is_a_last_resort():
    config("acme-large", "4", "4", provider="openai")
    config("acme-large", "2", "2")
    assert calculate_cost("acme-large", 1_000_000, 0, provider="openai").input_cost == Decimal("4")
    config("acme-solo", "7", "7", provider="azure")
    assert calculate_cost("acme-solo", 1_000_000, 0, provider="openai").input_cost == Decimal("7")


def test_provider_prefixed_model_id_matches_a_config_for_the_bare_name():
    config("acme-large", "2", "8")
    assert calculate_cost("acme/acme-large", 1_000, 500).total_cost == Decimal("0.006")


def test_costs_are_rounded_to_eight_places():
    config("acme-tiny", "0.123456", "0.000001")
    cost = calculate_cost("acme-tiny", 3, 1)
    # 3 × 0.123456 / 1M = 0.000000370368 → 0.00000037; 1 × 0.000001 / 1M = 1e-12 → 0
    assert cost == Cost(Decimal("0.00000037"), Decimal("0E-8"), Decimal("0.00000037"), "config")
    assert cost.input_cost.as_tuple().exponent == -8


def test_cost_configs_are_read_once_then_served_from_memory(django_assert_num_queries):
    config("acme-large", "2", "8")
    config("acme family", "1", "1", match_pattern=r"acme-.*")
    config("other", "1", "1")
    with django_assert_num_queries(1):
        assert calculate_cost("acme-large", 10, 10).source == "config"
    with django_assert_num_queries(0):
        assert calculate_cost("gpt-4o", 10, 10).source == "genai_prices"
        assert cost_config_for("acme-small").model == "acme family"


def test_saving_a_cost_config_refreshes_the_prices_at_once():
    assert calculate_cost("acme-new", 1_000_000, 0).source == "unknown"
    config("acme-new", "3", "4")
    assert calculate_cost("acme-new", 1_000_000, 0).total_cost == Decimal("3")
    CostConfig.objects.filter(model="acme-new").get().delete()
    assert calculate_cost("acme-new", 1_000_000, 0).source == "unknown"


# genai-prices


@pytest.mark.parametrize(
    ("model_id", "provider"),
    [("gpt-4o", None), ("gpt-4o", "openai"), ("openai/gpt-4o", None), ("gpt-4o-2024-08-06", "openai")],
)
def test_genai_prices_prices_a_well_known_model(model_id, provider):
    prices = genai_prices("gpt-4o", "openai", WITH_BATCH_PRICES)
    assert all(
        isinstance(p, Decimal) for p in (prices.input_mtok, prices.cache_read_mtok, prices.output_mtok)
    )
    cost = calculate_cost(
        model_id, 10_000, 2_000, cached_tokens=4_000, at=WITH_BATCH_PRICES, provider=provider
    )
    expected_input = (6_000 * prices.input_mtok + 4_000 * prices.cache_read_mtok) / 1_000_000
    expected_output = 2_000 * prices.output_mtok / 1_000_000
    assert cost == Cost(
        expected_input,
        expected_output,
        expected_input + expected_output,
        "genai_prices",
        cache_read_cost=4_000 * prices.cache_read_mtok / 1_000_000,
    )
    assert cost.input_cost > 0


def test_genai_prices_is_asked_for_the_price_at_the_call_time():
    # o3's price changed on 2025-06-10 in genai-prices' data.
    old_at, new_at = dt.datetime(2025, 5, 1, tzinfo=UTC), dt.datetime(2025, 7, 1, tzinfo=UTC)
    old, new = genai_prices("o3", "openai", old_at), genai_prices("o3", "openai", new_at)
    assert old.input_mtok != new.input_mtok
    assert calculate_cost("o3", 1_000_000, 0, at=old_at).input_cost == old.input_mtok
    assert calculate_cost("o3", 1_000_000, 0, at=new_at).input_cost == new.input_mtok


def test_anthropic_prefixed_model_id():
    prefixed = calculate_cost("anthropic/claude-sonnet-4", 1_000, 1_000, at=WITH_BATCH_PRICES)
    plain = calculate_cost("claude-sonnet-4", 1_000, 1_000, at=WITH_BATCH_PRICES, provider="anthropic")
    assert prefixed == plain
    assert prefixed.source == "genai_prices" and prefixed.total_cost > 0


def test_a_config_beats_genai_prices():
    config("gpt-4o", "1", "1")
    assert calculate_cost("gpt-4o", 1_000_000, 1_000_000).total_cost == Decimal("2")


# Unknown models


def test_unknown_model_costs_zero_and_warns_once(caplog):
    model_id = unknown_model()
    with caplog.at_level(logging.WARNING, logger="llm_agents"):
        first = calculate_cost(model_id, 1_000, 1_000)
        second = calculate_cost(model_id, 5, 5, batch=True)
    assert first == second == Cost(Decimal("0"), Decimal("0"), Decimal("0"), "unknown")
    warnings = [record for record in caplog.records if record.name == "llm_agents"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert model_id in warnings[0].getMessage()


def test_each_unknown_model_warns(caplog):
    first, second = unknown_model(), unknown_model()
    with caplog.at_level(logging.WARNING, logger="llm_agents"):
        calculate_cost(first, 1, 1)
        calculate_cost(second, 1, 1)
    messages = [record.getMessage() for record in caplog.records if record.name == "llm_agents"]
    assert len(messages) == 2
    assert first in messages[0] and second in messages[1]


def test_provider_unknown_to_genai_prices_is_unknown():
    assert calculate_cost("fake/echo", 10, 10, provider="fake").source == "unknown"


# Batch pricing


def test_batch_with_a_config_is_its_price_times_the_discount():
    config("gpt-4o", "2", "8")
    cost = calculate_cost("gpt-4o", 1_000, 500, batch=True, at=WITH_BATCH_PRICES)
    # ($0.002, $0.004) × 0.5, even though genai-prices has a batch price for gpt-4o at this time
    assert cost == Cost(Decimal("0.001"), Decimal("0.002"), Decimal("0.003"), "config")
    with override_settings(LLM_AGENTS={"BATCH_DISCOUNT": 0.4}):
        cost = calculate_cost("gpt-4o", 1_000, 500, batch=True, at=WITH_BATCH_PRICES)
    assert cost == Cost(Decimal("0.0008"), Decimal("0.0016"), Decimal("0.0024"), "config")


def test_batch_uses_the_genai_prices_batch_price():
    standard = genai_prices("gpt-4o", "openai", WITH_BATCH_PRICES)
    batch = genai_prices("gpt-4o", "openai", WITH_BATCH_PRICES, {"processing": "batch"})
    assert batch.input_mtok < standard.input_mtok
    cost = calculate_cost("gpt-4o", 1_000_000, 1_000_000, at=WITH_BATCH_PRICES, batch=True)
    assert cost == Cost(
        batch.input_mtok, batch.output_mtok, batch.input_mtok + batch.output_mtok, "genai_prices"
    )
    # The batch price is genai-prices' own, not the standard price × BATCH_DISCOUNT.
    with override_settings(LLM_AGENTS={"BATCH_DISCOUNT": 0.9}):
        assert calculate_cost("gpt-4o", 1_000_000, 1_000_000, at=WITH_BATCH_PRICES, batch=True) == cost


def test_batch_without_a_genai_prices_batch_price_applies_the_discount():
    standard = genai_prices("gpt-4o", "openai", BEFORE_BATCH_PRICES)
    assert genai_prices("gpt-4o", "openai", BEFORE_BATCH_PRICES, {"processing": "batch"}) == standard
    cost = calculate_cost("gpt-4o", 1_000_000, 1_000_000, at=BEFORE_BATCH_PRICES, batch=True)
    half_input, half_output = standard.input_mtok * Decimal("0.5"), standard.output_mtok * Decimal("0.5")
    assert cost == Cost(half_input, half_output, half_input + half_output, "genai_prices")
    with override_settings(LLM_AGENTS={"BATCH_DISCOUNT": 0.25}):
        cost = calculate_cost("gpt-4o", 1_000_000, 0, at=BEFORE_BATCH_PRICES, batch=True)
    assert cost.input_cost == standard.input_mtok * Decimal("0.25")


# Invalid input


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"input_tokens": -1, "output_tokens": 0}, "input_tokens"),
        ({"input_tokens": 0, "output_tokens": -1}, "output_tokens"),
        ({"input_tokens": 0, "output_tokens": 0, "cached_tokens": -1}, "cached_tokens"),
        ({"input_tokens": 10, "output_tokens": 0, "cached_tokens": 11}, "cached_tokens"),
        ({"input_tokens": 10, "output_tokens": 0, "cache_write_tokens": -1}, "cache_write_tokens"),
        (
            {"input_tokens": 10, "output_tokens": 0, "cached_tokens": 5, "cache_write_tokens": 6},
            "cache_write_tokens",
        ),
    ],
)
def test_invalid_token_counts_raise(arguments, named):
    with pytest.raises(ValueError, match=named):
        calculate_cost("gpt-4o", **arguments)


def test_naive_at_raises():
    with pytest.raises(ValueError, match="at must be an aware datetime"):
        calculate_cost("gpt-4o", 1, 1, at=dt.datetime(2025, 1, 1))
