"""Fill the database with a month of demo data, made by running the real code paths offline.

Every record is written by the product itself, as in production; nothing leaves the machine. In order:

1. **Admin and prices.** An admin user, and prices for the offline ``fake/…`` models (CostConfig rows).
2. **Prompts.** ``sync_prompts`` reads each folder of ``example_project/prompt_history/`` in turn, then
   ``example_project/prompts/`` (``PROMPTS_SOURCE_PATH``), so the prompts have a version history;
   ``summarise`` and ``answer-question`` include the ``house-style`` partial. The files' ``labels:`` move
   the labels: ``production`` follows each folder (so its history has moves), until the current
   ``summarise`` is synced as ``staging`` only: production keeps its version 2 while version 3 waits for
   the experiment of step 9. A share of the calls runs after each sync, so every version has executions
   to compare. On a database that has the prompts already (a second run), only the current files are
   synced.
3. **Agent calls** (``--calls``), for three tenants: SearchAgent asking for its tool, SummaryAgent retrying
   and falling back after rate limits, timeouts and server errors, StoryAgent streamed, and
   ``nightly_digest`` traces nesting spans, a trace and agent calls. The offline provider simulates a
   log-normal latency per model (``example_project/demo/conf.py``); ``fake_llm()`` scripts the failures
   and tool calls, with latencies drawn from the same distributions. Most of the end users' calls are
   conversations: 2 to 5 calls in a ``session("conv-N", user_id="u-M", tags=[...])`` block, some of whose
   answers get the end user's thumbs up or down (``scores.record_feedback`` with the answer's
   ``feedback_token``).
4. **The month.** Calls cannot be made in the past, so the ``started_at`` of the executions made in 3 (and
   of their spans) are then moved back over the last 30 days, keeping their order (older prompt versions
   ran earlier) and each conversation's turns minutes apart. That is the one write made outside the
   product's code paths.
5. **Support tickets and a batch cycle.** Support tickets (the demo app's ``SupportTicket``), each
   triaged by a ``trace("ticket_triage", subject=ticket)`` around a SearchAgent call, the closed ones
   answered by ``SummaryAgent.call(..., _subject=ticket)``, and each one's summary enqueued inside
   ``attribute_to(ticket)``: the ticket's admin page lists those executions and the tickets list shows
   the LLM cost of each. ``batches.enqueue`` → ``flush`` → ``poll``: the real ``openai`` SDK against the
   OpenAI-compatible Batch API that runs in this process (``offline_batch_api``); each result is recorded
   as a batch execution (attributed to its ticket) and handed to ``TicketSummaryHandler``. Then the budget spend counters, recorded
   at call time, are rebuilt from the executions by ``rebuild_aggregates``, the command made for
   executions changed outside the recording path.
6. **Budgets.** A 30-day warning budget whose limit the month's spend has passed 80 % of, a model budget
   well within its limit, and a daily hard stop for the tenant ``umbrella``, whose calls run until the
   budget refuses one (recorded as an execution failed with ``BudgetExceededError``).
7. **Scores** (``scores.add``, ``scores.add_session``), with their ScoreConfigs: a reviewer's
   ``helpfulness`` (1 to 5) of a share of the answers, ``resolved`` on each conversation's last answer, and
   a ``csat`` of most conversations.
8. **A dataset and two evaluation runs.** The dataset ``summaries``, made by the first run: a few
   summaries written by hand and the summaries the end users liked (``Dataset.add_executions``); each
   run of the demo evaluates it again. SummaryAgent runs over it twice, scored
   by ``contains``, ``similarity`` and ``llm_judge``: live on its own large model, then on the small model
   through the Batch API (``flush`` → ``poll``, at batch prices). The offline small model is terse and
   ``fake/judge`` grades offline (``example_project/demo/offline_models.py``), so the runs' comparison
   shows what the cheaper run loses. Both evaluate the version ``production`` points at (a running
   experiment does not choose it).
9. **An experiment.** ``summarise``'s production version (the control) against its staging version, half
   the users each, judged by the end users' ``thumbs``, with guardrails; started once, then each run's
   end users (``u-1`` … ``u-40`` in turn, ``_user_id=``) call SummaryAgent and rate a share of the
   answers through their feedback token. These simulated users like answers of the staging version
   more often (:data:`EXPERIMENT_LIKED`), so its results page has a difference to show.
10. **Alerts.** An email channel (the example project's console email backend prints what it sends) and
   two rules: more than 10 executions in an hour, and the 30-day budget past 80 %. ``evaluate_alerts``
   runs once, so the event log shows them fired with their deliveries sent. The channel is also the free
   tenant's budget channel: a budget check of that tenant (``budgets.check``) is refused, and the refusal
   reaches the channel too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
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
from example_project.demo.models import SupportTicket
from example_project.demo.offline_models import JUDGE_MODEL
from llm_agents import attribute_to, batches, budgets, evals, scores, session, span, tenant, trace
from llm_agents.agents import AgentResult
from llm_agents.errors import BudgetExceededError, LLMAgentsError
from llm_agents.models import (
    AlertChannel,
    AlertRule,
    Budget,
    CostConfig,
    Dataset,
    EvalRun,
    Execution,
    Prompt,
    PromptExperiment,
    ScoreConfig,
    Span,
)
from llm_agents.providers import get_provider
from llm_agents.testing import FakeLLM, fake_llm

TOPICS = ["django", "celery", "postgres", "redis", "caching", "budgets", "prompts", "tracing"]
TENANTS = ["acme", "globex", "initech"]
#: The customers of the support tickets, and the states of the tickets not closed.
CUSTOMERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra"]
OPEN_STATUSES = [SupportTicket.Status.OPEN, SupportTicket.Status.PENDING]
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

#: End users ``u-1`` … ``u-15``; user ``u-N`` belongs to the tenant ``TENANTS[N % 3]``.
USERS = 15
#: A user-facing call that is not the next turn of a conversation starts one this often (else it is a
#: call on its own); a conversation has 2 to 5 turns.
CONVERSATION_SHARE = 0.5
#: Share of the conversations' answers their end user gives a thumbs up or down.
FEEDBACK_SHARE = 0.4
#: Share of the answers a reviewer scores for helpfulness; the weights of 1 to 5 per agent.
REVIEW_SHARE = 0.12
HELPFULNESS_WEIGHTS = {"SearchAgent": [1, 1, 2, 5, 5], "SummaryAgent": [1, 1, 3, 5, 3],
                       "StoryAgent": [1, 2, 4, 3, 2]}  # fmt: skip
SCORE_CONFIGS: dict[str, dict[str, Any]] = {
    "helpfulness": {"data_type": ScoreConfig.DataType.NUMERIC, "min_value": 1, "max_value": 5,
                    "description": "A reviewer's grade of the answer, from 1 (useless) to 5 (spot on)."},
    "resolved": {"data_type": ScoreConfig.DataType.BOOLEAN,
                 "description": "Whether the conversation's last answer resolved the end user's question."},
    "csat": {"data_type": ScoreConfig.DataType.CATEGORICAL, "categories": ["happy", "neutral", "unhappy"],
             "description": "The end user's answer to the survey at the end of a conversation."},
    "thumbs": {"data_type": ScoreConfig.DataType.BOOLEAN,
               "description": "The end user's thumbs up (true) or down (false) on an answer."},
}  # fmt: skip

#: The evaluation dataset, and the summaries written into it by hand when it is created: a text and
#: the fact its summary must keep.
DATASET = "summaries"
WRITTEN_SUMMARIES = [
    ("The invoice for March is attached. It covers the Pro plan for twelve seats. Payment is due within "
     "30 days. Late payments incur a 2% fee.", "Payment is due within 30 days."),
    ("The deploy on Friday failed. The migration locked the orders table. We rolled back after ten "
     "minutes. The fix builds the index concurrently and ships on Monday.", "ships on Monday"),
    ("Celery workers restarted overnight. Two tasks were retried. No data was lost.", "No data was lost."),
    ("A customer cannot reset their password. The email link expired twice. They use the mobile app. "
     "They would like a call back this afternoon.", "call back this afternoon"),
    ("Redis memory reached 90% at noon. Keys without an expiry filled it. We set a one-day expiry on "
     "session keys. Memory is back at 40%.", "Memory is back at 40%."),
    ("The nightly report ran at two. It found 14 slow queries. Most read the orders table. An index on "
     "created_at would remove nine of them.", "An index on created_at"),
    ("Sales asked for the prompt changes of May. Three prompts changed. The summary prompt now leads with "
     "the main point. Its answers are 20% shorter.", "20% shorter"),
    ("Our budget for the month is 500 dollars. We spent 380 by the 20th. The story agent spent most of it. "
     "Its model moves to the small one tomorrow.", "moves to the small one"),
]  # fmt: skip
#: The experiment on ``summarise``: its name, how it is judged, and what its guardrails allow.
EXPERIMENT = {
    "name": "Lead with the main point",
    "unit": PromptExperiment.Unit.USER,
    "metric": "thumbs",
    "guardrails": {"error_rate_max": 20, "cost_per_call_max": 0.05},
    "min_samples": 20,
}
#: Share of the experiment's answers whose end user gives a thumbs up or down, and how often that is a
#: thumbs up, by label of the version that answered.
EXPERIMENT_RATED = 0.9
EXPERIMENT_LIKED = {"production": 0.5, "staging": 0.9}
#: The experiment's calls are made by end users ``u-1`` … ``u-40`` in turn (the first 15 are those of the
#: conversations), enough of them for an even split.
EXPERIMENT_USERS = 40

#: At most this many of the summaries the end users liked are added to the dataset.
LIKED_SUMMARIES = 8
EVALUATORS = [
    "contains",
    "similarity",
    ("llm_judge", {"criteria": "The summary keeps the facts of the expected output.", "model": JUDGE_MODEL}),
]


@dataclass
class Conversation:
    """A session of one end user: its id, user, tenant and tags, the turns left to make in it, and the
    execution of its last answer."""

    session_id: str
    user_id: str
    tenant_id: str
    tags: list[str] = field(default_factory=list)
    turns: int = 0
    last_answer: uuid.UUID | None = None


class Command(BaseCommand):
    help = (
        "Create an admin user and a month of demo data by running the demo agents, prompts, batches and "
        "budgets, with conversations, scores, feedback, a dataset and two evaluation runs."
    )

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
    ) -> None:
        if calls < 1:
            raise CommandError(f"--calls must be at least 1, not {calls}.")
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--url must start with http:// or https://, not {url!r}.")
        self.verbosity = options["verbosity"]
        self.rng = random.Random(seed)
        self.conversations: list[Conversation] = []
        self.conversation: Conversation | None = None
        self.first_session = next_session_number()
        admin = self.ensure_admin(username, password)
        self.ensure_prices()
        self.ensure_score_configs()
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
        made = Execution.objects.exclude(pk__in=before)
        self.add_scores(made, admin)
        self.run_evaluations(made)
        self.run_experiment(max(16, calls // 8))
        self.run_alerts()
        recorded = made.count()
        self.note(self.style.SUCCESS(f"Recorded {recorded} executions; {refused}."))
        self.note(f"Admin: {url.rstrip('/')}/admin/  user {username!r}  password {password!r}")

    def note(self, message: str) -> None:
        if self.verbosity:
            self.stdout.write(message)

    def ensure_admin(self, username: str, password: str) -> Any:
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return user

    def ensure_prices(self) -> None:
        """Offline models have no public price; give them one so the demo shows costs."""
        prices = {"fake/search-small": (0.15, 0.60), "fake/summary-large": (2.50, 10.00),
                  "fake/summary-small": (0.15, 0.60), "fake/story-stream": (0.40, 1.60),
                  JUDGE_MODEL: (0.15, 0.60)}  # fmt: skip
        start = timezone.now() - dt.timedelta(days=60)
        for model, (input_price, output_price) in prices.items():
            CostConfig.objects.get_or_create(
                model=model,
                defaults={"provider": "fake", "input_price_per_mtok": input_price,
                          "output_price_per_mtok": output_price, "effective_from": start},
            )  # fmt: skip

    def ensure_score_configs(self) -> None:
        """What the demo's scores may hold: scores of these names are checked against them."""
        for name, config in SCORE_CONFIGS.items():
            ScoreConfig.objects.get_or_create(name=name, defaults=config)

    # -- agent calls --------------------------------------------------------------------------------

    def latency(self, model: str, factor: float = 1.0) -> float:
        """Seconds a scripted call to ``model`` takes: drawn from the offline provider's distribution."""
        provider = get_provider(model)[1]
        simulated = getattr(provider, "simulated_latency", None)
        return simulated(model) * factor if simulated else 0.0

    def run_one(self, number: int) -> None:
        """One call of a scenario: each scenario once first (so even a short run has them all), then
        scenarios drawn by their weights. The end users' calls are most often a turn of a conversation;
        the nightly digest is no one's."""
        names = list(SCENARIOS)
        name = names[number] if number < len(names) else self.rng.choices(names, list(SCENARIOS.values()))[0]
        topic = self.rng.choice(TOPICS)
        conversation = None if name == "nightly_digest" else self.next_turn()
        if conversation is None:
            scope: contextlib.AbstractContextManager[Any] = tenant(self.rng.choice(TENANTS))
        else:
            scope = contextlib.ExitStack()
            scope.enter_context(tenant(conversation.tenant_id))
            scope.enter_context(
                session(conversation.session_id, user_id=conversation.user_id, tags=conversation.tags)
            )
        with scope:
            try:
                result = getattr(self, name)(topic)
            except LLMAgentsError:
                return  # failed calls are recorded too; that is the point of the demo
        if conversation is not None and result is not None:
            self.answered(conversation, result)

    def next_turn(self) -> Conversation | None:
        """The conversation the next end user's call is a turn of: the current one while it has turns
        left, else a new one (:data:`CONVERSATION_SHARE` of the time) or none."""
        current = self.conversation
        if current is None or not current.turns:
            current = self.conversation = (
                self.new_conversation() if self.rng.random() < CONVERSATION_SHARE else None
            )
            if current is None:
                return None
        current.turns -= 1
        return current

    def new_conversation(self) -> Conversation:
        user = self.rng.randint(1, USERS)
        tags = [self.rng.choice(["web", "mobile"]), *(["beta"] if self.rng.random() < 0.3 else [])]
        conversation = Conversation(
            session_id=f"conv-{self.first_session + len(self.conversations)}", user_id=f"u-{user}",
            tenant_id=TENANTS[user % len(TENANTS)], tags=tags, turns=self.rng.randint(2, 5),
        )  # fmt: skip
        self.conversations.append(conversation)
        return conversation

    def answered(self, conversation: Conversation, result: AgentResult) -> None:
        """The end user read the answer: now and then they rate it, through its feedback token."""
        conversation.last_answer = result.execution_id
        if self.rng.random() < FEEDBACK_SHARE:
            liked = self.rng.random() < 0.75
            comment = (
                "" if self.rng.random() < 0.7 else ("Spot on, thanks." if liked else "Not what I asked.")
            )
            scores.record_feedback(result.feedback_token, "thumbs", liked, comment)

    def question(self, topic: str) -> AgentResult:
        return SearchAgent.call(query=self.question_text(topic))

    def question_with_tool(self, topic: str) -> AgentResult:
        """The model asks for the ``lookup_document`` tool, then answers from the document."""
        model = SearchAgent.model or ""
        with fake_llm() as llm:
            llm.respond(tool_calls=[{"name": "lookup_document", "arguments": {"topic": topic}}],
                        delay=self.latency(model))  # fmt: skip
            llm.respond(f"From the {topic} document: it is well documented.", delay=self.latency(model))
            return SearchAgent.call(query=self.question_text(topic))

    def question_with_revoked_key(self, topic: str) -> AgentResult:
        with fake_llm() as llm:
            llm.fail("auth", delay=self.latency(SearchAgent.model or ""))
            return SearchAgent.call(query=self.question_text(topic))

    def question_text(self, topic: str) -> str:
        return f"what is {topic}? " + "detail " * self.rng.randint(0, 200)

    def summary(self, topic: str) -> AgentResult:
        return SummaryAgent.call(text=self.summary_text(topic))

    def summary_after_rate_limits(self, topic: str) -> AgentResult:
        """The first model is rate limited on every attempt; the fallback model answers."""
        with fake_llm() as llm:
            self.fail_attempts(llm, "rate_limit", SummaryAgent.model or "", 0.1)
            return self.answer_summaries(llm, topic)

    def summary_timed_out(self, topic: str) -> AgentResult:
        """Every attempt of every model times out."""
        with fake_llm() as llm:
            for model in (SummaryAgent.model or "", *SummaryAgent.fallback_models):
                self.fail_attempts(llm, "timeout", model, TIMEOUT_FACTOR)
            return SummaryAgent.call(text=self.summary_text(topic))

    def summary_after_server_error(self, topic: str) -> AgentResult:
        """One server error, then the retry answers."""
        with fake_llm() as llm:
            llm.fail(
                "server_error", model=SummaryAgent.model, delay=self.latency(SummaryAgent.model or "", 0.5)
            )
            return self.answer_summaries(llm, topic)

    def answer_summaries(self, llm: FakeLLM, topic: str) -> AgentResult:
        text = self.summary_text(topic)
        for model in (SummaryAgent.model or "", *SummaryAgent.fallback_models):
            llm.respond(f"A text about {topic}.", model=model, delay=self.latency(model))
        return SummaryAgent.call(text=text)

    def summary_text(self, topic: str) -> str:
        return f"A long text about {topic}. " * self.rng.randint(5, 400)

    def fail_attempts(self, llm: FakeLLM, kind: str, model: str, factor: float) -> None:
        for _attempt in range(SummaryAgent.retries + 1):
            llm.fail(kind, model=model, delay=self.latency(model, factor))

    def story(self, topic: str) -> AgentResult | None:
        stream = StoryAgent.stream(topic=topic)
        for _chunk in stream:
            pass
        return stream.result

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
        """Move each root execution (with everything nested in it) back into the last 30 days, in order;
        the turns of a conversation stay together, the end user pausing 20 s to 2.5 min between them."""
        now = timezone.now()
        roots = list(executions.filter(parent__isnull=True).order_by("started_at"))
        together: dict[Any, list[Execution]] = {}
        for root in roots:
            together.setdefault(root.session_id or root.pk, []).append(root)
        offsets = sorted((self.rng.randint(0, 30 * 24 * 3600) for _ in together), reverse=True)
        moved_executions: list[Execution] = []
        moved_spans: list[Span] = []
        for turns, offset in zip(together.values(), offsets, strict=True):
            pauses = [dt.timedelta(seconds=self.rng.randint(20, 150)) for _ in turns]
            lasting = turns[-1].started_at - turns[0].started_at + sum(pauses, dt.timedelta(minutes=1))
            shift = now - max(dt.timedelta(seconds=offset), lasting) - turns[0].started_at
            for root, pause in zip(turns, pauses, strict=True):
                family = list(
                    Execution.objects.filter(Q(pk=root.pk) | Q(root_id=root.pk) | Q(parent=root.pk))
                )
                for execution in family:
                    execution.started_at += shift
                    if execution.completed_at:
                        execution.completed_at += shift
                for span_row in Span.objects.filter(execution__in=[e.pk for e in family]):
                    span_row.started_at += shift
                    moved_spans.append(span_row)
                moved_executions.extend(family)
                shift += pause
        Execution.objects.bulk_update(moved_executions, ["started_at", "completed_at"], batch_size=500)
        Span.objects.bulk_update(moved_spans, ["started_at"], batch_size=500)
        self.note(
            f"Spread {len(roots)} runs over the last 30 days, {len(self.conversations)} of them conversations."
        )

    # -- batches ------------------------------------------------------------------------------------

    def run_batch_cycle(self, count: int) -> None:
        """Open support tickets, triage each (closing every third with an answer), enqueue their
        summaries, submit them, and reconcile the finished batch through its handler; every call
        made for a ticket is attributed to it."""
        batches.register_handler("ticket_summary", TicketSummaryHandler())
        model = SummaryAgent.fallback_models[0]
        for number in range(1, count + 1):
            topic = self.rng.choice(TOPICS)
            ticket = SupportTicket.objects.create(
                subject=f"A question about {topic}", customer=self.rng.choice(CUSTOMERS),
                status=SupportTicket.Status.CLOSED if number % 3 == 0 else self.rng.choice(OPEN_STATUSES),
            )  # fmt: skip
            with trace("ticket_triage", metadata={"ticket": ticket.pk}, subject=ticket):
                SearchAgent.call(query=f"what is {topic}?")
            if ticket.status == SupportTicket.Status.CLOSED:
                SummaryAgent.call(text=f"The customer asked about {topic}. " * 5, _subject=ticket)
            with attribute_to(ticket):
                batches.enqueue(
                    purpose="ticket_summary", model=model, instructions="Summarise the support ticket.",
                    input=f"Ticket {ticket.pk}: a question about {topic}. " * self.rng.randint(2, 20),
                    routing={"ticket": ticket.pk}, temperature=0.2,
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

    # -- scores -------------------------------------------------------------------------------------

    def add_scores(self, executions: Any, reviewer: Any) -> None:
        """A reviewer grades a share of the answers for helpfulness; the product's code records whether
        each conversation's last answer resolved it, and the csat of the conversations whose end user
        answered the survey."""
        answers = executions.filter(kind=Execution.Kind.AGENT, status=Execution.Status.SUCCESS, parent=None)
        added = 0
        with one_commit_on_sqlite():
            for execution_id, agent_type in answers.order_by("started_at").values_list("pk", "agent_type"):
                if self.rng.random() >= REVIEW_SHARE:
                    continue
                weights = HELPFULNESS_WEIGHTS.get(agent_type, [1, 1, 1, 1, 1])
                grade = self.rng.choices(range(1, 6), weights)[0]
                comment = {1: "Wrong answer.", 2: "Vague.", 5: "Exactly right."}.get(grade, "")
                scores.add(
                    execution_id, "helpfulness", grade, comment=comment, source="human", author=reviewer
                )
                added += 1
            for conversation in self.conversations:
                if conversation.last_answer is not None:
                    scores.add(conversation.last_answer, "resolved", self.rng.random() < 0.7)
                    added += 1
                if self.rng.random() < 0.6:
                    csat = self.rng.choices(["happy", "neutral", "unhappy"], [6, 3, 1])[0]
                    scores.add_session(conversation.session_id, "csat", csat)
                    added += 1
        self.note(f"Scores: {added} added by a reviewer and the product's code.")

    # -- the dataset and its evaluation runs --------------------------------------------------------

    def run_evaluations(self, executions: Any) -> None:
        """The ``summaries`` dataset, made once (a second run evaluates the same items again): the written
        summaries and the shortest summaries the end users liked. Then SummaryAgent over it twice: live on
        its own model, and on the small model through the Batch API, settled by a poll."""
        dataset, created = Dataset.objects.get_or_create(
            slug=DATASET,
            defaults={"name": "Summaries", "description": "Texts and what their summary must keep."},
        )
        if created:
            for text, fact in WRITTEN_SUMMARIES:
                dataset.add_item({"text": text}, fact, {"source": "written by hand"})
            # Answers of a first attempt: the demo scripts those after a failure (not echoes of the text).
            liked = executions.filter(
                agent_type=SummaryAgent.agent_type, status=Execution.Status.SUCCESS, attempts_count=1,
                scores__name="thumbs", scores__source="feedback", scores__value=1.0,
            ).only("id", "parameters", "response")  # fmt: skip
            dataset.add_executions(
                sorted(liked, key=lambda execution: len(execution.response))[:LIKED_SUMMARIES]
            )
        large, small = SummaryAgent.model or "", SummaryAgent.fallback_models[0]
        production = Prompt.objects.get(slug=SummaryAgent.prompt).label("production")
        live = evals.run(
            dataset, SummaryAgent, EVALUATORS, model=large, prompt_version=production, name=f"{large}, live"
        )
        batched = evals.run(
            dataset,
            SummaryAgent,
            EVALUATORS,
            model=small,
            prompt_version=production,
            mode=EvalRun.Mode.BATCH,
            name=f"{small}, Batch API",
        )
        polled = batches.poll()
        batched.refresh_from_db()
        # OpenAI's Batch API (with OPENAI_API_KEY) answers later: ``poll_batches`` settles that run then.
        waiting = batched.status == EvalRun.Status.RUNNING
        for run in [live] if waiting else [live, batched]:
            if run.status != EvalRun.Status.COMPLETED:
                problems = "; ".join(filter(None, [run.error, *polled.errors]))
                raise CommandError(f"The demo evaluation run {run} ended {run.status}: {problems}")
        if waiting:
            self.note(
                f"Evaluations: {live} completed; {batched} waits for its batch (manage.py poll_batches)."
            )
            return
        judged = batched.compare(live)["llm_judge"]
        self.note(
            f"Evaluations: {live.item_count} items of {DATASET!r}; judge {judged['mean_b']} for {live}, "
            f"{judged['mean_a']} for {batched} (p = {judged['p_value']}), which cost "
            f"${live.total_cost:.4f} and ${batched.total_cost:.4f}."
        )

    # -- the experiment -----------------------------------------------------------------------------

    def run_experiment(self, count: int) -> None:
        """The running experiment on ``summarise`` (started by the first run: production against staging),
        then ``count`` calls of the end users in turn, each in their tenant; a share of the answers gets
        its end user's thumbs, liked more often for the staging version."""
        prompt = Prompt.objects.get(slug=SummaryAgent.prompt)
        experiment = prompt.experiments.filter(status=PromptExperiment.Status.RUNNING).first()
        if experiment is None:
            control, candidate = prompt.label("production"), prompt.label("staging")
            variants = [
                {"version": control.number, "weight": 50},
                {"version": candidate.number, "weight": 50},
            ]
            experiment = PromptExperiment.objects.create(prompt=prompt, variants=variants, **EXPERIMENT)
            experiment.start()
        staging = prompt.label("staging")
        with one_commit_on_sqlite():
            for number in range(count):
                user = number % EXPERIMENT_USERS + 1
                with tenant(TENANTS[user % len(TENANTS)]):
                    result = SummaryAgent.call(
                        text=self.summary_text(self.rng.choice(TOPICS)), _user_id=f"u-{user}"
                    )
                if self.rng.random() < EXPERIMENT_RATED:
                    used = result.execution.prompt_version_id
                    share = EXPERIMENT_LIKED["staging" if used == staging.pk else "production"]
                    liked = self.rng.random() < share
                    scores.record_feedback(result.feedback_token, "thumbs", liked)
        variants = ", ".join(
            f"v{variant['version']} {variant['executions']} calls, thumbs up {variant['metric_mean']}"
            for variant in experiment.results()["variants"]
        )
        self.note(f"Experiment “{experiment.name}” on {prompt.slug}: {variants}.")

    # -- alerts -------------------------------------------------------------------------------------

    def run_alerts(self) -> None:
        """An email channel, two rules that hold after the runs above, one evaluation of the rules, and a
        refused budget check of the free tenant reaching its budget's channel."""
        email, _ = AlertChannel.objects.update_or_create(
            name="Operations (email)", defaults={"kind": AlertChannel.Kind.EMAIL, "target": "ops@example.com"}
        )
        busy, _ = AlertRule.objects.update_or_create(
            name="Busy hour",
            defaults={"metric": AlertRule.Metric.EXECUTIONS, "threshold": 10, "window_minutes": 60},
        )
        month = Budget.objects.get(name="All agents, 30 days")
        spent, _ = AlertRule.objects.update_or_create(
            name="30-day budget past 80 %",
            defaults={"metric": AlertRule.Metric.BUDGET_PERCENT, "budget": month, "threshold": 80},
        )
        for rule in (busy, spent):
            rule.channels.add(email)
        call_command("evaluate_alerts", verbosity=min(self.verbosity, 1), stdout=self.stdout)
        Budget.objects.get(name=f"{FREE_TENANT} free tier, daily").channels.add(email)
        with contextlib.suppress(BudgetExceededError):
            budgets.check(SummaryAgent.__name__, tenant_id=FREE_TENANT)


def next_session_number() -> int:
    """The number after those of the demo's earlier conversations (``conv-N``), so that a run starts
    conversations of its own."""
    numbers = [
        int(session_id.removeprefix("conv-"))
        for session_id in Execution.objects.filter(session_id__startswith="conv-")
        .values_list("session_id", flat=True)
        .distinct()
        .order_by()
        if session_id.removeprefix("conv-").isdigit()
    ]
    return max(numbers, default=0) + 1


def one_commit_on_sqlite() -> contextlib.AbstractContextManager[Any]:
    """On SQLite the tracking writes join an enclosing transaction, so a phase of calls is committed once
    rather than twice per call (a commit waits for the disk); other databases write on their own."""
    return transaction.atomic() if connection.vendor == "sqlite" else contextlib.nullcontext()


def cents_above(amount: Decimal) -> Decimal:
    """``amount`` rounded up to a whole cent, at least one cent."""
    return max(Decimal("0.01"), amount.quantize(Decimal("0.01"), rounding=ROUND_UP))
