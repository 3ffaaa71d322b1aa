"""What every source of prices shares: the cost of a call (:class:`Cost`), its token counts, the
moment it is priced at, and the rounding of amounts to the 8 places they are stored with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Literal

from django.utils import timezone

if TYPE_CHECKING:
    from genai_prices import Usage

PricingSource = Literal["config", "genai_prices", "unknown"]

#: Costs are stored with 8 decimal places (see ``money_field``).
COST_PLACES = Decimal("0.00000001")
PER_MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


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
class Costs:
    """Unrounded costs: the input cost and, within it, the cache reads' and writes' parts."""

    input_cost: Decimal
    output_cost: Decimal
    cache_read_cost: Decimal
    cache_write_cost: Decimal

    def scaled(self, factor: Decimal) -> Costs:
        return Costs(
            self.input_cost * factor,
            self.output_cost * factor,
            self.cache_read_cost * factor,
            self.cache_write_cost * factor,
        )


@dataclass(frozen=True, slots=True)
class Tokens:
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


def moment(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return timezone.now()
    if timezone.is_naive(at):
        raise ValueError("at must be an aware datetime")
    return at


def provider_prefix(model_id: str) -> str:
    prefix, slash, rest = model_id.partition("/")
    return prefix if slash and rest else ""


def model_names(model_id: str) -> list[str]:
    """The id itself and, for ``provider/model``, the model name after the prefix."""
    prefix = provider_prefix(model_id)
    return [model_id, model_id[len(prefix) + 1 :]] if prefix else [model_id]


def rounded(value: Decimal) -> Decimal:
    return Decimal(value).quantize(COST_PLACES, rounding=ROUND_HALF_UP)
