"""The database writes of tracking: Execution and Span rows, upserted by their client-made UUIDs.

:func:`write_payload` writes rows (Python values or the JSON-safe rows of a message),
:func:`write_document` a ``record_executions`` document, :func:`write_isolated` outside the
caller's transaction (:mod:`~llm_agents.db.isolation`). On PostgreSQL each write is one prepared
statement (:mod:`~llm_agents.db.fastpaths`); elsewhere the INSERT statements bulk_create would run.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.db import connections, router

from ..db import fastpaths
from ..db.isolation import run_isolated
from .rows import from_payload, storable, to_payload, with_defaults


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

    On PostgreSQL everything is one statement (:func:`~llm_agents.db.fastpaths.upsert_document`): one
    round trip, one transaction. Elsewhere the INSERT statements bulk_create would run, in one
    transaction (:func:`~llm_agents.db.fastpaths.upsert_objects`).
    """
    from ..models import Execution, Span

    alias = router.db_for_write(Execution)
    connection = connections[alias]
    executions_rows, span_rows = payload.get("executions", []), payload.get("spans", [])
    if not executions_rows and not span_rows:
        return
    if fastpaths.is_postgresql(connection):
        if typed:
            executions_rows, span_rows = to_payload(executions_rows), to_payload(span_rows)
        update = (
            ()
            if insert_only
            else tuple(sorted({name for row in executions_rows for name in row} - {"id", "created_at"}))
        )
        document = storable(
            json.dumps(
                {
                    "executions": with_defaults(Execution, executions_rows),
                    "spans": with_defaults(Span, span_rows),
                },
                separators=(",", ":"),
            )
        )
        fastpaths.upsert_document(
            connection,
            Execution,
            Span,
            document,
            update,
            relaxed=not durable and not connection.in_atomic_block,
        )
        return
    if typed:
        executions = [Execution(**row) for row in executions_rows]
        spans = [Span(**row) for row in span_rows]
    else:
        executions = from_payload(Execution, executions_rows)
        spans = from_payload(Span, span_rows)
    fastpaths.upsert_objects(
        connection,
        Execution,
        Span,
        executions,
        spans,
        insert_only=insert_only,
        update_fields=sorted({name for row in executions_rows for name in row} - {"id", "created_at"}),
    )


def write_document(document: str) -> int:
    """Write a document made by :func:`encode_message` (rows with every field), as ``write_payload``
    would; returns how many executions it holds. PostgreSQL receives the text as it is, as a
    parameter of its own (and counts them); elsewhere it is decoded and written as rows."""
    from ..models import Execution, Span

    connection = connections[router.db_for_write(Execution)]
    if not fastpaths.is_postgresql(connection):
        payload = json.loads(document)
        write_payload(payload)
        return len(payload["executions"])
    return fastpaths.upsert_document(
        connection, Execution, Span, storable(document), _every_field(Execution), large=True
    )


@functools.cache
def _every_field(model: Any) -> tuple[str, ...]:
    """The fields an upsert of a complete row sets: all but the id and the creation time."""
    return tuple(
        sorted(f.attname for f in model._meta.concrete_fields if f.attname not in ("id", "created_at"))
    )


def write_isolated(
    payload: dict[str, list[dict[str, Any]]], *, insert_only: bool = False, durable: bool = True
) -> None:
    """:func:`write_payload` of Python values outside the caller's transaction, so that our rows survive
    its rollback, and off an event loop's thread (a ``trace()`` in ``async def`` code); on SQLite
    the rows join the caller's transaction (:func:`~llm_agents.db.isolation.run_isolated`)."""
    from ..models import Execution

    run_isolated(
        lambda: write_payload(payload, insert_only=insert_only, typed=True, durable=durable),
        router.db_for_write(Execution),
    )
