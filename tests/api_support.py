"""Helpers shared by the API tests (tests/test_api_*.py)."""

from __future__ import annotations

from decimal import Decimal

API = "/api/llm-agents/"

# Every GET endpoint that needs no object id, with the parameters it requires.
GET_ENDPOINTS = [
    "overview/",
    "executions/",
    "agents/",
    "agents/SupportAgent/stats/",
    "costs/summary/",
    "costs/forecast/",
    "trends/",
    "comparison/models/",
    "comparison/versions/?agent_type=SupportAgent&versions=1.0",
    "errors/",
    "budgets/",
    "prompts/",
    "batches/",
    "pauses/",
    "export/",
    "schema/",
]


def tenant_from_header(request=None):
    """A TENANT_RESOLVER: the ``X-Tenant`` header of an API request (no tenant elsewhere)."""
    if request is None:
        return None
    return request.headers.get("X-Tenant") or None


TENANCY = {"MULTI_TENANCY": True, "TENANT_RESOLVER": "tests.api_support.tenant_from_header"}


def usd(value: str) -> Decimal:
    return Decimal(value)


def body(response) -> bytes:
    """The content of a response, streamed or not."""
    return b"".join(response.streaming_content) if response.streaming else response.content
