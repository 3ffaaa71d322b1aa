"""Alerts in the admin (SPEC §19): rules, the channels they reach (with "Send a test alert"), and the
event log with each event's deliveries. Alerts belong to the operators, not to a tenant: with a
tenant-scoped admin only a request that may see everything sees them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..alerts.delivery import record_event
from ..alerts.messages import TEST, compose, describe_rule, figure, shown_filters
from ..models import AlertChannel, AlertDelivery, AlertEvent, AlertRule
from .formatting import shown_json
from .mixins import ReadOnlyAdminMixin
from .tenancy import TenantScopedAdminMixin

#: The stylesheet's class of a delivery status (``llm-status-<status>`` otherwise).
STATUS_CSS: dict[str, str] = {AlertDelivery.Status.SENT: "success"}

DELIVERY_FIELDS = ("channel", "status_shown", "attempts", "last_error", "sent_at", "created_at")
EVENT_FIELDS = ("fired_at", "source", "message", "value_shown", "threshold_shown", "baseline_shown", "filters_shown",
                "payload_shown")  # fmt: skip


def status_badge(status: str, label: str) -> SafeString:
    return format_html(
        '<span class="llm-status llm-status-{}">{}</span>', STATUS_CSS.get(status, status), label
    )


def shown_target(channel: AlertChannel) -> str:
    """What a list shows of a channel's target: the addresses, or only the scheme and host of a URL
    (a Slack incoming-webhook URL is a credential)."""
    if channel.kind == AlertChannel.Kind.EMAIL:
        return ", ".join(channel.addresses)
    parts = urlsplit(channel.target)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "–"


# -- rules ------------------------------------------------------------------------------------------


@admin.register(AlertRule)
class AlertRuleAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Rules are edited here; the model's validation (a metric with filters that make no sense for
    it, a threshold missing) shows its errors on the fields at fault."""

    tenant_field = None
    list_display = ["name", "metric", "filters_shown", "condition", "window_minutes", "cooldown_minutes",
                    "channels_shown", "last_fired_at", "is_active"]  # fmt: skip
    list_filter = ["metric", "anomaly", "pause_agent", "is_active"]
    search_fields = ["name", "agent_type", "model_id", "tenant_id", "score_name"]
    filter_horizontal = ["channels"]
    raw_id_fields = ["budget"]
    readonly_fields = ["last_fired_at", "events_link"]
    fieldsets = [
        (None, {"fields": ["name", "metric", "is_active"]}),
        (
            _("Filters (blank: all)"),
            {"fields": ["agent_type", "model_id", "tenant_id", "score_name", "budget"]},
        ),
        (_("Condition"), {"fields": ["comparison", "threshold", "anomaly", "sensitivity", "window_minutes"]}),
        (_("When it fires"), {"fields": ["channels", "cooldown_minutes", "pause_agent"]}),
        (_("History"), {"fields": ["last_fired_at", "events_link"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertRule]:
        return super().get_queryset(request).select_related("budget").prefetch_related("channels")

    @admin.display(description=_("filters"))
    def filters_shown(self, rule: AlertRule) -> str:
        filters = shown_filters(describe_rule(rule))
        return ", ".join(f"{name}={value}" for name, value in filters.items()) or gettext("all")

    @admin.display(description=_("condition"))
    def condition(self, rule: AlertRule) -> str:
        if rule.anomaly:
            return gettext("anomaly: %(n)s standard deviations") % {"n": figure(rule.sensitivity)}
        sign = "<" if rule.comparison == AlertRule.Comparison.BELOW else ">"
        return f"{sign} {figure(rule.threshold, rule.metric)}"

    @admin.display(description=_("channels"))
    def channels_shown(self, rule: AlertRule) -> str:
        return ", ".join(channel.name for channel in rule.channels.all()) or "–"

    @admin.display(description=_("events"))
    def events_link(self, rule: AlertRule) -> SafeString | str:
        if rule.pk is None:
            return "–"
        url = reverse("admin:llm_agents_alertevent_changelist") + f"?rule__id__exact={rule.pk}"
        return format_html('<a href="{}">{}</a>', url, gettext("This rule's events"))


# -- channels ---------------------------------------------------------------------------------------


class AlertChannelForm(forms.ModelForm):
    """The webhook secret is written, never shown: left blank it keeps its current value."""

    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Webhooks: the HMAC-SHA256 key of the signature. Left blank, the current secret stays."),
    )
    remove_secret = forms.BooleanField(required=False, label=_("Remove the secret"))

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "target", "secret", "is_active"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("remove_secret"):
            cleaned["secret"] = ""
        elif not cleaned.get("secret"):
            cleaned["secret"] = self.instance.secret
        return cleaned


@admin.register(AlertChannel)
class AlertChannelAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    tenant_field = None
    form = AlertChannelForm
    list_display = ["name", "kind", "target_shown", "signed", "rules_count", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    fields = ["name", "kind", "target", "secret", "remove_secret", "is_active"]
    actions = ["send_test_alert"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertChannel]:
        return super().get_queryset(request).annotate(rules_count=Count("rules", distinct=True))

    @admin.display(description=_("target"))
    def target_shown(self, channel: AlertChannel) -> str:
        return shown_target(channel)

    @admin.display(description=_("signed"), boolean=True)
    def signed(self, channel: AlertChannel) -> bool | None:
        return bool(channel.secret) if channel.kind == AlertChannel.Kind.WEBHOOK else None

    @admin.display(description=_("rules"), ordering="rules_count")
    def rules_count(self, channel: AlertChannel) -> int:
        return int(getattr(channel, "rules_count", 0))

    @admin.action(description=_("Send a test alert"))
    def send_test_alert(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        """Record one test event for the selected channels (through the same deliveries as real
        alerts) and report each channel's delivery: sent, failed with its error, or queued."""
        channels = list(queryset)
        event = record_event(
            channels=channels, payload={"kind": TEST, "test": True, "rule": "Test alert", "metric": None}
        )
        deliveries = {delivery.channel_id: delivery for delivery in event.deliveries.all()}
        for channel in channels:
            delivery = deliveries.get(channel.pk)
            if delivery is None:
                self.message_user(
                    request, gettext("%(c)s: inactive, not sent.") % {"c": channel}, messages.WARNING
                )
            elif delivery.status == AlertDelivery.Status.SENT:
                self.message_user(
                    request, gettext("%(c)s: test alert sent.") % {"c": channel}, messages.SUCCESS
                )
            elif delivery.status == AlertDelivery.Status.FAILED:
                self.message_user(
                    request,
                    gettext("%(c)s: failed after %(n)d attempts: %(error)s")
                    % {"c": channel, "n": delivery.attempts, "error": delivery.last_error},
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    gettext("%(c)s: queued (%(error)s)") % {"c": channel, "error": delivery.last_error}
                    if delivery.last_error
                    else gettext("%(c)s: queued for the Celery worker.") % {"c": channel},
                    messages.INFO,
                )


# -- events -----------------------------------------------------------------------------------------


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = readonly_fields = DELIVERY_FIELDS
    ordering = ["channel__name"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("status"))
    def status_shown(self, delivery: AlertDelivery) -> SafeString:
        return status_badge(delivery.status, delivery.get_status_display())


@admin.register(AlertEvent)
class AlertEventAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The event log: what fired, when, against what, and where each delivery stands."""

    tenant_field = None
    list_display = [
        "fired_at",
        "source",
        "value_shown",
        "threshold_shown",
        "baseline_shown",
        "deliveries_shown",
    ]
    list_filter = ["rule", "deliveries__status", "budget", "fired_at"]
    list_select_related = ["rule", "budget"]
    date_hierarchy = "fired_at"
    fields = readonly_fields = EVENT_FIELDS
    inlines = [AlertDeliveryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertEvent]:
        # The page's deliveries in one query; counting them through a join would multiply the counts
        # when the list is filtered by delivery status.
        deliveries = Prefetch("deliveries", AlertDelivery.objects.select_related("channel"))
        return super().get_queryset(request).prefetch_related(deliveries)

    @admin.display(description=_("rule or budget"))
    def source(self, event: AlertEvent) -> str:
        if event.rule is not None:
            return event.rule.name
        if event.budget is not None:
            return gettext("budget %(name)s") % {"name": event.budget.name}
        return gettext("test alert") if (event.payload or {}).get("test") else "–"

    @admin.display(description=_("value"), ordering="value")
    def value_shown(self, event: AlertEvent) -> str:
        return figure(event.value, (event.payload or {}).get("metric"))

    @admin.display(description=_("threshold"))
    def threshold_shown(self, event: AlertEvent) -> str:
        return figure(event.threshold, (event.payload or {}).get("metric"))

    @admin.display(description=_("baseline"))
    def baseline_shown(self, event: AlertEvent) -> str:
        return figure(event.baseline, (event.payload or {}).get("metric"))

    @admin.display(description=_("deliveries"))
    def deliveries_shown(self, event: AlertEvent) -> SafeString | str:
        """``2 sent · 1 failed``, each part coloured by its status."""
        statuses = [delivery.status for delivery in event.deliveries.all()]
        parts = []
        for status, label in AlertDelivery.Status.choices:
            count = statuses.count(status)
            if count:
                parts.append(status_badge(status, f"{count} {label}"))
        if not parts:
            return gettext("no active channel")
        return format_html(" · ".join(["{}"] * len(parts)), *parts)

    @admin.display(description=_("message"))
    def message(self, event: AlertEvent) -> str:
        return compose(event).summary

    @admin.display(description=_("filters"))
    def filters_shown(self, event: AlertEvent) -> str:
        filters = shown_filters(event.payload or {})
        return ", ".join(f"{name}={value}" for name, value in filters.items()) or gettext("none (everything)")

    @admin.display(description=_("payload"))
    def payload_shown(self, event: AlertEvent) -> SafeString:
        return format_html("<pre>{}</pre>", shown_json(event.payload, limit=None))
