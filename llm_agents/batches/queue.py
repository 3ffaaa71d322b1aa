"""Putting requests in the queue (and back into it)."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from ..conf import app_settings
from ..context import current_eval_run_id, current_subject, current_tenant_id
from ..models import BatchRequest
from ..tracking.lifecycle import subject_values
from .schema import normalize_schema

__all__ = ["enqueue", "retry_failed"]


def enqueue(
    *,
    purpose: str,
    model: str,
    input: Any,
    instructions: str = "",
    schema: Any = None,
    routing: dict[str, Any] | None = None,
    temperature: float | None = None,
    custom_id: str | None = None,
    **params: Any,
) -> BatchRequest:
    """Queue one request for the next ``flush()`` of its purpose and model; returns the pending BatchRequest.

    ``input`` is the user text (or a list of messages); ``schema`` a JSON-schema dict or a pydantic model
    class, sent as structured output; ``routing`` is yours (the handler reads it to know where the result
    goes); other keyword arguments (``max_output_tokens``, ``reasoning``, ...) go into the request body as
    they are. The row is written on the caller's connection, so it joins the caller's transaction: if that
    rolls back, nothing was enqueued. With ``custom_id``, enqueueing the same id again returns the
    existing request instead of adding another. Inside ``evaluating(run_id)`` the request belongs to
    that evaluation run, and so does the execution recorded for its result; inside ``attribute_to(obj)``
    that execution is attributed to ``obj``.
    """
    if not purpose:
        raise ValueError("purpose must not be empty")
    if not model:
        raise ValueError("model must not be empty")
    if input is None or input == "" or input == []:
        raise ValueError("input must not be empty")
    payload: dict[str, Any] = {
        "instructions": instructions or "",
        "input": input,
        "schema": normalize_schema(schema, default_name=purpose),
        "temperature": temperature,
        "params": params,
    }
    if app_settings.MULTI_TENANCY:
        payload["tenant_id"] = current_tenant_id()
    eval_run_id = current_eval_run_id()
    if eval_run_id is not None:
        payload["eval_run_id"] = str(eval_run_id)
    subject = current_subject()
    if subject is not None:
        payload.update(subject_values(subject))
    routing = dict(routing or {})
    try:
        json.dumps(payload)
        json.dumps(routing)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the request's input, params and routing must be JSON-serialisable: {exc}") from exc
    fields = {"purpose": purpose, "model": model, "payload": payload, "routing": routing}
    if custom_id is None:
        return BatchRequest.objects.create(**fields)
    request, _ = BatchRequest.objects.get_or_create(custom_id=custom_id, defaults=fields)
    return request


def retry_failed(requests: QuerySet[BatchRequest] | None = None) -> int:
    """Put failed requests back in the queue (``pending``, results cleared) for the next flush; returns how
    many. The executions recorded for their earlier results stay."""
    requests = BatchRequest.objects.all() if requests is None else requests
    return requests.filter(status=BatchRequest.Status.FAILED).update(
        status=BatchRequest.Status.PENDING,
        batch=None,
        result=None,
        error="",
        input_tokens=0,
        output_tokens=0,
        total_cost=0,
        execution=None,
        updated_at=timezone.now(),
    )
