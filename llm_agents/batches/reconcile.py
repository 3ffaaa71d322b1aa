"""Poll: release stale claims, refresh unfinished batches, and reconcile finished ones.

Reconciling reads the output and error files in chunks. Each chunk is one transaction that locks its
requests (``SELECT … FOR UPDATE SKIP LOCKED``, so a concurrent poller skips them), records each result
as an Execution of kind ``batch`` at batch prices, runs the handler in a savepoint, and marks the request
succeeded or failed. A handler's database writes therefore commit together with its request's new status,
and a request is handled once: a second poller either skips the locked rows or finds them finished.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from django.db import connections, transaction
from django.db.models import Field
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from .. import budgets, signals
from ..conf import app_settings
from ..events import emit
from ..models import Batch, BatchRequest
from ..pricing import Cost, calculate_cost
from ..redaction import redact_error
from ..tracking.lifecycle import begin_execution
from ..tracking.records import ExecutionRecord, SpanRecord
from ..tracking.rows import payload_for
from ..tracking.writer import write_payload
from .claims import db_alias, release_stale_claims, single_writer
from .client import batch_client
from .handlers import BatchRequestError, BatchResult, call_handler, failure_callback, get_handler
from .schema import SchemaValidationError, parse_structured

if TYPE_CHECKING:
    from ..providers.base import Usage
    from ..providers.openai import BatchOutputLine

__all__ = ["CHUNK_SIZE", "PollReport", "poll"]

logger = logging.getLogger("llm_agents")

CHUNK_SIZE = 500
#: The provider's batch statuses that end a batch (the others, validating, in_progress, finalizing and
#: cancelling, mean "not yet").
PROVIDER_STATUSES = {
    "completed": Batch.Status.COMPLETED,
    "failed": Batch.Status.FAILED,
    "expired": Batch.Status.EXPIRED,
    "cancelled": Batch.Status.CANCELLED,
}
#: Namespace of the execution and span ids made from a request's id (so a repeated write upserts).
RECORD_NAMESPACE = uuid.UUID("6f1c0c55-3d7e-4d0e-9a55-0b8c7f0e6a11")
UPDATED_FIELDS = [
    "status",
    "result",
    "input_tokens",
    "output_tokens",
    "total_cost",
    "execution",
    "error",
    "updated_at",
]

Progress = Callable[[str], None]


@dataclass
class PollReport:
    """What a poll did."""

    released: int = 0
    checked: int = 0
    reconciled: list[Batch] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "released": self.released,
            "checked": self.checked,
            "reconciled": len(self.reconciled),
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": list(self.errors),
        }


def poll(*, chunk_size: int = CHUNK_SIZE, progress: Progress | None = None) -> PollReport:
    """Release stale claims, retrieve every unfinished batch, and reconcile every finished one.

    Safe to repeat and to run in several processes at once: each request's handler runs once.
    """
    report = PollReport()
    if not app_settings.BATCH_ENABLED:
        return report
    alias = db_alias()
    with single_writer(alias):
        report.released = release_stale_claims()
        if report.released and progress:
            progress(f"released {report.released} stale claims")
        unfinished = list(Batch.objects.unfinished().order_by("submitted_at"))
        finished = Batch.objects.awaiting_reconciliation()
        if not unfinished and not finished.exists():
            return report
        client = batch_client()
        for batch in unfinished:
            _refresh(client, batch, report, progress)
        for batch in finished.order_by("completed_at", "pk"):
            try:
                _reconcile(client, batch, report, chunk_size, progress)
            except Exception as exc:
                logger.exception("llm_agents could not reconcile batch %s", batch.pk)
                report.errors.append(f"batch {batch.pk}: {type(exc).__name__}: {exc}")
    return report


def _timestamp(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if value else None


def _refresh(client: Any, batch: Batch, report: PollReport, progress: Progress | None) -> None:
    try:
        remote = client.batches.retrieve(batch.provider_batch_id)
    except Exception as exc:
        logger.warning("llm_agents could not retrieve batch %s: %s", batch.provider_batch_id, exc)
        report.errors.append(f"batch {batch.pk}: retrieve failed: {type(exc).__name__}: {exc}")
        return
    report.checked += 1
    status = PROVIDER_STATUSES.get(remote.status)
    if status is None:
        return
    errors = getattr(getattr(remote, "errors", None), "data", None) or []
    error = "; ".join(f"{e.code}: {e.message}" if e.code else str(e.message) for e in errors)
    finished_at = _timestamp(
        getattr(remote, f"{remote.status}_at", None) or getattr(remote, "completed_at", None)
    )
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.SUBMITTED).update(
        status=status,
        output_file_id=remote.output_file_id or "",
        error_file_id=remote.error_file_id or "",
        completed_at=finished_at or timezone.now(),
        error=redact_error(error),
    )
    if progress:
        progress(f"batch {batch.pk} ({batch.provider_batch_id}) is {status}")


def _lines(client: Any, file_id: str) -> Iterator[BatchOutputLine]:
    from ..providers.openai import read_batch_line  # the reader of OpenAI's answers; needs the SDK

    with client.files.with_streaming_response.content(file_id) as response:
        for raw in response.iter_lines():
            if not raw.strip():
                continue
            try:
                yield read_batch_line(raw)
            except (ValueError, AttributeError):
                logger.error("llm_agents skipped an unreadable line of batch file %s: %.200s", file_id, raw)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _reconcile(
    client: Any, batch: Batch, report: PollReport, chunk_size: int, progress: Progress | None
) -> None:
    handler = get_handler(batch.purpose)
    if handler is None:
        message = (
            f"batch {batch.pk}: no handler is registered for purpose {batch.purpose!r}; its results wait"
        )
        logger.warning("llm_agents %s", message)
        report.errors.append(message)
        return
    reconciler = _Reconciler(batch, handler, report)
    seen: set[str] = set()
    done = 0
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for chunk in _chunks(_lines(client, file_id), chunk_size):
            seen.update(line.custom_id for line in chunk)
            reconciler.results({line.custom_id: line for line in chunk})
            done += len(chunk)
            if progress:
                progress(f"batch {batch.pk}: {done} of {batch.request_count} results read")
    waiting = BatchRequest.objects.filter(batch=batch, status=BatchRequest.Status.SUBMITTED)
    missing = [
        custom_id
        for custom_id in waiting.values_list("custom_id", flat=True).iterator()
        if custom_id not in seen
    ]
    if missing:
        error = _missing_error(batch)
        for chunk in _chunks(missing, chunk_size):
            reconciler.failures(chunk, error)
        if progress:
            progress(f"batch {batch.pk}: {len(missing)} requests without a result failed ({error.code})")
    if waiting.exists():
        return  # another poller holds some of them, or a chunk failed: a later poll finishes the batch
    now = timezone.now()
    if Batch.objects.filter(pk=batch.pk, reconciled_at__isnull=True).update(reconciled_at=now):
        batch.reconciled_at = now
        report.reconciled.append(batch)
        emit(signals.batch_reconciled, sender=Batch, batch=batch)


def _missing_error(batch: Batch) -> BatchRequestError:
    if batch.status == Batch.Status.COMPLETED:
        return BatchRequestError(
            "the batch finished without a result for this request", code="missing_result"
        )
    detail = f": {batch.error}" if batch.error else ""
    return BatchRequestError(f"the batch {batch.status}{detail}", code=f"batch_{batch.status}")


class _Reconciler:
    """Reconciles the requests of one batch, a chunk per transaction."""

    def __init__(self, batch: Batch, handler: Any, report: PollReport) -> None:
        self.batch = batch
        self.handler = handler
        self.report = report
        self.alias = db_alias()
        self.priced_at = batch.submitted_at or batch.created_at
        self.finished_at = batch.completed_at or timezone.now()
        self.costs: dict[tuple[str, int, int, int], Cost] = {}

    def _lock(self, custom_ids: list[str]) -> list[BatchRequest]:
        requests = list(
            BatchRequest.objects.select_for_update(skip_locked=True).filter(
                batch=self.batch, status=BatchRequest.Status.SUBMITTED, custom_id__in=custom_ids
            )
        )
        for request in requests:
            request.batch = self.batch
        return requests

    def results(self, lines: dict[str, BatchOutputLine]) -> None:
        try:
            with transaction.atomic(using=self.alias):
                requests = self._lock(list(lines))
                if not requests:
                    return
                outcomes = [self._outcome(request, lines[request.custom_id]) for request in requests]
                records = [record for _, _, record in outcomes]
                if app_settings.TRACK_EXECUTIONS:
                    write_payload(payload_for(records), typed=True)
                # Counted once the results are stored: a reconcile that rolls back counts nothing.
                transaction.on_commit(functools.partial(settle_spend, records), using=self.alias)
                now = timezone.now()
                for request, outcome, record in outcomes:
                    request.execution_id = record.id if app_settings.TRACK_EXECUTIONS else None
                    request.updated_at = now
                    if isinstance(outcome, BatchResult):
                        self._succeed(request, outcome)
                    else:
                        self._fail(request, outcome)
                _save(requests, UPDATED_FIELDS, self.alias)
        except Exception as exc:
            logger.exception(
                "llm_agents could not reconcile %d results of batch %s", len(lines), self.batch.pk
            )
            self.report.errors.append(f"batch {self.batch.pk}: {type(exc).__name__}: {exc}")

    def failures(self, custom_ids: list[str], error: BatchRequestError) -> None:
        try:
            with transaction.atomic(using=self.alias):
                requests = self._lock(custom_ids)
                now = timezone.now()
                for request in requests:
                    request.updated_at = now
                    self._fail(request, error)
                _save(requests, ["status", "error", "updated_at"], self.alias)
        except Exception as exc:
            logger.exception(
                "llm_agents could not fail %d requests of batch %s", len(custom_ids), self.batch.pk
            )
            self.report.errors.append(f"batch {self.batch.pk}: {type(exc).__name__}: {exc}")

    # -- one request ----------------------------------------------------------------------------------

    def _outcome(
        self, request: BatchRequest, line: BatchOutputLine
    ) -> tuple[BatchRequest, Any, ExecutionRecord]:
        """The handler's input (a BatchResult, or the BatchRequestError for on_failure) and the record."""
        outcome: BatchResult | BatchRequestError
        payload = request.payload or {}
        answer, usage = line.response, line.response.usage
        if not line.ok:
            outcome = BatchRequestError(
                line.error_message, code=line.error_code, status_code=line.status_code
            )
        else:
            outcome = BatchResult(
                custom_id=request.custom_id,
                content=answer.content,
                usage={
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                },
                model=answer.model,
                finish_reason=answer.finish_reason,
                raw=line.body,
            )
            schema = payload.get("schema")
            if schema:
                try:
                    outcome.parsed = parse_structured(answer.content, schema)
                except SchemaValidationError as exc:
                    outcome = BatchRequestError(str(exc), code="invalid_output", status_code=line.status_code)
        record = self._record(request, line, outcome)
        if isinstance(outcome, BatchResult):
            outcome.execution_id = record.id if app_settings.TRACK_EXECUTIONS else None
        request.input_tokens = usage.input_tokens
        request.output_tokens = usage.output_tokens
        request.total_cost = record.total_cost
        return request, outcome, record

    def _cost(self, model: str, usage: Usage) -> Cost:
        key = (model, usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        cost = self.costs.get(key)
        if cost is None:
            cost = self.costs[key] = calculate_cost(
                model, usage.input_tokens, usage.output_tokens, usage.cached_tokens,
                at=self.priced_at, provider=self.batch.provider, batch=True,
            )  # fmt: skip
        return cost

    def _record(self, request: BatchRequest, line: BatchOutputLine, outcome: Any) -> ExecutionRecord:
        payload = request.payload or {}
        answer, usage = line.response, line.response.usage
        failed = isinstance(outcome, BatchRequestError)
        user_input = payload.get("input")
        record = begin_execution(
            "batch",
            request.purpose,
            id=uuid.uuid5(RECORD_NAMESPACE, f"{request.pk}:{self.batch.pk}"),
            started_at=self.priced_at,
            write_start=False,  # a result recorded after the fact, finished and written with its batch
            status="error" if failed else "success",
            model_id=request.model,
            chosen_model_id=answer.model or request.model,
            provider=self.batch.provider,
            temperature=payload.get("temperature"),
            finish_reason=answer.finish_reason,
            completed_at=self.finished_at,
            duration_ms=None,
            tenant_id=payload.get("tenant_id"),
            eval_run_id=uuid.UUID(payload["eval_run_id"]) if payload.get("eval_run_id") else None,
            subject_type_id=payload.get("subject_type_id"),
            subject_id=payload.get("subject_id", ""),
            parameters={"temperature": payload.get("temperature"), **(payload.get("params") or {})},
            system_prompt=payload.get("instructions") or "",
            user_prompt=user_input if isinstance(user_input, str) else json.dumps(user_input),
            response=answer.content,
            metadata={
                "batch_id": self.batch.pk,
                "provider_batch_id": self.batch.provider_batch_id,
                "custom_id": request.custom_id,
                "routing": request.routing,
            },
            error_class=type(outcome).__name__ if failed else "",
            error_message=str(outcome) if failed else "",
            pricing_source="unknown",
        )
        span = SpanRecord(
            name=request.model,
            kind="llm",
            id=uuid.uuid5(RECORD_NAMESPACE, f"{request.pk}:{self.batch.pk}:span"),
            status="error" if failed else "ok",
            model_id=answer.model or request.model,
            provider=self.batch.provider,
            input={"instructions": payload.get("instructions") or "", "input": user_input},
            output={"content": answer.content} if line.ok else None,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            error_class=record.error_class,
            error_message=record.error_message,
            metadata={"custom_id": request.custom_id, "request_id": line.request_id},
            started_at=self.priced_at,
            completed_at=self.finished_at,
        )
        record.spans.append(span)
        if usage.input_tokens or usage.output_tokens:
            cost = self._cost(request.model, usage)
            span.total_cost = cost.total_cost
            record.pricing_source = cost.source
            record.add_usage(
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens, input_cost=cost.input_cost, output_cost=cost.output_cost,
            )  # fmt: skip
        return record

    def _succeed(self, request: BatchRequest, result: BatchResult) -> None:
        parsed = result.parsed
        if hasattr(parsed, "model_dump"):
            parsed = parsed.model_dump(mode="json")
        request.result = {
            "content": result.content,
            "parsed": parsed,
            "usage": result.usage,
            "model": result.model,
            "finish_reason": result.finish_reason,
        }
        try:
            with handler_savepoint(self.alias):
                call_handler(self.handler, request, result)
        except Exception as exc:
            logger.exception(
                "llm_agents batch handler for %r raised on request %s", request.purpose, request.custom_id
            )
            request.status = BatchRequest.Status.FAILED
            request.error = redact_error(f"handler raised {type(exc).__name__}: {exc}")
            self.report.failed += 1
            return
        request.status = BatchRequest.Status.SUCCEEDED
        request.error = ""
        self.report.succeeded += 1

    def _fail(self, request: BatchRequest, error: BatchRequestError) -> None:
        request.status = BatchRequest.Status.FAILED
        request.error = redact_error(str(error))
        self.report.failed += 1
        on_failure = failure_callback(self.handler)
        if on_failure is None:
            return
        try:
            with handler_savepoint(self.alias):
                on_failure(request, error)
        except Exception as exc:
            logger.exception(
                "llm_agents batch on_failure for %r raised on request %s", request.purpose, request.custom_id
            )
            request.error += f" (on_failure raised {type(exc).__name__}: {exc})"


@contextmanager
def handler_savepoint(alias: str) -> Iterator[None]:
    """Run a handler so that whatever it wrote is undone if it raises, like ``transaction.atomic()``, but
    open the savepoint only when the handler first queries the database: a handler that writes
    elsewhere (a cache, a queue, a file) pays no round trips for it. ``on_commit`` callbacks the
    handler registered are dropped when it raises."""
    connection = connections[alias]
    savepoint: list[str | None] = []
    callbacks = len(connection.run_on_commit)

    def open_savepoint(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        if not savepoint:
            savepoint.append(None)  # the SAVEPOINT statement itself passes through here
            savepoint[0] = connection.savepoint()
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(open_savepoint):
            yield
        if connection.needs_rollback:
            raise TransactionManagementError(
                "the handler caught a database error and left the transaction needing a rollback"
            )
    except BaseException:
        del connection.run_on_commit[callbacks:]
        if savepoint and savepoint[0] is not None:
            connection.needs_rollback = False
            connection.savepoint_rollback(savepoint[0])
            connection.savepoint_commit(savepoint[0])
        raise
    if savepoint and savepoint[0] is not None:
        connection.savepoint_commit(savepoint[0])


def settle_spend(records: list[ExecutionRecord]) -> None:
    """Add the results' spend to the budgets' counters (a failure is logged: ``rebuild_aggregates``
    restores the counters from the executions)."""
    try:
        budgets.settle_executions(records)
    except Exception:
        logger.exception("llm_agents could not record the budget spend of %d batch results", len(records))


def _save(requests: list[BatchRequest], fields: list[str], alias: str) -> None:
    """UPDATE each request's ``fields`` with one statement run for every row (``executemany``, pipelined
    on PostgreSQL): far cheaper than ``bulk_update``'s CASE expressions for a chunk of rows."""
    if not requests:
        return
    connection = connections[alias]
    opts = BatchRequest._meta
    model_fields = [cast("Field[Any, Any]", opts.get_field(name)) for name in fields]  # concrete fields
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(cast(str, field.column))} = %s" for field in model_fields)
    sql = f"UPDATE {quote(opts.db_table)} SET {assignments} WHERE {quote(cast(str, opts.pk.column))} = %s"
    rows = [
        [field.get_db_prep_save(getattr(request, field.attname), connection) for field in model_fields]
        + [opts.pk.get_db_prep_value(request.pk, connection)]
        for request in requests
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
