"""Models: client-generated ids, database constraints, immutable prompt versions, budget figures."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from llm_agents.budgets import rebuild_counters
from llm_agents.models import (
    Batch,
    BatchRequest,
    Budget,
    Execution,
    Prompt,
    PromptVersion,
    Span,
)

from .factories import (
    BatchFactory,
    BatchRequestFactory,
    BudgetFactory,
    CostConfigFactory,
    ExecutionFactory,
    PromptFactory,
    PromptVersionFactory,
    SpanFactory,
    local_datetime,
    local_today,
)

pytestmark = pytest.mark.django_db


def raises_integrity_error(create):
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


# -- factories ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        ExecutionFactory,
        SpanFactory,
        PromptFactory,
        PromptVersionFactory,
        CostConfigFactory,
        BudgetFactory,
        BatchFactory,
        BatchRequestFactory,
    ],
)
def test_every_factory_builds_a_valid_row(factory):
    instance = factory()
    instance.full_clean()
    assert type(instance).objects.filter(pk=instance.pk).exists()
    assert str(instance)


def test_execution_factory_totals_are_consistent():
    execution = ExecutionFactory(
        input_tokens=1000, output_tokens=250, input_cost=Decimal("0.1"), output_cost=Decimal("0.18")
    )
    assert execution.total_tokens == 1250
    assert execution.total_cost == Decimal("0.28")
    assert execution.chosen_model_id == execution.model_id


# -- client-generated ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Execution, {"agent_type": "SearchAgent"}),
        (BatchRequest, {"purpose": "classify", "model": "gpt-4o-mini"}),
    ],
)
def test_uuid_primary_key_is_set_before_saving(model, fields):
    instance = model(**fields)
    assert isinstance(instance.pk, uuid.UUID)
    chosen = instance.pk
    instance.save()
    assert model.objects.get().pk == chosen


def test_span_uuid_is_set_before_saving():
    execution = ExecutionFactory()
    span = Span(execution=execution, name="lookup_order", kind="tool")
    assert isinstance(span.pk, uuid.UUID)
    chosen = span.pk
    span.save()
    assert execution.spans.get().pk == chosen


def test_saving_the_same_execution_again_updates_it():
    execution = Execution(agent_type="SearchAgent", status="running")
    execution.save()
    execution.status = "success"
    execution.save()
    assert Execution.objects.count() == 1
    assert Execution.objects.get().status == "success"


def test_the_same_client_id_cannot_be_inserted_twice():
    chosen = uuid.uuid4()
    Execution.objects.create(id=chosen, agent_type="SearchAgent")
    raises_integrity_error(lambda: Execution.objects.create(id=chosen, agent_type="SearchAgent"))
    assert Execution.objects.count() == 1


def test_batch_request_custom_id_is_generated_and_unique():
    first = BatchRequestFactory()
    second = BatchRequestFactory()
    assert len(first.custom_id) == 32
    assert first.custom_id != second.custom_id
    raises_integrity_error(lambda: BatchRequestFactory(custom_id=first.custom_id))


# -- execution and span constraints -------------------------------------------------------------


def test_execution_cached_tokens_cannot_exceed_input_tokens():
    ExecutionFactory(input_tokens=100, cached_tokens=100)
    raises_integrity_error(lambda: ExecutionFactory(input_tokens=100, cached_tokens=101))


@pytest.mark.parametrize("field", ["input_cost", "output_cost", "total_cost"])
def test_execution_costs_cannot_be_negative(field):
    raises_integrity_error(
        lambda: Execution.objects.create(agent_type="SearchAgent", **{field: Decimal("-0.01")})
    )


def test_execution_kind_and_status_must_be_known():
    raises_integrity_error(lambda: ExecutionFactory(kind="job"))
    raises_integrity_error(lambda: ExecutionFactory(status="failed"))


def test_span_cached_tokens_cannot_exceed_input_tokens():
    raises_integrity_error(lambda: SpanFactory(input_tokens=10, cached_tokens=11))


def test_span_cost_cannot_be_negative():
    raises_integrity_error(lambda: SpanFactory(total_cost=Decimal("-1")))


def test_deleting_an_execution_deletes_its_spans_and_children():
    root = ExecutionFactory()
    child = ExecutionFactory(parent=root)
    SpanFactory(execution=root)
    SpanFactory(execution=child)
    root.delete()
    assert Execution.objects.count() == 0
    assert Span.objects.count() == 0


def test_money_keeps_eight_decimal_places():
    execution = ExecutionFactory(input_cost=Decimal("0.00000001"), output_cost=Decimal("0.00000002"))
    execution.refresh_from_db()
    assert execution.total_cost == Decimal("0.00000003")


def test_json_fields_round_trip():
    execution = ExecutionFactory(
        parameters={"query": "x", "options": {"k": 3}},
        metadata={"channel": "email", "ids": [1, 2]},
        attempts=[{"model_id": "gpt-4o", "status": "success"}],
    )
    execution.refresh_from_db()
    assert execution.parameters == {"query": "x", "options": {"k": 3}}
    assert execution.metadata == {"channel": "email", "ids": [1, 2]}
    assert execution.attempts == [{"model_id": "gpt-4o", "status": "success"}]


# -- prompts ------------------------------------------------------------------------------------


def test_prompt_slug_is_unique():
    Prompt.objects.create(slug="support-reply", name="Support reply")
    raises_integrity_error(lambda: Prompt.objects.create(slug="support-reply", name="Again"))


def test_prompt_version_numbers_count_per_prompt():
    prompt = PromptFactory()
    other = PromptFactory()
    assert [PromptVersionFactory(prompt=prompt).number for _ in range(3)] == [1, 2, 3]
    assert PromptVersionFactory(prompt=other).number == 1
    assert list(prompt.versions.values_list("number", flat=True)) == [3, 2, 1]
    prompt.versions.get(number=2).delete()
    assert PromptVersionFactory(prompt=prompt).number == 4
    assert PromptVersionFactory.build().number == 1


def test_prompt_version_number_is_unique_per_prompt_and_positive():
    version = PromptVersionFactory()
    raises_integrity_error(lambda: PromptVersion.objects.create(prompt=version.prompt, number=1))
    raises_integrity_error(lambda: PromptVersion.objects.create(prompt=version.prompt, number=0))


def test_saving_an_existing_prompt_version_raises():
    version = PromptVersionFactory(changelog="First version")
    version.changelog = "Edited"
    with pytest.raises(ValidationError):
        version.save()
    version.refresh_from_db()
    assert version.changelog == "First version"


def test_a_new_instance_cannot_overwrite_an_existing_version():
    version = PromptVersionFactory(messages=[{"role": "user", "content": "original"}])
    impostor = PromptVersion(
        pk=version.pk,
        prompt=version.prompt,
        number=version.number,
        created_at=version.created_at,
        messages=[{"role": "user", "content": "x"}],
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        impostor.save()
    version.refresh_from_db()
    assert version.messages == [{"role": "user", "content": "original"}]


def test_updating_prompt_versions_through_a_queryset_raises():
    version = PromptVersionFactory(model="gpt-4o-mini")
    with pytest.raises(ValidationError):
        PromptVersion.objects.filter(pk=version.pk).update(model="gpt-4o")
    with pytest.raises(ValidationError):
        version.prompt.versions.update(model="gpt-4o")
    version.refresh_from_db()
    assert version.model == "gpt-4o-mini"


def test_prompt_versions_can_be_created_and_deleted():
    version = PromptVersionFactory()
    PromptVersionFactory(prompt=version.prompt)
    version.delete()
    assert PromptVersion.objects.count() == 1


# -- cost configs -------------------------------------------------------------------------------


def test_cost_config_prices_cannot_be_negative():
    raises_integrity_error(lambda: CostConfigFactory(input_price_per_mtok=Decimal("-1")))
    raises_integrity_error(lambda: CostConfigFactory(cached_input_price_per_mtok=Decimal("-0.01")))
    CostConfigFactory(cached_input_price_per_mtok=None)


def test_cost_config_must_end_after_it_starts():
    start = timezone.now()
    raises_integrity_error(lambda: CostConfigFactory(effective_from=start, effective_until=start))
    CostConfigFactory(effective_from=start, effective_until=start + dt.timedelta(days=1))


def test_cost_config_match_pattern_must_be_a_regex():
    config = CostConfigFactory.build(match_pattern="gpt-4o(-mini")
    with pytest.raises(ValidationError) as excinfo:
        config.full_clean()
    assert "match_pattern" in excinfo.value.message_dict
    CostConfigFactory.build(match_pattern=r"^gpt-4o(-mini)?(-\d{4}-\d{2}-\d{2})?$").full_clean()


# -- batches ------------------------------------------------------------------------------------


def test_batch_provider_id_is_unique_once_set():
    BatchFactory(provider_batch_id="")
    BatchFactory(provider_batch_id="")
    BatchFactory(provider_batch_id="batch_abc")
    BatchFactory(provider_batch_id="batch_abc", provider="azure")
    raises_integrity_error(lambda: BatchFactory(provider_batch_id="batch_abc"))


def test_deleting_a_batch_keeps_its_requests():
    batch = BatchFactory(submitted=True)
    request = BatchRequestFactory(batch=batch, status=BatchRequest.Status.SUBMITTED)
    batch.delete()
    request.refresh_from_db()
    assert request.batch is None
    assert Batch.objects.count() == 0


# -- budgets ------------------------------------------------------------------------------------


def test_rolling_budget_needs_days():
    raises_integrity_error(lambda: BudgetFactory(period=Budget.Period.ROLLING, period_days=None))
    raises_integrity_error(lambda: BudgetFactory(period=Budget.Period.ROLLING, period_days=0))
    BudgetFactory(period=Budget.Period.ROLLING, period_days=3)


def test_budget_scope_value_matches_scope():
    raises_integrity_error(lambda: BudgetFactory(scope=Budget.Scope.GLOBAL, scope_value="SearchAgent"))
    raises_integrity_error(lambda: BudgetFactory(scope=Budget.Scope.AGENT, scope_value=""))
    BudgetFactory(scope=Budget.Scope.AGENT, scope_value="SearchAgent")


def test_budget_limit_and_alert_ranges():
    raises_integrity_error(lambda: BudgetFactory(limit_usd=Decimal("-1")))
    raises_integrity_error(lambda: BudgetFactory(alert_at_percentage=0))
    raises_integrity_error(lambda: BudgetFactory(alert_at_percentage=101))
    BudgetFactory(alert_at_percentage=100, limit_usd=Decimal("0"))


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"period": "rolling", "period_days": None}, "period_days"),
        ({"scope": "global", "scope_value": "acme"}, "scope_value"),
        ({"scope": "tenant", "scope_value": ""}, "scope_value"),
    ],
)
def test_budget_clean_explains_the_problem(fields, error_field):
    budget = BudgetFactory.build(**fields)
    with pytest.raises(ValidationError) as excinfo:
        budget.full_clean()
    assert error_field in excinfo.value.message_dict


def spend(cost: str, tokens: int, **fields) -> Execution:
    """An execution with this spend; the budget counters are rebuilt from the executions table."""
    execution = ExecutionFactory(
        input_cost=Decimal(cost), output_cost=Decimal("0"), input_tokens=tokens, output_tokens=0, **fields
    )
    rebuild_counters()
    return execution


def test_daily_agent_budget_figures():
    today = local_today()
    spend("0.50", 1000, agent_type="SearchAgent", started_at=local_datetime(today, 0, 0, 0))
    spend("0.25", 500, agent_type="SearchAgent", started_at=timezone.now())
    spend("5.00", 9000, agent_type="WriterAgent", started_at=timezone.now())
    spend("3.00", 7000, agent_type="SearchAgent", started_at=local_datetime(today) - dt.timedelta(seconds=1))
    budget = BudgetFactory(
        scope=Budget.Scope.AGENT,
        scope_value="SearchAgent",
        period=Budget.Period.DAILY,
        limit_usd=Decimal("2.00"),
    )

    assert budget.current_spend() == Decimal("0.75")
    assert budget.current_tokens() == 1500
    assert budget.percent_used() == 37.5
    assert budget.remaining() == Decimal("1.25")


def test_budget_over_its_limit():
    spend("2.50", 100, tenant_id="acme")
    spend("7.00", 100, tenant_id="beta")
    budget = BudgetFactory(scope=Budget.Scope.TENANT, scope_value="acme", limit_usd=Decimal("1.00"))

    assert budget.current_spend() == Decimal("2.50")
    assert budget.percent_used() == 250.0
    assert budget.remaining() == Decimal("0")


def test_percent_used_rounds_to_two_places():
    spend("1.00", 10)
    budget = BudgetFactory(limit_usd=Decimal("3.00"))
    assert budget.percent_used() == 33.33
    assert budget.remaining() == Decimal("2.00")


def test_budget_with_no_spend():
    budget = BudgetFactory(limit_usd=Decimal("10"))
    assert budget.current_spend() == Decimal("0")
    assert budget.current_tokens() == 0
    assert budget.percent_used() == 0.0
    assert budget.remaining() == Decimal("10")


def test_zero_limit_budget():
    spend("1.00", 10)
    budget = BudgetFactory(limit_usd=Decimal("0"))
    assert budget.current_spend() == Decimal("1.00")
    assert budget.remaining() == Decimal("0")


def test_model_budget_counts_the_answering_model():
    # Rows without spans: their spend belongs to the model that answered (chosen_model_id), not to
    # the one asked for (section 15).
    spend("1.00", 100, model_id="gpt-4o", chosen_model_id="gpt-4o")
    spend("2.00", 200, model_id="gpt-4o", chosen_model_id="claude-sonnet-4")
    spend("4.00", 400, model_id="claude-sonnet-4", chosen_model_id="gpt-4o")
    spend("8.00", 800, model_id="claude-sonnet-4", chosen_model_id="claude-sonnet-4")
    budget = BudgetFactory(scope=Budget.Scope.MODEL, scope_value="gpt-4o", limit_usd=Decimal("10"))
    assert budget.current_spend() == Decimal("5.00")
    assert budget.current_tokens() == 500


def test_global_monthly_budget_counts_this_month_only(paris):
    first = local_today().replace(day=1)
    spend("1.10", 100, agent_type="SearchAgent", started_at=local_datetime(first, 0, 0, 0))
    spend("2.20", 200, agent_type="WriterAgent", tenant_id="acme", started_at=timezone.now())
    spend("40.00", 4000, started_at=local_datetime(first) - dt.timedelta(seconds=1))
    budget = BudgetFactory(limit_usd=Decimal("6.60"))

    assert budget.current_spend() == Decimal("3.30")
    assert budget.current_tokens() == 300
    assert budget.percent_used() == 50.0
    assert budget.remaining() == Decimal("3.30")


def test_weekly_budget_starts_on_monday():
    today = local_today()
    monday = today - dt.timedelta(days=today.weekday())
    spend("1.00", 100, started_at=local_datetime(monday, 0, 0, 0))
    spend("9.00", 900, started_at=local_datetime(monday) - dt.timedelta(seconds=1))
    budget = BudgetFactory(period=Budget.Period.WEEKLY, limit_usd=Decimal("4"))
    assert budget.current_spend() == Decimal("1.00")
    assert budget.percent_used() == 25.0


def test_rolling_budget_counts_the_last_n_days():
    """Rolling N days: today and the N - 1 local days before it."""
    yesterday = local_today() - dt.timedelta(days=1)
    spend("1.50", 150, started_at=local_datetime(yesterday, 0, 0, 0))
    spend("0.50", 50, started_at=timezone.now())
    spend("9.00", 900, started_at=local_datetime(yesterday) - dt.timedelta(seconds=1))
    budget = BudgetFactory(period=Budget.Period.ROLLING, period_days=2, limit_usd=Decimal("8"))
    assert budget.current_spend() == Decimal("2.00")
    assert budget.current_tokens() == 200
    assert budget.percent_used() == 25.0
    assert budget.remaining() == Decimal("6.00")


def test_budget_counts_spend_recorded_before_it_was_created():
    earlier = spend("1.00", 10, started_at=timezone.now() - dt.timedelta(seconds=30))
    budget = BudgetFactory(period=Budget.Period.ROLLING, period_days=1, limit_usd=Decimal("2"))
    assert budget.created_at > earlier.started_at
    assert budget.current_spend() == Decimal("1.00")
