"""What the evaluators' own model calls cost (a judge's, or any agent an evaluator calls): the run's
``eval_cost``.

Inside :func:`metered`, every execution that completes at the top level adds its cost to the meter. The
count is a completion hook of the tracking lifecycle (:func:`count_spend`, registered by
``llm_agents.evals.install``), so it holds in every logging mode, before any row is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal

from ..tracking import lifecycle
from ..tracking.records import ExecutionRecord

__all__ = ["Meter", "count_spend", "install", "metered"]


@dataclass(slots=True)
class Meter:
    cost: Decimal = Decimal(0)


_meter: ContextVar[Meter | None] = ContextVar("llm_agents_eval_meter", default=None)


@contextmanager
def metered() -> Iterator[Meter]:
    """Count the cost of the top-level executions completed inside the block (nested ones are part of
    their parent's cost)."""
    meter = Meter()
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


def count_spend(record: ExecutionRecord) -> None:
    """The completion hook: add a top-level execution's cost to the meter of its context, if any."""
    meter = _meter.get()
    if meter is not None and record.parent is None:
        meter.cost += Decimal(record.total_cost or 0)


def install() -> None:
    """Register :func:`count_spend` with the tracking lifecycle (once, however often it is called)."""
    lifecycle.add_completion_hook(count_spend)
