"""The OpenAPI 3 schema (drf-spectacular) of this API, whatever the project's other views."""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator
from drf_spectacular.openapi import AutoSchema

ERROR_RESPONSES = {
    "400": "Invalid parameters or body: each offending field with its reasons.",
    "401": "Not authenticated (with an authentication scheme that asks for credentials).",
    "403": "Not authenticated, or not allowed by API_PERMISSION_CLASSES (staff only by default).",
    "404": "No such object, or not visible to the request's tenant; or a page past the last one.",
}
ERROR_SCHEMA = {
    "type": "object",
    "description": '{"detail": "..."} or {"<field>": ["reason", ...]}',
    "additionalProperties": {},
}


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with the error answers every view can give documented."""

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, description in ERROR_RESPONSES.items():
            responses.setdefault(
                code, {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            )
        return responses


class ApiEndpoints(EndpointEnumerator):
    def should_include_endpoint(self, path: str, callback: Any) -> bool:
        view_class = getattr(callback, "cls", None)
        return (
            view_class is not None
            and view_class.__module__.startswith("llm_agents.api.")
            and super().should_include_endpoint(path, callback)
        )


class ApiSchemaGenerator(SchemaGenerator):
    """Only the views of ``llm_agents.api``, wherever the project mounts them."""

    endpoint_inspector_cls = ApiEndpoints
