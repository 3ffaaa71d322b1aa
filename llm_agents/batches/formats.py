"""The JSONL lines of a batch input file, and the reading of output and error file lines, for the
two endpoints the Batch API serves here: ``/v1/responses`` and ``/v1/chat/completions``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENDPOINTS", "ParsedLine", "parse_line", "request_body", "request_line"]

RESPONSES = "/v1/responses"
CHAT_COMPLETIONS = "/v1/chat/completions"
ENDPOINTS = (RESPONSES, CHAT_COMPLETIONS)


def request_body(endpoint: str, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The body of one request to ``endpoint`` built from a stored payload (no temperature for OpenAI's
    reasoning models, which answer 400 to one)."""
    from ..providers.openai import accepts_temperature  # needs the openai SDK, which only flush does

    instructions = payload.get("instructions") or ""
    user_input = payload.get("input")
    schema = payload.get("schema")
    body: dict[str, Any] = {"model": model}
    if endpoint == RESPONSES:
        if instructions:
            body["instructions"] = instructions
        body["input"] = user_input
        if schema:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": schema["name"],
                    "schema": schema["schema"],
                    "strict": schema.get("strict", True),
                }
            }
    elif endpoint == CHAT_COMPLETIONS:
        messages = [{"role": "system", "content": instructions}] if instructions else []
        if isinstance(user_input, list):
            messages += user_input
        else:
            messages.append({"role": "user", "content": user_input})
        body["messages"] = messages
        if schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema["name"],
                    "schema": schema["schema"],
                    "strict": schema.get("strict", True),
                },
            }
    else:
        raise ValueError(f"BATCH_ENDPOINT must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
    if payload.get("temperature") is not None and accepts_temperature(model):
        body["temperature"] = payload["temperature"]  # reasoning models refuse any but the default
    body.update(payload.get("params") or {})
    return body


def request_line(custom_id: str, endpoint: str, model: str, payload: dict[str, Any]) -> bytes:
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": endpoint,
        "body": request_body(endpoint, model, payload),
    }
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass
class ParsedLine:
    """One line of an output or error file: the answer, or why there is none."""

    custom_id: str
    ok: bool
    content: str = ""
    model: str = ""
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    status_code: int | None = None
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    body: dict[str, Any] = field(default_factory=dict)


def parse_line(raw: bytes | str) -> ParsedLine:
    """Read one output/error file line (``{"custom_id", "response": {"status_code", "body"}, "error"}``)."""
    line = json.loads(raw)
    custom_id = str(line.get("custom_id", ""))
    response = line.get("response") or {}
    body = response.get("body") or {}
    status_code = response.get("status_code")
    error = line.get("error") or (body.get("error") if isinstance(body, dict) else None)
    if error or (status_code is not None and status_code != 200):
        error = error or {}
        return ParsedLine(
            custom_id=custom_id,
            ok=False,
            status_code=status_code,
            error_code=str(error.get("code") or error.get("type") or ""),
            error_message=str(error.get("message") or f"the request answered HTTP {status_code}"),
            request_id=str(response.get("request_id") or ""),
            body=body if isinstance(body, dict) else {},
        )
    from ..providers.openai import body_response_from  # the reader of OpenAI's answers; needs the SDK

    answer = body_response_from(body)
    usage = answer.usage
    return ParsedLine(
        custom_id=custom_id,
        ok=True,
        content=answer.content,
        model=str(body.get("model") or ""),
        finish_reason=answer.finish_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        status_code=status_code,
        request_id=str(response.get("request_id") or ""),
        body=body,
    )
