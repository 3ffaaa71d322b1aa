"""Filtering executions by metadata, kind, nesting and prompt version, and searching their prompts and
responses: the same filters in the API's executions/ (and export/) and in the admin's list."""

from __future__ import annotations

import datetime as dt
import json
import random
import string

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from llm_agents.models import Execution
from tests.api_support import API
from tests.factories import ExecutionFactory, PromptFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:llm_agents_execution_changelist")
POSTGRESQL = connection.vendor == "postgresql"


@pytest.fixture
def rows():
    prompt = PromptFactory(slug="greeting")
    v1 = prompt.update_content([{"role": "system", "content": "one"}])
    v2 = prompt.update_content([{"role": "system", "content": "two"}])
    other = PromptFactory(slug="farewell").update_content([{"role": "system", "content": "bye"}])
    root = ExecutionFactory(kind="trace", metadata={"plan": "pro", "retries": 3, "beta": True})
    return {
        "root": root,
        "child": ExecutionFactory(parent=root, prompt_version=v1, metadata={"plan": "free", "retries": "3"}),
        "v2": ExecutionFactory(prompt_version=v2, metadata={"region": "eu", "plan": None}),
        "other": ExecutionFactory(prompt_version=other, kind="llm", metadata={}),
        "versions": {"v1": v1, "v2": v2, "other": other},
    }


def api_names(client, rows, **params):
    response = client.get(API + "executions/", params)
    assert response.status_code == 200, response.json()
    names = {str(execution.pk): name for name, execution in rows.items() if name != "versions"}
    return {names[row["id"]] for row in response.json()["results"]}


def admin_names(client, rows, **params):
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    assert "e" not in response.get("Location", "")
    names = {execution.pk: name for name, execution in rows.items() if name != "versions"}
    return {names[execution.pk] for execution in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "trace"}, {"root"}),
        ({"kind": "llm"}, {"other"}),
        ({"root_only": "true"}, {"root", "v2", "other"}),
        ({"root_only": "false"}, {"root", "child", "v2", "other"}),
        ({"prompt": "greeting"}, {"child", "v2"}),
        ({"prompt": "greeting", "prompt_version_number": "2"}, {"v2"}),
        ({"prompt": "farewell", "prompt_version_number": "2"}, set()),
        ({"metadata": "plan:pro"}, {"root"}),
        ({"metadata": "plan:free"}, {"child"}),
        ({"metadata": "retries:3"}, {"root", "child"}),  # the number 3 and the string "3"
        ({"metadata": "beta:true"}, {"root"}),
        ({"metadata": "plan:null"}, {"v2"}),
        ({"metadata": "region"}, {"v2"}),  # has the key
        ({"metadata": "plan"}, {"root", "child", "v2"}),
        ({"metadata": "plan:pro", "root_only": "true", "kind": "trace"}, {"root"}),
    ],
)
def test_api_filters(staff_client, rows, params, expected):
    assert api_names(staff_client, rows, **params) == expected


def test_api_filters_by_prompt_version_id(staff_client, rows):
    versions = rows["versions"]
    assert api_names(staff_client, rows, prompt_version=versions["v1"].pk) == {"child"}
    assert api_names(staff_client, rows, prompt_version=versions["other"].pk) == {"other"}


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"metadata": ":pro"}, "metadata", "names no metadata key"),
        ({"kind": "robot"}, "kind", "valid values are: agent, trace, llm, batch"),
        ({"root_only": "yes"}, "root_only", "valid values are: true, false"),
        ({"prompt_version": "x"}, "prompt_version", "whole number"),
        ({"prompt_version": "1.5"}, "prompt_version", "whole number"),
        ({"prompt_version_number": "2"}, "prompt_version_number", "prompt"),
    ],
)
def test_api_filters_answer_400_naming_the_parameter(staff_client, params, field, message):
    for path in ("executions/", "export/"):
        response = staff_client.get(API + path, params)
        assert response.status_code == 400
        assert message in " ".join(response.json()[field])


def test_the_export_filters_as_the_list(staff_client, rows):
    response = staff_client.get(API + "export/", {"metadata": "plan:pro", "format": "json"})
    exported = json.loads(b"".join(response.streaming_content))
    assert [row["id"] for row in exported] == [str(rows["root"].pk)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind__exact": "trace"}, {"root"}),
        ({"root": "yes"}, {"root", "v2", "other"}),
        ({"metadata": "plan:pro"}, {"root"}),
        ({"metadata": "retries:3"}, {"root", "child"}),
        ({"metadata": "region"}, {"v2"}),
        ({"metadata": "plan:free", "root": "yes"}, set()),
    ],
)
def test_admin_filters(staff_client, rows, params, expected):
    assert admin_names(staff_client, rows, **params) == expected


def test_admin_filters_by_prompt_version(staff_client, rows):
    versions = rows["versions"]
    assert admin_names(staff_client, rows, prompt_version=versions["v2"].pk) == {"v2"}
    html = staff_client.get(CHANGELIST).content.decode()
    assert "greeting v2" in html and "greeting v1" in html and "farewell v1" in html
    assert 'name="metadata"' in html  # the metadata box
    filtered = staff_client.get(CHANGELIST, {"metadata": "plan:pro", "status__exact": "success"})
    assert 'value="plan:pro"' in filtered.content.decode()
    assert '<input type="hidden" name="status__exact" value="success">' in filtered.content.decode()


@pytest.mark.parametrize("params", [{"metadata": ":x"}, {"prompt_version": "abc"}])
def test_admin_bad_filters_are_refused(staff_client, params):
    response = staff_client.get(CHANGELIST, params)
    assert response.status_code == 302 and "e=1" in response["Location"]  # Django's "bad filter" page


# -- search ---------------------------------------------------------------------------------------


@pytest.fixture
def texts():
    return {
        "refund": ExecutionFactory(
            system_prompt="You are a billing assistant.",
            user_prompt="Where is my refund for order 1234?",
            response="Your refund was issued yesterday.",
        ),
        "shipping": ExecutionFactory(
            user_prompt="When will my parcel arrive?", response="Shipping takes three days."
        ),
        "agent": ExecutionFactory(agent_type="ReturnsAgent", user_prompt="hello"),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("refund", {"refund"}),  # the prompt and the response
        ("billing assistant", {"refund"}),  # the system prompt, every word
        ("ASSISTANT billing", {"refund"}),  # any case, any order
        ("parcel days", {"shipping"}),  # words from the prompt and from the response
        ("refund parcel", set()),
        ("ReturnsAgent", {"agent"}),  # the short columns still
    ],
)
def test_search_covers_prompts_and_responses(staff_client, texts, text, expected):
    assert {name for name, e in texts.items() if e in Execution.objects.search(text)} == expected
    assert api_names(staff_client, texts, search=text) == expected
    assert admin_names(staff_client, texts, q=text) == expected


def test_search_by_id(texts):
    target = texts["shipping"]
    assert list(Execution.objects.search(f" {target.pk} ")) == [target]


def test_a_huge_text_is_recorded_and_its_start_searched():
    # PostgreSQL's tsvector holds at most 1 MB: the indexed document stops at 100,000 characters, so
    # an execution with a longer prompt is still written.
    rng = random.Random(15)
    words = " ".join("".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(150_000))
    execution = ExecutionFactory(user_prompt="needle " + words, response=words)
    assert list(Execution.objects.search("needle")) == [execution]


@pytest.mark.skipif(not POSTGRESQL, reason="full-text search is PostgreSQL's")
def test_on_postgresql_search_is_full_text():
    ExecutionFactory(response="The refunds were issued.")
    # Whole words ("refund" is not "refunds"), and the web-search syntax.
    assert not Execution.objects.search("refund").exists()
    assert Execution.objects.search('"refunds were"').exists()
    assert not Execution.objects.search('"were refunds"').exists()
    assert not Execution.objects.search("refunds -issued").exists()


@pytest.mark.skipif(POSTGRESQL, reason="substring search is the fallback of the other databases")
def test_elsewhere_search_finds_substrings():
    ExecutionFactory(response="The refunds were issued.")
    assert Execution.objects.search("refund").exists()
    assert Execution.objects.search("FUNDS iss").exists()


@pytest.mark.skipif(not POSTGRESQL, reason="EXPLAIN plans are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_search_reads_the_full_text_index():
    now = timezone.now()
    words = ["invoice", "refund", "parcel", "password", "upgrade", "cancel", "delivery", "warranty"]
    Execution.objects.bulk_create(
        ExecutionFactory.build(
            started_at=now - dt.timedelta(minutes=n),
            user_prompt=f"Question {n} about my {words[n % len(words)]} please.",
            response=f"Answer {n}: " + "lorem ipsum dolor sit amet " * 20,
        )
        for n in range(5000)
    )
    ExecutionFactory(response="A zanzibar answer.")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Execution._meta.db_table}")
    queryset = Execution.objects.search("zanzibar")
    with CaptureQueriesContext(connection) as captured:
        assert queryset.count() == 1
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {captured[0]['sql']}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "llm_exec_search_idx" in plan, plan
