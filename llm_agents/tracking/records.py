"""What is being recorded, in memory: an execution (with its spans and nested executions) and a span.

Records are built by :mod:`~llm_agents.tracking.lifecycle`, turned into rows by
:mod:`~llm_agents.tracking.rows` and written by :mod:`~llm_agents.tracking.writer`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from django.utils import timezone

from ..db.isolation import on_event_loop, on_worker
from ..pricing import ZERO, Cost, calculate_cost

logger = logging.getLogger("llm_agents")


@dataclass(frozen=True)
class SpanUsage:
    """What one llm span adds to its execution's totals."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    input_cost: Decimal = Decimal("0")
    output_cost: Decimal = Decimal("0")


NO_USAGE = SpanUsage()


@dataclass
class SpanRecord:
    """A span being recorded; ``input``/``output``/``metadata`` may be set inside the block.

    An ``llm`` span's usage is priced and rolled into its execution by :meth:`record_usage`.
    """

    name: str
    kind: str = "custom"
    parent: SpanRecord | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    status: str = "running"
    model_id: str = ""
    provider: str = ""
    input: Any = None
    output: Any = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_cost: Decimal = Decimal("0")
    duration_ms: int | None = None
    time_to_first_token_ms: int | None = None
    error_class: str = ""
    error_message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=timezone.now)
    completed_at: dt.datetime | None = None
    #: The execution this span belongs to (None outside any execution: then it is not recorded).
    execution: ExecutionRecord | None = field(default=None, repr=False, compare=False)
    #: What this span has added to its execution's totals so far.
    counted: SpanUsage = field(default=NO_USAGE, repr=False, compare=False)
    #: The spend of this span was recorded against the budgets when its call ended (a raw SDK call
    #: in an execution, checked on its own): its execution does not count it again.
    budget_settled: bool = field(default=False, repr=False)

    def finish(self, error: BaseException | None = None) -> None:
        self.completed_at = timezone.now()
        self.duration_ms = elapsed_ms(self.started_at, self.completed_at)
        if error is not None:
            self.status = "error"
            self.error_class = type(error).__name__
            self.error_message = str(error)
        elif self.status == "running":
            self.status = "ok"

    def record_usage(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        model_id: str | None = None,
    ) -> Cost:
        """Record the usage of the model call this span stands for, e.g. one made through an SDK the
        product does not wrap: set the span's tokens (and ``model_id`` when given), price them at the
        span's start like a provider's answer (cost config, else genai-prices; the span's ``provider``
        is preferred), set ``total_cost``, and add tokens and cost to the execution's totals.

        ``input_tokens`` includes ``cached_tokens`` (cache reads) and ``cache_write_tokens`` (cache
        writes), as everywhere in the product. Calling it again *replaces* the span's usage: the
        execution then counts the latest usage, once. Returns the :class:`~llm_agents.pricing.Cost`.

        Raises ``ValueError`` for a negative count, cache reads and writes exceeding
        ``input_tokens``, or tokens without a model id.
        """
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens),
                            ("cached_tokens", cached_tokens), ("cache_write_tokens", cache_write_tokens),
                            ("reasoning_tokens", reasoning_tokens)):  # fmt: skip
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (got {value!r})")
        if cached_tokens + cache_write_tokens > input_tokens:
            raise ValueError(
                f"cached_tokens ({cached_tokens}) + cache_write_tokens ({cache_write_tokens}) cannot exceed "
                f"input_tokens ({input_tokens}): input_tokens includes cache reads and writes"
            )
        if model_id is not None:
            self.model_id = model_id
        if (input_tokens or output_tokens) and not self.model_id:
            raise ValueError(f"Span {self.name!r} has no model_id: pass model_id= to price its tokens")
        return self.account(input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens)

    def account(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
                cache_write_tokens: int = 0, reasoning_tokens: int = 0) -> Cost:  # fmt: skip
        """Set, price and roll up this span's usage (:meth:`record_usage` without its checks). A
        pricing failure is logged and the tokens are recorded at zero cost."""
        self.input_tokens, self.output_tokens = input_tokens, output_tokens
        self.cached_tokens, self.cache_write_tokens = cached_tokens, cache_write_tokens
        self.reasoning_tokens = reasoning_tokens
        cost = Cost(ZERO, ZERO, ZERO, "unknown")
        if (input_tokens or output_tokens) and self.model_id:
            try:
                cost = price_call(
                    self.model_id, input_tokens, output_tokens, cached_tokens, cache_write_tokens,
                    at=self.started_at, provider=self.provider or None,
                )  # fmt: skip
            except Exception:
                logger.warning("Could not price %s; recorded at zero cost", self.model_id, exc_info=True)
        self.total_cost = cost.total_cost
        usage = SpanUsage(input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,
                          cost.input_cost, cost.output_cost)  # fmt: skip
        if self.execution is not None:
            previous = self.counted
            self.execution.add_usage(
                input_tokens=usage.input_tokens - previous.input_tokens,
                output_tokens=usage.output_tokens - previous.output_tokens,
                cached_tokens=usage.cached_tokens - previous.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens - previous.cache_write_tokens,
                reasoning_tokens=usage.reasoning_tokens - previous.reasoning_tokens,
                input_cost=usage.input_cost - previous.input_cost,
                output_cost=usage.output_cost - previous.output_cost,
            )
            if input_tokens or output_tokens:
                self.execution.pricing_source = cost.source
        self.counted = usage
        return cost

    def settle_usage(self) -> None:
        """Price and roll up tokens set on an ``llm`` span's attributes rather than through
        :meth:`record_usage` (run when a ``span()`` block ends)."""
        current = (self.input_tokens, self.output_tokens, self.cached_tokens, self.cache_write_tokens,
                   self.reasoning_tokens)  # fmt: skip
        counted = self.counted
        if self.kind != "llm" or current == (counted.input_tokens, counted.output_tokens, counted.cached_tokens,
                                             counted.cache_write_tokens, counted.reasoning_tokens):  # fmt: skip
            return
        self.account(*current)


def price_call(model_id: str, input_tokens: int, output_tokens: int, cached_tokens: int,
               cache_write_tokens: int, *, at: dt.datetime, provider: str | None) -> Cost:  # fmt: skip
    """:func:`~llm_agents.pricing.calculate_cost`, run on a worker thread when called on an event
    loop's thread (reading the cost configs is a query, which Django allows no async code to make)."""

    def run() -> Cost:
        return calculate_cost(model_id, input_tokens, output_tokens, cached_tokens, at=at, provider=provider,
                              cache_write_tokens=cache_write_tokens)  # fmt: skip

    if not on_event_loop():
        return run()
    return on_worker(run)


@dataclass(slots=True)
class ExecutionRecord:
    """An execution being recorded, with its spans and the executions nested in it.

    Its attributes after ``kind`` and ``agent_type`` (up to ``spans``) are the Execution columns of the
    same names, written as they stand whenever the record is (:func:`~llm_agents.tracking.rows.execution_row`);
    their defaults are the columns' defaults. ``id``, ``started_at`` and the parent's id complete the row.
    """

    kind: str
    agent_type: str
    parent: ExecutionRecord | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: dt.datetime = field(default_factory=timezone.now)
    status: str = "running"
    agent_version: str = ""
    model_id: str = ""
    chosen_model_id: str = ""
    provider: str = ""
    temperature: float | None = None
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    input_cost: Decimal = Decimal("0")
    output_cost: Decimal = Decimal("0")
    total_cost: Decimal = Decimal("0")
    pricing_source: str = "unknown"
    duration_ms: int | None = None
    time_to_first_token_ms: int | None = None
    completed_at: dt.datetime | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    system_prompt: str = ""
    user_prompt: str = ""
    response: str = ""
    error_class: str = ""
    error_message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    streaming: bool = False
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls_count: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    attempts_count: int = 0
    fallback_chain: list[str] = field(default_factory=list)
    fallback_reason: str = ""
    cache_hit: bool = False
    retryable: bool = False
    rate_limited: bool = False
    tenant_id: str | None = None
    prompt_version_id: int | None = None
    session_id: str = ""
    user_id: str = ""
    tags: list[str] = field(default_factory=list)
    eval_run_id: uuid.UUID | None = None
    experiment_id: int | None = None
    subject_type_id: int | None = None
    subject_id: str = ""
    spans: list[SpanRecord] = field(default_factory=list)
    children: list[ExecutionRecord] = field(default_factory=list)
    written: bool = False
    #: The budgets.Reservation of an agent call, settled when the record completes.
    budget_reservation: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.parent.children.append(self)

    @property
    def root(self) -> ExecutionRecord:
        record = self
        while record.parent is not None:
            record = record.parent
        return record

    def add_span(self, span: SpanRecord) -> SpanRecord:
        """Make ``span`` one of this execution's spans (its usage rolls up here)."""
        span.execution = self
        self.spans.append(span)
        return span

    def add_usage(self, *, input_tokens: int = 0, output_tokens: int = 0, cached_tokens: int = 0,
                  cache_write_tokens: int = 0, reasoning_tokens: int = 0, input_cost: Decimal = Decimal("0"),
                  output_cost: Decimal = Decimal("0")) -> None:  # fmt: skip
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += cached_tokens
        self.cache_write_tokens += cache_write_tokens
        self.reasoning_tokens += reasoning_tokens
        self.total_tokens += input_tokens + output_tokens
        self.input_cost += input_cost
        self.output_cost += output_cost
        self.total_cost += input_cost + output_cost

    def add_child_totals(self, child: ExecutionRecord) -> None:
        """Roll a nested execution's totals into this one, so root executions count everything once."""
        self.add_usage(
            input_tokens=child.input_tokens,
            output_tokens=child.output_tokens,
            cached_tokens=child.cached_tokens,
            cache_write_tokens=child.cache_write_tokens,
            reasoning_tokens=child.reasoning_tokens,
            input_cost=child.input_cost,
            output_cost=child.output_cost,
        )

    def walk(self) -> list[ExecutionRecord]:
        """This record and every nested one, parents before children."""
        records = [self]
        for child in self.children:
            records.extend(child.walk())
        return records


#: The Execution columns of a record that :func:`~llm_agents.tracking.lifecycle.begin_execution` takes
#: as keyword values (all but those it has parameters for, and the record's own bookkeeping).
EXECUTION_VALUES = frozenset(item.name for item in fields(ExecutionRecord)) - {
    "kind", "agent_type", "parent", "id", "started_at", "spans", "children", "written", "budget_reservation",
}  # fmt: skip


def elapsed_ms(start: dt.datetime, end: dt.datetime) -> int:
    return max(int((end - start).total_seconds() * 1000), 0)
