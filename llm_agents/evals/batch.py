"""Evaluation runs through the Batch API (``mode="batch"``, purpose ``llm_agents.eval``).

:func:`submit` queues one batch request per item (inside ``evaluating(run.id)``, so each result's
Execution carries the run) and flushes them. The run stays ``running`` while the batch is out. Each
``batches.poll()`` that settles some of its requests hands them to :class:`EvalBatchHandler`, which asks,
once the poll's transaction has committed, for :func:`settle`: the settled items are scored (judges run
then) and written, and the run completes when every item is. A request the batch could not answer
(expired, failed, cancelled, an answer that breaks the schema) fails its item with that reason.

Scoring happens after the poll's transaction rather than inside its handler, so that no judge call
holds the poller's row locks. :func:`settle` is safe to repeat and to run in several processes: it
locks the run's row, and only items without a result are scored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connections, router, transaction

from .. import batches, context
from ..agents import Agent
from ..conf import app_settings
from ..models import BatchRequest, DatasetItem, EvalRun, Execution, PromptVersion
from .registry import EvaluatorSpec, resolve
from .scoring import ItemOutcome, evaluate, failure, finish, json_output, write_outcomes
from .target import batch_request, load_agent

__all__ = [
    "EVAL_PURPOSE",
    "SETTLE_CHUNK",
    "EvalBatchHandler",
    "check_batchable",
    "handler",
    "settle",
    "submit",
]

logger = logging.getLogger("llm_agents")

EVAL_PURPOSE = "llm_agents.eval"
#: Settled items scored and written per transaction.
SETTLE_CHUNK = 100


def check_batchable(agent_class: type[Agent]) -> None:
    """``ValueError`` for an agent the Batch API cannot run: one with tools (a batch request gets one
    answer, there is no tool loop)."""
    if agent_class.tools:
        raise ValueError(
            f"The agent {agent_class.__qualname__} has tools, so it cannot run in batch mode "
            '(a batch request gets one answer, with no tool loop); use mode="sync".'
        )


def submit(
    run: EvalRun,
    agent_class: type[Agent],
    items: Sequence[DatasetItem],
    *,
    prompt_version: PromptVersion | None,
) -> EvalRun:
    """Queue one batch request per item and flush them; an item whose request cannot be built (its input
    does not fit the agent, its prompt does not render) fails at once. Returns the run, still running
    unless every item failed."""
    check_batchable(agent_class)
    if not app_settings.BATCH_ENABLED:
        raise ValueError('BATCH_ENABLED is off, so a run cannot use mode="batch".')
    install_handler()
    alias = router.db_for_write(BatchRequest)
    failed: list[ItemOutcome] = []
    model = run.model or None
    with transaction.atomic(using=alias), context.evaluating(run.pk):
        for item in items:
            try:
                request = batch_request(agent_class, item.input, model=model, prompt_version=prompt_version)
            except Exception as exc:
                failed.append(failure(item, exc))
                continue
            batches.enqueue(
                purpose=EVAL_PURPOSE, routing={"eval_run": str(run.pk), "item": str(item.pk)}, **request
            )
        write_outcomes(run, failed)
    if len(failed) < len(items):
        try:
            report = batches.flush(EVAL_PURPOSE)
        except Exception:
            logger.exception("llm_agents could not flush the batch requests of evaluation run %s", run.pk)
        else:
            for problem in report.errors:
                logger.warning("llm_agents evaluation run %s: flush: %s", run.pk, problem)
    return settle(run)


class EvalBatchHandler:
    """The batch handler of purpose ``llm_agents.eval``: each settled request (answered or failed) asks
    for :func:`settle` of its run once the poll's transaction commits (once per run and transaction)."""

    def call(self, request: BatchRequest, result: Any) -> None:
        self.schedule(request)

    def on_failure(self, request: BatchRequest, error: Any) -> None:
        self.schedule(request)

    def schedule(self, request: BatchRequest) -> None:
        run_id = (request.routing or {}).get("eval_run")
        if not run_id:
            return
        alias = router.db_for_write(BatchRequest)  # the poll's transaction, which the handler runs in
        waiting = [entry[1] for entry in connections[alias].run_on_commit]
        if any(isinstance(callback, SettleRun) and callback.run_id == run_id for callback in waiting):
            return
        transaction.on_commit(SettleRun(run_id), using=alias)


class SettleRun:
    """An on-commit callback: settle one run, logging (never raising) what goes wrong."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __call__(self) -> None:
        try:
            settle(self.run_id)
        except Exception:
            logger.exception("llm_agents could not settle evaluation run %s", self.run_id)


handler = EvalBatchHandler()


def install_handler() -> None:
    """Register :data:`handler` for purpose ``llm_agents.eval`` (in every process that polls)."""
    batches.register_handler(EVAL_PURPOSE, handler)


def settle(run: EvalRun | uuid.UUID | str) -> EvalRun:
    """Score and write every item of a running batch-mode run whose request has settled (answered or
    failed), SETTLE_CHUNK items per transaction, and complete the run once every item is done. Returns
    the run as it is then; a run that is not a running batch run is returned untouched."""
    run_id = run.pk if isinstance(run, EvalRun) else uuid.UUID(str(run))
    alias = router.db_for_write(EvalRun)
    current = EvalRun.objects.using(alias).get(pk=run_id)
    if current.status != EvalRun.Status.RUNNING or current.mode != EvalRun.Mode.BATCH:
        return current
    scored = set(current.results.values_list("item_id", flat=True))
    settled = [
        request
        for request in BatchRequest.objects.using(alias)
        .filter(
            purpose=EVAL_PURPOSE,
            status__in=[BatchRequest.Status.SUCCEEDED, BatchRequest.Status.FAILED],
            created_at__gte=current.created_at,
            routing__eval_run=str(run_id),
        )
        .only("id", "status", "result", "error", "execution_id", "total_cost", "routing", "payload")
        .order_by("created_at", "id")
        if uuid.UUID(request.routing["item"]) not in scored
    ]
    if settled:
        try:
            agent_class = load_agent(current.target)
            specs = resolve(current.evaluators)
        except ValueError as exc:
            return finish(current, error=str(exc))
        for start in range(0, len(settled), SETTLE_CHUNK):
            if not settle_chunk(run_id, agent_class, specs, settled[start : start + SETTLE_CHUNK]):
                break
    current.refresh_from_db(using=alias)
    if (
        current.status == EvalRun.Status.RUNNING
        and current.completed_count + current.failed_count >= current.item_count
    ):
        return finish(current)
    return current


def settle_chunk(
    run_id: uuid.UUID,
    agent_class: type[Agent],
    specs: Sequence[EvaluatorSpec],
    requests: Sequence[BatchRequest],
) -> bool:
    """Score and write the items of ``requests`` that still have no result, holding the run's row lock
    (a concurrent settler waits, then finds them done). Returns False when the run stopped running."""
    alias = router.db_for_write(EvalRun)
    with transaction.atomic(using=alias):
        run = EvalRun.objects.using(alias).select_for_update().get(pk=run_id)
        if run.status != EvalRun.Status.RUNNING:
            return False
        item_ids = [uuid.UUID(request.routing["item"]) for request in requests]
        done = set(run.results.filter(item_id__in=item_ids).values_list("item_id", flat=True))
        items = DatasetItem.objects.using(alias).in_bulk(
            [item_id for item_id in item_ids if item_id not in done]
        )
        executions = Execution.objects.using(alias).in_bulk(
            [request.execution_id for request in requests if request.execution_id is not None]
        )
        outcomes = []
        with context.activate(None), context.evaluating(run.pk):
            for request, item_id in zip(requests, item_ids, strict=True):
                item = items.get(item_id)
                if item is None:
                    continue  # scored meanwhile, or the item was deleted
                outcomes.append(
                    outcome_of(request, item, agent_class, specs, executions.get(request.execution_id))
                )
        return write_outcomes(run, outcomes)


def outcome_of(
    request: BatchRequest,
    item: DatasetItem,
    agent_class: type[Agent],
    specs: Sequence[EvaluatorSpec],
    execution: Execution | None,
) -> ItemOutcome:
    """The outcome of a settled request: its failure, or its answer scored by the evaluators (the
    parsed answer, as an instance of the agent's pydantic schema, when the agent has a schema)."""
    tenant_id = execution.tenant_id if execution is not None else (request.payload or {}).get("tenant_id")
    outcome = ItemOutcome(
        item=item,
        execution_id=request.execution_id,
        tenant_id=tenant_id,
        started_at=execution.started_at if execution is not None else None,
        cost=Decimal(request.total_cost or 0),
    )
    if request.status != BatchRequest.Status.SUCCEEDED:
        outcome.failed = True
        outcome.errors.append(f"batch request failed: {request.error}")
        return outcome
    answer = request.result or {}
    output = answer.get("content", "")
    schema = agent_class.schema
    if schema is not None:
        output = answer.get("parsed")
        if hasattr(schema, "model_validate"):
            try:
                output = schema.model_validate(output)
            except ValueError as exc:
                outcome.failed = True
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
                return outcome
    outcome.output = json_output(output)
    if request.execution_id is None:
        outcome.errors.append("no execution was recorded for the result (TRACK_EXECUTIONS is off): no scores")
        return outcome
    evaluate(specs, outcome, output=output, execution=execution)
    return outcome
