"""Evaluation runs in sync mode (SPEC sections 17 and 21): the agent called for every active item, each
output scored by the evaluators, the results, scores, counters, costs and summary stored."""

from __future__ import annotations

import time
from decimal import Decimal

import pydantic
import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from llm_agents import Agent, Param, Tool, evals, signals, tasks, tenant
from llm_agents.models import (
    CostConfig,
    Dataset,
    DatasetItem,
    EvalRun,
    Execution,
    Prompt,
)
from llm_agents.pricing import calculate_cost
from llm_agents.testing import fake_llm

pytestmark = pytest.mark.django_db

OPENAI = "llm_agents.providers.openai.OpenAIProvider"


class EchoAgent(Agent):
    """The offline provider answers with the last user message: the output is the question."""

    model = "fake/echo"
    question = Param(required=True)

    def user_prompt(self):
        return self.question


class SupportAgent(Agent):
    model = "gpt-4o-mini"
    fallback_models = ["gpt-4.1-mini"]
    version = "2.1"
    question = Param(required=True)

    def system_prompt(self):
        return "Answer briefly."

    def user_prompt(self):
        return self.question


class Answer(pydantic.BaseModel):
    answer: str
    confident: bool


class StructuredAgent(Agent):
    model = "gpt-4o-mini"
    schema = Answer
    question = Param(required=True)

    def user_prompt(self):
        return self.question


class PromptedAgent(Agent):
    prompt = "greeting"
    name = Param(required=True)


class Lookup(Tool):
    name = "lookup"
    description = "Look a word up"
    word = Param(required=True)

    def run(self, word):
        return word


class ToolAgent(Agent):
    model = "gpt-4o-mini"
    tools = [Lookup]
    question = Param(required=True)

    def user_prompt(self):
        return self.question


class NotAnAgent:
    pass


@pytest.fixture
def prices(db):
    """gpt-4o-mini at $0.15 / $0.60 and gpt-4o at $2.50 / $10.00 per million tokens."""
    for model, input_price, output_price in (("gpt-4o-mini", "0.15", "0.6"), ("gpt-4o", "2.5", "10")):
        CostConfig.objects.create(
            model=model, input_price_per_mtok=Decimal(input_price), output_price_per_mtok=Decimal(output_price),
            effective_from="2020-01-01T00:00Z",
        )  # fmt: skip


def make_dataset(slug="faq", answers=None, **extra):
    """A dataset whose items ask ``question`` and expect the same text back (what EchoAgent answers)."""
    dataset = Dataset.objects.create(slug=slug, name=slug.upper())
    for question in answers or ["alpha", "beta", "gamma"]:
        DatasetItem.objects.create(
            dataset=dataset, input={"question": question}, expected_output=question, **extra
        )
    return dataset


@pytest.fixture
def registered():
    """Evaluators registered by a test are forgotten after it."""
    before = set(evals.registered())
    yield
    for name in set(evals.registered()) - before:
        evals.unregister(name)


def capture(signal):
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs)

    signal.connect(receiver, weak=False)
    return sent, receiver


def scores_of(run, name):
    return {
        score.eval_result.item.input["question"]: score
        for score in run.scores.filter(name=name).select_related("eval_result__item")
    }


# -- a sync run end to end ------------------------------------------------------------------------------


def test_a_sync_run_through_the_openai_sdk_stores_results_scores_counters_costs_and_summary(
    openai_server, prices, django_capture_on_commit_callbacks
):
    dataset = make_dataset(answers=["alpha", "beta", "gamma", "delta"])
    item = dataset.items.get(input={"question": "delta"})
    item.expected_output = "something else"
    item.save()
    DatasetItem.objects.create(dataset=dataset, input={"question": "inactive"}, is_active=False)
    sent, receiver = capture(signals.eval_run_completed)
    try:
        with override_settings(LLM_AGENTS={"PROVIDERS": {"openai": {"class": OPENAI, "api_key": "t",
                                                                   "base_url": openai_server.url}}}):  # fmt: skip
            with django_capture_on_commit_callbacks(execute=True):
                run = evals.run(
                    "faq", "tests.test_evals.SupportAgent",
                    evaluators=["exact_match", ("contains", {"ignore_case": True}), "similarity",
                                ("max_cost", {"usd": 1}), ("regex", {"pattern": "^[a-z]+$"})],
                    name="nightly",
                )  # fmt: skip
    finally:
        signals.eval_run_completed.disconnect(receiver)

    run.refresh_from_db()
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.name, run.mode, run.error) == ("nightly", "sync", "")
    assert (run.agent_type, run.target, run.agent_version) == (
        "SupportAgent",
        "tests.test_evals.SupportAgent",
        "2.1",
    )
    assert run.evaluators == [
        {"name": "exact_match", "params": {}},
        {"name": "contains", "params": {"ignore_case": True}},
        {"name": "similarity", "params": {}},
        {"name": "max_cost", "params": {"usd": 1}},
        {"name": "regex", "params": {"pattern": "^[a-z]+$"}},
    ]
    assert (run.item_count, run.completed_count, run.failed_count) == (4, 4, 0)
    assert run.started_at <= run.completed_at
    # Every item was one real request through the SDK, recorded as an execution of the run.
    assert len(openai_server.requests_to("/v1/chat/completions")) == 4
    executions = Execution.objects.filter(eval_run=run)
    assert executions.count() == 4
    assert set(executions.values_list("agent_type", "model_id", "status")) == {
        ("SupportAgent", "gpt-4o-mini", "success")
    }
    assert run.total_cost == sum(e.total_cost for e in executions) > 0
    assert run.eval_cost == 0

    results = {r.item.input["question"]: r for r in run.results.select_related("item", "execution")}
    assert set(results) == {"alpha", "beta", "gamma", "delta"}
    assert results["alpha"].output == "alpha"
    assert results["alpha"].execution.eval_run_id == run.pk
    assert all(r.error == "" for r in results.values())

    assert run.scores.count() == 20
    exact = scores_of(run, "exact_match")
    assert {q: s.value for q, s in exact.items()} == {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "delta": 0.0}
    alpha = exact["alpha"]
    assert (alpha.source, alpha.data_type, alpha.eval_run_id) == ("evaluator", "boolean", run.pk)
    assert alpha.execution_id == results["alpha"].execution_id
    assert alpha.eval_result_id == results["alpha"].pk
    similarity = scores_of(run, "similarity")
    assert similarity["alpha"].data_type == "numeric"
    assert similarity["alpha"].value == 1.0
    assert 0 < similarity["delta"].value < 1
    assert scores_of(run, "max_cost")["beta"].comment.startswith("cost $")

    assert run.summary == run.summarize()
    assert run.summary["exact_match"]["n"] == 4
    assert run.summary["exact_match"]["mean"] == 0.75
    assert run.summary["exact_match"]["pass_rate"] == 75.0
    assert run.summary["regex"]["mean"] == 1.0
    assert [kwargs["run"].pk for kwargs in sent] == [run.pk]
    assert sent[0]["run"].status == EvalRun.Status.COMPLETED


def test_the_run_signal_waits_for_the_commit(django_capture_on_commit_callbacks):
    make_dataset()
    sent, receiver = capture(signals.eval_run_completed)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            run = evals.run("faq", EchoAgent, evaluators=["exact_match"])
        assert sent == []
        for callback in callbacks:
            callback()
    finally:
        signals.eval_run_completed.disconnect(receiver)
    assert [kwargs["run"].pk for kwargs in sent] == [run.pk]


def test_outputs_of_an_agent_with_a_schema_are_parsed(prices):
    make_dataset(answers=["one"])
    with fake_llm() as llm:
        llm.respond('{"answer": "one", "confident": true}', model="gpt-4o-mini")
        run = evals.run(
            "faq", StructuredAgent,
            evaluators=["json_valid", ("json_schema", {"schema": {"type": "object", "required": ["answer", "reason"]}})],
        )  # fmt: skip
    result = run.results.get()
    assert result.output == {"answer": "one", "confident": True}
    assert run.scores.get(name="json_valid").value == 1.0
    schema_score = run.scores.get(name="json_schema")
    assert schema_score.value == 0.0
    assert "'reason' is required" in schema_score.comment


def test_scores_carry_the_tenant_and_the_start_of_their_execution():
    make_dataset(answers=["one"])
    with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}), tenant("acme"):
        run = evals.run("faq", EchoAgent, evaluators=["exact_match"])
    execution = Execution.objects.get(eval_run=run)
    assert execution.tenant_id == "acme"
    score = run.scores.get()
    assert score.tenant_id == "acme"
    assert score.execution_started_at == execution.started_at


# -- failures of items and of evaluators ----------------------------------------------------------------


def test_an_item_that_fails_fails_alone_and_keeps_its_execution(prices):
    dataset = make_dataset(answers=["first", "second"])
    DatasetItem.objects.create(dataset=dataset, input={"wrong": "param"}, expected_output="x")
    with fake_llm() as llm:
        llm.fail("invalid_request", model="gpt-4o-mini", message="The prompt is refused.")
        llm.fail("invalid_request", model="gpt-4.1-mini", message="The prompt is refused.")
        run = evals.run(dataset, SupportAgent, evaluators=["exact_match"], concurrency=1)
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.item_count, run.completed_count, run.failed_count) == (3, 1, 2)
    results = {r.item.input.get("question", "bad input"): r for r in run.results.select_related("item")}
    refused = results["first"]
    assert "The prompt is refused." in refused.error
    assert refused.output is None
    assert refused.execution.status == "error"
    assert refused.execution.eval_run_id == run.pk
    assert "unknown parameter(s): wrong" in results["bad input"].error
    assert results["bad input"].execution_id is None
    assert results["second"].error == ""
    assert run.scores.count() == 1
    assert run.summary["exact_match"] == {**run.summary["exact_match"], "n": 3, "mean": round(1 / 3, 4)}


def test_an_evaluator_that_raises_gives_no_score_and_the_run_goes_on(registered):
    @evals.evaluator("picky")
    def picky(*, output, expected, item, execution):
        if output == "beta":
            raise RuntimeError("cannot judge beta")
        return 0.5

    @evals.evaluator("too_high")
    def too_high(*, output, expected, item, execution):
        return 1.5

    make_dataset()
    run = evals.run("faq", EchoAgent, evaluators=["picky", "too_high", "exact_match"])
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.completed_count, run.failed_count) == (3, 0)
    beta = run.results.get(item__input={"question": "beta"})
    assert "picky: RuntimeError: cannot judge beta" in beta.error
    assert "too_high: ValueError: evaluator 'too_high' returned 1.5, outside [0, 1]" in beta.error
    assert set(beta.scores.values_list("name", flat=True)) == {"exact_match"}
    assert run.scores.filter(name="picky").count() == 2
    assert run.scores.filter(name="too_high").count() == 0
    assert run.summary["picky"]["mean"] == round(1 / 3, 4)  # the item without a score counts as 0


def test_evaluators_may_return_an_eval_score_with_a_comment(registered):
    @evals.evaluator("length")
    def length(*, output, expected, item, execution, limit=10):
        return evals.EvalScore(min(len(output) / limit, 1.0), comment=f"{len(output)} characters")

    make_dataset(answers=["abcde"])
    run = evals.run("faq", EchoAgent, evaluators=[{"name": "length", "params": {"limit": 20}}])
    score = run.scores.get()
    assert (score.data_type, score.value, score.comment) == ("numeric", 0.25, "5 characters")


# -- what is refused before anything runs ---------------------------------------------------------------


def nothing_stored():
    return not EvalRun.objects.exists() and not Execution.objects.exists()


@pytest.mark.parametrize(
    ("evaluators", "message"),
    [
        (["exact_match", "no_such_thing"], "No evaluator is registered as 'no_such_thing'"),
        (["regex"], "Evaluator 'regex' cannot take the params {}"),
        ([("regex", {"pattern": "("})], "is not a valid regular expression"),
        ([("max_cost", {"usd": "lots"})], "usd must be a number"),
        ([("contains", {"unknown": 1})], "Evaluator 'contains' cannot take the params"),
        ([("llm_judge", {"criteria": ""})], "criteria must be a non-empty text"),
        ([("llm_judge", {"criteria": "Polite", "scale": 10})], 'scale must be 5 or "pass_fail"'),
        (["exact_match", "exact_match"], "given twice"),
        ([("json_schema", {"schema": "not a schema"})], "schema must be a JSON schema"),
    ],
)
def test_bad_evaluators_are_refused_before_anything_runs(evaluators, message):
    make_dataset()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
        evals.run("faq", EchoAgent, evaluators=evaluators)
    assert nothing_stored()


def test_a_missing_dataset_is_named():
    with pytest.raises(ValueError, match="No dataset has the slug 'missing'"):
        evals.run("missing", EchoAgent, evaluators=["exact_match"])
    assert nothing_stored()


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ("tests.test_evals.NoSuchAgent", "The agent 'tests.test_evals.NoSuchAgent' cannot be imported"),
        ("no_such_module.Agent", "The agent 'no_such_module.Agent' cannot be imported"),
        ("tests.test_evals.NotAnAgent", "is not an Agent subclass"),
    ],
)
def test_an_agent_that_does_not_import_is_named(agent, message):
    make_dataset()
    with pytest.raises(ValueError, match=message):
        evals.run("faq", agent, evaluators=["exact_match"])
    assert nothing_stored()


def test_an_agent_defined_in_a_function_is_refused():
    class LocalAgent(EchoAgent):
        pass

    make_dataset()
    with pytest.raises(ValueError, match="define it at a module's top level"):
        evals.create_run("faq", LocalAgent)
    assert nothing_stored()


def test_other_arguments_are_checked():
    dataset = make_dataset()
    with pytest.raises(ValueError, match="mode must be one of sync, batch"):
        evals.create_run(dataset, EchoAgent, mode="later")
    with pytest.raises(ValueError, match="concurrency must be a whole number of at least 1"):
        evals.create_run(dataset, EchoAgent, concurrency=0)
    with pytest.raises(ValueError, match="has no managed prompt"):
        evals.create_run(dataset, EchoAgent, prompt_version=1)
    with pytest.raises(ValueError, match="has tools, so it cannot run in batch mode"):
        evals.create_run(dataset, ToolAgent, mode="batch")
    dataset.items.update(is_active=False)
    with pytest.raises(ValueError, match="The dataset 'faq' has no active item"):
        evals.create_run(dataset, EchoAgent)
    assert nothing_stored()


def test_a_run_that_cannot_proceed_fails_with_the_reason(registered):
    @evals.evaluator("temporary")
    def temporary(*, output, expected, item, execution):
        return True

    make_dataset()
    pending = evals.create_run("faq", EchoAgent, evaluators=["temporary"])
    assert (pending.status, pending.item_count) == (EvalRun.Status.PENDING, 3)
    evals.unregister("temporary")  # e.g. a worker that does not import the module registering it
    run = evals.execute(pending)
    assert run.status == EvalRun.Status.FAILED
    assert "No evaluator is registered as 'temporary'" in run.error
    assert run.completed_at is not None
    assert not run.results.exists()
    assert not Execution.objects.exists()


def test_execute_leaves_a_run_that_is_not_pending_as_it_is():
    make_dataset()
    run = evals.run("faq", EchoAgent, evaluators=["exact_match"])
    assert run.status == EvalRun.Status.COMPLETED
    again = evals.execute(run.pk)
    assert again.status == EvalRun.Status.COMPLETED
    assert run.results.count() == 3
    assert Execution.objects.count() == 3


# -- overrides ------------------------------------------------------------------------------------------


def test_the_model_override_replaces_the_model_and_its_fallbacks():
    make_dataset(answers=["one", "two"])
    with fake_llm() as llm:
        llm.fail("server_error", model="gpt-4o")
        run = evals.run("faq", SupportAgent, evaluators=["exact_match"], model="gpt-4o")
    assert run.model == "gpt-4o"
    assert [call[0] for call in llm.calls] == ["gpt-4o", "gpt-4o"]  # no fallback to gpt-4.1-mini
    assert set(Execution.objects.values_list("model_id", flat=True)) == {"gpt-4o"}
    assert (run.completed_count, run.failed_count) == (1, 1)


def test_the_prompt_version_override_renders_that_version():
    prompt = Prompt.objects.create(slug="greeting", name="Greeting")
    first = prompt.update_content([{"role": "user", "content": "Hello {{name}}"}], model="fake/echo")
    prompt.update_content([{"role": "user", "content": "Goodbye {{name}}"}], model="fake/echo")
    dataset = Dataset.objects.create(slug="names", name="Names")
    DatasetItem.objects.create(dataset=dataset, input={"name": "Ada"}, expected_output="Hello Ada")

    current = evals.run(dataset, PromptedAgent, evaluators=["exact_match"])
    assert current.results.get().output == "Goodbye Ada"
    overridden = evals.run(dataset, PromptedAgent, evaluators=["exact_match"], prompt_version=1)
    assert overridden.prompt_version == first
    assert overridden.results.get().output == "Hello Ada"
    assert overridden.summary["exact_match"]["mean"] == 1.0
    assert Execution.objects.get(eval_run=overridden).prompt_version_id == first.pk
    with pytest.raises(ValueError, match="Prompt 'greeting' has no version 7"):
        evals.create_run(dataset, PromptedAgent, prompt_version=7)


# -- the judge ------------------------------------------------------------------------------------------


def judged_run(*answers, scale=5, **options):
    make_dataset(answers=["alpha"])
    with fake_llm() as llm:
        for answer in answers:
            llm.respond(answer, model="gpt-4o", input_tokens=1000, output_tokens=100)
        run = evals.run(
            "faq", SupportAgent,
            evaluators=[("llm_judge", {"criteria": "Repeats the question", "model": "gpt-4o", "scale": scale})],
            **options,
        )  # fmt: skip
    return run, llm


def test_the_judge_grades_on_a_scale_of_5_as_a_tracked_execution_of_the_run(prices):
    run, llm = judged_run('{"score": 4, "reasoning": "Close enough."}')
    score = run.scores.get()
    assert (score.name, score.data_type, score.value, score.comment) == (
        "llm_judge",
        "numeric",
        0.75,
        "Close enough.",
    )
    judge = Execution.objects.get(agent_type="llm_judge")
    assert judge.eval_run_id == run.pk
    assert judge.model_id == "gpt-4o"
    # The judge saw the criteria, the input, the expected output and the output.
    _model, messages, _params = llm.calls[-1]
    prompt = messages[-1]["content"]
    assert "Repeats the question" in prompt and "Expected output:\nalpha" in prompt
    assert "Output to grade:\nalpha" in prompt


def test_the_judges_cost_counts_in_eval_cost_not_total_cost(prices):
    run, _ = judged_run('{"score": 5, "reasoning": "Exact."}')
    agent = Execution.objects.get(agent_type="SupportAgent")
    judge = Execution.objects.get(agent_type="llm_judge")
    assert judge.total_cost == calculate_cost("gpt-4o", 1000, 100, 0).total_cost > 0
    assert run.total_cost == agent.total_cost > 0
    assert run.eval_cost == judge.total_cost


def test_an_unreadable_judge_answer_is_asked_again_once(prices):
    run, llm = judged_run("I think it is fine.", '```json\n{"score": 1, "reasoning": "Wrong."}\n```')
    assert run.scores.get().value == 0.0
    judges = Execution.objects.filter(agent_type="llm_judge", eval_run=run)
    assert judges.count() == 2
    assert "could not be read" in llm.calls[-1][1][-1]["content"]
    assert run.eval_cost == sum(judge.total_cost for judge in judges) > 0
    assert run.results.get().error == ""


def test_two_unreadable_judge_answers_fail_the_judges_score_with_the_answer(prices):
    run, _ = judged_run("Looks good to me.", '{"score": 9, "reasoning": "Great."}')
    result = run.results.get()
    assert not run.scores.exists()
    assert "llm_judge: JudgeAnswerError" in result.error
    assert "the score 9 is not a number from 1 to 5" in result.error
    assert '\'{"score": 9, "reasoning": "Great."}\'' in result.error
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.completed_count, run.failed_count) == (1, 0)
    assert run.summary["llm_judge"]["mean"] == 0.0
    assert run.eval_cost > 0


def test_a_pass_fail_judge_gives_a_boolean_score(prices):
    run, _ = judged_run('{"score": "pass", "reasoning": "Fine."}', scale="pass_fail")
    score = run.scores.get()
    assert (score.data_type, score.value) == ("boolean", 1.0)


def test_the_judge_reads_its_answers():
    read = evals.judge.read_verdict
    assert read('{"score": 3, "reasoning": "ok"}', 5) == evals.EvalScore(0.5, "ok")
    assert read(' {"score": "2"} ', 5).value == 0.25
    assert read('{"score": false, "reasoning": "no"}', "pass_fail") == evals.EvalScore(False, "no")
    assert read('{"score": 1}', "pass_fail").value is True
    for answer, scale in (("[]", 5), ('{"reasoning": "x"}', 5), ('{"score": 0}', 5), ('{"score": true}', 5),
                          ('{"score": "maybe"}', "pass_fail"), ("not json", "pass_fail")):  # fmt: skip
        with pytest.raises(evals.JudgeAnswerError):
            read(answer, scale)


# -- built-in evaluators --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "output", "expected", "value"),
    [
        ("exact_match", {}, " yes\n", "yes", True),
        ("exact_match", {}, {"a": 1}, {"a": 1}, True),
        ("exact_match", {}, "no", "yes", False),
        ("contains", {}, "It is Django.", "Django", True),
        ("contains", {}, "It is django.", "Django", False),
        ("contains", {"ignore_case": True}, "It is django.", "Django", True),
        ("regex", {"pattern": r"\d{3}"}, "call 555", None, True),
        ("json_valid", {}, '{"a": 1}', None, True),
        ("json_valid", {}, "{a: 1}", None, False),
        ("json_schema", {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}, '{"a": 1}', None,
         True),
        ("json_schema", {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}, '{"a": "x"}',
         None, False),
        ("similarity", {}, "abcd", "abcd", 1.0),
        ("similarity", {}, "abcd", "abxy", 0.5),
    ],
)  # fmt: skip
def test_built_in_evaluators(name, params, output, expected, value):
    judgement = evals.get_evaluator(name).score(
        params, output=output, expected=expected, item=None, execution=None
    )
    assert judgement.value == float(value)


def test_built_in_evaluators_that_read_the_execution():
    execution = Execution(total_cost=Decimal("0.002"), duration_ms=1200)
    cost = evals.get_evaluator("max_cost")
    latency = evals.get_evaluator("max_latency")
    assert cost.score({"usd": 0.01}, output="", expected=None, item=None, execution=execution).value == 1.0
    assert cost.score({"usd": 0.001}, output="", expected=None, item=None, execution=execution).value == 0.0
    assert latency.score({"ms": 1000}, output="", expected=None, item=None, execution=execution).value == 0.0
    with pytest.raises(ValueError, match="no duration"):
        latency.score(
            {"ms": 1000}, output="", expected=None, item=None, execution=Execution(duration_ms=None)
        )
    with pytest.raises(ValueError, match="no expected output"):
        evals.get_evaluator("exact_match").score({}, output="x", expected=None, item=None, execution=None)


# -- the Celery task ------------------------------------------------------------------------------------


def test_the_celery_task_runs_a_pending_run():
    make_dataset()
    pending = evals.create_run("faq", "tests.test_evals.EchoAgent", ["exact_match"])
    assert tasks.run_eval.name == "llm_agents.tasks.run_eval"
    assert tasks.run_eval.delay(str(pending.pk)).get() == "completed"
    pending.refresh_from_db()
    assert pending.status == EvalRun.Status.COMPLETED
    assert pending.summary["exact_match"]["mean"] == 1.0
    assert tasks.run_eval.delay(str(pending.pk)).get() == "completed"  # a repeated delivery changes nothing
    assert pending.results.count() == 3


# -- concurrency and overhead ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_items_run_concurrently_on_threads_that_close_their_connections():
    make_dataset(answers=[f"q{n}" for n in range(8)])
    threads_before = connections_open()
    with fake_llm() as llm:
        for _ in range(8):
            llm.respond("slow answer", model="gpt-4o-mini", delay=0.3)
        started = time.monotonic()
        run = evals.run("faq", SupportAgent, evaluators=["exact_match"], concurrency=4)
        elapsed = time.monotonic() - started
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.completed_count, run.failed_count) == (8, 0)
    assert run.results.count() == 8
    assert Execution.objects.filter(eval_run=run).count() == 8
    if connection.vendor == "postgresql":
        assert elapsed < 8 * 0.3 * 0.6, elapsed  # four at a time, not one after another
        assert connections_open() <= threads_before
    else:
        assert elapsed >= 8 * 0.3  # SQLite: one writer at a time, so one item at a time


def connections_open():
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_each_item_costs_no_more_queries_than_its_agent_call():
    make_dataset(slug="small", answers=[f"s{n}" for n in range(10)])
    make_dataset(slug="large", answers=[f"l{n}" for n in range(30)])
    with CaptureQueriesContext(connection) as calls:
        for n in range(20):
            EchoAgent.call(question=f"q{n}")
    per_call = len(calls) / 20
    with CaptureQueriesContext(connection) as small:
        evals.run("small", EchoAgent, evaluators=["exact_match", "similarity"])
    with CaptureQueriesContext(connection) as large:
        evals.run("large", EchoAgent, evaluators=["exact_match", "similarity"])
    per_item = (len(large) - len(small)) / 20
    assert per_item <= per_call + 0.25, (per_item, per_call)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_a_pending_run(tmp_path):
    """What ``POST evals/`` does: a pending run, its task sent through a broker, a worker executing it."""
    from celery import Celery

    from tests.workers import READY_TIMEOUT, CeleryWorker, RedisServer, wait_for

    if connection.vendor != "postgresql":
        pytest.skip("the worker shares the test database: needs PostgreSQL")
    make_dataset()
    pending = evals.create_run("faq", "tests.test_evals.EchoAgent", ["exact_match", "similarity"])
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        Celery("sender", broker=redis.url, set_as_current=False).send_task(
            "llm_agents.tasks.run_eval", args=[str(pending.pk)]
        )
        worker = CeleryWorker(redis.url).start()
        try:
            finished = wait_for(
                lambda: EvalRun.objects.get(pk=pending.pk).status == EvalRun.Status.COMPLETED,
                timeout=READY_TIMEOUT,
            )
        finally:
            worker.stop()
    finally:
        redis.stop()
    assert finished
    pending.refresh_from_db()
    assert (pending.completed_count, pending.failed_count) == (3, 0)
    assert pending.summary["exact_match"]["mean"] == 1.0
    assert Execution.objects.filter(eval_run=pending).count() == 3
