"""Sessions, end users and tags (SPEC sections 16 and 21): how executions get them (``session()``,
``trace()``, ``Agent.call(_session_id=…)``, inherited by nested executions), the scopes
``by_session``, ``by_user`` and ``with_tag``, and ``Execution.objects.sessions()``; on PostgreSQL,
EXPLAIN shows each served by its index."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llm_agents import Agent, Param, session, trace
from llm_agents.db import fastpaths
from llm_agents.models import Dataset, EvalRun, Execution
from llm_agents.models.quality_queries import Sessions

from .factories import ExecutionFactory

pytestmark = pytest.mark.django_db

POSTGRESQL = connection.vendor == "postgresql"
postgresql_only = pytest.mark.skipif(not POSTGRESQL, reason="EXPLAIN plans and fast paths are PostgreSQL's")


class Helper(Agent):
    model = "gpt-4o-mini"
    question = Param(required=True)

    def user_prompt(self):
        return self.question


@pytest.fixture
def openai(openai_server):
    """The openai provider (the real SDK) pointed at the fake server, which echoes the question."""
    spec = {
        "class": "llm_agents.providers.openai.OpenAIProvider",
        "api_key": "k",
        "base_url": openai_server.url,
    }
    with override_settings(LLM_AGENTS={"PROVIDERS": {"openai": spec}}):
        yield openai_server


def fields(execution: Execution) -> tuple[str, str, list[str]]:
    execution.refresh_from_db()
    return execution.session_id, execution.user_id, execution.tags


def eval_run() -> EvalRun:
    dataset = Dataset.objects.create(slug=f"set-{uuid.uuid4().hex[:8]}", name="Set")
    return EvalRun.objects.create(dataset=dataset, agent_type="Helper", target="tests.test_sessions.Helper")


# -- how executions get them ------------------------------------------------------------------------


def test_a_session_block_records_its_session_user_and_tags(openai):
    with session("conv-42", user_id="u-7", tags=["beta"]):
        result = Helper.call(question="Where is my order?")
    outside = Helper.call(question="And now?")

    assert fields(result.execution) == ("conv-42", "u-7", ["beta"])
    assert fields(outside.execution) == ("", "", [])
    assert len(openai.requests_to("/v1/chat/completions")) == 2


def test_nested_session_blocks_replace_the_session_and_user_and_add_tags(openai):
    with session("conv-1", user_id="u-1", tags=["beta"]):
        with session("conv-2", tags=["vip", "beta"]):
            inner = Helper.call(question="inner")
        outer = Helper.call(question="outer")

    assert fields(inner.execution) == ("conv-2", "u-1", ["beta", "vip"])
    assert fields(outer.execution) == ("conv-1", "u-1", ["beta"])


def test_call_arguments_record_the_call_and_add_to_the_blocks_tags(openai):
    result = Helper.call(question="hi", _session_id="conv-9", _user_id=17, _tags=["mobile"])
    with session("conv-1", user_id="u-1", tags=["beta"]):
        inside = Helper.call(question="hi", _tags=["mobile", "beta"])

    assert fields(result.execution) == ("conv-9", "17", ["mobile"])
    assert fields(inside.execution) == ("conv-1", "u-1", ["beta", "mobile"])
    sent = [request.json["messages"] for request in openai.requests_to("/v1/chat/completions")]
    assert all("_session_id" not in str(messages) for messages in sent)


def test_a_trace_records_them_and_its_nested_executions_inherit_them(openai):
    with trace("support_flow", session_id="conv-5", user_id="u-5", tags=["beta"]) as flow:
        inherited = Helper.call(question="one")
        tagged = Helper.call(question="two", _tags=["escalated"])
        moved = Helper.call(question="three", _session_id="conv-6", _user_id="u-6")

    root = Execution.objects.get(pk=flow.execution_id)
    assert fields(root) == ("conv-5", "u-5", ["beta"])
    assert fields(inherited.execution) == ("conv-5", "u-5", ["beta"])
    assert fields(tagged.execution) == ("conv-5", "u-5", ["beta", "escalated"])
    assert fields(moved.execution) == ("conv-6", "u-6", ["beta"])
    assert {e.parent_id for e in (inherited.execution, tagged.execution, moved.execution)} == {root.pk}


def test_tags_that_are_not_strings_are_refused_before_any_request(openai):
    with pytest.raises(TypeError, match="_tags"):
        Helper.call(question="hi", _tags="beta")
    assert openai.requests_to("/v1/chat/completions") == []


# -- scopes ---------------------------------------------------------------------------------------------


def test_by_session_by_user_and_with_tag():
    a = ExecutionFactory(session_id="conv-1", user_id="u-1", tags=["beta", "mobile"])
    b = ExecutionFactory(session_id="conv-1", user_id="u-2", tags=["beta"])
    c = ExecutionFactory(session_id="conv-2", user_id="u-1", tags=['say "hi"', "café"])
    ExecutionFactory()

    assert set(Execution.objects.by_session("conv-1")) == {a, b}
    assert set(Execution.objects.by_user("u-1")) == {a, c}
    assert set(Execution.objects.with_tag("beta")) == {a, b}
    assert set(Execution.objects.with_tag("mobile").by_user("u-1")) == {a}
    assert set(Execution.objects.with_tag('say "hi"')) == {c}
    assert set(Execution.objects.with_tag("café")) == {c}
    # Whole members only: no substring, no JSON text.
    assert not Execution.objects.with_tag("bet").exists()
    assert not Execution.objects.with_tag('"beta"').exists()
    assert not Execution.objects.with_tag("").exists()


def test_tag_condition_twins_agree():
    tagged = [
        ExecutionFactory(tags=tags)
        for tags in (["beta"], ["beta", "x"], [], ["Beta"], ["a,b"], ['q"uote'], ["naïve"])
    ]
    for tag in ("beta", "Beta", "x", "a", "a,b", 'q"uote', "naïve", "missing"):
        portable = set(Execution.objects.filter(fastpaths.tag_condition_portable(tag)))
        expected = {execution for execution in tagged if tag in execution.tags}
        assert portable == expected, tag
        if POSTGRESQL:
            assert set(Execution.objects.filter(fastpaths.tag_condition_postgresql(tag))) == expected, tag


# -- sessions() ----------------------------------------------------------------------------------------


def test_sessions_rows_newest_activity_first_with_the_most_recent_user():
    now = timezone.now()

    def at(minutes: float, **values) -> Execution:
        return ExecutionFactory(started_at=now - dt.timedelta(minutes=minutes), **values)

    at(50, session_id="conv-1", user_id="u-1", total_cost=Decimal("0.10"), input_tokens=10, output_tokens=5)
    at(40, session_id="conv-1", user_id="u-2", total_cost=Decimal("0.20"), input_tokens=20, output_tokens=5,
       failed=True)  # fmt: skip
    last = at(
        30, session_id="conv-1", user_id="", total_cost=Decimal("0.30"), input_tokens=30, output_tokens=5
    )
    # Nested executions are counted in their root's totals, not as executions of the session.
    at(29, session_id="conv-1", user_id="u-9", parent=last, total_cost=Decimal("5"))
    at(45, session_id="conv-2", user_id="", status="timeout")
    at(20, session_id="conv-3", user_id="u-3")
    at(10, session_id="", user_id="u-4")

    rows = Execution.objects.sessions()[:10]

    assert [row["session_id"] for row in rows] == ["conv-3", "conv-1", "conv-2"]
    assert rows[1] == {
        "session_id": "conv-1",
        "user_id": "u-2",
        "executions": 3,
        "first_started_at": now - dt.timedelta(minutes=50),
        "last_started_at": now - dt.timedelta(minutes=30),
        "total_cost": Decimal("0.60"),
        "total_tokens": 75,
        "failed": 1,
    }
    assert rows[2]["user_id"] == "" and rows[2]["failed"] == 1
    assert list(Execution.objects.sessions()) == rows
    assert list(Execution.objects.sessions().queryset) == rows
    assert Execution.objects.sessions().count() == len(Execution.objects.sessions()) == 3
    assert Execution.objects.sessions()[1] == rows[1]
    with pytest.raises(IndexError):
        Execution.objects.sessions()[3]
    with pytest.raises(ValueError, match="Negative"):
        Execution.objects.sessions()[-1]
    assert Execution.objects.sessions()[2:2] == []


def test_sessions_of_a_scope_count_its_executions_only():
    now = timezone.now()
    ExecutionFactory(
        session_id="conv-1", user_id="u-1", agent_type="A", started_at=now - dt.timedelta(days=3)
    )
    ExecutionFactory(
        session_id="conv-1", user_id="u-2", agent_type="B", started_at=now - dt.timedelta(hours=1)
    )
    ExecutionFactory(
        session_id="conv-2", user_id="u-1", agent_type="A", started_at=now - dt.timedelta(hours=2)
    )

    by_agent = Execution.objects.by_agent("A").sessions()[:10]
    assert [(row["session_id"], row["executions"], row["user_id"]) for row in by_agent] == [
        ("conv-2", 1, "u-1"),
        ("conv-1", 1, "u-1"),
    ]
    recent = Execution.objects.last_n_days(1).sessions()[:10]
    assert [(row["session_id"], row["user_id"]) for row in recent] == [("conv-1", "u-2"), ("conv-2", "u-1")]
    assert [row["session_id"] for row in Execution.objects.by_user("u-2").sessions()[:10]] == ["conv-1"]


def test_sessions_leave_out_evaluation_runs_unless_asked():
    run = eval_run()
    ExecutionFactory(session_id="conv-1")
    ExecutionFactory(session_id="conv-1", eval_run=run)
    ExecutionFactory(session_id="conv-eval", eval_run=run)

    assert [(row["session_id"], row["executions"]) for row in Execution.objects.sessions()[:10]] == [
        ("conv-1", 1)
    ]
    everything = Execution.objects.including_evaluations().sessions()[:10]
    assert sorted((row["session_id"], row["executions"]) for row in everything) == [
        ("conv-1", 2),
        ("conv-eval", 1),
    ]
    evaluations = Execution.objects.evaluations().sessions()[:10]
    assert [(row["session_id"], row["executions"]) for row in evaluations] == [
        ("conv-eval", 1),
        ("conv-1", 1),
    ]


def conversations(count: int, per_session: int, *, interleaved: bool) -> None:
    """``count`` sessions of ``per_session`` root executions each, one minute apart: one session
    after another, or every session taking its turn (each session then spans the whole history)."""
    now = timezone.now()
    rows = []
    for turn in range(per_session):
        for number in range(count):
            position = turn * count + number if interleaved else number * per_session + turn
            rows.append(
                ExecutionFactory.build(
                    session_id=f"conv-{number:03}",
                    user_id=f"u-{number}-{turn}" if turn % 2 == 0 else "",
                    started_at=now - dt.timedelta(minutes=count * per_session - position),
                    status="error" if turn == 1 else "success",
                )
            )
    Execution.objects.bulk_create(rows)


@pytest.mark.parametrize("interleaved", [False, True], ids=["consecutive", "interleaved"])
def test_pages_of_sessions_are_the_slices_of_all_of_them(interleaved, django_assert_max_num_queries):
    # 40 sessions of 6 roots: a page of 2 walks the newest 40 roots first, which hold 7 sessions when
    # sessions follow one another and 40 when they interleave; a page deeper in needs the longer
    # walk, or every root.
    conversations(40, 6, interleaved=interleaved)
    every = list(Execution.objects.sessions().queryset)
    assert len(every) == 40 and every[0]["session_id"] == "conv-039"
    assert all(row["executions"] == 6 and row["failed"] == 1 for row in every)
    sessions = Execution.objects.sessions()
    for start, stop in ((0, 2), (2, 4), (5, 7), (0, 10), (18, 20), (38, 40), (39, 45), (45, 50), (0, 50)):
        assert sessions[start:stop] == every[start:stop], (start, stop)
    assert sessions[7:] == every[7:]
    with django_assert_max_num_queries(2):
        assert sessions[:2] == every[:2]


def test_a_first_page_is_two_queries_whatever_the_history():
    conversations(30, 3, interleaved=False)
    with CaptureQueriesContext(connection) as captured:
        page = Execution.objects.sessions()[:5]
    assert len(page) == 5 and len(captured) == 2


def test_sessions_is_a_lazy_sequence():
    assert isinstance(Execution.objects.sessions(), Sessions)
    with CaptureQueriesContext(connection) as captured:
        Execution.objects.by_user("u-1").last_7_days().sessions()
    assert len(captured) == 0


# -- indexes (PostgreSQL) ------------------------------------------------------------------------------


def plan(sql: str, params: list | tuple = ()) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan TO off")
        try:
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_scopes_and_sessions_use_their_indexes():
    # A history longer than a page's walk, as in production (with a handful of rows, reading the
    # table's one page could cost the planner about the same as an index).
    conversations(250, 4, interleaved=False)
    ExecutionFactory(tags=["beta"], user_id="u-7")
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")

    for queryset, index in (
        (Execution.objects.by_session("conv-007"), "llm_exec_session_idx"),
        (Execution.objects.by_user("u-7").order_by("-started_at"), "llm_exec_user_idx"),
        (Execution.objects.with_tag("beta"), "llm_exec_tags_idx"),
        (Execution.objects.sessions().queryset, "llm_exec_session_idx"),
    ):
        text = plan(*queryset.query.sql_with_params())
        assert index in text, text

    with CaptureQueriesContext(connection) as captured:
        Execution.objects.sessions()[:5]
    walk, page = (plan(query["sql"]) for query in captured)
    assert "llm_exec_started_idx" in walk or "llm_exec_root_cover_idx" in walk, walk
    # The page's sessions are read through their index (the grouping and the user alike), never whole.
    assert page.count("llm_exec_session_idx") >= 2, page
    assert "Seq Scan" not in page, page
