"""Sessions and scores as Execution queries (SPEC section 16): mixed into ``ExecutionQuerySet``."""

from __future__ import annotations

from django.db import models


class QualityQueries(models.QuerySet):
    """Scopes by session, end user and tag; ``sessions()``, ``score_summary()``, ``scores_by()``."""
