"""Prompt-version performance (SPEC §21): executions, success rate, average cost and p50/p95 latency
of the root executions that used each version, for a period (default all time) — from
``by_prompt_version()``, on the prompt's admin page and in ``prompts/{slug}/versions/``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from llm_agents import scores
from llm_agents.models import Execution
from tests.api_support import API, TENANCY
from tests.factories import ExecutionFactory, PromptFactory

pytestmark = pytest.mark.django_db

# by_prompt_version(): percentile_cont in the same query on PostgreSQL, two window queries elsewhere; then
# one query for the score means.
PERFORMANCE_QUERIES = 2 if connection.vendor == "postgresql" else 4


@pytest.fixture
def prompt():
    prompt = PromptFactory(slug="greeting")
    for content in ("one", "two", "three"):
        prompt.update_content([{"role": "system", "content": content}])
    return prompt


@pytest.fixture
def used(prompt):
    """Version 1: four root executions (one failed) and a nested one; version 2 one old execution;
    version 3 none."""
    v1, v2, _ = prompt.versions.order_by("number")
    now = timezone.now()
    roots = [
        ExecutionFactory(prompt_version=v1, duration_ms=ms, total_cost=cost, status=status, started_at=now)
        for ms, cost, status in (
            (100, "0.001", "success"),
            (200, "0.002", "success"),
            (300, "0.003", "success"),
            (1000, "0.006", "error"),
        )
    ]
    ExecutionFactory(parent=roots[0], prompt_version=v1, duration_ms=99_999, total_cost="9")  # nested
    ExecutionFactory(prompt_version=v2, duration_ms=500, started_at=now - dt.timedelta(days=40))
    return roots


def test_by_prompt_version_counts_root_executions(prompt, used, django_assert_num_queries):
    with django_assert_num_queries(PERFORMANCE_QUERIES):
        rows = Execution.objects.by_prompt_version()
    assert [(row["prompt"], row["version"]) for row in rows] == [("greeting", 1), ("greeting", 2)]
    first = rows[0]
    assert first["executions"] == 4  # the nested execution is part of its root, not counted again
    assert first["success_rate"] == 75.0
    assert first["avg_cost"] == Decimal("0.00300000")
    assert first["avg_duration_ms"] == 400.0
    assert first["p50_duration_ms"] == 250.0  # continuous: halfway between 200 and 300
    assert first["p95_duration_ms"] == 895.0  # 300 + 0.85 × (1000 − 300)
    assert first["scores"] == {}
    assert Execution.objects.for_period("30d").by_prompt_version()[0]["executions"] == 4
    assert [row["version"] for row in Execution.objects.for_period("30d").by_prompt_version()] == [1]


def test_performance_carries_the_score_means_of_each_version(prompt, used):
    scores.add(used[0], "helpfulness", 0.5)
    scores.add(used[1], "helpfulness", 1.0)
    scores.add(used[1], "resolved", True)
    scores.add(used[2], "resolved", False)
    rows = {row["version"]: row for row in Execution.objects.by_prompt_version()}
    assert rows[1]["scores"] == {"helpfulness": 0.75, "resolved": 0.5}
    assert rows[2]["scores"] == {}


def test_by_prompt_version_with_no_executions_is_one_empty_list(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert Execution.objects.by_prompt_version() == []


# -- the API --------------------------------------------------------------------------------------


def versions(client, **params):
    response = client.get(API + "prompts/greeting/versions/", params)
    assert response.status_code == 200, response.json()
    return {row["number"]: row for row in response.json()["results"]}


def test_api_versions_carry_their_performance(staff_client, prompt, used):
    rows = versions(staff_client)
    assert list(rows) == [3, 2, 1]  # newest first, as before
    assert {
        key: rows[1][key]
        for key in ("executions", "success_rate", "avg_cost", "p50_duration_ms", "p95_duration_ms", "scores")
    } == {
        "executions": 4,
        "success_rate": 75.0,
        "avg_cost": "0.00300000",
        "p50_duration_ms": 250.0,
        "p95_duration_ms": 895.0,
        "scores": {},
    }
    assert rows[2]["executions"] == 1 and rows[2]["p50_duration_ms"] == 500.0
    assert rows[3] | {"messages": None} == rows[3] | {
        "messages": None,
        "executions": 0,
        "success_rate": 0.0,
        "avg_cost": "0.00000000",
        "p50_duration_ms": None,
        "p95_duration_ms": None,
        "scores": {},
    }
    assert rows[3]["messages"] == [{"role": "system", "content": "three"}]


def test_api_versions_for_a_period(staff_client, prompt, used):
    assert versions(staff_client, period="30d")[2]["executions"] == 0
    assert versions(staff_client, period="30d")[1]["executions"] == 4
    today = timezone.localdate()
    old = today - dt.timedelta(days=40)
    assert versions(staff_client, start_date=old.isoformat(), end_date=old.isoformat())[2]["executions"] == 1
    response = staff_client.get(API + "prompts/greeting/versions/", {"period": "fortnight"})
    assert response.status_code == 400 and "period" in response.json()


def test_api_versions_queries_do_not_grow_with_versions(staff_client, prompt, used):
    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            versions(staff_client)
        return len(captured)

    before = count()
    for n in range(5):
        prompt.update_content([{"role": "system", "content": f"more {n}"}])
        ExecutionFactory(prompt_version=prompt.current_version)
    assert count() == before


@override_settings(LLM_AGENTS=TENANCY)
def test_api_versions_count_the_tenants_executions_only(staff_client, prompt):
    version = prompt.versions.get(number=1)
    ExecutionFactory(prompt_version=version, tenant_id="acme")
    ExecutionFactory(prompt_version=version, tenant_id="globex")
    response = staff_client.get(API + "prompts/greeting/versions/", headers={"X-Tenant": "acme"})
    assert {row["number"]: row["executions"] for row in response.json()["results"]}[1] == 1


# -- the admin ------------------------------------------------------------------------------------


def figures(html: str, number: int) -> dict[str, str]:
    import re

    row = re.search(rf'<tr data-version="{number}">(.*?)</tr>', html, re.S)
    assert row, html
    cells = re.findall(r'data-figure="(\w+)">(.*?)</td>', row.group(1), re.S)
    return {name: re.sub(r"<[^>]+>", "", value).strip() for name, value in cells}


def test_admin_prompt_page_shows_each_versions_performance(staff_client, prompt, used):
    url = reverse("admin:llm_agents_prompt_change", args=[prompt.pk])
    html = staff_client.get(url).content.decode()
    assert figures(html, 1) == {
        "executions": "4",
        "success_rate": "75.0 %",
        "avg_cost": "$0.0030",
        "p50_duration_ms": "250 ms",
        "p95_duration_ms": "895 ms",
        "scores": "–",
    }
    assert figures(html, 2)["executions"] == "1"
    assert figures(html, 3) == {
        "executions": "0",
        "success_rate": "–",
        "avg_cost": "–",
        "p50_duration_ms": "–",
        "p95_duration_ms": "–",
        "scores": "–",
    }
    scores.add(used[0], "helpfulness", 0.5)
    scores.add(used[1], "helpfulness", 1.0)
    scored = staff_client.get(url).content.decode()
    assert figures(scored, 1)["scores"] == "helpfulness 0.75"
    version = prompt.versions.get(number=1)
    link = reverse("admin:llm_agents_execution_changelist") + f"?root=yes&amp;prompt_version={version.pk}"
    assert link in html
    listed = staff_client.get(link.replace("&amp;", "&")).context["cl"]
    assert listed.result_count == 4  # the link lists what the figure counts

    recent = staff_client.get(url, {"period": "30d"}).content.decode()
    assert figures(recent, 1)["executions"] == "4" and figures(recent, 2)["executions"] == "0"
    assert 'aria-current="page"><strong>30 days' in recent


def test_admin_prompt_page_queries_do_not_grow_with_versions(staff_client, prompt, used):
    url = reverse("admin:llm_agents_prompt_change", args=[prompt.pk])

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(url).status_code == 200
        return len(captured)

    before = count()
    for n in range(5):
        prompt.update_content([{"role": "system", "content": f"more {n}"}])
        ExecutionFactory(prompt_version=prompt.current_version, duration_ms=10 * n)
    assert count() == before
