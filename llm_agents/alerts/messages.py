"""What an alert says: the email's subject and plain-text body, the one line a Slack message carries
and the JSON body of a webhook, all made from an :class:`~llm_agents.models.AlertEvent` and the
snapshot of its rule (or budget) that :func:`~llm_agents.alerts.delivery.record_event` stored in its
payload, so a message still tells what fired after the rule is edited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ..models import AlertEvent, AlertRule, Budget

#: The kinds of event (the webhook body's ``kind``): a rule fired; a budget reached its alert
#: percentage; a warning budget reached its limit; a hard-stop budget refused calls; a test alert.
RULE, BUDGET_ALERT, BUDGET_EXCEEDED, BUDGET_REFUSED, TEST = (
    "rule",
    "budget_alert",
    "budget_exceeded",
    "budget_refused",
    "test",
)
SUBJECT_PREFIX = "[LLM alert]"
#: How each metric's figures are written: (before, after) the number.
UNITS: dict[str, tuple[str, str]] = {
    AlertRule.Metric.COST: ("$", ""),
    AlertRule.Metric.ERROR_RATE: ("", "%"),
    AlertRule.Metric.P95_LATENCY: ("", " ms"),
    AlertRule.Metric.BUDGET_PERCENT: ("", "%"),
}


@dataclass(slots=True)
class AlertMessage:
    """One event's message in each channel's shape."""

    subject: str
    summary: str
    text: str
    body: dict[str, Any]


def describe_rule(rule: AlertRule) -> dict[str, Any]:
    """The payload snapshot of a rule: its name, metric, comparison, window and non-blank filters."""
    filters: dict[str, Any] = {
        name: getattr(rule, name)
        for name in ("agent_type", "model_id", "tenant_id", "score_name")
        if getattr(rule, name)
    }
    if rule.budget_id is not None:
        filters["budget"] = rule.budget.name if rule.budget else rule.budget_id
    return {
        "kind": RULE,
        "rule": rule.name,
        "metric": rule.metric,
        "comparison": rule.comparison,
        "anomaly": rule.anomaly,
        "sensitivity": rule.sensitivity,
        "window_minutes": rule.window_minutes,
        "filters": filters,
    }


def describe_budget(budget: Budget) -> dict[str, Any]:
    """The payload snapshot of a budget: its name, scope, period, enforcement and limit."""
    scope = {budget.scope: budget.scope_value} if budget.scope_value else {}
    return {
        "budget": budget.name,
        "metric": AlertRule.Metric.BUDGET_PERCENT,
        "filters": scope,
        "period": budget.period,
        "enforcement": budget.enforcement,
        "limit": float(budget.limit_usd),
    }


def compose(event: AlertEvent) -> AlertMessage:
    """The message of ``event``."""
    payload = event.payload or {}
    kind = payload.get("kind") or (TEST if payload.get("test") else RULE)
    headline = _headline(kind, event, payload)
    window = window_of(payload)
    filters = shown_filters(payload)
    context = []
    if window:
        context.append(f"last {window} min")
    context.extend(f"{name}={value}" for name, value in filters.items())
    summary = headline + (f" ({', '.join(context)})" if context else "")
    body = {
        **payload,
        "event_id": event.pk,
        "kind": kind,
        "rule": payload.get("rule"),
        "budget": payload.get("budget"),
        "metric": payload.get("metric"),
        "value": event.value,
        "threshold": event.threshold,
        "baseline": event.baseline,
        "window_minutes": window,
        "filters": filters,
        "fired_at": _iso(event.fired_at),
        "summary": summary,
        "test": bool(payload.get("test")),
    }
    return AlertMessage(
        subject=f"{SUBJECT_PREFIX} {headline}",
        summary=summary,
        text=_text(kind, event, payload, summary),
        body=body,
    )


def shown_filters(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's filters that narrow something (blank ones mean "all")."""
    return {name: value for name, value in (payload.get("filters") or {}).items() if value not in ("", None)}


def window_of(payload: dict[str, Any]) -> int | None:
    """The minutes the value was measured over (a budget's share is of its period, not of a window)."""
    if payload.get("metric") == AlertRule.Metric.BUDGET_PERCENT:
        return None
    window: int | None = payload.get("window_minutes")
    return window


def figure(value: float | None, metric: str | None = None) -> str:
    """A number as messages write it, with the metric's unit: ``12.5%``, ``$0.0042``, ``1,250 ms``."""
    if value is None:
        return "–"
    text = f"{value:,.4f}" if abs(value) >= 1 else f"{value:.8f}"
    text = text.rstrip("0").rstrip(".") or "0"
    before, after = UNITS.get(metric or "", ("", ""))
    return f"{before}{text}{after}"


def _headline(kind: str, event: AlertEvent, payload: dict[str, Any]) -> str:
    metric = payload.get("metric")
    value = figure(event.value, metric)
    if kind == TEST:
        return "Test alert from django-llm-agents"
    if kind == RULE:
        name = payload.get("rule") or str(event.rule or "alert rule")
        if payload.get("anomaly"):
            direction = {"above": "above", "below": "below"}.get(payload.get("comparison") or "", "away from")
            return (
                f"{name}: {metric} {value} is more than {figure(payload.get('sensitivity'))} standard "
                f"deviations {direction} the mean {figure(event.baseline, metric)}"
            )
        sign = "<" if payload.get("comparison") == AlertRule.Comparison.BELOW else ">"
        return f"{name}: {metric} {value} {sign} {figure(event.threshold, metric)}"
    budget = payload.get("budget") or str(event.budget or "budget")
    cost = AlertRule.Metric.COST
    spend = f"{figure(payload.get('spend'), cost)} of {figure(payload.get('limit'), cost)}"
    if kind == BUDGET_ALERT:
        return f"Budget {budget}: {value} used ({spend}), alert at {figure(event.threshold, metric)}"
    if kind == BUDGET_EXCEEDED:
        return f"Budget {budget} reached its limit: {value} used ({spend})"
    return f"Budget {budget} refuses calls: {value} used ({spend})"


def _text(kind: str, event: AlertEvent, payload: dict[str, Any], summary: str) -> str:
    metric = payload.get("metric")
    filters = shown_filters(payload)
    lines = [summary, "", f"Fired at: {timezone.localtime(event.fired_at):%Y-%m-%d %H:%M:%S %Z}"]
    if kind == TEST:
        lines.append("This is a test: nothing is wrong. The channel works if you read this.")
    elif kind == RULE:
        lines.append(f"Rule: {payload.get('rule')}")
        lines.append(f"Value of {metric}: {figure(event.value, metric)}")
        if payload.get("anomaly"):
            lines.append(f"Baseline (mean of the earlier windows): {figure(event.baseline, metric)}")
            if payload.get("sd") is not None:
                lines.append(f"Standard deviation of the earlier windows: {figure(payload['sd'], metric)}")
            lines.append(f"Sensitivity: {figure(payload.get('sensitivity'))} standard deviations")
        else:
            lines.append(f"Threshold: {payload.get('comparison')} {figure(event.threshold, metric)}")
        if window := window_of(payload):
            lines.append(f"Window: the last {window} minutes")
    else:
        lines.append(
            f"Budget: {payload.get('budget')} ({payload.get('period')}, {payload.get('enforcement')})"
        )
        lines.append(f"Spend this period: {figure(payload.get('spend'), AlertRule.Metric.COST)}")
        lines.append(f"Limit: {figure(payload.get('limit'), AlertRule.Metric.COST)}")
        lines.append(f"Used: {figure(event.value, metric)} (threshold {figure(event.threshold, metric)})")
        if kind == BUDGET_REFUSED:
            caller = ", ".join(
                f"{name}={payload[name]}"
                for name in ("agent_type", "tenant_id", "user_id")
                if payload.get(name)
            )
            lines.append(f"Refused call: {caller or 'unnamed'}")
            lines.append(
                f"Further refusals within {payload.get('quiet_minutes')} minutes are not sent again."
            )
    if kind != TEST:
        described = ", ".join(f"{name}={value}" for name, value in filters.items())
        lines.append(f"Filters: {described or 'none (everything)'}")
    lines += ["", f"Sent by django-llm-agents (alert event {event.pk})."]
    return "\n".join(lines) + "\n"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
