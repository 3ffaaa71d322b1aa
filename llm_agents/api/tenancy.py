"""Tenant scoping of API requests (SPEC §14 "Tenancy").

With ``MULTI_TENANCY``, a request whose tenant resolves (``TENANT_RESOLVER(request)``) sees only
that tenant's rows; a request with no tenant sees every tenant if the user is a superuser, and
nothing otherwise. Without ``MULTI_TENANCY`` nothing is scoped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.request import Request

from ..conf import app_settings
from ..context import resolve_tenant_id

_QuerySetT = TypeVar("_QuerySetT", bound=QuerySet[Any])


@dataclass(frozen=True)
class TenantScope:
    """What a request may see: ``everything``, or only ``tenant_id`` (None with ``everything`` False:
    nothing)."""

    everything: bool
    tenant_id: str | None = None

    def filter(self, queryset: _QuerySetT, field: str = "tenant_id") -> _QuerySetT:
        if self.everything:
            return queryset
        if self.tenant_id is None:
            return queryset.none()
        return queryset.filter(**{field: self.tenant_id})


def tenant_scope(request: Request | HttpRequest) -> TenantScope:
    """The scope of ``request`` (an API or admin request), resolved once per request."""
    cached = getattr(request, "_llm_agents_tenant_scope", None)
    if cached is not None:
        return cached
    if not app_settings.MULTI_TENANCY:
        scope = TenantScope(everything=True)
    else:
        tenant_id = resolve_tenant_id(request)
        if tenant_id is not None:
            scope = TenantScope(everything=False, tenant_id=tenant_id)
        else:
            scope = TenantScope(everything=bool(getattr(request.user, "is_superuser", False)))
    request.__dict__["_llm_agents_tenant_scope"] = scope
    return scope
