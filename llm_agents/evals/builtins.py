"""The evaluators every installation has (the judge is in :mod:`.judge`).

``exact_match`` and ``contains`` compare with the item's expected output, ``regex`` and ``json_valid`` /
``json_schema`` look at the output alone, ``similarity`` is difflib's ratio to the expected output, and
``max_cost`` / ``max_latency`` read the agent's execution. Outputs that are not text (the parsed answer of
an agent with a schema) are compared as their JSON.
"""

from __future__ import annotations

import difflib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ..batches.schema import validate as schema_problems
from .registry import EvalScore, evaluator

__all__ = [
    "contains",
    "exact_match",
    "json_schema",
    "json_valid",
    "max_cost",
    "max_latency",
    "regex",
    "similarity",
]


def as_text(value: Any) -> str:
    """Text as it is; anything else as its JSON (a pydantic model as its fields)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def as_json(value: Any) -> Any:
    """The JSON value of an output: text parsed (``ValueError`` when it is not JSON), a pydantic model
    as its fields, anything else as it is."""
    if isinstance(value, str):
        return json.loads(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def expected_of(expected: Any) -> Any:
    if expected is None:
        raise ValueError("the item has no expected output")
    return expected


@evaluator("exact_match")
def exact_match(*, output: Any, expected: Any, item: Any, execution: Any) -> bool:
    """The output equals the expected output (text compared without its surrounding whitespace; a
    structured output compared as JSON values)."""
    expected = expected_of(expected)
    if isinstance(output, str) and isinstance(expected, str):
        return output.strip() == expected.strip()
    try:
        return bool(as_json(output) == as_json(expected))
    except ValueError:
        return False


@evaluator("contains")
def contains(*, output: Any, expected: Any, item: Any, execution: Any, ignore_case: bool = False) -> bool:
    """The expected text appears in the output (``ignore_case`` to compare case-insensitively)."""
    needle, haystack = as_text(expected_of(expected)), as_text(output)
    if ignore_case:
        needle, haystack = needle.casefold(), haystack.casefold()
    return needle in haystack


def check_regex(params: dict[str, Any]) -> None:
    pattern = params.get("pattern")
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a regular expression (text), not {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None


@evaluator("regex", check=check_regex)
def regex(*, output: Any, expected: Any, item: Any, execution: Any, pattern: str) -> bool:
    """The output matches ``pattern`` somewhere (``re.search``)."""
    return re.search(pattern, as_text(output)) is not None


@evaluator("json_valid")
def json_valid(*, output: Any, expected: Any, item: Any, execution: Any) -> EvalScore:
    """The output is JSON (a structured output always is)."""
    try:
        as_json(output)
    except ValueError as exc:
        return EvalScore(False, comment=f"not JSON: {exc}")
    return EvalScore(True)


def check_schema(params: dict[str, Any]) -> None:
    if not isinstance(params.get("schema"), dict):
        raise ValueError(f"schema must be a JSON schema (an object), not {params.get('schema')!r}")


@evaluator("json_schema", check=check_schema)
def json_schema(
    *, output: Any, expected: Any, item: Any, execution: Any, schema: dict[str, Any]
) -> EvalScore:
    """The output is JSON matching ``schema`` (the structured-output subset of JSON Schema: types,
    properties, required, additionalProperties, items, enum, const, anyOf/oneOf/allOf, local $ref,
    and the usual bounds); the comment names the first problems."""
    try:
        value = as_json(output)
    except ValueError as exc:
        return EvalScore(False, comment=f"not JSON: {exc}")
    problems = schema_problems(value, schema)
    return EvalScore(not problems, comment="; ".join(problems[:5]))


@evaluator("similarity")
def similarity(*, output: Any, expected: Any, item: Any, execution: Any) -> float:
    """How alike the output and the expected output are, from 0 to 1 (``difflib.SequenceMatcher``'s
    ratio of the two texts)."""
    return difflib.SequenceMatcher(None, as_text(output), as_text(expected_of(expected))).ratio()


def number_check(name: str) -> Any:
    def check(params: dict[str, Any]) -> None:
        value = params.get(name)
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            number = None
        if isinstance(value, bool) or number is None or not number.is_finite() or number < 0:
            raise ValueError(f"{name} must be a number of at least 0, not {value!r}")

    return check


@evaluator("max_cost", check=number_check("usd"))
def max_cost(*, output: Any, expected: Any, item: Any, execution: Any, usd: float) -> EvalScore:
    """The agent's call cost at most ``usd`` dollars."""
    if execution is None:
        raise ValueError("no execution was recorded for this item")
    cost = Decimal(execution.total_cost or 0)
    return EvalScore(cost <= Decimal(str(usd)), comment=f"cost ${cost.normalize():f}")


@evaluator("max_latency", check=number_check("ms"))
def max_latency(*, output: Any, expected: Any, item: Any, execution: Any, ms: float) -> EvalScore:
    """The agent's call took at most ``ms`` milliseconds (batch results have no latency: an error)."""
    if execution is None:
        raise ValueError("no execution was recorded for this item")
    if execution.duration_ms is None:
        raise ValueError("the execution has no duration (a batch result has none)")
    return EvalScore(execution.duration_ms <= ms, comment=f"{execution.duration_ms} ms")
