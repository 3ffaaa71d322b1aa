"""The admin: one module per model family (importing them registers the ModelAdmins)."""

from . import alerts, batches, budgets, costs, executions, experiments, pauses, prompts, quality  # noqa: F401
from .attribution import ExecutionInline

__all__ = ["ExecutionInline"]
