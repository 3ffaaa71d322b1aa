"""Cost configs (:class:`~llm_agents.models.CostConfig`): which one prices a model at a moment, read
from a copy of the table each process refreshes every ``COST_CONFIG_TTL`` seconds."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import threading
import time
from typing import TYPE_CHECKING

from django.db import DatabaseError

from .base import model_names, moment, provider_prefix

if TYPE_CHECKING:
    from ..models import CostConfig

__all__ = ["COST_CONFIG_TTL", "clear_cost_config_cache", "cost_config_for"]

logger = logging.getLogger("llm_agents")


def cost_config_for(
    model_id: str, at: dt.datetime | None = None, provider: str | None = None
) -> CostConfig | None:
    """The cost config that prices ``model_id`` at ``at`` (default: now), or None.

    A config applies when ``effective_from <= at`` and (``effective_until`` is empty or ``at <
    effective_until``), and either its ``model`` equals the model id (or the id without a ``provider/``
    prefix) or its ``match_pattern`` matches the whole id (``re.fullmatch``). Among those: configs of
    ``provider`` or with a blank provider first; then an exact ``model`` before a pattern; then the latest
    ``effective_from``; then a config naming the provider before a blank one.
    """
    at = moment(at)
    names = model_names(model_id)
    provider = (provider or provider_prefix(model_id) or "").lower()
    by_model, patterned = _cost_configs()
    candidates = [config for name in names for config in by_model.get(name, ())] + patterned
    candidates = [
        config
        for config in candidates
        if config.effective_from <= at and (config.effective_until is None or at < config.effective_until)
    ]
    ranked = []
    for config in candidates:
        exact = config.model in names
        if not exact and not _pattern_matches(config, names):
            continue
        config_provider = config.provider.lower()
        other_provider = bool(provider and config_provider and config_provider != provider)
        ranked.append(
            ((other_provider, not exact, -config.effective_from.timestamp(), not config_provider), config)
        )
    if not ranked:
        return None
    return min(ranked, key=lambda item: item[0])[1]


#: Seconds a process keeps its copy of the cost configs before reading them again. Saving or
#: deleting a CostConfig in this process refreshes it at once.
COST_CONFIG_TTL = 60.0


class _CostConfigCache:
    """Every CostConfig, by model, and those with a match pattern: read once per TTL, not per call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded_at = -COST_CONFIG_TTL
        self.by_model: dict[str, list[CostConfig]] = {}
        self.patterned: list[CostConfig] = []

    def get(self) -> tuple[dict[str, list[CostConfig]], list[CostConfig]]:
        if time.monotonic() - self.loaded_at >= COST_CONFIG_TTL:
            from ..models import CostConfig

            by_model: dict[str, list[CostConfig]] = {}
            patterned: list[CostConfig] = []
            try:
                configs = list(CostConfig.objects.all())
            except DatabaseError:
                if self.loaded_at < 0:
                    raise
                logger.warning(
                    "Cost configs could not be read; prices from the last read are used meanwhile."
                )
                self.loaded_at = time.monotonic() - COST_CONFIG_TTL + 5  # try again in 5 seconds
                return self.by_model, self.patterned
            for config in configs:
                by_model.setdefault(config.model, []).append(config)
                if config.match_pattern:
                    patterned.append(config)
            with self.lock:
                self.by_model, self.patterned, self.loaded_at = by_model, patterned, time.monotonic()
        return self.by_model, self.patterned

    def clear(self, **kwargs: object) -> None:
        self.loaded_at = -COST_CONFIG_TTL


_cost_config_cache = _CostConfigCache()
_cost_configs = _cost_config_cache.get
#: Forget the cached cost configs (connected to CostConfig's post_save and post_delete).
clear_cost_config_cache = _cost_config_cache.clear


def _pattern_matches(config: CostConfig, names: list[str]) -> bool:
    pattern = _compiled(config.match_pattern) if config.match_pattern else None
    return pattern is not None and any(pattern.fullmatch(name) for name in names)


@functools.lru_cache(maxsize=256)
def _compiled(match_pattern: str) -> re.Pattern[str] | None:
    """The compiled pattern, or None (warned about once) when it is not a valid regular expression."""
    try:
        return re.compile(match_pattern)
    except re.error as exc:
        logger.warning(
            "Cost config match_pattern %r is not a valid regular expression (%s); ignored.",
            match_pattern,
            exc,
        )
        return None
