"""The admin: one module per model family (importing them registers the ModelAdmins)."""

from . import batches, budgets, costs, executions, experiments, prompts, quality  # noqa: F401
