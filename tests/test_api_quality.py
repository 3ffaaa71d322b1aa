"""sessions/, scores/, datasets/, evals/ and include_evals on the aggregates (SPEC §16, §17, §21)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from llm_agents import Agent, Param, scores, session
from llm_agents.models import Dataset, DatasetItem, EvalResult, EvalRun, Execution, Score, ScoreConfig
from tests.api_support import API, TENANCY
from tests.factories import ExecutionFactory

pytestmark = pytest.mark.django_db


class Echo(Agent):
    """Answers its question back (the offline provider): what the evaluation tests run."""

    model = "fake/echo"
    question = Param()

    def user_prompt(self) -> str:
        return self.question


@pytest.fixture
def api(staff_superuser):
    client = APIClient()
    client.force_login(staff_superuser)
    return client


def get(client, path, **params):
    return client.get(API + path, params)


def post(client, path, data):
    return client.post(API + path, data, format="json")


def ago(**delta) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


@pytest.fixture
def conversations():
    """conv-1 (user u-1, then u-2): three turns an hour apart, one failed, and a nested call; conv-2
    (no user): one turn three days ago; and an execution of no session."""
    first = [
        ExecutionFactory(
            session_id="conv-1", user_id="u-1", started_at=ago(hours=3), input_cost=Decimal("0.1")
        ),
        ExecutionFactory(session_id="conv-1", user_id="u-2", started_at=ago(hours=2), failed=True),
        ExecutionFactory(session_id="conv-1", user_id="", started_at=ago(hours=1), agent_type="Router"),
    ]
    ExecutionFactory(session_id="conv-1", user_id="u-2", parent=first[0], started_at=ago(hours=3))
    second = ExecutionFactory(session_id="conv-2", started_at=ago(days=3))
    ExecutionFactory()
    return {"conv-1": first, "conv-2": second}


# -- sessions ---------------------------------------------------------------------------------


def test_sessions_are_rows_of_root_executions_newest_activity_first(api, conversations):
    answer = get(api, "sessions/").json()
    assert answer["count"] == 2 and answer["next"] is None
    conv1, conv2 = answer["results"]
    turns = conversations["conv-1"]
    assert conv1 == {
        "session_id": "conv-1",
        "user_id": "u-2",
        "executions": 3,
        "first_started_at": turns[0].started_at.isoformat().replace("+00:00", "Z"),
        "last_started_at": turns[2].started_at.isoformat().replace("+00:00", "Z"),
        "total_cost": str(sum(turn.total_cost for turn in turns).quantize(Decimal("1E-8"))),
        "total_tokens": 4500,
        "failed": 1,
    }
    assert (conv2["session_id"], conv2["user_id"], conv2["executions"]) == ("conv-2", "", 1)


def test_sessions_filter_by_user_agent_tag_and_period_and_page(api, conversations):
    ExecutionFactory(session_id="conv-3", tags=["beta", "mobile"])
    assert [row["session_id"] for row in get(api, "sessions/", user_id="u-1").json()["results"]] == ["conv-1"]
    routed = get(api, "sessions/", agent_type="Router").json()["results"]
    assert [(row["session_id"], row["executions"]) for row in routed] == [("conv-1", 1)]
    assert [row["session_id"] for row in get(api, "sessions/", tag="beta").json()["results"]] == ["conv-3"]
    assert [row["session_id"] for row in get(api, "sessions/", period="24h").json()["results"]] == [
        "conv-3",
        "conv-1",
    ]
    page = get(api, "sessions/", page_size=1, page=2).json()
    assert page["count"] == 3 and [row["session_id"] for row in page["results"]] == ["conv-1"]
    for params, field in [({"period": "week"}, "period"), ({"page_size": 0}, "page_size")]:
        response = get(api, "sessions/", **params)
        assert response.status_code == 400 and field in response.json()


def test_a_session_recorded_by_agent_calls_is_its_conversation_with_scores(api):
    with session("conv-9", user_id="u-9", tags=["beta"]):
        first = Echo.call(question="Where is my order?")
        second = Echo.call(question="And my refund?")
    scores.add(second.execution, "helpfulness", 4, comment="clear")
    scores.add(second.execution, "resolved", True)
    scores.add_session("conv-9", "csat", "happy")
    answer = get(api, "sessions/conv-9/").json()
    assert (answer["session_id"], answer["user_id"]) == ("conv-9", "u-9")
    assert [turn["id"] for turn in answer["executions"]] == [
        str(first.execution_id),
        str(second.execution_id),
    ]
    assert answer["executions"][0]["user_prompt"] == "Where is my order?"
    assert answer["executions"][0]["response"] == "Where is my order?"
    assert answer["executions"][0]["tags"] == ["beta"] and answer["executions"][0]["scores"] == []
    assert [(s["name"], s["value"], s["comment"]) for s in answer["executions"][1]["scores"]] == [
        ("helpfulness", 4.0, "clear"),
        ("resolved", 1.0, ""),
    ]
    assert [(s["name"], s["string_value"], s["execution"]) for s in answer["scores"]] == [
        ("csat", "happy", None)
    ]


def test_a_session_with_a_slash_in_its_id_and_an_unknown_one(api, conversations):
    ExecutionFactory(session_id="support/42")
    assert get(api, "sessions/support/42/").json()["session_id"] == "support/42"
    assert get(api, "sessions/no-such-session/").status_code == 404


def test_a_tenant_sees_its_own_sessions_and_scores_only(api):
    mine = ExecutionFactory(tenant_id="acme", session_id="shared")
    theirs = ExecutionFactory(tenant_id="globex", session_id="theirs")
    scores.add(mine, "stars", 5)
    scores.add(theirs, "stars", 1)
    with override_settings(LLM_AGENTS=TENANCY):
        api.credentials(HTTP_X_TENANT="acme")
        assert [row["session_id"] for row in get(api, "sessions/").json()["results"]] == ["shared"]
        assert get(api, "sessions/theirs/").status_code == 404
        assert [row["value"] for row in get(api, "scores/").json()["results"]] == [5.0]
        assert get(api, "scores/summary/", name="stars").json()["count"] == 1
        refused = post(api, "scores/", {"execution": str(theirs.pk), "name": "stars", "value": 3})
        assert refused.status_code == 400 and "execution" in refused.json()
        refused = post(api, "scores/", {"session_id": "theirs", "name": "csat", "value": "sad"})
        assert refused.status_code == 400 and "session_id" in refused.json()
        created = post(api, "scores/", {"session_id": "shared", "name": "csat", "value": "happy"})
        assert created.status_code == 201 and created.json()["tenant_id"] == "acme"
        api.credentials()
        assert get(api, "scores/").json()["count"] == 3  # a superuser with no tenant sees every tenant


# -- scores -----------------------------------------------------------------------------------


def test_scores_list_newest_first_with_filters(api):
    execution = ExecutionFactory(session_id="conv-1")
    scores.add(execution, "helpfulness", 3, source="human")
    scores.add(execution, "resolved", False)
    scores.add_session("conv-1", "csat", "happy")
    answer = get(api, "scores/").json()
    assert [row["name"] for row in answer["results"]] == ["csat", "resolved", "helpfulness"]
    assert answer["results"][1] | {"id": None, "created_at": None} == {
        "id": None,
        "execution": str(execution.pk),
        "session_id": "",
        "name": "resolved",
        "data_type": "boolean",
        "value": 0.0,
        "string_value": "",
        "comment": "",
        "source": "api",
        "author": None,
        "eval_run": None,
        "tenant_id": None,
        "created_at": None,
    }
    names = {
        "name": ("helpfulness", ["helpfulness"]),
        "source": ("human", ["helpfulness"]),
        "data_type": ("categorical", ["csat"]),
        "execution": (str(execution.pk), ["resolved", "helpfulness"]),
        "session_id": ("conv-1", ["csat"]),
        "period": ("today", ["csat", "resolved", "helpfulness"]),
    }
    for parameter, (value, expected) in names.items():
        rows = get(api, "scores/", **{parameter: value}).json()["results"]
        assert [row["name"] for row in rows] == expected, parameter
    Score.objects.filter(name="csat").update(created_at=ago(days=3))
    assert [row["name"] for row in get(api, "scores/", period="24h").json()["results"]] == [
        "resolved",
        "helpfulness",
    ]
    for parameter, value in [
        ("source", "robot"),
        ("data_type", "text"),
        ("execution", "42"),
        ("period", "x"),
    ]:
        response = get(api, "scores/", **{parameter: value})
        assert response.status_code == 400 and parameter in response.json(), parameter


def test_staff_post_a_score_of_an_execution_or_a_session(api, staff_superuser):
    execution = ExecutionFactory(tenant_id="acme")
    response = post(
        api, "scores/", {"execution": str(execution.pk), "name": "helpfulness", "value": 4, "comment": "ok"}
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["value"], created["data_type"], created["source"]) == (4.0, "numeric", "api")
    assert (created["author"], created["tenant_id"], created["comment"]) == (staff_superuser.pk, "acme", "ok")
    response = post(api, "scores/", {"session_id": "conv-7", "name": "csat", "value": "happy"})
    assert response.status_code == 201, response.content
    assert response.json()["execution"] is None and response.json()["string_value"] == "happy"
    response = post(api, "scores/", {"execution": str(execution.pk), "name": "resolved", "value": True})
    assert response.json()["data_type"] == "boolean" and response.json()["value"] == 1.0
    assert Score.objects.count() == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "helpfulness", "value": 4}, "execution"),
        ({"execution": "EXECUTION", "session_id": "conv-1", "name": "x", "value": 4}, "session_id"),
        ({"execution": str(uuid.uuid4()), "name": "helpfulness", "value": 4}, "execution"),
        ({"execution": "not-a-uuid", "name": "helpfulness", "value": 4}, "execution"),
        ({"execution": "EXECUTION", "value": 4}, "name"),
        ({"execution": "EXECUTION", "name": "helpfulness"}, "value"),
        ({"execution": "EXECUTION", "name": "helpfulness", "value": None}, "value"),
        ({"execution": "EXECUTION", "name": "helpfulness", "value": [1, 2]}, "value"),
        ({"execution": "EXECUTION", "name": "stars", "value": 9}, "value"),
        ({"execution": "EXECUTION", "name": "mood", "value": "furious"}, "value"),
        ({"execution": "EXECUTION", "name": "x" * 101, "value": 1}, "name"),
        ({"execution": "EXECUTION", "name": "mood", "value": "sad\x00"}, "value"),
        ({"session_id": "conv\x00", "name": "csat", "value": 1}, "session_id"),
    ],
)
def test_a_bad_score_is_a_400_naming_the_field(api, body, field):
    ScoreConfig.objects.create(name="stars", min_value=1, max_value=5)
    ScoreConfig.objects.create(name="mood", data_type="categorical", categories=["happy", "sad"])
    execution = ExecutionFactory()
    body = {key: str(execution.pk) if value == "EXECUTION" else value for key, value in body.items()}
    response = post(api, "scores/", body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Score.objects.exists()


def test_score_summary_and_scores_by(api):
    versions = {"1.0": [2, 4], "2.0": [5]}
    for version, values in versions.items():
        for value in values:
            scores.add(ExecutionFactory(agent_version=version), "helpfulness", value)
    scores.add(ExecutionFactory(), "resolved", True)
    assert get(api, "scores/summary/", name="helpfulness").json() == {
        "name": "helpfulness",
        "data_type": "numeric",
        "count": 3,
        "mean": round(11 / 3, 4),
        "min": 2.0,
        "max": 5.0,
        "p50": 4.0,
    }
    rows = get(api, "scores/summary/", name="helpfulness", group_by="agent_version").json()
    assert rows == [{"key": "1.0", "count": 2, "mean": 3.0}, {"key": "2.0", "count": 1, "mean": 5.0}]
    compared = get(api, "comparison/versions/", agent_type="SupportAgent", versions="1.0,2.0").json()
    assert {version: row["scores"] for version, row in compared.items()} == {
        "1.0": {"helpfulness": 3.0, "resolved": 1.0},
        "2.0": {"helpfulness": 5.0},
    }
    days = get(api, "scores/summary/", name="resolved", group_by="day").json()
    assert days == [{"key": timezone.localdate().isoformat(), "count": 1, "true_rate": 100.0}]
    empty = get(api, "scores/summary/", name="resolved", period="yesterday").json()
    assert empty == {"name": "resolved", "data_type": "numeric", "count": 0, "mean": None, "min": None,
                     "max": None, "p50": None}  # fmt: skip
    for params, field in [
        ({}, "name"),
        ({"name": "helpfulness", "group_by": "colour"}, "group_by"),
        ({"name": "helpfulness", "period": "week"}, "period"),
        ({"name": "helpfulness", "include_evals": "yes"}, "include_evals"),
    ]:
        response = get(api, "scores/summary/", **params)
        assert response.status_code == 400 and field in response.json(), params


# -- evaluations in the aggregates ------------------------------------------------------------


@pytest.fixture
def evaluated():
    """Two production executions and one of an evaluation run, scored."""
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    run = EvalRun.objects.create(dataset=dataset, agent_type="Echo", target="tests.test_api_quality.Echo")
    production = [ExecutionFactory(), ExecutionFactory(failed=True)]
    of_run = ExecutionFactory(eval_run=run, input_cost=Decimal("1"))
    scores.add(production[0], "helpfulness", 2)
    scores.add(of_run, "helpfulness", 4)
    return run


def test_include_evals_counts_the_executions_of_evaluation_runs(api, evaluated):
    assert get(api, "overview/").json()["total_executions"] == 2
    assert get(api, "overview/", include_evals="false").json()["total_executions"] == 2
    everything = get(api, "overview/", include_evals="true").json()
    assert everything["total_executions"] == 3 and everything["total_cost"] == "1.00090000"
    assert sum(row["total"] for row in get(api, "agents/", include_evals="true").json()) == 3
    assert get(api, "agents/SupportAgent/stats/", include_evals="true").json()["total"] == 3
    assert sum(row["executions"] for row in get(api, "costs/summary/", group_by="agent").json()) == 2
    summary = get(api, "costs/summary/", group_by="agent", include_evals="true").json()
    assert sum(row["executions"] for row in summary) == 3
    assert get(api, "costs/forecast/", include_evals="true").json()["month_to_date"] == "1.00090000"
    assert sum(row["executions"] for row in get(api, "trends/", include_evals="true").json()) == 3
    assert sum(row["executions"] for row in get(api, "comparison/models/", include_evals="true").json()) == 3
    versions = get(
        api, "comparison/versions/", agent_type="SupportAgent", versions="1.0", include_evals="true"
    )
    assert versions.json()["1.0"]["total"] == 3
    assert sum(get(api, "errors/", include_evals="true").json()["categories"].values()) == 1
    assert get(api, "scores/summary/", name="helpfulness").json()["mean"] == 2.0
    assert get(api, "scores/summary/", name="helpfulness", include_evals="true").json()["mean"] == 3.0
    assert get(api, "executions/").json()["count"] == 3  # lists show every execution


@pytest.mark.parametrize(
    "path", ["overview/", "agents/", "costs/summary/", "costs/forecast/", "trends/", "errors/"]
)
def test_a_bad_include_evals_is_a_400(api, path):
    response = get(api, path, include_evals="yes")
    assert response.status_code == 400
    assert response.json() == {
        "include_evals": ["Unknown include_evals 'yes'; valid values are: true, false."]
    }


# -- datasets ---------------------------------------------------------------------------------


def test_dataset_crud(api):
    response = post(api, "datasets/", {"slug": "faq", "name": "FAQ", "description": "Questions"})
    assert response.status_code == 201, response.content
    assert response.json() | {"created_at": None} == {
        "slug": "faq", "name": "FAQ", "description": "Questions", "item_count": 0, "created_at": None,
    }  # fmt: skip
    Dataset.objects.get(slug="faq").add_item({"question": "hi"}, "hi")
    assert get(api, "datasets/").json()["results"][0]["item_count"] == 1
    assert get(api, "datasets/faq/").json()["item_count"] == 1
    assert (
        api.patch(API + "datasets/faq/", {"name": "Support FAQ"}, format="json").json()["name"]
        == "Support FAQ"
    )
    for body, field in [({"slug": "faq", "name": "again"}, "slug"), ({"slug": "a b", "name": "x"}, "slug"),
                        ({"slug": "new"}, "name")]:  # fmt: skip
        refused = post(api, "datasets/", body)
        assert refused.status_code == 400 and field in refused.json(), body
    assert api.delete(API + "datasets/faq/").status_code == 204
    assert not Dataset.objects.exists() and not DatasetItem.objects.exists()
    assert get(api, "datasets/faq/").status_code == 404


def test_dataset_item_crud(api):
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    response = post(api, "datasets/faq/items/", {"input": {"question": "hi"}, "expected_output": "hello"})
    assert response.status_code == 201, response.content
    item = response.json()
    assert (item["input"], item["expected_output"], item["metadata"], item["is_active"]) == (
        {"question": "hi"}, "hello", {}, True)  # fmt: skip
    post(api, "datasets/faq/items/", {"input": {"question": "bye"}, "metadata": {"topic": "farewell"}})
    listed = get(api, "datasets/faq/items/").json()
    assert [row["input"]["question"] for row in listed["results"]] == ["hi", "bye"]
    path = f"datasets/faq/items/{item['id']}/"
    changed = api.patch(API + path, {"is_active": False, "expected_output": {"text": "hey"}}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["expected_output"] == {"text": "hey"} and changed.json()["input"] == {
        "question": "hi"
    }
    assert [
        row["input"]["question"]
        for row in get(api, "datasets/faq/items/", is_active="true").json()["results"]
    ] == ["bye"]
    assert api.delete(API + path).status_code == 204
    assert list(dataset.items.values_list("input", flat=True)) == [{"question": "bye"}]
    assert get(api, "datasets/nope/items/").status_code == 404
    assert post(api, "datasets/nope/items/", {"input": {}}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "input"),
        ({"input": ["not", "an", "object"]}, "input"),
        ({"input": "question"}, "input"),
        ({"input": {"q": 1}, "metadata": [1]}, "metadata"),
        ({"input": {"q": 1}, "is_active": "maybe"}, "is_active"),
        ({"input": {"q": "\x00"}}, "input"),
        ({"input": {"q": 1}, "expected_output": {"\x00": 1}}, "expected_output"),
    ],
)
def test_a_bad_dataset_item_is_a_400_naming_the_field(api, body, field):
    Dataset.objects.create(slug="faq", name="FAQ")
    response = post(api, "datasets/faq/items/", body)
    assert response.status_code == 400 and field in response.json(), response.content
    assert not DatasetItem.objects.exists()


# -- evaluation runs --------------------------------------------------------------------------


@pytest.fixture
def faq():
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    dataset.add_item({"question": "ping"}, "ping")
    dataset.add_item({"question": "pong"}, "PONG")
    return dataset


def test_posting_a_run_starts_it_through_celery(
    api, faq, staff_superuser, django_capture_on_commit_callbacks
):
    body = {"dataset": "faq", "agent": "tests.test_api_quality.Echo", "evaluators": ["exact_match"]}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(api, "evals/", body)
        assert response.status_code == 202, response.content
        created = response.json()
        assert (created["status"], created["dataset"], created["agent"]) == ("pending", "faq", body["agent"])
        assert created["created_by"] == staff_superuser.pk
    assert len(callbacks) >= 1
    run = EvalRun.objects.get(pk=created["id"])
    assert run.status == EvalRun.Status.COMPLETED, run.error
    shown = get(api, f"evals/{run.pk}/").json()
    assert (shown["status"], shown["item_count"], shown["completed_count"]) == ("completed", 2, 2)
    assert shown["summary"]["exact_match"]["mean"] == 0.5
    assert shown["summary"]["exact_match"]["pass_rate"] == 50.0
    assert Execution.objects.filter(eval_run=run).count() == 2
    results = get(api, f"evals/{run.pk}/results/").json()
    assert results["count"] == 2
    first = results["results"][0]
    assert (first["input"], first["expected"], first["output"], first["error"]) == ({"question": "ping"}, "ping",
                                                                                      "ping", "")  # fmt: skip
    assert [(s["name"], s["value"], s["source"]) for s in first["scores"]] == [
        ("exact_match", 1.0, "evaluator")
    ]
    assert [s["value"] for s in results["results"][1]["scores"]] == [0.0]
    assert [row["id"] for row in get(api, "evals/").json()["results"]] == [str(run.pk)]
    assert get(api, "evals/", status="pending").json()["count"] == 0
    assert get(api, "evals/", dataset="faq").json()["count"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dataset": "nope"}, "dataset"),
        ({"dataset": None}, "dataset"),
        ({"agent": "tests.test_api_quality.Nothing"}, "agent"),
        ({"agent": "not a path"}, "agent"),
        ({"evaluators": ["no_such_evaluator"]}, "evaluators"),
        ({"evaluators": []}, "evaluators"),
        ({"evaluators": [{"name": "regex", "params": {"pattern": "("}}]}, "evaluators"),
        ({"mode": "overnight"}, "mode"),
        ({"prompt_version": 999}, "prompt_version"),
    ],
)
def test_a_bad_run_is_a_400_naming_the_field(api, faq, change, field, django_capture_on_commit_callbacks):
    body = {"dataset": "faq", "agent": "tests.test_api_quality.Echo", "evaluators": ["exact_match"], **change}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(api, "evals/", body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not EvalRun.objects.exists() and not callbacks


def scored_run(dataset: Dataset, values: list[float]) -> EvalRun:
    """A finished run whose exact_match scores are ``values``, one per item (rows made directly)."""
    run = EvalRun.objects.create(
        dataset=dataset, agent_type="Echo", target="tests.test_api_quality.Echo",
        evaluators=[{"name": "exact_match", "params": {}}], status=EvalRun.Status.COMPLETED,
        item_count=len(values), completed_count=len(values),
    )  # fmt: skip
    for item, value in zip(dataset.items.order_by("created_at", "id"), values, strict=True):
        execution = ExecutionFactory(eval_run=run, agent_type="Echo")
        result = EvalResult.objects.create(
            run=run, item=item, execution=execution, output=item.input["question"]
        )
        scores.add(
            execution, "exact_match", value, source=Score.Source.EVALUATOR, eval_run=run, eval_result=result
        )
    return run


def test_compare_two_runs(api, faq):
    a, b = scored_run(faq, [1.0, 1.0]), scored_run(faq, [1.0, 0.0])
    answer = get(api, "evals/compare/", a=str(a.pk), b=str(b.pk)).json()
    assert answer == a.compare(b)
    assert answer["exact_match"]["delta"] == 0.5
    assert (answer["exact_match"]["wins"], answer["exact_match"]["ties"]) == (1, 1)
    assert len(answer["items"]) == 2
    for params, field in [
        ({"b": str(b.pk)}, "a"),
        ({"a": str(a.pk), "b": "nope"}, "b"),
        ({"a": str(uuid.uuid4()), "b": str(b.pk)}, "a"),
    ]:
        response = get(api, "evals/compare/", **params)
        assert response.status_code == 400 and field in response.json(), params
    assert get(api, f"evals/{uuid.uuid4()}/").status_code == 404
    assert get(api, f"evals/{uuid.uuid4()}/results/").status_code == 404


# -- permissions and the schema ---------------------------------------------------------------

STAFF_PATHS = [
    "sessions/",
    "sessions/conv-1/",
    "scores/",
    "scores/summary/?name=x",
    "datasets/",
    "datasets/faq/",
    "datasets/faq/items/",
    "evals/",
]


def test_everything_but_feedback_is_for_staff_only(django_user_model, faq):
    member = django_user_model.objects.create_user("member", password="secret")
    for client in (APIClient(), APIClient()):
        for path in STAFF_PATHS:
            assert client.get(API + path).status_code == 403, path
        for path in ["scores/", "datasets/", "datasets/faq/items/", "evals/"]:
            assert post(client, path, {}).status_code == 403, path
        client.force_login(member)
    assert not Score.objects.exists() and Dataset.objects.count() == 1


def test_datasets_and_runs_are_no_tenants(api, faq):
    with override_settings(LLM_AGENTS=TENANCY):
        api.credentials(HTTP_X_TENANT="acme")
        assert get(api, "datasets/").json()["count"] == 0
        assert get(api, "datasets/faq/items/").status_code == 404
        assert post(api, "datasets/", {"slug": "mine", "name": "Mine"}).status_code == 403
        assert post(api, "evals/", {"dataset": "faq"}).status_code == 403
        api.credentials()
        assert get(api, "datasets/").json()["count"] == 1


def test_the_schema_lists_the_new_endpoints(api):
    response = get(api, "schema/", format="json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "sessions/",
        "sessions/{session_id}/",
        "scores/",
        "scores/summary/",
        "feedback/",
        "datasets/",
        "datasets/{slug}/",
        "datasets/{dataset_slug}/items/",
        "datasets/{dataset_slug}/items/{id}/",
        "evals/",
        "evals/{id}/",
        "evals/{id}/results/",
        "evals/compare/",
    ]:
        assert API + path in paths, path
    assert set(paths[API + "feedback/"]["post"]["responses"]) >= {"200", "201", "400", "429"}
    overview = {parameter["name"] for parameter in paths[API + "overview/"]["get"]["parameters"]}
    assert "include_evals" in overview
