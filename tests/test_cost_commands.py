"""sync_costs, recompute_costs and rebuild_aggregates; the budget and cost config admin."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from llm_agents import budgets
from llm_agents.models import CostConfig, Execution, Span, SpendCounter

from .factories import (
    BudgetFactory,
    CostConfigFactory,
    ExecutionFactory,
    SpanFactory,
    local_datetime,
    local_today,
)

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# -- sync_costs ---------------------------------------------------------------------------------


def test_sync_costs_writes_genai_prices_and_is_idempotent():
    first = run("sync_costs", "--provider", "openai", "--model", "gpt-4o", "--model", "gpt-4o-mini")
    assert "2 models" in first and "updated 0, unchanged 0" in first
    configs = CostConfig.objects.filter(source="genai_prices")
    assert set(configs.values_list("provider", flat=True)) == {"openai"}
    assert set(configs.values_list("model", flat=True)) == {"gpt-4o", "gpt-4o-mini"}
    created = configs.count()
    assert f"created {created}," in first
    again = run("sync_costs", "--provider", "openai", "--model", "gpt-4o", "--model", "gpt-4o-mini")
    assert f"created 0, updated 0, unchanged {created}" in again
    assert CostConfig.objects.count() == created
    # the price it copied is the one genai-prices charges now
    now = timezone.now()
    config = configs.get(model="gpt-4o-mini", effective_from__lte=now, effective_until__isnull=True)
    from genai_prices import Usage, calc_price

    expected = calc_price(Usage(input_tokens=1_000_000, output_tokens=0), "gpt-4o-mini", provider_id="openai")
    assert config.input_price_per_mtok == expected.input_price


def test_sync_costs_dated_prices_become_consecutive_windows():
    run("sync_costs", "--provider", "anthropic", "--model", "claude-opus-4-6")
    windows = list(
        CostConfig.objects.order_by("effective_from").values_list("effective_from", "effective_until")
    )
    assert len(windows) >= 2
    for (_, until), (start, _) in zip(windows, windows[1:], strict=False):
        assert until == start
    assert windows[-1][1] is None


def test_sync_costs_updates_changed_prices_and_leaves_manual_configs_alone():
    manual = CostConfigFactory(model="gpt-4o", input_price_per_mtok=Decimal("99"))
    run("sync_costs", "--provider", "openai", "--model", "gpt-4o")
    synced = CostConfig.objects.filter(source="genai_prices", model="gpt-4o").first()
    synced.input_price_per_mtok = Decimal("1")
    synced.save()
    assert "updated 1" in run("sync_costs", "--provider", "openai", "--model", "gpt-4o")
    manual.refresh_from_db()
    assert manual.input_price_per_mtok == Decimal("99")


def test_sync_costs_dry_run_writes_nothing():
    out = run("sync_costs", "--dry-run", "--model", "gpt-4o")
    assert out.startswith("Dry run: 1 models: created")
    assert not CostConfig.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "nobody"], "Unknown genai-prices provider"),
        (["--model", "no-such-model"], "no price for: no-such-model"),
    ],
)
def test_sync_costs_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("sync_costs", *args)
    assert not CostConfig.objects.exists()


# -- recompute_costs ----------------------------------------------------------------------------


@pytest.fixture
def repriced():
    """acme-large at $1/$2 per million until 10 days ago, $10/$20 since; executions recorded at $0."""
    change = local_datetime(local_today() - dt.timedelta(days=10))
    CostConfigFactory(model="acme-large", provider="", input_price_per_mtok=Decimal("1"),
                      output_price_per_mtok=Decimal("2"), cached_input_price_per_mtok=None,
                      effective_from=change - dt.timedelta(days=30), effective_until=change)  # fmt: skip
    CostConfigFactory(model="acme-large", provider="", input_price_per_mtok=Decimal("10"),
                      output_price_per_mtok=Decimal("20"), cached_input_price_per_mtok=None,
                      effective_from=change)  # fmt: skip

    def execution(started_at, **fields):
        values = dict(model_id="acme-large", provider="", input_tokens=1_000_000, output_tokens=1_000_000,
                      input_cost=Decimal("0"), output_cost=Decimal("0"), started_at=started_at)  # fmt: skip
        values.update(fields)
        return ExecutionFactory(**values)

    old = execution(change - dt.timedelta(days=1))  # $1 + $2
    new = execution(change + dt.timedelta(days=1))  # $10 + $20
    parent = execution(change + dt.timedelta(days=2), input_tokens=0, output_tokens=0, kind="trace")
    child = execution(
        change + dt.timedelta(days=2, seconds=1), parent=parent, input_tokens=500_000, output_tokens=0
    )
    SpanFactory(execution=child, kind="llm", model_id="acme-large", provider="", input_tokens=500_000,
                output_tokens=0, total_cost=Decimal("0"), started_at=child.started_at)  # fmt: skip
    return {"change": change, "old": old, "new": new, "parent": parent, "child": child}


def test_recompute_costs_reprices_at_the_price_in_force_when_each_ran(repriced):
    since = (repriced["change"] - dt.timedelta(days=5)).date().isoformat()
    out = run("recompute_costs", "--since", since)
    assert "Old total $0.00000000, new total $38.00000000" in out
    assert "4 of 4 executions and 1 spans changed" in out
    old, new, parent, child = (
        Execution.objects.get(pk=repriced[k].pk) for k in ("old", "new", "parent", "child")
    )
    assert (old.input_cost, old.output_cost, old.total_cost) == (Decimal("1"), Decimal("2"), Decimal("3"))
    assert new.total_cost == Decimal("30") and new.pricing_source == "config"
    assert child.total_cost == Decimal("5") and parent.total_cost == Decimal("5")
    assert Span.objects.get().total_cost == Decimal("5")
    # the budget counters follow the new costs
    assert SpendCounter.objects.filter(scope="global").values_list("spend", flat=True).count() == 3
    assert sum(SpendCounter.objects.filter(scope="global").values_list("spend", flat=True)) == Decimal("38")
    assert "0 of 4 executions" in run("recompute_costs", "--since", since)


def test_recompute_costs_until_and_dry_run(repriced):
    day = repriced["change"].date()
    out = run("recompute_costs", "--since", (day - dt.timedelta(days=5)).isoformat(), "--until",
              day.isoformat(), "--dry-run")  # fmt: skip
    assert "new total $3.00000000" in out and "1 of 1 executions and 0 spans would change" in out
    assert Execution.objects.get(pk=repriced["old"].pk).total_cost == 0
    assert not SpendCounter.objects.exists()


def test_recompute_costs_shows_progress_in_chunks(repriced):
    out = run("recompute_costs", "--since", "2000-01-01", "--batch-size", "1", "-v", "2")
    assert out.count("executions re-priced so far") == 3  # three root executions


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since must be a date as YYYY-MM-DD"),
        (["--since", "2026-02-30"], "--since must be a date"),
        (["--since", "2026-03-02", "--until", "2026-03-01"], "is before --since"),
        (["--since", "2026-03-01", "--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_recompute_costs_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("recompute_costs", *args)


def test_recompute_costs_needs_since():
    with pytest.raises(CommandError):
        run("recompute_costs")


# -- rebuild_aggregates -------------------------------------------------------------------------


def test_rebuild_aggregates_repairs_drift():
    today = local_today()
    ExecutionFactory(agent_type="A", tenant_id="acme", input_cost=Decimal("1"), output_cost=Decimal("0.5"))
    ExecutionFactory(agent_type="B", started_at=local_datetime(today - dt.timedelta(days=40), 12),
                     input_cost=Decimal("4"), output_cost=0)  # fmt: skip
    budgets.rebuild_counters()
    right = set(SpendCounter.objects.values_list("scope", "scope_value", "day", "spend", "tokens"))
    SpendCounter.objects.update(spend=Decimal("123"))
    out = run("rebuild_aggregates", "-v", "2", "--chunk-days", "7")
    assert set(SpendCounter.objects.values_list("scope", "scope_value", "day", "spend", "tokens")) == right
    assert "counters written" in out and "Rebuilt spend counters from" in out
    assert SpendCounter.objects.get(scope="tenant", scope_value="acme").spend == Decimal("1.5")


def test_rebuild_aggregates_since_and_bad_dates():
    ExecutionFactory(input_cost=Decimal("1"), output_cost=0)
    out = run("rebuild_aggregates", "--since", local_today().isoformat())
    assert f"from {local_today()}" in out
    assert SpendCounter.objects.get(scope="global").spend == Decimal("1")
    with pytest.raises(CommandError, match="--since must be a date"):
        run("rebuild_aggregates", "--since", "13/01/2026")
    with pytest.raises(CommandError, match="--chunk-days"):
        run("rebuild_aggregates", "--chunk-days", "0")


# -- admin --------------------------------------------------------------------------------------


def test_budget_list_shows_spend_against_the_limit(staff_client):
    BudgetFactory(name="Team budget", limit_usd=Decimal("10"), alert_at_percentage=50)
    budgets.record("A", Decimal("7.5"), 100)
    content = staff_client.get(reverse("admin:llm_agents_budget_changelist")).content.decode()
    assert "llm-budget-bar" in content and "width:75.0%" in content
    assert "$7.50000000 of $10.00000000" in content
    assert "75.00%" in content


def test_budget_page_shows_the_forecast(staff_client):
    budget = BudgetFactory(name="Team budget")
    response = staff_client.get(reverse("admin:llm_agents_budget_change", args=[budget.pk]))
    assert "forecast for the period" in response.content.decode().lower()


def test_rebuild_counters_admin_action(staff_client):
    budget = BudgetFactory()
    ExecutionFactory(input_cost=Decimal("2"), output_cost=0)
    response = staff_client.post(
        reverse("admin:llm_agents_budget_changelist"),
        {"action": "rebuild_spend_counters", "_selected_action": [budget.pk]},
        follow=True,
    )
    assert "Spend counters rebuilt" in response.content.decode()
    assert budget.current_spend() == Decimal("2")


def cost_config_form(**fields):
    data = {"provider": "openai", "model": "gpt-x", "match_pattern": "", "input_price_per_mtok": "1",
            "output_price_per_mtok": "2", "cached_input_price_per_mtok": "", "effective_from_0": "2026-01-01",
            "effective_from_1": "00:00:00", "effective_until_0": "", "effective_until_1": "",
            "source": "manual"}  # fmt: skip
    data.update(fields)
    return data


def test_cost_config_admin_refuses_overlapping_prices(staff_client):
    CostConfigFactory(model="gpt-x", provider="openai", effective_from=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    url = reverse("admin:llm_agents_costconfig_add")
    response = staff_client.post(url, cost_config_form())
    assert response.status_code == 200 and "overlaps this one" in response.content.decode()
    response = staff_client.post(
        url,
        cost_config_form(
            effective_until_0="2026-01-01", effective_until_1="00:00:00", effective_from_0="2026-02-01"
        ),
    )
    assert "Must be after effective from" in response.content.decode()
    # before the open-ended price starts: allowed
    response = staff_client.post(url, cost_config_form(effective_from_0="2025-01-01", effective_until_0="2025-06-01",
                                                       effective_until_1="00:00:00"))  # fmt: skip
    assert response.status_code == 302
    assert CostConfig.objects.filter(model="gpt-x").count() == 2


def test_cost_config_admin_filters_by_provider_and_dates(staff_client):
    CostConfigFactory(model="gpt-x", provider="openai")
    CostConfigFactory(model="claude-x", provider="anthropic")
    url = reverse("admin:llm_agents_costconfig_changelist")
    response = staff_client.get(url, {"provider": "anthropic"})
    assert response.context["cl"].result_count == 1
    response = staff_client.get(url, {"effective_until__isnull": "True"})
    assert response.context["cl"].result_count == 2
