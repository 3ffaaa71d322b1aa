"""Datasets (items by hand, from recorded executions, from and to JSON Lines, the two commands) and the
statistics of evaluation runs (``EvalRun.summarize`` and ``EvalRun.compare``), on the real database."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from llm_agents import Agent, Param
from llm_agents.datasets import export_jsonl, import_jsonl
from llm_agents.errors import AllModelsExhaustedError
from llm_agents.models import Dataset, DatasetItem, EvalResult, EvalRun, Execution, Score
from llm_agents.statistics import mean_ci95
from llm_agents.testing import fake_llm
from tests.factories import ExecutionFactory

pytestmark = pytest.mark.django_db


class FaqAgent(Agent):
    model = "gpt-4o-mini"
    retries = 0
    question = Param(required=True)
    tone = Param(default="plain")

    def user_prompt(self):
        return self.question


@pytest.fixture
def dataset():
    return Dataset.objects.create(slug="faq", name="FAQ")


LINES = [
    {"input": {"question": "Where is my order?", "tone": "warm"}, "expected_output": "It ships tomorrow.",
     "metadata": {"source": "support", "tags": ["shipping"]}},
    {"input": {"question": "Prix en €?", "options": {"b": 2, "a": [1, 2.5, None]}}, "expected_output": None,
     "metadata": {}},
    {"input": {"question": "Structured"}, "expected_output": {"answer": 42, "cited": True}, "metadata": {}},
]  # fmt: skip


def jsonl(*rows: dict) -> list[str]:
    return [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]


# -- items by hand --------------------------------------------------------------------------------------


def test_add_item_stores_input_expected_output_and_metadata(dataset):
    item = dataset.add_item({"question": "Hi?"}, "Hello!", {"source": "manual"})

    stored = DatasetItem.objects.get(pk=item.pk)
    assert (stored.dataset, stored.input, stored.expected_output) == (dataset, {"question": "Hi?"}, "Hello!")
    assert stored.metadata == {"source": "manual"}
    assert stored.is_active is True and stored.source_execution is None
    assert dataset.add_item(input={"question": "Bye?"}).metadata == {}
    assert list(dataset.items.values_list("input__question", flat=True)) == ["Hi?", "Bye?"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"input": "not an object"}, "input"),
        ({"input": ["question"]}, "input"),
        ({"input": {"score": float("nan")}}, "input"),
        ({"input": {"when": object()}}, "input"),
        ({"input": {}, "metadata": ["tag"]}, "metadata"),
        ({"input": {}, "expected_output": float("inf")}, "expected_output"),
    ],
)
def test_add_item_refuses_what_does_not_fit_and_names_the_field(dataset, arguments, field):
    with pytest.raises(ValidationError) as caught:
        dataset.add_item(**arguments)
    assert list(caught.value.message_dict) == [field]
    assert not DatasetItem.objects.exists()


def test_items_added_together_keep_their_order(dataset):
    items = dataset.add_items(dataset.build_item({"n": n}) for n in range(300))
    assert [item.input["n"] for item in items] == list(range(300))
    assert list(dataset.items.values_list("input__n", flat=True)) == list(range(300))


# -- items from recorded executions --------------------------------------------------------------------


def test_add_executions_copies_parameters_and_responses_of_recorded_calls(dataset):
    with fake_llm() as llm:
        llm.respond("It ships tomorrow.", model="gpt-4o-mini")
        llm.respond("We refund within 14 days.", model="gpt-4o-mini")
        first = FaqAgent.call(question="Where is my order?")
        second = FaqAgent.call(question="Refunds?", tone="warm")
        llm.fail("server_error", model="gpt-4o-mini")
        with pytest.raises(AllModelsExhaustedError):
            FaqAgent.call(question="Broken?")
    failed = Execution.objects.get(status=Execution.Status.ERROR)

    items = dataset.add_executions(Execution.objects.order_by("started_at"))

    assert [(item.input, item.expected_output, item.source_execution_id) for item in items] == [
        ({"question": "Where is my order?", "tone": "plain"}, "It ships tomorrow.", first.execution_id),
        ({"question": "Refunds?", "tone": "warm"}, "We refund within 14 days.", second.execution_id),
        ({"question": "Broken?", "tone": "plain"}, None, failed.pk),
    ]
    stored = list(dataset.items.values_list("input", "expected_output", "source_execution_id", "metadata"))
    assert stored == [(item.input, item.expected_output, item.source_execution_id, {}) for item in items]


def test_add_executions_skips_executions_already_in_the_dataset(dataset):
    executions = ExecutionFactory.create_batch(3)
    assert len(dataset.add_executions(Execution.objects.filter(pk=executions[0].pk))) == 1

    added = dataset.add_executions([executions[1], executions[0], executions[2], executions[1]])

    assert [item.source_execution_id for item in added] == [executions[1].pk, executions[2].pk]
    assert dataset.items.count() == 3
    assert dataset.add_executions(Execution.objects.all()) == []
    other = Dataset.objects.create(slug="other", name="Other")
    assert len(other.add_executions(Execution.objects.all())) == 3


def test_add_executions_writes_nothing_when_one_cannot_be_an_item(dataset):
    good = ExecutionFactory()
    bad = ExecutionFactory(parameters=["not", "an", "object"])
    with pytest.raises(ValidationError) as caught:
        dataset.add_executions([good, bad])
    assert "input" in caught.value.message_dict
    assert str(bad.pk) in caught.value.message_dict["input"][0]
    assert not dataset.items.exists()


# -- JSON Lines -----------------------------------------------------------------------------------------


def test_import_export_import_round_trips_exactly(dataset):
    assert import_jsonl(dataset, jsonl(*LINES)) == 3

    exported = list(export_jsonl(dataset))

    assert [json.loads(line) for line in exported] == LINES
    assert all(list(json.loads(line)) == ["input", "expected_output", "metadata"] for line in exported)
    assert "€" in exported[1]  # written as UTF-8, not escaped
    copy = Dataset.objects.create(slug="copy", name="Copy")
    assert import_jsonl(copy, exported) == 3
    assert list(export_jsonl(copy)) == exported
    assert list(copy.items.values_list("input", "expected_output", "metadata")) == list(
        dataset.items.values_list("input", "expected_output", "metadata")
    )


def test_import_skips_blank_lines_and_fills_in_defaults(dataset):
    lines = ["\n", '{"input": {"q": 1}}\n', "   \n", '{"input": {"q": 2}, "expected_output": [1, 2]}']
    assert import_jsonl(dataset, lines) == 2
    assert list(dataset.items.values_list("input", "expected_output", "metadata")) == [
        ({"q": 1}, None, {}),
        ({"q": 2}, [1, 2], {}),
    ]


def test_a_bad_line_in_the_middle_writes_nothing_and_is_named(dataset):
    dataset.add_item({"q": "already there"})
    lines = jsonl(LINES[0], LINES[1]) + ['{"input": "a string"}\n'] + jsonl(LINES[2])

    with pytest.raises(ValidationError) as caught:
        import_jsonl(dataset, lines)

    assert caught.value.messages == [
        "line 3: input must be a JSON object (the agent's params), not 'a string'."
    ]
    assert list(dataset.items.values_list("input", flat=True)) == [{"q": "already there"}]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('["input"]', "line 2: must be a JSON object"),
        ('{"expected_output": "x"}', "line 2: input is required."),
        ('{"input": {}, "expected": "x"}', "line 2: unknown key(s) 'expected'"),
        ('{"input": {}, "metadata": ["a"]}', "line 2: metadata must be a JSON object"),
        ('{"input": {}, "metadata": null}', "line 2: metadata must be a JSON object, not null."),
        ('{"input": {"x": NaN}}', "line 2: not valid JSON: NaN is not a JSON number"),
    ],
)
def test_each_kind_of_bad_line_is_reported(dataset, line, message):
    with pytest.raises(ValidationError) as caught:
        import_jsonl(dataset, ['{"input": {}}', line, '{"input": {}}'])
    assert caught.value.messages[0].startswith(message)
    assert not dataset.items.exists()


def test_every_bad_line_is_reported_at_once(dataset):
    lines = ['{"input": {}}', "oops", "", '{"input": 3}', '{"input": {}}']
    with pytest.raises(ValidationError) as caught:
        import_jsonl(dataset, lines)
    assert [message.split(":")[0] for message in caught.value.messages] == ["line 2", "line 4"]


def test_export_leaves_inactive_items_out(dataset):
    import_jsonl(dataset, jsonl(*LINES))
    dataset.items.filter(input__question="Structured").update(is_active=False)
    assert [json.loads(line) for line in export_jsonl(dataset)] == LINES[:2]


# -- the commands -------------------------------------------------------------------------------------------


def run(*args: str, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def test_import_dataset_then_export_dataset_round_trip(dataset, tmp_path):
    source = tmp_path / "faq.jsonl"
    source.write_text("".join(jsonl(*LINES)), encoding="utf-8")

    assert run("import_dataset", "faq", str(source)).strip() == "Imported 3 item(s) into faq"
    exported = tmp_path / "exported.jsonl"
    assert run("export_dataset", "faq", "--output", str(exported)).strip() == (
        f"Exported 3 item(s) of faq to {exported}"
    )
    assert run("import_dataset", "copy", str(exported), "--create", "--name", "FAQ copy").strip() == (
        "Imported 3 item(s) into copy (dataset created)"
    )

    copy = Dataset.objects.get(slug="copy")
    assert copy.name == "FAQ copy"
    printed = run("export_dataset", "copy")
    assert printed == exported.read_text(encoding="utf-8")
    assert [json.loads(line) for line in printed.splitlines()] == LINES


def test_import_dataset_needs_create_for_a_missing_dataset(tmp_path):
    source = tmp_path / "faq.jsonl"
    source.write_text("".join(jsonl(*LINES)), encoding="utf-8")
    with pytest.raises(CommandError, match="No dataset has the slug 'missing'; pass --create"):
        run("import_dataset", "missing", str(source))
    assert not Dataset.objects.exists()
    run("import_dataset", "missing", str(source), "--create")
    assert Dataset.objects.get(slug="missing").name == "missing"


def test_import_dataset_with_a_bad_line_writes_nothing_not_even_the_dataset(dataset, tmp_path):
    source = tmp_path / "faq.jsonl"
    source.write_text("".join(jsonl(LINES[0])) + '{"input": {}, "extra": 1}\n' + "".join(jsonl(LINES[1])))

    with pytest.raises(CommandError) as caught:
        run("import_dataset", "faq", str(source))
    assert "1 invalid line(s)" in str(caught.value) and "line 2: unknown key(s) 'extra'" in str(caught.value)
    with pytest.raises(CommandError, match="line 2"):
        run("import_dataset", "new", str(source), "--create")

    assert not DatasetItem.objects.exists()
    assert list(Dataset.objects.values_list("slug", flat=True)) == ["faq"]


def test_import_dataset_reads_standard_input_and_can_dry_run(dataset):
    text = "".join(jsonl(*LINES))
    assert run("import_dataset", "faq", "-", "--dry-run", stdin=io.StringIO(text)).strip() == (
        "Would import 3 item(s) into faq"
    )
    assert not dataset.items.exists()
    assert run("import_dataset", "faq", "-", stdin=io.StringIO(text)).strip() == "Imported 3 item(s) into faq"
    assert dataset.items.count() == 3


def test_import_dataset_reports_unreadable_files_and_bad_slugs(tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*nowhere\.jsonl"):
        run("import_dataset", "faq", str(tmp_path / "nowhere.jsonl"), "--create")
    source = tmp_path / "faq.jsonl"
    source.write_text("".join(jsonl(*LINES)), encoding="utf-8")
    with pytest.raises(CommandError, match="Cannot create dataset 'not a slug'"):
        run("import_dataset", "not a slug", str(source), "--create")
    assert not Dataset.objects.exists()


def test_export_dataset_of_a_missing_dataset_fails():
    with pytest.raises(CommandError, match="No dataset has the slug 'missing'"):
        run("export_dataset", "missing")


# -- evaluation runs: summarize and compare -------------------------------------------------------------


def make_items(dataset, count: int) -> list[DatasetItem]:
    return dataset.add_items(dataset.build_item({"question": f"q{n}"}, f"a{n}") for n in range(count))


def make_run(dataset, values: dict, *, failed=(), evaluators=("exact_match",), item_count=None) -> EvalRun:
    """A completed run with ``values`` = {item: {evaluator: value}} as its evaluator scores; the
    ``failed`` items have a result with an error and no score."""
    run = EvalRun.objects.create(
        dataset=dataset,
        agent_type="FaqAgent",
        target="tests.test_datasets.FaqAgent",
        evaluators=[{"name": name, "params": {}} for name in evaluators],
        status=EvalRun.Status.COMPLETED,
        item_count=len(values) + len(failed) if item_count is None else item_count,
        failed_count=len(failed),
    )
    for item, scores in values.items():
        execution = ExecutionFactory(agent_type="FaqAgent", eval_run=run, parameters=item.input)
        result = EvalResult.objects.create(run=run, item=item, execution=execution, output=execution.response)
        for name, value in scores.items():
            Score.objects.create(execution=execution, name=name, value=value, source=Score.Source.EVALUATOR,
                                 eval_run=run, eval_result=result)  # fmt: skip
    for item in failed:
        execution = ExecutionFactory(agent_type="FaqAgent", eval_run=run, failed=True)
        EvalResult.objects.create(run=run, item=item, execution=execution, error="ProviderError: boom")
    return run


def test_summarize_counts_failed_items_as_zero(dataset, django_assert_num_queries):
    items = make_items(dataset, 5)
    run = make_run(
        dataset,
        {items[0]: {"judge": 1.0, "exact_match": 1.0}, items[1]: {"judge": 0.75, "exact_match": 0.0},
         items[2]: {"judge": 0.5, "exact_match": 1.0}, items[3]: {"judge": 0.25}},
        failed=[items[4]],
        evaluators=("exact_match", "judge"),
    )  # fmt: skip
    # Another run's and non-evaluator scores are not this run's evaluators'.
    make_run(dataset, {items[0]: {"judge": 0.0}})
    Score.objects.create(execution=run.results.first().execution, name="judge", value=0.0, source="human")

    with django_assert_num_queries(2):
        summary = run.summarize()

    assert list(summary) == ["exact_match", "judge"]
    assert summary["judge"] == {
        "n": 5,
        "mean": 0.5,
        "pass_rate": 60.0,
        "ci95": list(mean_ci95([1.0, 0.75, 0.5, 0.25, 0.0], seed=str(run.pk))),
    }
    low, high = summary["judge"]["ci95"]
    assert 0.0 < low < 0.5 < high < 1.0
    # exact_match raised on item 3 (no score) and item 4 failed: both count as 0.
    assert summary["exact_match"]["n"] == 5
    assert summary["exact_match"]["mean"] == 0.4
    assert summary["exact_match"]["pass_rate"] == 40.0
    assert run.summarize() == summary


def test_summarize_a_run_without_items(dataset):
    run = make_run(dataset, {}, evaluators=("exact_match",))
    assert run.summarize() == {"exact_match": {"n": 0, "mean": None, "pass_rate": None, "ci95": None}}


def test_compare_finds_a_known_difference_significant(dataset, django_assert_num_queries):
    items = make_items(dataset, 30)
    better = make_run(
        dataset, {item: {"exact_match": 1.0 if n < 27 else 0.0} for n, item in enumerate(items)}
    )
    worse = make_run(dataset, {item: {"exact_match": 1.0 if n < 10 else 0.0} for n, item in enumerate(items)})

    with django_assert_num_queries(2):
        comparison = better.compare(worse)

    result = comparison["exact_match"]
    assert {key: result[key] for key in ("n_paired", "mean_a", "mean_b", "delta", "wins", "losses", "ties")} == {
        "n_paired": 30, "mean_a": 0.9, "mean_b": 0.3333, "delta": 0.5667, "wins": 17, "losses": 0, "ties": 13,
    }  # fmt: skip
    assert result["p_value"] < 0.05
    low, high = result["ci95"]
    assert 0 < low < 0.5667 < high <= 1.0
    assert [entry["item"] for entry in comparison["items"]] == [str(item.pk) for item in items]
    assert comparison["items"][12] == {
        "item": str(items[12].pk),
        "a": {"exact_match": 1.0},
        "b": {"exact_match": 0.0},
    }
    assert list(comparison) == ["exact_match", "items"]

    reverse = worse.compare(better)["exact_match"]
    assert (reverse["delta"], reverse["wins"], reverse["losses"]) == (-0.5667, 0, 17)
    assert better.compare(worse) == comparison  # seeded by the two runs' ids


def test_compare_identical_runs_is_not_significant(dataset):
    items = make_items(dataset, 20)
    values = {item: {"judge": [0.0, 0.25, 0.5, 0.75, 1.0][n % 5]} for n, item in enumerate(items)}
    first = make_run(dataset, values, evaluators=("judge",))
    second = make_run(dataset, values, evaluators=("judge",))

    result = first.compare(second)["judge"]

    assert result == {"n_paired": 20, "mean_a": 0.5, "mean_b": 0.5, "delta": 0.0, "ci95": [0.0, 0.0],
                      "p_value": 1.0, "wins": 0, "losses": 0, "ties": 20}  # fmt: skip
    assert first.compare(first)["judge"]["p_value"] == 1.0


def test_compare_pairs_only_items_of_both_runs_and_counts_failures_as_zero(dataset):
    items = make_items(dataset, 6)
    first = make_run(
        dataset,
        {items[0]: {"exact_match": 1.0, "judge": 0.5}, items[1]: {"exact_match": 1.0, "judge": 1.0},
         items[2]: {"exact_match": 0.0, "judge": 0.25}, items[4]: {"exact_match": 1.0, "judge": 1.0}},
        failed=[items[3]],
        evaluators=("exact_match", "judge"),
    )  # fmt: skip
    second = make_run(
        dataset,
        {items[0]: {"exact_match": 1.0}, items[1]: {"exact_match": 0.0}, items[2]: {"exact_match": 1.0},
         items[3]: {"exact_match": 1.0}, items[5]: {"exact_match": 1.0}},
        evaluators=("exact_match", "similarity"),
    )  # fmt: skip

    comparison = first.compare(second)

    # judge and similarity each scored only one of the runs: nothing to pair them with.
    assert list(comparison) == ["exact_match", "items"]
    result = comparison["exact_match"]
    # items 0–3 are in both runs (item 3 failed in the first: 0 there); 4 and 5 are in one run each.
    assert (result["n_paired"], result["wins"], result["losses"], result["ties"]) == (4, 1, 2, 1)
    assert (result["mean_a"], result["mean_b"], result["delta"]) == (0.5, 0.75, -0.25)
    # Differences [0, 1, -1, -1]: every sign pattern of the non-zero three sums to ±1 or ±3.
    assert result["p_value"] == 1.0
    assert comparison["items"] == [
        {"item": str(items[0].pk), "a": {"exact_match": 1.0}, "b": {"exact_match": 1.0}},
        {"item": str(items[1].pk), "a": {"exact_match": 1.0}, "b": {"exact_match": 0.0}},
        {"item": str(items[2].pk), "a": {"exact_match": 0.0}, "b": {"exact_match": 1.0}},
        {"item": str(items[3].pk), "a": {"exact_match": 0.0}, "b": {"exact_match": 1.0}},
    ]


def test_compare_runs_without_common_items(dataset):
    items = make_items(dataset, 2)
    first = make_run(dataset, {items[0]: {"exact_match": 1.0}})
    second = make_run(dataset, {items[1]: {"exact_match": 1.0}})
    assert first.compare(second) == {
        "exact_match": {"n_paired": 0, "mean_a": None, "mean_b": None, "delta": None, "ci95": None,
                        "p_value": None, "wins": 0, "losses": 0, "ties": 0},
        "items": [],
    }  # fmt: skip
