"""``export/?format=focus``: the FinOps FOCUS 1.x cost columns, one row per root execution (SPEC sections
19 and 21), streamed with the filters and tenant scope of the other export formats."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from llm_agents import trace
from llm_agents.api.export import FOCUS_COLUMNS
from llm_agents.models import CostConfig, Execution
from llm_agents.testing import fake_llm
from tests.api_support import API, TENANCY, body
from tests.factories import ExecutionFactory
from tests.test_agents import SearchAgent

pytestmark = pytest.mark.django_db

HEADER = (
    "BilledCost,EffectiveCost,ListCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,"
    "ServiceName,ProviderName,ResourceId,ResourceType,ConsumedQuantity,ConsumedUnit,Tags"
)


def focus(client, headers=None, **params) -> list[dict[str, str]]:
    response = client.get(API + "export/", {"format": "focus", **params}, headers=headers or {})
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="executions-focus.csv"'
    text = body(response).decode()
    assert text.splitlines()[0] == HEADER
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_the_header_is_the_focus_columns_exactly(staff_client):
    assert focus(staff_client) == []
    assert ",".join(FOCUS_COLUMNS) == HEADER


def test_a_known_executions_row(staff_client):
    started = dt.datetime(2026, 3, 4, 10, 15, 30, 250000, tzinfo=dt.UTC)
    execution = ExecutionFactory(
        agent_type="SupportAgent",
        model_id="gpt-4o-mini",
        provider="openai",
        tenant_id="acme",
        user_id="u-7",
        tags=["beta", "web"],
        input_tokens=1200,
        output_tokens=300,
        input_cost=Decimal("0.00018000"),
        output_cost=Decimal("0.00018000"),
        started_at=started,
        duration_ms=850,
        completed_at=started + dt.timedelta(milliseconds=850),
    )
    [row] = focus(staff_client)
    assert row == {
        "BilledCost": "0.00036000",
        "EffectiveCost": "0.00036000",
        "ListCost": "0.00036000",
        "BillingCurrency": "USD",
        "ChargePeriodStart": "2026-03-04T10:15:30Z",
        "ChargePeriodEnd": "2026-03-04T10:15:32Z",  # 10:15:31.100, up to the next whole second
        "ChargeCategory": "Usage",
        "ServiceName": "django-llm-agents",
        "ProviderName": "openai",
        "ResourceId": str(execution.id),
        "ResourceType": "Agent call",
        "ConsumedQuantity": "1500",
        "ConsumedUnit": "Tokens",
        "Tags": row["Tags"],
    }
    assert json.loads(row["Tags"]) == {
        "agent_type": "SupportAgent",
        "model_id": "gpt-4o-mini",
        "chosen_model_id": "gpt-4o-mini",
        "tenant_id": "acme",
        "user_id": "u-7",
        "beta": True,
        "web": True,
    }


def test_a_running_execution_ends_its_charge_period_at_its_start_and_blanks_are_null(staff_client):
    started = dt.datetime(2026, 3, 4, 10, 15, 30, tzinfo=dt.UTC)
    ExecutionFactory(status=Execution.Status.RUNNING, started_at=started, duration_ms=None, tags=[])
    [row] = focus(staff_client)
    assert row["ChargePeriodStart"] == row["ChargePeriodEnd"] == "2026-03-04T10:15:30Z"
    tags = json.loads(row["Tags"])
    assert tags["tenant_id"] is None and tags["user_id"] is None and len(tags) == 5


def test_money_has_at_most_8_places_and_never_an_exponent(staff_client):
    ExecutionFactory(input_cost=Decimal("0"), output_cost=Decimal("0"), input_tokens=0, output_tokens=0)
    ExecutionFactory(input_cost=Decimal("0.00000001"), output_cost=Decimal("0"))
    ExecutionFactory(input_cost=Decimal("12345.5"), output_cost=Decimal("0.12345678"))
    costs = sorted(row["BilledCost"] for row in focus(staff_client))
    assert costs == ["0.00000000", "0.00000001", "12345.62345678"]


def test_a_fallback_nested_in_a_trace_is_one_row_of_its_root(staff_client):
    for model, price in (("gpt-4o", "2.5"), ("gpt-4o-mini", "0.15")):
        CostConfig.objects.create(model=model, input_price_per_mtok=Decimal(price),
                                  output_price_per_mtok=Decimal(price), effective_from="2020-01-01T00:00Z")  # fmt: skip
    with fake_llm() as llm:
        for _ in range(3):
            llm.fail("rate_limit", model="gpt-4o")
        llm.respond("from mini", model="gpt-4o-mini", input_tokens=100_000, output_tokens=100_000)
        with trace("Pipeline", user_id="u-7", tags=["nightly"]):
            result = SearchAgent.call(query="x")
    root = Execution.objects.get(parent=None)
    nested = result.execution
    assert nested.parent_id == root.id and nested.chosen_model_id == "gpt-4o-mini"
    [row] = focus(staff_client)  # the nested agent call is in its root's row, not a row of its own
    assert row["ResourceId"] == str(root.id) and row["ResourceType"] == "Trace"
    assert row["BilledCost"] == "0.03000000" and row["ConsumedQuantity"] == "200000"
    assert row["ProviderName"] == "openai"  # the trace asked no model: the provider of the one that answered
    assert json.loads(row["Tags"]) == {
        "agent_type": "Pipeline",
        "model_id": None,
        "chosen_model_id": "gpt-4o-mini",
        "tenant_id": None,
        "user_id": "u-7",
        "nightly": True,
    }
    # The agent call on its own: the model it asked for and the one that answered.
    nested.parent, nested.root_id = None, None
    nested.save(update_fields=["parent", "root_id"])
    root.delete()
    [row] = focus(staff_client)
    assert row["ResourceId"] == str(nested.id) and row["ResourceType"] == "Agent call"
    tags = json.loads(row["Tags"])
    assert (tags["model_id"], tags["chosen_model_id"], tags["agent_type"]) == (
        "gpt-4o",
        "gpt-4o-mini",
        "SearchAgent",
    )


def test_a_tag_named_like_a_named_key_is_left_out(staff_client):
    ExecutionFactory(agent_type="SupportAgent", tags=["agent_type", "vip"])
    [row] = focus(staff_client)
    tags = json.loads(row["Tags"])
    assert tags["agent_type"] == "SupportAgent" and tags["vip"] is True


def test_formula_cells_are_neutralised(staff_client):
    ExecutionFactory(provider="=HYPERLINK(1)", agent_type="@SUM(A1)")
    [row] = focus(staff_client)
    assert row["ProviderName"] == "'=HYPERLINK(1)"
    assert json.loads(row["Tags"])["agent_type"] == "@SUM(A1)"  # inside a JSON object: the cell starts with {


def test_the_filters_and_the_period_are_those_of_the_other_formats(staff_client):
    keep = ExecutionFactory(agent_type="Keep", status=Execution.Status.ERROR)
    ExecutionFactory(agent_type="Keep", started_at=timezone.now() - dt.timedelta(days=10))
    ExecutionFactory(agent_type="Drop", status=Execution.Status.ERROR)
    rows = focus(staff_client, agent_type="Keep", status="error", period="7d")
    assert [row["ResourceId"] for row in rows] == [str(keep.id)]
    assert len(focus(staff_client, agent_type="Keep")) == 2
    assert focus(staff_client, min_cost="1") == []


def test_rows_come_newest_first(staff_client):
    now = timezone.now()
    made = [ExecutionFactory(started_at=now - dt.timedelta(seconds=n)) for n in range(3)]
    rows = focus(staff_client)
    assert [row["ResourceId"] for row in rows] == [str(execution.id) for execution in made]


def test_a_tenant_sees_only_its_rows(staff_client):
    acme = ExecutionFactory(tenant_id="acme")
    ExecutionFactory(tenant_id="globex")
    with override_settings(LLM_AGENTS=TENANCY):
        rows = focus(staff_client, headers={"X-Tenant": "acme"})
    assert [row["ResourceId"] for row in rows] == [str(acme.id)]


def test_an_unknown_format_is_a_400_naming_it(staff_client):
    ExecutionFactory()
    response = staff_client.get(API + "export/", {"format": "focus2"})
    assert response.status_code == 400
    assert "format" in response.json() and "focus2" in str(response.json()["format"])
    assert "focus" in str(response.json()["format"])  # listed among the valid values
