from .batches import Batch, BatchRequest
from .budgets import Budget, BudgetReservation, SpendCounter
from .costs import CostConfig
from .executions import Execution, Span
from .prompts import Prompt, PromptVersion

__all__ = [
    "Batch",
    "BatchRequest",
    "Budget",
    "BudgetReservation",
    "CostConfig",
    "Execution",
    "Prompt",
    "PromptVersion",
    "Span",
    "SpendCounter",
]
