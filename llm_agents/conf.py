"""The ``LLM_AGENTS`` settings.

Every key is optional. Values are read from ``django.conf.settings`` on every access, so
``override_settings(LLM_AGENTS={...})`` takes effect at once::

    from llm_agents.conf import app_settings
    app_settings.RETENTION_DAYS
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings

DEFAULT_REDACT_KEYS = [
    "password",
    "token",
    "api_key",
    "secret",
    "credential",
    "authorization",
    "access_token",
    "refresh_token",
    "private_key",
]

DEFAULT_PROVIDERS = {
    "openai": "llm_agents.providers.openai.OpenAIProvider",
    "anthropic": "llm_agents.providers.anthropic.AnthropicProvider",
    "fake": "llm_agents.providers.fake.FakeProvider",
}

DEFAULTS: dict[str, Any] = {
    # Write Execution/Span rows (signals fire either way).
    "TRACK_EXECUTIONS": True,
    # PostgreSQL: make the caller wait for the WAL flush of each tracking write (False: commit without
    # waiting; a crash of the database server itself can lose the last fraction of a second of rows).
    "DURABLE_TRACKING_WRITES": False,
    # Analytics answer from the hourly and daily rollups (kept by database triggers whatever this
    # says) wherever a question allows, and from the rows otherwise; False: always from the rows.
    "ROLLUPS": True,
    # Hand finished records to a Celery task instead of writing on the caller's thread.
    "ASYNC_LOGGING": False,
    # Store rendered prompts / responses (and span input / output).
    "PERSIST_PROMPTS": True,
    "PERSIST_RESPONSES": True,
    # Parameter and metadata keys (case-insensitive substring) replaced at any depth.
    "REDACT_KEYS": DEFAULT_REDACT_KEYS,
    # Regexes redacted inside stored prompts, responses and span input/output.
    "REDACT_PATTERNS": [],
    "REDACTION_PLACEHOLDER": "[REDACTED]",
    # Age in days after which purge_executions deletes executions; None keeps everything.
    "RETENTION_DAYS": 30,
    "DEFAULT_MODEL": "gpt-4o-mini",
    "DEFAULT_TEMPERATURE": 0.0,
    "DEFAULT_TIMEOUT": 60,
    "DEFAULT_RETRIES": 0,
    # Provider name -> dotted path of a Provider class, or {"class": path, **options}.
    "PROVIDERS": DEFAULT_PROVIDERS,
    "MULTI_TENANCY": False,
    # Dotted path of a callable returning the current tenant id.
    "TENANT_RESOLVER": None,
    "BUDGETS_ENABLED": True,
    "CACHE_ALIAS": "default",
    # Defaults of Execution.objects.expensive() / slow() / high_token_usage().
    "EXPENSIVE_THRESHOLD": Decimal("1.00"),
    "SLOW_THRESHOLD_MS": 5000,
    "HIGH_TOKEN_THRESHOLD": 10000,
    # Folder read by sync_prompts, and the subfolders to read (empty: all).
    "PROMPTS_SOURCE_PATH": None,
    "PROMPT_SUBFOLDERS": [],
    "BATCH_ENABLED": True,
    "BATCH_PROVIDER": "openai",
    "BATCH_ENDPOINT": "/v1/responses",
    # Seconds after which a claimed but unsubmitted batch is released.
    "BATCH_STALE_CLAIM_AFTER": 900,
    # Price factor for batch results when genai-prices has no batch price.
    "BATCH_DISCOUNT": 0.5,
    "AUTO_INSTRUMENT": False,
    "OTEL_EXPORT": False,
    "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "API_PAGE_SIZE": 50,
    # Folder where records wait while the database is unreachable (None: <tempdir>/llm_agents_spool).
    "SPOOL_PATH": None,
    # DATABASES alias (e.g. a read replica) of the dashboard, the API's reads and the analytics;
    # None: the database the routers give, as for writes.
    "ANALYTICS_DATABASE": None,
    # PostgreSQL >= 13: "monthly" keeps executions and spans in monthly partitions on started_at
    # (after `manage.py llm_agents_partitions --enable`); None keeps plain tables. SQLite ignores it.
    "PARTITIONING": None,
    # Seconds an AgentResult.feedback_token stays valid (default a week).
    "FEEDBACK_TOKEN_MAX_AGE": 604800,
    # DRF throttle rate of the feedback/ endpoint (scope "llm_agents_feedback"), per client address.
    "FEEDBACK_THROTTLE_RATE": "60/min",
    # Prompt labels only users with the permission llm_agents.promote_prompt may move (admin and API).
    "PROTECTED_PROMPT_LABELS": ["production"],
}


class AppSettings:
    """Attribute access to ``settings.LLM_AGENTS`` with the documented defaults."""

    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "LLM_AGENTS", None)
        return value if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"LLM_AGENTS has no setting {name!r}")
        return self.user_settings().get(name, DEFAULTS[name])


app_settings = AppSettings()
