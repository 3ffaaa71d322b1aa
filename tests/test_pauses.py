"""Agent pauses (SPEC sections 19 and 21): a paused agent raises ``AgentPausedError`` before any provider
request, the cache and the budgets, and its refused call is recorded; tenant scoping, expiry and lifting;
nested agents, streams and ``acall``; the ``pauses/`` API and the admin. Agents run through the real
openai SDK against the local fake server."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import override_settings
from django.utils import timezone

from llm_agents import Agent, Param, signals, tenant
from llm_agents.errors import AgentPausedError
from llm_agents.models import AgentPause, AlertRule, BudgetReservation, Execution

from .api_support import API, TENANCY
from .factories import BudgetFactory
from .fake_servers import openai_chat

pytestmark = pytest.mark.django_db

PROVIDER = {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": "k"}


@pytest.fixture
def openai(openai_server):
    """The openai provider (the real SDK) pointed at the fake server, which echoes the question."""
    with override_settings(LLM_AGENTS={"PROVIDERS": {"openai": {**PROVIDER, "base_url": openai_server.url}}}):
        yield openai_server


@pytest.fixture
def tenancy(openai_server):
    """As ``openai``, with MULTI_TENANCY and the API's tenant read from the ``X-Tenant`` header."""
    providers = {"openai": {**PROVIDER, "base_url": openai_server.url}}
    with override_settings(LLM_AGENTS={**TENANCY, "PROVIDERS": providers}):
        yield openai_server


class Support(Agent):
    model = "gpt-4o-mini"
    question = Param(default="Where is my order?")

    def user_prompt(self):
        return self.question


class Billing(Support):
    pass


class CachedSupport(Support):
    cache_ttl = 60


class Translator(Agent):
    """Translate a text."""

    model = "gpt-4o-mini"
    text = Param(required=True)

    def user_prompt(self):
        return f"Translate: {self.text}"


class Desk(Agent):
    model = "gpt-4o-mini"
    tools = [Translator]

    def user_prompt(self):
        return "Answer in French."


def pause(agent_type="Support", **values) -> AgentPause:
    return AgentPause.objects.create(agent_type=agent_type, **values)


def refused(call) -> tuple[AgentPausedError, Execution]:
    with pytest.raises(AgentPausedError) as raised:
        call()
    return raised.value, Execution.objects.filter(error_class="AgentPausedError").latest("started_at")


def assert_recorded_refusal(execution: Execution, agent_type: str = "Support") -> None:
    assert (execution.kind, execution.agent_type) == ("agent", agent_type)
    assert (execution.status, execution.error_class) == ("error", "AgentPausedError")
    assert (execution.total_tokens, execution.total_cost, execution.attempts_count) == (0, Decimal("0"), 0)
    assert not execution.spans.exists()


# -- calls -----------------------------------------------------------------------------------------


def test_a_paused_agent_makes_no_provider_request_and_its_call_is_recorded(openai):
    until = timezone.now() + dt.timedelta(hours=2)
    pause(reason="refund loop", until=until)

    error, execution = refused(Support.call)

    assert openai.requests == []
    assert str(error) == f"Support is paused until {until.isoformat()}: refund loop"
    assert error.pause == AgentPause.objects.get()
    assert_recorded_refusal(execution)
    assert execution.error_message == str(error)


def test_an_open_ended_pause_without_reason_says_so(openai):
    pause()
    error, _ = refused(Support.call)
    assert str(error) == "Support is paused until lifted: no reason given"


def test_a_pause_applies_to_its_agent_type_only(openai):
    pause("Billing")
    assert Support.call(question="hello").content == "hello"
    refused(Billing.call)
    assert len(openai.requests) == 1


def test_a_pause_whose_until_has_passed_no_longer_applies(openai):
    pause(until=timezone.now() - dt.timedelta(seconds=1), reason="over")
    assert Support.call(question="back").content == "back"
    assert Execution.objects.get().status == "success"


def test_a_lifted_pause_stops_applying_on_the_next_call_and_stays_as_history(openai):
    made = pause(reason="investigating")
    refused(Support.call)

    assert AgentPause.objects.filter(agent_type="Support").lift() == 1
    assert Support.call(question="again").content == "again"

    made.refresh_from_db()
    assert made.until is not None and made.until <= timezone.now() and not made.in_force()
    assert AgentPause.objects.filter(agent_type="Support").lift() == 0  # nothing in force to lift


def test_a_tenant_pause_applies_only_inside_that_tenant(openai):
    pause(tenant_id="acme", reason="abuse")
    providers = {"openai": {**PROVIDER, "base_url": openai.url}}
    with override_settings(LLM_AGENTS={"MULTI_TENANCY": True, "PROVIDERS": providers}):
        with tenant("acme"):
            error, execution = refused(Support.call)
        with tenant("globex"):
            assert Support.call(question="globex").content == "globex"
        assert Support.call(question="nobody").content == "nobody"

    assert str(error) == "Support is paused in tenant 'acme' until lifted: abuse"
    assert execution.tenant_id == "acme"
    assert len(openai.requests) == 2


def test_a_pause_for_every_tenant_applies_in_each(tenancy):
    pause(reason="everywhere")
    for name in ("acme", "globex"):
        with tenant(name):
            refused(Support.call)
    assert tenancy.requests == []


def test_the_pause_comes_before_the_budgets(openai):
    BudgetFactory(limit_usd=Decimal("0"))  # a hard stop that would refuse the call too
    checked = []
    signals.budget_checked.connect(receiver := lambda **kwargs: checked.append(kwargs), weak=False)
    try:
        pause()
        refused(Support.call)
    finally:
        signals.budget_checked.disconnect(receiver)
    assert checked == [] and not BudgetReservation.objects.exists()


def test_a_cached_answer_is_not_served_while_paused(openai):
    assert CachedSupport.call(question="cached").content == "cached"
    pause("CachedSupport")
    error, execution = refused(lambda: CachedSupport.call(question="cached"))
    assert not execution.cache_hit
    assert len(openai.requests) == 1


def test_a_paused_nested_agent_is_refused_and_the_model_is_told(openai):
    pause("Translator", reason="bad translations")
    openai.enqueue(
        openai_chat(tool_calls=[{"id": "t1", "name": "Translator", "arguments": {"text": "hello"}}]),
        openai_chat("I could not translate it."),
    )

    result = Desk.call()

    assert result.content == "I could not translate it."
    assert len(openai.requests) == 2  # the desk's two requests; none by the translator
    tool_message = openai.requests[1].json["messages"][-1]
    assert "AgentPausedError" in tool_message["content"] and "bad translations" in tool_message["content"]
    nested = Execution.objects.get(agent_type="Translator")
    assert nested.parent_id == result.execution_id
    assert_recorded_refusal(nested, "Translator")


def test_a_paused_agent_refuses_to_stream_before_any_chunk(openai):
    pause(reason="no streams")
    chunks: list[str] = []
    error, execution = refused(lambda: chunks.extend(Support.stream()))
    assert chunks == [] and openai.requests == []
    assert execution.streaming is True
    assert_recorded_refusal(execution)


@pytest.mark.django_db(transaction=True)
def test_a_paused_agent_refuses_acall(openai):
    pause(reason="async too")
    error, execution = refused(lambda: asyncio.run(Support.acall()))
    assert "async too" in str(error) and openai.requests == []
    assert_recorded_refusal(execution)


def test_refusals_count_as_other_in_error_analysis_whatever_the_reason_says(openai):
    pause(reason="timeout spike and connection errors")
    refused(Support.call)
    categories = Execution.objects.error_analysis()["categories"]
    assert categories["other"] == 1
    assert categories["timeout"] == categories["network"] == 0


def test_the_check_is_one_query(openai, django_assert_num_queries):
    from llm_agents.agents.base import Run

    run = Run(Support(), streaming=False)
    with django_assert_num_queries(1):
        run.refuse_if_paused("acme")


# -- API -------------------------------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model):
    """A staff user who may pause (add) and lift (change), and nothing else."""
    user = django_user_model.objects.create_user(username="operator", password="password", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_agentpause", "change_agentpause"])
    )
    return user


def post(client, path, data=None, **headers):
    return client.post(API + path, data or {}, content_type="application/json", **headers)


def test_api_pause_takes_effect_on_the_next_call_and_lift_ends_it(client, operator, openai):
    client.force_login(operator)
    response = post(client, "pauses/", {"agent_type": "Support", "reason": "refund loop"})

    assert response.status_code == 201, response.content
    created = response.json()
    expected = {"agent_type": "Support", "tenant_id": "", "reason": "refund loop", "until": None}
    expected |= {"created_by": "operator", "rule": None, "in_force": True}
    assert {key: created[key] for key in expected} == expected
    assert AgentPause.objects.get().created_by == operator
    refused(Support.call)
    assert client.get(API + f"pauses/{created['id']}/").json() == created

    lifted = post(client, f"pauses/{created['id']}/lift/")
    assert lifted.status_code == 200
    assert lifted.json()["in_force"] is False and lifted.json()["until"] is not None
    assert Support.call(question="running").content == "running"
    again = post(client, f"pauses/{created['id']}/lift/")
    assert again.json()["until"] == lifted.json()["until"]  # lifted once: unchanged


def test_api_create_with_until_and_an_unknown_agent_type(staff_client):
    until = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    body = {"agent_type": "NoSuchAgent", "tenant_id": "acme", "until": until.isoformat()}
    response = post(staff_client, "pauses/", body)
    assert response.status_code == 201, response.content
    pause = AgentPause.objects.get()
    assert (pause.agent_type, pause.tenant_id, pause.until) == ("NoSuchAgent", "acme", until)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent_type"),
        ({"agent_type": "   "}, "agent_type"),
        ({"agent_type": "x" * 256}, "agent_type"),
        ({"agent_type": "Sup\x00port"}, "agent_type"),
        ({"agent_type": "Support", "tenant_id": "t" * 256}, "tenant_id"),
        ({"agent_type": "Support", "until": "tomorrow"}, "until"),
        ({"agent_type": "Support", "until": "2001-01-01T00:00:00Z"}, "until"),
        ({"agent_type": "Support", "reason": ["a list"]}, "reason"),
    ],
)
def test_api_bad_input_is_a_400_naming_the_field_and_writes_nothing(staff_client, body, field):
    response = post(staff_client, "pauses/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert not AgentPause.objects.exists()


def test_api_list_filters(staff_client):
    now = timezone.now()
    running = pause("Support", tenant_id="acme")
    ended = pause("Support", until=now - dt.timedelta(minutes=1))
    other = pause("Billing", until=now + dt.timedelta(hours=1))

    def ids(query=""):
        response = staff_client.get(API + "pauses/" + query)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [other.id, ended.id, running.id]  # newest first
    assert ids("?active=true") == [other.id, running.id]
    assert ids("?active=false") == [ended.id]
    assert ids("?agent_type=Support") == [ended.id, running.id]
    assert ids("?tenant_id=acme") == [running.id]
    bad = staff_client.get(API + "pauses/?active=maybe")
    assert bad.status_code == 400 and "active" in bad.json()


def test_api_permissions(client, django_user_model, operator):
    made = pause()
    assert client.get(API + "pauses/").status_code == 403
    assert post(client, "pauses/", {"agent_type": "Support"}).status_code == 403

    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    client.force_login(viewer)
    assert client.get(API + "pauses/").status_code == 200
    assert client.get(API + f"pauses/{made.id}/").status_code == 200
    refused_create = post(client, "pauses/", {"agent_type": "Support"})
    assert refused_create.status_code == 403 and "add_agentpause" in refused_create.json()["detail"]
    assert post(client, f"pauses/{made.id}/lift/").status_code == 403
    assert AgentPause.objects.count() == 1 and made.in_force()

    client.force_login(operator)
    assert client.delete(API + f"pauses/{made.id}/").status_code == 405
    assert (
        client.patch(API + f"pauses/{made.id}/", {"until": None}, content_type="application/json").status_code
        == 405
    )
    assert post(client, f"pauses/{made.id}/lift/").status_code == 200


def test_api_tenant_requests_see_and_pause_their_tenant_only(client, operator, tenancy):
    client.force_login(operator)
    mine, theirs, everywhere = pause(tenant_id="acme"), pause(tenant_id="globex"), pause()
    acme = {"HTTP_X_TENANT": "acme"}

    listed = client.get(API + "pauses/", **acme).json()["results"]
    assert [row["id"] for row in listed] == [mine.id]
    assert client.get(API + f"pauses/{theirs.id}/", **acme).status_code == 404
    assert post(client, f"pauses/{everywhere.id}/lift/", **acme).status_code == 404

    created = post(client, "pauses/", {"agent_type": "Billing"}, **acme)
    assert created.status_code == 201 and created.json()["tenant_id"] == "acme"
    for tenant_id in ("globex", ""):
        wrong = post(client, "pauses/", {"agent_type": "Billing", "tenant_id": tenant_id}, **acme)
        assert wrong.status_code == 400 and "tenant_id" in wrong.json()
    assert AgentPause.objects.filter(agent_type="Billing").count() == 1


# -- admin -----------------------------------------------------------------------------------------

CHANGELIST = "/admin/llm_agents/agentpause/"


def texts(response):
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    response.client.cookies.pop("messages", None)
    return shown


def add(client, agent_type, **values):
    data = {"agent_type": agent_type, "tenant_id": "", "reason": "", "until_0": "", "until_1": "", **values}
    return client.post(CHANGELIST + "add/", data)


def test_admin_add_sets_created_by_and_warns_about_an_unknown_agent_type(staff_client, staff_superuser):
    response = add(staff_client, "Suport", reason="typo on purpose")

    assert response.status_code == 302
    made = AgentPause.objects.get()
    assert (made.agent_type, made.reason, made.until) == ("Suport", "typo on purpose", None)
    assert made.created_by == staff_superuser
    [warning] = [text for text in texts(response) if "No Agent subclass declares" in text]
    assert "'Suport'" in warning


def test_admin_add_of_a_declared_or_recorded_agent_type_does_not_warn(staff_client):
    assert not any("No Agent subclass" in text for text in texts(add(staff_client, "Support")))
    Execution.objects.create(kind="agent", agent_type="OnlyInWorkers", model_id="gpt-4o-mini")
    assert not any("No Agent subclass" in text for text in texts(add(staff_client, "OnlyInWorkers")))


def test_admin_lift_action_lifts_what_is_in_force_and_keeps_history(staff_client):
    now = timezone.now()
    running, ended = pause(reason="a"), pause(until=now - dt.timedelta(hours=1), reason="b")

    response = staff_client.post(CHANGELIST, {"action": "lift", "_selected_action": [running.pk, ended.pk]})

    assert texts(response) == ["1 pause(s) lifted."]
    running.refresh_from_db()
    assert running.until is not None and not running.in_force()
    assert AgentPause.objects.get(pk=ended.pk).until == ended.until
    assert AgentPause.objects.count() == 2


def test_admin_list_shows_state_and_the_rule_of_rule_made_pauses(staff_client):
    rule = AlertRule.objects.create(
        name="Error spike", metric="error_rate", threshold=20, pause_agent=True, agent_type="Support"
    )
    pause(rule=rule, reason="Error spike fired")
    pause("Billing", tenant_id="acme", until=timezone.now() - dt.timedelta(minutes=5))

    page = staff_client.get(CHANGELIST).content.decode()
    assert f"/admin/llm_agents/alertrule/{rule.pk}/change/" in page and "Error spike" in page
    assert "every tenant" in page and "acme" in page
    in_force = staff_client.get(CHANGELIST, {"in_force": "yes"}).content.decode()
    assert "Error spike fired" in in_force and "acme" not in in_force


def test_admin_change_keeps_what_was_paused(staff_client):
    made = pause(reason="old")
    data = {"agent_type": "Other", "reason": "new", "until_0": "", "until_1": ""}
    response = staff_client.post(CHANGELIST + f"{made.pk}/change/", data)
    assert response.status_code == 302
    made.refresh_from_db()
    assert (made.agent_type, made.reason) == ("Support", "new")


def test_admin_add_needs_the_add_permission(client, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agentpause"))
    client.force_login(viewer)
    assert client.get(CHANGELIST).status_code == 200
    assert add(client, "Support").status_code == 403
    assert not AgentPause.objects.exists()
