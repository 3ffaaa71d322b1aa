"""OpenTelemetry export (``OTEL_EXPORT``, extra ``[otel]``): each finished root execution, with its
spans and nested executions, becomes a tree of OTel spans following the GenAI semantic conventions.

Spans go to the tracer provider your project configured (``opentelemetry.trace``), named
``llm_agents``. Prompts and responses are attached only when ``PERSIST_PROMPTS`` /
``PERSIST_RESPONSES`` allow, after redaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from . import __version__
from .conf import app_settings
from .tracking.records import ExecutionRecord, SpanRecord
from .tracking.rows import Persistence

logger = logging.getLogger("llm_agents")

OPERATIONS = {"agent": "invoke_agent", "trace": "invoke_agent", "llm": "chat", "batch": "chat"}


def nanoseconds(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000_000) if moment is not None else None


def export_completed(record: ExecutionRecord) -> None:
    """The completion hook (registered by the app while ``OTEL_EXPORT`` is on): :func:`export` each
    completed root execution, its failures logged."""
    if record.parent is not None or not app_settings.OTEL_EXPORT:
        return
    try:
        export(record)
    except Exception:
        logger.exception("llm_agents could not export execution %s to OpenTelemetry", record.id)


def export(record: ExecutionRecord) -> None:
    """Emit ``record`` (a finished root execution) and everything inside it."""
    from opentelemetry import trace

    tracer = trace.get_tracer("llm_agents", __version__)
    _execution(tracer, record, None, Persistence.current())


def _start(tracer: Any, name: str, parent: Any, start: dt.datetime | None, attributes: dict[str, Any]) -> Any:
    from opentelemetry import trace

    context = trace.set_span_in_context(parent) if parent is not None else None
    clean = {key: value for key, value in attributes.items() if value not in (None, "")}
    # A request to a model is a call out of the process; an agent or a tool runs inside it.
    kind = trace.SpanKind.CLIENT if clean.get("gen_ai.operation.name") == "chat" else trace.SpanKind.INTERNAL
    return tracer.start_span(
        name, context=context, start_time=nanoseconds(start), attributes=clean, kind=kind
    )


def _end(span: Any, error_class: str, error_message: str, end: dt.datetime | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    if error_class:
        span.set_attribute("error.type", error_class)
        span.set_status(Status(StatusCode.ERROR, error_message[:500]))
    span.end(end_time=nanoseconds(end))


def _execution(tracer: Any, record: ExecutionRecord, parent: Any, persistence: Persistence) -> None:
    operation = OPERATIONS.get(record.kind, "invoke_agent")
    model = record.model_id
    name = f"{operation} {record.agent_type}" if operation == "invoke_agent" else f"{operation} {model}"
    attributes = {
        "gen_ai.operation.name": operation,
        "gen_ai.agent.name": record.agent_type if operation == "invoke_agent" else None,
        "gen_ai.provider.name": record.provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": record.chosen_model_id,
        "gen_ai.request.temperature": record.temperature,
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": record.cached_tokens,
        "gen_ai.usage.cache_creation.input_tokens": record.cache_write_tokens,
        "gen_ai.response.finish_reasons": [record.finish_reason] if record.finish_reason else None,
        "llm_agents.execution_id": str(record.id),
        "llm_agents.kind": record.kind,
        "llm_agents.total_cost_usd": float(record.total_cost),
        "llm_agents.tenant_id": record.tenant_id,
    }
    otel_span = _start(tracer, name, parent, record.started_at, attributes)
    by_parent: dict[Any, list[SpanRecord]] = {}
    for span in record.spans:
        by_parent.setdefault(span.parent.id if span.parent else None, []).append(span)
    children_by_agent_span = {}
    for child in record.children:
        children_by_agent_span[str(child.id)] = child

    def emit(span: SpanRecord, otel_parent: Any) -> None:
        made = _span(tracer, span, otel_parent, persistence)
        for inner in by_parent.get(span.id, []):
            emit(inner, made)
        nested = children_by_agent_span.pop(str(span.metadata.get("execution_id", "")), None)
        if nested is not None:
            _execution(tracer, nested, made, persistence)
        _end(made, span.error_class, persistence.redactor.error(span.error_message), span.completed_at)

    for top in by_parent.get(None, []):
        emit(top, otel_span)
    for child in children_by_agent_span.values():
        _execution(tracer, child, otel_span, persistence)
    message = persistence.redactor.error(record.error_message)
    _end(otel_span, record.error_class, message, record.completed_at)


def _span(tracer: Any, span: SpanRecord, parent: Any, persistence: Persistence) -> Any:
    if span.kind == "llm":
        name, operation = f"chat {span.model_id}", "chat"
    elif span.kind == "tool":
        name, operation = f"execute_tool {span.name}", "execute_tool"
    elif span.kind == "agent":
        name, operation = f"invoke_agent {span.name}", "invoke_agent"
    else:
        name, operation = span.name, None
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "llm_agents.span_kind": span.kind,
        "llm_agents.span_id": str(span.id),
    }
    if span.kind == "llm":
        attributes.update({
            "gen_ai.provider.name": span.provider,
            "gen_ai.request.model": span.model_id,
            "gen_ai.response.model": span.model_id,
            "gen_ai.usage.input_tokens": span.input_tokens,
            "gen_ai.usage.output_tokens": span.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": span.cached_tokens,
            "gen_ai.usage.cache_creation.input_tokens": span.cache_write_tokens,
        })  # fmt: skip
        if persistence.prompts and span.input is not None:
            attributes["gen_ai.input.messages"] = json.dumps(
                persistence.redactor.value(span.input), default=str
            )
        if persistence.responses and span.output is not None:
            attributes["gen_ai.output.messages"] = json.dumps(
                persistence.redactor.value(span.output), default=str
            )
    elif span.kind == "tool":
        attributes["gen_ai.tool.name"] = span.name
        attributes["gen_ai.tool.type"] = "function"
        attributes["gen_ai.tool.call.id"] = span.metadata.get("tool_call_id")
        if persistence.prompts and span.input is not None:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(
                persistence.redactor.value(span.input), default=str
            )
        if persistence.responses and span.output is not None:
            attributes["gen_ai.tool.call.result"] = json.dumps(
                persistence.redactor.value(span.output), default=str
            )
    elif span.kind == "agent":
        attributes["gen_ai.agent.name"] = span.name
    return _start(tracer, name, parent, span.started_at, attributes)
