"""Handlers of batch results, registered per purpose, and what they receive."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["BatchRequestError", "BatchResult", "get_handler", "register_handler", "unregister_handler"]


@dataclass
class BatchResult:
    """What a handler's ``call(request, result)`` receives.

    ``content`` is the answer's text; ``parsed`` the structured output (an instance of the pydantic model
    given as ``schema``, a dict for a JSON schema, ``None`` without one); ``usage`` is
    ``{"input_tokens", "output_tokens", "total_tokens"}``. ``execution_id`` is the Execution recorded for
    the result (``None`` with ``TRACK_EXECUTIONS`` off); ``raw`` the response body as the provider sent it.
    """

    custom_id: str
    content: str
    parsed: Any = None
    usage: dict[str, int] = field(default_factory=dict)
    model: str = ""
    finish_reason: str = ""
    execution_id: uuid.UUID | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class BatchRequestError(Exception):
    """Why a batch request failed, as ``on_failure(request, error)`` receives it.

    ``code`` is the provider's error code (``batch_expired``, ``invalid_request_error``, ...) or one of ours:
    ``missing_result`` (no line for the request in the output or error file), ``batch_failed``,
    ``batch_expired``, ``batch_cancelled``, ``invalid_output`` (the answer does not match the schema).
    """

    def __init__(self, message: str, *, code: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class BatchHandler(Protocol):
    def call(self, request: Any, result: BatchResult) -> Any: ...


_handlers: dict[str, Any] = {}


def register_handler(purpose: str, handler: Any) -> None:
    """Run ``handler.call(request, result)`` for each successful result of ``purpose``, and
    ``handler.on_failure(request, error)`` (when it has one) for each failed request.

    A plain function is accepted as ``call``. Register in your ``AppConfig.ready()`` so that every
    process that polls has the handler; results whose purpose has no handler wait for a poll that has one.
    """
    if not purpose:
        raise ValueError("purpose must not be empty")
    if not hasattr(handler, "call") and not callable(handler):
        raise TypeError("a batch handler needs a call(request, result) method (or is a function)")
    _handlers[purpose] = handler


def unregister_handler(purpose: str) -> None:
    _handlers.pop(purpose, None)


def get_handler(purpose: str) -> Any | None:
    return _handlers.get(purpose)


def call_handler(handler: Any, request: Any, result: BatchResult) -> Any:
    method = getattr(handler, "call", None)
    return method(request, result) if method is not None else handler(request, result)


def failure_callback(handler: Any) -> Any | None:
    return getattr(handler, "on_failure", None) if handler is not None else None
