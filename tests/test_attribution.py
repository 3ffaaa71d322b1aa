"""Attribution to the host's objects (SPEC sections 19 and 21): ``Agent.call(_subject=…)``,
``trace(subject=…)`` and ``attribute_to()`` store the object on the execution (nested executions,
raw SDK calls, ASYNC_LOGGING and batch results alike); ``for_object``, ``cost_by_subject`` and
``cost_of`` read it back (on PostgreSQL through ``llm_exec_subject_idx``); ``ExecutionInline`` shows
an object's executions in the host's own admin.

The host's objects here are ``auth`` groups and users, saved in the test database like any model of
a host project."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import uuid
from decimal import Decimal

import openai as openai_sdk
import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from django.utils import timezone

import llm_agents
from llm_agents import Agent, Param, attribute_to, batches, span, trace
from llm_agents.admin import ExecutionInline
from llm_agents.admin.formatting import format_cost
from llm_agents.attribution import cost_of
from llm_agents.models import CostConfig, Dataset, EvalRun, Execution

from .factories import ExecutionFactory

pytestmark = pytest.mark.django_db

POSTGRESQL = connection.vendor == "postgresql"
OPENAI = "llm_agents.providers.openai.OpenAIProvider"


class Helper(Agent):
    model = "gpt-4o-mini"
    question = Param(required=True)

    def user_prompt(self):
        return self.question


class Caller:
    """A traced pipeline that asks Helper twice: a root execution with two nested ones."""

    @staticmethod
    def call(question):
        with trace("caller") as traced:
            Helper.call(question=f"first {question}")
            Helper.call(question=f"second {question}")
        return traced


def llm_settings(server, **extra):
    return {"PROVIDERS": {"openai": {"class": OPENAI, "api_key": "k", "base_url": server.url}}, **extra}


@pytest.fixture
def prices(db):
    CostConfig.objects.create(model="gpt-4o-mini", input_price_per_mtok=Decimal("0.15"),
                              output_price_per_mtok=Decimal("0.6"), effective_from="2020-01-01T00:00Z")  # fmt: skip


@pytest.fixture
def openai(openai_server, prices):
    """The openai provider (the real SDK) pointed at the fake server, which echoes the question."""
    with override_settings(LLM_AGENTS=llm_settings(openai_server)):
        yield openai_server


@pytest.fixture
def ticket(db):
    return Group.objects.create(name="ticket 1")


def subject_of(execution_id):
    execution = Execution.objects.get(pk=execution_id)
    return execution.subject_type, execution.subject_id


def attributed(obj):
    content_type = ContentType.objects.get_for_model(obj)
    return content_type, str(obj.pk)


# -- the three ways ---------------------------------------------------------------------------------


def test_a_call_with_subject_is_attributed_to_it(openai, ticket):
    result = Helper.call(question="Where is my order?", _subject=ticket)
    plain = Helper.call(question="And now?")

    assert subject_of(result.execution_id) == attributed(ticket)
    assert Execution.objects.get(pk=result.execution_id).subject == ticket
    assert subject_of(plain.execution_id) == (None, "")


@pytest.mark.django_db(transaction=True)
def test_acall_and_stream_take_subject_too(openai, ticket):
    result = asyncio.run(Helper.acall(question="async", _subject=ticket))
    stream = Helper.stream(question="streamed", _subject=ticket)
    assert "".join(stream) == "streamed"

    assert subject_of(result.execution_id) == attributed(ticket)
    assert subject_of(stream.result.execution_id) == attributed(ticket)


def test_a_trace_with_subject_and_the_calls_nested_in_it(openai, ticket):
    with trace("triage", subject=ticket) as traced:
        nested = Helper.call(question="inside")

    assert subject_of(traced.execution_id) == attributed(ticket)
    assert subject_of(nested.execution_id) == attributed(ticket)
    assert Execution.objects.get(pk=nested.execution_id).parent_id == traced.execution_id


def test_an_attribute_to_block_covers_every_execution_started_inside(openai, ticket):
    other = Group.objects.create(name="ticket 2")
    with attribute_to(ticket):
        first = Caller.call(question="one")
        with attribute_to(other):
            inner = Helper.call(question="two")
        with trace("after"):
            last = Helper.call(question="three")
    outside = Helper.call(question="four")

    nested = Execution.objects.filter(parent_id=first.execution_id)
    assert subject_of(first.execution_id) == attributed(ticket)
    assert len(nested) == 2 and all((e.subject_type, e.subject_id) == attributed(ticket) for e in nested)
    assert subject_of(inner.execution_id) == attributed(other)
    assert subject_of(last.execution_id) == attributed(ticket)
    assert subject_of(outside.execution_id) == (None, "")
    assert llm_agents.attribute_to is attribute_to


def test_nested_executions_keep_their_roots_object(openai, ticket):
    other = Group.objects.create(name="ticket 2")
    with trace("pipeline", subject=ticket) as traced:
        with attribute_to(other):
            nested = Helper.call(question="x")
        given = Helper.call(question="y", _subject=other)

    # Inherited from the root, which the object's totals count; a nested call's own _subject is stored.
    assert subject_of(nested.execution_id) == attributed(ticket)
    assert subject_of(given.execution_id) == attributed(other)
    assert Execution.objects.for_object(ticket).get().pk == traced.execution_id
    assert not Execution.objects.for_object(other).exists()


def test_a_nested_call_takes_the_block_when_its_root_has_no_object(openai, ticket):
    with trace("nightly"):
        with attribute_to(ticket):
            nested = Helper.call(question="x")

    assert subject_of(nested.execution_id) == attributed(ticket)
    assert cost_of(ticket)["executions"] == 0  # only root executions count


@pytest.mark.django_db(transaction=True)
def test_a_raw_sdk_call_inside_attribute_to_is_attributed(openai, ticket):
    client = openai_sdk.OpenAI(api_key="k", base_url=openai.url, max_retries=0)
    with override_settings(LLM_AGENTS=llm_settings(openai, AUTO_INSTRUMENT=True)):
        with attribute_to(ticket):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Bye"}])

    attributed_call, plain_call = Execution.objects.order_by("started_at")
    assert attributed_call.kind == plain_call.kind == "llm"
    assert (attributed_call.subject_type, attributed_call.subject_id) == attributed(ticket)
    assert (plain_call.subject_type, plain_call.subject_id) == (None, "")
    assert cost_of(ticket)["total_cost"] == attributed_call.total_cost > 0


@pytest.mark.django_db(transaction=True)
def test_a_trace_in_async_code_looks_the_content_type_up_off_the_loop(ticket):
    ContentType.objects.clear_cache()  # the look-up is a query, which no event loop's thread may make

    async def main():
        with trace("async work", subject=ticket) as traced:
            await asyncio.sleep(0)
        return traced.execution_id

    execution_id = asyncio.run(main())
    assert subject_of(execution_id) == attributed(ticket)


def test_async_logging_carries_the_object(openai, ticket):
    with override_settings(LLM_AGENTS=llm_settings(openai, ASYNC_LOGGING=True)):
        with attribute_to(ticket):
            result = Caller.call(question="queued")

    nested = Execution.objects.filter(parent_id=result.execution_id)
    assert subject_of(result.execution_id) == attributed(ticket)
    assert len(nested) == 2 and all((e.subject_type, e.subject_id) == attributed(ticket) for e in nested)


@pytest.fixture
def summary_handler():
    summaries = []
    batches.register_handler("summary", lambda request, result: summaries.append(result.content))
    yield summaries
    batches.handlers.unregister_handler("summary")


def test_a_batch_result_is_attributed_to_the_object_it_was_enqueued_for(
    openai_server, prices, ticket, summary_handler
):
    with override_settings(LLM_AGENTS=llm_settings(openai_server)):
        with attribute_to(ticket):
            request = batches.enqueue(purpose="summary", model="gpt-4.1-mini", input="Summarise the ticket.")
        other = batches.enqueue(purpose="summary", model="gpt-4.1-mini", input="Another.")
        batches.flush()
        openai_server.batches.respond = lambda custom_id, body: "A summary."
        report = batches.poll()
    assert report.errors == [] and summary_handler == ["A summary.", "A summary."]

    request.refresh_from_db()
    other.refresh_from_db()
    assert (request.execution.subject_type, request.execution.subject_id) == attributed(ticket)
    assert (other.execution.subject_type, other.execution.subject_id) == (None, "")
    assert cost_of(ticket)["total_cost"] == request.execution.total_cost


# -- what is refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject", [Group(name="unsaved"), Group, "ticket-1", 42], ids=["unsaved", "class", "string", "number"]
)
def test_anything_but_a_saved_instance_is_refused_before_any_request(openai, subject):
    name = "has no primary key yet" if isinstance(subject, Group) else repr(subject)
    with pytest.raises(TypeError, match=name.replace("(", r"\(").replace(")", r"\)")):
        Helper.call(question="x", _subject=subject)
    with pytest.raises(TypeError, match="saved model instance"):
        asyncio.run(Helper.acall(question="x", _subject=subject))
    with pytest.raises(TypeError, match="saved model instance"):
        Helper.stream(question="x", _subject=subject)
    with pytest.raises(TypeError, match="saved model instance"):
        with trace("refused", subject=subject):
            Helper.call(question="x")
    with pytest.raises(TypeError, match="saved model instance"):
        with attribute_to(subject):
            Helper.call(question="x")

    assert openai.requests == []
    assert not Execution.objects.exists()


def test_the_queries_refuse_what_is_not_a_saved_instance_or_a_model(ticket):
    with pytest.raises(TypeError, match="has no primary key yet"):
        Execution.objects.for_object(Group(name="unsaved"))
    with pytest.raises(TypeError, match="'ticket 1'"):
        cost_of("ticket 1")
    with pytest.raises(TypeError, match="takes a model class"):
        Execution.objects.cost_by_subject(ticket)


# -- the queries ---------------------------------------------------------------------------------------


def test_cost_of_is_the_sum_of_the_objects_root_executions(openai, ticket):
    other = Group.objects.create(name="ticket 2")
    with attribute_to(ticket):
        for question in ("one", "two", "three"):
            Caller.call(question=question)  # each with nested Helper calls in its totals
    Helper.call(question="elsewhere", _subject=other)
    dataset = Dataset.objects.create(slug="set", name="Set")
    run = EvalRun.objects.create(dataset=dataset, agent_type="Helper", target="tests.test_attribution.Helper")
    ExecutionFactory(subject=ticket, eval_run=run, total_cost=Decimal("5"))  # evaluations are not counted

    roots = [
        e for e in Execution.objects.filter(parent__isnull=True, eval_run__isnull=True) if e.subject == ticket
    ]
    expected = sum(execution.total_cost for execution in roots)
    with CaptureQueriesContext(connection) as queries:
        totals = cost_of(ticket)

    assert len(roots) == 3 and expected > 0
    assert totals == {
        "total_cost": expected,
        "executions": 3,
        "total_tokens": sum(execution.total_tokens for execution in roots),
    }
    assert len(queries) == 1
    assert cost_of(Group.objects.create(name="never")) == {"total_cost": Decimal(0), "executions": 0,
                                                           "total_tokens": 0}  # fmt: skip


def test_for_object_leaves_out_other_objects_and_other_models_with_the_same_pk(ticket):
    user = User.objects.create(pk=ticket.pk, username="same-pk")
    other = Group.objects.create(name="ticket 2")
    mine = ExecutionFactory(subject=ticket)
    nested = ExecutionFactory(subject=ticket, parent=mine)
    ExecutionFactory(subject=user)
    ExecutionFactory(subject=other)
    ExecutionFactory()

    assert list(Execution.objects.for_object(ticket)) == [mine]
    assert nested.subject == ticket
    assert Execution.objects.for_object(ticket).failed().count() == 0  # chainable
    assert cost_of(user)["executions"] == 1


def test_cost_by_subject_ranks_the_models_objects_costliest_first(ticket):
    second, third = Group.objects.create(name="ticket 2"), Group.objects.create(name="ticket 3")
    user = User.objects.create(username="someone")
    now = timezone.now()
    for obj, cost, days_ago in [(ticket, "0.5", 0), (ticket, "0.25", 10), (second, "2", 0), (third, "0.75", 0),
                                (user, "9", 0)]:  # fmt: skip
        ExecutionFactory(subject=obj, total_cost=Decimal(cost), started_at=now - dt.timedelta(days=days_ago))
    root = ExecutionFactory(subject=third, total_cost=Decimal("0.1"))
    ExecutionFactory(subject=third, parent=root, total_cost=Decimal("100"))  # in its root's totals

    ContentType.objects.get_for_model(Group)  # cached by Django from then on
    with CaptureQueriesContext(connection) as queries:
        ranked = Execution.objects.cost_by_subject(Group)
    assert len(queries) == 1
    assert ranked == [
        {"subject_id": str(second.pk), "total_cost": Decimal("2.00000000"), "executions": 1},
        {"subject_id": str(third.pk), "total_cost": Decimal("0.85000000"), "executions": 2},
        {"subject_id": str(ticket.pk), "total_cost": Decimal("0.75000000"), "executions": 2},
    ]
    # The queryset's filters apply: the last 7 days leave the older execution of the ticket out.
    assert Execution.objects.last_7_days().cost_by_subject(Group)[-1] == {
        "subject_id": str(ticket.pk), "total_cost": Decimal("0.50000000"), "executions": 1,
    }  # fmt: skip
    assert Execution.objects.cost_by_subject(User) == [
        {"subject_id": str(user.pk), "total_cost": Decimal("9.00000000"), "executions": 1}
    ]


@pytest.mark.skipif(not POSTGRESQL, reason="EXPLAIN plans are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_queries_read_the_subject_index(ticket):
    from .test_indexes import plan

    # A history in which few executions are attributed to anything, as in production.
    Execution.objects.bulk_create(ExecutionFactory.build() for _ in range(1000))
    Execution.objects.bulk_create(ExecutionFactory.build(subject=ticket) for _ in range(3))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")  # marks the pages all-visible
    with CaptureQueriesContext(connection) as captured:
        cost_of(ticket)
        list(Execution.objects.for_object(ticket).values_list("total_cost", flat=True))
        Execution.objects.cost_by_subject(Group)
    statements = [query["sql"] for query in captured if "llm_agents_execution" in query["sql"]]
    assert len(statements) == 3
    for sql in statements:
        text = plan(sql)
        assert "llm_exec_subject_idx" in text, text
    # What cost_of and for_object's totals read is in the index: no visit to the table is needed.
    assert "Index Only Scan using llm_exec_subject_idx" in plan(statements[0]), plan(statements[0])


# -- the host's admin ---------------------------------------------------------------------------------

host_site = admin.AdminSite(name="host_admin")


class NewestTwo(ExecutionInline):
    limit = 2


@admin.register(Group, site=host_site)
class TicketAdmin(admin.ModelAdmin):
    fields = ["name"]
    inlines = [NewestTwo]


urlpatterns = [path("admin/", admin.site.urls), path("host-admin/", host_site.urls)]


def traced_call(name, obj, tokens):
    with trace(name, subject=obj) as traced:
        with span(name, kind="llm") as call:
            call.record_usage(tokens, tokens // 2, model_id="gpt-4o-mini")
    return Execution.objects.get(pk=traced.execution_id)


@override_settings(ROOT_URLCONF=__name__)
def test_execution_inline_shows_the_newest_executions_and_the_total(staff_client, prices, ticket):
    oldest = traced_call("first-step", ticket, 1000)
    middle = traced_call("second-step", ticket, 2000)
    newest = traced_call("third-step", ticket, 4000)
    traced_call("elsewhere-step", Group.objects.create(name="other"), 8000)
    page_url = reverse("host_admin:auth_group_change", args=[ticket.pk])

    response = staff_client.get(page_url)

    assert response.status_code == 200
    text = response.content.decode()
    assert "LLM executions" in text
    assert "third-step" in text and "second-step" in text
    assert "first-step" not in text and "elsewhere-step" not in text  # beyond the limit; another object's
    assert reverse("admin:llm_agents_execution_change", args=[newest.pk]) in text
    total = cost_of(ticket)["total_cost"]
    assert total == oldest.total_cost + middle.total_cost + newest.total_cost
    assert f"<strong>{format_cost(total)}</strong> over 3 executions" in text
    assert "The newest 2 are listed." in text

    # The link opens the executions list filtered to the object.
    formset = response.context["inline_admin_formsets"][0].formset
    listed = staff_client.get(formset.summary["url"])
    assert listed.status_code == 200
    assert {e.pk for e in listed.context["cl"].result_list} == {oldest.pk, middle.pk, newest.pk}
    assert "attributed to" in listed.content.decode() and "ticket 1" in listed.content.decode()

    # The host's form still saves with the read-only inline on it.
    management = formset.management_form
    data = {
        "name": "ticket 1 (renamed)",
        **{management.add_prefix(k): v for k, v in management.initial.items()},
    }
    for index, form in enumerate(formset.forms):
        data[f"{formset.prefix}-{index}-id"] = str(form.instance.pk)
    saved = staff_client.post(page_url, data)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    ticket.refresh_from_db()
    assert ticket.name == "ticket 1 (renamed)"
    assert Execution.objects.for_object(ticket).count() == 3


@override_settings(ROOT_URLCONF=__name__)
def test_execution_inline_on_an_object_with_no_executions(staff_client, ticket):
    response = staff_client.get(reverse("host_admin:auth_group_change", args=[ticket.pk]))

    assert response.status_code == 200
    assert "No executions are attributed to it yet." in response.content.decode()
    assert staff_client.get(reverse("host_admin:auth_group_add")).status_code == 200


def test_the_executions_list_refuses_a_half_given_object(staff_client, ticket):
    url = reverse("admin:llm_agents_execution_changelist")
    content_type = ContentType.objects.get_for_model(ticket)

    assert staff_client.get(url, {"subject_type": "x", "subject_id": ticket.pk}).status_code == 302  # ?e=1
    assert staff_client.get(url, {"subject_type": content_type.pk}).status_code == 302
    gone = staff_client.get(url, {"subject_type": content_type.pk, "subject_id": str(uuid.uuid4())})
    assert gone.status_code == 200 and list(gone.context["cl"].result_list) == []


# -- the API ---------------------------------------------------------------------------------------------


def test_the_api_shows_and_filters_by_the_object(staff_client):
    from tests.api_support import API

    ticket = Group.objects.create(pk=9001, name="ticket 9001")
    user = User.objects.create(pk=ticket.pk, username="same-pk")
    mine = ExecutionFactory(subject=ticket)
    ExecutionFactory(subject=user)
    ExecutionFactory()

    listed = staff_client.get(API + "executions/", {"subject_type": "auth.group", "subject_id": ticket.pk})
    assert listed.status_code == 200
    (row,) = listed.json()["results"]
    assert (row["id"], row["subject_type"], row["subject_id"]) == (str(mine.pk), "auth.group", str(ticket.pk))
    assert len(staff_client.get(API + "executions/", {"subject_id": ticket.pk}).json()["results"]) == 2
    detail = staff_client.get(API + f"executions/{mine.pk}/").json()
    assert (detail["subject_type"], detail["subject_id"]) == ("auth.group", str(ticket.pk))
    unattributed = staff_client.get(API + "executions/", {"subject_type": "", "ordering": "started_at"})
    assert unattributed.json()["results"][-1]["subject_type"] is None

    refused = staff_client.get(API + "executions/", {"subject_type": "shop.order"})
    assert refused.status_code == 400
    assert "subject_type" in refused.json() and "shop.order" in str(refused.json())


def test_the_export_carries_the_object_as_executions_shows_it(staff_client):
    from tests.api_support import API, body

    ticket = Group.objects.create(pk=9002, name="ticket 9002")
    mine = ExecutionFactory(subject=ticket)
    other = ExecutionFactory()

    exported = json.loads(body(staff_client.get(API + "export/", {"format": "json"})))
    attribution = {row["id"]: (row["subject_type"], row["subject_id"]) for row in exported}
    assert attribution == {str(mine.pk): ("auth.group", str(ticket.pk)), str(other.pk): (None, "")}
    listed = staff_client.get(API + "executions/").json()["results"]
    assert {row["id"]: (row["subject_type"], row["subject_id"]) for row in listed} == attribution
    assert all(set(row) == set(listed[0]) for row in exported)  # the JSON export's rows are executions/'s

    rows = csv.DictReader(io.StringIO(body(staff_client.get(API + "export/")).decode()))
    assert {row["id"]: (row["subject_type"], row["subject_id"]) for row in rows} == {
        str(mine.pk): ("auth.group", str(ticket.pk)),
        str(other.pk): ("", ""),
    }


def test_the_documented_annotation_lists_objects_with_their_cost(ticket):
    from django.db.models import CharField, OuterRef, Subquery, Sum
    from django.db.models.functions import Cast

    other, idle = Group.objects.create(name="ticket 2"), Group.objects.create(name="ticket 3")
    root = ExecutionFactory(subject=ticket, total_cost=Decimal("0.5"))
    ExecutionFactory(subject=ticket, parent=root, total_cost=Decimal("0.5"))
    ExecutionFactory(subject=other, total_cost=Decimal("2"))

    costs = (
        Execution.objects.filter(
            subject_type=ContentType.objects.get_for_model(Group),
            subject_id=Cast(OuterRef("pk"), CharField()),
            parent__isnull=True,
            eval_run__isnull=True,
        )
        .order_by()
        .values("subject_id")
        .annotate(total=Sum("total_cost"))
        .values("total")
    )
    rows = Group.objects.annotate(llm_cost=Subquery(costs)).order_by("pk").values_list("pk", "llm_cost")

    assert {pk: cost for pk, cost in rows} == {ticket.pk: cost_of(ticket)["total_cost"],
                                               other.pk: cost_of(other)["total_cost"], idle.pk: None}  # fmt: skip
