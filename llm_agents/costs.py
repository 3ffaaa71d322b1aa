"""Cost management: cost configs from genai-prices, and re-pricing recorded executions.

``sync_costs()`` and ``recompute_costs()`` are what the ``sync_costs`` and ``recompute_costs`` commands
run; both take ``dry_run`` and a ``progress`` callback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import router, transaction
from django.db.models import Q

from .pricing import ZERO, Cost, calculate_cost

__all__ = ["DEFAULT_SYNC_PROVIDERS", "RecomputeResult", "SyncResult", "recompute_costs", "sync_costs"]

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
    from .models import CostConfig

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


# -- recompute_costs ----------------------------------------------------------------------------


@dataclass
class RecomputeResult:
    executions: int = 0
    changed: int = 0
    spans_changed: int = 0
    old_total: Decimal = ZERO
    new_total: Decimal = ZERO
    chunks: int = 0


def recompute_costs(
    since: dt.datetime,
    until: dt.datetime | None = None,
    *,
    dry_run: bool = False,
    chunk_size: int = 500,
    progress: Callable[[RecomputeResult], None] | None = None,
) -> RecomputeResult:
    """Re-price the root executions started in ``[since, until)``, with everything nested in them, at
    the prices in force when each execution started (:func:`~llm_agents.pricing.calculate_cost` with
    ``at=started_at``).

    Each llm span is priced from its tokens; an execution costs its llm spans plus its nested executions
    (one with tokens but no llm span, such as a batch result, is priced from its own tokens). Totals are
    those of root executions, so nothing is counted twice. Chunks of ``chunk_size`` root executions are
    written in one transaction each; ``dry_run`` computes and writes nothing.
    """
    from .models import Execution

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size!r}.")
    result = RecomputeResult()
    roots = Execution.objects.filter(parent__isnull=True, started_at__gte=since)
    if until is not None:
        roots = roots.filter(started_at__lt=until)
    roots = roots.order_by("started_at", "pk")
    cursor: tuple[dt.datetime, Any] | None = None
    while True:
        chunk = roots
        if cursor is not None:
            chunk = chunk.filter(Q(started_at__gt=cursor[0]) | Q(started_at=cursor[0], pk__gt=cursor[1]))
        batch = list(chunk[:chunk_size])
        if not batch:
            break
        cursor = (batch[-1].started_at, batch[-1].pk)
        _recompute_trees(batch, result, dry_run=dry_run)
        result.chunks += 1
        if progress is not None:
            progress(result)
    return result


def _recompute_trees(roots: list[Any], result: RecomputeResult, *, dry_run: bool) -> None:
    from .models import Execution, Span

    executions = {execution.pk: execution for execution in roots}
    level = list(executions)
    while level:
        children = list(Execution.objects.filter(parent_id__in=level))
        executions.update((child.pk, child) for child in children)
        level = [child.pk for child in children]
    spans: dict[Any, list[Any]] = {}
    for span in Span.objects.filter(execution_id__in=list(executions), kind=Span.Kind.LLM).order_by(
        "started_at"
    ):
        spans.setdefault(span.execution_id, []).append(span)
    kids: dict[Any, list[Any]] = {}
    for execution in executions.values():
        if execution.parent_id is not None:
            kids.setdefault(execution.parent_id, []).append(execution)

    changed_executions, changed_spans = [], []
    new_costs: dict[Any, tuple[Decimal, Decimal, str]] = {}

    def price(execution: Any) -> tuple[Decimal, Decimal, str]:
        if execution.pk in new_costs:
            return new_costs[execution.pk]
        input_cost, output_cost, source = ZERO, ZERO, execution.pricing_source
        own_spans = spans.get(execution.pk, [])
        for span in own_spans:
            cost = _price(span.model_id or execution.chosen_model_id or execution.model_id, span.input_tokens,
                          span.output_tokens, span.cached_tokens, span.cache_write_tokens, execution,
                          span.provider)  # fmt: skip
            input_cost += cost.input_cost
            output_cost += cost.output_cost
            source = cost.source
            if cost.total_cost != span.total_cost:
                span.total_cost = cost.total_cost
                changed_spans.append(span)
        nested = kids.get(execution.pk, [])
        if not own_spans and not nested and (execution.input_tokens or execution.output_tokens):
            cost = _price(execution.chosen_model_id or execution.model_id, execution.input_tokens,
                          execution.output_tokens, execution.cached_tokens, execution.cache_write_tokens,
                          execution, execution.provider)  # fmt: skip
            input_cost, output_cost, source = cost.input_cost, cost.output_cost, cost.source
        for child in nested:
            child_input, child_output, _ = price(child)
            input_cost += child_input
            output_cost += child_output
        new_costs[execution.pk] = (input_cost, output_cost, source)
        if (input_cost, output_cost) != (execution.input_cost, execution.output_cost):
            execution.input_cost, execution.output_cost = input_cost, output_cost
            execution.total_cost = input_cost + output_cost
            execution.pricing_source = source
            changed_executions.append(execution)
        return new_costs[execution.pk]

    for root in roots:
        result.old_total += root.total_cost
        input_cost, output_cost, _ = price(root)
        result.new_total += input_cost + output_cost
    result.executions += len(executions)
    result.changed += len(changed_executions)
    result.spans_changed += len(changed_spans)
    if dry_run or not (changed_executions or changed_spans):
        return
    with transaction.atomic(using=router.db_for_write(Execution)):
        Span.objects.bulk_update(changed_spans, ["total_cost"], batch_size=500)
        Execution.objects.bulk_update(
            changed_executions, ["input_cost", "output_cost", "total_cost", "pricing_source"], batch_size=500
        )


def _price(model: str, input_tokens: int, output_tokens: int, cached_tokens: int, cache_write_tokens: int,
           execution: Any, provider: str) -> Cost:  # fmt: skip
    cached_tokens = min(cached_tokens, input_tokens)
    return calculate_cost(
        model,
        input_tokens,
        output_tokens,
        cached_tokens,
        at=execution.started_at,
        provider=provider or None,
        batch=execution.kind == "batch",
        cache_write_tokens=min(cache_write_tokens, input_tokens - cached_tokens),
    )
