"""System checks for the ``LLM_AGENTS`` settings (ids ``llm_agents.E001``…)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.db.utils import load_backend
from django.utils.module_loading import import_string

from .batches.formats import ENDPOINTS as BATCH_ENDPOINTS
from .conf import DEFAULTS
from .db import SUPPORTED_VENDORS
from .db.routing import analytics_alias

BOOLEAN_KEYS = (
    "TRACK_EXECUTIONS",
    "DURABLE_TRACKING_WRITES",
    "ASYNC_LOGGING",
    "PERSIST_PROMPTS",
    "PERSIST_RESPONSES",
    "MULTI_TENANCY",
    "BUDGETS_ENABLED",
    "BATCH_ENABLED",
    "AUTO_INSTRUMENT",
    "OTEL_EXPORT",
    "ROLLUPS",
)


PARTITIONING_SCHEMES = (None, "monthly")


def _is_rate(value: Any) -> bool:
    """A DRF throttle rate: ``"<requests>/<period>"``, the period's first letter s, m, h or d."""
    if not isinstance(value, str):
        return False
    requests, _, period = value.partition("/")
    return requests.isdigit() and int(requests) > 0 and period[:1] in ("s", "m", "h", "d")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def _check_importable(value: Any, *, want_class: bool = False) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a dotted import path (a string)"
    try:
        target = import_string(value)
    except ImportError as exc:
        return f"cannot import {value!r}: {exc}"
    if want_class and not isinstance(target, type):
        return f"{value!r} is not a class"
    if not callable(target):
        return f"{value!r} is not callable"
    return None


def _problems(user: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    """Yield (id, key, message) for each bad value the user set (an error, or a warning for ids W…)."""

    def get(key: str) -> Any:
        return user.get(key, DEFAULTS[key])

    for key in BOOLEAN_KEYS:
        if key in user and not isinstance(user[key], bool):
            yield "E003", key, "must be True or False"

    if not _is_str_list(get("REDACT_KEYS")):
        yield "E004", "REDACT_KEYS", "must be a list of strings"

    patterns = get("REDACT_PATTERNS")
    if not _is_str_list(patterns):
        yield "E005", "REDACT_PATTERNS", "must be a list of regular expressions (strings)"
    else:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                yield "E005", "REDACT_PATTERNS", f"{pattern!r} is not a valid regular expression: {exc}"

    if not isinstance(get("REDACTION_PLACEHOLDER"), str):
        yield "E006", "REDACTION_PLACEHOLDER", "must be a string"

    retention = get("RETENTION_DAYS")
    if retention is not None and (not _is_int(retention) or retention < 1):
        yield "E007", "RETENTION_DAYS", f"must be None or a positive whole number of days, not {retention!r}"

    model = get("DEFAULT_MODEL")
    if not isinstance(model, str) or not model:
        yield "E008", "DEFAULT_MODEL", "must be a non-empty model id"

    temperature = get("DEFAULT_TEMPERATURE")
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        yield "E009", "DEFAULT_TEMPERATURE", f"must be a number from 0 to 2, not {temperature!r}"

    timeout = get("DEFAULT_TIMEOUT")
    if not _is_number(timeout) or timeout <= 0:
        yield "E010", "DEFAULT_TIMEOUT", f"must be a positive number of seconds, not {timeout!r}"

    retries = get("DEFAULT_RETRIES")
    if not _is_int(retries) or retries < 0:
        yield "E011", "DEFAULT_RETRIES", f"must be a whole number >= 0, not {retries!r}"

    providers = get("PROVIDERS")
    if not isinstance(providers, dict) or not providers:
        yield "E012", "PROVIDERS", "must be a dict of provider name -> dotted path of a Provider class"
    else:
        for name, spec in providers.items():
            path = spec.get("class") if isinstance(spec, dict) else spec
            if not isinstance(path, str) or not path:
                yield "E012", "PROVIDERS", f"provider {name!r} needs a dotted path (or a dict with 'class')"
                continue
            try:
                problem = _check_importable(path, want_class=True)
            except ImproperlyConfigured as exc:  # the provider's SDK (an optional extra) is missing
                if "PROVIDERS" in user:
                    yield "W002", "PROVIDERS", f"provider {name!r} cannot be used: {exc}"
                continue
            if problem:
                yield "E024", "PROVIDERS", f"provider {name!r}: {problem}"

    resolver = get("TENANT_RESOLVER")
    if resolver is not None:
        problem = _check_importable(resolver)
        if problem:
            yield "E013", "TENANT_RESOLVER", problem

    alias = get("CACHE_ALIAS")
    if not isinstance(alias, str) or alias not in getattr(settings, "CACHES", {"default": {}}):
        yield "E014", "CACHE_ALIAS", f"{alias!r} is not a cache alias in settings.CACHES"

    for key in ("EXPENSIVE_THRESHOLD", "SLOW_THRESHOLD_MS", "HIGH_TOKEN_THRESHOLD"):
        value = get(key)
        if not _is_number(value) or value < 0:
            yield "E015", key, f"must be a number >= 0, not {value!r}"

    spool_path = get("SPOOL_PATH")
    if spool_path is not None and not isinstance(spool_path, str | Path):
        yield "E023", "SPOOL_PATH", "must be None or a folder path"

    source = get("PROMPTS_SOURCE_PATH")
    if source is not None and not isinstance(source, str | Path):
        yield "E016", "PROMPTS_SOURCE_PATH", "must be None or a folder path"

    if not _is_str_list(get("PROMPT_SUBFOLDERS")):
        yield "E017", "PROMPT_SUBFOLDERS", "must be a list of folder names"

    batch_provider = get("BATCH_PROVIDER")
    if isinstance(providers, dict) and batch_provider not in providers:
        yield "E018", "BATCH_PROVIDER", f"{batch_provider!r} is not a key of PROVIDERS"
    endpoint = get("BATCH_ENDPOINT")
    if endpoint not in BATCH_ENDPOINTS:
        yield "E018", "BATCH_ENDPOINT", f"{endpoint!r} is not one of {', '.join(BATCH_ENDPOINTS)}"

    stale = get("BATCH_STALE_CLAIM_AFTER")
    if not _is_number(stale) or stale <= 0:
        yield "E019", "BATCH_STALE_CLAIM_AFTER", f"must be a positive number of seconds, not {stale!r}"

    discount = get("BATCH_DISCOUNT")
    if not _is_number(discount) or not 0 < discount <= 1:
        yield "E020", "BATCH_DISCOUNT", f"must be a number greater than 0 and at most 1, not {discount!r}"

    classes = get("API_PERMISSION_CLASSES")
    if not isinstance(classes, list | tuple):
        yield "E021", "API_PERMISSION_CLASSES", "must be a list of dotted paths of permission classes"
    else:
        for path in classes:
            problem = _check_importable(path, want_class=True)
            if problem:
                yield "E021", "API_PERMISSION_CLASSES", problem

    partitioning = get("PARTITIONING")
    if partitioning not in PARTITIONING_SCHEMES:
        yield "E027", "PARTITIONING", f'must be None or "monthly", not {partitioning!r}'

    max_age = get("FEEDBACK_TOKEN_MAX_AGE")
    if not _is_int(max_age) or max_age < 1:
        yield "E028", "FEEDBACK_TOKEN_MAX_AGE", f"must be a whole number of seconds above 0, not {max_age!r}"

    throttle = get("FEEDBACK_THROTTLE_RATE")
    if throttle is not None and not _is_rate(throttle):
        message = f'must be None or a rate like "60/min" (a number, "/", then s, min, hour or day), not {throttle!r}'
        yield "E029", "FEEDBACK_THROTTLE_RATE", message

    protected = get("PROTECTED_PROMPT_LABELS")
    if not isinstance(protected, list | tuple) or not all(
        isinstance(name, str) and name for name in protected
    ):
        yield "E030", "PROTECTED_PROMPT_LABELS", f"must be a list of label names, not {protected!r}"

    page_size = get("API_PAGE_SIZE")
    if not _is_int(page_size) or not 1 <= page_size <= 500:
        yield "E022", "API_PAGE_SIZE", f"must be a whole number from 1 to 500, not {page_size!r}"

    analytics = get("ANALYTICS_DATABASE")
    databases = getattr(settings, "DATABASES", {})
    if analytics is not None and (not isinstance(analytics, str) or analytics not in databases):
        known = ", ".join(repr(alias) for alias in databases)
        message = f"{analytics!r} is not a database alias in settings.DATABASES (its aliases: {known})"
        yield "E026", "ANALYTICS_DATABASE", message


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    user = getattr(settings, "LLM_AGENTS", {})
    if not isinstance(user, dict):
        return [Error("settings.LLM_AGENTS must be a dict.", id="llm_agents.E001")]
    messages: list[Error | Warning] = [
        Warning(
            f"LLM_AGENTS[{key!r}] is not a known setting and is ignored.",
            hint="Check the spelling against the settings reference.",
            id="llm_agents.W001",
        )
        for key in user
        if key not in DEFAULTS
    ]
    messages += [
        (Warning if code.startswith("W") else Error)(
            f"LLM_AGENTS[{key!r}] {message}.", id=f"llm_agents.{code}"
        )
        for code, key, message in _problems(user)
    ]
    return messages


def _vendor(engine: str) -> str:
    """The vendor of a database backend (``DatabaseWrapper.vendor``), read without connecting; the
    last part of the ENGINE path when the backend cannot be loaded (its driver is not installed)."""
    try:
        return str(load_backend(engine).DatabaseWrapper.vendor)
    except (ImportError, ImproperlyConfigured, AttributeError):
        return engine.rsplit(".", 1)[-1]


@register(Tags.compatibility)
def check_database_backends(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``llm_agents.E025``: each database the router reads or writes this app's models on, and
    ``ANALYTICS_DATABASE``, must be SQLite or PostgreSQL (``llm_agents.db.SUPPORTED_VENDORS``); found
    here rather than by the first query that fails. Reads the settings only: no connection is opened."""
    aliases: set[str] = set()
    for model in apps.get_app_config("llm_agents").get_models():
        aliases.update(alias for alias in (router.db_for_write(model), router.db_for_read(model)) if alias)
    analytics = analytics_alias()
    if isinstance(analytics, str) and analytics in settings.DATABASES:  # else E026
        aliases.add(analytics)
    errors = []
    for alias in sorted(aliases):
        engine = str(settings.DATABASES.get(alias, {}).get("ENGINE", ""))
        vendor = _vendor(engine)
        if vendor not in SUPPORTED_VENDORS:
            errors.append(
                Error(
                    f"Database {alias!r} uses the {vendor!r} backend ({engine}), which llm_agents does "
                    "not support: its models need SQLite or PostgreSQL.",
                    hint="Route the llm_agents app (DATABASE_ROUTERS), and point ANALYTICS_DATABASE, "
                    "to SQLite or PostgreSQL databases.",
                    obj=alias,
                    id="llm_agents.E025",
                )
            )
    return errors
