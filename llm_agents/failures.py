"""How failed executions are told apart: the statuses that are failures and the categories of
``error_analysis`` (SPEC sections 3 and 15), read by the queries and by the rollup triggers alike."""

from django.db import models
from django.db.models import Case, Q, Value, When

FAILED_STATUSES = ("error", "timeout")

ERROR_CATEGORIES = (
    "rate_limit",
    "authentication",
    "network",
    "timeout",
    "invalid_request",
    "other",
    "budget",
)
ERROR_CLASS_CATEGORIES = {
    # A call refused by a hard-stop budget: not an error of the model (SPEC section 15).
    "budget": ("BudgetExceededError",),
    # Refused by a pause or stopped by a runaway limit: whatever words their messages hold.
    "other": ("AgentPausedError", "RunawayAgentError"),
    "rate_limit": ("RateLimitError",),
    "authentication": ("AuthenticationError", "PermissionDeniedError"),
    "timeout": ("ProviderTimeoutError", "TimeoutError", "APITimeoutError", "ReadTimeout", "ConnectTimeout"),
    "invalid_request": ("InvalidRequestError", "BadRequestError", "UnprocessableEntityError"),
    "network": ("ConnectionError", "APIConnectionError", "ConnectError", "NetworkError", "OSError"),
}
ERROR_MESSAGE_KEYWORDS = (
    ("rate_limit", ("rate limit", "rate_limit", "too many requests", "429")),
    ("authentication", ("authentication", "unauthorized", "invalid api key", "permission denied", "401")),
    ("timeout", ("timed out", "timeout")),
    ("network", ("connection", "network", "unreachable", "name resolution", "dns")),
    ("invalid_request", ("invalid", "bad request", "400")),
)


def error_category() -> Case:
    """A SQL expression naming the error category of a failed execution (see ``error_analysis``)."""
    whens = []
    for category, classes in ERROR_CLASS_CATEGORIES.items():
        condition = Q(error_class__in=classes)
        if category == "timeout":
            condition |= Q(status="timeout")
        whens.append(When(condition, then=Value(category)))
    for category, keywords in ERROR_MESSAGE_KEYWORDS:
        condition = Q()
        for keyword in keywords:
            condition |= Q(error_message__icontains=keyword)
        whens.append(When(condition, then=Value(category)))
    return Case(*whens, default=Value("other"), output_field=models.CharField())
