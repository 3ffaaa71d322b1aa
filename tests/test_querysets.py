"""The chainable scopes of ``Execution.objects`` (SPEC §3): each returns exactly the right rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from llm_agents.context import tenant
from llm_agents.models import Execution
from llm_agents.models.querysets import ExecutionQuerySet

from .factories import ExecutionFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db


def ids(queryset):
    return set(queryset.values_list("pk", flat=True))


def resolve_tenant_beta():
    return "beta"


def resolve_no_tenant():
    return None


# -- status -------------------------------------------------------------------------------------


@pytest.fixture
def by_status():
    return {status: ExecutionFactory(status=status) for status in ("running", "success", "error", "timeout")}


def test_successful(by_status):
    assert ids(Execution.objects.successful()) == {by_status["success"].pk}


def test_failed_is_error_or_timeout(by_status):
    assert ids(Execution.objects.failed()) == {by_status["error"].pk, by_status["timeout"].pk}


@pytest.mark.parametrize("status", ["error", "timeout", "running"])
def test_status_scopes(by_status, status):
    scope = getattr(Execution.objects, f"status_{status}")
    assert ids(scope()) == {by_status[status].pk}


# -- who ----------------------------------------------------------------------------------------


def test_by_agent_by_model_by_version():
    search_v1 = ExecutionFactory(agent_type="SearchAgent", agent_version="1", model_id="gpt-4o")
    search_v2 = ExecutionFactory(agent_type="SearchAgent", agent_version="2", model_id="gpt-4o-mini")
    writer_v1 = ExecutionFactory(agent_type="WriterAgent", agent_version="1", model_id="gpt-4o")

    assert ids(Execution.objects.by_agent("SearchAgent")) == {search_v1.pk, search_v2.pk}
    assert ids(Execution.objects.by_agent("Search")) == set()
    assert ids(Execution.objects.by_model("gpt-4o")) == {search_v1.pk, writer_v1.pk}
    assert ids(Execution.objects.by_version("1")) == {search_v1.pk, writer_v1.pk}
    assert ids(Execution.objects.by_agent("SearchAgent").by_version("2")) == {search_v2.pk}


@pytest.fixture
def tenants():
    return {
        "acme": ExecutionFactory(tenant_id="acme"),
        "beta": ExecutionFactory(tenant_id="beta"),
        "none": ExecutionFactory(tenant_id=None),
        "blank": ExecutionFactory(tenant_id=""),
    }


def test_by_tenant(tenants):
    assert ids(Execution.objects.by_tenant("acme")) == {tenants["acme"].pk}


def test_with_and_without_tenant(tenants):
    assert ids(Execution.objects.with_tenant()) == {tenants["acme"].pk, tenants["beta"].pk}
    assert ids(Execution.objects.without_tenant()) == {tenants["none"].pk, tenants["blank"].pk}


def test_for_current_tenant_uses_the_tenant_block(tenants):
    with tenant("acme"):
        assert ids(Execution.objects.for_current_tenant()) == {tenants["acme"].pk}


@override_settings(LLM_AGENTS={"TENANT_RESOLVER": "tests.test_querysets.resolve_tenant_beta"})
def test_for_current_tenant_falls_back_to_the_resolver(tenants):
    assert ids(Execution.objects.for_current_tenant()) == {tenants["beta"].pk}
    with tenant("acme"):
        assert ids(Execution.objects.for_current_tenant()) == {tenants["acme"].pk}


def test_for_current_tenant_without_a_tenant_returns_nothing(tenants):
    assert ids(Execution.objects.for_current_tenant()) == set()
    with override_settings(LLM_AGENTS={"TENANT_RESOLVER": "tests.test_querysets.resolve_no_tenant"}):
        assert ids(Execution.objects.for_current_tenant()) == set()


def test_with_metadata_matches_every_pair():
    both = ExecutionFactory(metadata={"channel": "email", "priority": 2, "extra": "x"})
    channel_only = ExecutionFactory(metadata={"channel": "email", "priority": 1})
    ExecutionFactory(metadata={"channel": "chat", "priority": 2})
    ExecutionFactory(metadata={})

    assert ids(Execution.objects.with_metadata(channel="email")) == {both.pk, channel_only.pk}
    assert ids(Execution.objects.with_metadata(channel="email", priority=2)) == {both.pk}
    assert ids(Execution.objects.with_metadata(channel="sms")) == set()


# -- size ---------------------------------------------------------------------------------------


@pytest.fixture
def sizes():
    return {
        "small": ExecutionFactory(
            input_cost=Decimal("0.40"),
            output_cost=Decimal("0.60"),
            duration_ms=5000,
            input_tokens=9000,
            output_tokens=1000,
        ),  # exactly at every default threshold: total_cost 1.00, 5000 ms, 10000 tokens
        "big": ExecutionFactory(
            input_cost=Decimal("0.50"),
            output_cost=Decimal("0.50000001"),
            duration_ms=5001,
            input_tokens=9000,
            output_tokens=1001,
        ),
        "tiny": ExecutionFactory(
            input_cost=Decimal("0.01"),
            output_cost=Decimal("0.01"),
            duration_ms=120,
            input_tokens=100,
            output_tokens=20,
        ),
    }


def test_expensive_uses_the_threshold_setting(sizes):
    assert ids(Execution.objects.expensive()) == {sizes["big"].pk}
    assert ids(Execution.objects.expensive(Decimal("0.02"))) == {sizes["small"].pk, sizes["big"].pk}
    assert ids(Execution.objects.expensive(0.5)) == {sizes["small"].pk, sizes["big"].pk}
    with override_settings(LLM_AGENTS={"EXPENSIVE_THRESHOLD": Decimal("0.02")}):
        assert ids(Execution.objects.expensive()) == {sizes["small"].pk, sizes["big"].pk}


def test_slow_uses_the_threshold_setting(sizes):
    assert ids(Execution.objects.slow()) == {sizes["big"].pk}
    assert ids(Execution.objects.slow(100)) == {sizes["small"].pk, sizes["big"].pk, sizes["tiny"].pk}
    with override_settings(LLM_AGENTS={"SLOW_THRESHOLD_MS": 4999}):
        assert ids(Execution.objects.slow()) == {sizes["small"].pk, sizes["big"].pk}


def test_high_token_usage_uses_the_threshold_setting(sizes):
    assert ids(Execution.objects.high_token_usage()) == {sizes["big"].pk}
    assert ids(Execution.objects.high_token_usage(120)) == {sizes["small"].pk, sizes["big"].pk}
    with override_settings(LLM_AGENTS={"HIGH_TOKEN_THRESHOLD": 119}):
        assert ids(Execution.objects.high_token_usage()) == {
            sizes["small"].pk,
            sizes["big"].pk,
            sizes["tiny"].pk,
        }


# -- other --------------------------------------------------------------------------------------


def test_streaming_and_non_streaming():
    streamed = ExecutionFactory(streaming=True)
    plain = ExecutionFactory(streaming=False)
    assert ids(Execution.objects.streaming()) == {streamed.pk}
    assert ids(Execution.objects.non_streaming()) == {plain.pk}


def test_with_and_without_fallback():
    fallback = ExecutionFactory(model_id="gpt-4o", chosen_model_id="claude-sonnet-4")
    same = ExecutionFactory(model_id="gpt-4o", chosen_model_id="gpt-4o")
    unanswered = ExecutionFactory(model_id="gpt-4o", chosen_model_id="")

    assert ids(Execution.objects.with_fallback()) == {fallback.pk}
    assert ids(Execution.objects.without_fallback()) == {same.pk, unanswered.pk}
    assert fallback.used_fallback and not same.used_fallback and not unanswered.used_fallback


def test_retryable_errors_are_failed_and_retryable():
    retryable_error = ExecutionFactory(status="error", retryable=True)
    retryable_timeout = ExecutionFactory(status="timeout", retryable=True)
    ExecutionFactory(status="error", retryable=False)
    ExecutionFactory(status="success", retryable=True)

    assert ids(Execution.objects.retryable_errors()) == {retryable_error.pk, retryable_timeout.pk}


def test_rate_limited():
    limited = ExecutionFactory(rate_limited=True, status="success")
    ExecutionFactory(rate_limited=False)
    assert ids(Execution.objects.rate_limited()) == {limited.pk}


def test_cached_and_cache_miss():
    hit = ExecutionFactory(cache_hit=True)
    miss = ExecutionFactory(cache_hit=False)
    assert ids(Execution.objects.cached()) == {hit.pk}
    assert ids(Execution.objects.cache_miss()) == {miss.pk}


def test_with_and_without_tool_calls():
    call = {"id": "call_1", "name": "lookup_order", "arguments": {"order": 42}, "result": "shipped"}
    with_tools = ExecutionFactory(tool_calls=[call], tool_calls_count=1)
    without_tools = ExecutionFactory(tool_calls=[], tool_calls_count=0)
    assert ids(Execution.objects.with_tool_calls()) == {with_tools.pk}
    assert ids(Execution.objects.without_tool_calls()) == {without_tools.pk}


def test_root_executions_excludes_children():
    root = ExecutionFactory()
    child = ExecutionFactory(parent=root)
    ExecutionFactory(parent=child)
    other_root = ExecutionFactory(kind="trace", agent_type="nightly-report")

    assert ids(Execution.objects.root_executions()) == {root.pk, other_root.pk}


# -- chaining -----------------------------------------------------------------------------------


def test_scopes_chain_in_any_order():
    today = local_today()
    wanted = ExecutionFactory(
        agent_type="SearchAgent",
        status="error",
        tenant_id="acme",
        streaming=True,
        started_at=local_datetime(today, 0, 0, 1),
    )
    ExecutionFactory(agent_type="SearchAgent", status="success", tenant_id="acme", streaming=True)
    ExecutionFactory(agent_type="WriterAgent", status="error", tenant_id="acme", streaming=True)
    ExecutionFactory(agent_type="SearchAgent", status="error", tenant_id="beta", streaming=True)
    ExecutionFactory(agent_type="SearchAgent", status="error", tenant_id="acme", streaming=False)
    ExecutionFactory(
        agent_type="SearchAgent",
        status="error",
        tenant_id="acme",
        streaming=True,
        started_at=timezone.now() - dt.timedelta(days=40),
    )

    first = Execution.objects.by_agent("SearchAgent").failed().by_tenant("acme").streaming().last_30_days()
    second = Execution.objects.last_30_days().streaming().by_tenant("acme").failed().by_agent("SearchAgent")
    assert isinstance(first, ExecutionQuerySet)
    assert ids(first) == ids(second) == {wanted.pk}
    assert ids(
        Execution.objects.filter(tenant_id="acme").today().status_error().streaming().by_agent("SearchAgent")
    ) == {wanted.pk}


def test_every_scope_returns_a_queryset_that_chains():
    with tenant("acme"):
        ExecutionFactory(tenant_id="acme", agent_type="SearchAgent")
    scopes = [
        ("today", ()),
        ("yesterday", ()),
        ("this_week", ()),
        ("this_month", ()),
        ("last_7_days", ()),
        ("last_30_days", ()),
        ("last_n_days", (3,)),
        ("between", (dt.date(2026, 1, 1), dt.date(2026, 1, 2))),
        ("successful", ()),
        ("failed", ()),
        ("status_error", ()),
        ("status_timeout", ()),
        ("status_running", ()),
        ("by_agent", ("SearchAgent",)),
        ("by_model", ("gpt-4o",)),
        ("by_version", ("1",)),
        ("by_tenant", ("acme",)),
        ("for_current_tenant", ()),
        ("with_tenant", ()),
        ("without_tenant", ()),
        ("with_metadata", ()),
        ("expensive", ()),
        ("slow", ()),
        ("high_token_usage", ()),
        ("streaming", ()),
        ("non_streaming", ()),
        ("with_fallback", ()),
        ("without_fallback", ()),
        ("retryable_errors", ()),
        ("rate_limited", ()),
        ("cached", ()),
        ("cache_miss", ()),
        ("with_tool_calls", ()),
        ("without_tool_calls", ()),
        ("root_executions", ()),
    ]
    for name, args in scopes:
        assert isinstance(getattr(Execution.objects, name)(*args), ExecutionQuerySet), name
        # A scope narrows the queryset it is called on; it never starts again from every row.
        assert list(getattr(Execution.objects.by_agent("Nobody"), name)(*args)) == [], name
        chained = getattr(Execution.objects.all(), name)(*args).successful()
        assert isinstance(chained, ExecutionQuerySet), name
