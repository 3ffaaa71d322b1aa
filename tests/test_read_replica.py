"""``ANALYTICS_DATABASE`` (SPEC §20 "Read replica"): the dashboard, the API's reads and the analytics
query the alias; tracking, budgets and batches stay on the primary.

The alias is added here, not in tests/settings.py: ``replica`` is the test database itself
(``TEST: {"MIRROR": "default"}``, as Django's docs describe for replicas under test) opened
read-only, as a hot standby is, so a write sent to it fails whatever thread sends it. Its rows are
the primary's only once committed, hence ``transaction=True``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from llm_agents import Agent, Param
from llm_agents.errors import BudgetExceededError
from llm_agents.models import Budget, CostConfig, Execution, SpendCounter
from llm_agents.testing import fake_llm
from tests.api_support import API
from tests.factories import (
    BudgetFactory,
    ExecutionFactory,
    PromptFactory,
    PromptVersionFactory,
    SpanFactory,
)

REPLICA = "replica"
ON_REPLICA = {"ANALYTICS_DATABASE": REPLICA}
EXECUTIONS = f'"{Execution._meta.db_table}"'

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", REPLICA])


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup):
    """``DATABASES["replica"]``: the test database again, read-only (module-scoped so that it
    exists before the test's database access is granted)."""
    primary = connections["default"].settings_dict
    options = dict(primary["OPTIONS"])
    if connections["default"].vendor == "postgresql":
        options["options"] = f"{options.get('options', '')} -c default_transaction_read_only=on".strip()
    else:
        options["init_command"] = "PRAGMA query_only = ON"
    replica = {**primary, "OPTIONS": options, "TEST": {**primary["TEST"], "MIRROR": "default"}}
    connections.settings[REPLICA] = replica
    settings.DATABASES[REPLICA] = replica  # for the system checks (the same dict on current Django)
    yield REPLICA
    connections[REPLICA].close()
    del connections[REPLICA]
    connections.settings.pop(REPLICA, None)
    settings.DATABASES.pop(REPLICA, None)


class Queries:
    """The queries each database ran in the block, keeping those on llm_agents' tables (a request's
    session and user are read from the primary whatever the setting)."""

    def __enter__(self) -> Queries:
        self.contexts = {alias: CaptureQueriesContext(connections[alias]) for alias in ("default", REPLICA)}
        for context in self.contexts.values():
            context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for context in self.contexts.values():
            context.__exit__(*exc)

    def on(self, alias: str) -> list[str]:
        return [
            query["sql"] for query in self.contexts[alias].captured_queries if "llm_agents_" in query["sql"]
        ]


def ago(**delta) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


@pytest.fixture
def traffic():
    """Three root executions of the last day (one failed), one with a span."""
    first = ExecutionFactory(started_at=ago(hours=1), total_cost=Decimal("0.25"))
    SpanFactory(execution=first, started_at=first.started_at)
    ExecutionFactory(started_at=ago(hours=2), total_cost=Decimal("0.50"))
    ExecutionFactory(started_at=ago(hours=3), failed=True)
    return first


# -- reads go to the alias --------------------------------------------------------------------


def test_the_replica_refuses_writes():
    """The fixture's replica is read-only, so the tests below would fail on any write sent there."""
    with pytest.raises(Exception, match="read-only|readonly"):
        Execution.objects.using(REPLICA).create(agent_type="X", model_id="m", started_at=timezone.now())


def test_the_dashboard_reads_the_analytics_database(staff_client, traffic):
    with override_settings(LLM_AGENTS=ON_REPLICA), Queries() as queries:
        response = staff_client.get(reverse("admin:llm_agents_dashboard"), {"period": "24h"})
    assert response.status_code == 200
    assert response.context["overview"]["total_executions"] == 3
    assert queries.on(REPLICA)
    assert queries.on("default") == []


def test_the_admin_export_reads_the_analytics_database(staff_client, traffic):
    with override_settings(LLM_AGENTS=ON_REPLICA), Queries() as queries:
        response = staff_client.get(reverse("admin:llm_agents_execution_export"))
        body = b"".join(response.streaming_content)
    assert response.status_code == 200
    assert body.count(b"SupportAgent") == 3
    # The rows (the only query with every column); the choices of the list's filters are the
    # changelist's, read where the admin's lists are (the primary).
    rows = f'{EXECUTIONS}."time_to_first_token_ms"'
    assert [sql for sql in queries.on(REPLICA) if rows in sql]
    assert [sql for sql in queries.on("default") if rows in sql] == []


def test_the_prompt_page_reads_its_performance_on_the_analytics_database(staff_client):
    version = PromptVersionFactory()
    ExecutionFactory(prompt_version=version)
    url = reverse("admin:llm_agents_prompt_change", args=[version.prompt.pk])
    with override_settings(LLM_AGENTS=ON_REPLICA), Queries() as queries:
        assert staff_client.get(url).status_code == 200
    assert [sql for sql in queries.on(REPLICA) if EXECUTIONS in sql]
    assert [sql for sql in queries.on("default") if EXECUTIONS in sql] == []


@pytest.mark.parametrize(
    "path",
    [
        "overview/?period=24h",
        "executions/",
        "executions/{id}/",
        "agents/",
        "costs/summary/",
        "costs/forecast/",
        "trends/",
        "comparison/models/",
        "comparison/versions/?agent_type=SupportAgent&versions=1.0",
        "errors/",
        "prompts/",
        "export/?format=csv",
        "export/?format=json",
    ],
)
def test_api_reads_run_on_the_analytics_database(staff_client, traffic, path):
    PromptFactory()
    with override_settings(LLM_AGENTS=ON_REPLICA), Queries() as queries:
        response = staff_client.get(API + path.format(id=traffic.pk))
        if response.streaming:
            body = b"".join(response.streaming_content)
            assert body.count(b"SupportAgent") == 3
    assert response.status_code == 200
    assert queries.on(REPLICA)
    assert queries.on("default") == []


def test_the_answers_are_those_of_the_primary(staff_client, traffic):
    """The same database behind both aliases: the same figures."""
    on_primary = staff_client.get(API + "overview/?period=24h").json()
    with override_settings(LLM_AGENTS=ON_REPLICA):
        on_replica = staff_client.get(API + "overview/?period=24h").json()
    assert on_replica == on_primary
    assert on_replica["total_executions"] == 3 and on_replica["failed"] == 1


def test_without_the_setting_nothing_reads_the_alias(staff_client, traffic):
    with Queries() as queries:
        assert staff_client.get(API + "overview/").status_code == 200
        assert staff_client.get(reverse("admin:llm_agents_dashboard")).status_code == 200
    assert queries.on(REPLICA) == []
    assert queries.on("default")


# -- writes, budgets and batches stay on the primary ------------------------------------------


class PlanAgent(Agent):
    model = "gpt-replica"
    max_tokens = 100
    topic = Param(required=True)

    def user_prompt(self):
        return f"Plan {self.topic}"


def test_tracking_and_budgets_stay_on_the_primary():
    CostConfig.objects.create(
        model="gpt-replica",
        input_price_per_mtok=Decimal("1000"),
        output_price_per_mtok=Decimal("2000"),
        effective_from="2020-01-01T00:00Z",
    )
    BudgetFactory(limit_usd=Decimal("3"), period=Budget.Period.DAILY)  # each call below costs $2

    def call() -> None:
        with fake_llm() as llm:
            llm.respond("ok", input_tokens=1000, output_tokens=500)
            PlanAgent.call(topic="launch")

    with override_settings(LLM_AGENTS=ON_REPLICA), Queries() as queries:
        call()
        call()
        with pytest.raises(BudgetExceededError):
            call()
    assert queries.on(REPLICA) == []
    recorded = Execution.objects.using("default").filter(agent_type="PlanAgent")
    assert sorted(recorded.values_list("status", flat=True)) == ["error", "success", "success"]
    assert SpendCounter.objects.using("default").get(scope="global").spend == Decimal("4")


@pytest.mark.parametrize("path", ["budgets/", "batches/"])
def test_budgets_and_batches_endpoints_stay_on_the_primary(staff_client, path):
    BudgetFactory()
    with override_settings(LLM_AGENTS=ON_REPLICA), Queries() as queries:
        assert staff_client.get(API + path).status_code == 200
    assert queries.on(REPLICA) == []
    assert queries.on("default")


# -- the system check -------------------------------------------------------------------------


def test_an_alias_of_databases_passes_the_check():
    from django.core.checks import run_checks

    with override_settings(LLM_AGENTS=ON_REPLICA):
        assert [m for m in run_checks() if m.id.startswith("llm_agents.")] == []
