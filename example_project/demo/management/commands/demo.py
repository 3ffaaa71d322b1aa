"""Fill the database with a month of demo data, made by running the real code paths offline.

Every record is written by the product itself, as in production; nothing leaves the machine. In order:

1. **Admin and prices.** An admin user, and prices for the offline ``fake/…`` models (CostConfig rows).
2. **Prompts.** ``sync_prompts`` reads each folder of ``example_project/prompt_history/`` in turn, then
   ``example_project/prompts/`` (``PROMPTS_SOURCE_PATH``), so the prompts have a version history;
   ``summarise`` and ``answer-question`` include the ``house-style`` partial. A share of the calls runs
   after each sync, so every version has executions to compare. On a database that has the prompts
   already (a second run), only the current files are synced.
3. **Agent calls** (``--calls``), for three tenants: SearchAgent asking for its tool, SummaryAgent retrying
   and falling back after rate limits, timeouts and server errors, StoryAgent streamed, and
   ``nightly_digest`` traces nesting spans, a trace and agent calls. The offline provider simulates a
   log-normal latency per model (``example_project/demo/conf.py``); ``fake_llm()`` scripts the failures
   and tool calls, with latencies drawn from the same distributions.
4. **The month.** Calls cannot be made in the past, so the ``started_at`` of the executions made in 3 (and
   of their spans) are then moved back over the last 30 days, keeping their order (older prompt versions
   ran earlier). That is the one write made outside the product's code paths.
5. **A batch cycle.** ``batches.enqueue`` → ``flush`` → ``poll``: the real ``openai`` SDK against the
   OpenAI-compatible Batch API that runs in this process (``offline_batch_api``); each result is recorded
   as a batch execution and handed to ``TicketSummaryHandler``. Then the budget spend counters, recorded
   at call time, are rebuilt from the executions by ``rebuild_aggregates``, the command made for
   executions changed outside the recording path.
6. **Budgets.** A 30-day warning budget whose limit the month's spend has passed 80 % of, a model budget
   well within its limit, and a daily hard stop for the tenant ``umbrella``, whose calls run until the
   budget refuses one (recorded as an execution failed with ``BudgetExceededError``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from decimal import ROUND_UP, Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from example_project.demo.agents import SearchAgent, StoryAgent, SummaryAgent, TicketSummaryHandler
from example_project.demo.conf import PROMPT_HISTORY, PROMPTS
from llm_agents import batches, span, tenant, trace
from llm_agents.errors import BudgetExceededError, LLMAgentsError
from llm_agents.models import Budget, CostConfig, Execution, Prompt, Span
from llm_agents.providers import get_provider
from llm_agents.testing import FakeLLM, fake_llm

TOPICS = ["django", "celery", "postgres", "redis", "caching", "budgets", "prompts", "tracing"]
TENANTS = ["acme", "globex", "initech"]
#: The tenant on a free tier: a daily hard-stop budget refuses its calls once spent.
FREE_TENANT = "umbrella"
#: The prompts the demo agents send.
DEMO_PROMPTS = [SearchAgent.prompt, SummaryAgent.prompt]
#: What a call does, and how often: the first calls of a run make one of each, in this order.
SCENARIOS = {
    "question": 0.18,
    "question_with_tool": 0.25,
    "question_with_revoked_key": 0.02,
    "summary": 0.245,
    "summary_after_rate_limits": 0.05,
    "summary_timed_out": 0.025,
    "summary_after_server_error": 0.03,
    "story": 0.12,
    "nightly_digest": 0.08,
}
#: A simulated timeout lasts this many times the model's median latency.
TIMEOUT_FACTOR = 6


class Command(BaseCommand):
    help = "Create an admin user and a month of demo data by running the demo agents, prompts, batches and budgets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--calls", type=int, default=400, help="Agent calls to make (default 400).")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/", help="Where the site is served, printed at the end."
        )

    def handle(
        self, *args: Any, calls: int, seed: int, username: str, password: str, url: str, **options: Any
    ):
        if calls < 1:
            raise CommandError(f"--calls must be at least 1, not {calls}.")
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--url must start with http:// or https://, not {url!r}.")
        self.verbosity = options["verbosity"]
        self.rng = random.Random(seed)
        self.ensure_admin(username, password)
        self.ensure_prices()
        before = set(Execution.objects.values_list("pk", flat=True))
        # The history is synced once: on a database that has the prompts, a run syncs the current files.
        history = [] if Prompt.objects.filter(slug__in=DEMO_PROMPTS).exists() else PROMPT_HISTORY
        folders = [*history, PROMPTS]
        for phase, folder in enumerate(folders):
            call_command(
                "sync_prompts", path=str(folder), verbosity=min(self.verbosity, 1), stdout=self.stdout
            )
            first, last = calls * phase // len(folders), calls * (phase + 1) // len(folders)
            with one_commit_on_sqlite():
                for number in range(first, last):
                    self.run_one(number)
        self.spread_over_month(Execution.objects.exclude(pk__in=before))
        self.run_batch_cycle(max(6, calls // 20))
        call_command("rebuild_aggregates", verbosity=min(self.verbosity, 1), stdout=self.stdout)
        refused = self.run_budgets()
        recorded = Execution.objects.exclude(pk__in=before).count()
        self.note(self.style.SUCCESS(f"Recorded {recorded} executions; {refused}."))
        self.note(f"Admin: {url.rstrip('/')}/admin/  user {username!r}  password {password!r}")

    def note(self, message: str) -> None:
        if self.verbosity:
            self.stdout.write(message)

    def ensure_admin(self, username: str, password: str) -> None:
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

    def ensure_prices(self) -> None:
        """Offline models have no public price; give them one so the demo shows costs."""
        prices = {"fake/search-small": (0.15, 0.60), "fake/summary-large": (2.50, 10.00),
                  "fake/summary-small": (0.15, 0.60), "fake/story-stream": (0.40, 1.60)}  # fmt: skip
        start = timezone.now() - dt.timedelta(days=60)
        for model, (input_price, output_price) in prices.items():
            CostConfig.objects.get_or_create(
                model=model,
                defaults={"provider": "fake", "input_price_per_mtok": input_price,
                          "output_price_per_mtok": output_price, "effective_from": start},
            )  # fmt: skip

    # -- agent calls --------------------------------------------------------------------------------

    def latency(self, model: str, factor: float = 1.0) -> float:
        """Seconds a scripted call to ``model`` takes: drawn from the offline provider's distribution."""
        provider = get_provider(model)[1]
        simulated = getattr(provider, "simulated_latency", None)
        return simulated(model) * factor if simulated else 0.0

    def run_one(self, number: int) -> None:
        """One call of a scenario: each scenario once first (so even a short run has them all), then
        scenarios drawn by their weights."""
        names = list(SCENARIOS)
        name = names[number] if number < len(names) else self.rng.choices(names, list(SCENARIOS.values()))[0]
        topic = self.rng.choice(TOPICS)
        with tenant(self.rng.choice(TENANTS)):
            try:
                getattr(self, name)(topic)
            except LLMAgentsError:
                pass  # failed calls are recorded too; that is the point of the demo

    def question(self, topic: str) -> None:
        SearchAgent.call(query=self.question_text(topic))

    def question_with_tool(self, topic: str) -> None:
        """The model asks for the ``lookup_document`` tool, then answers from the document."""
        model = SearchAgent.model or ""
        with fake_llm() as llm:
            llm.respond(tool_calls=[{"name": "lookup_document", "arguments": {"topic": topic}}],
                        delay=self.latency(model))  # fmt: skip
            llm.respond(f"From the {topic} document: it is well documented.", delay=self.latency(model))
            SearchAgent.call(query=self.question_text(topic))

    def question_with_revoked_key(self, topic: str) -> None:
        with fake_llm() as llm:
            llm.fail("auth", delay=self.latency(SearchAgent.model or ""))
            SearchAgent.call(query=self.question_text(topic))

    def question_text(self, topic: str) -> str:
        return f"what is {topic}? " + "detail " * self.rng.randint(0, 200)

    def summary(self, topic: str) -> None:
        SummaryAgent.call(text=self.summary_text(topic))

    def summary_after_rate_limits(self, topic: str) -> None:
        """The first model is rate limited on every attempt; the fallback model answers."""
        with fake_llm() as llm:
            self.fail_attempts(llm, "rate_limit", SummaryAgent.model or "", 0.1)
            self.answer_summaries(llm, topic)

    def summary_timed_out(self, topic: str) -> None:
        """Every attempt of every model times out."""
        with fake_llm() as llm:
            for model in (SummaryAgent.model or "", *SummaryAgent.fallback_models):
                self.fail_attempts(llm, "timeout", model, TIMEOUT_FACTOR)
            SummaryAgent.call(text=self.summary_text(topic))

    def summary_after_server_error(self, topic: str) -> None:
        """One server error, then the retry answers."""
        with fake_llm() as llm:
            llm.fail(
                "server_error", model=SummaryAgent.model, delay=self.latency(SummaryAgent.model or "", 0.5)
            )
            self.answer_summaries(llm, topic)

    def answer_summaries(self, llm: FakeLLM, topic: str) -> None:
        text = self.summary_text(topic)
        for model in (SummaryAgent.model or "", *SummaryAgent.fallback_models):
            llm.respond(f"A text about {topic}.", model=model, delay=self.latency(model))
        SummaryAgent.call(text=text)

    def summary_text(self, topic: str) -> str:
        return f"A long text about {topic}. " * self.rng.randint(5, 400)

    def fail_attempts(self, llm: FakeLLM, kind: str, model: str, factor: float) -> None:
        for _attempt in range(SummaryAgent.retries + 1):
            llm.fail(kind, model=model, delay=self.latency(model, factor))

    def story(self, topic: str) -> None:
        for _chunk in StoryAgent.stream(topic=topic):
            pass

    def nightly_digest(self, topic: str) -> None:
        """A trace: a retrieval span with a nested ranking span, a summary, then a nested trace."""
        with trace("nightly_digest", metadata={"topic": topic}):
            with span("retrieval", kind="retriever", input={"topic": topic}) as retrieval:
                with span("rank", kind="custom") as rank:
                    rank.output = {"kept": 3, "dropped": self.rng.randint(0, 9)}
                retrieval.output = [f"{topic}-{n}" for n in range(3)]
            SummaryAgent.call(text=f"Digest of {topic}. " * self.rng.randint(5, 50))
            with trace("fact_check", metadata={"topic": topic}):
                SearchAgent.call(query=topic)

    # -- the month ----------------------------------------------------------------------------------

    @transaction.atomic
    def spread_over_month(self, executions: Any) -> None:
        """Move each root execution (with everything nested in it) back into the last 30 days, in order."""
        now = timezone.now()
        roots = list(executions.filter(parent__isnull=True).order_by("started_at"))
        offsets = sorted((self.rng.randint(0, 30 * 24 * 3600) for _ in roots), reverse=True)
        moved_executions: list[Execution] = []
        moved_spans: list[Span] = []
        for root, offset in zip(roots, offsets, strict=True):
            shift = now - dt.timedelta(seconds=offset) - root.started_at
            family = list(Execution.objects.filter(Q(pk=root.pk) | Q(root_id=root.pk) | Q(parent=root.pk)))
            for execution in family:
                execution.started_at += shift
                if execution.completed_at:
                    execution.completed_at += shift
            for span_row in Span.objects.filter(execution__in=[e.pk for e in family]):
                span_row.started_at += shift
                moved_spans.append(span_row)
            moved_executions.extend(family)
        Execution.objects.bulk_update(moved_executions, ["started_at", "completed_at"], batch_size=500)
        Span.objects.bulk_update(moved_spans, ["started_at"], batch_size=500)
        self.note(f"Spread {len(roots)} runs over the last 30 days.")

    # -- batches ------------------------------------------------------------------------------------

    def run_batch_cycle(self, count: int) -> None:
        """Enqueue ticket summaries, submit them, and reconcile the finished batch through its handler."""
        batches.register_handler("ticket_summary", TicketSummaryHandler())
        model = SummaryAgent.fallback_models[0]
        for ticket in range(1, count + 1):
            topic = self.rng.choice(TOPICS)
            batches.enqueue(
                purpose="ticket_summary", model=model, instructions="Summarise the support ticket.",
                input=f"Ticket {ticket}: a question about {topic}. " * self.rng.randint(2, 20),
                routing={"ticket": ticket}, temperature=0.2,
            )  # fmt: skip
        flushed = batches.flush()
        polled = batches.poll()
        if flushed.errors or polled.errors:
            raise CommandError("The demo batch cycle failed: " + "; ".join(flushed.errors + polled.errors))
        self.note(f"Batches: {flushed.requests} requests submitted in {len(flushed.batches)} batch(es), "
                  f"{polled.succeeded} results handled.")  # fmt: skip

    # -- budgets ------------------------------------------------------------------------------------

    def run_budgets(self) -> str:
        """Budgets over the month's spend, then the free tenant's calls until its hard stop refuses one."""
        month = Budget(name="All agents, 30 days", scope=Budget.Scope.GLOBAL, period=Budget.Period.ROLLING,
                       period_days=30, limit_usd=Decimal("1"), enforcement=Budget.Enforcement.WARNING,
                       alert_at_percentage=80)  # fmt: skip
        spend = month.current_spend()
        month.limit_usd = cents_above(spend * Decimal("1.15"))
        Budget.objects.filter(name=month.name).delete()
        month.save()
        model = SummaryAgent.model or ""
        Budget.objects.update_or_create(
            name=f"{model}, monthly",
            defaults={"scope": Budget.Scope.MODEL, "scope_value": model, "period": Budget.Period.MONTHLY,
                      "limit_usd": cents_above(spend * 3), "enforcement": Budget.Enforcement.WARNING},
        )  # fmt: skip
        Budget.objects.update_or_create(
            name=f"{FREE_TENANT} free tier, daily",
            defaults={"scope": Budget.Scope.TENANT, "scope_value": FREE_TENANT, "period": Budget.Period.DAILY,
                      "limit_usd": Decimal("0.01"), "enforcement": Budget.Enforcement.HARD_STOP},
        )  # fmt: skip
        with tenant(FREE_TENANT):
            for number in range(1, 51):
                try:
                    SummaryAgent.call(text="A support conversation about billing. " * 60)
                except BudgetExceededError:
                    return f"the {FREE_TENANT} hard stop refused call {number}"
        return f"the {FREE_TENANT} hard stop refused no call"


def one_commit_on_sqlite() -> contextlib.AbstractContextManager[Any]:
    """On SQLite the tracking writes join an enclosing transaction, so a phase of calls is committed once
    rather than twice per call (a commit waits for the disk); other databases write on their own."""
    return transaction.atomic() if connection.vendor == "sqlite" else contextlib.nullcontext()


def cents_above(amount: Decimal) -> Decimal:
    """``amount`` rounded up to a whole cent, at least one cent."""
    return max(Decimal("0.01"), amount.quantize(Decimal("0.01"), rounding=ROUND_UP))
