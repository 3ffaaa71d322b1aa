"""Scores (SPEC sections 16 and 21): ``scores.add`` / ``add_session`` and what they refuse, ScoreConfig
validation, ``score_created`` after commit, end-user feedback tokens, the score analytics
(``score_summary``, ``scores_by``, ``compare_versions``' scores) and retention deleting the scores of
the executions it purges."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from llm_agents import retention, scores, signals, tenant
from llm_agents.db import fastpaths
from llm_agents.models import Dataset, EvalRun, Execution, Score, ScoreConfig, rollup_reads
from llm_agents.models.quality_queries import SCORE_GROUPS

from .factories import ExecutionFactory, PromptVersionFactory
from .test_sessions import Helper, openai  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

POSTGRESQL = connection.vendor == "postgresql"
postgresql_only = pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's fast paths and plans")


def eval_run() -> EvalRun:
    dataset = Dataset.objects.create(slug=f"set-{uuid.uuid4().hex[:8]}", name="Set")
    return EvalRun.objects.create(
        dataset=dataset, agent_type="SupportAgent", target="tests.test_scores.Helper"
    )


def stored() -> list[tuple]:
    return list(
        Score.objects.order_by("created_at").values_list("name", "data_type", "value", "string_value")
    )


class Received:
    """The ``score_created`` signals sent while connected."""

    def __init__(self) -> None:
        self.scores: list[Score] = []

    def __call__(self, sender, signal, score, **kwargs) -> None:
        self.scores.append(score)


@pytest.fixture
def received():
    receiver = Received()
    signals.score_created.connect(receiver, weak=False)
    yield receiver
    signals.score_created.disconnect(receiver)


# -- scores.add and add_session -----------------------------------------------------------------------


def test_the_value_gives_the_data_type_without_a_config():
    execution = ExecutionFactory(tenant_id="acme")

    numeric = scores.add(execution, "helpfulness", 4, comment="good", source="human")
    boolean = scores.add(execution.pk, "resolved", True)
    falsy = scores.add(str(execution.pk), "escalated", False)
    scores.add(execution, "relevance", Decimal("0.75"))
    category = scores.add(execution, "tone", "friendly")

    assert stored() == [
        ("helpfulness", "numeric", 4.0, ""),
        ("resolved", "boolean", 1.0, ""),
        ("escalated", "boolean", 0.0, ""),
        ("relevance", "numeric", 0.75, ""),
        ("tone", "categorical", None, "friendly"),
    ]
    assert [score.display_value for score in (numeric, boolean, falsy, category)] == [
        4.0,
        True,
        False,
        "friendly",
    ]
    numeric.refresh_from_db()
    assert (numeric.execution_id, numeric.tenant_id, numeric.comment, numeric.source) == (
        execution.pk,
        "acme",
        "good",
        "human",
    )
    assert (boolean.source, boolean.author, boolean.session_id) == ("api", None, "")
    assert list(execution.scores.order_by("name").values_list("name", flat=True)) == [
        "escalated",
        "helpfulness",
        "relevance",
        "resolved",
        "tone",
    ]


def test_an_author_and_the_evaluation_run_of_the_execution(django_user_model):
    author = django_user_model.objects.create_user(username="reviewer")
    run = eval_run()
    evaluated = ExecutionFactory(eval_run=run)

    by_person = scores.add(ExecutionFactory(), "helpfulness", 5, source="human", author=author)
    of_run = scores.add(evaluated, "accuracy", 1.0, source="evaluator")

    assert Score.objects.get(pk=by_person.pk).author == author
    assert Score.objects.get(pk=of_run.pk).eval_run == run  # the execution's run
    assert list(run.scores.all()) == [of_run]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (math.nan, "value"),
        (math.inf, "value"),
        (-math.inf, "value"),
        (10**400, "value"),
        (None, "value"),
        ([4], "value"),
        ({"stars": 4}, "value"),
        ("", "value"),
        ("x" * 256, "value"),
    ],
)
def test_a_value_that_is_not_a_score_is_refused_naming_the_field(value, field):
    execution = ExecutionFactory()
    with pytest.raises(ValidationError) as raised:
        scores.add(execution, "helpfulness", value)
    assert field in raised.value.message_dict, raised.value.message_dict
    assert Score.objects.count() == 0


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"source": "robot"}, "source"),
    ],
)
def test_a_bad_name_or_source_is_refused_naming_the_field(arguments, field):
    with pytest.raises(ValidationError) as raised:
        scores.add(ExecutionFactory(), **{"name": "helpfulness", "value": 3, **arguments})
    assert field in raised.value.message_dict
    assert Score.objects.count() == 0


def test_an_unknown_execution_is_refused():
    for missing in (uuid.uuid4(), "not-a-uuid"):
        with pytest.raises(ValidationError) as raised:
            scores.add(missing, "helpfulness", 3)
        assert "execution" in raised.value.message_dict
    assert Score.objects.count() == 0


@pytest.mark.parametrize(
    ("config", "value", "message"),
    [
        ({"data_type": "numeric", "min_value": 1, "max_value": 5}, 6, "above the maximum"),
        ({"data_type": "numeric", "min_value": 1, "max_value": 5}, 0.5, "below the minimum"),
        ({"data_type": "numeric"}, True, "must be a number"),
        ({"data_type": "numeric"}, "4", "must be a number"),
        ({"data_type": "boolean"}, 1, "must be True or False"),
        ({"data_type": "categorical", "categories": ["happy", "sad"]}, "angry", "Unknown category 'angry'"),
        ({"data_type": "categorical", "categories": ["happy", "sad"]}, 3, "must be a string"),
    ],
)
def test_a_score_config_decides_the_type_and_bounds_the_value(config, value, message):
    ScoreConfig.objects.create(name="rating", **config)
    with pytest.raises(ValidationError, match=message) as raised:
        scores.add(ExecutionFactory(), "rating", value)
    assert list(raised.value.message_dict) == ["value"]
    assert Score.objects.count() == 0


def test_values_that_fit_their_config_are_stored():
    ScoreConfig.objects.create(name="rating", data_type="numeric", min_value=1, max_value=5)
    ScoreConfig.objects.create(name="mood", data_type="categorical", categories=["happy", "sad"])
    ScoreConfig.objects.create(name="free", data_type="categorical")  # no categories listed: any
    ScoreConfig.objects.create(name="done", data_type="boolean")
    execution = ExecutionFactory()

    for name, value in (
        ("rating", 1),
        ("rating", 5.0),
        ("mood", "sad"),
        ("free", "anything"),
        ("done", False),
    ):
        scores.add(execution, name, value)

    assert stored() == [
        ("rating", "numeric", 1.0, ""),
        ("rating", "numeric", 5.0, ""),
        ("mood", "categorical", None, "sad"),
        ("free", "categorical", None, "anything"),
        ("done", "boolean", 0.0, ""),
    ]


def test_a_session_score_takes_the_sessions_tenant_else_the_current_one():
    ExecutionFactory(session_id="conv-1", tenant_id=None, started_at=timezone.now() - dt.timedelta(hours=2))
    ExecutionFactory(session_id="conv-1", tenant_id="acme", started_at=timezone.now() - dt.timedelta(hours=1))

    happy = scores.add_session("conv-1", "csat", "happy")
    with tenant("globex"):
        new = scores.add_session("conv-new", "csat", 5, source="human")
    alone = scores.add_session("conv-2", "resolved", True)

    assert [(s.session_id, s.execution_id, s.tenant_id, s.data_type) for s in (happy, new, alone)] == [
        ("conv-1", None, "acme", "categorical"),
        ("conv-new", None, "globex", "numeric"),
        ("conv-2", None, None, "boolean"),
    ]
    assert Score.objects.filter(session_id="conv-1").get().string_value == "happy"
    for bad in ("", None):
        with pytest.raises(ValidationError) as raised:
            scores.add_session(bad, "csat", "happy")
        assert "session_id" in raised.value.message_dict
    assert Score.objects.count() == 3


# -- ScoreConfig ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"data_type": "numeric", "min_value": 5, "max_value": 1}, "max_value"),
        ({"data_type": "numeric", "min_value": math.nan}, "min_value"),
        ({"data_type": "boolean", "max_value": 1}, "max_value"),
        ({"data_type": "numeric", "categories": ["a"]}, "categories"),
        ({"data_type": "categorical", "categories": ["a", "a"]}, "categories"),
        ({"data_type": "categorical", "categories": ["a", 2]}, "categories"),
        ({"data_type": "categorical", "categories": ["a", " "]}, "categories"),
        ({"data_type": "categorical", "categories": "a,b"}, "categories"),
    ],
)
def test_score_config_validation_names_the_field(config, field):
    with pytest.raises(ValidationError) as raised:
        ScoreConfig(name="rating", **config).full_clean()
    assert field in raised.value.message_dict


def test_valid_score_configs_pass():
    for config in (
        {},
        {"data_type": "numeric", "min_value": 0, "max_value": 1},
        {"data_type": "numeric", "min_value": 3, "max_value": 3},
        {"data_type": "boolean"},
        {"data_type": "categorical", "categories": ["happy", "sad"]},
        {"data_type": "categorical"},
    ):
        ScoreConfig(name="rating", **config).full_clean()


def test_a_score_saved_by_hand_is_checked_against_its_config():
    ScoreConfig.objects.create(name="rating", data_type="numeric", max_value=5)
    execution = ExecutionFactory()
    for score, field in (
        (Score(execution=execution, name="rating", data_type="boolean", value=1.0), "data_type"),
        (Score(execution=execution, name="rating", value=9.0), "value"),
        (Score(name="rating", value=3.0), "session_id"),
        (Score(execution=execution, name="done", data_type="boolean", value=0.5), "value"),
        (Score(execution=execution, name="tone", data_type="categorical"), "value"),
    ):
        with pytest.raises(ValidationError) as raised:
            score.full_clean()
        assert field in raised.value.message_dict


# -- score_created ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_score_created_is_sent_once_the_transaction_commits(received):
    execution = ExecutionFactory()
    with transaction.atomic():
        score = scores.add(execution, "helpfulness", 4)
        assert received.scores == []
    assert received.scores == [score]

    session_score = scores.add_session("conv-1", "csat", "happy")
    assert received.scores == [score, session_score]

    with pytest.raises(RuntimeError), transaction.atomic():
        scores.add(execution, "resolved", True)
        raise RuntimeError("rolled back")
    assert received.scores == [score, session_score]
    assert Score.objects.filter(name="resolved").count() == 0

    with pytest.raises(ValidationError):
        scores.add(execution, "helpfulness", math.nan)
    assert received.scores == [score, session_score]


# -- feedback -------------------------------------------------------------------------------------------


class PastSigner(signing.TimestampSigner):
    """Signs as if it were ``days`` ago (a token handed out then)."""

    def __init__(self, days: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.days = days

    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time() - self.days * 86400))


def test_a_feedback_token_round_trip_from_an_agent_call(openai, received, django_capture_on_commit_callbacks):  # noqa: F811 (the fixture)
    result = Helper.call(question="Where is my order?")

    token = result.feedback_token
    assert scores.verify_feedback_token(token) == result.execution_id
    assert scores.feedback_token(result.execution_id) == token
    with tenant("acme"), django_capture_on_commit_callbacks(execute=True):
        score = scores.record_feedback(token, "thumbs_up", True, comment="quick")

    score.refresh_from_db()
    assert (score.execution_id, score.name, score.data_type, score.value, score.source, score.comment) == (
        result.execution_id,
        "thumbs_up",
        "boolean",
        1.0,
        "feedback",
        "quick",
    )
    assert score.tenant_id == result.execution.tenant_id
    assert received.scores == [score]


def test_a_second_post_with_the_token_replaces_the_first():
    execution = ExecutionFactory()
    other = ExecutionFactory()
    token = scores.feedback_token(execution.pk)
    scores.add(execution, "thumbs_up", True, source="human")  # not feedback: kept
    scores.record_feedback(scores.feedback_token(other.pk), "thumbs_up", True)

    first = scores.record_feedback(token, "thumbs_up", True)
    second = scores.record_feedback(token, "thumbs_up", False, comment="changed my mind")
    stars = scores.record_feedback(token, "stars", 4)

    feedback = Score.objects.filter(execution=execution, source="feedback")
    assert sorted(feedback.values_list("name", "value", "comment")) == [
        ("stars", 4.0, ""),
        ("thumbs_up", 0.0, "changed my mind"),
    ]
    assert not Score.objects.filter(pk=first.pk).exists()
    assert {second.pk, stars.pk} == set(feedback.values_list("pk", flat=True))
    assert Score.objects.filter(execution=execution, source="human").count() == 1
    assert Score.objects.filter(execution=other).count() == 1
    # Each carries the start of its execution (read with its tenant, no query more).
    assert set(Score.objects.filter(execution=execution).values_list("execution_started_at", flat=True)) == {
        execution.started_at
    }


def test_a_bad_value_keeps_the_earlier_vote():
    ScoreConfig.objects.create(name="stars", data_type="numeric", min_value=1, max_value=5)
    execution = ExecutionFactory()
    token = scores.feedback_token(execution.pk)
    kept = scores.record_feedback(token, "stars", 4)

    with pytest.raises(ValidationError) as raised:
        scores.record_feedback(token, "stars", 9)

    assert "value" in raised.value.message_dict
    assert list(Score.objects.values_list("pk", flat=True)) == [kept.pk]


def test_forged_tampered_and_expired_tokens_are_refused():
    execution = ExecutionFactory()
    token = scores.feedback_token(execution.pk)
    body, _, signature = token.rpartition(":")
    other = scores.feedback_token(ExecutionFactory().pk)
    forged = [
        "",
        "not a token",
        f"{body}:{signature[::-1]}",  # tampered signature
        other.split(":")[0] + token[len(token.split(":")[0]) :],  # another execution's payload
        signing.dumps(str(execution.pk), salt="another.salt", compress=False),
        signing.dumps(
            str(execution.pk), key="another-secret-key-of-sufficient-length", salt=scores.FEEDBACK_SALT
        ),
        signing.dumps("not-an-id", salt=scores.FEEDBACK_SALT, compress=False),
    ]
    for bad in forged:
        with pytest.raises(scores.FeedbackTokenError, match="^invalid token$"):
            scores.record_feedback(bad, "thumbs_up", True)

    week_old = PastSigner(8, salt=scores.FEEDBACK_SALT).sign_object(str(execution.pk))
    with pytest.raises(scores.FeedbackTokenError, match="^expired token$"):
        scores.record_feedback(week_old, "thumbs_up", True)
    assert isinstance(scores.FeedbackTokenError("x"), ValueError)
    assert Score.objects.count() == 0

    with override_settings(LLM_AGENTS={"FEEDBACK_TOKEN_MAX_AGE": 10 * 86400}):
        assert scores.record_feedback(week_old, "thumbs_up", True).execution_id == execution.pk


def test_a_token_of_an_execution_that_is_gone_is_refused():
    token = scores.feedback_token(uuid.uuid4())
    with pytest.raises(ValidationError) as raised:
        scores.record_feedback(token, "thumbs_up", True)
    assert "execution" in raised.value.message_dict


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_with_one_token_keep_one_score():
    execution = ExecutionFactory()
    token = scores.feedback_token(execution.pk)
    workers, rounds = 6, 10
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def post(number: int) -> None:
        try:
            barrier.wait()
            for attempt in range(rounds):
                scores.record_feedback(token, "stars", number * rounds + attempt)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(number,)) for number in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert Score.objects.filter(execution=execution, name="stars", source="feedback").count() == 1


# -- score analytics -----------------------------------------------------------------------------------


def scored(name: str, values: list, **execution_values) -> list[Execution]:
    executions = []
    for value in values:
        execution = ExecutionFactory(**execution_values)
        scores.add(execution, name, value)
        executions.append(execution)
    return executions


def summary_queries(data_type: str, all_time: bool = False) -> int:
    # The config's look-up, the aggregate; the categories' counts, or (without percentile_cont,
    # or of all time: walked to in llm_score_value_idx) the median.
    if data_type == "categorical" or (data_type == "numeric" and (all_time or not POSTGRESQL)):
        return 3
    return 2


def test_score_summary_of_numeric_scores(django_assert_num_queries):
    scored("helpfulness", [1, 2, 3, 4, 10], agent_type="A")
    scored("helpfulness", [1, 2, 3, 4], agent_type="B")
    scored("other", [100], agent_type="A")

    with django_assert_num_queries(summary_queries("numeric", all_time=True)):
        everything = Execution.objects.score_summary("helpfulness")
    assert everything == {
        "name": "helpfulness",
        "data_type": "numeric",
        "count": 9,
        "mean": pytest.approx(3.3333),
        "min": 1.0,
        "max": 10.0,
        "p50": 3.0,
    }
    assert everything["mean"] == 3.3333  # rounded to 4 places
    with django_assert_num_queries(summary_queries("numeric")):
        odd = Execution.objects.by_agent("A").score_summary("helpfulness")
    assert odd == {"name": "helpfulness", "data_type": "numeric", "count": 5, "mean": 4.0, "min": 1.0,
                   "max": 10.0, "p50": 3.0}  # fmt: skip
    even = Execution.objects.by_agent("B").score_summary("helpfulness")
    assert (even["count"], even["mean"], even["p50"]) == (4, 2.5, 2.5)


def test_score_summary_of_boolean_and_categorical_scores(django_assert_num_queries):
    scored("resolved", [True, True, True, False, True, False])
    scored("tone", ["happy", "sad", "happy", "happy", "neutral"], agent_type="B")

    with django_assert_num_queries(summary_queries("boolean")):
        resolved = Execution.objects.score_summary("resolved")
    assert resolved == {"name": "resolved", "data_type": "boolean", "count": 6, "true_rate": 66.67}
    with django_assert_num_queries(summary_queries("categorical")):
        tone = Execution.objects.by_agent("B").score_summary("tone")
    assert tone == {
        "name": "tone",
        "data_type": "categorical",
        "count": 5,
        "distribution": {"happy": 3, "neutral": 1, "sad": 1},
    }
    assert list(tone["distribution"]) == ["happy", "neutral", "sad"]


def test_executions_with_many_scores_count_each_score_once():
    # Each execution holds scores of several names and types: a filtered queryset's scores must not
    # be joined once per condition (every score of a name once, whatever else its execution holds).
    for helpfulness, resolved, tone in ((1, True, "happy"), (2, False, "sad"), (4, True, "happy")):
        execution = ExecutionFactory(agent_type="A")
        scores.add(execution, "helpfulness", helpfulness)
        scores.add(execution, "stars", 5)
        scores.add(execution, "resolved", resolved)
        scores.add(execution, "tone", tone)
    filtered = Execution.objects.by_agent("A")

    assert filtered.score_summary("helpfulness") == Execution.objects.score_summary("helpfulness") == {
        "name": "helpfulness", "data_type": "numeric", "count": 3, "mean": 2.3333, "min": 1.0, "max": 4.0,
        "p50": 2.0,
    }  # fmt: skip
    assert filtered.score_summary("resolved")["true_rate"] == 66.67
    assert filtered.score_summary("tone")["distribution"] == {"happy": 2, "sad": 1}
    assert filtered.scores_by("helpfulness", "agent_type") == [{"key": "A", "count": 3, "mean": 2.3333}]
    assert filtered.scores_by("tone", "agent_type") == [
        {"key": "A", "count": 3, "distribution": {"happy": 2, "sad": 1}}
    ]
    assert filtered.score_means("agent_type") == {
        "A": {"helpfulness": 2.3333, "resolved": 0.6667, "stars": 5.0}
    }


def test_a_categorical_config_lists_its_categories_first():
    ScoreConfig.objects.create(name="tone", data_type="categorical", categories=["sad", "neutral", "happy"])
    scored("tone", ["happy", "happy", "sad"])
    distribution = Execution.objects.score_summary("tone")["distribution"]
    assert list(distribution.items()) == [("sad", 1), ("neutral", 0), ("happy", 2)]


def test_score_summary_of_no_scores():
    ScoreConfig.objects.create(name="resolved", data_type="boolean")
    assert Execution.objects.score_summary("helpfulness") == {
        "name": "helpfulness",
        "data_type": "numeric",
        "count": 0,
        "mean": None,
        "min": None,
        "max": None,
        "p50": None,
    }
    assert Execution.objects.score_summary("resolved") == {
        "name": "resolved",
        "data_type": "boolean",
        "count": 0,
        "true_rate": 0.0,
    }
    assert Execution.objects.for_current_tenant().score_summary("helpfulness")["count"] == 0


def test_mixed_types_count_the_type_of_most_scores_unless_a_config_says():
    scored("mixed", [4, 2, True])
    assert Execution.objects.score_summary("mixed")["data_type"] == "numeric"
    assert Execution.objects.score_summary("mixed")["count"] == 2
    ScoreConfig.objects.create(name="mixed", data_type="boolean")
    assert Execution.objects.score_summary("mixed") == {
        "name": "mixed",
        "data_type": "boolean",
        "count": 1,
        "true_rate": 100.0,
    }


def test_scores_of_evaluation_runs_and_of_sessions_are_left_out_unless_asked():
    run = eval_run()
    production = scored("accuracy", [1.0, 0.0], agent_type="A")
    scored("accuracy", [1.0, 1.0, 1.0], agent_type="A", eval_run=run)  # the run's own executions
    scores.add(production[0], "accuracy", 0.5, eval_run=run)  # a score given by an evaluation run
    scores.add_session("conv-1", "accuracy", 0.25)

    for queryset in (Execution.objects, Execution.objects.by_agent("A")):
        assert queryset.score_summary("accuracy")["count"] == 2
        assert queryset.score_summary("accuracy")["mean"] == 0.5
        assert queryset.including_evaluations().score_summary("accuracy")["count"] == 6
        assert queryset.evaluations().score_summary("accuracy") | {"p50": None} == {
            "name": "accuracy", "data_type": "numeric", "count": 3, "mean": 1.0, "min": 1.0, "max": 1.0, "p50": None,
        }  # fmt: skip
        assert [row["count"] for row in queryset.scores_by("accuracy", "agent_type")] == [2]
        assert queryset.including_evaluations().scores_by("accuracy", "agent_type")[0]["count"] == 6


def test_scores_by_each_group(django_assert_num_queries, paris):
    version_1, version_2 = PromptVersionFactory(), PromptVersionFactory()
    # 23:30 UTC is the next day in Paris.
    yesterday = timezone.now().replace(hour=23, minute=30, second=0, microsecond=0) - dt.timedelta(days=2)
    today = timezone.localtime(timezone.now()).replace(hour=12, minute=0, second=0, microsecond=0)
    scored("helpfulness", [4, 2], agent_type="A", model_id="gpt-4o", agent_version="1.0",
           prompt_version=version_1, started_at=yesterday)  # fmt: skip
    scored("helpfulness", [5], agent_type="B", model_id="gpt-4o-mini", agent_version="2.0",
           prompt_version=version_2, started_at=today)  # fmt: skip
    scored("helpfulness", [1, 3, 5], agent_type="C", model_id="gpt-4o-mini", agent_version="2.0",
           started_at=today)  # fmt: skip

    expected = {
        "agent_type": [("C", 3, 3.0), ("A", 2, 3.0), ("B", 1, 5.0)],
        "model_id": [("gpt-4o-mini", 4, 3.5), ("gpt-4o", 2, 3.0)],
        "agent_version": [("2.0", 4, 3.5), ("1.0", 2, 3.0)],
        "prompt_version": [(None, 3, 3.0), (version_1.pk, 2, 3.0), (version_2.pk, 1, 5.0)],
        "day": [
            (timezone.localtime(yesterday).date(), 2, 3.0),
            (today.date(), 4, 3.5),
        ],
    }
    assert timezone.localtime(yesterday).date() == yesterday.date() + dt.timedelta(days=1)
    for group_by, rows in expected.items():
        with django_assert_num_queries(2):
            found = Execution.objects.scores_by("helpfulness", group_by)
        assert [(row["key"], row["count"], row["mean"]) for row in found] == rows, group_by
        assert all(set(row) == {"key", "count", "mean"} for row in found)
    assert Execution.objects.by_agent("A").scores_by("helpfulness", "day") == [
        {"key": timezone.localtime(yesterday).date(), "count": 2, "mean": 3.0}
    ]


def test_scores_by_boolean_and_categorical():
    scored("resolved", [True, False, True], agent_type="A")
    scored("resolved", [False], agent_type="B")
    scored("tone", ["happy", "sad", "happy"], agent_type="A")

    assert Execution.objects.scores_by("resolved", "agent_type") == [
        {"key": "A", "count": 3, "true_rate": 66.67},
        {"key": "B", "count": 1, "true_rate": 0.0},
    ]
    assert Execution.objects.scores_by("tone", "agent_type") == [
        {"key": "A", "count": 3, "distribution": {"happy": 2, "sad": 1}}
    ]
    assert Execution.objects.scores_by("nothing", "agent_type") == []


def test_an_unknown_group_is_refused_naming_it():
    with pytest.raises(
        ValueError, match=r"'weekday'.*agent_type, model_id, agent_version, prompt_version, day"
    ):
        Execution.objects.scores_by("helpfulness", "weekday")


def test_compare_versions_gain_the_means_of_their_scores():
    run = eval_run()
    scored("helpfulness", [4, 5], agent_type="SearchAgent", agent_version="1.0")
    scored("resolved", [True, False, False, False], agent_type="SearchAgent", agent_version="1.0")
    scored("helpfulness", [2], agent_type="SearchAgent", agent_version="2.0")
    scored("tone", ["happy"], agent_type="SearchAgent", agent_version="2.0")  # no mean
    scored("helpfulness", [1], agent_type="SearchAgent", agent_version="2.0", eval_run=run)
    scored("helpfulness", [1], agent_type="OtherAgent", agent_version="1.0")

    compared = Execution.objects.compare_versions("SearchAgent", "1.0", "2.0", "3.0", period="today")

    assert {version: row["scores"] for version, row in compared.items()} == {
        "1.0": {"helpfulness": 4.5, "resolved": 0.25},
        "2.0": {"helpfulness": 2.0},
        "3.0": {},
    }
    assert compared["1.0"]["total"] == 6
    assert Execution.objects.filter(agent_version="2.0").score_means("agent_version") == {
        "2.0": {"helpfulness": 2.0}
    }


# -- the three ways of reading scores count the same ones -------------------------------------------------


@pytest.fixture
def period_history():
    """Scores in and out of a period (the executions' own start decides), of nested executions, of
    an evaluation run, and of a session; returns the period's bounds."""
    now = timezone.now()
    start, end = now - dt.timedelta(days=10), now - dt.timedelta(days=2)
    day = dt.timedelta(days=1)

    def run_of(started_at, agent_type="A", parent=None, **values):
        return ExecutionFactory(started_at=started_at, agent_type=agent_type, parent=parent, **values)

    early = run_of(start - day, agent_type="B")  # out of the period ...
    late_child = run_of(start + day, agent_type="C", parent=early)  # ... its nested execution in it
    first = run_of(start + 2 * day)
    child = run_of(start + 2 * day + dt.timedelta(seconds=1), agent_type="C", parent=first)
    second = run_of(end - day, agent_type="B")
    before, after = run_of(start - 10 * day), run_of(end + dt.timedelta(hours=1))
    on_end = run_of(end)  # [start, end): out
    evaluated = run_of(start + 3 * day, eval_run=eval_run())
    for execution, helpfulness, resolved, tone in (
        (early, 3, True, "sad"), (late_child, 2, False, "happy"), (first, 1, True, "happy"),
        (child, 5, True, "neutral"), (second, 4, False, "happy"), (before, 2, True, "sad"),
        (after, 3, False, "sad"), (on_end, 1, True, "sad"), (evaluated, 5, False, "neutral"),
    ):  # fmt: skip
        scores.add(execution, "helpfulness", helpfulness)
        scores.add(execution, "resolved", resolved)
        scores.add(execution, "tone", tone)
    scores.add_session("conv-1", "helpfulness", 5)  # a session's: never counted
    ExecutionFactory(session_id="conv-1", started_at=start + day)
    return start, end


def the_ways(executions):
    """The same executions read three ways: a period alone (the scores alone, by their execution's
    start), the same with a filter that keeps every execution (a semi-join) and all time."""
    return executions, executions.exclude(agent_type="nobody")


@pytest.mark.parametrize("evaluations", [False, True])
def test_a_period_and_a_semi_join_and_all_time_count_the_same_scores(period_history, evaluations):
    start, end = period_history
    everything = Execution.objects.including_evaluations() if evaluations else Execution.objects.all()
    period = everything.between(start, end)
    assert rollup_reads.period_of(period) == (start, end)
    assert rollup_reads.period_of(period.exclude(agent_type="nobody")) is None

    expected = {
        # first 1, child 5 (nested), late_child 2 (nested, in the period though its root is not),
        # second 4; the evaluation's 5 only with evaluations.
        False: {"count": 4, "mean": 3.0, "min": 1.0, "max": 5.0, "p50": 3.0},
        True: {"count": 5, "mean": 3.4, "min": 1.0, "max": 5.0, "p50": 4.0},
    }[evaluations]
    for way in the_ways(period):
        summary = way.score_summary("helpfulness")
        assert {key: summary[key] for key in expected} == expected
        assert way.score_summary("resolved")["count"] == expected["count"]
        assert way.score_summary("resolved")["true_rate"] == (40.0 if evaluations else 50.0)
        assert way.score_summary("tone")["distribution"] == (
            {"happy": 3, "neutral": 2} if evaluations else {"happy": 3, "neutral": 1}
        )
    for name in ("helpfulness", "resolved", "tone"):
        for ways in (the_ways(period), the_ways(everything)):
            answers = [way.score_summary(name) for way in ways]
            assert answers[0] == answers[1], name
            for group_by in SCORE_GROUPS:
                grouped = [way.scores_by(name, group_by) for way in ways]
                assert grouped[0] == grouped[1], (name, group_by)
    all_time = everything.score_summary("helpfulness")
    assert all_time["count"] == (9 if evaluations else 8)  # the session's score never
    assert all_time["p50"] == (3.0 if evaluations else 2.5)  # even count: the two middle values' mean
    by_agent = {row["key"]: row["count"] for row in period.scores_by("helpfulness", "agent_type")}
    assert by_agent == ({"A": 2, "B": 1, "C": 2} if evaluations else {"A": 1, "B": 1, "C": 2})


# -- retention -------------------------------------------------------------------------------------------


def test_purge_deletes_the_scores_of_the_executions_it_purges():
    old = ExecutionFactory(started_at=timezone.now() - dt.timedelta(days=40))
    nested = ExecutionFactory(parent=old, started_at=old.started_at)
    recent = ExecutionFactory(started_at=timezone.now() - dt.timedelta(days=2))
    for execution in (old, nested, recent):
        scores.add(execution, "helpfulness", 3)
        scores.add(execution, "resolved", True)
    session_score = scores.add_session("conv-1", "csat", "happy")

    result = retention.purge(30, batch_size=1)

    assert result.executions == 2
    assert set(Score.objects.values_list("execution_id", flat=True)) == {recent.pk, None}
    assert Score.objects.filter(pk=session_score.pk).exists()


def test_delete_scores_twins_agree():
    executions = [ExecutionFactory() for _ in range(4)]
    for execution in executions:
        scores.add(execution, "helpfulness", 3)
        scores.add(execution, "resolved", False)
    scores.add_session("conv-1", "csat", "happy")
    ids = [executions[0].pk, executions[2].pk, uuid.uuid4()]
    twins = [fastpaths.delete_scores_portable]
    if POSTGRESQL:
        twins.append(fastpaths.delete_scores_postgresql)
    for delete in twins:
        with transaction.atomic():
            assert delete(connection, Score, ids) == 4
            assert set(Score.objects.values_list("execution_id", flat=True)) == {
                executions[1].pk,
                executions[3].pk,
                None,
            }
            transaction.set_rollback(True)


@postgresql_only
def test_purge_of_monthly_partitions_deletes_the_scores_of_the_months_it_drops():
    from .test_partitions import MONTHLY, run

    now = timezone.now()
    old = ExecutionFactory(started_at=now - dt.timedelta(days=120))
    nested = ExecutionFactory(parent=old, started_at=old.started_at + dt.timedelta(seconds=1))
    recent = ExecutionFactory(started_at=now - dt.timedelta(days=1))
    for execution in (old, nested, recent):
        scores.add(execution, "helpfulness", 3)
    run("--enable", "--no-partman")

    with MONTHLY:
        result = retention.purge(60)

    assert result.months >= 1
    assert list(Score.objects.values_list("execution_id", flat=True)) == [recent.pk]


# -- plans (PostgreSQL) ---------------------------------------------------------------------------------


def plans(queries: list[dict]) -> list[str]:
    """EXPLAIN of each captured query that reads the scores (with sequential scans discouraged: the
    tables of a test are small)."""
    texts = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan TO off")
        for query in queries:
            if Score._meta.db_table in query["sql"] and ScoreConfig._meta.db_table not in query["sql"]:
                cursor.execute(f"EXPLAIN {query['sql']}")
                texts.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute("RESET enable_seqscan")
    return texts


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_an_unfiltered_score_summary_reads_the_scores_of_its_name_by_index():
    from django.test.utils import CaptureQueriesContext

    executions = Execution.objects.bulk_create(ExecutionFactory.build() for _ in range(200))
    Score.objects.bulk_create(
        Score(
            execution=execution,
            execution_started_at=execution.started_at,
            name=f"name-{number % 20}",
            value=number % 5,
        )  # fmt: skip
        for number, execution in enumerate(executions)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Score._meta.db_table}")
    with CaptureQueriesContext(connection) as captured:
        Execution.objects.score_summary("name-3")
    aggregate, median = plans(captured.captured_queries)
    # The aggregate grouped by data type in the order of llm_score_value_idx (no sort), the median
    # walked to in it (no sort either).
    for text in (aggregate, median):
        assert "llm_score_value_idx" in text, text
        assert "Sort" not in text, text
        assert Execution._meta.db_table not in text, text  # no join when nothing filters the executions
    assert "Limit" in median, median


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_score_analytics_of_a_period_read_one_range_of_the_name_index_without_a_join():
    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    executions = Execution.objects.bulk_create(
        ExecutionFactory.build(started_at=now - dt.timedelta(hours=number)) for number in range(300)
    )
    Score.objects.bulk_create(
        Score(
            execution=execution,
            execution_started_at=execution.started_at,
            name=f"name-{number % 3}",
            value=number % 5,
        )  # fmt: skip
        for number, execution in enumerate(executions)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Score._meta.db_table}")
    period = Execution.objects.between(now - dt.timedelta(days=5), now - dt.timedelta(days=1))
    with CaptureQueriesContext(connection) as captured:
        period.score_summary("name-1")
        period.scores_by("name-1", "day")
    for text in plans(captured.captured_queries):
        assert "llm_score_name_idx" in text, text
        assert "execution_started_at >=" in text and "execution_started_at <" in text, text
        assert Execution._meta.db_table not in text, text
        assert "Join" not in text and "SubPlan" not in text, text
