"""The ``LLM_AGENTS`` settings the demo needs, kept apart from ``example_project/settings.py`` so that the
test suite runs the ``demo`` command with exactly these (``override_settings(LLM_AGENTS=demo_settings())``).

No key, no network: ``fake/…`` models answer offline with simulated latencies (a log-normal per model, in
tens of milliseconds so the demo finishes in seconds), the small summary model tersely and ``fake/judge``
as a judge (``offline_models``), and batches go to an OpenAI-compatible Batch API that runs inside the
process. With ``OPENAI_API_KEY`` set the demo agents use OpenAI instead, batches too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llm_agents.conf import DEFAULT_PROVIDERS

#: The folder ``sync_prompts`` reads: the prompts as they are now.
PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
#: Earlier states of that folder, oldest first; the demo syncs them in turn to build a version history.
PROMPT_HISTORY = sorted((PROMPTS.parent / "prompt_history").iterdir())

#: Simulated latency per offline model: half the calls are faster than the median, 95 % than p95.
LATENCY = {
    "fake/search-small": {"median_ms": 18, "p95_ms": 60},
    "fake/summary-large": {"median_ms": 45, "p95_ms": 160},
    "fake/summary-small": {"median_ms": 15, "p95_ms": 45},
    "fake/story-stream": {"median_ms": 30, "p95_ms": 90},
}


def demo_settings() -> dict[str, Any]:
    """The demo's ``LLM_AGENTS``: tenants on, the shipped prompts, the offline providers."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    return {
        "MULTI_TENANCY": True,
        "PROMPTS_SOURCE_PATH": str(PROMPTS),
        "PROVIDERS": {
            **DEFAULT_PROVIDERS,
            "fake": {"class": "example_project.demo.offline_models.OfflineModels", "latency": LATENCY},
            "offline_batches": "example_project.demo.offline_batch_api.OfflineBatchProvider",
        },
        "BATCH_PROVIDER": "openai" if online else "offline_batches",
    }
