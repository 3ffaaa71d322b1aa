from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass
class AgentResult:
    """What ``Agent.call`` returns. ``execution`` loads the recorded Execution on first access."""

    content: str
    execution_id: uuid.UUID
    model_id: str
    chosen_model_id: str
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    total_cost: Decimal = Decimal("0")
    duration_ms: int = 0
    cached: bool = False
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = ""
    parsed: Any = None
    time_to_first_token_ms: int | None = None

    @property
    def execution(self) -> Any:
        cached = self.__dict__.get("_execution")
        if cached is None:
            from ..models import Execution

            cached = self.__dict__["_execution"] = Execution.objects.get(pk=self.execution_id)
        return cached

    @property
    def feedback_token(self) -> str:
        """A signed token naming this call's execution, for its end user's feedback
        (``scores.record_feedback``, ``POST feedback/``); valid ``FEEDBACK_TOKEN_MAX_AGE`` seconds."""
        from ..scores import feedback_token

        return feedback_token(self.execution_id)
