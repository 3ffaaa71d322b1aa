"""What a model call cost, in US dollars.

``calculate_cost()`` prices a call's tokens at the rate in force when the call was made:

1. the :class:`~llm_agents.models.CostConfig` effective at that moment (an exact ``model`` before a
   ``match_pattern``; the latest ``effective_from`` not after the moment);
2. else the bundled genai-prices data, asked for its price at that moment;
3. else zero, with source ``"unknown"`` and one warning per model per process on the ``llm_agents`` logger.

Token counts follow the OpenTelemetry and genai-prices rule: ``input_tokens`` includes ``cached_tokens``
(reads from the provider's prompt cache) and ``cache_write_tokens`` (writes to it); each of the three parts is
priced at its own rate.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import threading
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Literal

from django.db import DatabaseError
from django.utils import timezone

from .conf import app_settings

if TYPE_CHECKING:
    from genai_prices import Usage
    from genai_prices.types import PriceCalculation, TieredPrices

    from .models import CostConfig

__all__ = ["Cost", "PricingSource", "calculate_cost", "cost_config_for"]

logger = logging.getLogger("llm_agents")

PricingSource = Literal["config", "genai_prices", "unknown"]

#: Costs are stored with 8 decimal places (see ``money_field``).
COST_PLACES = Decimal("0.00000001")
PER_MILLION = Decimal(1_000_000)
ZERO = Decimal(0)

#: The genai-prices request context that selects a model's batch price variant.
BATCH_CONTEXT = {"processing": "batch"}

_warned_unknown: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of one call. Each cost is rounded to 8 places; ``total_cost`` is the exact sum of
    ``input_cost`` and ``output_cost``. ``cache_read_cost`` and ``cache_write_cost`` are the parts of
    ``input_cost`` paid for the cached tokens and the cache writes."""

    input_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal
    source: PricingSource
    cache_read_cost: Decimal = ZERO
    cache_write_cost: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class _Costs:
    """Unrounded costs: the input cost and, within it, the cache reads' and writes' parts."""

    input_cost: Decimal
    output_cost: Decimal
    cache_read_cost: Decimal
    cache_write_cost: Decimal

    def scaled(self, factor: Decimal) -> _Costs:
        return _Costs(
            self.input_cost * factor,
            self.output_cost * factor,
            self.cache_read_cost * factor,
            self.cache_write_cost * factor,
        )


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
    at = _moment(at)
    tokens = _Tokens(input_tokens, output_tokens, cached_tokens, cache_write_tokens)

    config = cost_config_for(model_id, at=at, provider=provider)
    if config is not None:
        costs = _config_costs(config, tokens, model_id, at, provider)
        if batch:
            costs = costs.scaled(_batch_discount())
        return _cost(costs, "config")

    genai_costs = _genai_prices_costs(model_id, tokens, at, provider, batch)
    if genai_costs is not None:
        return _cost(genai_costs, "genai_prices")

    _warn_unknown(model_id)
    return _cost(_Costs(ZERO, ZERO, ZERO, ZERO), "unknown")


def cost_config_for(
    model_id: str, at: dt.datetime | None = None, provider: str | None = None
) -> CostConfig | None:
    """The cost config that prices ``model_id`` at ``at`` (default: now), or None.

    A config applies when ``effective_from <= at`` and (``effective_until`` is empty or ``at <
    effective_until``), and either its ``model`` equals the model id (or the id without a ``provider/``
    prefix) or its ``match_pattern`` matches the whole id (``re.fullmatch``). Among those: configs of
    ``provider`` or with a blank provider first; then an exact ``model`` before a pattern; then the latest
    ``effective_from``; then a config naming the provider before a blank one.
    """
    at = _moment(at)
    names = _model_names(model_id)
    provider = (provider or _provider_prefix(model_id) or "").lower()
    by_model, patterned = _cost_configs()
    candidates = [config for name in names for config in by_model.get(name, ())] + patterned
    candidates = [
        config
        for config in candidates
        if config.effective_from <= at and (config.effective_until is None or at < config.effective_until)
    ]
    ranked = []
    for config in candidates:
        exact = config.model in names
        if not exact and not _pattern_matches(config, names):
            continue
        config_provider = config.provider.lower()
        other_provider = bool(provider and config_provider and config_provider != provider)
        ranked.append(
            ((other_provider, not exact, -config.effective_from.timestamp(), not config_provider), config)
        )
    if not ranked:
        return None
    return min(ranked, key=lambda item: item[0])[1]


#: Seconds a process keeps its copy of the cost configs before reading them again. Saving or
#: deleting a CostConfig in this process refreshes it at once.
COST_CONFIG_TTL = 60.0


class _CostConfigCache:
    """Every CostConfig, by model, and those with a match pattern: read once per TTL, not per call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded_at = -COST_CONFIG_TTL
        self.by_model: dict[str, list[CostConfig]] = {}
        self.patterned: list[CostConfig] = []

    def get(self) -> tuple[dict[str, list[CostConfig]], list[CostConfig]]:
        if time.monotonic() - self.loaded_at >= COST_CONFIG_TTL:
            from .models import CostConfig

            by_model: dict[str, list[CostConfig]] = {}
            patterned: list[CostConfig] = []
            try:
                configs = list(CostConfig.objects.all())
            except DatabaseError:
                if self.loaded_at < 0:
                    raise
                logger.warning(
                    "Cost configs could not be read; prices from the last read are used meanwhile."
                )
                self.loaded_at = time.monotonic() - COST_CONFIG_TTL + 5  # try again in 5 seconds
                return self.by_model, self.patterned
            for config in configs:
                by_model.setdefault(config.model, []).append(config)
                if config.match_pattern:
                    patterned.append(config)
            with self.lock:
                self.by_model, self.patterned, self.loaded_at = by_model, patterned, time.monotonic()
        return self.by_model, self.patterned

    def clear(self, **kwargs: object) -> None:
        self.loaded_at = -COST_CONFIG_TTL


_cost_config_cache = _CostConfigCache()
_cost_configs = _cost_config_cache.get
#: Forget the cached cost configs (connected to CostConfig's post_save and post_delete).
clear_cost_config_cache = _cost_config_cache.clear


def _check_tokens(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative (got {value})")


def _moment(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return timezone.now()
    if timezone.is_naive(at):
        raise ValueError("at must be an aware datetime")
    return at


def _provider_prefix(model_id: str) -> str:
    prefix, slash, rest = model_id.partition("/")
    return prefix if slash and rest else ""


def _model_names(model_id: str) -> list[str]:
    """The id itself and, for ``provider/model``, the model name after the prefix."""
    prefix = _provider_prefix(model_id)
    return [model_id, model_id[len(prefix) + 1 :]] if prefix else [model_id]


def _pattern_matches(config: CostConfig, names: list[str]) -> bool:
    pattern = _compiled(config.match_pattern) if config.match_pattern else None
    return pattern is not None and any(pattern.fullmatch(name) for name in names)


@functools.lru_cache(maxsize=256)
def _compiled(match_pattern: str) -> re.Pattern[str] | None:
    """The compiled pattern, or None (warned about once) when it is not a valid regular expression."""
    try:
        return re.compile(match_pattern)
    except re.error as exc:
        logger.warning(
            "Cost config match_pattern %r is not a valid regular expression (%s); ignored.",
            match_pattern,
            exc,
        )
        return None


@dataclass(frozen=True, slots=True)
class _Tokens:
    """A call's token counts; ``input_tokens`` includes the cache reads and writes."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int

    def usage(self) -> Usage:
        """The counts as genai-prices' ``Usage``."""
        from genai_prices import Usage

        return Usage(
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cached_tokens,
            cache_write_tokens=self.cache_write_tokens,
            output_tokens=self.output_tokens,
        )


def _config_costs(
    config: CostConfig, tokens: _Tokens, model_id: str, at: dt.datetime, provider: str | None
) -> _Costs:
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
            genai_cost = _genai_cache_write_cost(model_id, tokens, at, provider)
            if genai_cost is None:
                genai_cost = cache_write_tokens * config.input_price_per_mtok / PER_MILLION
            cache_write_cost = genai_cost
    input_cost = plain_cost / PER_MILLION + cache_read_cost + cache_write_cost
    output_cost = tokens.output_tokens * config.output_price_per_mtok / PER_MILLION
    return _Costs(input_cost, output_cost, cache_read_cost, cache_write_cost)


def _genai_calculation(
    model_id: str, tokens: _Tokens, at: dt.datetime, provider: str | None
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


def _genai_prices_costs(
    model_id: str, tokens: _Tokens, at: dt.datetime, provider: str | None, batch: bool
) -> _Costs | None:
    from genai_prices import calc_price

    found = _genai_calculation(model_id, tokens, at, provider)
    if found is None:
        return None
    calculation, model_ref, provider_id = found
    if not batch:
        return _calculation_costs(calculation, tokens)
    if _has_batch_price(calculation, at):
        calculation = calc_price(
            tokens.usage(),
            model_ref,
            provider_id=provider_id,
            genai_request_timestamp=at,
            price_context=BATCH_CONTEXT,
        )
        return _calculation_costs(calculation, tokens)
    return _calculation_costs(calculation, tokens).scaled(_batch_discount())


def _calculation_costs(calculation: PriceCalculation, tokens: _Tokens) -> _Costs:
    """A genai-prices calculation's costs, with the cache reads' and writes' parts of its input cost.

    genai-prices prices cache tokens without a price of their own at the input price."""
    prices = calculation.model_price
    input_price = getattr(prices, "input_mtok", None)
    read_price = getattr(prices, "cache_read_mtok", None)
    write_price = getattr(prices, "cache_write_mtok", None)
    return _Costs(
        calculation.input_price,
        calculation.output_price,
        _unit_cost(read_price if read_price is not None else input_price, tokens.cached_tokens, tokens),
        _unit_cost(
            write_price if write_price is not None else input_price, tokens.cache_write_tokens, tokens
        ),
    )


def _genai_cache_write_cost(
    model_id: str, tokens: _Tokens, at: dt.datetime, provider: str | None
) -> Decimal | None:
    """What genai-prices charges for the cache writes of ``model_id`` at ``at``, or None when it
    has no cache-write price for the model."""
    found = _genai_calculation(model_id, tokens, at, provider)
    write_price = getattr(found[0].model_price, "cache_write_mtok", None) if found else None
    if write_price is None:
        return None
    return _unit_cost(write_price, tokens.cache_write_tokens, tokens)


def _unit_cost(price: Decimal | TieredPrices | None, count: int, tokens: _Tokens) -> Decimal:
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
    prefix = _provider_prefix(model_id)
    name = model_id[len(prefix) + 1 :] if prefix else model_id
    refs: list[tuple[str, str | None]]
    if provider:
        refs = [(model_id, provider), (name, provider)]
    elif prefix:
        refs = [(name, prefix), (model_id, None)]
    else:
        refs = [(model_id, None)]
    return list(dict.fromkeys(refs))


def _has_batch_price(calculation: PriceCalculation, at: dt.datetime) -> bool:
    """Whether genai-prices has a batch price for the calculated model at ``at``.

    genai-prices applies price variants only to a provider's own models, and only while the variant's
    constraint (usually a start date) holds.
    """
    model, provider = calculation.model, calculation.provider
    if not any(model is candidate for candidate in provider.models):
        return False
    for variant in model.price_variants or ():
        if variant.constraint is not None and not variant.constraint.active(at):
            continue
        if any(BATCH_CONTEXT.get(key) != value for key, value in variant.when.items()):
            continue
        if any(price is not None for price in vars(variant.prices).values()):
            return True
    return False


def _batch_discount() -> Decimal:
    return Decimal(str(app_settings.BATCH_DISCOUNT))


def _rounded(value: Decimal) -> Decimal:
    return Decimal(value).quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def _cost(costs: _Costs, source: PricingSource) -> Cost:
    input_cost, output_cost = _rounded(costs.input_cost), _rounded(costs.output_cost)
    return Cost(
        input_cost=input_cost,
        output_cost=output_cost,
        total_cost=input_cost + output_cost,
        source=source,
        cache_read_cost=_rounded(costs.cache_read_cost),
        cache_write_cost=_rounded(costs.cache_write_cost),
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
