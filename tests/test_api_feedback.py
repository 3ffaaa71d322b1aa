"""feedback/: end-user votes with no login, the signed token as the permission (SPEC §16)."""

from __future__ import annotations

import time

import pytest
from django.core import signing
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from llm_agents import Agent, Param, scores
from llm_agents.models import Score, ScoreConfig
from tests.api_support import API
from tests.factories import ExecutionFactory

pytestmark = pytest.mark.django_db

FEEDBACK = API + "feedback/"


class Helper(Agent):
    model = "fake/echo"
    question = Param()

    def user_prompt(self) -> str:
        return self.question


@pytest.fixture(autouse=True)
def fresh_throttle():
    """The throttle counts in Django's cache, which outlives a test's database transaction."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def anonymous():
    """A browser with no login and CSRF checks on, as a page's script posts."""
    return APIClient(enforce_csrf_checks=True)


def vote(client, token, value=True, name="thumbs", comment=""):
    return client.post(
        FEEDBACK, {"token": token, "name": name, "value": value, "comment": comment}, format="json"
    )


def test_a_vote_with_the_token_of_an_agent_result_needs_no_login(anonymous):
    result = Helper.call(question="Where is my order?")
    response = vote(anonymous, result.feedback_token, True, comment="spot on")
    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["execution"] == str(result.execution.pk)
    assert (answer["name"], answer["source"], answer["data_type"]) == ("thumbs", "feedback", "boolean")
    assert (answer["value"], answer["comment"], answer["author"]) == (1.0, "spot on", None)
    score = Score.objects.get()
    assert score.execution_id == result.execution.pk and score.source == Score.Source.FEEDBACK


def test_a_second_vote_with_the_same_token_and_name_replaces_the_first(anonymous):
    execution = ExecutionFactory(tenant_id="acme")
    token = scores.feedback_token(execution.pk)
    assert vote(anonymous, token, True).status_code == 201
    second = vote(anonymous, token, False, comment="changed my mind")
    assert second.status_code == 200, second.content
    assert second.json()["value"] == 0.0
    kept = Score.objects.get(name="thumbs")
    assert (kept.value, kept.comment, kept.tenant_id) == (0.0, "changed my mind", "acme")
    assert vote(anonymous, token, 4, name="stars").status_code == 201  # another name: another score
    assert Score.objects.count() == 2


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-token", "Invalid token."),
        (signing.dumps("6f1c0d3e-9a7e-4d59-9b47-2f2f0c7f6e11", salt="another.salt"), "Invalid token."),
    ],
)
def test_a_forged_token_is_refused(anonymous, token, message):
    ExecutionFactory()
    response = vote(anonymous, token)
    assert response.status_code == 400
    assert response.json() == {"token": [message]}
    assert not Score.objects.exists()


def test_a_tampered_token_is_refused(anonymous):
    mine, other = ExecutionFactory(), ExecutionFactory()
    value, signature = scores.feedback_token(mine.pk).split(":", 1)
    forged = signing.b64_encode(f'"{other.pk}"'.encode()).decode() + ":" + signature
    assert value != forged.split(":", 1)[0]
    response = vote(anonymous, forged)
    assert response.status_code == 400 and response.json() == {"token": ["Invalid token."]}
    assert not Score.objects.exists()


def test_an_expired_token_is_refused(anonymous, monkeypatch):
    execution = ExecutionFactory()
    issued = time.time() - 3601
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: issued)
        token = scores.feedback_token(execution.pk)
    with override_settings(LLM_AGENTS={"FEEDBACK_TOKEN_MAX_AGE": 3600}):
        response = vote(anonymous, token)
    assert response.status_code == 400 and response.json() == {"token": ["Expired token."]}
    with override_settings(LLM_AGENTS={"FEEDBACK_TOKEN_MAX_AGE": 7200}):
        assert vote(anonymous, token).status_code == 201


def test_a_value_that_does_not_fit_is_a_400_naming_the_field(anonymous):
    ScoreConfig.objects.create(name="stars", min_value=1, max_value=5)
    token = scores.feedback_token(ExecutionFactory().pk)
    response = vote(anonymous, token, 7, name="stars")
    assert response.status_code == 400 and "value" in response.json()
    response = vote(anonymous, token, {"stars": 4}, name="stars")
    assert response.status_code == 400 and "value" in response.json()
    response = anonymous.post(FEEDBACK, {"name": "stars", "value": 4}, format="json")
    assert response.status_code == 400 and "token" in response.json()
    assert not Score.objects.exists()


def test_a_logged_in_browser_posts_without_a_csrf_token(anonymous, django_user_model):
    """The endpoint authenticates nobody, so the session cookie asks for no CSRF token; the
    staff endpoints beside it still do."""
    user = django_user_model.objects.create_user("staff", password="secret", is_staff=True)
    assert anonymous.login(username="staff", password="secret")
    execution = ExecutionFactory()
    response = vote(anonymous, scores.feedback_token(execution.pk))
    assert response.status_code == 201, response.content
    assert response.json()["author"] is None
    refused = anonymous.post(
        API + "scores/", {"execution": str(execution.pk), "name": "x", "value": 1}, format="json"
    )
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert Score.objects.get().author_id is None and user.pk


def test_votes_beyond_the_rate_are_429_whatever_rest_framework_says(anonymous):
    token = scores.feedback_token(ExecutionFactory().pk)
    with override_settings(LLM_AGENTS={"FEEDBACK_THROTTLE_RATE": "3/min"}, REST_FRAMEWORK={}):
        answers = [vote(anonymous, token, index % 2 == 0).status_code for index in range(4)]
    assert answers == [201, 200, 200, 429]
    assert Score.objects.count() == 1
    assert vote(anonymous, token).status_code == 200  # read on every request: 60/min by default


def test_the_rate_is_per_client_address(anonymous):
    token = scores.feedback_token(ExecutionFactory().pk)
    with override_settings(LLM_AGENTS={"FEEDBACK_THROTTLE_RATE": "1/hour"}):
        assert vote(anonymous, token).status_code == 201
        assert vote(anonymous, token).status_code == 429
        other = APIClient(REMOTE_ADDR="203.0.113.9")
        assert vote(other, token).status_code == 200


def test_no_rate_means_no_limit(anonymous):
    token = scores.feedback_token(ExecutionFactory().pk)
    with override_settings(LLM_AGENTS={"FEEDBACK_THROTTLE_RATE": None}):
        assert {vote(anonymous, token).status_code for _ in range(70)} == {200, 201}


def test_a_feedback_score_is_listed_and_summarised_for_staff(anonymous, staff_client):
    executions = [ExecutionFactory() for _ in range(4)]
    for execution, value in zip(executions, [True, True, True, False], strict=True):
        assert vote(anonymous, scores.feedback_token(execution.pk), value).status_code == 201
    listed = staff_client.get(API + "scores/", {"source": "feedback"}).json()
    assert listed["count"] == 4
    summary = staff_client.get(API + "scores/summary/", {"name": "thumbs"}).json()
    assert summary == {"name": "thumbs", "data_type": "boolean", "count": 4, "true_rate": 75.0}
