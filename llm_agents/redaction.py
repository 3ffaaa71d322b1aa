"""Redaction of secrets before anything is stored: sensitive keys at any depth, and patterns in text."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .conf import app_settings


class Redactor:
    """Applies one configuration of ``REDACT_KEYS``, ``REDACT_PATTERNS`` and the placeholder."""

    def __init__(self, keys: tuple[str, ...], patterns: tuple[str, ...], placeholder: str) -> None:
        self.keys = tuple(key.lower() for key in keys)
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.placeholder = placeholder

    def is_sensitive(self, key: Any) -> bool:
        lowered = str(key).lower()
        return any(sensitive in lowered for sensitive in self.keys)

    def text(self, value: str) -> str:
        """``value`` with every pattern match replaced by the placeholder."""
        if self.pattern is None or not isinstance(value, str):
            return value
        return self.pattern.sub(self.placeholder, value)

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
def _redactor(keys: tuple[str, ...], patterns: tuple[str, ...], placeholder: str) -> Redactor:
    return Redactor(keys, patterns, placeholder)


def current_redactor() -> Redactor:
    """The redactor for the settings in force now."""
    return _redactor(
        tuple(app_settings.REDACT_KEYS),
        tuple(app_settings.REDACT_PATTERNS),
        app_settings.REDACTION_PLACEHOLDER,
    )


def redact(value: Any) -> Any:
    """A copy of ``value`` where values under sensitive keys (``REDACT_KEYS``, case-insensitive
    substring, at any depth) become the placeholder and strings have ``REDACT_PATTERNS`` removed."""
    return current_redactor().value(value)


def redact_text(text: str) -> str:
    """Replace every match of ``REDACT_PATTERNS`` in ``text`` by the placeholder."""
    return current_redactor().text(text)
