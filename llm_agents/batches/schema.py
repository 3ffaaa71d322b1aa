"""Structured output for batch requests: a JSON schema dict or a pydantic model class.

What ``enqueue`` stores in the payload (JSON) is ``{"name", "schema", "strict", "model"}``, where ``model``
is the dotted path of the pydantic class (``None`` for a plain JSON schema), so that a poller in
another process can rebuild ``result.parsed`` as an instance of that class.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["SchemaValidationError", "normalize_schema", "parse_structured"]


class SchemaValidationError(ValueError):
    """A batch result whose text does not match the request's schema."""


def normalize_schema(schema: Any, *, default_name: str) -> dict[str, Any] | None:
    """The stored form of ``schema`` (a pydantic model class, a JSON schema, or OpenAI's
    ``{"name", "schema", "strict"}`` wrapper); ``None`` for no schema."""
    if schema is None:
        return None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return {
            "name": _safe_name(schema.__name__),
            "schema": _strict_json_schema(schema),
            "strict": True,
            "model": _dotted_path(schema),
        }
    if isinstance(schema, dict):
        if isinstance(schema.get("schema"), dict) and "name" in schema:
            name, body, strict = schema["name"], schema["schema"], bool(schema.get("strict", True))
        else:
            name, body, strict = schema.get("title") or default_name, schema, True
        try:
            json.dumps(body)
        except TypeError as exc:
            raise ValueError(f"schema is not JSON-serialisable: {exc}") from exc
        return {"name": _safe_name(str(name)), "schema": body, "strict": strict, "model": None}
    raise TypeError(
        f"schema must be a JSON-schema dict or a pydantic model class, not {type(schema).__name__}"
    )


def parse_structured(text: str, schema: dict[str, Any]) -> Any:
    """``text`` parsed and validated: a pydantic instance, or a dict checked against the JSON schema.
    Raises :class:`SchemaValidationError`."""
    if schema.get("model"):
        model = import_string(schema["model"])
        try:
            return model.model_validate_json(text)
        except ValueError as exc:
            raise SchemaValidationError(f"the result does not match {model.__name__}: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SchemaValidationError(f"the result is not JSON: {exc}") from exc
    problems = validate(value, schema["schema"])
    if problems:
        raise SchemaValidationError("the result does not match the schema: " + "; ".join(problems[:5]))
    return value


def _strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema OpenAI's structured outputs accept for a pydantic model (what the SDK's own
    ``parse()`` helpers send: every property required, no additional properties)."""
    try:
        from openai.lib._pydantic import to_strict_json_schema
    except ImportError:  # pragma: no cover - depends on the SDK version
        return model.model_json_schema()
    return to_strict_json_schema(model)


def _dotted_path(model: type) -> str:
    path = f"{model.__module__}.{model.__qualname__}"
    if "<locals>" in model.__qualname__:
        raise ValueError(
            f"schema {model.__qualname__} is defined inside a function; define it at module level so that "
            "poll() can import it to build result.parsed"
        )
    return path


def _safe_name(name: str) -> str:
    """OpenAI accepts ``[a-zA-Z0-9_-]{1,64}`` as a schema name."""
    return (re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_") or "result")[:64]


# -- JSON schema validation ---------------------------------------------------------------------------
# The subset structured outputs use: type, properties, required, additionalProperties, items, enum,
# const, anyOf/oneOf/allOf, $ref into $defs/definitions, and the usual string/number/array bounds.

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def validate(value: Any, schema: dict[str, Any]) -> list[str]:
    """Problems of ``value`` against ``schema`` (empty when it matches)."""
    problems: list[str] = []
    _check(value, schema, schema, "$", problems)
    return problems


def _type_matches(value: Any, name: str) -> bool:
    if name == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            or (isinstance(value, float) and value.is_integer())
        )
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = _TYPES.get(name)
    return expected is not None and isinstance(value, expected)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        raise SchemaValidationError(f"only local $ref are supported, not {ref!r}")
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _check(value: Any, schema: Any, root: dict[str, Any], path: str, problems: list[str]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        problems.append(f"{path}: no value is allowed here")
        return
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, path, problems)
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_type_matches(value, name) for name in names):
            problems.append(f"{path}: expected {' or '.join(names)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: expected {schema['const']!r}")
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            matches = [option for option in schema[keyword] if not validate_in(value, option, root, path)]
            if not matches or (keyword == "oneOf" and len(matches) > 1):
                problems.append(f"{path}: matches {len(matches)} of the {keyword} options")
    for option in schema.get("allOf", []):
        _check(value, option, root, path, problems)
    if isinstance(value, dict):
        _check_object(value, schema, root, path, problems)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, problems)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{path}: length {len(value)} is out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: does not match {schema['pattern']!r}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for keyword, fails in (
            ("minimum", lambda bound: value < bound),
            ("maximum", lambda bound: value > bound),
            ("exclusiveMinimum", lambda bound: value <= bound),
            ("exclusiveMaximum", lambda bound: value >= bound),
        ):
            if keyword in schema and fails(schema[keyword]):
                problems.append(f"{path}: {value} breaks {keyword} {schema[keyword]}")


def validate_in(value: Any, schema: Any, root: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    _check(value, schema, root, path, problems)
    return problems


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str, problems: list[str]
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            problems.append(f"{path}: {name!r} is required")
    additional = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], root, f"{path}.{name}", problems)
        elif additional is False:
            problems.append(f"{path}: {name!r} is not allowed")
        elif isinstance(additional, dict):
            _check(item, additional, root, f"{path}.{name}", problems)


def _check_array(
    value: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str, problems: list[str]
) -> None:
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
        problems.append(f"{path}: {len(value)} items is out of bounds")
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _check(item, items, root, f"{path}[{index}]", problems)
