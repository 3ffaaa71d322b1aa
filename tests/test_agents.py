"""The agent runtime through its public API: calls, retries, fallbacks, cache, tools, streaming, tracing."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings

from llm_agents import Agent, Param, Tool, signals, span, tenant, trace, traced
from llm_agents.errors import AllModelsExhaustedError, AuthenticationError
from llm_agents.models import CostConfig, Execution, Span
from llm_agents.testing import fake_llm

pytestmark = pytest.mark.django_db


@pytest.fixture
def prices(db):
    """gpt-4o at $2.50 / $10.00 and gpt-4o-mini at $0.15 / $0.60 per million tokens, cached at half."""
    CostConfig.objects.create(
        model="gpt-4o",
        input_price_per_mtok=Decimal("2.5"),
        output_price_per_mtok=Decimal("10"),
        cached_input_price_per_mtok=Decimal("1.25"),
        effective_from="2020-01-01T00:00Z",
    )
    CostConfig.objects.create(model="gpt-4o-mini", input_price_per_mtok=Decimal("0.15"),
                              output_price_per_mtok=Decimal("0.6"), effective_from="2020-01-01T00:00Z")  # fmt: skip


class SearchAgent(Agent):
    model = "gpt-4o"
    fallback_models = ["gpt-4o-mini"]
    retries = 2
    retry_backoff = 0
    version = "1.0"
    query = Param(required=True)
    limit = Param(default=10)

    def system_prompt(self):
        return "You search."

    def user_prompt(self):
        return f"Search for {self.query}"

    def execution_metadata(self):
        return {"source": "web"}


class Lookup(Tool):
    name = "lookup"
    description = "Look a word up"
    word = Param(required=True)
    lang = Param(default="en")

    def run(self, word, lang):
        return {"word": word, "lang": lang, "meaning": f"meaning of {word}"}


class ToolAgent(Agent):
    model = "gpt-4o"
    tools = [Lookup]
    question = Param(required=True)

    def user_prompt(self):
        return self.question


def collect(signal):
    received = []

    def receiver(sender, signal, **kwargs):
        received.append(kwargs)

    signal.connect(receiver, weak=False)
    return received, lambda: signal.disconnect(receiver)


def test_call_records_one_execution_with_spans_tokens_and_cost(prices):
    with fake_llm() as llm:
        llm.respond("found it", model="gpt-4o", input_tokens=1000, output_tokens=200, cached_tokens=400)
        result = SearchAgent.call(query="django")

    assert result.content == "found it"
    assert (result.input_tokens, result.output_tokens, result.total_tokens) == (1000, 200, 1200)
    # 600 uncached × 2.5 + 400 cached × 1.25 + 200 × 10, per million
    assert result.total_cost == Decimal("0.0040")
    assert llm.calls[0][0] == "gpt-4o"
    assert llm.calls[0][1] == [
        {"role": "system", "content": "You search."},
        {"role": "user", "content": "Search for django"},
    ]
    execution = Execution.objects.get()
    assert execution.pk == result.execution_id == result.execution.pk
    assert execution.kind == "agent"
    assert execution.agent_type == "SearchAgent"
    assert execution.status == "success"
    assert execution.cached_tokens == 400
    assert execution.input_cost == Decimal("0.002")
    assert execution.output_cost == Decimal("0.002")
    assert execution.pricing_source == "config"
    assert execution.parameters == {"query": "django", "limit": 10}
    assert execution.metadata == {"source": "web"}
    assert execution.system_prompt == "You search."
    assert execution.user_prompt == "Search for django"
    assert execution.response == "found it"
    assert execution.chosen_model_id == "gpt-4o"
    assert execution.attempts_count == 1
    assert execution.fallback_chain == []
    assert execution.completed_at is not None and execution.duration_ms is not None
    span = Span.objects.get()
    assert (span.kind, span.status, span.model_id) == ("llm", "ok", "gpt-4o")
    assert span.total_cost == execution.total_cost


def test_missing_required_param_raises_before_any_call():
    with fake_llm() as llm, pytest.raises(ValueError, match="query"):
        SearchAgent.call(limit=3)
    assert llm.calls == []
    assert not Execution.objects.exists()


def test_retry_then_success_records_every_attempt(prices):
    with fake_llm() as llm:
        llm.fail("rate_limit", model="gpt-4o")
        llm.fail("server_error", model="gpt-4o")
        llm.respond("ok", model="gpt-4o", input_tokens=10, output_tokens=5)
        result = SearchAgent.call(query="x")

    execution = result.execution
    assert execution.status == "success"
    assert execution.attempts_count == 3
    assert [a["status"] for a in execution.attempts] == ["error", "error", "success"]
    assert [a["error_class"] for a in execution.attempts] == ["RateLimitError", "ProviderError", ""]
    assert set(execution.attempts[0]) == {"model_id", "status", "error_class", "error_message", "duration_ms",
                                          "input_tokens", "output_tokens", "started_at"}  # fmt: skip
    assert execution.rate_limited is True
    assert execution.retryable is False
    assert execution.chosen_model_id == "gpt-4o"
    assert Span.objects.filter(execution=execution, kind="llm").count() == 3


def test_fallback_to_the_next_model(prices):
    used, disconnect = collect(signals.fallback_used)
    try:
        with fake_llm() as llm:
            for _ in range(3):
                llm.fail("rate_limit", model="gpt-4o")
            llm.respond("from mini", model="gpt-4o-mini", input_tokens=100, output_tokens=10)
            result = SearchAgent.call(query="x")
    finally:
        disconnect()

    assert result.content == "from mini"
    assert result.chosen_model_id == "gpt-4o-mini"
    execution = result.execution
    assert execution.model_id == "gpt-4o"
    assert execution.chosen_model_id == "gpt-4o-mini"
    assert execution.fallback_chain == ["gpt-4o", "gpt-4o-mini"]
    assert execution.fallback_reason.startswith("RateLimitError")
    assert execution.attempts_count == 4
    assert Execution.objects.with_fallback().get() == execution
    assert used == [{"agent_type": "SearchAgent", "primary_model": "gpt-4o", "used_model": "gpt-4o-mini",
                     "attempts_made": 4}]  # fmt: skip


@pytest.mark.parametrize(("failure", "status"), [("server_error", "error"), ("timeout", "timeout")])
def test_all_models_failing(failure, status):
    exhausted, disconnect = collect(signals.all_models_exhausted)
    try:
        with fake_llm() as llm:
            for model in ("gpt-4o", "gpt-4o-mini"):
                for _ in range(3):
                    llm.fail(failure, model=model)
            with pytest.raises(AllModelsExhaustedError) as info:
                SearchAgent.call(query="x")
    finally:
        disconnect()

    assert info.value.models_tried == ["gpt-4o", "gpt-4o-mini"]
    execution = Execution.objects.get()
    assert execution.status == status
    assert execution.error_class == "AllModelsExhaustedError"
    assert execution.attempts_count == 6
    assert execution.retryable is True
    assert execution.chosen_model_id == "gpt-4o"
    assert exhausted == [{"agent_type": "SearchAgent", "models_tried": ["gpt-4o", "gpt-4o-mini"]}]


def test_a_scripted_failure_takes_its_delay_and_the_attempt_records_it():
    with fake_llm() as llm:
        llm.fail("timeout", model="gpt-4o", delay=0.06)
        llm.respond("ok", model="gpt-4o")
        result = SearchAgent.call(query="x")
    failed, answered = result.execution.attempts
    assert (failed["error_class"], answered["status"]) == ("ProviderTimeoutError", "success")
    assert failed["duration_ms"] >= 60


def test_authentication_error_neither_retries_nor_falls_back():
    with fake_llm() as llm:
        llm.fail("auth", model="gpt-4o")
        with pytest.raises(AuthenticationError):
            SearchAgent.call(query="x")
    assert [call[0] for call in llm.calls] == ["gpt-4o"]
    execution = Execution.objects.get()
    assert (execution.status, execution.error_class, execution.retryable) == (
        "error",
        "AuthenticationError",
        False,
    )


def test_failed_attempts_that_reported_tokens_are_priced(prices):
    """Cost is summed over every attempt, including failed ones that consumed tokens."""
    from llm_agents.errors import ProviderError
    from llm_agents.providers import intercept, stop_intercepting
    from llm_agents.testing import FakeLLM

    class CostlyFailure(FakeLLM):
        def complete(self, request):
            if len(self.calls) == 0:
                self.calls.append((request.model, request.messages, {}))
                raise ProviderError("truncated", input_tokens=1_000_000, output_tokens=0)
            return super().complete(request)

    llm = CostlyFailure()
    llm.respond("fine", input_tokens=0, output_tokens=1_000_000)
    intercept(llm)
    try:
        result = SearchAgent.call(query="x")
    finally:
        stop_intercepting(llm)
    assert result.total_cost == Decimal("12.5")  # 1M input at 2.50 (failed) + 1M output at 10.00


class CachedAgent(Agent):
    model = "gpt-4o"
    cache_ttl = 60
    query = Param(required=True)

    def user_prompt(self):
        return self.query


def test_cache_hit_costs_nothing_and_skips_the_provider(prices):
    events, disconnect = [], []
    for signal in (signals.cache_hit, signals.cache_miss, signals.cache_written):
        received, undo = collect(signal)
        events.append(received)
        disconnect.append(undo)
    try:
        with fake_llm() as llm:
            llm.respond("answer", input_tokens=100, output_tokens=50)
            first = CachedAgent.call(query="q")
            second = CachedAgent.call(query="q")
            with tenant("other"), override_settings(LLM_AGENTS={"MULTI_TENANCY": True}):
                third = CachedAgent.call(query="q")
    finally:
        for undo in disconnect:
            undo()
    assert len(llm.calls) == 2  # the second call was served from the cache; the tenant changes the key
    assert (first.cached, second.cached, third.cached) == (False, True, False)
    assert second.content == "answer" and second.total_cost == 0
    hit = Execution.objects.get(pk=second.execution_id)
    assert hit.cache_hit is True and hit.total_cost == 0 and hit.chosen_model_id == "gpt-4o"
    assert [len(e) for e in events] == [1, 2, 2]


def test_tool_loop_records_tool_spans_and_calls(prices):
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"id": "c1", "name": "lookup", "arguments": {"word": "x"}}], input_tokens=10,
                    output_tokens=5)  # fmt: skip
        llm.respond("x means something", input_tokens=30, output_tokens=5)
        result = ToolAgent.call(question="what is x?")

    assert result.content == "x means something"
    assert result.tool_calls == [{"id": "c1", "name": "lookup", "arguments": {"word": "x"},
                                  "result": {"word": "x", "lang": "en", "meaning": "meaning of x"}}]  # fmt: skip
    assert llm.calls[0][2]["tools"][0]["name"] == "lookup"
    assert llm.calls[0][2]["tools"][0]["parameters"]["required"] == ["word"]
    follow_up = llm.calls[1][1]
    assert follow_up[-2]["role"] == "assistant" and follow_up[-2]["tool_calls"][0]["name"] == "lookup"
    assert follow_up[-1]["role"] == "tool" and follow_up[-1]["tool_call_id"] == "c1"
    execution = result.execution
    assert execution.tool_calls_count == 1
    assert execution.attempts_count == 1  # the follow-up request is a span, not an attempt
    kinds = list(
        Span.objects.filter(execution=execution).order_by("started_at").values_list("kind", flat=True)
    )
    assert kinds == ["llm", "tool", "llm"]
    assert execution.total_tokens == 50
    llm_costs = sum(s.total_cost for s in Span.objects.filter(execution=execution, kind="llm"))
    assert execution.total_cost == llm_costs


def test_tool_loop_stops_after_max_iterations():
    class Looping(ToolAgent):
        max_tool_iterations = 2

    with fake_llm() as llm:
        for _ in range(5):
            llm.respond(tool_calls=[{"name": "lookup", "arguments": {"word": "x"}}])
        result = Looping.call(question="?")
    assert len(llm.calls) == 3
    assert result.execution.tool_calls_count == 2


class Helper(Agent):
    """Answers sub-questions."""

    model = "gpt-4o-mini"
    question = Param(required=True)

    def user_prompt(self):
        return self.question


class Orchestrator(Agent):
    model = "gpt-4o"
    tools = [Helper]
    task = Param(required=True)

    def user_prompt(self):
        return self.task


def test_agent_used_as_a_tool_runs_as_a_nested_execution(prices):
    with fake_llm() as llm:
        llm.respond(tool_calls=[{"name": "Helper", "arguments": {"question": "sub"}}], model="gpt-4o",
                    input_tokens=100, output_tokens=10)  # fmt: skip
        llm.respond("sub answer", model="gpt-4o-mini", input_tokens=1000, output_tokens=100)
        llm.respond("done", model="gpt-4o", input_tokens=200, output_tokens=20)
        result = Orchestrator.call(task="do it")

    root = result.execution
    child = Execution.objects.get(parent=root)
    assert child.agent_type == "Helper" and child.response == "sub answer"
    assert result.tool_calls[0]["result"] == "sub answer"
    # the root's totals include the nested run, so analytics over root executions count it once
    assert root.total_tokens == 100 + 10 + 1000 + 100 + 200 + 20
    assert root.total_cost == child.total_cost + sum(
        s.total_cost for s in Span.objects.filter(execution=root, kind="llm")
    )
    agent_span = Span.objects.get(execution=root, kind="agent")
    assert agent_span.metadata == {"execution_id": str(child.pk)}
    assert agent_span.parent.kind == "tool"
    assert Execution.objects.root_executions().get() == root


class StoryAgent(Agent):
    model = "gpt-4o"
    topic = Param(required=True)

    def user_prompt(self):
        return f"Story about {self.topic}"


def test_stream_yields_chunks_and_records_time_to_first_token(prices):
    with fake_llm() as llm:
        llm.respond(chunks=["Once ", "upon ", "a time"], input_tokens=20, output_tokens=6)
        stream = StoryAgent.stream(topic="cats")
        chunks = list(stream)

    assert chunks == ["Once ", "upon ", "a time"]
    assert stream.result.content == "Once upon a time"
    assert stream.result.time_to_first_token_ms is not None
    execution = stream.result.execution
    assert execution.streaming is True
    assert execution.response == "Once upon a time"
    assert execution.time_to_first_token_ms is not None
    assert execution.time_to_first_token_ms <= execution.duration_ms
    assert Span.objects.get(execution=execution).time_to_first_token_ms is not None


@pytest.mark.django_db(transaction=True)
def test_acall_runs_without_blocking_the_event_loop():
    async def main():
        with fake_llm() as llm:
            llm.respond("async answer", delay=0.2)
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            result = await SearchAgent.acall(query="a")
            task.cancel()
            return result, ticks

    result, ticks = asyncio.run(main())
    assert result.content == "async answer"
    assert ticks >= 5  # the loop kept running while the provider "worked" for 0.2 s
    assert Execution.objects.get(pk=result.execution_id).status == "success"


def test_trace_records_a_parent_execution_with_spans_and_children(prices):
    with fake_llm() as llm:
        llm.respond("r", input_tokens=10, output_tokens=10)
        with trace("strategy_analysis", metadata={"strategy_id": 42}) as t:
            with trace("inner"):
                with pytest.raises(KeyError):
                    from llm_agents import span

                    with span("retrieval", kind="retriever") as s:
                        s.output = ["doc"]
                        raise KeyError("boom")
            SearchAgent.call(query="x")

    root = t.execution
    assert (root.kind, root.agent_type, root.status, root.metadata) == ("trace", "strategy_analysis", "success",
                                                                         {"strategy_id": 42})  # fmt: skip
    child = Execution.objects.get(parent=root)
    assert child.agent_type == "SearchAgent"
    spans = {s.name: s for s in Span.objects.filter(execution=root)}
    assert set(spans) == {"inner", "retrieval", "SearchAgent"}
    assert spans["retrieval"].parent == spans["inner"]
    assert (spans["retrieval"].status, spans["retrieval"].error_class, spans["retrieval"].output) == (
        "error", "KeyError", ["doc"])  # fmt: skip
    assert root.total_cost == child.total_cost > 0


def test_traced_decorator_and_a_failing_trace():
    @traced("nightly_digest")
    def digest():
        raise RuntimeError("no data")

    with pytest.raises(RuntimeError):
        digest()
    execution = Execution.objects.get()
    assert (execution.kind, execution.agent_type, execution.status) == ("trace", "nightly_digest", "error")
    assert execution.error_message == "no data"


@override_settings(LLM_AGENTS={"MULTI_TENANCY": True, "TENANT_RESOLVER": "tests.test_agents.resolve_tenant"})
def test_tenant_block_wins_over_the_resolver():
    with fake_llm():
        SearchAgent.call(query="a")
        with tenant("acme"):
            SearchAgent.call(query="b")
    assert sorted(Execution.objects.values_list("tenant_id", flat=True)) == ["acme", "resolved"]
    with tenant("acme"):
        assert Execution.objects.for_current_tenant().get().parameters["query"] == "b"


def resolve_tenant(*args):
    return "resolved"


def test_signals_fire_with_their_payload_and_a_raising_receiver_breaks_nothing(prices, caplog):
    completed, undo_completed = collect(signals.execution_completed)
    started, undo_started = collect(signals.execution_started)

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.execution_completed.connect(broken, weak=False)
    try:
        with fake_llm() as llm:
            llm.respond("fine", input_tokens=10, output_tokens=5)
            result = SearchAgent.call(query="x")
    finally:
        undo_completed()
        undo_started()
        signals.execution_completed.disconnect(broken)
    assert result.content == "fine"
    assert "receiver bug" in caplog.text
    assert started == [{"agent_type": "SearchAgent", "model": "gpt-4o", "tenant_id": None,
                        "execution_id": result.execution_id}]  # fmt: skip
    (payload,) = completed
    assert set(payload) == {"agent_type", "execution_id", "model", "model_used", "tenant_id", "status", "duration_ms",
                            "input_tokens", "output_tokens", "total_tokens", "input_cost", "output_cost",
                            "total_cost", "cached", "attempts_made", "finish_reason", "time_to_first_token_ms"}  # fmt: skip
    assert (payload["status"], payload["total_tokens"], payload["attempts_made"]) == ("success", 15, 1)


def test_execution_failed_fires_on_failure_only():
    failed, undo_failed = collect(signals.execution_failed)
    completed, undo_completed = collect(signals.execution_completed)
    try:
        with fake_llm() as llm:
            llm.fail("invalid_request")
            llm.fail("invalid_request")
            with pytest.raises(AllModelsExhaustedError):
                SearchAgent.call(query="x")
    finally:
        undo_failed()
        undo_completed()
    assert completed == []
    assert failed[0]["error_class"] == "AllModelsExhaustedError" and failed[0]["status"] == "error"


@override_settings(LLM_AGENTS={"TRACK_EXECUTIONS": False})
def test_track_executions_off_writes_nothing_but_signals_fire():
    completed, undo = collect(signals.execution_completed)
    try:
        with fake_llm():
            result = SearchAgent.call(query="x")
    finally:
        undo()
    assert result.content == "Search for x"
    assert not Execution.objects.exists() and not Span.objects.exists()
    assert len(completed) == 1


class SecretAgent(Agent):
    model = "fake/echo"
    query = Param(required=True)
    api_key = Param()
    options = Param(default=None)

    def user_prompt(self):
        return f"{self.query} card 4111-1111-1111-1111"

    def execution_metadata(self):
        return {"nested": {"Authorization": "Bearer abc", "list": [{"password": "p", "ok": 1}]}}


@override_settings(LLM_AGENTS={"REDACT_PATTERNS": [r"\d{4}-\d{4}-\d{4}-\d{4}"]})
def test_redaction_of_keys_at_any_depth_and_patterns():
    SecretAgent.call(query="q", api_key="sk-123", options={"db": {"refresh_token": "t", "keep": "v"}})
    execution = Execution.objects.get()
    assert execution.parameters == {"query": "q", "api_key": "[REDACTED]",
                                    "options": {"db": {"refresh_token": "[REDACTED]", "keep": "v"}}}  # fmt: skip
    assert execution.metadata == {
        "nested": {"Authorization": "[REDACTED]", "list": [{"password": "[REDACTED]", "ok": 1}]}
    }
    assert "4111" not in execution.user_prompt and "[REDACTED]" in execution.user_prompt
    assert "4111" not in execution.response
    span = Span.objects.get()
    assert "4111" not in str(span.input) and "4111" not in str(span.output)


@override_settings(LLM_AGENTS={"PERSIST_PROMPTS": False, "PERSIST_RESPONSES": False})
def test_persist_flags_blank_prompts_responses_and_span_payloads():
    SecretAgent.call(query="q")
    execution = Execution.objects.get()
    assert (execution.system_prompt, execution.user_prompt, execution.response) == ("", "", "")
    span = Span.objects.get()
    assert span.input is None and span.output is None


def test_offline_provider_echoes_with_estimated_tokens():
    result = SecretAgent.call(query="abcd")
    assert result.content == "abcd card 4111-1111-1111-1111"
    assert result.output_tokens == (len(result.content) + 3) // 4
    assert result.execution.provider == "fake"
    assert result.execution.pricing_source == "unknown"


def test_agent_type_override_is_inherited():
    class Base(Agent):
        agent_type = "custom_name"

    class Child(Base):
        pass

    class Plain(Agent):
        pass

    class PlainChild(Plain):
        pass

    assert (Base.agent_type, Child.agent_type, Plain.agent_type, PlainChild.agent_type) == (
        "custom_name", "custom_name", "Plain", "PlainChild")  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_sync_mode_writes_a_running_row_that_the_admin_can_see_at_once():
    seen = []

    class Watching(Tool):
        name = "watch"

        def run(self):
            seen.append(Execution.objects.values_list("status", flat=True).get())
            return "ok"

    class WatchAgent(Agent):
        model = "fake/x"
        tools = [Watching]

    with fake_llm() as llm:
        llm.respond(tool_calls=[{"name": "watch", "arguments": {}}])
        WatchAgent.call()
    assert seen == ["running"]
    assert Execution.objects.get().status == "success"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("durable", [False, True])
def test_only_durable_tracking_writes_wait_for_the_wal_flush(durable):
    """PostgreSQL: the running row never waits for the WAL flush; the finished rows wait only with
    DURABLE_TRACKING_WRITES. Checked on the statements the server prepared for the writes."""
    import re

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with override_settings(LLM_AGENTS={"DURABLE_TRACKING_WRITES": durable}), fake_llm():
        SearchAgent.call(query="warm-up")  # the first call prepares the statements
        with CaptureQueriesContext(connection) as captured:
            result = SearchAgent.call(query="tracked")
    execution = Execution.objects.get(pk=result.execution_id)
    assert (execution.status, execution.spans.count()) == ("success", 1)
    if connection.vendor != "postgresql":
        return  # SQLite has no commit without a flush: the rows are written, as above
    names = [
        match for query in captured for match in re.findall(r"EXECUTE (llm_agents_write_\w+)", query["sql"])
    ]
    assert len(names) == 2  # the running row, then the finished execution with its span
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements WHERE name = ANY(%s)", [names])
        statements = dict(cursor.fetchall())
    relaxed = ["set_config('synchronous_commit', 'off', true)" in statements[name] for name in names]
    assert relaxed == [True, not durable]


@pytest.mark.django_db(transaction=True)
def test_tracking_survives_a_session_that_lost_its_prepared_statements():
    """A pooler handing the connection another server session (PostgreSQL): the writes fall back to
    sending their statement whole, and nothing is lost."""
    from django.db import connection

    with fake_llm():
        first = SearchAgent.call(query="prepared")
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")
        second = SearchAgent.call(query="after the reset")
        third = SearchAgent.call(query="and after that")
    for result in (first, second, third):
        execution = Execution.objects.get(pk=result.execution_id)
        assert (execution.status, execution.spans.count()) == ("success", 1)


@pytest.mark.django_db(transaction=True)
def test_records_survive_a_rollback_of_the_callers_transaction():
    from django.db import connection

    with pytest.raises(ZeroDivisionError), fake_llm(), transaction.atomic():
        result = SearchAgent.call(query="inside")
        1 / 0  # noqa: B018
    if connection.vendor == "sqlite":
        # SQLite has a single writer: the rows share the caller's transaction (documented).
        assert not Execution.objects.filter(pk=result.execution_id).exists()
    else:
        assert Execution.objects.get(pk=result.execution_id).status == "success"
        assert Span.objects.filter(execution_id=result.execution_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_async_iteration_of_a_stream_keeps_the_tenant_and_records_once():
    async def main():
        with fake_llm() as llm, tenant("acme"):
            llm.respond(chunks=["a", "b", "c"])
            stream = StoryAgent.stream(topic="x")
            return [chunk async for chunk in stream], stream

    with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}):
        chunks, stream = asyncio.run(main())
    assert chunks == ["a", "b", "c"]
    execution = Execution.objects.get()
    assert (execution.pk, execution.tenant_id, execution.response) == (
        stream.result.execution_id,
        "acme",
        "abc",
    )


@pytest.mark.django_db(transaction=True)
def test_a_trace_opened_in_async_code_is_recorded():
    async def main():
        with trace("async_pipeline") as t:
            await SearchAgent.acall(query="x")
        return t.execution_id

    with fake_llm():
        execution_id = asyncio.run(main())
    root = Execution.objects.get(pk=execution_id)
    assert (root.kind, root.status) == ("trace", "success")
    assert root.children.get().agent_type == "SearchAgent"


@pytest.mark.parametrize("mode", [{}, {"ASYNC_LOGGING": True}])
def test_a_nul_character_does_not_stop_an_execution_being_recorded(mode):
    """PostgreSQL stores no NUL character in text or JSON: there it becomes U+FFFD (elsewhere it is
    kept), and the rest of the record is stored as it came, in either logging mode."""
    from django.db import connection

    stored = "\ufffd" if connection.vendor == "postgresql" else "\x00"
    with override_settings(LLM_AGENTS=mode), fake_llm() as llm:
        llm.respond("an answer\x00with a NUL")
        with trace("nul", metadata={"note": "a\x00b", "path": "C:\\u0000"}) as traced:
            with span("step") as step:
                step.output = ["\x00"]
            result = SearchAgent.call(query="find \x00 this")
    root = Execution.objects.get(pk=traced.execution_id)
    assert root.metadata == {"note": f"a{stored}b", "path": "C:\\u0000"}  # an escaped backslash is text
    assert root.spans.get(name="step").output == [stored]
    child = Execution.objects.get(pk=result.execution_id)
    assert child.response == f"an answer{stored}with a NUL"
    assert child.parameters["query"] == f"find {stored} this"
