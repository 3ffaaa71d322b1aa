"""MkDocs hook: the HTTP API reference page is written from docs/openapi.json at build time.

docs/openapi.json is what the API's ``schema/`` serves (``make api-schema`` rewrites it, and a test fails
when it is stale), so the page lists every operation with its parameters, body and answer as the code
defines them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "openapi.json"
PAGE = "api-reference.md"
METHODS = ("get", "post", "put", "patch", "delete")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    return markdown.rstrip() + "\n\n" + reference(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def reference(schema: dict[str, Any]) -> str:
    components = schema["components"]["schemas"]
    lines: list[str] = []
    for path, operations in schema["paths"].items():
        for method in METHODS:
            if method in operations:
                lines += operation(method, path, operations[method])
    lines += ["## Schemas", ""]
    for name, component in components.items():
        lines += [f"### {name}", ""]
        if component.get("description"):
            lines += [one_line(component["description"]), ""]
        if "enum" in component:
            lines += ["One of " + ", ".join(f"`{value}`" for value in component["enum"] if value) + ".", ""]
        if "properties" in component:
            lines += fields(component, components)
    return "\n".join(lines) + "\n"


def operation(method: str, path: str, spec: dict[str, Any]) -> list[str]:
    lines = [f"## `{method.upper()} {path}`", ""]
    if spec.get("description"):
        lines += [one_line(spec["description"]), ""]
    parameters = spec.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for parameter in parameters:
            lines.append(
                f"| `{parameter['name']}` | {parameter['in']} | {type_of(parameter.get('schema', {}))} | "
                f"{'yes' if parameter.get('required') else 'no'} | {one_line(parameter.get('description', ''))} |"
            )
        lines.append("")
    body = spec.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        lines += [f"**Body** (JSON): {type_of(body['schema'])}", ""]
    for status, answer in spec.get("responses", {}).items():
        if status.startswith("2"):
            content = answer.get("content", {})
            media = next(iter(content), None)
            shape = type_of(content[media]["schema"]) if media and "schema" in content[media] else "no body"
            lines += [f"**{status}** ({media or 'empty'}): {shape}", ""]
    errors = [status for status in spec.get("responses", {}) if not status.startswith("2")]
    if errors:
        lines += ["Errors: " + ", ".join(errors) + " (see [Conventions](api.md#conventions)).", ""]
    return lines


def fields(component: dict[str, Any], components: dict[str, Any]) -> list[str]:
    required = set(component.get("required", []))
    lines = ["| field | type | description |", "|---|---|---|"]
    for name, spec in component["properties"].items():
        notes = []
        if spec.get("readOnly"):
            notes.append("read-only")
        if name in required and not spec.get("readOnly"):
            notes.append("required")
        description = one_line(spec.get("description", ""))
        suffix = f" ({', '.join(notes)})" if notes else ""
        lines.append(f"| `{name}` | {type_of(spec)}{suffix} | {description} |")
    lines.append("")
    return lines


def type_of(spec: dict[str, Any]) -> str:
    """A short, linked description of a JSON-schema type: ``integer``, ``list of [Execution](#execution)``."""
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        shape = f"[{name}](#{name.lower()})"
    elif "allOf" in spec:
        shape = " and ".join(type_of(part) for part in spec["allOf"])
    elif "enum" in spec:
        shape = "one of " + ", ".join(f"`{value}`" for value in spec["enum"] if value is not None)
    elif spec.get("type") == "array":
        shape = "list of " + type_of(spec.get("items", {}))
    elif spec.get("type") == "object" and "properties" not in spec:
        shape = "object"
    else:
        shape = spec.get("type", "any")
        if spec.get("format"):
            shape += f" ({spec['format']})"
    if spec.get("nullable"):
        shape += " or null"
    return shape


def one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
