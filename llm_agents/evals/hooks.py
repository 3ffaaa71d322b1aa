"""What evaluation runs need registered in every process (``AppConfig.ready()`` calls :func:`install`)."""

from __future__ import annotations

from . import metering
from .batch import install_handler

__all__ = ["install"]


def install() -> None:
    """Register the batch handler of purpose ``llm_agents.eval`` (so that any process that polls settles
    evaluation runs) and the completion hook that counts the evaluators' own spend. Safe to repeat."""
    install_handler()
    metering.install()
