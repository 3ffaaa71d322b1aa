"""Scoring one item's output, and storing what came of the items: their EvalResults, Scores and the run's
counters, written a group at a time; then the end of the run (status, summary, ``eval_run_completed``)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import router, transaction
from django.db.models import F
from django.utils import timezone

from .. import context, signals
from ..agents import Agent
from ..events import emit
from ..models import DatasetItem, EvalResult, EvalRun, Execution, PromptVersion, Score
from ..tracking.records import ExecutionRecord
from ..tracking.rows import execution_row
from .metering import metered
from .registry import EvaluatorSpec, Judgement
from .target import agent_call

__all__ = [
    "FLUSH_EVERY",
    "FLUSH_INTERVAL",
    "ItemOutcome",
    "OutcomeWriter",
    "call_item",
    "evaluate",
    "execution_from",
    "failure",
    "finish",
    "json_output",
    "write_outcomes",
]

logger = logging.getLogger("llm_agents")

#: Outcomes are written once this many are waiting, or once FLUSH_INTERVAL seconds have passed.
FLUSH_EVERY = 50
FLUSH_INTERVAL = 1.0

Progress = Callable[[EvalRun], None]


@dataclass(slots=True)
class ItemOutcome:
    """What came of one item: the agent's output and execution, the evaluators' judgements, the errors
    (the agent's, or an evaluator's), and what the agent call and the evaluators' calls cost."""

    item: DatasetItem
    output: Any = None
    execution_id: uuid.UUID | None = None
    tenant_id: str | None = None
    started_at: dt.datetime | None = None  # the execution's, copied onto its scores
    failed: bool = False
    errors: list[str] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)
    cost: Decimal = Decimal(0)
    eval_cost: Decimal = Decimal(0)


def failure(item: DatasetItem, error: BaseException | str, **values: Any) -> ItemOutcome:
    """The outcome of an item the agent could not answer."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return ItemOutcome(item=item, failed=True, errors=[message], **values)


def json_output(value: Any) -> Any:
    """What EvalResult.output stores: the text, or the parsed answer as JSON (a pydantic model's fields)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def execution_from(record: ExecutionRecord) -> Execution:
    """The Execution of a finished call as its row reads (without a query, whatever the logging mode)."""
    return Execution(**execution_row(record))


def evaluate(
    specs: Sequence[EvaluatorSpec], outcome: ItemOutcome, *, output: Any, execution: Execution | None
) -> None:
    """Run every evaluator on ``output``: each adds a judgement, or an error naming it (and the run goes
    on). What their own model calls cost (a judge's) is added to ``outcome.eval_cost``. Call inside
    ``context.evaluating(run.id)``, so that those calls belong to the run."""
    item = outcome.item
    with metered() as meter:
        for spec in specs:
            try:
                outcome.judgements.append(
                    spec.score(output=output, expected=item.expected_output, item=item, execution=execution)
                )
            except Exception as exc:
                logger.debug("llm_agents evaluator %s raised on item %s", spec.name, item.pk, exc_info=True)
                outcome.errors.append(f"{spec.name}: {type(exc).__name__}: {exc}")
    outcome.eval_cost += meter.cost


def call_item(
    run_id: Any,
    agent_class: type[Agent],
    specs: Sequence[EvaluatorSpec],
    item: DatasetItem,
    *,
    model: str | None,
    prompt_version: PromptVersion | None,
) -> ItemOutcome:
    """Call the agent with the item's input (an execution of the run, at the top level), then score its
    output. Never raises for the item's sake: a failed call is a failed outcome."""
    with context.activate(None), context.evaluating(run_id):
        call = None
        try:
            call = agent_call(agent_class, item.input, model=model, prompt_version=prompt_version)
            result = call.call()
        except Exception as exc:
            record = getattr(call, "record", None)
            if record is None:
                return failure(item, exc)
            return failure(
                item, exc, execution_id=record.id, tenant_id=record.tenant_id, started_at=record.started_at,
                cost=record.total_cost,
            )  # fmt: skip
        record = call.record
        output = result.parsed if agent_class.schema is not None else result.content
        outcome = ItemOutcome(
            item=item, output=json_output(output), execution_id=record.id, tenant_id=record.tenant_id,
            started_at=record.started_at, cost=Decimal(record.total_cost or 0),
        )  # fmt: skip
        evaluate(specs, outcome, output=output, execution=execution_from(record))
        return outcome


def write_outcomes(run: EvalRun, outcomes: Sequence[ItemOutcome]) -> bool:
    """Write the outcomes' EvalResults and Scores and add them to the run's counters and costs, in one
    transaction (a few statements for the whole group). Returns False, writing nothing, when the run is
    no longer running (it was cancelled, or it failed)."""
    if not outcomes:
        return run.status == EvalRun.Status.RUNNING
    alias = router.db_for_write(EvalResult)
    failed = sum(1 for outcome in outcomes if outcome.failed)
    cost = sum((Decimal(outcome.cost) for outcome in outcomes), Decimal(0))
    eval_cost = sum((Decimal(outcome.eval_cost) for outcome in outcomes), Decimal(0))
    with transaction.atomic(using=alias):
        updated = (
            EvalRun.objects.using(alias)
            .filter(pk=run.pk, status=EvalRun.Status.RUNNING)
            .update(
                completed_count=F("completed_count") + len(outcomes) - failed,
                failed_count=F("failed_count") + failed,
                total_cost=F("total_cost") + cost,
                eval_cost=F("eval_cost") + eval_cost,
            )
        )
        if not updated:
            return False
        results = EvalResult.objects.using(alias).bulk_create(
            [
                EvalResult(
                    run=run,
                    item=outcome.item,
                    execution_id=outcome.execution_id,
                    output=outcome.output,
                    error="\n".join(outcome.errors),
                )  # fmt: skip
                for outcome in outcomes
            ]
        )
        if any(result.pk is None for result in results):  # a database that returns no ids from bulk inserts
            ids = dict(
                EvalResult.objects.using(alias)
                .filter(run=run, item__in=[outcome.item for outcome in outcomes])
                .values_list("item_id", "pk")
            )
            for result in results:
                result.pk = ids[result.item_id]
        scores = Score.objects.using(alias).bulk_create(
            [
                Score(
                    execution_id=outcome.execution_id,
                    name=judgement.name,
                    data_type=judgement.data_type,
                    value=judgement.value,
                    comment=judgement.comment,
                    source=Score.Source.EVALUATOR,
                    eval_run=run,
                    eval_result=result,
                    tenant_id=outcome.tenant_id,
                    execution_started_at=outcome.started_at,
                )  # fmt: skip
                for result, outcome in zip(results, outcomes, strict=True)
                if outcome.execution_id is not None
                for judgement in outcome.judgements
            ]
        )
        if scores and signals.score_created.has_listeners():
            transaction.on_commit(functools.partial(announce_scores, scores), using=alias)
    run.completed_count += len(outcomes) - failed
    run.failed_count += failed
    run.total_cost = Decimal(run.total_cost or 0) + cost
    run.eval_cost = Decimal(run.eval_cost or 0) + eval_cost
    return True


def announce_scores(scores: list[Score]) -> None:
    for score in scores:
        emit(signals.score_created, sender=Score, score=score)


class OutcomeWriter:
    """Gathers outcomes and writes them a group at a time (every FLUSH_EVERY outcomes or FLUSH_INTERVAL
    seconds), telling ``progress`` after each group. ``running`` turns False when the run stopped
    running meanwhile (cancelled): the caller stops sending items."""

    def __init__(self, run: EvalRun, progress: Progress | None = None) -> None:
        self.run = run
        self.progress = progress
        self.waiting: list[ItemOutcome] = []
        self.written_at = time.monotonic()
        self.running = True

    def add(self, outcome: ItemOutcome) -> None:
        self.waiting.append(outcome)
        if len(self.waiting) >= FLUSH_EVERY or time.monotonic() - self.written_at >= FLUSH_INTERVAL:
            self.flush()

    def flush_if_due(self) -> None:
        """Write what is waiting once FLUSH_INTERVAL seconds have passed since the last write."""
        if self.waiting and time.monotonic() - self.written_at >= FLUSH_INTERVAL:
            self.flush()

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        self.written_at = time.monotonic()
        if not waiting or not self.running:
            return
        self.running = write_outcomes(self.run, waiting)
        if self.running and self.progress is not None:
            self.progress(self.run)


def finish(run: EvalRun, *, error: str = "") -> EvalRun:
    """End a running run: ``completed`` with its summary (``run.summarize()``), or ``failed`` with
    ``error`` (and the summary of what was done); ``eval_run_completed`` is sent once the transaction
    commits. A run that is no longer running is returned as it is."""
    alias = router.db_for_write(EvalRun)
    run.refresh_from_db(using=alias)
    if run.status != EvalRun.Status.RUNNING:
        return run
    try:
        summary = run.summarize()
    except Exception as exc:
        logger.exception("llm_agents could not summarize evaluation run %s", run.pk)
        summary = {}
        error = error or f"the summary could not be computed: {type(exc).__name__}: {exc}"
    status = EvalRun.Status.FAILED if error else EvalRun.Status.COMPLETED
    now = timezone.now()
    with transaction.atomic(using=alias):
        updated = (
            EvalRun.objects.using(alias)
            .filter(pk=run.pk, status=EvalRun.Status.RUNNING)
            .update(status=status, summary=summary, error=error, completed_at=now)
        )
        if updated:
            run.status, run.summary, run.error, run.completed_at = status, summary, error, now
            transaction.on_commit(
                functools.partial(emit, signals.eval_run_completed, sender=EvalRun, run=run), using=alias
            )
    if not updated:
        run.refresh_from_db(using=alias)
    return run
