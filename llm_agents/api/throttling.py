"""The rate limit of ``feedback/``, the one endpoint open to anonymous clients."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from ..conf import app_settings

FEEDBACK_SCOPE = "llm_agents_feedback"


class FeedbackThrottle(SimpleRateThrottle):
    """At most ``FEEDBACK_THROTTLE_RATE`` (e.g. ``"60/min"``; None: no limit) posts per client address,
    counted in Django's default cache under the scope ``llm_agents_feedback``.

    The rate is read from the setting on every request, so it needs no
    ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` entry and ``override_settings`` applies at once. The
    client's address is DRF's (``REMOTE_ADDR``, or ``X-Forwarded-For`` with ``NUM_PROXIES`` set)."""

    scope = FEEDBACK_SCOPE

    def get_rate(self) -> str | None:
        rate: str | None = app_settings.FEEDBACK_THROTTLE_RATE
        return rate or None

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
