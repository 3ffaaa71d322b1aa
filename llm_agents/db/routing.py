"""The database the product's reads of history run on (SPEC §20 "Read replica").

``ANALYTICS_DATABASE`` names a ``DATABASES`` alias, typically a streaming replica of the primary.
The admin dashboard, the HTTP API's reads and the analytics they show query that alias; tracking,
budgets, batches and every other write stay on the database the host's routers choose (``default``
without routers), where the product must read what it has just written.

Each read site routes its own queryset with :func:`for_analytics`, so a host installs no
``DATABASE_ROUTERS`` entry for this; without the setting the querysets are left to the host's
routers, as before.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import QuerySet

from ..conf import app_settings

QuerySetT = TypeVar("QuerySetT", bound=QuerySet[Any])


def analytics_alias() -> str | None:
    """The ``DATABASES`` alias analytics read from (``ANALYTICS_DATABASE``), or None: the router's."""
    alias: str | None = app_settings.ANALYTICS_DATABASE
    return alias


def for_analytics(queryset: QuerySetT) -> QuerySetT:
    """``queryset`` on the analytics database, or unchanged when ``ANALYTICS_DATABASE`` is None."""
    alias = analytics_alias()
    return queryset if alias is None else queryset.using(alias)
