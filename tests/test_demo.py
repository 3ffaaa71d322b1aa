"""The example project's ``demo`` command fills every page of the product with data made by the real code
paths: prompts with versions and a partial, budgets with spend (one past its alert, a hard stop that
refused a call), a reconciled batch, tool calls, nested traces, fallbacks, streaming, tenants, failures
and latencies with a spread."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Max, Sum
from django.test import override_settings
from django.utils import timezone

from example_project.demo.conf import demo_settings
from example_project.demo.management.commands.demo import Command as DemoCommand
from llm_agents.budgets import local_day
from llm_agents.models import Batch, BatchRequest, Budget, Execution, Prompt, Span, SpendCounter

pytestmark = pytest.mark.django_db(transaction=True)


def run_demo(calls: int = 40, verbosity: int = 0, **options) -> str:
    out = io.StringIO()
    with override_settings(LLM_AGENTS=demo_settings()):
        call_command(DemoCommand(), calls=calls, verbosity=verbosity, stdout=out, **options)
    return out.getvalue()


def test_demo_exercises_every_capability():
    output = run_demo(url="http://0.0.0.0:8123/", verbosity=1)

    # The URL it was told is the one it prints.
    assert "Admin: http://0.0.0.0:8123/admin/" in output

    # Prompts synced from the shipped files, with a history; the current versions include the partial,
    # and executions ran on more than one version.
    versions = {prompt.slug: prompt.versions.count() for prompt in Prompt.objects.all()}
    assert versions["summarise"] >= 3 and versions["answer-question"] >= 2 and versions["house-style"] >= 2
    summarise = Prompt.objects.get(slug="summarise").current_version
    assert "{{> house-style}}" in summarise.messages[0]["content"]
    used = {(row["prompt"], row["version"]) for row in Execution.objects.by_prompt_version()}
    assert {version for prompt, version in used if prompt == "summarise"} >= {1, 2, 3}

    # Budgets: one past its alert, with the alert sent; the hard stop refused a call, which is recorded.
    budgets = {budget.enforcement: budget for budget in Budget.objects.filter(scope__in=["global", "tenant"])}
    warning, hard_stop = budgets[Budget.Enforcement.WARNING], budgets[Budget.Enforcement.HARD_STOP]
    assert warning.percent_used() >= warning.alert_at_percentage and warning.alerted_on is not None
    assert hard_stop.current_spend() > 0
    refused = Execution.objects.get(error_class="BudgetExceededError")
    assert (refused.status, refused.tenant_id) == ("error", hard_stop.scope_value)

    # A batch went through flush and poll: reconciled, every request handled, each result an execution.
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.COMPLETED and batch.reconciled_at is not None
    requests = BatchRequest.objects.filter(batch=batch)
    assert requests.count() >= 6
    assert set(requests.values_list("status", flat=True)) == {BatchRequest.Status.SUCCEEDED}
    assert Execution.objects.filter(kind="batch").count() == requests.count()

    # Tool calls, nested executions and nested spans, fallbacks, streaming, tenants, failures.
    assert Span.objects.filter(kind="tool", name="lookup_document").exists()
    assert Execution.objects.filter(parent__kind="trace", kind="agent").exists()
    assert Span.objects.filter(kind="custom", name="rank", parent__kind="retriever").exists()
    assert Span.objects.filter(kind="custom", name="fact_check").exists()  # a trace inside a trace
    fallbacks = Execution.objects.filter(status="success").exclude(fallback_reason="")
    assert any(execution.used_fallback for execution in fallbacks)
    streamed = Execution.objects.filter(streaming=True, status="success")
    assert streamed.exists() and all(e.time_to_first_token_ms is not None for e in streamed)
    tenants = set(Execution.objects.exclude(tenant_id=None).values_list("tenant_id", flat=True))
    assert len(tenants) >= 3
    assert Execution.objects.filter(status="timeout").exists()
    assert Span.objects.filter(kind="llm", status="error", error_class="RateLimitError").exists()


def test_demo_latencies_and_history_look_real():
    run_demo()
    durations = sorted(
        Execution.objects.filter(kind="agent", status="success").values_list("duration_ms", flat=True)
    )
    p50, p95 = durations[len(durations) // 2], durations[int(len(durations) * 0.95)]
    assert p50 >= 5 and p95 > 2 * p50
    first, last = Execution.objects.order_by("started_at")[0], Execution.objects.order_by("-started_at")[0]
    assert last.started_at - first.started_at > dt.timedelta(days=15)
    assert first.started_at > timezone.now() - dt.timedelta(days=31)

    # The runs were moved back in time afterwards; the spend counters follow them, day by day.
    spent_per_day: dict[dt.date, Decimal] = defaultdict(Decimal)
    for started_at, cost in Execution.objects.filter(parent=None).values_list("started_at", "total_cost"):
        spent_per_day[local_day(started_at)] += cost
    counted = SpendCounter.objects.filter(scope="global").values("day").annotate(spend=Sum("spend"))
    assert {row["day"]: row["spend"] for row in counted if row["spend"]} == {
        day: spend for day, spend in spent_per_day.items() if spend
    }


def test_demo_refuses_bad_options():
    with pytest.raises(CommandError, match="--calls must be at least 1"):
        run_demo(calls=0)
    with pytest.raises(CommandError, match="--url must start with http"):
        run_demo(url="127.0.0.1:8000")


def latest_versions() -> dict[str, int]:
    return dict(Prompt.objects.annotate(latest=Max("versions__number")).values_list("slug", "latest"))


def test_demo_runs_again_on_its_own_data():
    run_demo(calls=12)
    versions = latest_versions()
    executions = Execution.objects.count()

    run_demo(calls=12)

    assert latest_versions() == versions
    assert Batch.objects.filter(status=Batch.Status.COMPLETED, reconciled_at__isnull=False).count() == 2
    assert Execution.objects.count() > executions
    assert Execution.objects.filter(error_class="BudgetExceededError").count() == 2
