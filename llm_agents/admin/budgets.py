"""Budgets with their spend against the limit; the spend counters and reservations behind them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from ..budgets import rebuild_counters
from ..models import Budget, BudgetReservation, SpendCounter
from .mixins import ReadOnlyAdminMixin
from .tenancy import TenantScopeAdminMixin, TenantScopedAdminMixin, admin_tenant_scope, tenant_budget_form


@admin.register(Budget)
class BudgetAdmin(TenantScopeAdminMixin, admin.ModelAdmin):
    list_display = ["name", "scope", "scope_value", "period_label", "spend_bar", "percent_used_label",
                    "limit_usd", "enforcement", "is_active"]  # fmt: skip
    list_filter = ["scope", "period", "enforcement", "is_active"]
    search_fields = ["name", "scope_value"]
    readonly_fields = ["spend_bar", "current_tokens_label", "forecast_label", "alerted_on", "exceeded_on"]
    fieldsets = [
        (None, {"fields": ["name", "scope", "scope_value", "is_active"]}),
        (
            "Limit",
            {
                "fields": [
                    "period",
                    "period_days",
                    "limit_usd",
                    "token_limit",
                    "enforcement",
                    "alert_at_percentage",
                ]
            },
        ),  # fmt: skip
        (
            "Alerts",
            {"fields": ["channels"], "description": "Where this budget's alerts and refusals are also sent."},
        ),
        (
            "This period",
            {"fields": ["spend_bar", "current_tokens_label", "forecast_label", "alerted_on", "exceeded_on"]},
        ),  # fmt: skip
    ]
    filter_horizontal = ["channels"]
    actions = ["rebuild_spend_counters"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # Alert channels are the whole installation's: a tenant-scoped admin neither sees nor sets them.
        fieldsets = super().get_fieldsets(request, obj)
        if admin_tenant_scope(request).everything:
            return fieldsets
        return [(name, options) for name, options in fieldsets if "channels" not in options["fields"]]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        tenant_id = admin_tenant_scope(request).tenant_id
        return form if tenant_id is None else tenant_budget_form(form, tenant_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        scope = admin_tenant_scope(request)
        return (scope.everything or scope.tenant_id is not None) and super().has_add_permission(request)

    def usage(self, budget: Budget) -> tuple[Decimal, int]:
        """The budget's spend and tokens this period, read once per row."""
        cached: tuple[Decimal, int] | None = budget.__dict__.get("_admin_usage")
        if cached is None:
            cached = budget.__dict__["_admin_usage"] = (
                budget.current_usage() if budget.pk else (Decimal("0"), 0)
            )
        return cached

    @admin.display(description="period")
    def period_label(self, budget: Budget) -> str:
        if budget.period == Budget.Period.ROLLING:
            return f"rolling {budget.period_days} days"
        return budget.get_period_display()

    @admin.display(description="spend against limit")
    def spend_bar(self, budget: Budget) -> str:
        spend, _ = self.usage(budget)
        percent = budget.percent_of_limit(spend)
        colour = (
            "#ba2121" if percent >= 100 else "#c78a00" if percent >= budget.alert_at_percentage else "#447e36"
        )
        return format_html(
            '<span class="llm-budget-bar" title="{}% used" style="display:inline-block;width:120px;height:10px;'
            'background:#e6e6e6;border-radius:3px;vertical-align:middle;overflow:hidden">'
            '<span style="display:block;height:100%;width:{}%;background:{}"></span></span> ${} of ${}',
            percent, min(percent, 100), colour, spend, budget.limit_usd,
        )  # fmt: skip

    @admin.display(description="% used")
    def percent_used_label(self, budget: Budget) -> str:
        return f"{budget.percent_of_limit(self.usage(budget)[0]):.2f}%"

    @admin.display(description="tokens this period")
    def current_tokens_label(self, budget: Budget) -> str:
        tokens = self.usage(budget)[1]
        return f"{tokens:,}" + (f" of {budget.token_limit:,}" if budget.token_limit is not None else "")

    @admin.display(description="forecast for the period")
    def forecast_label(self, budget: Budget) -> str:
        if not budget.pk:
            return "-"
        forecast = budget.forecast()
        return f"${forecast.projected_spend} ({forecast.projected_percent:.2f}% of the limit) by {forecast.period_end:%Y-%m-%d %H:%M}"

    @admin.action(description="Rebuild the spend counters of the selected budgets' periods")
    def rebuild_spend_counters(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        since = min(budget.period_days_range()[0] for budget in queryset)
        result = rebuild_counters(since)
        self.message_user(
            request,
            f"Spend counters rebuilt from the executions table from {since}: {result.counters} counters.",
            messages.SUCCESS,
        )


@admin.register(SpendCounter)
class SpendCounterAdmin(TenantScopeAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["day", "scope", "scope_value", "spend", "tokens"]
    list_filter = ["scope", "day"]
    search_fields = ["scope_value"]
    date_hierarchy = "day"
    ordering = ["-day", "scope", "scope_value"]


@admin.register(BudgetReservation)
class BudgetReservationAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["agent_type", "tenant_id", "model", "user_id", "amount", "tokens", "created_at",
                    "expires_at"]  # fmt: skip
    ordering = ["-created_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser  # an orphaned reservation (a process died mid-call) may go
