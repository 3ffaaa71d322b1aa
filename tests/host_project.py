"""Requests every route of ``llm_agents.api.urls`` inside a host project, as a staff user.

Run by ``tests/test_install.py`` in a project built from the README's lines (``DJANGO_SETTINGS_MODULE``
names its settings; its database is migrated already). Prints one JSON object: for each route name,
the status code, content type and body of the answer, and the status code an anonymous request gets.
"""

from __future__ import annotations

import json
from typing import Any

# Query parameters a route needs to answer 200 (``evals/compare/`` is filled in with the run's id).
REQUIRED_PARAMETERS: dict[str, dict[str, Any]] = {
    "version-comparison": {"agent_type": "SearchAgent", "versions": "1.0"},
    "score-summary": {"name": "helpfulness"},
}
# The body of the routes that only take a POST (the prompt's render).
RENDER_BODY = {"variables": {"company": "Acme", "question": "Where is my order?"}}


def route_kwargs(objects: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The path parameters of each route with parameters, filled with real objects."""
    return {
        "execution-detail": {"pk": objects["execution"].pk},
        "agent-stats": {"agent_type": objects["execution"].agent_type},
        "budget-detail": {"pk": objects["budget"].pk},
        "batch-detail": {"pk": objects["batch"].pk},
        "prompt-detail": {"slug": objects["prompt"].slug},
        "prompt-versions": {"slug": objects["prompt"].slug},
        "prompt-render": {"slug": objects["prompt"].slug},
        "session-detail": {"session_id": objects["execution"].session_id},
        "dataset-detail": {"slug": objects["dataset"].slug},
        "dataset-item-list": {"dataset_slug": objects["dataset"].slug},
        "dataset-item-detail": {"dataset_slug": objects["dataset"].slug, "pk": objects["item"].pk},
        "eval-run-detail": {"pk": objects["run"].pk},
        "eval-run-results": {"pk": objects["run"].pk},
        "pause-detail": {"pk": objects["pause"].pk},
        "pause-lift": {"pk": objects["pause"].pk},
        "prompt-labels": {"slug": objects["prompt"].slug},
        "prompt-move-label": {"slug": objects["prompt"].slug, "name": "staging"},
        "prompt-rollback": {"slug": objects["prompt"].slug},
        **{
            f"experiment-{action}": {"pk": objects["experiment"].pk}
            for action in ("detail", "promote", "results", "start", "stop")
        },
    }


#: The body each POST-only route is sent (the others get RENDER_BODY): a label moved to version 1, a
#: rollback to the current version (nothing to create), version 2 promoted.
POST_BODIES: dict[str, dict[str, Any]] = {
    "prompt-move-label": {"version": 1},
    "prompt-rollback": {"version": 2},
    "experiment-promote": {"version": 2},
}


def create_objects() -> dict[str, Any]:
    """One of each object the routes show."""
    from llm_agents import scores
    from llm_agents.models import AgentPause, Dataset, EvalRun, PromptExperiment
    from tests.factories import (
        BatchFactory,
        BudgetFactory,
        ExecutionFactory,
        PromptVersionFactory,
        SpanFactory,
    )

    execution = ExecutionFactory(agent_type="SearchAgent", agent_version="1.0", session_id="conv-1")
    SpanFactory(execution=execution)
    scores.add(execution, "helpfulness", 4)
    version = PromptVersionFactory()
    version.prompt.update_content([{"role": "user", "content": "A second version for {{company}}."}])
    experiment = PromptExperiment.objects.create(
        prompt=version.prompt, name="second", metric="cost",
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )  # fmt: skip
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    item = dataset.add_item(input={"query": "Where is my order?"}, expected_output="Tomorrow.")
    run = EvalRun.objects.create(dataset=dataset, agent_type="SearchAgent", target="app.SearchAgent")
    REQUIRED_PARAMETERS["eval-run-compare"] = {"a": str(run.pk), "b": str(run.pk)}
    return {
        "execution": execution,
        "budget": BudgetFactory(),
        "batch": BatchFactory(),
        "prompt": version.prompt,
        "experiment": experiment,
        "dataset": dataset,
        "item": item,
        "run": run,
        "pause": AgentPause.objects.create(agent_type="SearchAgent", reason="host check"),
    }


def request_every_route() -> dict[str, dict[str, Any]]:
    """GET every route (POST the ones without GET) as a staff user, and again anonymously."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client
    from django.urls import URLPattern, reverse

    from llm_agents.api import urls

    client, anonymous = Client(), Client()
    staff = get_user_model().objects.create_user("staff", is_staff=True)
    # Moves `production`; lifts the pause.
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["promote_prompt", "change_agentpause"])
    )
    client.force_login(staff)
    kwargs_by_route = route_kwargs(create_objects())
    answers = {}
    for pattern in urls.urlpatterns:
        assert isinstance(pattern, URLPattern), pattern
        name = str(pattern.name)
        if pattern.pattern.converters and name not in kwargs_by_route:
            answers[name] = {"status": None, "body": f"no object to fill the path of route {name!r}"}
            continue
        path = reverse(f"{urls.app_name}:{name}", kwargs=kwargs_by_route.get(name))
        if "get" in methods(pattern):
            response, refused = (c.get(path, REQUIRED_PARAMETERS.get(name, {})) for c in (client, anonymous))
        else:
            response, refused = (
                c.post(path, POST_BODIES.get(name, RENDER_BODY), content_type="application/json")
                for c in (client, anonymous)
            )
        body = b"".join(response.streaming_content) if response.streaming else response.content
        answers[name] = {
            "status": response.status_code,
            "content_type": response.get("Content-Type", ""),
            "body": body.decode()[:100_000],
            "anonymous_status": refused.status_code,
        }
    return answers


def methods(pattern: Any) -> set[str]:
    """The HTTP methods a route answers (lower case)."""
    actions = getattr(pattern.callback, "actions", None)
    if actions is not None:
        return set(actions)
    view_class = pattern.callback.view_class
    return {method for method in view_class.http_method_names if hasattr(view_class, method)}


def main() -> None:
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()
    print(json.dumps(request_every_route()))


if __name__ == "__main__":
    main()
