"""executions/, executions/{id}/ and export/."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from llm_agents.models import Execution
from tests.api_support import API, body
from tests.factories import ExecutionFactory, SpanFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db

# A request as a logged-in user costs two queries (session, user) before the view's own.
AUTH_QUERIES = 2


def get(client, path, **params):
    return client.get(API + path, params)


# -- executions/ ------------------------------------------------------------------------------


def test_list_shape_and_default_order(staff_client):
    older = ExecutionFactory(started_at=timezone.now() - dt.timedelta(hours=2))
    newer = ExecutionFactory(started_at=timezone.now() - dt.timedelta(hours=1))
    response = get(staff_client, "executions/")
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"count", "next", "previous", "results"}
    assert data["count"] == 2
    assert [row["id"] for row in data["results"]] == [str(newer.id), str(older.id)]
    row = data["results"][0]
    assert row["total_cost"] == "0.00036000"
    assert row["agent_type"] == "SupportAgent"
    assert "spans" not in row and "response" not in row


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "error"}, ["failed"]),
        ({"agent_type": "Searcher"}, ["searcher"]),
        ({"model_id": "gpt-4o"}, ["searcher"]),
        ({"tenant_id": "acme"}, ["tenant"]),
        ({"version": "2.0"}, ["v2"]),
        ({"streaming": "true"}, ["streaming"]),
        ({"cache_hit": "true"}, ["cached"]),
        ({"cache_hit": "false", "agent_type": "Searcher"}, ["searcher"]),
        ({"min_cost": "1"}, ["expensive"]),
        ({"max_cost": "0.0001"}, ["cached"]),
        ({"search": "quota"}, ["failed"]),
        ({"search": "ACME"}, ["tenant"]),
    ],
)
def test_filters(staff_client, params, expected):
    rows = {
        "plain": ExecutionFactory(),
        "failed": ExecutionFactory(failed=True, error_message="Out of quota"),
        "searcher": ExecutionFactory(agent_type="Searcher", model_id="gpt-4o"),
        "tenant": ExecutionFactory(tenant_id="acme"),
        "v2": ExecutionFactory(agent_version="2.0"),
        "streaming": ExecutionFactory(streaming=True),
        "cached": ExecutionFactory(cache_hit=True, input_cost=Decimal(0), output_cost=Decimal(0)),
        "expensive": ExecutionFactory(input_cost=Decimal("1.5")),
    }
    names = {str(execution.id): name for name, execution in rows.items()}
    response = get(staff_client, "executions/", **params)
    assert response.status_code == 200, response.content
    assert sorted(names[row["id"]] for row in response.json()["results"]) == sorted(expected)


def test_search_by_id(staff_client):
    target = ExecutionFactory()
    ExecutionFactory()
    results = get(staff_client, "executions/", search=str(target.id)).json()["results"]
    assert [row["id"] for row in results] == [str(target.id)]


def test_started_after_with_any_offset(staff_client):
    ExecutionFactory()
    assert get(staff_client, "executions/", started_after="2000-01-01T00:00:00+17:04").json()["count"] == 1
    assert get(staff_client, "executions/", started_after="5000-01-01T00:00:00-17:00").json()["count"] == 0


def test_started_after_and_before(staff_client):
    now = timezone.now()
    old = ExecutionFactory(started_at=now - dt.timedelta(days=3))
    ExecutionFactory(started_at=now)
    response = get(staff_client, "executions/", started_before=(now - dt.timedelta(days=1)).isoformat())
    assert [row["id"] for row in response.json()["results"]] == [str(old.id)]
    response = get(staff_client, "executions/", started_after=(now - dt.timedelta(days=1)).isoformat())
    assert str(old.id) not in [row["id"] for row in response.json()["results"]]


def test_period_and_dates(staff_client, paris):
    today = local_today()
    this_morning = ExecutionFactory(started_at=local_datetime(today, 0, 5))
    five_days_ago = ExecutionFactory(started_at=local_datetime(today - dt.timedelta(days=5), 12))
    ExecutionFactory(started_at=local_datetime(today - dt.timedelta(days=40), 12))
    ids = lambda response: sorted(row["id"] for row in response.json()["results"])  # noqa: E731
    assert get(staff_client, "executions/").json()["count"] == 3  # all time by default
    assert ids(get(staff_client, "executions/", period="today")) == [str(this_morning.id)]
    day = (today - dt.timedelta(days=5)).isoformat()
    assert ids(get(staff_client, "executions/", start_date=day, end_date=day)) == [str(five_days_ago.id)]


@pytest.mark.parametrize(
    "ordering", ["total_cost", "-total_cost", "duration_ms", "-duration_ms", "agent_type", "-started_at"]
)
def test_ordering(staff_client, ordering):
    for cost, duration, agent in ((3, 10, "b"), (1, 30, "c"), (2, 20, "a")):
        ExecutionFactory(input_cost=Decimal(cost), duration_ms=duration, agent_type=agent)
    field = ordering.lstrip("-")
    results = get(staff_client, "executions/", ordering=ordering).json()["results"]
    values = [row[field] if field != "total_cost" else Decimal(row[field]) for row in results]
    assert values == sorted(values, reverse=ordering.startswith("-"))


def test_pagination(staff_client):
    ExecutionFactory.create_batch(7)
    first = get(staff_client, "executions/", page_size=3).json()
    assert first["count"] == 7 and len(first["results"]) == 3 and first["previous"] is None
    assert "page=2" in first["next"]
    last = get(staff_client, "executions/", page_size=3, page=3).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert get(staff_client, "executions/", page_size=3, page="last").json() == last
    seen = {
        row["id"]
        for page in (1, 2, 3)
        for row in get(staff_client, "executions/", page_size=3, page=page).json()["results"]
    }
    assert len(seen) == 7
    assert len(get(staff_client, "executions/", page_size=500).json()["results"]) == 7
    with override_settings(LLM_AGENTS={"API_PAGE_SIZE": 2}):
        assert len(get(staff_client, "executions/").json()["results"]) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "finished"}, "status"),
        ({"ordering": "response"}, "ordering"),
        ({"streaming": "maybe"}, "streaming"),
        ({"cache_hit": "yes"}, "cache_hit"),
        ({"min_cost": "abc"}, "min_cost"),
        ({"max_cost": "1e400"}, "max_cost"),
        ({"started_after": "yesterday"}, "started_after"),
        ({"started_before": "0001-01-01T00:00:00+05:00"}, "started_before"),
        ({"period": "fortnight"}, "period"),
        ({"start_date": "2024-13-01", "end_date": "2024-12-01"}, "start_date"),
        ({"start_date": "2024-01-01"}, "end_date"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-01"}, "end_date"),
        ({"period": "7d", "start_date": "2024-01-01", "end_date": "2024-01-02"}, "period"),
        ({"page_size": "501"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page": "zero"}, "page"),
        ({"agent_type": "a\x00b"}, "agent_type"),
        ({"prompt_version": "897135651667381583872"}, "prompt_version"),  # past a 64-bit id
        ({"prompt_version_number": str(2**63), "prompt": "greeting"}, "prompt_version_number"),
    ],
)
def test_bad_parameters_answer_400_naming_them(staff_client, params, field):
    response = get(staff_client, "executions/", **params)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_unknown_status_names_valid_ones(staff_client):
    message = get(staff_client, "executions/", status="done").json()["status"][0]
    assert "running, success, error, timeout" in message


def test_unknown_period_names_valid_ones(staff_client):
    message = get(staff_client, "executions/", period="week").json()["period"][0]
    assert "today, yesterday, this_week, this_month, last_7_days, last_30_days, 24h, 7d, 30d, 90d" in message


def test_page_past_the_end_is_404(staff_client):
    ExecutionFactory()
    assert get(staff_client, "executions/", page=9).status_code == 404


def test_list_query_count(staff_client, django_assert_num_queries):
    ExecutionFactory.create_batch(30, parent=None)
    # count, page; on PostgreSQL the planner's row estimate first (a small table is then counted)
    with django_assert_num_queries(AUTH_QUERIES + 2 + (connection.vendor == "postgresql")):
        assert len(get(staff_client, "executions/", page_size=30).json()["results"]) == 30


# -- executions/{id}/ -------------------------------------------------------------------------


def test_detail_span_tree_in_start_order(staff_client, django_assert_num_queries):
    execution = ExecutionFactory()
    t0 = timezone.now()
    root_b = SpanFactory(execution=execution, name="b", started_at=t0 + dt.timedelta(seconds=2))
    root_a = SpanFactory(execution=execution, name="a", started_at=t0)
    SpanFactory(execution=execution, parent=root_a, name="a2", started_at=t0 + dt.timedelta(seconds=3))
    child = SpanFactory(
        execution=execution, parent=root_a, name="a1", started_at=t0 + dt.timedelta(seconds=1)
    )
    SpanFactory(execution=execution, parent=child, name="a1x", started_at=t0 + dt.timedelta(seconds=4))
    SpanFactory(name="other execution")
    with django_assert_num_queries(AUTH_QUERIES + 2):  # the execution, its spans
        response = get(staff_client, f"executions/{execution.id}/")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == str(execution.id)
    assert data["response"] == execution.response and data["attempts"] == []

    def shape(nodes):
        return [(node["name"], shape(node["children"])) for node in nodes]

    assert shape(data["spans"]) == [("a", [("a1", [("a1x", [])]), ("a2", [])]), ("b", [])]
    assert data["spans"][0]["id"] == str(root_a.id) and data["spans"][1]["id"] == str(root_b.id)
    assert data["spans"][0]["total_cost"] == "0.00036000"


def test_detail_unknown_is_404(staff_client):
    assert get(staff_client, f"executions/{uuid.uuid4()}/").status_code == 404
    assert staff_client.get(API + "executions/not-a-uuid/").status_code == 404


# -- export/ ----------------------------------------------------------------------------------


def test_export_csv_streams_every_row_with_the_filters(staff_client):
    ExecutionFactory.create_batch(3, agent_type="Keep")
    ExecutionFactory(agent_type="Drop")
    response = get(staff_client, "export/", agent_type="Keep")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="executions.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert len(rows) == 3 and {row["agent_type"] for row in rows} == {"Keep"}
    assert rows[0]["total_cost"] == "0.00036000"


def test_export_json(staff_client):
    parent = ExecutionFactory(started_at=timezone.now() - dt.timedelta(minutes=1))
    child = ExecutionFactory(parent=parent)
    response = get(staff_client, "export/", format="json")
    assert response.status_code == 200 and response.streaming
    rows = json.loads(body(response))
    assert [row["id"] for row in rows] == [str(child.id), str(parent.id)]
    assert rows[0]["parent"] == str(parent.id)
    assert rows[0]["total_cost"] == "0.00036000"
    assert json.loads(body(get(staff_client, "export/", format="json", status="error"))) == []


def test_export_neutralises_formula_cells(staff_client):
    for text in ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain"):
        ExecutionFactory(agent_type=text, error_message=text)
    rows = list(csv.DictReader(io.StringIO(body(get(staff_client, "export/")).decode(), newline="")))
    values = sorted(row["agent_type"] for row in rows)
    assert values == sorted(['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "plain"])
    assert all(row["error_message"] == row["agent_type"] for row in rows)


def test_export_period_and_bad_input(staff_client):
    ExecutionFactory(started_at=timezone.now() - dt.timedelta(days=10))
    ExecutionFactory()
    rows = list(csv.DictReader(io.StringIO(body(get(staff_client, "export/", period="7d")).decode())))
    assert len(rows) == 1
    for params, field in (
        ({"format": "xlsx"}, "format"),
        ({"status": "x"}, "status"),
        ({"period": "x"}, "period"),
    ):
        response = get(staff_client, "export/", **params)
        assert response.status_code == 400 and field in response.json()


def test_export_status_filter_only(staff_client):
    ExecutionFactory(status=Execution.Status.TIMEOUT, error_class="ProviderTimeoutError")
    ExecutionFactory()
    rows = list(csv.DictReader(io.StringIO(body(get(staff_client, "export/", status="timeout")).decode())))
    assert [row["status"] for row in rows] == ["timeout"]
