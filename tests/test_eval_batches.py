"""Evaluation runs in batch mode: every item through the Batch API (the real openai SDK against the fake Files
and Batch API of ``tests.fake_servers``), scored when ``batches.poll()`` settles it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pydantic
import pytest
from django.test import override_settings

from llm_agents import Agent, Param, batches, evals, signals
from llm_agents.models import Batch, BatchRequest, CostConfig, Dataset, DatasetItem, EvalRun, Execution
from llm_agents.pricing import calculate_cost
from llm_agents.testing import fake_llm

from .test_evals import ToolAgent

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI = "llm_agents.providers.openai.OpenAIProvider"


class BatchAgent(Agent):
    model = "gpt-4.1-mini"
    temperature = 0.2
    max_tokens = 300
    question = Param(required=True)

    def system_prompt(self):
        return "Answer briefly."

    def user_prompt(self):
        return self.question


class Verdict(pydantic.BaseModel):
    label: str


class LabelAgent(Agent):
    model = "gpt-4.1-mini"
    schema = Verdict
    question = Param(required=True)

    def user_prompt(self):
        return self.question


@pytest.fixture
def batch_api(openai_server):
    """The fake Batch API (every line answered with 1,000 input and 100 output tokens), the openai provider
    pointed at it, gpt-4.1-mini priced by a CostConfig and batch results at 40% of it."""
    CostConfig.objects.create(
        provider="openai", model="gpt-4.1-mini", input_price_per_mtok=Decimal("10"),
        output_price_per_mtok=Decimal("20"), effective_from="2020-01-01T00:00Z",
    )  # fmt: skip
    CostConfig.objects.create(
        provider="openai", model="gpt-4o", input_price_per_mtok=Decimal("2.5"),
        output_price_per_mtok=Decimal("10"), effective_from="2020-01-01T00:00Z",
    )  # fmt: skip
    openai_server.batches.input_tokens, openai_server.batches.output_tokens = 1000, 100
    settings = {"PROVIDERS": {"openai": {"class": OPENAI, "api_key": "test", "base_url": openai_server.url}},
                "BATCH_DISCOUNT": 0.4}  # fmt: skip
    with override_settings(LLM_AGENTS=settings):
        yield openai_server.batches


def make_dataset(count, slug="batch"):
    dataset = Dataset.objects.create(slug=slug, name=slug)
    DatasetItem.objects.bulk_create(
        DatasetItem(dataset=dataset, input={"question": f"question {n}"}, expected_output=f"question {n}")
        for n in range(count)
    )
    return dataset


def capture(signal):
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs)

    signal.connect(receiver, weak=False)
    return sent, receiver


def test_a_run_of_200_items_completes_when_polled_with_every_item_at_batch_prices(batch_api):
    make_dataset(200)
    sent, receiver = capture(signals.eval_run_completed)
    try:
        run = evals.run("batch", BatchAgent, evaluators=["exact_match", "similarity"], mode="batch")
        # Queued, submitted, and waiting for the provider.
        assert (run.status, run.mode, run.item_count) == (EvalRun.Status.RUNNING, "batch", 200)
        requests = BatchRequest.objects.filter(purpose=evals.EVAL_PURPOSE)
        assert requests.count() == 200
        assert set(requests.values_list("status", flat=True)) == {BatchRequest.Status.SUBMITTED}
        assert all(request.payload["eval_run_id"] == str(run.pk) for request in requests)
        batch = Batch.objects.get()
        line = batch_api.input_lines(batch.provider_batch_id)[0]["body"]
        assert line["instructions"] == "Answer briefly."
        assert line["input"].startswith("question ")
        assert (line["model"], line["temperature"], line["max_output_tokens"]) == ("gpt-4.1-mini", 0.2, 300)
        assert not run.results.exists()
        assert sent == []

        report = batches.poll()
    finally:
        signals.eval_run_completed.disconnect(receiver)

    assert (report.succeeded, report.failed, report.errors) == (200, 0, [])
    run.refresh_from_db()
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.completed_count, run.failed_count) == (200, 0)
    assert [kwargs["run"].pk for kwargs in sent] == [run.pk]
    executions = Execution.objects.filter(eval_run=run)
    assert executions.count() == 200
    assert set(executions.values_list("kind", flat=True)) == {"batch"}
    batch_price = calculate_cost(
        "gpt-4.1-mini", 1000, 100, 0, at=batch.submitted_at, provider="openai", batch=True
    )
    full_price = calculate_cost("gpt-4.1-mini", 1000, 100, 0, at=batch.submitted_at, provider="openai")
    assert batch_price.total_cost == full_price.total_cost * Decimal("0.4")
    assert set(executions.values_list("total_cost", flat=True)) == {batch_price.total_cost}
    assert run.total_cost == 200 * batch_price.total_cost
    assert run.eval_cost == 0
    results = run.results.select_related("item")
    assert results.count() == 200
    assert all(result.output == result.item.expected_output and result.error == "" for result in results)
    assert all(result.execution_id is not None for result in results)
    assert run.scores.count() == 400
    assert run.summary["exact_match"]["mean"] == 1.0
    assert run.summary == run.summarize()
    # Polling and settling again change nothing.
    assert batches.poll().succeeded == 0
    assert evals.settle(run).status == EvalRun.Status.COMPLETED
    assert run.results.count() == 200 and run.scores.count() == 400


def test_the_judge_runs_when_the_results_settle_and_counts_in_eval_cost(batch_api):
    make_dataset(3)
    run = evals.run(
        "batch", BatchAgent, mode="batch",
        evaluators=[("llm_judge", {"criteria": "Repeats the question", "model": "gpt-4o"})],
    )  # fmt: skip
    with fake_llm() as llm:
        for _ in range(3):
            llm.respond(
                '{"score": 5, "reasoning": "Same."}', model="gpt-4o", input_tokens=500, output_tokens=50
            )
        batches.poll()
    run.refresh_from_db()
    assert run.status == EvalRun.Status.COMPLETED
    judges = Execution.objects.filter(agent_type="llm_judge")
    assert judges.count() == 3
    assert set(judges.values_list("eval_run", flat=True)) == {run.pk}
    assert run.eval_cost == sum(judge.total_cost for judge in judges) > 0
    answers = Execution.objects.filter(eval_run=run, kind="batch")
    assert run.total_cost == sum(answer.total_cost for answer in answers) > 0
    assert run.summary["llm_judge"]["mean"] == 1.0


def test_an_expired_batch_fails_the_items_it_did_not_answer_with_the_reason(batch_api):
    batch_api.auto_complete = False
    make_dataset(5)
    run = evals.run("batch", BatchAgent, evaluators=["exact_match"], mode="batch")
    batches.poll()
    run.refresh_from_db()
    assert run.status == EvalRun.Status.RUNNING  # the batch is still in progress
    batch = Batch.objects.get()
    answered = list(BatchRequest.objects.order_by("created_at").values_list("custom_id", flat=True)[:2])
    batch_api.finish(batch.provider_batch_id, "expired", answered=answered)
    batches.poll()
    run.refresh_from_db()
    assert run.status == EvalRun.Status.COMPLETED
    assert (run.completed_count, run.failed_count) == (2, 3)
    failed = run.results.exclude(error="")
    assert failed.count() == 3
    assert all("batch_expired" in result.error for result in failed)
    assert run.summary["exact_match"]["mean"] == 0.4


def test_a_failed_batch_fails_every_item(batch_api):
    batch_api.auto_complete = False
    make_dataset(3)
    run = evals.run("batch", BatchAgent, evaluators=["exact_match"], mode="batch")
    batch_api.finish(Batch.objects.get().provider_batch_id, "failed")
    batches.poll()
    run.refresh_from_db()
    assert (run.status, run.completed_count, run.failed_count) == (EvalRun.Status.COMPLETED, 0, 3)
    assert all("batch_failed" in error for error in run.results.values_list("error", flat=True))


def test_structured_answers_are_parsed_and_items_that_cannot_be_sent_fail_at_once(
    batch_api, registered_check
):
    dataset = make_dataset(2)
    DatasetItem.objects.create(dataset=dataset, input={"topic": "no question"})
    batch_api.respond = lambda custom_id, body: json.dumps({"label": body["input"].upper()})
    run = evals.run("batch", LabelAgent, evaluators=["is_verdict"], mode="batch")
    assert BatchRequest.objects.count() == 2
    bad = run.results.get()
    assert "unknown parameter(s): topic" in bad.error
    assert run.failed_count == 1
    line = batch_api.input_lines(Batch.objects.get().provider_batch_id)[0]["body"]
    assert line["text"]["format"]["name"] == "Verdict"
    batches.poll()
    run.refresh_from_db()
    assert (run.status, run.completed_count, run.failed_count) == (EvalRun.Status.COMPLETED, 2, 1)
    outputs = sorted(result.output["label"] for result in run.results.exclude(output=None))
    assert outputs == ["QUESTION 0", "QUESTION 1"]
    assert registered_check == [True, True]  # the evaluator received Verdict instances


@pytest.fixture
def registered_check():
    seen = []

    @evals.evaluator("is_verdict")
    def is_verdict(*, output, expected, item, execution):
        seen.append(isinstance(output, Verdict))
        return True

    yield seen
    evals.unregister("is_verdict")


def test_an_agent_with_tools_is_refused_before_anything_is_sent(batch_api, openai_server):
    make_dataset(2)
    with pytest.raises(ValueError, match="has tools, so it cannot run in batch mode"):
        evals.run("batch", ToolAgent, evaluators=["exact_match"], mode="batch")
    assert not EvalRun.objects.exists()
    assert not BatchRequest.objects.exists()
    assert openai_server.requests == []


def test_batch_mode_needs_batches_enabled(openai_server):
    make_dataset(1)
    with override_settings(LLM_AGENTS={"BATCH_ENABLED": False}):
        with pytest.raises(ValueError, match="BATCH_ENABLED is off"):
            evals.create_run("batch", BatchAgent, mode="batch")


def test_every_process_has_the_batch_handler_of_evaluation_runs():
    """A poller that never imported the evals (a Celery worker running poll_batches) still settles runs."""
    code = (
        "import django; django.setup(); import sys; from llm_agents import batches; "
        "sys.stdout.write(type(batches.get_handler('llm_agents.eval')).__name__)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("DATABASE_URL", None)
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert found.stdout == "EvalBatchHandler"
