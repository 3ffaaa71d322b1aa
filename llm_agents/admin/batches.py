from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import batches
from ..models import Batch, BatchRequest
from .mixins import ReadOnlyAdminMixin
from .tenancy import TenantScopedAdminMixin

if TYPE_CHECKING:
    from ..models.batches import BatchQuerySet

#: Requests listed on a batch's page; the link beside them opens all of them.
REQUESTS_SHOWN = 50


def requests_url(batch: Batch, status: str | None = None) -> str:
    url = reverse("admin:llm_agents_batchrequest_changelist") + f"?batch__id__exact={batch.pk}"
    return url + (f"&status__exact={status}" if status else "")


#: The batch page: every field, all read-only.
BATCH_FIELDS = (
    "purpose", "model", "provider", "status", "requests_by_status", "requests", "provider_batch_id",
    "input_file_id", "output_file_id", "error_file_id", "request_count", "created_at", "submitted_at",
    "completed_at", "reconciled_at", "error",
)  # fmt: skip


@admin.register(Batch)
class BatchAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    tenant_field = None  # batches belong to no tenant
    list_display = [
        "__str__", "purpose", "model", "status", "request_count", "requests_by_status", "created_at",
        "submitted_at", "completed_at", "reconciled_at",
    ]  # fmt: skip
    list_filter = ["status", "purpose", "model"]
    search_fields = ["purpose", "=provider_batch_id"]
    date_hierarchy = "created_at"
    fields = BATCH_FIELDS
    readonly_fields = BATCH_FIELDS
    actions = ["cancel_batches", "retry_failed_requests"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return cast("BatchQuerySet", super().get_queryset(request)).with_request_counts()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("requests by status"))
    def requests_by_status(self, batch: Batch) -> SafeString:
        counts = [
            (requests_url(batch, status), getattr(batch, f"{status}_requests", 0), label)
            for status, label in BatchRequest.Status.choices
        ]
        return format_html_join(
            ", ", '<a href="{}">{} {}</a>', [(url, count, label) for url, count, label in counts if count]
        ) or format_html("{}", "–")

    @admin.display(description=_("requests"))
    def requests(self, batch: Batch) -> SafeString:
        shown = batch.requests.select_related("execution").order_by("created_at")[:REQUESTS_SHOWN]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    request.custom_id, request.get_status_display(), request.input_tokens, request.output_tokens,
                    request.total_cost, request.routing, Truncator(request.error).chars(120),
                    execution_link(request),
                )
                for request in shown
            ),
        )  # fmt: skip
        header = "".join(
            f"<th>{name}</th>"
            for name in ("custom id", "status", "input", "output", "cost", "routing", "error", "execution")
        )
        return format_html(
            '<p><a href="{}">{}</a></p><table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            requests_url(batch),
            _("All %(count)s requests of this batch") % {"count": batch.requests.count()},
            SafeString(header),
            rows,
        )

    @admin.action(description=_("Cancel the selected batches"))
    def cancel_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        cancelled = 0
        for batch in queryset:
            try:
                cancelled += batches.cancel(batch)
            except Exception as exc:
                self.message_user(request, f"Batch {batch.pk}: {type(exc).__name__}: {exc}", messages.ERROR)
        self.message_user(
            request,
            ngettext("%(count)d batch cancelled.", "%(count)d batches cancelled.", cancelled)
            % {"count": cancelled},
        )

    @admin.action(description=_("Retry the failed requests of the selected batches"))
    def retry_failed_requests(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        count = batches.retry_failed(BatchRequest.objects.filter(batch__in=queryset))
        self.message_user(request, retried_message(count))


def retried_message(count: int) -> str:
    return ngettext(
        "%(count)d failed request is pending again.", "%(count)d failed requests are pending again.", count
    ) % {"count": count}


def execution_link(request: BatchRequest) -> SafeString | str:
    if request.execution_id is None:
        return "–"
    url = reverse("admin:llm_agents_execution_change", args=[request.execution_id])
    return format_html('<a href="{}">{}</a>', url, str(request.execution_id)[:8])


@admin.register(BatchRequest)
class BatchRequestAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    tenant_field = None
    list_display = [
        "custom_id", "purpose", "model", "status", "batch_link", "input_tokens", "output_tokens", "total_cost",
        "routing", "short_error", "execution_link", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "purpose", "model"]
    search_fields = ["=custom_id", "purpose"]
    raw_id_fields = ["batch", "execution"]
    list_select_related = ["batch"]
    actions = ["retry_failed_requests"]

    @admin.display(description=_("batch"), ordering="batch")
    def batch_link(self, request: BatchRequest) -> SafeString | str:
        if request.batch is None:
            return "–"
        url = reverse("admin:llm_agents_batch_change", args=[request.batch_id])
        return format_html('<a href="{}">{}</a>', url, request.batch.provider_batch_id or request.batch_id)

    @admin.display(description=_("error"))
    def short_error(self, request: BatchRequest) -> str:
        return Truncator(request.error).chars(80)

    @admin.display(description=_("execution"))
    def execution_link(self, request: BatchRequest) -> SafeString | str:
        return execution_link(request)

    @admin.action(description=_("Retry the selected failed requests"))
    def retry_failed_requests(self, request: HttpRequest, queryset: QuerySet[BatchRequest]) -> None:
        self.message_user(request, retried_message(batches.retry_failed(queryset)))
