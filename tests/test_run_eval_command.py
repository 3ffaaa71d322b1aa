"""``manage.py run_eval``: progress, the summary, and a non-zero exit under ``--fail-under`` (for CI)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from llm_agents.management.commands.run_eval import parse_evaluator
from llm_agents.models import BatchRequest, EvalRun, Execution

from .test_eval_batches import batch_api  # noqa: F401  (a fixture)
from .test_eval_batches import make_dataset as make_batch_dataset
from .test_evals import make_dataset

pytestmark = pytest.mark.django_db

ECHO = "tests.test_evals.EchoAgent"


def run_eval(*args):
    out, err = StringIO(), StringIO()
    call_command("run_eval", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_a_run_above_the_threshold_prints_progress_and_summary_and_exits_zero():
    make_dataset(answers=["alpha", "beta", "gamma", "delta"])
    output = run_eval("faq", "--agent", ECHO, "--evaluator", "exact_match", "--evaluator", "regex:pattern=^[a-z]+$",
                      "--fail-under", "0.8", "--name", "ci")  # fmt: skip
    run = EvalRun.objects.get()
    assert (run.status, run.name, run.item_count) == (EvalRun.Status.COMPLETED, "ci", 4)
    assert run.evaluators == [
        {"name": "exact_match", "params": {}},
        {"name": "regex", "params": {"pattern": "^[a-z]+$"}},
    ]
    assert f"Evaluation run {run.pk}: EchoAgent on 4 items (sync mode)." in output
    assert "4/4 items done (0 failed)" in output
    assert "exact_match: mean 1.0000, pass rate 100.00%, ci95 [1.0000, 1.0000], n 4" in output
    assert f"Run {run.pk} completed: 4 items completed, 0 failed" in output


def test_a_run_under_the_threshold_exits_non_zero_naming_the_evaluator():
    dataset = make_dataset(answers=["alpha", "beta", "gamma", "delta"])
    dataset.items.filter(input={"question": "delta"}).update(expected_output="other")
    with pytest.raises(CommandError, match=r"Under --fail-under 0.8: exact_match 0.7500\."):
        run_eval("faq", "--agent", ECHO, "--evaluator", "exact_match", "--evaluator", "similarity",
                 "--fail-under", "0.8")  # fmt: skip
    assert EvalRun.objects.get().status == EvalRun.Status.COMPLETED
    run_eval(
        "faq", "--agent", ECHO, "--evaluator", "exact_match", "--fail-under", "0.75"
    )  # exactly at it passes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing", "--agent", ECHO], "No dataset has the slug 'missing'"),
        (["faq", "--agent", "tests.nowhere.Agent"], "cannot be imported"),
        (["faq", "--agent", ECHO, "--evaluator", "nope"], "No evaluator is registered as 'nope'"),
        (["faq", "--agent", ECHO, "--evaluator", "regex:pattern"], "'pattern' is not key=value"),
        (["faq", "--agent", ECHO, "--evaluator", ":x=1"], "has no name"),
        (["faq", "--agent", ECHO, "--fail-under", "80"], "--fail-under must be between 0 and 1"),
        (["faq", "--agent", ECHO, "--prompt-version", "2"], "has no managed prompt"),
    ],
)
def test_bad_arguments_exit_non_zero_with_the_reason(args, message):
    make_dataset()
    with pytest.raises(CommandError, match=message):
        run_eval(*args)
    assert not EvalRun.objects.exists()


def test_evaluator_params_are_read_as_json_when_they_are():
    assert parse_evaluator("exact_match") == ("exact_match", {})
    assert parse_evaluator("max_cost:usd=0.01") == ("max_cost", {"usd": 0.01})
    assert parse_evaluator("llm_judge:criteria=Is polite,scale=pass_fail,model=gpt-4o") == (
        "llm_judge", {"criteria": "Is polite", "scale": "pass_fail", "model": "gpt-4o"},
    )  # fmt: skip
    assert parse_evaluator('json_schema:{"schema": {"type": "object"}}') == (
        "json_schema", {"schema": {"type": "object"}},
    )  # fmt: skip


def test_a_dry_run_checks_and_stores_nothing():
    make_dataset()
    output = run_eval("faq", "--agent", ECHO, "--evaluator", "exact_match", "--dry-run")
    assert (
        "Would evaluate tests.test_evals.EchoAgent on 3 items of 'faq' (sync mode) with exact_match."
        in output
    )
    assert not EvalRun.objects.exists()
    assert not Execution.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_batch_mode_flushes_and_polls_until_every_item_is_settled(batch_api):  # noqa: F811
    batch_api.auto_complete = False
    make_batch_dataset(4)
    polls = []

    def respond(custom_id, body):
        return body["input"]

    batch_api.respond = respond
    original = batch_api._retrieve

    def retrieve(request):  # in progress at the first poll, completed at the second
        polls.append(request)
        if len(polls) == 2:
            batch_api.auto_complete = True
        return original(request)

    batch_api.server.route("GET", "/v1/batches/{batch_id}", retrieve)
    output = run_eval("batch", "--agent", "tests.test_eval_batches.BatchAgent", "--mode", "batch",
                      "--evaluator", "exact_match", "--poll-interval", "0", "--fail-under", "1")  # fmt: skip
    run = EvalRun.objects.get()
    assert (run.status, run.completed_count) == (EvalRun.Status.COMPLETED, 4)
    assert len(polls) == 2
    assert set(BatchRequest.objects.values_list("status", flat=True)) == {BatchRequest.Status.SUCCEEDED}
    assert "4/4 items done (0 failed)" in output
    assert "exact_match: mean 1.0000" in output
