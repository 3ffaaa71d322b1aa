"""Property-based run of the whole API against its own OpenAPI schema (schemathesis).

Every operation of ``schema/`` is called with requests generated from the schema, authenticated as
staff, through the project's WSGI application; the run fails on any 5xx, any answer that does not
match the documented response schema, status code or content type. It makes well over 1,000
requests (the total is asserted) and takes well under a minute.
"""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
import schemathesis
from django.contrib.auth.models import Permission
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from llm_agents import scores
from llm_agents.models import AgentPause, Dataset, EvalResult, EvalRun, Execution, PromptExperiment
from tests.api_support import API
from tests.factories import (
    BatchFactory,
    BatchRequestFactory,
    BudgetFactory,
    ExecutionFactory,
    PromptFactory,
    SpanFactory,
)

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 80
MINIMUM_REQUESTS = 1000
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture
def wsgi_app():
    """The WSGI application, sharing the test's database connection (as Django's test client does)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        with override_settings(ALLOWED_HOSTS=["*"]):
            yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def some_data():
    parent = ExecutionFactory(tenant_id="acme", agent_version="2.0")
    ExecutionFactory(parent=parent)
    ExecutionFactory(failed=True, model_id="gpt-4o", error_message="=cmd|' /C calc'!A0")
    ExecutionFactory(status=Execution.Status.TIMEOUT, duration_ms=None, input_cost=Decimal("2"))
    span = SpanFactory(execution=parent)
    SpanFactory(execution=parent, parent=span)
    BudgetFactory()
    batch = BatchFactory(submitted=True)
    BatchRequestFactory(batch=batch, status="submitted")
    prompt = PromptFactory(slug="welcome")
    prompt.update_content([{"role": "user", "content": "Hello {{name}}{{#vip}} VIP{{/vip}}"}])
    ExecutionFactory(session_id="conv-1", user_id="u-1")
    scores.add(parent, "helpfulness", 4)
    prompt.update_content([{"role": "user", "content": "Hi {{name}}"}])
    prompt.set_label("staging", 1)
    experiment = PromptExperiment.objects.create(
        prompt=prompt, name="Hi or Hello", variants=[{"version": 1}, {"version": 2}], metric="cost"
    )
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    item = dataset.add_item({"question": "ping"}, "ping")
    run = EvalRun.objects.create(dataset=dataset, agent_type="Echo", target="tests.Echo")
    EvalResult.objects.create(run=run, item=item, output="ping")
    return {
        "execution": parent,
        "budget": BudgetFactory(name="kept"),
        "batch": batch,
        "item": item,
        "run": run,
        "experiment": experiment,
        "pause": AgentPause.objects.create(agent_type="SupportAgent", reason="kept"),
    }


def test_every_operation_conforms_to_the_schema(wsgi_app, django_user_model, some_data):
    staff = django_user_model.objects.create_user("staff", password="secret", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_agentpause", "change_agentpause"])
    )
    headers = {"Authorization": "Basic " + base64.b64encode(b"staff:secret").decode()}
    schema = schemathesis.openapi.from_wsgi(API + "schema/?format=json", wsgi_app, headers=headers)

    # Half the cases of an operation with path parameters address rows that exist, so detail views,
    # updates and renders are exercised beyond their 404s.
    known = {
        "/executions/{id}/": {"id": str(some_data["execution"].id)},
        "/budgets/{id}/": {"id": some_data["budget"].id},
        "/batches/{id}/": {"id": some_data["batch"].id},
        "/prompts/{slug}/": {"slug": "welcome"},
        "/prompts/{slug}/versions/": {"slug": "welcome"},
        "/prompts/{slug}/render/": {"slug": "welcome"},
        "/prompts/{slug}/rollback/": {"slug": "welcome"},
        "/prompts/{slug}/labels/": {"slug": "welcome"},
        "/prompts/{slug}/labels/{name}/": {"slug": "welcome", "name": "staging"},
        **{
            f"/experiments/{{id}}/{action}": {"id": str(some_data["experiment"].id)}
            for action in ("", "start/", "stop/", "promote/", "results/")
        },
        "/agents/{agent_type}/stats/": {"agent_type": "SupportAgent"},
        "/sessions/{session_id}/": {"session_id": "conv-1"},
        "/datasets/{slug}/": {"slug": "faq"},
        "/datasets/{dataset_slug}/items/": {"dataset_slug": "faq"},
        "/datasets/{dataset_slug}/items/{id}/": {"dataset_slug": "faq", "id": str(some_data["item"].id)},
        "/evals/{id}/": {"id": str(some_data["run"].id)},
        "/evals/{id}/results/": {"id": str(some_data["run"].id)},
        "/pauses/{id}/": {"id": some_data["pause"].id},
        "/pauses/{id}/lift/": {"id": some_data["pause"].id},
    }
    requests = 0
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            nonlocal requests
            requests += 1
            existing = known.get(case.operation.path.removeprefix(API[:-1]))
            if existing and requests % 2 and case.method.upper() != "DELETE":
                case.path_parameters = dict(existing)
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            run()
        except Exception as error:  # noqa: BLE001 - collected, reported together below
            failures.append(f"{operation.label}: {error}")

    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)
    print(f"schemathesis: {requests} requests, no failure")
    assert requests >= MINIMUM_REQUESTS
