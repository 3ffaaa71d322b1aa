"""Money is rounded where it is shown: every amount in the analytics results is a Decimal of 8 places,
and the API's answers and exports write at most 8 places, never in exponent form (``0E-8``).

The costs below are chosen so that their sums carry long tails where the database adds decimals in
binary (SQLite), and one execution costs nothing (Python writes a zero of 8 places as ``0E-8``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal
from typing import Any

import pytest

from llm_agents.analytics import overview
from llm_agents.models import Execution
from llm_agents.periods import resolve_period
from tests.api_support import API, body
from tests.factories import ExecutionFactory, PromptVersionFactory

pytestmark = pytest.mark.django_db

COSTS = ["0.00001575", "0.00003150", "0.00000001", "0", "0.1", "0.2"]
FIXED_MONEY = re.compile(r"^-?\d+(\.\d{1,8})?$")
MONEY_FIELDS = {
    "cost",
    "total_cost",
    "avg_cost",
    "input_cost",
    "output_cost",
    "month_to_date",
    "projected_month_total",
    "daily_average",
    "projected_monthly_cost",
}


@pytest.fixture
def executions() -> None:
    version = PromptVersionFactory()
    for index, cost in enumerate(COSTS):
        ExecutionFactory(
            agent_type=("SearchAgent", "SupportAgent")[index % 2],
            agent_version="1.0",
            model_id=("gpt-4o", "gpt-4o-mini")[index % 2],
            input_cost=Decimal(cost),
            output_cost=Decimal("0"),
            tenant_id="acme",
            prompt_version=version,
        )


def amounts(result: Any) -> list[Decimal]:
    """Every Decimal in an analytics result (they are all amounts of money)."""
    if isinstance(result, Decimal):
        return [result]
    if isinstance(result, dict):
        return [amount for value in result.values() for amount in amounts(value)]
    if isinstance(result, list | tuple):
        return [amount for value in result for amount in amounts(value)]
    return []


ANALYTICS = {
    "summary": lambda q: q.summary(),
    "daily_report": lambda q: q.daily_report(),
    "cost_by_agent": lambda q: q.cost_by_agent("today"),
    "cost_by_model": lambda q: q.cost_by_model("today"),
    "stats_for": lambda q: q.stats_for("SearchAgent"),
    "trend_analysis": lambda q: q.trend_analysis(days=3),
    "timeline": lambda q: q.timeline("last_7_days"),
    "summary_by": lambda q: q.summary_by("agent_type"),
    "compare_versions": lambda q: q.compare_versions("SearchAgent", "1.0", "2.0"),
    "cost_forecast": lambda q: q.cost_forecast(),
    "by_prompt_version": lambda q: q.by_prompt_version(),
    "stats_by_agent": lambda q: q.stats_by_agent(),
    "cost_summary(model)": lambda q: q.cost_summary("model"),
    "cost_summary(agent)": lambda q: q.cost_summary("agent"),
    "cost_summary(tenant)": lambda q: q.cost_summary("tenant"),
    "cost_summary(day)": lambda q: q.cost_summary("day"),
    "compare_models": lambda q: q.compare_models(),
    "overview": lambda q: overview(q, resolve_period("today")),
}


@pytest.mark.parametrize("method", list(ANALYTICS))
def test_analytics_amounts_are_decimals_of_8_places(executions, method):
    """Every amount has 8 places, but zero, which is plain 0 (zero to 8 places prints as 0E-8)."""
    found = amounts(ANALYTICS[method](Execution.objects.all()))
    assert found, "the result should hold amounts"
    assert [amount.as_tuple().exponent for amount in found] == [-8 if amount else 0 for amount in found]
    assert all(str(amount) == "0" for amount in found if not amount), found


def test_sums_are_exact_to_the_cent_fraction(executions):
    assert Execution.objects.summary()["total_cost"] == Decimal("0.30004726")
    assert Execution.objects.cost_by_agent("today") == [
        {"agent_type": "SupportAgent", "total_cost": Decimal("0.20003150"), "executions": 3},
        {"agent_type": "SearchAgent", "total_cost": Decimal("0.10001576"), "executions": 3},
    ]


def money_values(answer: Any) -> list[Any]:
    """The values of every money field of an API answer."""
    if isinstance(answer, dict):
        return [
            found
            for key, value in answer.items()
            for found in ([value] if key in MONEY_FIELDS else money_values(value))
        ]
    if isinstance(answer, list):
        return [found for value in answer for found in money_values(value)]
    return []


@pytest.mark.parametrize(
    "path",
    [
        "overview/",
        "agents/",
        "agents/SearchAgent/stats/",
        "costs/summary/",
        "costs/summary/?group_by=day",
        "costs/forecast/",
        "trends/",
        "comparison/models/",
        "comparison/versions/?agent_type=SearchAgent&versions=1.0",
        "executions/",
    ],
)
def test_api_answers_write_money_in_fixed_notation(executions, staff_client, path):
    money = money_values(staff_client.get(API + path).json())
    assert money
    assert [value for value in money if not (isinstance(value, str) and FIXED_MONEY.match(value))] == []


def test_csv_export_writes_money_in_fixed_notation(executions, staff_client):
    rows = list(csv.DictReader(io.StringIO(body(staff_client.get(API + "export/")).decode())))
    costs = [row[column] for row in rows for column in ("input_cost", "output_cost", "total_cost")]
    assert "0.00000000" in costs
    assert [cost for cost in costs if not FIXED_MONEY.match(cost)] == []


def test_json_export_writes_money_in_fixed_notation(executions, staff_client):
    rows = json.loads(body(staff_client.get(API + "export/", {"format": "json"})))
    costs = [row[column] for row in rows for column in ("input_cost", "output_cost", "total_cost")]
    assert "0.00000000" in costs
    assert [cost for cost in costs if not FIXED_MONEY.match(cost)] == []
