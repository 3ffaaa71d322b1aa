"""Tenant scoping of the admin, with the API's rules (SPEC §14 "Tenancy").

With ``MULTI_TENANCY`` and a ``TENANT_RESOLVER``, every admin page is scoped to
``TENANT_RESOLVER(request)``: a request whose tenant resolves sees only that tenant's executions,
spans, tenant budgets, spend counters and reservations (another tenant's page answers as a missing
object); a request with no tenant sees everything if the user is a superuser, and nothing otherwise.
Batches belong to no tenant, so a tenant sees none; prompts and cost configs are shared.

Without a ``TENANT_RESOLVER`` (tenants set by ``tenant()`` blocks only) the admin is not scoped: it
serves your own staff, and filters by tenant instead.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest

from ..api.tenancy import TenantScope, tenant_scope
from ..conf import app_settings
from ..models import Budget


def admin_tenant_scope(request: HttpRequest) -> TenantScope:
    """What an admin request may see (everything unless MULTI_TENANCY and TENANT_RESOLVER are set)."""
    if not (app_settings.MULTI_TENANCY and app_settings.TENANT_RESOLVER):
        return TenantScope(everything=True)
    return tenant_scope(request)


class TenantScopedAdminMixin:
    """Scope a ModelAdmin's rows (lists, pages, filters, actions) to the request's tenant.

    ``tenant_field`` is the lookup of the tenant id on the model; None means the model belongs to
    no tenant, so only a request that may see everything sees its rows.
    """

    tenant_field: str | None = "tenant_id"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        scope = admin_tenant_scope(request)
        if self.tenant_field is None:
            return queryset if scope.everything else queryset.none()
        return scope.filter(queryset, self.tenant_field)


class TenantScopeAdminMixin(TenantScopedAdminMixin):
    """For models with ``scope``/``scope_value`` (budgets, spend counters): a tenant sees the rows of
    scope tenant whose value is its id."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super(TenantScopedAdminMixin, self).get_queryset(request)  # type: ignore[misc]
        scope = admin_tenant_scope(request)
        if scope.everything:
            return queryset
        return scope.filter(queryset.filter(scope=Budget.Scope.TENANT), "scope_value")


def tenant_budget_form(form_class: type[forms.ModelForm], tenant_id: str) -> type[forms.ModelForm]:
    """``form_class`` refusing a budget that is not the tenant's own (scope tenant, value ``tenant_id``)."""

    class TenantBudgetForm(form_class):  # type: ignore[valid-type,misc]
        def clean(self) -> dict[str, Any]:
            cleaned: dict[str, Any] = super().clean()
            if cleaned.get("scope") != Budget.Scope.TENANT or cleaned.get("scope_value") != tenant_id:
                raise forms.ValidationError(
                    f"Your budgets must have scope tenant and scope value {tenant_id!r}.", code="tenant"
                )
            return cleaned

    return TenantBudgetForm
