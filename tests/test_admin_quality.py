"""The quality loop in the admin: scores on the execution page (and the form adding a human one),
the executions list's filters by session, end user and tag and its "Add to dataset…" action, the
sessions list and a session's page, the Score, ScoreConfig, Dataset and EvalRun admins, two runs
side by side, and the dashboard's score tile."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from llm_agents import Agent, Param, Tool, evals, scores, session
from llm_agents.admin.scoring import typed_value
from llm_agents.models import (
    CostConfig,
    Dataset,
    DatasetItem,
    EvalResult,
    EvalRun,
    Execution,
    Score,
    ScoreConfig,
)
from llm_agents.testing import fake_llm

from .api_support import TENANCY
from .factories import ExecutionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:llm_agents_execution_changelist"


class Lookup(Tool):
    name = "lookup_order"
    description = "Find an order"
    order = Param(required=True)

    def run(self, order):
        return {"order": order, "status": "shipped"}


class SupportAgent(Agent):
    model = "gpt-4o-mini"
    tools = [Lookup]
    question = Param(required=True)

    def system_prompt(self):
        return "You answer customers."

    def user_prompt(self):
        return self.question


def change_url(execution: Execution) -> str:
    return reverse("admin:llm_agents_execution_change", args=[execution.pk])


def add_score_url(execution: Execution) -> str:
    return reverse("admin:llm_agents_execution_add_score", args=[execution.pk])


def session_url(session_id: str) -> str:
    return reverse("admin:llm_agents_execution_session", args=[session_id])


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def listed(response) -> set:
    return {execution.pk for execution in response.context["cl"].result_list}


@pytest.fixture
def prices(db):
    CostConfig.objects.create(model="gpt-4o-mini", input_price_per_mtok=Decimal("0.15"),
                              output_price_per_mtok=Decimal("0.6"), effective_from="2020-01-01T00:00Z")  # fmt: skip


@pytest.fixture
def conversation(prices):
    """Session conv-42 of user u-7 (tag beta): three turns, the second calling a tool; session conv-99
    of user u-8 (tag alpha): one turn; and one call of no session."""
    with fake_llm() as llm:
        llm.respond("Hello! How can I help?", input_tokens=100, output_tokens=20)
        llm.respond(tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": {"order": "A-17"}}])
        llm.respond("Order A-17 has shipped.", input_tokens=200, output_tokens=30)
        llm.respond("You're welcome.", input_tokens=50, output_tokens=10)
        llm.respond("Our hours are 9 to 5.", input_tokens=40, output_tokens=10)
        llm.respond("No session here.")
        with session("conv-42", user_id="u-7", tags=["beta"]):
            first = SupportAgent.call(question="Hi there").execution
            second = SupportAgent.call(question="Where is order A-17?").execution
            third = SupportAgent.call(question="Thanks!").execution
        other = SupportAgent.call(question="When are you open?", _session_id="conv-99", _user_id="u-8",
                                  _tags=["alpha"]).execution  # fmt: skip
        lone = SupportAgent.call(question="Anything").execution
    return {"turns": [first, second, third], "other": other, "lone": lone}


@pytest.fixture
def viewer(django_user_model):
    """A staff user who may view executions, and nothing else."""
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_execution"))
    return user


def faq(slug: str, pairs: list[tuple[str, str]]) -> tuple[Dataset, list[DatasetItem]]:
    """A dataset of SupportAgent questions with their expected answers, items in the order given."""
    dataset = Dataset.objects.create(slug=slug, name=slug.replace("-", " ").capitalize())
    items = dataset.add_items(
        dataset.build_item({"question": question}, answer) for question, answer in pairs
    )
    return dataset, items


def run_of(dataset: Dataset, name: str, answers: list[str | None]) -> EvalRun:
    """``evals.run`` of SupportAgent over ``dataset`` scored by exact_match and similarity, the fake
    provider giving ``answers`` to the items in their order (None: the call fails)."""
    with fake_llm() as llm:
        for answer in answers:
            if answer is None:
                llm.fail("server_error")
            else:
                llm.respond(answer)
        return evals.run(
            dataset, SupportAgent, evaluators=["exact_match", "similarity"], name=name, concurrency=1
        )


@pytest.fixture
def two_runs(prices):
    """A baseline run that answers one of three questions right (one call fails) and a candidate
    that answers all three right."""
    dataset, items = faq(
        "support-faq",
        [
            ("When are you open?", "9 to 5"),
            ("Can I get a refund?", "Yes, within 30 days"),
            ("Do you ship abroad?", "Yes"),
        ],
    )
    baseline = run_of(dataset, "baseline", ["9 to 5", "No refunds", None])
    candidate = run_of(dataset, "candidate", ["9 to 5", "Yes, within 30 days", "Yes"])
    return {"dataset": dataset, "a": candidate, "b": baseline, "items": items}


# -- every page, staff only -------------------------------------------------------------------------


def page_urls(conversation, two_runs) -> dict[str, tuple[str, str]]:
    """Each page of this module's admin, with a text it must show."""
    execution = conversation["turns"][1]
    score = scores.add(execution, "helpfulness", 4, source="human")
    config = ScoreConfig.objects.create(name="helpfulness", min_value=1, max_value=5)
    run, other, dataset = two_runs["a"], two_runs["b"], two_runs["dataset"]
    item = two_runs["items"][0]
    return {
        "execution": (change_url(execution), "Where is order A-17?"),
        "sessions": (reverse("admin:llm_agents_execution_sessions"), "conv-42"),
        "session": (session_url("conv-42"), "Order A-17 has shipped."),
        "score list": (reverse("admin:llm_agents_score_changelist"), "helpfulness"),
        "score": (reverse("admin:llm_agents_score_change", args=[score.pk]), "helpfulness"),
        "score config list": (reverse("admin:llm_agents_scoreconfig_changelist"), "helpfulness"),
        "score config": (reverse("admin:llm_agents_scoreconfig_change", args=[config.pk]), "helpfulness"),
        "score config add": (reverse("admin:llm_agents_scoreconfig_add"), "Data type"),
        "dataset list": (reverse("admin:llm_agents_dataset_changelist"), "support-faq"),
        "dataset": (reverse("admin:llm_agents_dataset_change", args=[dataset.pk]), "When are you open?"),
        "dataset add": (reverse("admin:llm_agents_dataset_add"), "Slug"),
        "item list": (reverse("admin:llm_agents_datasetitem_changelist"), "Can I get a refund?"),
        "item": (reverse("admin:llm_agents_datasetitem_change", args=[item.pk]), "When are you open?"),
        "run list": (reverse("admin:llm_agents_evalrun_changelist"), "candidate"),
        "run": (reverse("admin:llm_agents_evalrun_change", args=[run.pk]), "exact_match"),
        "compare": (
            reverse("admin:llm_agents_evalrun_compare", args=[run.pk]) + f"?b={other.pk}",
            "Items side by side",
        ),
        "dashboard": (reverse("admin:llm_agents_dashboard") + "?score=helpfulness", "helpfulness"),
    }


def test_every_page_renders_for_staff(staff_client, conversation, two_runs):
    for page, (url, shown) in page_urls(conversation, two_runs).items():
        response = staff_client.get(url)
        assert response.status_code == 200, page
        assert shown in response.content.decode(), page


def test_pages_refuse_visitors_and_staff_without_permission(client, django_user_model, conversation,
                                                            two_runs, viewer):  # fmt: skip
    urls = page_urls(conversation, two_runs)
    for page, (url, _shown) in urls.items():
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], page

    customer = django_user_model.objects.create_user(username="customer", password="x")
    client.force_login(customer)
    for page, (url, _shown) in urls.items():
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], page

    # Staff who may view executions but nothing of the quality loop.
    client.force_login(viewer)
    for page in ("execution", "sessions", "session"):
        assert client.get(urls[page][0]).status_code == 200, page
    for page in ("score list", "score config list", "dataset list", "run list", "run", "compare"):
        assert client.get(urls[page][0]).status_code == 403, page
    viewer.user_permissions.remove(Permission.objects.get(codename="view_execution"))
    for page in ("execution", "sessions", "session"):
        assert client.get(urls[page][0]).status_code == 403, page


# -- scores on the execution page -----------------------------------------------------------------------


def test_execution_page_shows_its_scores_session_user_and_tags(staff_client, staff_superuser, conversation):
    execution = conversation["turns"][1]
    scores.add(execution, "helpfulness", 4, comment="Found the order", source="human", author=staff_superuser)
    scores.add(execution, "resolved", True)
    scores.add(conversation["other"], "elsewhere", 1)
    html = staff_client.get(change_url(execution)).content.decode()

    table = html[html.index('id="score-table"') : html.index("</table>", html.index('id="score-table"'))]
    assert re.search(r'data-score="helpfulness">\s*<th scope="row">helpfulness</th>\s*<td class="value">4.0</td>'
                     r"\s*<td>human</td>\s*<td>admin</td>\s*<td>Found the order</td>", table)  # fmt: skip
    assert re.search(r'data-score="resolved">.*?<td class="value">True</td>\s*<td>API</td>\s*<td>–</td>', table,
                     re.S)  # fmt: skip
    assert "elsewhere" not in table
    assert f'href="{session_url("conv-42")}"' in html
    assert f'href="{reverse(CHANGELIST)}?user_id=u-7"' in html
    assert f'href="{reverse(CHANGELIST)}?tag=beta"' in html
    assert 'form id="llm-add-score" method="post"' in html and add_score_url(execution) in html
    assert 'name="csrfmiddlewaretoken"' in html[html.index('id="llm-add-score"') :]


def test_add_score_form_stores_a_human_score_by_the_staff_user(staff_client, staff_superuser, conversation):
    execution = conversation["turns"][0]
    ScoreConfig.objects.create(name="tone", data_type="categorical", categories=["warm", "cold"])
    response = staff_client.post(
        add_score_url(execution), {"name": "helpfulness", "value": "4", "comment": "ok"}
    )
    assert response.status_code == 302
    assert response["Location"] == change_url(execution) + "#scores"
    assert messages_of(response) == ["Score helpfulness = 4.0 added."]
    staff_client.post(add_score_url(execution), {"name": "resolved", "value": "yes"})
    staff_client.post(add_score_url(execution), {"name": "tone", "value": "warm"})

    found = {score.name: score for score in execution.scores.all()}
    assert set(found) == {"helpfulness", "resolved", "tone"}
    assert (found["helpfulness"].value, found["helpfulness"].data_type) == (4.0, "numeric")
    assert (found["resolved"].value, found["resolved"].data_type) == (1.0, "boolean")
    assert (found["tone"].string_value, found["tone"].data_type) == ("warm", "categorical")
    for score in found.values():
        assert score.source == "human" and score.author == staff_superuser
    assert found["helpfulness"].comment == "ok"
    page = staff_client.get(change_url(execution)).content.decode()
    assert '<td class="value">warm</td>' in page


@pytest.mark.parametrize(
    "posted, named",
    [
        ({"name": "helpfulness", "value": "9"}, "value"),  # above the config's 5
        ({"name": "helpfulness", "value": "good"}, "value"),  # not a number
        ({"name": "free", "value": "nan"}, "value"),
        ({"name": "", "value": "3"}, "name"),
        ({"name": "free", "value": ""}, "value"),
    ],
)
def test_add_score_form_rejects_what_does_not_fit_naming_the_field(staff_client, conversation, posted, named):
    ScoreConfig.objects.create(name="helpfulness", min_value=1, max_value=5)
    execution = conversation["turns"][0]
    response = staff_client.post(add_score_url(execution), posted, follow=True)
    assert response.redirect_chain == [(change_url(execution) + "#scores", 302)]
    errors = [message for message in response.context["messages"] if message.level_tag == "error"]
    assert errors and all(f"{named}:" in str(message) for message in errors), [str(m) for m in errors]
    assert not Score.objects.exists()
    assert 'class="error"' in response.content.decode()


def test_add_score_needs_post_csrf_and_permission(client, staff_superuser, viewer, conversation):
    execution = conversation["turns"][0]
    client.force_login(staff_superuser)
    assert client.get(add_score_url(execution)).status_code == 405

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_superuser)
    assert strict.post(add_score_url(execution), {"name": "x", "value": "1"}).status_code == 403

    client.force_login(viewer)
    assert "llm-add-score" not in client.get(change_url(execution)).content.decode()
    assert client.post(add_score_url(execution), {"name": "x", "value": "1"}).status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="add_score"))
    client.force_login(viewer)
    assert client.post(add_score_url(execution), {"name": "x", "value": "1"}).status_code == 302
    assert Score.objects.get().author == viewer
    assert not Score.objects.exclude(source="human").exists()


@pytest.mark.parametrize(
    "text, data_type, expected",
    [
        ("4", None, 4.0), ("0.5", None, 0.5), ("true", None, True), ("No", None, False), ("happy", None, "happy"),
        ("1", "boolean", True), ("0", "boolean", False), ("maybe", "boolean", "maybe"),
        ("3", "categorical", "3"), ("x", "numeric", "x"),
    ],
)  # fmt: skip
def test_typed_value_follows_the_config(text, data_type, expected):
    config = ScoreConfig(name="n", data_type=data_type) if data_type else None
    value = typed_value(text, config)
    assert value == expected and type(value) is type(expected)


def test_execution_page_queries_do_not_grow_with_scores(staff_client, conversation):
    execution = conversation["turns"][1]
    scores.add(execution, "helpfulness", 3)
    with CaptureQueriesContext(connection) as few:
        staff_client.get(change_url(execution))
    for n in range(10):
        scores.add(execution, f"name{n}", n)
        ScoreConfig.objects.create(name=f"config{n}")
    with CaptureQueriesContext(connection) as more:
        assert staff_client.get(change_url(execution)).status_code == 200
    assert len(more) == len(few)


# -- the executions list: filters and "Add to dataset…" ------------------------------------------------


def test_list_filters_by_session_user_and_tag(staff_client, conversation):
    turns, other = {e.pk for e in conversation["turns"]}, conversation["other"]
    url = reverse(CHANGELIST)
    assert listed(staff_client.get(url, {"session_id": "conv-42"})) == turns
    assert listed(staff_client.get(url, {"user_id": "u-8"})) == {other.pk}
    assert listed(staff_client.get(url, {"tag": "beta"})) == turns
    assert listed(staff_client.get(url, {"tag": "alpha"})) == {other.pk}
    assert listed(staff_client.get(url, {"tag": "gamma"})) == set()
    assert listed(staff_client.get(url, {"tag": "beta", "user_id": "u-8"})) == set()
    response = staff_client.get(url, {"session_id": "conv-42"})
    assert response.context["cl"].result_count == 3
    html = response.content.decode()
    for name in ("session_id", "user_id", "tag"):
        assert f'data-filter="{name}"' in html
    assert 'name="session_id" value="conv-42"' in html
    assert reverse("admin:llm_agents_execution_sessions") in html


def select(executions) -> dict:
    return {"action": "add_to_dataset", ACTION_CHECKBOX_NAME: [str(e.pk) for e in executions], "index": 0}


def test_add_to_dataset_action_creates_a_dataset_of_the_selected_executions(staff_client, conversation):
    first, second, _third = conversation["turns"]
    page = staff_client.post(reverse(CHANGELIST), select([first, second]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "2 executions will be copied" in html
    assert html.count(f'name="{ACTION_CHECKBOX_NAME}"') == 2
    assert not Dataset.objects.exists()

    response = staff_client.post(
        reverse(CHANGELIST),
        {**select([first, second]), "slug": "tickets", "name": "Tickets", "apply": "Add to dataset"},
    )
    assert response.status_code == 302
    dataset = Dataset.objects.get(slug="tickets")
    assert dataset.name == "Tickets"
    items = list(dataset.items.order_by("created_at", "id"))
    assert [item.input for item in items] == [{"question": "Hi there"}, {"question": "Where is order A-17?"}]
    assert [item.expected_output for item in items] == ["Hello! How can I help?", "Order A-17 has shipped."]
    assert {item.source_execution_id for item in items} == {first.pk, second.pk}
    assert messages_of(response) == [
        f'Added 2 executions to the dataset <a href="{reverse("admin:llm_agents_dataset_change", args=[dataset.pk])}">'
        "Tickets</a>."
    ]


def test_add_to_dataset_action_fills_an_existing_dataset(staff_client, conversation):
    dataset = Dataset.objects.create(slug="faq", name="FAQ")
    dataset.add_executions(Execution.objects.filter(pk=conversation["turns"][0].pk))
    everything = {**select(conversation["turns"][:1]), "select_across": "1", "dataset": dataset.pk,
                  "apply": "Add to dataset"}  # fmt: skip
    response = staff_client.post(reverse(CHANGELIST) + "?session_id=conv-42", everything)
    assert response.status_code == 302
    assert messages_of(response)[0].startswith("Added 2 executions")  # the first was there already
    assert dataset.items.count() == 3
    assert set(dataset.items.values_list("source_execution_id", flat=True)) == {
        e.pk for e in conversation["turns"]
    }


@pytest.mark.parametrize(
    "posted, field, message",
    [
        ({}, "dataset", "Choose a dataset, or give a slug to create one."),
        ({"slug": "faq"}, "slug", "A dataset with slug &#x27;faq&#x27; exists; choose it above."),
        ({"slug": "not a slug"}, "slug", "Enter a valid “slug”"),
    ],
)
def test_add_to_dataset_action_explains_what_is_missing(staff_client, conversation, posted, field, message):
    Dataset.objects.create(slug="faq", name="FAQ")
    response = staff_client.post(
        reverse(CHANGELIST), {**select(conversation["turns"][:1]), **posted, "apply": "Add to dataset"}
    )
    assert response.status_code == 200
    assert list(response.context["form"].errors) == [field]
    assert message in response.content.decode()
    assert Dataset.objects.count() == 1 and not DatasetItem.objects.exists()


def test_add_to_dataset_needs_permission_to_add_items(client, viewer, conversation):
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert "add_to_dataset" not in response.content.decode()
    viewer.user_permissions.add(Permission.objects.get(codename="add_datasetitem"))
    client.force_login(viewer)
    assert 'value="add_to_dataset"' in client.get(reverse(CHANGELIST)).content.decode()


# -- sessions --------------------------------------------------------------------------------------------


def test_sessions_list_newest_first_with_totals(staff_client, conversation):
    response = staff_client.get(reverse("admin:llm_agents_execution_sessions"))
    html = response.content.decode()
    assert [row["session_id"] for row in response.context["rows"]] == ["conv-99", "conv-42"]
    row = response.context["rows"][1]
    assert (row["user_id"], row["executions"], row["failed"]) == ("u-7", 3, 0)
    assert row["total_tokens"] == sum(e.total_tokens for e in conversation["turns"])
    assert f'href="{session_url("conv-42")}"' in html

    by_user = staff_client.get(reverse("admin:llm_agents_execution_sessions"), {"user_id": "u-7"})
    assert [row["session_id"] for row in by_user.context["rows"]] == ["conv-42"]


def test_sessions_list_pages(staff_client):
    for n in range(51):
        ExecutionFactory(session_id=f"s-{n:02d}")
    url = reverse("admin:llm_agents_execution_sessions")
    first = staff_client.get(url)
    assert len(first.context["rows"]) == 50 and first.context["paginator"].count == 51
    assert first.context["next_url"] == "?period=all&p=2"
    second = staff_client.get(url + first.context["next_url"])
    assert [row["session_id"] for row in second.context["rows"]] == ["s-00"]


def test_session_page_shows_the_conversation_in_order(staff_client, conversation):
    first, second, third = conversation["turns"]
    scores.add(second, "helpfulness", 5)
    scores.add_session("conv-42", "csat", "happy")
    response = staff_client.get(session_url("conv-42"))
    html = response.content.decode()
    positions = [html.index(f'data-execution="{turn.pk}"') for turn in (first, second, third)]
    assert positions == sorted(positions)
    for text in ("Hi there", "Hello! How can I help?", "Where is order A-17?", "Order A-17 has shipped.",
                 "Thanks!", "You&#x27;re welcome."):  # fmt: skip
        assert text in html, text
    assert "When are you open?" not in html and "Anything" not in html
    turn = html[positions[1] : positions[2]]
    assert "lookup_order" in turn and "A-17" in turn and "shipped" in turn
    assert 'data-score="helpfulness"' in turn and "5.0" in turn
    assert 'data-score="csat"' in html[: positions[0]]
    totals = response.context["totals"]
    assert totals["executions"] == 3 and totals["failed"] == 0
    assert totals["total_cost"] == sum(turn.total_cost for turn in (first, second, third))
    assert '<dd data-total="executions">3</dd>' in html
    assert response.context["user_id"] == "u-7"
    assert change_url(second) in html


def test_session_page_unknown_session_is_404(staff_client, conversation):
    assert staff_client.get(session_url("conv-0")).status_code == 404


def test_session_page_queries_do_not_grow_with_turns(staff_client):
    for n in range(3):
        scores.add(ExecutionFactory(session_id="long"), "helpfulness", n)
    with CaptureQueriesContext(connection) as few:
        staff_client.get(session_url("long"))
    for n in range(20):
        scores.add(ExecutionFactory(session_id="long"), "helpfulness", n)
    with CaptureQueriesContext(connection) as more:
        response = staff_client.get(session_url("long"))
    assert len(response.context["rows"]) == 23
    assert len(more) == len(few)


def test_a_tenant_sees_its_own_sessions_and_scores(staff_client):
    acme = ExecutionFactory(tenant_id="acme", session_id="conv-acme", user_id="u-1")
    globex = ExecutionFactory(tenant_id="globex", session_id="conv-globex", user_id="u-2")
    mine, _theirs = scores.add(acme, "helpfulness", 4), scores.add(globex, "helpfulness", 1)
    scores.add_session("conv-globex", "csat", "unhappy")
    acme_only = {"X-Tenant": "acme"}
    with override_settings(LLM_AGENTS=TENANCY):
        sessions = staff_client.get(reverse("admin:llm_agents_execution_sessions"), headers=acme_only)
        assert [row["session_id"] for row in sessions.context["rows"]] == ["conv-acme"]
        assert staff_client.get(session_url("conv-acme"), headers=acme_only).status_code == 200
        assert staff_client.get(session_url("conv-globex"), headers=acme_only).status_code == 404
        listed_scores = staff_client.get(reverse("admin:llm_agents_score_changelist"), headers=acme_only)
        assert [score.pk for score in listed_scores.context["cl"].result_list] == [mine.pk]
        refused = staff_client.post(add_score_url(globex), {"name": "x", "value": "1"}, headers=acme_only)
        assert refused.status_code == 404 and not globex.scores.filter(name="x").exists()
        tile = staff_client.get(reverse("admin:llm_agents_dashboard"), headers=acme_only).context[
            "score_tile"
        ]
        assert tile["names"] == ["helpfulness"] and tile["summary"]["count"] == 1


# -- Score and ScoreConfig admins -------------------------------------------------------------------------


def test_score_list_filters_and_search(staff_client, staff_superuser, conversation):
    first, second, _ = conversation["turns"]
    scores.add(first, "helpfulness", 2, source="human", author=staff_superuser, comment="vague answer")
    scores.add(second, "helpfulness", 5, source="api")
    scores.add(second, "resolved", True)
    scores.add_session("conv-42", "csat", "happy", source="feedback")
    url = reverse("admin:llm_agents_score_changelist")

    def names(params):
        response = staff_client.get(url, params)
        assert response.status_code == 200
        return sorted(score.name for score in response.context["cl"].result_list)

    assert names({}) == ["csat", "helpfulness", "helpfulness", "resolved"]
    assert names({"name": "helpfulness"}) == ["helpfulness", "helpfulness"]
    assert names({"source__exact": "human"}) == ["helpfulness"]
    assert names({"data_type__exact": "boolean"}) == ["resolved"]
    assert names({"q": "vague"}) == ["helpfulness"]
    assert names({"q": "conv-42"}) == ["csat"]
    html = staff_client.get(url).content.decode()
    assert change_url(second) in html and session_url("conv-42") in html


def test_scores_are_read_only_but_for_human_comments(staff_client, staff_superuser, two_runs, conversation):
    human = scores.add(conversation["turns"][0], "helpfulness", 2, source="human", author=staff_superuser)
    evaluator = Score.objects.filter(source="evaluator").first()
    assert staff_client.get(reverse("admin:llm_agents_score_add")).status_code == 403
    page = staff_client.get(reverse("admin:llm_agents_score_change", args=[evaluator.pk])).content.decode()
    assert 'name="comment"' not in page and 'name="_save"' not in page
    url = reverse("admin:llm_agents_score_change", args=[human.pk])
    assert 'name="comment"' in staff_client.get(url).content.decode()
    response = staff_client.post(url, {"comment": "Too vague", "value": "5"})
    assert response.status_code == 302
    human.refresh_from_db()
    assert (human.comment, human.value) == ("Too vague", 2.0)


def test_score_config_admin_checks_bounds_and_categories(staff_client):
    url = reverse("admin:llm_agents_scoreconfig_add")
    response = staff_client.post(url, {"name": "helpfulness", "data_type": "numeric", "min_value": 5,
                                       "max_value": 1, "categories": "[]"})  # fmt: skip
    assert response.status_code == 200 and list(response.context["adminform"].form.errors) == ["max_value"]
    response = staff_client.post(url, {"name": "tone", "data_type": "categorical", "categories": "[]"})
    assert list(response.context["adminform"].form.errors) == ["categories"]
    response = staff_client.post(url, {"name": "tone", "data_type": "categorical",
                                       "categories": '["warm", "cold"]'})  # fmt: skip
    assert response.status_code == 302
    assert ScoreConfig.objects.get(name="tone").categories == ["warm", "cold"]


# -- datasets -------------------------------------------------------------------------------------------


def test_dataset_page_edits_items_inline_and_lists_runs(staff_client, two_runs):
    dataset = two_runs["dataset"]
    url = reverse("admin:llm_agents_dataset_change", args=[dataset.pk])
    response = staff_client.get(url)
    html = response.content.decode()
    assert html.count('name="items-') > 0 and "Can I get a refund?" in html
    assert 'id="dataset-runs"' in html and "candidate" in html and "baseline" in html
    assert reverse("admin:llm_agents_evalrun_change", args=[two_runs["a"].pk]) in html
    listed_dataset = (
        staff_client.get(reverse("admin:llm_agents_dataset_changelist")).context["cl"].result_list[0]
    )
    assert (listed_dataset.item_count, listed_dataset.run_count) == (3, 2)


def posted_form(response) -> dict:
    """What the browser would post back from a change page: the form's and its inlines' values."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms.append(formset.management_form)
        forms.extend(formset.forms)
    for form in forms:
        for name in form.fields:
            bound = form[name]
            value = bound.value()
            if value is None or value is False:
                continue
            data[bound.html_name] = "on" if value is True else value
            if bound.field.show_hidden_initial:
                data[bound.html_initial_name] = data[bound.html_name]
    return data


def test_dataset_page_saves_item_edits_and_a_new_item(staff_client, two_runs):
    dataset = two_runs["dataset"]
    url = reverse("admin:llm_agents_dataset_change", args=[dataset.pk])
    unchanged = staff_client.post(url, posted_form(staff_client.get(url)))
    assert unchanged.status_code == 302, [
        i.formset.errors for i in unchanged.context["inline_admin_formsets"]
    ]
    assert dataset.items.count() == 3  # the blank extra form adds nothing
    data = posted_form(staff_client.get(url))
    data["name"] = "FAQ of support"
    data["items-0-expected_output"] = '"From 9 to 5"'
    data["items-3-input"] = '{"question": "Do you have gift cards?"}'
    data["items-3-expected_output"] = '"Yes"'
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors or [
        inline.formset.errors for inline in response.context["inline_admin_formsets"]
    ]
    dataset.refresh_from_db()
    assert dataset.name == "FAQ of support"
    assert dataset.items.get(pk=two_runs["items"][0].pk).expected_output == "From 9 to 5"
    assert dataset.items.count() == 4
    assert dataset.items.filter(input={"question": "Do you have gift cards?"}, expected_output="Yes").exists()


def test_dataset_item_input_must_be_an_object(staff_client, two_runs):
    url = reverse("admin:llm_agents_datasetitem_add")
    response = staff_client.post(url, {"dataset": two_runs["dataset"].pk, "input": '["a"]',
                                       "expected_output": '"x"', "metadata": "{}", "is_active": "on"})  # fmt: skip
    assert list(response.context["adminform"].form.errors) == ["input"]
    response = staff_client.post(url, {"dataset": two_runs["dataset"].pk, "input": '{"question": "Hi"}',
                                       "expected_output": '"Hello"', "metadata": "{}", "is_active": "on"})  # fmt: skip
    assert response.status_code == 302
    assert two_runs["dataset"].items.filter(input={"question": "Hi"}, expected_output="Hello").exists()


# -- evaluation runs ------------------------------------------------------------------------------------


def test_eval_run_page_shows_summary_and_results(staff_client, two_runs):
    run = two_runs["b"]
    response = staff_client.get(reverse("admin:llm_agents_evalrun_change", args=[run.pk]))
    html = response.content.decode()
    summary = html[html.index('id="run-summary"') : html.index('id="run-compare"')]
    exact = summary[summary.index('data-evaluator="exact_match"') :]
    # 3 items: one passed, one failed its check, one failed to run (counts as 0)
    assert re.search(r'<td class="llm-num">3</td>\s*<td class="llm-num mean">0.3333</td>\s*'
                     r'<td class="llm-num">33.33 %</td>\s*<td class="llm-num">\[', exact)  # fmt: skip
    assert run.summary["exact_match"]["n"] == 3
    results = html[html.index('id="run-results"') :]
    for text in ("When are you open?", "9 to 5", "Can I get a refund?", "Yes, within 30 days", "No refunds",
                 "AllModelsExhaustedError: All models failed for SupportAgent"):  # fmt: skip
        assert text in results, text
    refund = two_runs["items"][1]
    row = results[results.index(f'data-item="{refund.pk}"') :]
    row = row[: row.index("</tr>")]
    assert '<td class="llm-num" data-evaluator="exact_match">False</td>' in row
    similarity = Score.objects.get(eval_run=run, eval_result__item=refund, name="similarity").value
    assert round(similarity, 4) == 0.2759
    assert '<td class="llm-num" data-evaluator="similarity">0.2759</td>' in row
    assert EvalResult.objects.get(run=run, item=refund).execution_id
    assert change_url(EvalResult.objects.get(run=run, item=refund).execution) in row
    assert 'class="llm-failed"' in results
    assert f'<option value="{two_runs["a"].pk}">' in html


def test_compare_page_highlights_the_items_scored_differently(staff_client, two_runs):
    a, b = two_runs["a"], two_runs["b"]
    hours, refund, shipping = two_runs["items"]
    url = reverse("admin:llm_agents_evalrun_compare", args=[a.pk])
    response = staff_client.get(url, {"b": b.pk})
    html = response.content.decode()

    evaluators = {row["evaluator"]: row for row in response.context["evaluators"]}
    assert set(evaluators) == {"exact_match", "similarity"}
    exact = evaluators["exact_match"]
    assert (exact["n_paired"], exact["wins"], exact["losses"], exact["ties"]) == (3, 2, 0, 1)
    assert exact["mean_a"] == 1.0 and round(exact["mean_b"], 4) == 0.3333
    row = html[html.index('<tr data-evaluator="exact_match">') :]
    row = row[: row.index("</tr>")]
    assert "1.0000" in row and "0.3333" in row and "+0.6667" in row and "llm-better" in row

    def item_row(item):
        found = html[html.index(f'<tr data-item="{item.pk}"') :]
        return found[: found.index("</tr>")]

    assert "llm-differs" not in item_row(hours)
    assert 'class="llm-differs-row"' in item_row(refund)
    assert 'class="llm-num llm-pair llm-differs" data-evaluator="exact_match">1 / 0<' in item_row(refund)
    assert "Yes, within 30 days" in item_row(refund) and "No refunds" in item_row(refund)
    assert "Internal server error (fake)" in item_row(shipping)

    only = staff_client.get(url, {"b": b.pk, "differing": "1"})
    assert [row["item_id"] for row in only.context["item_rows"]] == [refund.pk, shipping.pk]


def test_compare_page_without_b_offers_the_other_runs(staff_client, two_runs):
    url = reverse("admin:llm_agents_evalrun_compare", args=[two_runs["a"].pk])
    html = staff_client.get(url).content.decode()
    assert f'<option value="{two_runs["b"].pk}"' in html
    assert staff_client.get(url, {"b": "not-a-run"}).status_code == 404


def test_compare_action_opens_the_two_selected_runs(staff_client, two_runs):
    a, b = two_runs["a"], two_runs["b"]
    url = reverse("admin:llm_agents_evalrun_changelist")
    response = staff_client.post(
        url, {"action": "compare_selected", ACTION_CHECKBOX_NAME: [str(a.pk), str(b.pk)]}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:llm_agents_evalrun_compare", args=[a.pk]) + f"?b={b.pk}"
    response = staff_client.post(url, {"action": "compare_selected", ACTION_CHECKBOX_NAME: [str(a.pk)]})
    assert response.status_code == 302 and response["Location"] == url
    assert messages_of(response) == ["Select exactly two runs to compare."]


def test_eval_runs_are_read_only(staff_client, two_runs):
    assert staff_client.get(reverse("admin:llm_agents_evalrun_add")).status_code == 403
    url = reverse("admin:llm_agents_evalrun_change", args=[two_runs["a"].pk])
    response = staff_client.post(url, {"name": "renamed"})
    assert response.status_code == 403
    two_runs["a"].refresh_from_db()
    assert two_runs["a"].name == "candidate"


# -- the dashboard's score tile -----------------------------------------------------------------------


def tile(response) -> str:
    html = response.content.decode()
    start = html.index('data-kpi="score"')
    return html[start : html.index("</li>", start)]


def test_dashboard_tile_shows_the_mean_of_the_chosen_score(staff_client, conversation, two_runs):
    first, second, third = conversation["turns"]
    ScoreConfig.objects.create(name="helpfulness", min_value=1, max_value=5)
    for execution, value in ((first, 2), (second, 4), (third, 5)):
        scores.add(execution, "helpfulness", value)
    scores.add(first, "resolved", True)
    scores.add(second, "resolved", False)
    url = reverse("admin:llm_agents_dashboard")

    default = staff_client.get(url)
    assert default.context["score_tile"]["name"] == "helpfulness"  # the configured name first
    assert ">3.67</a>" in tile(default) and "mean of 3 scores, 2.00 to 5.00" in tile(default)
    names = default.context["score_tile"]["names"]
    assert names[0] == "helpfulness" and "resolved" in names
    # The evaluation runs' scores (exact_match, similarity) are offered, but their executions are not counted.
    chosen = staff_client.get(url, {"score": "resolved", "period": "30d"})
    assert ">50.00 %</a>" in tile(chosen) and "true, of 2 scores" in tile(chosen)
    assert '<option value="resolved" selected>' in tile(chosen)
    assert 'href="?period=7d&amp;score=resolved"' in chosen.content.decode()
    evaluated = staff_client.get(url, {"score": "exact_match"})
    assert "no scores in this period" in tile(evaluated)


def test_dashboard_has_no_score_tile_without_scores(staff_client, conversation):
    response = staff_client.get(reverse("admin:llm_agents_dashboard"))
    assert response.context["score_tile"] is None
    assert 'data-kpi="score"' not in response.content.decode()
