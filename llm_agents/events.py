"""Sending our signals so that a failing receiver is logged and never breaks the caller."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("llm_agents")


def emit(signal: Signal, sender: Any = None, **payload: Any) -> None:
    """Send ``signal`` with keyword arguments; log (never raise) what a receiver raises."""
    if not signal.has_listeners(sender):
        return
    for receiver, result in signal.send_robust(sender=sender, **payload):
        if isinstance(result, Exception):
            logger.error(
                "Signal receiver %r raised %s: %s",
                receiver,
                type(result).__name__,
                result,
                exc_info=(type(result), result, result.__traceback__),
            )
