"""Records as rows: what the settings allow to be stored (redaction, ``PERSIST_*``), the Execution and
Span field values, and the message codec (JSON-safe rows, the ``record_executions`` document).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone

from ..conf import app_settings
from ..models.rollups import spend_by_model
from ..redaction import Redactor, current_redactor
from .records import ExecutionRecord, SpanRecord


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
    """The Execution row of ``record``: every column but ``created_at``, redacted and trimmed by the
    PERSIST settings. A write of it sets every column, so the row always matches the record."""
    persistence = persistence or Persistence.current()
    redactor = persistence.redactor
    prompts, responses = persistence.prompts, persistence.responses
    return {
        "id": record.id,
        "kind": record.kind,
        "agent_type": record.agent_type,
        "agent_version": record.agent_version,
        "model_id": record.model_id,
        "chosen_model_id": record.chosen_model_id,
        "provider": record.provider,
        "temperature": record.temperature,
        "status": record.status,
        "finish_reason": record.finish_reason,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_tokens": record.cached_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "total_tokens": record.total_tokens,
        "input_cost": record.input_cost,
        "output_cost": record.output_cost,
        "total_cost": record.total_cost,
        "pricing_source": record.pricing_source,
        "duration_ms": record.duration_ms,
        "time_to_first_token_ms": record.time_to_first_token_ms,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "parameters": redactor.value(record.parameters),
        "system_prompt": redactor.text(record.system_prompt) if prompts and record.system_prompt else "",
        "user_prompt": redactor.text(record.user_prompt) if prompts and record.user_prompt else "",
        "response": redactor.text(record.response) if responses and record.response else "",
        "error_class": record.error_class,
        "error_message": redactor.error(record.error_message),
        "metadata": redactor.value(record.metadata),
        "streaming": record.streaming,
        "tool_calls": redactor.value(record.tool_calls),
        "tool_calls_count": record.tool_calls_count,
        "attempts": redacted_attempts(record.attempts, redactor),
        "attempts_count": record.attempts_count,
        "fallback_chain": record.fallback_chain,
        "fallback_reason": record.fallback_reason,
        "cache_hit": record.cache_hit,
        "retryable": record.retryable,
        "rate_limited": record.rate_limited,
        "tenant_id": record.tenant_id,
        "parent_id": record.parent.id if record.parent is not None else None,
        "root_id": record.root.id,
        "prompt_version_id": record.prompt_version_id,
        "session_id": record.session_id,
        "user_id": record.user_id,
        "tags": list(record.tags),
        "eval_run_id": record.eval_run_id,
        "experiment_id": record.experiment_id,
        "subject_type_id": record.subject_type_id,
        "subject_id": record.subject_id,
        "model_spend": model_spend(record),
    }


def model_spend(record: ExecutionRecord) -> dict[str, list[Any]]:
    """The ``model_spend`` of ``record``: its llm spans and those of the executions nested in it, by
    model (:func:`~llm_agents.models.rollups.spend_by_model`)."""
    spent = [
        (span.model_id or nested.chosen_model_id or nested.model_id, span.total_cost,
         span.input_tokens + span.output_tokens)
        for nested in record.walk()
        for span in nested.spans
        if span.kind == "llm"
    ]  # fmt: skip
    return spend_by_model(
        record.chosen_model_id or record.model_id, record.total_cost, record.total_tokens, spent
    )


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


_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable(document: str) -> str:
    """A JSON document PostgreSQL can store: it has no place for the NUL character (in ``text`` or
    ``jsonb``), so each one in a string becomes U+FFFD, the replacement character. An escaped
    backslash followed by ``u0000`` is text, and stays."""
    if "\\u0000" not in document:
        return document
    return _NUL.sub(lambda match: match.group(1) + "\\ufffd", document)


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
    from ..models import Execution, Span

    message = to_message(payload)
    document = {
        "executions": with_defaults(Execution, message["executions"], complete=True),
        "spans": with_defaults(Span, message["spans"], complete=True),
    }
    return json.dumps(document, separators=(",", ":"))
