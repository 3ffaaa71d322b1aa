"""``sync_costs()`` (the ``sync_costs`` command): cost configs from the genai-prices data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import router, transaction

from .base import ZERO

__all__ = ["DEFAULT_SYNC_PROVIDERS", "PriceWindow", "SyncResult", "genai_price_windows", "sync_costs"]

#: Providers whose prices ``sync_costs`` copies when none are named: the ones the agents call.
DEFAULT_SYNC_PROVIDERS = ("openai", "anthropic")
#: ``effective_from`` of a genai-prices price that has no start date.
BEGINNING = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
PRICE_PLACES = Decimal("0.000001")


# -- sync_costs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceWindow:
    """One genai-prices price of a model over a span of time, as a cost config would hold it."""

    provider: str
    model: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    cached_input_price_per_mtok: Decimal | None
    cache_write_price_per_mtok: Decimal | None
    effective_from: dt.datetime
    effective_until: dt.datetime | None


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    models: int = 0
    unknown: list[str] = field(default_factory=list)


def genai_price_windows(
    providers: Iterable[str] | None = None, models: Iterable[str] | None = None
) -> list[PriceWindow]:
    """The price windows genai-prices holds for ``providers`` (default :data:`DEFAULT_SYNC_PROVIDERS`)
    and, if given, only ``models`` (model ids of those providers).

    A model with dated prices gets one window per date (each ending where the next begins); prices that
    apply at certain times of day only (off-peak) are left out, and tiered prices use their base tier.
    """
    from genai_prices.data import providers as catalogue

    wanted_providers = set(providers or DEFAULT_SYNC_PROVIDERS)
    wanted_models = set(models) if models else None
    windows = []
    for provider in catalogue:
        if provider.id not in wanted_providers:
            continue
        for model in provider.models:
            if wanted_models is not None and model.id not in wanted_models:
                continue
            windows.extend(_windows(provider.id, model))
    return windows


def _windows(provider: str, model: Any) -> list[PriceWindow]:
    from genai_prices.types import ModelPrice, StartDateConstraint

    if isinstance(model.prices, ModelPrice):
        dated = [(BEGINNING, model.prices)]
    else:
        dated = []
        for conditional in model.prices:
            constraint = conditional.constraint
            if constraint is None:
                dated.append((BEGINNING, conditional.prices))
            elif isinstance(constraint, StartDateConstraint):
                start = dt.datetime.combine(constraint.start_date, dt.time.min, tzinfo=dt.UTC)
                dated.append((start, conditional.prices))
        dated.sort(key=lambda item: item[0])
    windows = []
    for index, (start, prices) in enumerate(dated):
        input_price, output_price = (
            _base(getattr(prices, "input_mtok", None)),
            _base(getattr(prices, "output_mtok", None)),
        )
        if input_price is None and output_price is None:
            continue  # priced per request, per image, ...: not token prices
        until = dated[index + 1][0] if index + 1 < len(dated) else None
        if until is not None and until <= start:
            continue
        windows.append(
            PriceWindow(
                provider=provider,
                model=model.id,
                input_price_per_mtok=input_price or ZERO,
                output_price_per_mtok=output_price or ZERO,
                cached_input_price_per_mtok=_base(getattr(prices, "cache_read_mtok", None)),
                cache_write_price_per_mtok=_base(getattr(prices, "cache_write_mtok", None)),
                effective_from=start,
                effective_until=until,
            )
        )
    return windows


def _base(price: Any) -> Decimal | None:
    if price is None:
        return None
    value = getattr(price, "base", price)
    return Decimal(value).quantize(PRICE_PLACES)


def sync_costs(
    providers: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    progress: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Write a cost config (source ``genai_prices``) for every genai-prices price window of ``providers``
    and ``models``; a window already present (same provider, model and ``effective_from``) is updated if
    its prices or end changed and left alone otherwise, so running it again changes nothing. Manual cost
    configs are never touched. ``models`` that genai-prices does not know are listed in ``unknown``."""
    from ..models import CostConfig

    windows = genai_price_windows(providers, models)
    result = SyncResult(models=len({(w.provider, w.model) for w in windows}))
    if models:
        known = {w.model for w in windows}
        result.unknown = [model for model in models if model not in known]
    existing = {
        (c.provider, c.model, c.effective_from): c
        for c in CostConfig.objects.filter(source=CostConfig.Source.GENAI_PRICES, match_pattern="")
    }
    fields = (
        "input_price_per_mtok",
        "output_price_per_mtok",
        "cached_input_price_per_mtok",
        "cache_write_price_per_mtok",
        "effective_until",
    )
    with transaction.atomic(using=router.db_for_write(CostConfig)):
        for window in windows:
            config = existing.get((window.provider, window.model, window.effective_from))
            if config is None:
                if not dry_run:
                    CostConfig.objects.create(source=CostConfig.Source.GENAI_PRICES, **vars(window))
                result.created += 1
            elif any(getattr(config, name) != getattr(window, name) for name in fields):
                if not dry_run:
                    for name in fields:
                        setattr(config, name, getattr(window, name))
                    config.save(update_fields=[*fields, "updated_at"])
                result.updated += 1
            else:
                result.unchanged += 1
            if progress is not None and (result.created + result.updated + result.unchanged) % 100 == 0:
                progress(result)
    return result
