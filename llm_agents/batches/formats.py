"""The JSONL lines of a batch input file, for the two endpoints the Batch API serves here:
``/v1/responses`` and ``/v1/chat/completions``. The lines of its output and error files are read by the
OpenAI provider module (:func:`llm_agents.providers.openai.read_batch_line`), as every OpenAI answer is."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ENDPOINTS", "request_body", "request_line"]

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
