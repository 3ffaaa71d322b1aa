"""The example project's ``demo`` command fills every page of the product with data made by the real code
paths: prompts with versions, labels and a partial, budgets with spend (one past its alert, a hard stop
that refused a call), a reconciled batch, tool calls, nested traces, fallbacks, streaming, tenants,
failures and latencies with a spread; conversations of end users with their feedback, scores of every
data type, a dataset and two evaluation runs (one through the Batch API) that differ, and a running
prompt experiment with results."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Max, Sum
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from example_project.demo.conf import demo_settings
from example_project.demo.management.commands.demo import DATASET, WRITTEN_SUMMARIES
from example_project.demo.management.commands.demo import Command as DemoCommand
from example_project.demo.models import SupportTicket
from llm_agents.admin.formatting import format_cost
from llm_agents.alerts.messages import compose
from llm_agents.attribution import cost_of
from llm_agents.budgets import local_day
from llm_agents.evals import EVAL_PURPOSE
from llm_agents.models import (
    AlertDelivery,
    AlertEvent,
    Batch,
    BatchRequest,
    Budget,
    Dataset,
    EvalRun,
    Execution,
    Prompt,
    PromptExperiment,
    PromptLabel,
    PromptLabelMove,
    Score,
    ScoreConfig,
    Span,
    SpendCounter,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run_demo(calls: int = 40, verbosity: int = 0, **options) -> str:
    out = io.StringIO()
    with override_settings(LLM_AGENTS=demo_settings()):
        call_command(DemoCommand(), calls=calls, verbosity=verbosity, stdout=out, **options)
    return out.getvalue()


def test_demo_exercises_every_capability(client):
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

    # Labels from the files' front matter, moved by each sync: production followed the history, and
    # staging holds the current summarise, which an experiment compares with production.
    labels = {
        (label.prompt.slug, label.name): label.version.number
        for label in PromptLabel.objects.select_related("prompt", "version")
    }
    assert labels[("summarise", "production")] == 2 and labels[("summarise", "staging")] == 3
    assert labels[("house-style", "production")] == 2
    moves = PromptLabelMove.objects.filter(prompt__slug="summarise", label="production").order_by("id")
    assert [(move.old_number, move.new_number, move.source) for move in moves] == [
        (None, 1, "sync"),
        (1, 2, "sync"),
    ]
    experiment = PromptExperiment.objects.get(prompt__slug="summarise")
    assert experiment.status == PromptExperiment.Status.RUNNING and experiment.metric == "thumbs"
    assert experiment.numbers() == [2, 3] and experiment.guardrails and not experiment.tripped
    results = experiment.results()
    assert [variant["version"] for variant in results["variants"]] == [2, 3]
    for variant in results["variants"]:
        assert variant["executions"] > 0 and variant["metric_mean"] is not None and variant["ci95"]
        assert variant["avg_cost"] > 0 and variant["p50_duration_ms"] is not None
    [comparison] = results["comparisons"]
    assert comparison["delta"] is not None and comparison["p_value"] is not None
    users = set(experiment.executions.values_list("user_id", flat=True))
    assert len(users) >= 10

    # Budgets: one past its alert, with the alert sent; the hard stop refused a call, which is recorded.
    budgets = {budget.enforcement: budget for budget in Budget.objects.filter(scope__in=["global", "tenant"])}
    warning, hard_stop = budgets[Budget.Enforcement.WARNING], budgets[Budget.Enforcement.HARD_STOP]
    assert warning.percent_used() >= warning.alert_at_percentage and warning.alerted_on is not None
    assert hard_stop.current_spend() > 0
    refused = Execution.objects.get(error_class="BudgetExceededError")
    assert (refused.status, refused.tenant_id) == ("error", hard_stop.scope_value)

    # Alerts: both rules fired once to the email channel, and the free tier's refusal reached it too.
    fired = {event.payload.get("rule") or event.payload["kind"]: event for event in AlertEvent.objects.all()}
    assert set(fired) == {"Busy hour", "30-day budget past 80 %", "budget_refused"}
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}
    assert fired["budget_refused"].budget == hard_stop
    assert sorted(message.subject for message in mail.outbox) == sorted(
        compose(event).subject for event in fired.values()
    )

    # A batch went through flush and poll: reconciled, every request handled, each result an execution.
    batch = Batch.objects.get(purpose="ticket_summary")
    assert batch.status == Batch.Status.COMPLETED and batch.reconciled_at is not None
    requests = BatchRequest.objects.filter(batch=batch)
    assert requests.count() >= 6
    assert set(requests.values_list("status", flat=True)) == {BatchRequest.Status.SUCCEEDED}
    assert Execution.objects.filter(kind="batch", eval_run=None).count() == requests.count()

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

    # Support tickets: each call made for one is attributed to it (its triage trace, a closed ticket's
    # answer, its batched summary), and the admin shows what each ticket cost.
    tickets = list(SupportTicket.objects.all())
    assert len(tickets) == requests.count()
    for ticket in tickets:
        roots = list(Execution.objects.for_object(ticket))
        kinds = {(execution.kind, execution.agent_type) for execution in roots}
        assert {("trace", "ticket_triage"), ("batch", "ticket_summary")} <= kinds
        assert (ticket.status == "closed") == (("agent", "SummaryAgent") in kinds)
        assert cost_of(ticket)["total_cost"] == sum(execution.total_cost for execution in roots) > 0
    client.force_login(get_user_model().objects.get(username="admin"))
    listed = client.get(reverse("admin:demo_supportticket_changelist")).content.decode()
    assert "LLM cost" in listed
    assert all(format_cost(cost_of(ticket)["total_cost"]) in listed for ticket in tickets)
    page = client.get(reverse("admin:demo_supportticket_change", args=[tickets[0].pk])).content.decode()
    assert "LLM executions" in page and "ticket_triage" in page and "ticket_summary" in page


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


def test_demo_has_conversations_with_feedback_and_scores():
    run_demo()

    # Conversations of 2 to 5 turns, each of one end user of one tenant, minutes long, tagged by channel.
    sessions = list(Execution.objects.sessions())
    assert len(sessions) >= 5
    assert {row["executions"] for row in sessions} <= {2, 3, 4, 5} and len(
        {r["executions"] for r in sessions}
    ) >= 3
    for row in sessions:
        turns = Execution.objects.by_session(row["session_id"]).filter(parent=None)
        assert len(set(turns.values_list("user_id", "tenant_id"))) == 1
        assert row["last_started_at"] - row["first_started_at"] < dt.timedelta(minutes=15)
        assert all(tags and tags[0] in ("web", "mobile") for tags in turns.values_list("tags", flat=True))
    assert len({row["user_id"] for row in sessions}) >= 3
    assert Execution.objects.with_tag("beta").exists()
    assert Execution.objects.filter(parent=None, kind="agent", session_id="").exists()  # calls on their own
    nested = Execution.objects.filter(agent_type="nightly_digest").values_list("session_id", flat=True)
    assert set(nested) == {""}

    # The end users' thumbs, recorded through the answers' feedback tokens: on answers of a session, or
    # of the experiment's calls (made by end users outside a conversation).
    thumbs = Score.objects.filter(name="thumbs")
    assert thumbs.count() >= 3 and set(thumbs.values_list("source", flat=True)) == {Score.Source.FEEDBACK}
    assert {score.display_value for score in thumbs} == {True, False}
    assert not thumbs.filter(execution__session_id="", execution__experiment=None).exists()

    # Scores of each data type, checked against their configs.
    configs = {config.name: config for config in ScoreConfig.objects.all()}
    assert (configs["helpfulness"].min_value, configs["helpfulness"].max_value) == (1, 5)
    assert configs["csat"].categories == ["happy", "neutral", "unhappy"]
    helpfulness = Score.objects.filter(name="helpfulness")
    assert helpfulness.count() >= 2 and set(helpfulness.values_list("source", flat=True)) == {"human"}
    assert all(score.author.username == "admin" and 1 <= score.value <= 5 for score in helpfulness)
    assert set(helpfulness.values_list("data_type", flat=True)) == {ScoreConfig.DataType.NUMERIC}
    resolved = Score.objects.filter(name="resolved")
    assert resolved.count() == len(sessions)
    assert set(resolved.values_list("data_type", flat=True)) == {ScoreConfig.DataType.BOOLEAN}
    csat = Score.objects.filter(name="csat")
    assert csat.exists() and not csat.filter(execution__isnull=False).exists()
    assert set(csat.values_list("session_id", flat=True)) <= {row["session_id"] for row in sessions}
    assert set(csat.values_list("string_value", flat=True)) <= {"happy", "neutral", "unhappy"}
    assert Execution.objects.score_summary("helpfulness")["count"] == helpfulness.count()
    assert Execution.objects.score_summary("resolved")["true_rate"] > 0


def test_demo_evaluates_two_models_on_a_dataset():
    run_demo()

    # The dataset: the written summaries, and summaries the end users liked.
    dataset = Dataset.objects.get(slug=DATASET)
    items = list(dataset.items.all())
    written = [item for item in items if item.source_execution_id is None]
    assert [(item.input["text"], item.expected_output) for item in written] == WRITTEN_SUMMARIES
    liked = [item for item in items if item.source_execution_id is not None]
    assert liked
    for item in liked:
        execution = Execution.objects.get(pk=item.source_execution_id)
        assert (item.input, item.expected_output) == (execution.parameters, execution.response)
        assert execution.scores.get(name="thumbs", source="feedback").display_value is True

    # Two completed runs: the large model live, the small one through the Batch API at batch prices.
    live = EvalRun.objects.get(mode=EvalRun.Mode.SYNC)
    batched = EvalRun.objects.get(mode=EvalRun.Mode.BATCH)
    for run in (live, batched):
        assert run.status == EvalRun.Status.COMPLETED and run.dataset == dataset
        assert (run.item_count, run.completed_count, run.failed_count) == (len(items), len(items), 0)
        assert set(run.summary) == {"contains", "similarity", "llm_judge"}
        assert run.eval_cost > 0  # the judge's calls
    assert (live.model, batched.model) == ("fake/summary-large", "fake/summary-small")
    assert batched.executions.filter(kind="batch").count() == len(items)
    batch = Batch.objects.get(purpose=EVAL_PURPOSE)
    assert batch.status == Batch.Status.COMPLETED and batch.requests.count() == len(items)
    assert 0 < batched.total_cost < live.total_cost / 10
    # The evaluations stay out of production numbers.
    assert Execution.objects.evaluations().count() >= 3 * len(items)
    production = Execution.objects.filter(eval_run=None, parent=None).count()
    assert Execution.objects.summary()["total"] == production

    # They differ: the terse small model misses facts the large one keeps, and the judge sees it.
    comparison = batched.compare(live)
    judge = comparison["llm_judge"]
    assert judge["n_paired"] == len(items) and judge["mean_b"] == 1.0
    assert judge["delta"] < 0 and judge["losses"] >= 3 and judge["ties"] >= 1 and judge["p_value"] < 0.05
    assert judge["ci95"][1] < 0
    assert comparison["contains"]["delta"] < 0
    assert len(comparison["items"]) == len(items)
    reasoning = Score.objects.filter(eval_run=batched, name="llm_judge").values_list("comment", flat=True)
    assert any("sentences" in comment for comment in reasoning)


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

    sessions = set(Execution.objects.exclude(session_id="").values_list("session_id", flat=True))
    in_sessions = Execution.objects.exclude(session_id="").count()
    items = set(Dataset.objects.get(slug=DATASET).items.values_list("pk", flat=True))

    experiment = PromptExperiment.objects.get()
    in_experiment = experiment.executions.count()
    run_demo(calls=12)

    assert latest_versions() == versions
    assert PromptExperiment.objects.get() == experiment  # still the one running
    assert experiment.executions.count() > in_experiment
    assert Batch.objects.filter(status=Batch.Status.COMPLETED, reconciled_at__isnull=False).count() == 4
    assert Execution.objects.count() > executions
    assert Execution.objects.filter(error_class="BudgetExceededError").count() == 2
    # The second run's conversations are its own; two more runs evaluate the same items, comparably.
    assert Execution.objects.filter(session_id__in=sessions).count() == in_sessions
    assert Execution.objects.exclude(session_id="").exclude(session_id__in=sessions).exists()
    assert Dataset.objects.count() == 1
    assert set(Dataset.objects.get(slug=DATASET).items.values_list("pk", flat=True)) == items
    runs = EvalRun.objects.order_by("created_at")
    assert [run.status for run in runs] == [EvalRun.Status.COMPLETED] * 4
    assert runs[3].compare(runs[1])["llm_judge"]["n_paired"] == len(items)
