from .batches import Batch, BatchRequest
from .budgets import Budget, BudgetReservation, SpendCounter
from .costs import CostConfig
from .executions import Execution, Span
from .prompts import Prompt, PromptVersion
from .rollups import DailyDurations, DailyLatency, DailyRollup, HourlyDurations, HourlyLatency, HourlyRollup

__all__ = [
    "Batch",
    "BatchRequest",
    "Budget",
    "BudgetReservation",
    "CostConfig",
    "DailyDurations",
    "DailyLatency",
    "DailyRollup",
    "Execution",
    "HourlyDurations",
    "HourlyLatency",
    "HourlyRollup",
    "Prompt",
    "PromptVersion",
    "Span",
    "SpendCounter",
]
