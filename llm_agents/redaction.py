"""Redaction of secrets before anything is stored: sensitive keys at any depth, patterns in text, and
credentials in error messages."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

from .conf import app_settings

#: Credentials that error messages are known to echo, removed from every stored error message
#: whatever ``REDACT_PATTERNS`` says: OpenAI- and Anthropic-style keys (``sk-…``), bearer tokens,
#: and keys or tokens in a URL's query string (the ``name=`` part is kept).
CREDENTIAL_PATTERN = re.compile(
    r"sk-[A-Za-z0-9_\-]{16,}"
    r"|[Bb]earer\s+[A-Za-z0-9._~+/\-]{8,}=*"
    r"|(?P<name>[?&](?i:api[_-]?key|key|token|access_token|secret)=)[^&\s\"'<>]+"
)
#: Environment variables of the SDKs' keys, whose values are removed from error messages.
KEY_ENVIRONMENT_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
#: Shorter configured values are not searched for (they would match ordinary words).
MIN_SECRET_LENGTH = 8


class Redactor:
    """Applies one configuration of ``REDACT_KEYS``, ``REDACT_PATTERNS`` and the placeholder."""

    def __init__(
        self,
        keys: tuple[str, ...],
        patterns: tuple[str, ...],
        placeholder: str,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.keys = tuple(key.lower() for key in keys)
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.placeholder = placeholder
        self.secrets = tuple(sorted(secrets, key=len, reverse=True))

    def is_sensitive(self, key: Any) -> bool:
        lowered = str(key).lower()
        return any(sensitive in lowered for sensitive in self.keys)

    def text(self, value: str) -> str:
        """``value`` with every pattern match replaced by the placeholder."""
        if self.pattern is None or not isinstance(value, str):
            return value
        return self.pattern.sub(self.placeholder, value)

    def error(self, message: str) -> str:
        """An error message with the patterns, any credential (``CREDENTIAL_PATTERN``) and every
        configured provider key removed: SDK and server messages may echo the key they were sent."""
        if not isinstance(message, str) or not message:
            return message
        for secret in self.secrets:
            message = message.replace(secret, self.placeholder)
        message = CREDENTIAL_PATTERN.sub(
            lambda match: (match.group("name") or "") + self.placeholder, self.text(message)
        )
        return message

    def value(self, item: Any) -> Any:
        """A copy of ``item`` with values under sensitive keys replaced, at any depth, and
        patterns removed from every string."""
        if isinstance(item, dict):
            return {
                key: self.placeholder if self.is_sensitive(key) else self.value(inner)
                for key, inner in item.items()
            }
        if isinstance(item, list | tuple):
            return [self.value(inner) for inner in item]
        if isinstance(item, str) and self.pattern is not None:
            return self.pattern.sub(self.placeholder, item)
        return item


@lru_cache(maxsize=16)
def _redactor(
    keys: tuple[str, ...], patterns: tuple[str, ...], placeholder: str, secrets: tuple[str, ...]
) -> Redactor:
    return Redactor(keys, patterns, placeholder, secrets)


def configured_secrets() -> tuple[str, ...]:
    """The provider keys in use: ``api_key`` options of ``PROVIDERS`` and the SDKs' key variables."""
    values = [os.environ.get(name, "") for name in KEY_ENVIRONMENT_VARIABLES]
    providers = app_settings.PROVIDERS
    if isinstance(providers, dict):
        values += [str(spec.get("api_key") or "") for spec in providers.values() if isinstance(spec, dict)]
    return tuple(sorted({value for value in values if len(value) >= MIN_SECRET_LENGTH}))


def current_redactor() -> Redactor:
    """The redactor for the settings in force now."""
    return _redactor(
        tuple(app_settings.REDACT_KEYS),
        tuple(app_settings.REDACT_PATTERNS),
        app_settings.REDACTION_PLACEHOLDER,
        configured_secrets(),
    )


def redact(value: Any) -> Any:
    """A copy of ``value`` where values under sensitive keys (``REDACT_KEYS``, case-insensitive
    substring, at any depth) become the placeholder and strings have ``REDACT_PATTERNS`` removed."""
    return current_redactor().value(value)


def redact_text(text: str) -> str:
    """Replace every match of ``REDACT_PATTERNS`` in ``text`` by the placeholder."""
    return current_redactor().text(text)


def redact_error(message: str) -> str:
    """``message`` without ``REDACT_PATTERNS`` matches, credentials or configured provider keys."""
    return current_redactor().error(message)
