"""django-llm-agents: see, price, budget and query what your LLM agents do.

The public names are imported lazily so that ``import llm_agents`` never imports models
(which would fail before Django's app registry is ready).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Agent": "llm_agents.agents",
    "AgentResult": "llm_agents.agents",
    "Param": "llm_agents.agents",
    "Tool": "llm_agents.agents",
    "trace": "llm_agents.tracing",
    "span": "llm_agents.tracing",
    "traced": "llm_agents.tracing",
    "tenant": "llm_agents.tracing",
    "session": "llm_agents.tracing",
    "attribute_to": "llm_agents.tracing",
}
#: Subpackages reachable as attributes (``llm_agents.batches``) without importing them up front.
_LAZY_MODULES = {"attribution", "batches", "datasets", "evals", "scores"}

__all__ = ["__version__", *_LAZY, *_LAZY_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"llm_agents.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_agents' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
