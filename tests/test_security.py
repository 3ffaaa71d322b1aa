"""Security: every API route and every admin page of the app refuses anonymous and non-staff users
(found by walking the URL resolvers, so a new endpoint cannot be left open), the admin is scoped to
the request's tenant when a tenant resolver is set, and provider keys never reach the database.

Elsewhere: CSV formula neutralisation (test_api_executions::test_export_neutralises_formula_cells),
``body_file`` traversal (test_sync_prompts, and test_properties for any file contents), API tenancy
(test_api_tenancy), the API for staff (test_api_permissions).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from llm_agents import Agent, Param, batches, trace
from llm_agents.errors import AuthenticationError
from llm_agents.models import (
    AgentPause,
    AlertChannel,
    AlertEvent,
    AlertRule,
    Budget,
    BudgetReservation,
    Dataset,
    EvalRun,
    Execution,
    PromptExperiment,
    Score,
    ScoreConfig,
    Span,
    SpendCounter,
)
from llm_agents.testing import fake_llm
from tests import fake_servers
from tests.api_support import API, TENANCY
from tests.factories import (
    BatchFactory,
    BatchRequestFactory,
    BudgetFactory,
    CostConfigFactory,
    ExecutionFactory,
    PromptVersionFactory,
    SpanFactory,
)
from tests.fake_servers import BatchLineError, openai_error
from tests.test_batches import RecordingHandler, batch_api, enqueue_many  # noqa: F401 (a fixture)
from tests.test_otel import WeatherAgent, spans  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

openai_server = fake_servers.openai_server

METHODS = ("get", "post", "put", "patch", "delete", "options")
# The converters and regex groups of the app's routes, and the admin's object ids by model.
PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def walk(patterns, prefix=""):
    """``(route, name)`` for every URL pattern below ``patterns``, routes joined."""
    for entry in patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$").replace("\\", "")
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.name


@pytest.fixture
def objects():
    execution = ExecutionFactory()
    version = PromptVersionFactory()
    batch = BatchFactory()
    budget = BudgetFactory()
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    version.prompt.update_content([{"role": "user", "content": "another"}])
    experiment = PromptExperiment.objects.create(
        prompt=version.prompt, name="e", metric="cost",
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )  # fmt: skip
    pause = AgentPause.objects.create(agent_type="SupportAgent", reason="refund loop")
    return {
        "execution": execution,
        "span": SpanFactory(execution=execution),
        "prompt": version.prompt,
        "promptversion": version,
        "batch": batch,
        "batchrequest": BatchRequestFactory(batch=batch),
        "budget": budget,
        "costconfig": CostConfigFactory(),
        "spendcounter": SpendCounter.objects.create(
            scope="global", scope_value="", day="2026-01-01", spend=Decimal("1"), tokens=1
        ),
        "budgetreservation": BudgetReservation.objects.create(
            agent_type="a", amount=Decimal("1"), tokens=1, expires_at="2030-01-01T00:00:00Z"
        ),
        "score": Score.objects.create(execution=execution, name="helpfulness", value=1.0),
        "scoreconfig": ScoreConfig.objects.create(name="helpfulness"),
        "dataset": dataset,
        "datasetitem": dataset.add_item({"question": "Hi"}, "Hello"),
        "evalrun": EvalRun.objects.create(
            dataset=dataset, agent_type="SupportAgent", target="app.SupportAgent"
        ),
        "promptexperiment": experiment,
        "experiment": experiment,
        "alertrule": AlertRule.objects.create(name="Errors up", metric="error_rate", threshold=5),
        "alertchannel": AlertChannel.objects.create(name="Ops", kind="email", target="ops@example.com"),
        "alertevent": AlertEvent.objects.create(value=1.0, payload={"kind": "test", "test": True}),
        "agentpause": pause,
        "pause": pause,
    }


def fill(route, name, objects):
    """``route`` with each parameter replaced by a value its view would accept."""

    def value(match):
        parameter = match.group("name") or match.group("group")
        if parameter == "app_label":
            return "llm_agents"
        if parameter == "object_id":
            model = name.removeprefix("llm_agents_").split("_")[0]
            return str(objects[model].pk)
        if parameter == "pk":
            model = name.removesuffix("-detail").removesuffix("-results").replace("-", "")
            model = (
                model.removesuffix("start").removesuffix("stop").removesuffix("promote").removesuffix("lift")
            )
            return str(objects.get(model, objects["execution"]).pk)
        if parameter == "slug":
            return objects["prompt"].slug
        if parameter == "name":
            return "production"
        if parameter == "number":
            return str(objects["promptversion"].number)
        if parameter == "agent_type":
            return "SupportAgent"
        if parameter == "session_id":
            return "conv-42"
        if parameter == "dataset_slug":
            return objects["dataset"].slug
        raise AssertionError(f"no value for the parameter {parameter!r} of {route} ({name})")

    return PARAMETER.sub(value, route)


def api_routes(objects):
    from llm_agents.api import urls

    routes = [(API + fill(route, name, objects), name) for route, name in walk(urls.urlpatterns)]
    for path, name in routes:
        assert resolve(path).url_name == name, path  # the filled path reaches the view it was made for
    return routes


def admin_routes(objects):
    """Every named admin URL of the app: the model admins' pages, their extra pages, the app index."""
    routes = []
    for route, name in walk(get_resolver().url_patterns):
        if route.startswith("admin/") and name and (name.startswith("llm_agents_") or name == "app_list"):
            path = "/" + fill(route, name, objects)
            assert resolve(path).url_name == name, path
            routes.append((path, name))
    return routes


@pytest.fixture
def member(client, django_user_model):
    """A logged-in user who is not staff."""
    client.force_login(django_user_model.objects.create_user(username="member", password="pw"))
    return client


def test_the_walk_finds_every_documented_endpoint_and_admin_page(objects):
    api = {name for _, name in api_routes(objects)}
    assert {"overview", "execution-list", "execution-detail", "agent-list", "agent-stats", "cost-summary",
            "cost-forecast", "trends", "model-comparison", "version-comparison", "errors", "export", "schema",
            "budget-list", "budget-detail", "prompt-list", "prompt-detail", "prompt-versions", "prompt-render",
            "batch-list", "batch-detail"} <= api  # fmt: skip
    admin = {name for _, name in admin_routes(objects)}
    for model in ("execution", "span", "prompt", "promptversion", "budget", "batch", "batchrequest",
                  "costconfig", "spendcounter", "budgetreservation", "score", "scoreconfig", "dataset", "datasetitem",
                  "evalrun", "promptexperiment", "alertrule", "alertchannel", "alertevent", "agentpause"):  # fmt: skip
        assert {f"llm_agents_{model}_changelist", f"llm_agents_{model}_change"} <= admin, model
    assert {"llm_agents_dashboard", "app_list", "llm_agents_prompt_version", "llm_agents_execution_sessions",
            "llm_agents_execution_session", "llm_agents_execution_add_score", "llm_agents_evalrun_compare"} <= admin  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_every_api_route_refuses_anonymous_and_non_staff_users_with_any_method(request, client, objects, who):
    if who == "member":
        request.getfixturevalue("member")
    for path, name in api_routes(objects):
        if name == "feedback":
            continue  # public: the signed token is the permission (below)
        for method in METHODS:
            response = getattr(client, method)(path, content_type="application/json")
            assert response.status_code in (401, 403), (method, path, name, response.status_code)


def test_the_public_feedback_route_takes_only_a_post_with_a_valid_token(client, objects):
    path = reverse("llm_agents_api:feedback")
    for method in METHODS:
        response = getattr(client, method)(
            path, {"name": "thumbs", "value": True}, content_type="application/json"
        )
        expected = {"post": 400, "options": 200}.get(method, 405)  # OPTIONS: DRF's description of the route
        assert response.status_code == expected, (method, response.status_code)
    forged = {"token": "forged:token", "name": "thumbs", "value": True}
    assert client.post(path, forged, content_type="application/json").status_code == 400
    assert not Score.objects.filter(source=Score.Source.FEEDBACK).exists()


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_every_admin_page_of_the_app_sends_anonymous_and_non_staff_users_to_the_login(
    request, client, objects, who
):
    if who == "member":
        request.getfixturevalue("member")
    for path, name in admin_routes(objects):
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 302, (method, path, name, response.status_code)
            assert response["Location"].startswith("/admin/login/?next="), (method, path)
    assert Execution.objects.filter(pk=objects["execution"].pk).exists()  # no POST deleted anything


# -- tenant isolation in the admin --------------------------------------------------------------


@pytest.fixture
def tenants():
    acme = ExecutionFactory(tenant_id="acme", agent_type="AcmeAgent")
    globex = ExecutionFactory(tenant_id="globex", agent_type="GlobexAgent")
    return {
        "acme": acme,
        "globex": globex,
        "acme_span": SpanFactory(execution=acme),
        "globex_span": SpanFactory(execution=globex),
        "acme_budget": BudgetFactory(name="acme", scope="tenant", scope_value="acme"),
        "globex_budget": BudgetFactory(name="globex", scope="tenant", scope_value="globex"),
        "global_budget": BudgetFactory(name="global", scope="global", scope_value=""),
        "batch": BatchFactory(),
    }


def listed(client, model, tenant=None):
    headers = {"X-Tenant": tenant} if tenant else {}
    response = client.get(f"/admin/llm_agents/{model}/", headers=headers)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


@override_settings(LLM_AGENTS=TENANCY)
def test_a_tenants_admin_shows_its_own_rows_only(staff_client, tenants):
    assert listed(staff_client, "execution", "acme") == {tenants["acme"].pk}
    assert listed(staff_client, "span", "acme") == {tenants["acme_span"].pk}
    assert listed(staff_client, "budget", "acme") == {tenants["acme_budget"].pk}
    assert listed(staff_client, "batch", "acme") == set()
    assert listed(staff_client, "execution", "globex") == {tenants["globex"].pk}

    page = staff_client.get(
        f"/admin/llm_agents/execution/{tenants['globex'].pk}/change/", headers={"X-Tenant": "acme"}
    )
    assert page.status_code == 302 and "GlobexAgent" not in page.content.decode()  # as if it did not exist
    own = staff_client.get(
        f"/admin/llm_agents/execution/{tenants['acme'].pk}/change/", headers={"X-Tenant": "acme"}
    )
    assert own.status_code == 200

    filters = staff_client.get("/admin/llm_agents/execution/", headers={"X-Tenant": "acme"}).content.decode()
    assert "AcmeAgent" in filters and "GlobexAgent" not in filters and "globex" not in filters

    dashboard = staff_client.get(
        "/admin/llm_agents/execution/dashboard/?period=30d", headers={"X-Tenant": "acme"}
    )
    assert dashboard.context["overview"]["total_executions"] == 1
    assert [row["agent_type"] for row in dashboard.context["agents"]] == ["AcmeAgent"]


@override_settings(LLM_AGENTS=TENANCY)
def test_a_tenants_execution_page_lists_only_its_own_nested_executions(staff_client, tenants):
    ExecutionFactory(tenant_id="acme", agent_type="AcmeChild", parent=tenants["acme"])
    ExecutionFactory(tenant_id="globex", agent_type="GlobexChild", parent=tenants["acme"])
    page = staff_client.get(
        f"/admin/llm_agents/execution/{tenants['acme'].pk}/change/", headers={"X-Tenant": "acme"}
    )
    assert [child["agent_type"] for child in page.context["children"]] == ["AcmeChild"]


@override_settings(LLM_AGENTS=TENANCY)
def test_without_a_tenant_only_superusers_see_every_tenant_in_the_admin(
    staff_client, client, django_user_model, tenants
):
    assert listed(staff_client, "execution") == {tenants["acme"].pk, tenants["globex"].pk}
    assert len(listed(staff_client, "budget")) == 3

    viewer = django_user_model.objects.create_user(username="viewer", password="pw", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_execution", "view_budget", "add_budget"])
    )
    client.force_login(viewer)
    assert listed(client, "execution") == set()
    assert listed(client, "budget") == set()
    assert client.get("/admin/llm_agents/budget/add/").status_code == 403
    assert listed(client, "execution", "acme") == {tenants["acme"].pk}


def budget_form(scope, scope_value, name="new"):
    return {"name": name, "scope": scope, "scope_value": scope_value, "is_active": "on", "period": "daily",
            "period_days": "", "limit_usd": "10", "token_limit": "", "enforcement": "warning",
            "alert_at_percentage": "80"}  # fmt: skip


@override_settings(LLM_AGENTS=TENANCY)
def test_a_tenant_adds_and_edits_only_its_own_budgets_in_the_admin(staff_client, tenants):
    acme = {"X-Tenant": "acme"}
    refused = staff_client.post("/admin/llm_agents/budget/add/", budget_form("global", ""), headers=acme)
    assert refused.status_code == 200
    assert "Your budgets must have scope tenant and scope value &#x27;acme&#x27;" in refused.content.decode()
    other = staff_client.post("/admin/llm_agents/budget/add/", budget_form("tenant", "globex"), headers=acme)
    assert other.status_code == 200
    assert not Budget.objects.filter(name="new").exists()

    created = staff_client.post("/admin/llm_agents/budget/add/", budget_form("tenant", "acme"), headers=acme)
    assert created.status_code == 302
    assert Budget.objects.get(name="new").scope_value == "acme"

    globex = tenants["globex_budget"]
    page = staff_client.get(f"/admin/llm_agents/budget/{globex.pk}/change/", headers=acme)
    assert page.status_code == 302
    staff_client.post(f"/admin/llm_agents/budget/{globex.pk}/delete/", {"post": "yes"}, headers=acme)
    assert Budget.objects.filter(pk=globex.pk).exists()


@override_settings(LLM_AGENTS={"MULTI_TENANCY": True})
def test_without_a_resolver_the_admin_is_not_scoped(staff_client, tenants):
    assert listed(staff_client, "execution", "acme") == {tenants["acme"].pk, tenants["globex"].pk}


# -- provider keys and error messages -----------------------------------------------------------

KEY = "sk-proj-" + "Zx81Qw" * 8


class KeyAgent(Agent):
    model = "gpt-4o-mini"
    question = Param(default="hi")

    def user_prompt(self):
        return self.question


def test_a_provider_error_echoing_the_api_key_is_stored_redacted(openai_server, staff_client):
    openai_server.enqueue(openai_error(401, f"Incorrect API key provided: {KEY}. Header was 'Bearer {KEY}'."))
    providers = {
        "openai": {"class": "llm_agents.providers.openai.OpenAIProvider", "api_key": KEY, "base_url": openai_server.url},
        "fake": "llm_agents.providers.fake.FakeProvider",
    }  # fmt: skip
    with override_settings(LLM_AGENTS={"PROVIDERS": providers}):
        with pytest.raises(AuthenticationError):
            KeyAgent.call()

    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key was really sent
    execution = Execution.objects.get()
    assert execution.error_message == (
        "OpenAI: Error code: 401 - Incorrect API key provided: [REDACTED]. Header was 'Bearer [REDACTED]'."
    )
    assert execution.attempts[0]["error_message"] == execution.error_message
    assert Span.objects.get().error_message == execution.error_message
    detail = staff_client.get(API + f"executions/{execution.pk}/").content.decode()
    assert "Zx81Qw" not in detail
    export = b"".join(staff_client.get(API + "export/", {"format": "json"}).streaming_content).decode()
    assert "Zx81Qw" not in export


def test_keys_in_urls_of_error_messages_are_redacted_and_the_parameter_kept():
    with pytest.raises(ConnectionError), trace("fetch"):
        raise ConnectionError("GET https://api.example.test/v1/x?key=AIzaSyA-1234567890&alt=json failed")
    assert Execution.objects.get().error_message == (
        "GET https://api.example.test/v1/x?key=[REDACTED]&alt=json failed"
    )


def test_redaction_keeps_the_token_counts_of_attempts():
    """``input_tokens`` holds the word "token" but is a count: the attempts keep it."""
    with fake_llm() as llm:
        llm.fail("rate_limit")
        llm.respond("fine", input_tokens=12, output_tokens=3)

        class RetryingAgent(KeyAgent):
            model = "fake/echo"
            retries = 1
            retry_backoff = 0

        RetryingAgent.call()
    attempts = Execution.objects.get().attempts
    assert [attempt["status"] for attempt in attempts] == ["error", "success"]
    assert (attempts[1]["input_tokens"], attempts[1]["output_tokens"]) == (12, 3)


def test_a_batch_error_echoing_a_key_is_stored_redacted(batch_api):  # noqa: F811 (the fixture)
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    try:
        enqueue_many(1)
        batches.flush()
        batch_api.respond = lambda custom_id, body: BatchLineError(
            401, f"Invalid key {KEY}.", "invalid_api_key"
        )
        batches.poll()
    finally:
        batches.handlers._handlers.clear()
    (request,) = handler.failures[0][:1]
    request.refresh_from_db()
    assert request.error == "invalid_api_key: Invalid key [REDACTED]."
    assert KEY not in json.dumps([request.execution.error_message, request.execution.attempts])


def test_the_opentelemetry_export_carries_no_key_in_its_error_statuses(spans):  # noqa: F811 (the fixture)
    with override_settings(LLM_AGENTS={"OTEL_EXPORT": True}):
        with fake_llm() as llm, pytest.raises(AuthenticationError):
            llm.fail("auth", message=f"Incorrect API key provided: {KEY}")
            WeatherAgent.call(question="q")
    finished = spans.get_finished_spans()
    descriptions = [span.status.description or "" for span in finished]
    assert any("Incorrect API key provided: [REDACTED]" in text for text in descriptions)
    assert all(KEY not in text for text in descriptions)
    assert all(KEY not in str(dict(span.attributes)) for span in finished)
