"""What a model call cost, in US dollars.

``calculate_cost()`` prices a call's tokens at the rate in force when the call was made:

1. the :class:`~llm_agents.models.CostConfig` effective at that moment (an exact ``model`` before a
   ``match_pattern``; the latest ``effective_from`` not after the moment);
2. else the bundled genai-prices data, asked for its price at that moment;
3. else zero, with source ``"unknown"`` and one warning per model per process on the ``llm_agents`` logger.

Token counts follow the OpenTelemetry and genai-prices rule: ``input_tokens`` includes ``cached_tokens``
(reads from the provider's prompt cache) and ``cache_write_tokens`` (writes to it); each of the three parts is
priced at its own rate.
"""

from __future__ import annotations

from .base import COST_PLACES, PER_MILLION, ZERO, Cost, PricingSource
from .batch import BATCH_CONTEXT
from .calculate import calculate_cost
from .configs import COST_CONFIG_TTL, clear_cost_config_cache, cost_config_for
from .recompute import RecomputeResult, recompute_costs
from .sync import DEFAULT_SYNC_PROVIDERS, PriceWindow, SyncResult, genai_price_windows, sync_costs

__all__ = [
    "BATCH_CONTEXT",
    "COST_CONFIG_TTL",
    "COST_PLACES",
    "DEFAULT_SYNC_PROVIDERS",
    "PER_MILLION",
    "ZERO",
    "Cost",
    "PriceWindow",
    "PricingSource",
    "RecomputeResult",
    "SyncResult",
    "calculate_cost",
    "clear_cost_config_cache",
    "cost_config_for",
    "genai_price_windows",
    "recompute_costs",
    "sync_costs",
]
