"""Fill the database with a month of executions made by running the demo agents for real.

Every record goes through the same tracking path as a production call (``Agent.call`` /
``Agent.stream`` and ``trace()``), with the offline provider; ``fake_llm`` scripts the occasional
rate limit, timeout or tool call so the dashboard has failures and fallbacks to show. The times of
the calls are spread over the last 30 days afterwards.
"""

from __future__ import annotations

import datetime as dt
import random

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from example_project.demo.agents import SearchAgent, StoryAgent, SummaryAgent
from llm_agents import tenant, trace
from llm_agents.errors import LLMAgentsError
from llm_agents.models import CostConfig, Execution, Span
from llm_agents.testing import fake_llm

TOPICS = ["django", "celery", "postgres", "redis", "caching", "budgets", "prompts", "tracing"]
TENANTS = ["acme", "globex", "initech"]


class Command(BaseCommand):
    help = "Create an admin user and a month of demo executions by running the demo agents."

    def add_arguments(self, parser):
        parser.add_argument("--calls", type=int, default=400, help="Agent calls to make (default 400).")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")

    def handle(self, *args, calls: int, seed: int, username: str, password: str, **options):
        if calls < 1:
            from django.core.management.base import CommandError

            raise CommandError("--calls must be at least 1.")
        self.ensure_admin(username, password)
        self.ensure_prices()
        rng = random.Random(seed)
        before = set(Execution.objects.values_list("pk", flat=True))
        for number in range(calls):
            self.run_one(rng)
            if options["verbosity"] > 1 and number % 50 == 0:
                self.stdout.write(f"  {number}/{calls} calls")
        made = Execution.objects.exclude(pk__in=before)
        self.spread_over_month(made, rng)
        self.stdout.write(self.style.SUCCESS(f"Recorded {made.count()} executions from {calls} agent calls."))
        self.stdout.write(f"Admin: http://127.0.0.1:8000/admin/  user {username!r}  password {password!r}")

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

    def run_one(self, rng: random.Random) -> None:
        topic = rng.choice(TOPICS)
        kind = rng.random()
        with tenant(rng.choice(TENANTS)), fake_llm() as llm:
            try:
                if kind < 0.45:
                    if rng.random() < 0.6:
                        llm.respond(tool_calls=[{"name": "lookup_document", "arguments": {"topic": topic}}])
                    if rng.random() < 0.05:
                        llm.fail("auth")
                    SearchAgent.call(query=f"what is {topic}? " + "detail " * rng.randint(0, 200))
                elif kind < 0.8:
                    roll = rng.random()
                    if roll < 0.15:
                        llm.fail("rate_limit", model=SummaryAgent.model)
                        llm.fail("rate_limit", model=SummaryAgent.model)
                    elif roll < 0.22:
                        for model in (SummaryAgent.model, *SummaryAgent.fallback_models):
                            llm.fail("timeout", model=model)
                            llm.fail("timeout", model=model)
                    elif roll < 0.3:
                        llm.fail("server_error", model=SummaryAgent.model)
                    SummaryAgent.call(text=f"A long text about {topic}. " * rng.randint(5, 400))
                elif kind < 0.92:
                    for _chunk in StoryAgent.stream(topic=topic):
                        pass
                else:
                    with trace("nightly_digest", metadata={"topic": topic}):
                        SummaryAgent.call(text=f"Digest of {topic}. " * rng.randint(5, 50))
                        SearchAgent.call(query=topic)
            except LLMAgentsError:
                pass  # failed calls are recorded too; that is the point of the demo

    @transaction.atomic
    def spread_over_month(self, executions, rng: random.Random) -> None:
        now = timezone.now()
        for root in executions.filter(parent__isnull=True).order_by("started_at"):
            shift = dt.timedelta(seconds=rng.randint(0, 30 * 24 * 3600))
            family = [root.pk, *Execution.objects.filter(parent=root).values_list("pk", flat=True)]
            for execution in Execution.objects.filter(pk__in=family):
                execution.started_at = now - shift + (execution.started_at - root.started_at)
                if execution.completed_at:
                    execution.completed_at = now - shift + (execution.completed_at - root.started_at)
                execution.save(update_fields=["started_at", "completed_at"])
            for span in Span.objects.filter(execution__in=family):
                span.started_at = now - shift + (span.started_at - root.started_at)
                span.save(update_fields=["started_at"])
