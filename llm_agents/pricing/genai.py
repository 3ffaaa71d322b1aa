"""Prices from the bundled genai-prices data, asked for the price in force at the call's moment."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

from .base import ZERO, Costs, Tokens, provider_prefix
from .batch import BATCH_CONTEXT, batch_discount, has_batch_price

if TYPE_CHECKING:
    from genai_prices.types import PriceCalculation, TieredPrices


def _genai_calculation(
    model_id: str, tokens: Tokens, at: dt.datetime, provider: str | None
) -> tuple[PriceCalculation, str, str | None] | None:
    """genai-prices' calculation of ``tokens`` for the first of the model's references it knows, with
    that reference (model, provider)."""
    from genai_prices import calc_price

    usage = tokens.usage()
    for model_ref, provider_id in _genai_prices_refs(model_id, provider):
        try:
            calculation = calc_price(usage, model_ref, provider_id=provider_id, genai_request_timestamp=at)
        except LookupError:
            continue
        return calculation, model_ref, provider_id
    return None


def genai_prices_costs(
    model_id: str, tokens: Tokens, at: dt.datetime, provider: str | None, batch: bool
) -> Costs | None:
    from genai_prices import calc_price

    found = _genai_calculation(model_id, tokens, at, provider)
    if found is None:
        return None
    calculation, model_ref, provider_id = found
    if not batch:
        return _calculation_costs(calculation, tokens)
    if has_batch_price(calculation, at):
        calculation = calc_price(
            tokens.usage(),
            model_ref,
            provider_id=provider_id,
            genai_request_timestamp=at,
            price_context=BATCH_CONTEXT,
        )
        return _calculation_costs(calculation, tokens)
    return _calculation_costs(calculation, tokens).scaled(batch_discount())


def _calculation_costs(calculation: PriceCalculation, tokens: Tokens) -> Costs:
    """A genai-prices calculation's costs, with the cache reads' and writes' parts of its input cost.

    genai-prices prices cache tokens without a price of their own at the input price."""
    prices = calculation.model_price
    input_price = getattr(prices, "input_mtok", None)
    read_price = getattr(prices, "cache_read_mtok", None)
    write_price = getattr(prices, "cache_write_mtok", None)
    return Costs(
        calculation.input_price,
        calculation.output_price,
        _unit_cost(read_price if read_price is not None else input_price, tokens.cached_tokens, tokens),
        _unit_cost(
            write_price if write_price is not None else input_price, tokens.cache_write_tokens, tokens
        ),
    )


def genai_cache_write_cost(
    model_id: str, tokens: Tokens, at: dt.datetime, provider: str | None
) -> Decimal | None:
    """What genai-prices charges for the cache writes of ``model_id`` at ``at``, or None when it
    has no cache-write price for the model."""
    found = _genai_calculation(model_id, tokens, at, provider)
    write_price = getattr(found[0].model_price, "cache_write_mtok", None) if found else None
    if write_price is None:
        return None
    return _unit_cost(write_price, tokens.cache_write_tokens, tokens)


def _unit_cost(price: Decimal | TieredPrices | None, count: int, tokens: Tokens) -> Decimal:
    """``count`` tokens at a genai-prices price per million (a tiered price's tier chosen by the call's
    input size)."""
    from genai_prices.types import calc_unit_price

    if price is None or not count:
        return ZERO
    return calc_unit_price(price, count, tokens.input_tokens, 1_000_000)


def _genai_prices_refs(model_id: str, provider: str | None) -> list[tuple[str, str | None]]:
    """``(model_ref, provider_id)`` pairs to try, best first.

    ``openai/gpt-4o`` without a provider is tried as ``gpt-4o`` at ``openai`` first, then as written (some
    genai-prices models, e.g. Hugging Face ones, have a slash in their id).
    """
    prefix = provider_prefix(model_id)
    name = model_id[len(prefix) + 1 :] if prefix else model_id
    refs: list[tuple[str, str | None]]
    if provider:
        refs = [(model_id, provider), (name, provider)]
    elif prefix:
        refs = [(name, prefix), (model_id, None)]
    else:
        refs = [(model_id, None)]
    return list(dict.fromkeys(refs))
