"""The rows of an execution export, as CSV or JSON lines: one implementation for the API's
``export/`` and the admin's "Export CSV" (the executions list and the dashboard).

The columns are ``executions/``'s fields (foreign keys as their ids). A text cell that a spreadsheet
would run as a formula is prefixed with ``'``, so it stays text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import CharField, DecimalField, QuerySet, TextField
from django.http import StreamingHttpResponse

from ..models import Execution
from ..money import plain
from .serializers import EXECUTION_LIST_FIELDS

EXPORT_FIELDS = EXECUTION_LIST_FIELDS
EXPORT_VALUES = [f"{field}_id" if field in ("parent", "prompt_version") else field for field in EXPORT_FIELDS]
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
    """The export's cells of each execution of ``queryset``, in its order, read in chunks."""
    return queryset.values_list(*EXPORT_VALUES).iterator(chunk_size=EXPORT_CHUNK_SIZE)


def csv_lines(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    """A header row, then one row per execution, a few hundred rows per chunk."""
    writer = csv.writer(Echo())
    columns = text_columns()
    decimals = decimal_columns()
    yield writer.writerow(EXPORT_FIELDS)
    buffer = []
    for row in rows:
        cells = list(row)
        for position in columns:
            cells[position] = neutralise(cells[position])
        for position in decimals:
            cells[position] = plain(cells[position])
        buffer.append(writer.writerow(cells))
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer = []
    if buffer:
        yield "".join(buffer)


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
