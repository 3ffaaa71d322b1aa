"""The demo's support tickets in the admin, with what the LLM calls made for each cost."""

from __future__ import annotations

from django.contrib import admin

from llm_agents.admin import ExecutionInline
from llm_agents.admin.formatting import format_cost
from llm_agents.attribution import cost_of

from .models import SupportTicket


@admin.register(SupportTicket)
class SupportTicketAdmin(admin.ModelAdmin):
    list_display = ["subject", "customer", "status", "created_at", "llm_cost"]
    list_filter = ["status"]
    search_fields = ["subject", "customer"]
    inlines = [ExecutionInline]

    @admin.display(description="LLM cost")
    def llm_cost(self, ticket: SupportTicket) -> str:
        return format_cost(cost_of(ticket)["total_cost"])
