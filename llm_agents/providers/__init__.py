"""Provider adapters and the routing of model ids to providers.

``fake/…`` goes to the offline provider; ``claude-…`` or ``anthropic/…`` to Anthropic; everything
else to OpenAI (or the OpenAI-compatible ``base_url`` given in ``PROVIDERS``). While
``llm_agents.testing.fake_llm()`` is active it answers for every provider.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.module_loading import import_string

from ..conf import app_settings
from .base import Provider, ProviderRequest, ProviderResponse, StreamEvent, ToolCall, Usage

__all__ = [
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "StreamEvent",
    "ToolCall",
    "Usage",
    "get_provider",
    "provider_name_for",
]

_instances: dict[str, Provider] = {}
_interceptors: list[Provider] = []


def provider_name_for(model_id: str) -> str:
    if model_id.startswith("fake/"):
        return "fake"
    if model_id.startswith(("claude-", "anthropic/")):
        return "anthropic"
    return "openai"


def get_provider(model_id: str) -> tuple[str, Provider]:
    """``(provider name, provider)`` for a model id. Instances are reused while their settings hold."""
    name = provider_name_for(model_id)
    if _interceptors:
        return name, _interceptors[-1]
    spec = app_settings.PROVIDERS.get(name)
    if spec is None:
        raise LookupError(f"LLM_AGENTS['PROVIDERS'] has no provider named {name!r} (for model {model_id!r}).")
    key = f"{name}:{json.dumps(spec, sort_keys=True, default=str)}"
    provider = _instances.get(key)
    if provider is None:
        options: dict[str, Any] = dict(spec) if isinstance(spec, dict) else {"class": spec}
        provider_class = import_string(options.pop("class"))
        provider = _instances[key] = provider_class(**options)
    return name, provider


def intercept(provider: Provider) -> None:
    """Route every model to ``provider`` until :func:`stop_intercepting` (used by ``fake_llm``)."""
    _interceptors.append(provider)


def stop_intercepting(provider: Provider) -> None:
    _interceptors.remove(provider)
