"""The ``openai`` SDK client used for the Batch API: the one the OpenAI provider of ``BATCH_PROVIDER``
builds from its ``PROVIDERS`` options (``api_key``, ``base_url``, ...), so both share one configuration."""

from __future__ import annotations

import json
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import app_settings

__all__ = ["batch_client"]

#: The SDK's own retries for file uploads and batch calls (the agent runtime's provider switches them off).
MAX_RETRIES = 2

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def batch_client() -> Any:
    """The ``openai.OpenAI`` client for ``BATCH_PROVIDER``, reused while its settings hold."""
    name = app_settings.BATCH_PROVIDER
    spec = app_settings.PROVIDERS.get(name)
    if spec is None:
        raise ImproperlyConfigured(
            f"BATCH_PROVIDER is {name!r}, which LLM_AGENTS['PROVIDERS'] does not name."
        )
    key = f"{name}:{json.dumps(spec, sort_keys=True, default=str)}"
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                options: dict[str, Any] = dict(spec) if isinstance(spec, dict) else {"class": spec}
                provider = import_string(options.pop("class"))(**options)
                sdk_client = getattr(provider, "client", None)
                if sdk_client is None or not hasattr(sdk_client, "batches"):
                    raise ImproperlyConfigured(
                        f"BATCH_PROVIDER {name!r} is not an OpenAI-compatible provider (its client has no "
                        "Batch API)."
                    )
                client = _clients[key] = sdk_client.with_options(max_retries=MAX_RETRIES)
    return client
