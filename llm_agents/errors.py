"""Exceptions raised by agents and providers.

``ProviderError`` and its subclasses carry ``retryable``: rate limits, timeouts and server errors
are retried (and fall back to the next model); authentication and invalid requests are not.
"""

from __future__ import annotations

from typing import Any


class LLMAgentsError(Exception):
    """Base class of every exception raised by django-llm-agents."""


class ProviderError(LLMAgentsError):
    """A provider request failed. Server errors (the default) are retryable."""

    default_retryable = True

    def __init__(self, message: str = "", *, retryable: bool | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.status_code: int | None = details.pop("status_code", None)
        self.input_tokens: int = details.pop("input_tokens", 0)
        self.output_tokens: int = details.pop("output_tokens", 0)
        self.details = details


class RateLimitError(ProviderError):
    """The provider refused the request for exceeding a rate or quota limit (HTTP 429)."""


class ProviderTimeoutError(ProviderError):
    """The request took longer than the agent's ``timeout``."""


class AuthenticationError(ProviderError):
    """Bad or missing credentials. Never retried and never falls back to another model."""

    default_retryable = False


class InvalidRequestError(ProviderError):
    """The provider rejected the request itself (HTTP 400/404/422). Not retried."""

    default_retryable = False


class AllModelsExhaustedError(LLMAgentsError):
    """Every model of ``[model] + fallback_models`` failed; ``last_error`` is the final failure."""

    def __init__(self, message: str, *, models_tried: list[str], last_error: BaseException | None) -> None:
        super().__init__(message)
        self.models_tried = models_tried
        self.last_error = last_error

    @property
    def retryable(self) -> bool:
        return bool(getattr(self.last_error, "retryable", False))


class BudgetExceededError(LLMAgentsError):
    """A hard-stop budget refused the call before it reached a provider."""

    def __init__(self, message: str, *, budget: Any = None, spend: Any = None, limit: Any = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.spend = spend
        self.limit = limit


class PromptError(LLMAgentsError):
    """A managed prompt could not be found or rendered (missing variable, missing partial, cycle)."""

    #: The name of the missing variable, when that is what failed.
    variable: str | None = None
    #: The partial that was being rendered when rendering failed, if any.
    partial: str | None = None


class AgentPausedError(LLMAgentsError):
    """An :class:`~llm_agents.models.AgentPause` in force refused the call before any provider request."""

    def __init__(self, message: str, *, pause: Any = None) -> None:
        super().__init__(message)
        self.pause = pause


class RunawayAgentError(LLMAgentsError):
    """A call went past one of its agent's runaway limits (``max_cost_per_call``, ``max_tool_calls``,
    ``max_identical_tool_calls``, named in the message and in ``limit``); the tool loop stopped."""

    def __init__(self, message: str, *, limit: str, value: Any = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
