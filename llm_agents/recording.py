"""Turning what ran into Execution and Span rows: in-memory records, redaction, and the writers.

Synchronous mode writes a ``running`` row when an execution starts and completes it at the end.
``ASYNC_LOGGING`` sends each finished root execution, with everything nested in it, to the Celery
task ``record_executions`` in one message; if the broker cannot be reached it writes synchronously.
Writes are upserts keyed by the client-made UUIDs, so a retried write never duplicates a row.
Tracking failures are logged and never reach the caller.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import functools
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, close_old_connections, connections, router, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

from .conf import app_settings
from .pricing import ZERO, Cost, calculate_cost
from .redaction import Redactor, current_redactor
from .statements import run_bound, run_prepared

logger = logging.getLogger("llm_agents")

EXECUTION_TOTALS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
)
COST_FIELDS = ("input_cost", "output_cost", "total_cost")


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
                self.execution.fields["pricing_source"] = cost.source
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

    if not _on_event_loop():
        return run()

    def off_loop() -> Cost:
        close_old_connections()
        try:
            return run()
        finally:
            close_old_connections()

    return _pricer.submit(off_loop).result()


_pricer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm_agents_pricer")


@dataclass
class ExecutionRecord:
    """An execution being recorded, with its spans and the executions nested in it."""

    kind: str
    agent_type: str
    parent: ExecutionRecord | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    fields: dict[str, Any] = field(default_factory=dict)
    spans: list[SpanRecord] = field(default_factory=list)
    children: list[ExecutionRecord] = field(default_factory=list)
    started_at: dt.datetime = field(default_factory=timezone.now)
    written: bool = False
    #: The budgets.Reservation of an agent call, settled when the record completes.
    budget_reservation: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in (*EXECUTION_TOTALS, "tool_calls_count", "attempts_count"):
            self.fields.setdefault(name, 0)
        for name in COST_FIELDS:
            self.fields.setdefault(name, Decimal("0"))
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
        fields = self.fields
        fields["input_tokens"] += input_tokens
        fields["output_tokens"] += output_tokens
        fields["cached_tokens"] += cached_tokens
        fields["cache_write_tokens"] += cache_write_tokens
        fields["reasoning_tokens"] += reasoning_tokens
        fields["total_tokens"] += input_tokens + output_tokens
        fields["input_cost"] += input_cost
        fields["output_cost"] += output_cost
        fields["total_cost"] += input_cost + output_cost

    def add_child_totals(self, child: ExecutionRecord) -> None:
        """Roll a nested execution's totals into this one, so root executions count everything once."""
        self.add_usage(
            input_tokens=child.fields["input_tokens"],
            output_tokens=child.fields["output_tokens"],
            cached_tokens=child.fields["cached_tokens"],
            cache_write_tokens=child.fields["cache_write_tokens"],
            reasoning_tokens=child.fields["reasoning_tokens"],
            input_cost=child.fields["input_cost"],
            output_cost=child.fields["output_cost"],
        )

    def walk(self) -> list[ExecutionRecord]:
        """This record and every nested one, parents before children."""
        records = [self]
        for child in self.children:
            records.extend(child.walk())
        return records


def elapsed_ms(start: dt.datetime, end: dt.datetime) -> int:
    return max(int((end - start).total_seconds() * 1000), 0)


# -- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persistence:
    """What the settings allow to be stored, read once per write."""

    redactor: Redactor
    prompts: bool
    responses: bool

    @classmethod
    def current(cls) -> Persistence:
        return cls(current_redactor(), app_settings.PERSIST_PROMPTS, app_settings.PERSIST_RESPONSES)


def execution_row(record: ExecutionRecord, persistence: Persistence | None = None) -> dict[str, Any]:
    """The Execution field values of ``record``, redacted and trimmed by the PERSIST settings."""
    persistence = persistence or Persistence.current()
    redactor = persistence.redactor
    row = dict(record.fields)
    row.update(
        id=record.id,
        kind=record.kind,
        agent_type=record.agent_type,
        parent_id=record.parent.id if record.parent is not None else None,
        root_id=record.root.id,
        started_at=record.started_at,
    )
    for name in ("parameters", "metadata", "tool_calls"):
        if name in row:
            row[name] = redactor.value(row[name])
    if "attempts" in row:
        row["attempts"] = redacted_attempts(row["attempts"], redactor)
    for name, kept in (("system_prompt", persistence.prompts), ("user_prompt", persistence.prompts),
                       ("response", persistence.responses)):  # fmt: skip
        if not kept:
            row[name] = ""
        elif name in row:
            row[name] = redactor.text(row[name])
    if "error_message" in row:
        row["error_message"] = redactor.error(row["error_message"])
    return row


def redacted_attempts(attempts: Any, redactor: Redactor) -> Any:
    """Attempt entries with their error messages redacted. The entries' own keys are ours
    (``input_tokens`` is a count, not a token to hide), so key redaction does not apply to them."""
    if not isinstance(attempts, list):
        return redactor.value(attempts)
    redacted = []
    for entry in attempts:
        if not isinstance(entry, dict):
            entry = redactor.value(entry)
        elif entry.get("error_message"):
            entry = {**entry, "error_message": redactor.error(entry["error_message"])}
        redacted.append(entry)
    return redacted


def span_row(
    record: SpanRecord, execution: ExecutionRecord, persistence: Persistence | None = None
) -> dict[str, Any]:
    persistence = persistence or Persistence.current()
    redactor = persistence.redactor
    return {
        "id": record.id,
        "execution_id": execution.id,
        "parent_id": record.parent.id if record.parent is not None else None,
        "name": record.name,
        "kind": record.kind,
        "status": record.status,
        "model_id": record.model_id,
        "provider": record.provider,
        "input": redactor.value(record.input) if persistence.prompts else None,
        "output": redactor.value(record.output) if persistence.responses else None,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_tokens": record.cached_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "total_cost": record.total_cost,
        "duration_ms": record.duration_ms,
        "time_to_first_token_ms": record.time_to_first_token_ms,
        "error_class": record.error_class,
        "error_message": redactor.error(record.error_message),
        "metadata": redactor.value(record.metadata),
        "started_at": record.started_at,
        "completed_at": record.completed_at,
    }


def to_payload(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON-safe copies of rows, for the Celery message."""

    def convert(value: Any) -> Any:
        if isinstance(value, uuid.UUID | Decimal):
            return str(value)
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return value

    return [{key: convert(value) for key, value in row.items()} for row in rows]


def from_payload(model: Any, rows: list[dict[str, Any]]) -> list[Any]:
    """Model instances from JSON-safe rows (values parsed by each field)."""
    fields = {f.attname: f for f in model._meta.concrete_fields}
    instances = []
    for row in rows:
        values = {}
        for key, value in row.items():
            model_field = fields[key]
            if value is not None and model_field.get_internal_type() != "JSONField":
                value = model_field.to_python(value)
            values[key] = value
        instances.append(model(**values))
    return instances


# -- writers ------------------------------------------------------------------------------------


def write_payload(
    payload: dict[str, list[dict[str, Any]]],
    *,
    insert_only: bool = False,
    typed: bool = False,
    durable: bool = True,
) -> None:
    """Write ``{"executions": [...], "spans": [...]}`` (the Celery message, or the same rows with
    Python values) atomically: executions upserted by id (parents first), spans inserted unless
    present. ``insert_only`` leaves an existing execution alone (the start row). ``typed`` says
    the values are Python objects already (not the JSON of a Celery message). ``durable`` False
    commits without waiting for the WAL flush on PostgreSQL (``DURABLE_TRACKING_WRITES``), unless
    the write joins a transaction that is already open, whose commit that would change.

    On PostgreSQL everything is one statement (:func:`_document_statement`): one round trip, one
    transaction. Elsewhere the INSERT statements bulk_create would run, in one transaction.
    """
    from .models import Execution, Span

    alias = router.db_for_write(Execution)
    connection = connections[alias]
    executions_rows, span_rows = payload.get("executions", []), payload.get("spans", [])
    if not executions_rows and not span_rows:
        return
    if connection.vendor == "postgresql":
        if typed:
            executions_rows, span_rows = to_payload(executions_rows), to_payload(span_rows)
        relaxed = not durable and not connection.in_atomic_block
        update = (
            ()
            if insert_only
            else tuple(sorted({name for row in executions_rows for name in row} - {"id", "created_at"}))
        )
        key, sql = _document_statement(connection, update, relaxed=relaxed)
        document = storable(
            json.dumps(
                {
                    "executions": with_defaults(Execution, executions_rows),
                    "spans": with_defaults(Span, span_rows),
                },
                separators=(",", ":"),
            )
        )
        run_prepared(connection, key, sql, [document])
        return
    _write_statements(connection, alias, executions_rows, span_rows, insert_only=insert_only, typed=typed)


def write_document(document: str) -> int:
    """Write a document made by :func:`encode_message` (rows with every field), as ``write_payload``
    would; returns how many executions it holds. PostgreSQL receives the text as it is, as a
    parameter of its own (and counts them); elsewhere it is decoded and written as rows."""
    from .models import Execution

    connection = connections[router.db_for_write(Execution)]
    if connection.vendor != "postgresql":
        payload = json.loads(document)
        write_payload(payload)
        return len(payload["executions"])
    _, sql = _document_statement(connection, _every_field(Execution), relaxed=False)
    return int(run_bound(connection, sql, [storable(document)])[0][0])


_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable(document: str) -> str:
    """A JSON document PostgreSQL can store: it has no place for the NUL character (in ``text`` or
    ``jsonb``), so each one in a string becomes U+FFFD, the replacement character. An escaped
    backslash followed by ``u0000`` is text, and stays."""
    if "\\u0000" not in document:
        return document
    return _NUL.sub(lambda match: match.group(1) + "\\ufffd", document)


@functools.cache
def _every_field(model: Any) -> tuple[str, ...]:
    """The fields an upsert of a complete row sets: all but the id and the creation time."""
    return tuple(
        sorted(f.attname for f in model._meta.concrete_fields if f.attname not in ("id", "created_at"))
    )


def _write_statements(
    connection: Any,
    alias: str,
    executions_rows: list[dict[str, Any]],
    span_rows: list[dict[str, Any]],
    *,
    insert_only: bool,
    typed: bool,
) -> None:
    """The writes of :func:`write_payload` off PostgreSQL: bulk_create's statements, one transaction."""
    from .models import Execution, Span

    if typed:
        executions = [Execution(**row) for row in executions_rows]
        spans = [Span(**row) for row in span_rows]
    else:
        executions = from_payload(Execution, executions_rows)
        spans = from_payload(Span, span_rows)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    if executions:
        if insert_only:
            statements += _insert_statements(Execution, executions, alias, on_conflict=OnConflict.IGNORE)
        else:
            update_fields = sorted({name for row in executions_rows for name in row} - {"id", "created_at"})
            statements += _insert_statements(Execution, executions, alias, on_conflict=OnConflict.UPDATE,
                                             update_fields=update_fields)  # fmt: skip
    if spans:
        statements += _insert_statements(Span, spans, alias, on_conflict=OnConflict.IGNORE)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


_statements = threading.local()
#: The document statements made so far, by shape: (alias, update fields, relaxed) -> (key, SQL).
_documents: dict[tuple[Any, ...], tuple[str, str]] = {}


def with_defaults(model: Any, rows: list[dict[str, Any]], *, complete: bool = False) -> list[dict[str, Any]]:
    """JSON-safe rows with every concrete field present: the fields some row lacks take the model
    field's default (``auto_now_add`` fields the current time). ``complete`` fills each row's own
    missing fields (rows of different shapes); otherwise the fields every row has are left alone."""
    if not rows:
        return rows
    if complete and any(row.keys() != rows[0].keys() for row in rows):
        return [with_defaults(model, [row])[0] for row in rows]
    present = frozenset(rows[0]).intersection(*rows[1:])
    defaults, fresh = _defaults_for(model, present)
    if fresh:
        values = {
            f.attname: timezone.now() if getattr(f, "auto_now_add", False) else f.get_default() for f in fresh
        }
        defaults = {**defaults, **to_payload([values])[0]}
    if not defaults:
        return rows
    return [{**defaults, **row} for row in rows]


@functools.lru_cache(maxsize=64)
def _defaults_for(model: Any, present: frozenset[str]) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The JSON-safe defaults of the fields of ``model`` not in ``present`` that are the same at
    every write (constants, empty dicts and lists: rows are serialised at once, so they can share
    them), and the fields whose default is made at each write (``auto_now_add``, ``uuid4``, ``now``)."""
    constant: dict[str, Any] = {}
    fresh = []
    for model_field in model._meta.concrete_fields:
        if model_field.attname in present:
            continue
        default = model_field.default
        if getattr(model_field, "auto_now_add", False) or (callable(default) and default not in (dict, list)):
            fresh.append(model_field)
        else:
            constant[model_field.attname] = model_field.get_default()
    return (to_payload([constant])[0] if constant else {}), tuple(fresh)


def _document_statement(connection: Any, update_fields: tuple[str, ...], *, relaxed: bool) -> tuple[str, str]:
    """One PostgreSQL statement writing a JSON document ``{"executions": [...], "spans": [...]}``;
    returns ``(its key, its SQL)``.

    ``INSERT … SELECT … FROM jsonb_array_elements(…)`` for each table, both as data-modifying
    ``WITH`` queries; the statement returns how many executions it inserted or updated. The server
    casts each value to its column's type (it parses UUIDs, times and decimals), so the client only
    serialises JSON. JSON fields stay JSON (``None`` is SQL NULL where the field allows it, else
    JSON ``null``). ``update_fields`` empty means insert-or-ignore, else upsert those fields by id;
    ``relaxed`` skips the commit's wait for the WAL flush. The text depends only on that shape, so
    it is prepared once per session (:func:`~llm_agents.statements.run_prepared`): its plan, with
    the casts of some 60 columns, costs more than running it.
    """
    from .models import Execution, Span

    shape = (connection.alias, update_fields, relaxed)
    known = _documents.get(shape)
    if known is not None:
        return known
    quote = connection.ops.quote_name

    def insert(model: Any, rows: str, update: tuple[str, ...]) -> str:
        fields = list(model._meta.concrete_fields)

        def value(model_field: Any) -> str:
            name = f"'{model_field.attname}'"  # a Python identifier: nothing to escape
            if model_field.get_internal_type() == "JSONField":
                return f"NULLIF(r -> {name}, 'null')" if model_field.null else f"r -> {name}"
            return (
                f"(r ->> {name})::{model_field.db_type(connection).split('(')[0]}"  # no length: no truncation
            )

        sql = (
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT {', '.join(value(f) for f in fields)} FROM document, jsonb_array_elements({rows}) AS r "
        )
        if not update:
            return sql + "ON CONFLICT DO NOTHING"
        columns = [quote(model._meta.get_field(name).column) for name in update]
        assignments = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns)
        return sql + f"ON CONFLICT ({quote(model._meta.pk.column)}) DO UPDATE SET {assignments}"

    relax = ", set_config('synchronous_commit', 'off', true)" if relaxed else ""
    executions = insert(Execution, "document.d -> 'executions'", update_fields)
    spans = insert(Span, "document.d -> 'spans'", ())
    sql = (
        f"WITH document AS (SELECT %s::jsonb AS d{relax}), executions AS ({executions} RETURNING 1), "
        f"spans AS ({spans}) SELECT count(*) FROM executions"
    )
    known = _documents[shape] = (f"write_{len(_documents)}", sql)
    return known


def _insert_statements(
    model: Any,
    objs: list[Any],
    alias: str,
    *,
    on_conflict: OnConflict,
    update_fields: list[str] | None = None,
) -> list[tuple[str, tuple[Any, ...]]]:
    """The INSERT … ON CONFLICT statements Django's bulk_create would run, without running them.

    The SQL of a statement shape (model, conflict handling, row count) is compiled once per thread;
    only the parameters are prepared per call, by the same compiler methods bulk_create uses.
    """
    opts = model._meta
    fields = list(opts.concrete_fields)
    connection = connections[alias]
    batch_size = connection.ops.bulk_batch_size(fields, objs) or len(objs)
    cache = _statements.__dict__.setdefault(alias, {})
    statements = []
    for start in range(0, len(objs), batch_size):
        batch = objs[start : start + batch_size]
        key = (opts.label, on_conflict, tuple(update_fields or ()), len(batch), connection.vendor)
        compiled = cache.get(key)
        if compiled is None or compiled[1].connection is not connection:
            query = InsertQuery(
                model,
                on_conflict=on_conflict,
                update_fields=[opts.get_field(name) for name in update_fields or ()],
                unique_fields=[opts.pk] if on_conflict == OnConflict.UPDATE else [],
            )
            query.insert_values(fields, batch)
            compiler = query.get_compiler(using=alias)
            ((sql, params),) = compiler.as_sql()
            cache[key] = compiled = (sql, compiler)
            statements.append((sql, params))
            continue
        sql, compiler = compiled
        value_rows = [
            [compiler.prepare_value(f, compiler.pre_save_val(f, obj)) for f in fields] for obj in batch
        ]
        _, param_rows = compiler.assemble_as_sql(fields, value_rows)
        statements.append((sql, tuple(p for row in param_rows for p in row)))
    return statements


_isolated_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm_agents_writer")


def _in_callers_transaction(alias: str) -> bool:
    """True inside a transaction the user opened (a test case's wrapping transaction does not count)."""
    connection = connections[alias]
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _write_isolated(
    payload: dict[str, list[dict[str, Any]]], *, insert_only: bool = False, durable: bool = True
) -> None:
    """Write outside the caller's transaction so that our rows survive its rollback.

    Inside a transaction the caller opened, or on an event loop's thread (where Django allows no
    synchronous queries, e.g. a ``trace()`` in ``async def`` code), the write runs on a worker
    thread with a connection of its own, and this thread waits for it. SQLite allows one writer
    at a time, so there the rows join the caller's transaction instead.
    """
    from .models import Execution

    alias = router.db_for_write(Execution)
    on_loop = _on_event_loop()
    if on_loop or (_in_callers_transaction(alias) and connections[alias].vendor != "sqlite"):

        def run() -> None:
            close_old_connections()
            try:
                write_payload(payload, insert_only=insert_only, typed=True, durable=durable)
            finally:
                close_old_connections()  # honours CONN_MAX_AGE, as at the end of a request

        _isolated_writer.submit(run).result()
    else:
        write_payload(payload, insert_only=insert_only, typed=True, durable=durable)


BROKER_RETRY_AFTER = 10.0  # seconds to write synchronously before trying an unreachable broker again


class BrokerState:
    """Remembers that the broker was unreachable, so calls do not each wait on it, and so that the
    outage is logged once rather than once per call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.retry_at = 0.0

    def usable(self) -> bool:
        return self.down_since is None or time.monotonic() >= self.retry_at

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            first = self.down_since is None
            now = time.monotonic()
            if first:
                self.down_since = now
            self.retry_at = now + BROKER_RETRY_AFTER
        if first:
            logger.warning(
                "llm_agents could not reach the Celery broker (%s: %s); writing executions synchronously "
                "until it is back",
                type(exc).__name__,
                exc,
            )

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            was_down, self.down_since = self.down_since, None
        if was_down is not None:
            logger.warning("llm_agents reached the Celery broker again; async logging resumed")


_brokers: dict[str, BrokerState] = {}


def broker_state(app: Any) -> BrokerState:
    """The reachability of the broker of a Celery app (one state per broker URL)."""
    url = str(app.conf.broker_url)
    state = _brokers.get(url)
    if state is None:
        state = _brokers.setdefault(url, BrokerState())
    return state


def payload_for(records: list[ExecutionRecord]) -> dict[str, list[dict[str, Any]]]:
    persistence = Persistence.current()
    executions = [execution_row(record, persistence) for record in records]
    spans = [span_row(span, record, persistence) for record in records for span in record.spans]
    return {"executions": executions, "spans": spans}


def to_message(payload: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The JSON-safe form of a payload, for the Celery message."""
    return {"executions": to_payload(payload["executions"]), "spans": to_payload(payload["spans"])}


def encode_message(payload: dict[str, list[dict[str, Any]]]) -> str:
    """The ``record_executions`` argument: the payload as one JSON document whose rows carry every
    field (defaults filled in here, on the sending side). The worker hands the document to
    PostgreSQL as it came (:func:`write_document`): it decodes nothing, and Celery's JSON decoder,
    which calls a hook on every object it builds, sees one string instead of thousands of objects."""
    from .models import Execution, Span

    message = to_message(payload)
    document = {
        "executions": with_defaults(Execution, message["executions"], complete=True),
        "spans": with_defaults(Span, message["spans"], complete=True),
    }
    return json.dumps(document, separators=(",", ":"))


def start(record: ExecutionRecord) -> None:
    """Write the ``running`` row of a starting execution (synchronous mode only)."""
    if not app_settings.TRACK_EXECUTIONS or app_settings.ASYNC_LOGGING:
        return
    if record.parent is not None and not record.parent.written:
        return
    try:
        # Overwritten when the execution finishes: it never waits for the WAL flush.
        _write_isolated({"executions": [execution_row(record)], "spans": []}, insert_only=True, durable=False)
        record.written = True
    except Exception:
        logger.debug("llm_agents could not write the start of execution %s; it is written at the end",
                     record.id, exc_info=True)  # fmt: skip


def finish(record: ExecutionRecord) -> None:
    """Write a finished execution: at once (synchronous), or with its root (``ASYNC_LOGGING``)."""
    if not app_settings.TRACK_EXECUTIONS:
        return
    if app_settings.ASYNC_LOGGING:
        if record.parent is None:
            send_async(payload_for(record.walk()))
        return
    if record.parent is not None and not record.parent.written:
        return  # written with its parent, which did not reach the database yet
    records = record.walk() if not record.written else [record]
    write_or_spool(payload_for(records), durable=app_settings.DURABLE_TRACKING_WRITES)
    record.written = True


def write_or_spool(payload: dict[str, list[dict[str, Any]]], *, durable: bool = True) -> bool:
    """Write a payload now; if the database cannot take it, keep it in the local spool.
    Returns True when it reached the database."""
    from .spool import spool

    try:
        _write_isolated(payload, durable=durable)
    except DatabaseError as exc:
        try:
            spool.save(to_message(payload), exc)
        except Exception:
            logger.exception(
                "llm_agents could neither write nor spool %d executions", len(payload["executions"])
            )
        return False
    except Exception:
        logger.exception("llm_agents could not record %d executions", len(payload["executions"]))
        return False
    try:
        spool.maybe_drain()
    except Exception:
        logger.debug("llm_agents could not drain the spool yet", exc_info=True)
    return True


def send_async(payload: dict[str, list[dict[str, Any]]]) -> None:
    """Hand a finished root execution (and what is nested in it) to ``record_executions``.

    With an eager Celery (tests, development) the task runs here and now. Otherwise the payload
    goes to a background publisher thread, so the caller only pays for a queue put; the thread
    sends what has gathered as one message, and writes it to the database itself when the broker
    cannot be reached.
    """
    from .tasks import record_executions

    task = record_executions._get_current_object()  # bound to the Celery app current here
    if task.app.conf.task_always_eager:
        publish(task, [payload])
    else:
        publisher.submit(task, payload)


def publish(task: Any, payloads: list[dict[str, list[dict[str, Any]]]]) -> bool:
    """Send payloads as one ``record_executions`` message; write them synchronously if that fails.
    Returns True when they went to the broker."""
    payload = {
        "executions": [row for item in payloads for row in item["executions"]],
        "spans": [row for item in payloads for row in item["spans"]],
    }
    broker = broker_state(task.app)
    if broker.usable():
        try:
            task.apply_async(args=[encode_message(payload)], retry=False)
        except Exception as exc:
            broker.failed(exc)
        else:
            broker.succeeded()
            return True
    write_or_spool(payload)
    return False


class Publisher:
    """A daemon thread that publishes queued payloads: it gathers for up to ``linger`` seconds
    (or ``max_batch`` payloads) and sends them as one message, so workers write in bulk."""

    max_batch = 200
    linger = 0.05

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[Any, dict[str, list[dict[str, Any]]]]] = queue.Queue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def submit(self, task: Any, payload: dict[str, list[dict[str, Any]]]) -> None:
        if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
            self.start()
        self.queue.put((task, payload))

    def start(self) -> None:
        with self.lock:
            if self.thread is not None and self.pid == os.getpid() and self.thread.is_alive():
                return
            if self.pid != os.getpid():
                self.queue = queue.Queue()  # a forked child does not inherit the parent's backlog
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self.run, name="llm_agents_publisher", daemon=True)
            self.thread.start()

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.linger
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            by_task: dict[Any, list[dict[str, list[dict[str, Any]]]]] = {}
            for task, payload in batch:
                by_task.setdefault(task, []).append(payload)
            try:
                if not all([publish(task, payloads) for task, payloads in by_task.items()]):
                    connections.close_all()  # this thread wrote to the database; hold no connection
            except Exception:
                logger.exception("llm_agents could not publish %d payloads", len(batch))
            finally:
                for _ in batch:
                    self.queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is published (or written); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


publisher = Publisher()
atexit.register(publisher.flush, 5.0)


def failure_status(error: BaseException) -> str:
    """``timeout`` when the (last) failure was a timeout, else ``error``."""
    from .errors import AllModelsExhaustedError, ProviderTimeoutError

    if isinstance(error, AllModelsExhaustedError):
        error = error.last_error or error
    if isinstance(error, ProviderTimeoutError | TimeoutError) or type(error).__name__.endswith(
        ("Timeout", "TimeoutError")
    ):
        return "timeout"  # ours, the standard library's, or an SDK's (APITimeoutError, ReadTimeout)
    return "error"


def settle_budget(record: ExecutionRecord) -> None:
    """Record the execution's spend against the budgets, here on the caller's side (also with
    ASYNC_LOGGING, whose task writes rows only, so nothing is counted twice)."""
    try:
        from .budgets import settle_execution

        settle_execution(record)
    except Exception:
        logger.exception("llm_agents could not record the budget spend of execution %s", record.id)


def complete(record: ExecutionRecord, error: BaseException | None = None) -> None:
    """Close ``record`` (status, completion time, duration), roll its totals into its parent, write it."""
    now = timezone.now()
    fields = record.fields
    fields["completed_at"] = now
    fields["duration_ms"] = elapsed_ms(record.started_at, now)
    if error is None:
        fields["status"] = "success"
    else:
        fields["status"] = failure_status(error)
        fields["error_class"] = type(error).__name__
        fields["error_message"] = str(error)
    if record.parent is not None:
        record.parent.add_child_totals(record)
    finish(record)
    settle_budget(record)
    if record.parent is None and app_settings.OTEL_EXPORT:
        try:
            from .otel import export

            export(record)
        except Exception:
            logger.exception("llm_agents could not export execution %s to OpenTelemetry", record.id)
