"""The rows of an execution export, as CSV or JSON lines: one implementation for the API's
``export/`` and the admin's "Export CSV" (the executions list and the dashboard); and the FinOps
FOCUS cost rows of ``export/?format=focus``.

The columns are ``executions/``'s fields (foreign keys as their ids, the attributed object's model as
``app_label.model``). A text cell that a spreadsheet would run as a formula is prefixed with ``'``, so
it stays text.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import CharField, DecimalField, QuerySet, TextField
from django.http import StreamingHttpResponse

from ..models import Execution
from ..money import plain
from ..providers import provider_name_for
from .serializers import EXECUTION_LIST_FIELDS, SUBJECT_FIELDS, content_type_label

EXPORT_FIELDS = [*EXECUTION_LIST_FIELDS, *SUBJECT_FIELDS]
EXPORT_VALUES = [
    f"{field}_id" if field in ("parent", "prompt_version", "subject_type") else field
    for field in EXPORT_FIELDS
]
SUBJECT_TYPE_COLUMN = EXPORT_FIELDS.index("subject_type")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
EXPORT_CHUNK_SIZE = 2000


def neutralise(value: Any) -> Any:
    """A cell a spreadsheet would run as a formula, prefixed with ``'`` so it stays text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class Echo:
    """A file-like object whose ``write`` returns what it is given (for csv.writer)."""

    def write(self, value: str) -> str:
        return value


def text_columns() -> list[int]:
    """Positions of the export's text columns (the only cells that can hold a formula)."""
    return [
        position
        for position, name in enumerate(EXPORT_FIELDS)
        if isinstance(Execution._meta.get_field(name), CharField | TextField)
    ]


def decimal_columns() -> list[int]:
    """Positions of the export's decimal columns (the costs), written in fixed notation."""
    return [
        position
        for position, name in enumerate(EXPORT_FIELDS)
        if isinstance(Execution._meta.get_field(name), DecimalField)
    ]


def export_rows(queryset: QuerySet[Execution]) -> Iterator[tuple[Any, ...]]:
    """The export's cells of each execution of ``queryset``, in its order, read in chunks; the model
    of the object it is attributed to as ``app_label.model`` (as ``executions/`` shows it)."""
    for row in queryset.values_list(*EXPORT_VALUES).iterator(chunk_size=EXPORT_CHUNK_SIZE):
        subject_type = row[SUBJECT_TYPE_COLUMN]
        if subject_type is None:
            yield row
        else:
            cells = list(row)
            cells[SUBJECT_TYPE_COLUMN] = content_type_label(subject_type)
            yield tuple(cells)


def csv_table(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """``header``, then each row of cells, as CSV lines, a few hundred rows per chunk."""
    writer = csv.writer(Echo())
    yield writer.writerow(header)
    buffer = []
    for cells in rows:
        buffer.append(writer.writerow(cells))
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer = []
    if buffer:
        yield "".join(buffer)


def csv_lines(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    """A header row, then one row per execution, a few hundred rows per chunk."""
    columns = text_columns()
    decimals = decimal_columns()

    def cells_of(row: tuple[Any, ...]) -> list[Any]:
        cells = list(row)
        for position in columns:
            cells[position] = neutralise(cells[position])
        for position in decimals:
            cells[position] = plain(cells[position])
        return cells

    return csv_table(EXPORT_FIELDS, map(cells_of, rows))


def json_lines(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    """A JSON array of one object per execution, a few hundred per chunk."""
    encoder = DjangoJSONEncoder()
    decimals = decimal_columns()
    yield "["
    separator = "\n"
    buffer = []
    for row in rows:
        cells = list(row)
        for position in decimals:
            cells[position] = plain(cells[position])
        buffer.append(separator + encoder.encode(dict(zip(EXPORT_FIELDS, cells, strict=True))))
        separator = ",\n"
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer = []
    buffer.append("\n]\n")
    yield "".join(buffer)


def csv_response(queryset: QuerySet[Execution], filename: str = "executions.csv") -> StreamingHttpResponse:
    """``queryset`` streamed as a CSV attachment."""
    response = StreamingHttpResponse(csv_lines(export_rows(queryset)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# -- FOCUS ----------------------------------------------------------------------------------------
# FinOps FOCUS 1.x cost rows: one per root execution, whose total_cost includes the executions nested
# in it, so the rows add up to the spend without counting a nested call twice.

FOCUS_COLUMNS = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingCurrency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ServiceName",
    "ProviderName",
    "ResourceId",
    "ResourceType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "Tags",
]
FOCUS_VALUES = [
    "id", "kind", "agent_type", "model_id", "chosen_model_id", "model_spend", "provider", "tenant_id",
    "user_id", "tags", "total_cost", "total_tokens", "started_at", "completed_at", "duration_ms",
]  # fmt: skip
FOCUS_SERVICE_NAME = "django-llm-agents"
#: ResourceType, a display name a FinOps tool groups by: fixed English words, whatever the language.
FOCUS_RESOURCE_TYPES = {
    Execution.Kind.AGENT: "Agent call",
    Execution.Kind.TRACE: "Trace",
    Execution.Kind.LLM: "LLM call",
    Execution.Kind.BATCH: "Batch result",
}


def focus_time(moment: dt.datetime, *, round_up: bool = False) -> str:
    """``moment`` in FOCUS's date-time format, ``YYYY-MM-DDTHH:MM:SSZ`` in UTC, to the second below
    (or, with ``round_up``, above) it."""
    moment = moment.astimezone(dt.UTC)
    whole = moment.replace(microsecond=0)
    if round_up and moment.microsecond:
        whole += dt.timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")


def answering_model(model_id: str, chosen_model_id: str, model_spend: dict[str, Any] | None) -> str:
    """The model that answered; for an execution that asked none itself (a trace), the model its
    nested calls spent the most on (its ``model_spend``)."""
    if chosen_model_id or model_id:
        return chosen_model_id or model_id
    spend = model_spend or {}
    return max(spend, key=lambda model: Decimal(str(spend[model][0])), default="")


def focus_tags(
    agent_type: str, model_id: str, chosen_model_id: str, tenant_id: str | None, user_id: str, tags: list[str]
) -> str:
    """The Tags cell: a JSON object of the execution's agent type, the model it asked for and the one
    that answered, its tenant and end user (null when blank), and each of its tags as a key whose
    value is ``true`` (FOCUS's form of a tag without a value); a tag spelled like one of the named
    keys is left out."""
    named = {
        "agent_type": agent_type,
        "model_id": model_id or None,
        "chosen_model_id": chosen_model_id or None,
        "tenant_id": tenant_id or None,
        "user_id": user_id or None,
    }
    labels = {str(tag): True for tag in tags or [] if str(tag) not in named}
    return json.dumps({**named, **labels}, separators=(",", ":"), ensure_ascii=False)


def focus_rows(queryset: QuerySet[Execution]) -> Iterator[list[Any]]:
    """The FOCUS cells of each root execution of ``queryset``, in its order, read in chunks."""
    roots = queryset.filter(parent__isnull=True).values_list(*FOCUS_VALUES)
    for row in roots.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        (pk, kind, agent_type, model_id, chosen_model_id, model_spend, provider, tenant_id, user_id, tags,
         total_cost, total_tokens, started_at, completed_at, duration_ms) = row  # fmt: skip
        if completed_at is None and duration_ms is not None:
            completed_at = started_at + dt.timedelta(milliseconds=duration_ms)
        answered = answering_model(model_id, chosen_model_id, model_spend)
        provider = provider or (provider_name_for(answered) if answered else "")
        cost = plain(total_cost)
        yield [
            cost,
            cost,
            cost,
            "USD",
            focus_time(started_at),
            focus_time(max(completed_at or started_at, started_at), round_up=True),
            "Usage",
            FOCUS_SERVICE_NAME,
            neutralise(provider),
            str(pk),
            FOCUS_RESOURCE_TYPES.get(kind, neutralise(kind)),
            total_tokens,
            "Tokens",
            focus_tags(agent_type, model_id, answered, tenant_id, user_id, tags),
        ]


def focus_response(queryset: QuerySet[Execution]) -> StreamingHttpResponse:
    """The root executions of ``queryset`` streamed as a FOCUS CSV attachment."""
    response = StreamingHttpResponse(
        csv_table(FOCUS_COLUMNS, focus_rows(queryset)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="executions-focus.csv"'
    return response
