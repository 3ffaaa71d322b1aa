"""System checks of the LLM_AGENTS settings (one bad value per check id) and the settings object."""

from __future__ import annotations

import sys
from decimal import Decimal
from io import StringIO

import pytest
from django.core.checks import Error, Warning, run_checks
from django.core.management import call_command
from django.test import override_settings

from llm_agents.conf import DEFAULTS, app_settings

# From Django 6.1, run_checks() (like `manage.py check`) runs the model checks against every database,
# and SQLite's JSONField check opens a connection.
pytestmark = pytest.mark.django_db


def llm_agents_messages():
    """What ``manage.py check`` reports for this app (the registered checks, not a direct call)."""
    return [message for message in run_checks() if message.id.startswith("llm_agents.")]


def not_a_class():
    return None


def resolve_tenant():
    return "acme"


# (check id, key, bad value)
BAD_VALUES = [
    ("llm_agents.E003", "TRACK_EXECUTIONS", "yes"),
    ("llm_agents.E003", "ASYNC_LOGGING", 1),
    ("llm_agents.E003", "PERSIST_PROMPTS", None),
    ("llm_agents.E003", "PERSIST_RESPONSES", "false"),
    ("llm_agents.E003", "MULTI_TENANCY", 0),
    ("llm_agents.E003", "BUDGETS_ENABLED", "on"),
    ("llm_agents.E003", "BATCH_ENABLED", []),
    ("llm_agents.E003", "AUTO_INSTRUMENT", "True"),
    ("llm_agents.E003", "OTEL_EXPORT", 1.0),
    ("llm_agents.E003", "ROLLUPS", "yes"),
    ("llm_agents.E003", "DURABLE_TRACKING_WRITES", "yes"),
    ("llm_agents.E004", "REDACT_KEYS", "password"),
    ("llm_agents.E004", "REDACT_KEYS", ["password", 3]),
    ("llm_agents.E005", "REDACT_PATTERNS", ["sk-[a-z"]),
    ("llm_agents.E005", "REDACT_PATTERNS", r"sk-\w+"),
    ("llm_agents.E006", "REDACTION_PLACEHOLDER", None),
    ("llm_agents.E007", "RETENTION_DAYS", 0),
    ("llm_agents.E007", "RETENTION_DAYS", "30"),
    ("llm_agents.E007", "RETENTION_DAYS", 7.5),
    ("llm_agents.E008", "DEFAULT_MODEL", ""),
    ("llm_agents.E008", "DEFAULT_MODEL", None),
    ("llm_agents.E009", "DEFAULT_TEMPERATURE", 2.5),
    ("llm_agents.E009", "DEFAULT_TEMPERATURE", "0.2"),
    ("llm_agents.E010", "DEFAULT_TIMEOUT", 0),
    ("llm_agents.E010", "DEFAULT_TIMEOUT", "60"),
    ("llm_agents.E011", "DEFAULT_RETRIES", -1),
    ("llm_agents.E011", "DEFAULT_RETRIES", 1.5),
    ("llm_agents.E012", "PROVIDERS", ["openai"]),
    ("llm_agents.E012", "PROVIDERS", {"openai": "llm_agents.providers.openai.OpenAIProvider", "local": 3}),
    ("llm_agents.E012", "PROVIDERS", {"openai": {"api_key_env": "OPENAI_API_KEY"}}),
    ("llm_agents.E024", "PROVIDERS", {"openai": "llm_agents.providers.nowhere.OpenAIProvider"}),
    ("llm_agents.E024", "PROVIDERS", {"local": {"class": "tests.nowhere.Provider", "base_url": "http://x"}}),
    ("llm_agents.E024", "PROVIDERS", {"fake": "tests.test_checks.not_a_class"}),
    ("llm_agents.E013", "TENANT_RESOLVER", "tests.nowhere.resolve"),
    ("llm_agents.E013", "TENANT_RESOLVER", 42),
    ("llm_agents.E014", "CACHE_ALIAS", "redis"),
    ("llm_agents.E015", "EXPENSIVE_THRESHOLD", -1),
    ("llm_agents.E015", "SLOW_THRESHOLD_MS", "5s"),
    ("llm_agents.E015", "HIGH_TOKEN_THRESHOLD", None),
    ("llm_agents.E016", "PROMPTS_SOURCE_PATH", 42),
    ("llm_agents.E023", "SPOOL_PATH", 42),
    ("llm_agents.E017", "PROMPT_SUBFOLDERS", "support"),
    ("llm_agents.E018", "BATCH_PROVIDER", "mistral"),
    ("llm_agents.E018", "BATCH_ENDPOINT", "/v1/embeddings"),
    ("llm_agents.E019", "BATCH_STALE_CLAIM_AFTER", 0),
    ("llm_agents.E019", "BATCH_STALE_CLAIM_AFTER", "15m"),
    ("llm_agents.E020", "BATCH_DISCOUNT", 0),
    ("llm_agents.E020", "BATCH_DISCOUNT", 1.5),
    ("llm_agents.E021", "API_PERMISSION_CLASSES", "rest_framework.permissions.IsAdminUser"),
    ("llm_agents.E021", "API_PERMISSION_CLASSES", ["rest_framework.permissions.Nope"]),
    ("llm_agents.E021", "API_PERMISSION_CLASSES", ["tests.test_checks.not_a_class"]),
    ("llm_agents.E022", "API_PAGE_SIZE", 0),
    ("llm_agents.E022", "API_PAGE_SIZE", 501),
    ("llm_agents.E022", "API_PAGE_SIZE", "50"),
    ("llm_agents.E026", "ANALYTICS_DATABASE", "replica"),
    ("llm_agents.E026", "ANALYTICS_DATABASE", ["default"]),
    ("llm_agents.E027", "PARTITIONING", "daily"),
    ("llm_agents.E027", "PARTITIONING", True),
    ("llm_agents.E028", "FEEDBACK_TOKEN_MAX_AGE", 0),
    ("llm_agents.E028", "FEEDBACK_TOKEN_MAX_AGE", "week"),
    ("llm_agents.E029", "FEEDBACK_THROTTLE_RATE", "60 per minute"),
    ("llm_agents.E029", "FEEDBACK_THROTTLE_RATE", "0/min"),
    ("llm_agents.E030", "PROTECTED_PROMPT_LABELS", "production"),
    ("llm_agents.E030", "PROTECTED_PROMPT_LABELS", ["production", ""]),
]


def test_default_settings_produce_no_messages():
    assert llm_agents_messages() == []


def test_default_settings_have_no_llm_agents_key():
    from django.conf import settings

    assert not hasattr(settings, "LLM_AGENTS")


@override_settings(LLM_AGENTS={})
def test_an_empty_dict_produces_no_messages():
    assert llm_agents_messages() == []


def test_every_key_has_a_check():
    assert {key for _, key, _ in BAD_VALUES} == set(DEFAULTS)


@pytest.mark.parametrize(
    ("check_id", "key", "value"),
    BAD_VALUES,
    ids=[f"{check_id[-4:]}-{key}-{value!r}" for check_id, key, value in BAD_VALUES],
)
def test_bad_value_is_reported(check_id, key, value):
    with override_settings(LLM_AGENTS={key: value}):
        messages = llm_agents_messages()
    about_key = [message for message in messages if repr(key) in message.msg]
    assert [message.id for message in about_key] == [check_id], messages
    assert isinstance(about_key[0], Error)


def test_invalid_regex_message_names_the_pattern():
    with override_settings(LLM_AGENTS={"REDACT_PATTERNS": [r"\d{4}", "sk-[a-z"]}):
        (message,) = llm_agents_messages()
    assert message.id == "llm_agents.E005"
    assert "sk-[a-z" in message.msg


def test_each_bad_key_is_reported_separately():
    with override_settings(LLM_AGENTS={"API_PAGE_SIZE": 0, "BATCH_DISCOUNT": 2, "ASYNC_LOGGING": "no"}):
        ids = sorted(message.id for message in llm_agents_messages())
    assert ids == ["llm_agents.E003", "llm_agents.E020", "llm_agents.E022"]


def test_e001_llm_agents_must_be_a_dict():
    with override_settings(LLM_AGENTS=[("ASYNC_LOGGING", True)]):
        messages = llm_agents_messages()
    assert [message.id for message in messages] == ["llm_agents.E001"]
    assert "LLM_AGENTS" in messages[0].msg


def test_w001_unknown_key():
    with override_settings(LLM_AGENTS={"ASYNC_LOGGIN": True}):
        messages = llm_agents_messages()
    assert [message.id for message in messages] == ["llm_agents.W001"]
    assert isinstance(messages[0], Warning)
    assert "ASYNC_LOGGIN" in messages[0].msg


@override_settings(
    LLM_AGENTS={
        "TRACK_EXECUTIONS": False,
        "ASYNC_LOGGING": True,
        "REDACT_KEYS": ("ssn",),
        "REDACT_PATTERNS": [r"sk-[A-Za-z0-9]{20,}"],
        "RETENTION_DAYS": None,
        "DEFAULT_MODEL": "claude-sonnet-4",
        "DEFAULT_TEMPERATURE": Decimal("0.7"),
        "DEFAULT_TIMEOUT": 12.5,
        "DEFAULT_RETRIES": 3,
        "PROVIDERS": {
            "fake": "llm_agents.providers.fake.FakeProvider",
            "azure": {"class": "llm_agents.providers.openai.OpenAIProvider", "base_url": "https://x"},
        },
        "MULTI_TENANCY": True,
        "TENANT_RESOLVER": "tests.test_checks.resolve_tenant",
        "EXPENSIVE_THRESHOLD": Decimal("0.25"),
        "SLOW_THRESHOLD_MS": 0,
        "HIGH_TOKEN_THRESHOLD": 500,
        "PROMPTS_SOURCE_PATH": "prompts/",
        "PROMPT_SUBFOLDERS": ["support"],
        "BATCH_PROVIDER": "azure",
        "BATCH_ENDPOINT": "/v1/chat/completions",
        "BATCH_STALE_CLAIM_AFTER": 60,
        "BATCH_DISCOUNT": 1,
        "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "API_PAGE_SIZE": 500,
        "ANALYTICS_DATABASE": "default",
    }
)
def test_valid_non_default_values_produce_no_messages():
    assert llm_agents_messages() == []


# -- the settings object ------------------------------------------------------------------------


def test_defaults():
    assert app_settings.TRACK_EXECUTIONS is True
    assert app_settings.ASYNC_LOGGING is False
    assert app_settings.RETENTION_DAYS == 30
    assert app_settings.DEFAULT_MODEL == "gpt-4o-mini"
    assert app_settings.EXPENSIVE_THRESHOLD == Decimal("1.00")
    assert app_settings.SLOW_THRESHOLD_MS == 5000
    assert app_settings.HIGH_TOKEN_THRESHOLD == 10000
    assert app_settings.BATCH_STALE_CLAIM_AFTER == 900
    assert app_settings.BATCH_DISCOUNT == 0.5
    assert app_settings.API_PAGE_SIZE == 50
    assert app_settings.REDACTION_PLACEHOLDER == "[REDACTED]"
    assert app_settings.API_PERMISSION_CLASSES == ["rest_framework.permissions.IsAdminUser"]


def test_settings_are_read_on_every_access():
    assert app_settings.RETENTION_DAYS == 30
    with override_settings(LLM_AGENTS={"RETENTION_DAYS": 7, "MULTI_TENANCY": True}):
        assert app_settings.RETENTION_DAYS == 7
        assert app_settings.MULTI_TENANCY is True
        assert app_settings.ASYNC_LOGGING is False  # unset keys keep their default
        with override_settings(LLM_AGENTS={"RETENTION_DAYS": None}):
            assert app_settings.RETENTION_DAYS is None
            assert app_settings.MULTI_TENANCY is False
        assert app_settings.RETENTION_DAYS == 7
    assert app_settings.RETENTION_DAYS == 30
    assert app_settings.MULTI_TENANCY is False


def test_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        app_settings.NOT_A_SETTING  # noqa: B018


def test_manage_py_check_of_the_database_is_quiet_with_the_default_settings():
    """No llm_agents message and no Django warning about the app's models (e.g. models.W040, which
    SQLite would raise for a covering index), as ``manage.py check --database default`` prints them.
    ``tests/test_install.py`` checks the same, and a quiet ``migrate``, in a project made from the README."""
    out, err = StringIO(), StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=err)
    assert err.getvalue() == ""
    assert out.getvalue().strip() == "System check identified no issues (0 silenced)."


@pytest.fixture
def without_the_openai_sdk(monkeypatch):
    """The openai SDK not installed (a core install without the [openai] extra)."""
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "llm_agents.providers.openai")


def test_default_providers_need_no_sdk_to_pass_the_check(without_the_openai_sdk):
    assert llm_agents_messages() == []


def test_w002_a_provider_set_without_its_sdk(without_the_openai_sdk):
    providers = {"openai": {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": "sk-test"}}
    with override_settings(LLM_AGENTS={"PROVIDERS": providers}):
        (message,) = llm_agents_messages()
    assert message.id == "llm_agents.W002"
    assert isinstance(message, Warning)
    assert "'openai'" in message.msg and "pip install" in message.msg


class OtherDatabaseRouter:
    """Sends the llm_agents models' reads and writes to the ``warehouse`` database."""

    def db_for_read(self, model, **hints):
        return "warehouse" if model._meta.app_label == "llm_agents" else None

    db_for_write = db_for_read


@pytest.mark.parametrize(
    ("engine", "vendor"), [("django.db.backends.mysql", "mysql"), ("django.db.backends.oracle", "oracle")]
)
def test_an_unsupported_database_backend_is_refused_by_name(settings, engine, vendor):
    warehouse = {"ENGINE": engine, "NAME": "warehouse", "HOST": "db.invalid"}
    with pytest.warns(UserWarning, match="DATABASES"):
        settings.DATABASES = {**settings.DATABASES, "warehouse": warehouse}
    settings.DATABASE_ROUTERS = ["tests.test_checks.OtherDatabaseRouter"]

    errors = [message for message in llm_agents_messages() if message.id == "llm_agents.E025"]

    assert len(errors) == 1
    assert "'warehouse'" in errors[0].msg and f"'{vendor}'" in errors[0].msg
    assert "SQLite or PostgreSQL" in errors[0].msg


def test_e026_names_the_missing_database_alias():
    with override_settings(LLM_AGENTS={"ANALYTICS_DATABASE": "replica"}):
        (message,) = llm_agents_messages()
    assert message.id == "llm_agents.E026"
    assert "'replica' is not a database alias in settings.DATABASES" in message.msg
    assert "'default'" in message.msg


def test_an_unsupported_analytics_database_is_refused_by_name(settings):
    warehouse = {"ENGINE": "django.db.backends.mysql", "NAME": "warehouse", "HOST": "db.invalid"}
    with pytest.warns(UserWarning, match="DATABASES"):
        settings.DATABASES = {**settings.DATABASES, "warehouse": warehouse}
    settings.LLM_AGENTS = {"ANALYTICS_DATABASE": "warehouse"}

    (error,) = llm_agents_messages()

    assert error.id == "llm_agents.E025"
    assert "'warehouse'" in error.msg and "'mysql'" in error.msg


def test_the_supported_database_backends_pass_the_backend_check():
    assert not [message for message in llm_agents_messages() if message.id == "llm_agents.E025"]
