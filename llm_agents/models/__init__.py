from .batches import Batch, BatchRequest
from .budgets import Budget, BudgetReservation, SpendCounter
from .costs import CostConfig
from .executions import Execution, Span
from .experiments import PromptExperiment
from .operations import AgentPause, AlertChannel, AlertDelivery, AlertEvent, AlertRule
from .prompts import Prompt, PromptLabel, PromptLabelMove, PromptVersion
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
    "AgentPause",
    "AlertChannel",
    "AlertDelivery",
    "AlertEvent",
    "AlertRule",
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
    "PromptExperiment",
    "PromptLabel",
    "PromptLabelMove",
    "PromptVersion",
    "Score",
    "ScoreConfig",
    "Span",
    "SpendCounter",
]
