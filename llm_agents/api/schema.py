"""The OpenAPI 3 schema (drf-spectacular) of this API, whatever the project's other views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema

ViewMethod = TypeVar("ViewMethod", bound=Callable[..., Any])

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


def api_schema(**kwargs: Any) -> Callable[[ViewMethod], ViewMethod]:
    """``@extend_schema(**kwargs)`` for a view method (or ``@action``), built on :class:`ApiAutoSchema`.

    drf-spectacular builds a method's schema on ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` unless the
    method already names a schema class; a project that does not set drf-spectacular's there (DRF's own
    AutoSchema is the default) would then fail to build this API's schema. Naming ours first makes
    the schema independent of the project's settings.
    """

    def decorator(method: ViewMethod) -> ViewMethod:
        if not hasattr(method, "kwargs"):
            method.kwargs = {}  # type: ignore[attr-defined]
        method.kwargs.setdefault("schema", ApiAutoSchema)  # type: ignore[attr-defined]
        return extend_schema(**kwargs)(method)

    return decorator


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
