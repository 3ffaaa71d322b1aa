from .batches import Batch, BatchRequest
from .budgets import Budget, BudgetReservation, SpendCounter
from .costs import CostConfig
from .executions import Execution, Span
from .prompts import Prompt, PromptVersion
from .quality import Dataset, DatasetItem, EvalResult, EvalRun, Score, ScoreConfig
from .rollups import (
    DailyDurations,
    DailyLatency,
    DailyModelDurations,
    DailyRollup,
    DailyTotals,
    HourlyDurations,
    HourlyLatency,
    HourlyModelDurations,
    HourlyRollup,
    HourlyTotals,
)

__all__ = [
    "Batch",
    "BatchRequest",
    "Budget",
    "BudgetReservation",
    "CostConfig",
    "DailyDurations",
    "Dataset",
    "DatasetItem",
    "DailyLatency",
    "DailyModelDurations",
    "DailyRollup",
    "DailyTotals",
    "EvalResult",
    "EvalRun",
    "Execution",
    "HourlyDurations",
    "HourlyLatency",
    "HourlyModelDurations",
    "HourlyRollup",
    "HourlyTotals",
    "Prompt",
    "PromptVersion",
    "Score",
    "ScoreConfig",
    "Span",
    "SpendCounter",
]
