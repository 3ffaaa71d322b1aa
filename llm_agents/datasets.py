"""Datasets as JSON Lines (SPEC section 17): what ``import_dataset`` reads and ``export_dataset`` writes.

One item per line, a JSON object ``{"input": {...}, "expected_output": ..., "metadata": {...}}``:
``input`` (the agent's params) is required and an object, ``expected_output`` any JSON value (default
null), ``metadata`` an object (default ``{}``). Exporting writes the three keys of every active item in
the dataset's order, so importing the export into an empty dataset and exporting again gives the same
lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from django.core.exceptions import ValidationError

from .models import Dataset, DatasetItem

ITEM_KEYS = ("input", "expected_output", "metadata")
EXPORT_CHUNK_SIZE = 500


def import_jsonl(dataset: Dataset, lines: Iterable[str]) -> int:
    """Add an item to ``dataset`` for each line of JSON Lines ``lines``; return how many were added.

    Blank lines are skipped. Every line is checked before anything is written: when any line is not a
    valid item (not JSON, not an object, an unknown key, ``input`` missing or not an object, ``metadata``
    not an object) nothing is written and ``ValidationError`` lists each bad line as ``line N: ...``.
    The items are written in one transaction, in the order of the lines."""
    items: list[DatasetItem] = []
    errors: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(item_from_line(dataset, line))
        except ValidationError as error:
            errors.append(f"line {number}: {' '.join(error.messages)}")
    if errors:
        raise ValidationError(errors)
    return len(dataset.add_items(items))


def item_from_line(dataset: Dataset, line: str) -> DatasetItem:
    """The unsaved item one line of JSON Lines describes; ``ValidationError`` saying what is wrong."""
    try:
        row = json.loads(line, parse_constant=_refuse_constant)
    except ValueError as error:
        raise ValidationError(f"not valid JSON: {error}") from None
    if not isinstance(row, dict):
        raise ValidationError(f"must be a JSON object with {', '.join(ITEM_KEYS)}, not {type(row).__name__}.")
    unknown = sorted(set(row) - set(ITEM_KEYS))
    if unknown:
        raise ValidationError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; an item has {', '.join(ITEM_KEYS)}."
        )
    if "input" not in row:
        raise ValidationError({"input": "input is required."})
    if row.get("metadata", {}) is None:
        raise ValidationError({"metadata": "metadata must be a JSON object, not null."})
    return dataset.build_item(row["input"], row.get("expected_output"), row.get("metadata"))


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def export_jsonl(dataset: Dataset) -> Iterator[str]:
    """The active items of ``dataset`` as lines of JSON Lines (without line endings), in its order.

    Each line holds ``input``, ``expected_output`` and ``metadata`` in that order (keys inside them
    sorted), which :func:`import_jsonl` reads back unchanged. Inactive items are left out."""
    rows = dataset.items.filter(is_active=True).values_list(*ITEM_KEYS).iterator(chunk_size=EXPORT_CHUNK_SIZE)
    for row in rows:
        fields = (f"{json.dumps(key)}: {_dump(value)}" for key, value in zip(ITEM_KEYS, row, strict=True))
        yield "{" + ", ".join(fields) + "}"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
