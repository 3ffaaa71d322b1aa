"""Runaway limits (SPEC sections 19 and 21): ``max_tool_calls``, ``max_identical_tool_calls`` and
``max_cost_per_call`` stop a call with ``RunawayAgentError``; the tool call that would break a limit is
neither run nor recorded, and the execution keeps everything done before it. Driven through the real
openai SDK against the local fake server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from llm_agents import Agent, Param, Tool
from llm_agents.errors import RunawayAgentError
from llm_agents.failures import error_category
from llm_agents.models import CostConfig, Execution

from .fake_servers import openai_chat, openai_chat_stream

pytestmark = pytest.mark.django_db

# $2.50 in / $10 out per million tokens: a reply of 1,000 prompt and 100 completion tokens costs $0.0035.
MODEL = "gpt-4o"
REPLY_COST = Decimal("0.0035")

runs: list[dict] = []


@pytest.fixture(autouse=True)
def openai(openai_server):
    """The openai provider (the real SDK) pointed at the fake server; gpt-4o priced; no tool runs yet."""
    prices = {"input_price_per_mtok": Decimal("2.5"), "output_price_per_mtok": Decimal("10")}
    CostConfig.objects.create(model=MODEL, effective_from="2020-01-01T00:00Z", **prices)
    runs.clear()
    spec = {
        "class": "llm_agents.providers.openai.OpenAIProvider",
        "api_key": "k",
        "base_url": openai_server.url,
    }
    with override_settings(LLM_AGENTS={"PROVIDERS": {"openai": spec}}):
        yield openai_server


def reply(*calls: dict, content: str = "") -> object:
    """A gpt-4o reply costing REPLY_COST that asks for ``calls`` (``{"name", "arguments"}``)."""
    tool_calls = [{"id": f"call_{index}", **call} for index, call in enumerate(calls)] or None
    return openai_chat(content, tool_calls=tool_calls, model=MODEL, prompt_tokens=1000, completion_tokens=100)


def lookup(word: str, **more: str) -> dict:
    return {"name": "lookup", "arguments": {"word": word, **more}}


class Lookup(Tool):
    name = "lookup"
    description = "Look a word up"
    word = Param(required=True)
    lang = Param(default="en")

    def run(self, word, lang):
        runs.append({"word": word, "lang": lang})
        return f"meaning of {word}"


class Researcher(Agent):
    model = MODEL
    tools = [Lookup]
    max_tool_iterations = 10
    question = Param(default="What do these words mean?")

    def user_prompt(self):
        return self.question


class CountedResearcher(Researcher):
    max_tool_calls = 2


class CheapResearcher(Researcher):
    max_cost_per_call = Decimal("0.005")
    fallback_models = ["gpt-4o-mini"]
    retries = 2
    retry_backoff = 0


def failed_call(agent: type[Agent], **params) -> tuple[RunawayAgentError, Execution]:
    with pytest.raises(RunawayAgentError) as raised:
        agent.call(**params)
    return raised.value, Execution.objects.get(parent=None, status="error")


def assert_partial(execution: Execution, *, requests: int, tool_runs: int) -> None:
    """The execution holds what happened before the limit: ``requests`` priced replies, ``tool_runs``."""
    assert (execution.status, execution.error_class) == ("error", "RunawayAgentError")
    assert execution.tool_calls_count == len(execution.tool_calls) == tool_runs == len(runs)
    spans = execution.spans.order_by("started_at")
    assert [span.kind for span in spans if span.kind == "llm"] == ["llm"] * requests
    assert spans.filter(kind="tool").count() == tool_runs
    assert (execution.input_tokens, execution.output_tokens) == (1000 * requests, 100 * requests)
    assert execution.total_cost == REPLY_COST * requests


# -- max_tool_calls ------------------------------------------------------------------------------


def test_max_tool_calls_runs_exactly_that_many_tools_across_rounds(openai):
    openai.enqueue(reply(lookup("a")), reply(lookup("b")), reply(lookup("c")), reply(content="done"))

    error, execution = failed_call(CountedResearcher)

    assert "max_tool_calls" in str(error) and "2" in str(error)
    assert (error.limit, error.value) == ("max_tool_calls", 2)
    assert [run["word"] for run in runs] == ["a", "b"]
    assert len(openai.requests) == 3  # the third reply's tool call was refused: no fourth request
    assert_partial(execution, requests=3, tool_runs=2)
    assert [call["arguments"]["word"] for call in execution.tool_calls] == ["a", "b"]


def test_max_tool_calls_counts_the_calls_of_one_reply(openai):
    openai.enqueue(reply(lookup("a"), lookup("b"), lookup("c")))

    error, execution = failed_call(CountedResearcher)

    assert error.limit == "max_tool_calls"
    assert [run["word"] for run in runs] == ["a", "b"]
    assert len(openai.requests) == 1
    assert_partial(execution, requests=1, tool_runs=2)


def test_within_max_tool_calls_the_call_succeeds(openai):
    openai.enqueue(reply(lookup("a")), reply(lookup("b")), reply(content="done"))

    result = CountedResearcher.call()

    assert result.content == "done"
    assert result.execution.status == "success" and len(runs) == 2


def test_no_limit_on_tool_calls_by_default(openai):
    words = "abcdefgh"
    openai.enqueue(*(reply(lookup(word)) for word in words), reply(content="done"))

    assert Researcher.call().content == "done"
    assert len(runs) == len(words)


# -- max_identical_tool_calls --------------------------------------------------------------------


def test_the_fourth_identical_tool_call_is_refused_by_default(openai):
    # The same arguments in another key order are the same call (canonical JSON).
    calls = [lookup("loop", lang="en"), {"name": "lookup", "arguments": {"lang": "en", "word": "loop"}}] * 2
    openai.enqueue(*(reply(call) for call in calls), reply(content="never asked"))

    error, execution = failed_call(Researcher)

    assert Researcher.max_identical_tool_calls == 3
    assert "max_identical_tool_calls" in str(error) and "3" in str(error) and "lookup" in str(error)
    assert (error.limit, error.value) == ("max_identical_tool_calls", 3)
    assert len(runs) == 3 and len(openai.requests) == 4
    assert_partial(execution, requests=4, tool_runs=3)
    assert openai.pending == 1


def test_identical_means_same_tool_and_same_arguments(openai):
    class Strict(Researcher):
        max_identical_tool_calls = 1

    class Other(Tool):
        name = "other"
        word = Param(required=True)

        def run(self, word):
            runs.append({"word": word, "lang": "other"})
            return "ok"

    Strict.tools = [Lookup, Other]
    calls = [lookup("a"), lookup("a", lang="fr"), lookup("b"), {"name": "other", "arguments": {"word": "a"}}]
    openai.enqueue(*(reply(call) for call in calls), reply(content="done"))

    assert Strict.call().content == "done"
    assert len(runs) == 4

    runs.clear()
    openai.enqueue(reply(lookup("a")), reply(lookup("a")))
    error, _ = failed_call(Strict)
    assert error.limit == "max_identical_tool_calls" and len(runs) == 1


def test_identical_tool_calls_can_be_unlimited(openai):
    class Patient(Researcher):
        max_identical_tool_calls = None

    openai.enqueue(*(reply(lookup("same")) for _ in range(6)), reply(content="done"))

    assert Patient.call().content == "done"
    assert len(runs) == 6


# -- max_cost_per_call ---------------------------------------------------------------------------


def test_max_cost_per_call_stops_before_the_next_request_without_retry_or_fallback(openai):
    openai.enqueue(reply(lookup("a")), reply(lookup("b")), reply(content="never asked"))

    error, execution = failed_call(CheapResearcher)

    # $0.0035 after the first reply (under $0.005), $0.007 after the second: its tool is not run.
    assert "max_cost_per_call" in str(error) and "0.005" in str(error) and "0.007" in str(error)
    assert (error.limit, error.value) == ("max_cost_per_call", Decimal("0.005"))
    assert len(openai.requests) == 2
    assert [request.json["model"] for request in openai.requests] == [MODEL, MODEL]
    assert [run["word"] for run in runs] == ["a"]
    assert_partial(execution, requests=2, tool_runs=1)
    assert execution.attempts_count == 1 and execution.fallback_chain == []


def test_max_cost_per_call_counts_nested_agents(openai):
    class Summarizer(Agent):
        """Summarize a text."""

        model = MODEL
        text = Param(required=True)

        def user_prompt(self):
            return self.text

    class Manager(Agent):
        model = MODEL
        tools = [Summarizer]
        max_cost_per_call = 0.005

        def user_prompt(self):
            return "Summarize twice."

    summarize = {"name": "Summarizer", "arguments": {"text": "long text"}}
    openai.enqueue(reply(summarize), reply(content="summary"), reply(content="never asked"))

    error, execution = failed_call(Manager)

    assert error.limit == "max_cost_per_call"
    assert len(openai.requests) == 2  # the manager's first reply, then the summarizer's
    assert execution.total_cost == REPLY_COST * 2
    nested = Execution.objects.get(parent=execution)
    assert (nested.status, nested.total_cost) == ("success", REPLY_COST)
    assert execution.tool_calls_count == 1


def test_max_cost_per_call_checks_a_streamed_reply(openai):
    openai.enqueue(
        openai_chat_stream(["long ", "answer"], model=MODEL, prompt_tokens=1000, completion_tokens=100)
    )

    class Expensive(Agent):
        model = MODEL
        max_cost_per_call = Decimal("0.001")

        def user_prompt(self):
            return "Tell me everything."

    chunks: list[str] = []
    with pytest.raises(RunawayAgentError, match="max_cost_per_call"):
        chunks.extend(Expensive.stream())

    assert chunks == ["long ", "answer"]
    execution = Execution.objects.get()
    assert (execution.status, execution.error_class) == ("error", "RunawayAgentError")
    assert execution.total_cost == REPLY_COST
    assert execution.spans.get(kind="llm").output["content"] == "long answer"


def test_a_call_within_max_cost_per_call_succeeds(openai):
    openai.enqueue(reply(lookup("a")), reply(content="done"))

    class Generous(Researcher):
        max_cost_per_call = 1

    result = Generous.call()
    assert result.content == "done" and result.total_cost == REPLY_COST * 2


def test_runaway_errors_count_as_other_in_error_analysis(openai):
    # Its message names a tool called "timeout_probe": still "other", not "timeout".
    class Probe(Tool):
        name = "timeout_probe"

        def run(self):
            return "ok"

    class Prober(Agent):
        model = MODEL
        tools = [Probe]
        max_tool_calls = 0

        def user_prompt(self):
            return "Probe."

    openai.enqueue(reply({"name": "timeout_probe", "arguments": {}}))
    failed_call(Prober)

    assert "timeout" in Execution.objects.get().error_message
    assert Execution.objects.error_analysis()["categories"]["other"] == 1  # from the rollups
    assert list(Execution.objects.annotate(category=error_category()).values_list("category", flat=True)) == [
        "other"
    ]


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        ("max_cost_per_call", -0.01, ValueError),
        ("max_cost_per_call", "1.00", TypeError),
        ("max_cost_per_call", float("nan"), ValueError),
        ("max_cost_per_call", Decimal("Infinity"), ValueError),
        ("max_tool_calls", -1, ValueError),
        ("max_tool_calls", 2.5, TypeError),
        ("max_tool_calls", True, TypeError),
        ("max_identical_tool_calls", -3, ValueError),
        ("max_identical_tool_calls", "3", TypeError),
    ],
)
def test_a_bad_limit_is_refused_when_the_class_is_created(attribute, value, error):
    with pytest.raises(error, match=attribute):
        type("Careless", (Agent,), {attribute: value})


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("max_cost_per_call", Decimal("0.25")),
        ("max_cost_per_call", 1),
        ("max_cost_per_call", 0.5),
        ("max_tool_calls", 0),
        ("max_identical_tool_calls", None),
    ],
)
def test_good_limits_are_accepted(attribute, value):
    assert getattr(type("Careful", (Agent,), {attribute: value}), attribute) == value
