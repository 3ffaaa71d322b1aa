"""``recompute_costs()`` (the ``recompute_costs`` command): re-pricing recorded executions at the
prices in force when each started."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import router, transaction
from django.db.models import Q

from .base import ZERO, Cost
from .calculate import calculate_cost

__all__ = ["RecomputeResult", "recompute_costs"]


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
    from ..models import Execution

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
    from ..models import Execution, Span
    from ..models.rollups import spend_by_model

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

    def spent_in(execution: Any) -> list[tuple[str, Decimal, int]]:
        answered = execution.chosen_model_id or execution.model_id
        spent = [(span.model_id or answered, span.total_cost, span.input_tokens + span.output_tokens)
                 for span in spans.get(execution.pk, [])]  # fmt: skip
        for child in kids.get(execution.pk, []):
            spent.extend(spent_in(child))
        return spent

    # Spend by model follows the new prices (model_spend; the rollups follow it through their triggers).
    changed = {execution.pk for execution in changed_executions}
    for execution in executions.values():
        spend = spend_by_model(execution.chosen_model_id or execution.model_id, execution.total_cost,
                               execution.total_tokens, spent_in(execution))  # fmt: skip
        if spend != (execution.model_spend or {}):
            execution.model_spend = spend
            if execution.pk not in changed:
                changed.add(execution.pk)
                changed_executions.append(execution)
    result.executions += len(executions)
    result.changed += len(changed_executions)
    result.spans_changed += len(changed_spans)
    if dry_run or not (changed_executions or changed_spans):
        return
    with transaction.atomic(using=router.db_for_write(Execution)):
        Span.objects.bulk_update(changed_spans, ["total_cost"], batch_size=500)
        Execution.objects.bulk_update(
            changed_executions,
            ["input_cost", "output_cost", "total_cost", "pricing_source", "model_spend"],
            batch_size=500,
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
