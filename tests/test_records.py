"""Execution records: one way to begin them, typed attributes, and rows that match them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings

from llm_agents.models import Dataset, EvalRun, Execution, PromptExperiment
from llm_agents.tracking import lifecycle
from llm_agents.tracking.records import EXECUTION_VALUES

from .factories import PromptVersionFactory

pytestmark = pytest.mark.django_db


def test_begin_execution_refuses_a_value_for_no_execution_field():
    outer = lifecycle.begin_execution("trace", "outer", status="running")
    with pytest.raises(TypeError, match="respons"):
        lifecycle.begin_execution("agent", "Inner", parent=outer, respons="a typo")
    with pytest.raises(TypeError, match="written"):
        lifecycle.begin_execution("agent", "Inner", parent=outer, written=True)  # bookkeeping, not a column
    assert outer.children == []
    assert list(Execution.objects.values_list("agent_type", flat=True)) == ["outer"]


def column_values() -> dict[str, object]:
    """A value for every Execution column begin_execution takes (each unlike the column's default)."""
    return {
        "status": "running",
        "agent_version": "7",
        "model_id": "gpt-4o",
        "chosen_model_id": "gpt-4o-mini",
        "provider": "openai",
        "temperature": 0.25,
        "finish_reason": "length",
        "input_tokens": 120,
        "output_tokens": 40,
        "cached_tokens": 20,
        "cache_write_tokens": 10,
        "reasoning_tokens": 5,
        "total_tokens": 160,
        "input_cost": Decimal("0.00012"),
        "output_cost": Decimal("0.00004"),
        "total_cost": Decimal("0.00016"),
        "pricing_source": "config",
        "duration_ms": 1,
        "time_to_first_token_ms": 90,
        "completed_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        "parameters": {"query": "weather"},
        "system_prompt": "Be brief.",
        "user_prompt": "Rain tomorrow?",
        "response": "Yes.",
        "error_class": "",
        "error_message": "",
        "metadata": {"team": "search"},
        "streaming": True,
        "tool_calls": [{"id": "c1", "name": "forecast", "arguments": {}, "result": "rain"}],
        "tool_calls_count": 1,
        "attempts": [{"model_id": "gpt-4o", "status": "success", "error_message": ""}],
        "attempts_count": 1,
        "fallback_chain": ["gpt-4o", "gpt-4o-mini"],
        "fallback_reason": "RateLimitError: slow down",
        "cache_hit": True,
        "retryable": True,
        "rate_limited": True,
        "tenant_id": "acme",
        "prompt_version_id": PromptVersionFactory().pk,
        "session_id": "conv-42",
        "user_id": "u-7",
        "tags": ["beta", "mobile"],
        "eval_run_id": EvalRun.objects.create(
            dataset=Dataset.objects.create(slug="records"), agent_type="Forecaster", target="tests.Forecaster"
        ).pk,
        "experiment_id": experiment().pk,
        "subject_type_id": ContentType.objects.get_for_model(Dataset).pk,
        "subject_id": "records",
    }


def experiment():
    prompt = PromptVersionFactory().prompt
    prompt.update_content([{"role": "user", "content": "another version"}])
    return PromptExperiment.objects.create(
        prompt=prompt, name="records", metric="cost",
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )  # fmt: skip


@pytest.mark.parametrize("mode", [{}, {"ASYNC_LOGGING": True}], ids=["sync", "async"])
def test_every_column_a_record_holds_reaches_its_row(mode):
    values = column_values()
    assert values.keys() == EXECUTION_VALUES  # a value for each column, so none is forgotten
    with override_settings(LLM_AGENTS=mode):
        outer = lifecycle.begin_execution("trace", "outer")
        record = lifecycle.begin_execution("agent", "Forecaster", parent=outer, **values)
        lifecycle.complete(record)
        lifecycle.complete(outer)
    row = Execution.objects.get(pk=record.id)
    assert (row.kind, row.agent_type) == ("agent", "Forecaster")
    assert (row.parent_id, row.root_id) == (outer.id, outer.id)
    assert row.started_at == record.started_at
    expected = {**values, "status": "success", "completed_at": record.completed_at,
                "duration_ms": record.duration_ms}  # fmt: skip
    assert {name: getattr(row, name) for name in EXECUTION_VALUES} == expected


def test_a_running_row_is_completed_with_what_the_record_gathered():
    record = lifecycle.begin_execution("agent", "Forecaster", status="running", model_id="gpt-4o")
    assert Execution.objects.get(pk=record.id).status == "running"
    record.response, record.finish_reason = "Sunny.", "stop"
    record.add_usage(input_tokens=12, output_tokens=3, input_cost=Decimal("0.00001"))
    lifecycle.complete(record, error=TimeoutError("too slow"))
    row = Execution.objects.get(pk=record.id)
    assert (row.status, row.error_class, row.error_message) == ("timeout", "TimeoutError", "too slow")
    assert (row.model_id, row.response, row.finish_reason) == ("gpt-4o", "Sunny.", "stop")
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (12, 3, 15)
    assert (row.input_cost, row.total_cost) == (Decimal("0.00001"), Decimal("0.00001"))
    assert (row.tool_calls, row.metadata, row.cache_hit, row.tenant_id) == ([], {}, False, None)
