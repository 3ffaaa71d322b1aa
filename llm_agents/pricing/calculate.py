"""``calculate_cost()``: the price of a call's tokens at the rate in force when it was made."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING

from .base import PER_MILLION, ZERO, Cost, Costs, PricingSource, Tokens, moment, rounded
from .batch import batch_discount
from .configs import cost_config_for
from .genai import genai_cache_write_cost, genai_prices_costs

if TYPE_CHECKING:
    from ..models import CostConfig

logger = logging.getLogger("llm_agents")

_warned_unknown: set[str] = set()
_warned_lock = threading.Lock()


def calculate_cost(
    model_id: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    at: dt.datetime | None = None,
    provider: str | None = None,
    batch: bool = False,
    cache_write_tokens: int = 0,
) -> Cost:
    """Price a call of ``model_id`` made at ``at`` (default: now).

    ``input_tokens`` includes ``cached_tokens`` (cache reads, priced at the cached input price) and
    ``cache_write_tokens`` (cache writes, priced at the cache-write price: a cost config's
    ``cache_write_price_per_mtok``, else genai-prices' cache-write price for the model, else the input
    price). ``provider`` (e.g. ``"openai"``) prefers cost configs of that provider and is passed to
    genai-prices; a ``"provider/model"`` id without ``provider`` uses its prefix as the provider.
    ``batch=True`` prices a batch API result: a cost config's price × ``BATCH_DISCOUNT``, else
    genai-prices' batch price, else its standard price × ``BATCH_DISCOUNT``.

    Raises ``ValueError`` for negative token counts, ``cached_tokens + cache_write_tokens >
    input_tokens`` or a naive ``at``.
    """
    _check_tokens(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
    )
    if cached_tokens + cache_write_tokens > input_tokens:
        raise ValueError(
            f"cached_tokens ({cached_tokens}) + cache_write_tokens ({cache_write_tokens}) cannot exceed "
            f"input_tokens ({input_tokens}): input_tokens includes cache reads and writes"
        )
    at = moment(at)
    tokens = Tokens(input_tokens, output_tokens, cached_tokens, cache_write_tokens)

    config = cost_config_for(model_id, at=at, provider=provider)
    if config is not None:
        costs = _config_costs(config, tokens, model_id, at, provider)
        if batch:
            costs = costs.scaled(batch_discount())
        return priced(costs, "config")

    genai_costs = genai_prices_costs(model_id, tokens, at, provider, batch)
    if genai_costs is not None:
        return priced(genai_costs, "genai_prices")

    _warn_unknown(model_id)
    return priced(Costs(ZERO, ZERO, ZERO, ZERO), "unknown")


def _check_tokens(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative (got {value})")


def _config_costs(
    config: CostConfig, tokens: Tokens, model_id: str, at: dt.datetime, provider: str | None
) -> Costs:
    cached_tokens, cache_write_tokens = tokens.cached_tokens, tokens.cache_write_tokens
    cached_price = config.cached_input_price_per_mtok
    if cached_price is None:
        cached_price = config.input_price_per_mtok
    plain_cost = (tokens.input_tokens - cached_tokens - cache_write_tokens) * config.input_price_per_mtok
    cache_read_cost = cached_tokens * cached_price / PER_MILLION
    cache_write_cost = ZERO
    if cache_write_tokens:
        write_price = config.cache_write_price_per_mtok
        if write_price is not None:
            cache_write_cost = cache_write_tokens * write_price / PER_MILLION
        else:
            genai_cost = genai_cache_write_cost(model_id, tokens, at, provider)
            if genai_cost is None:
                genai_cost = cache_write_tokens * config.input_price_per_mtok / PER_MILLION
            cache_write_cost = genai_cost
    input_cost = plain_cost / PER_MILLION + cache_read_cost + cache_write_cost
    output_cost = tokens.output_tokens * config.output_price_per_mtok / PER_MILLION
    return Costs(input_cost, output_cost, cache_read_cost, cache_write_cost)


def priced(costs: Costs, source: PricingSource) -> Cost:
    """``costs`` rounded to 8 places, as the :class:`Cost` of ``source``."""
    input_cost, output_cost = rounded(costs.input_cost), rounded(costs.output_cost)
    return Cost(
        input_cost=input_cost,
        output_cost=output_cost,
        total_cost=input_cost + output_cost,
        source=source,
        cache_read_cost=rounded(costs.cache_read_cost),
        cache_write_cost=rounded(costs.cache_write_cost),
    )


def _warn_unknown(model_id: str) -> None:
    with _warned_lock:
        if model_id in _warned_unknown:
            return
        _warned_unknown.add(model_id)
    logger.warning(
        "No price known for model %r: its cost is recorded as 0 (source 'unknown'). "
        "Add a CostConfig for it, or run sync_costs.",
        model_id,
    )
