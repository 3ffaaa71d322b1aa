"""Batches end to end: the real openai SDK against the fake Files and Batch API of ``tests.fake_servers``."""

from __future__ import annotations

import json
from decimal import Decimal

import pydantic
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

import llm_agents
from llm_agents import batches, signals, tasks
from llm_agents.context import tenant
from llm_agents.models import Batch, BatchRequest, Budget, CostConfig, Execution, Prompt, Span
from llm_agents.pricing import calculate_cost

from .fake_servers import BatchLineError, openai_error

pytestmark = pytest.mark.django_db

OPENAI = "llm_agents.providers.openai.OpenAIProvider"


class Summary(pydantic.BaseModel):
    title: str
    points: list[str]


SUMMARY_JSON = json.dumps({"title": "Weekly sync", "points": ["ship it", "test it"]})
TICKET_SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["billing", "shipping", "other"]}},
    "required": ["category"],
    "additionalProperties": False,
}


def llm_settings(server, **extra):
    return {"PROVIDERS": {"openai": {"class": OPENAI, "api_key": "test", "base_url": server.url}}, **extra}


@pytest.fixture
def batch_api(openai_server):
    """The fake Batch API, with the openai provider (and so the batch client) pointed at it."""
    with override_settings(LLM_AGENTS=llm_settings(openai_server)):
        yield openai_server.batches


@pytest.fixture(autouse=True)
def no_handlers():
    yield
    batches.handlers._handlers.clear()


class RecordingHandler:
    """Remembers what it was called with; ``raises`` makes ``call`` raise after writing a Prompt row."""

    def __init__(self, raises_for: set[str] | None = None) -> None:
        self.calls: list[tuple[BatchRequest, batches.BatchResult]] = []
        self.failures: list[tuple[BatchRequest, batches.BatchRequestError]] = []
        self.raises_for = raises_for or set()

    def call(self, request, result):
        self.calls.append((request, result))
        if request.routing.get("name") in self.raises_for:
            Prompt.objects.create(slug=f"written-by-{request.custom_id}", name="rolled back")
            raise ValueError(f"cannot route {request.routing['name']}")
        Prompt.objects.create(slug=f"handled-{request.custom_id}", name="handled")

    def on_failure(self, request, error):
        self.failures.append((request, error))


def enqueue_many(count, purpose="chat_summary", model="gpt-4.1-mini", **kwargs):
    return [
        batches.enqueue(
            purpose=purpose, model=model, instructions="Summarize.", input=f"conversation {n}",
            routing={"name": f"r{n}"}, **kwargs,
        )
        for n in range(count)
    ]  # fmt: skip


def capture(signal):
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs)

    signal.connect(receiver, weak=False)
    return sent, receiver


# -- enqueue --------------------------------------------------------------------------------------------


def test_batches_is_reachable_from_the_package():
    from llm_agents import batches as imported

    assert imported is batches
    assert llm_agents.batches is batches
    assert "batches" in llm_agents.__all__


def test_enqueue_stores_a_pending_request_with_its_payload():
    request = batches.enqueue(
        purpose="chat_summary", model="gpt-4.1-mini", instructions="Summarize.", input="hello",
        schema=Summary, routing={"conversation_id": 42}, temperature=0.2, max_output_tokens=300,
    )  # fmt: skip
    request.refresh_from_db()
    assert request.status == BatchRequest.Status.PENDING
    assert (request.purpose, request.model, request.routing) == (
        "chat_summary",
        "gpt-4.1-mini",
        {"conversation_id": 42},
    )
    assert request.payload["instructions"] == "Summarize."
    assert request.payload["input"] == "hello"
    assert request.payload["temperature"] == 0.2
    assert request.payload["params"] == {"max_output_tokens": 300}
    schema = request.payload["schema"]
    assert schema["name"] == "Summary"
    assert schema["model"] == "tests.test_batches.Summary"
    assert schema["strict"] is True
    assert schema["schema"]["additionalProperties"] is False
    assert sorted(schema["schema"]["required"]) == ["points", "title"]
    assert len(request.custom_id) == 32


def test_enqueue_accepts_a_json_schema_or_openais_wrapper():
    plain = batches.enqueue(purpose="tickets", model="gpt-4.1-mini", input="x", schema=TICKET_SCHEMA)
    wrapped = batches.enqueue(
        purpose="tickets", model="gpt-4.1-mini", input="x",
        schema={"name": "ticket category", "schema": TICKET_SCHEMA, "strict": False},
    )  # fmt: skip
    assert plain.payload["schema"] == {
        "name": "tickets",
        "schema": TICKET_SCHEMA,
        "strict": True,
        "model": None,
    }
    assert wrapped.payload["schema"]["name"] == "ticket_category"
    assert wrapped.payload["schema"]["strict"] is False


def test_enqueue_rejects_what_cannot_be_sent():
    class Local(pydantic.BaseModel):
        x: int

    with pytest.raises(ValueError, match="module level"):
        batches.enqueue(purpose="p", model="m", input="x", schema=Local)
    with pytest.raises(TypeError, match="JSON-schema dict or a pydantic model"):
        batches.enqueue(purpose="p", model="m", input="x", schema="not a schema")
    with pytest.raises(ValueError, match="input"):
        batches.enqueue(purpose="p", model="m", input="")
    with pytest.raises(ValueError, match="purpose"):
        batches.enqueue(purpose="", model="m", input="x")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        batches.enqueue(purpose="p", model="m", input="x", routing={"when": object()})
    assert not BatchRequest.objects.exists()


def test_enqueue_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        batches.enqueue(purpose="p", model="gpt-4.1-mini", input="rolled back")
        raise RuntimeError("the caller's work failed")
    assert not BatchRequest.objects.exists()
    with transaction.atomic():
        batches.enqueue(purpose="p", model="gpt-4.1-mini", input="kept")
    assert BatchRequest.objects.count() == 1


def test_enqueue_with_a_custom_id_is_safe_to_repeat():
    first = batches.enqueue(purpose="p", model="gpt-4.1-mini", input="x", custom_id="conversation-42")
    again = batches.enqueue(purpose="p", model="gpt-4.1-mini", input="x", custom_id="conversation-42")
    assert first.pk == again.pk
    assert BatchRequest.objects.count() == 1


def test_enqueue_records_the_tenant_with_multi_tenancy():
    with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}), tenant("acme"):
        request = batches.enqueue(purpose="p", model="gpt-4.1-mini", input="x")
    assert request.payload["tenant_id"] == "acme"


# -- flush ----------------------------------------------------------------------------------------------


def test_flush_submits_one_batch_per_purpose_and_model(batch_api, openai_server):
    enqueue_many(3, temperature=0.2, schema=Summary)
    enqueue_many(2, model="gpt-4.1-nano")
    enqueue_many(1, purpose="tickets")
    sent, receiver = capture(signals.batch_submitted)
    try:
        report = batches.flush()
    finally:
        signals.batch_submitted.disconnect(receiver)

    assert report.errors == []
    assert report.requests == 6
    assert sorted((b.purpose, b.model, b.request_count) for b in report.batches) == [
        ("chat_summary", "gpt-4.1-mini", 3),
        ("chat_summary", "gpt-4.1-nano", 2),
        ("tickets", "gpt-4.1-mini", 1),
    ]
    assert [payload["batch"] for payload in sent] == report.batches
    for batch in Batch.objects.all():
        assert batch.status == Batch.Status.SUBMITTED
        assert batch.provider_batch_id.startswith("batch_fake")
        assert batch.input_file_id.startswith("file-fake")
        assert batch.submitted_at is not None
        assert batch.requests.filter(status=BatchRequest.Status.SUBMITTED).count() == batch.request_count
    creates = openai_server.requests_to("/v1/batches")
    assert len(creates) == 3
    for create in creates:
        assert create.json["endpoint"] == "/v1/responses"
        assert create.json["completion_window"] == "24h"
        assert create.json["metadata"]["purpose"] in ("chat_summary", "tickets")
    assert not BatchRequest.objects.filter(status=BatchRequest.Status.PENDING).exists()


def test_flush_writes_responses_api_lines(batch_api):
    request = batches.enqueue(
        purpose="chat_summary", model="gpt-4.1-mini", instructions="Summarize.", input="hello",
        schema=Summary, temperature=0.2, max_output_tokens=300,
    )  # fmt: skip
    (batch,) = batches.flush().batches
    (line,) = batch_api.input_lines(batch.provider_batch_id)
    assert line["custom_id"] == request.custom_id
    assert (line["method"], line["url"]) == ("POST", "/v1/responses")
    body = line["body"]
    assert body["model"] == "gpt-4.1-mini"
    assert body["instructions"] == "Summarize."
    assert body["input"] == "hello"
    assert body["temperature"] == 0.2
    assert body["max_output_tokens"] == 300
    assert body["text"]["format"]["type"] == "json_schema"
    assert body["text"]["format"]["name"] == "Summary"
    assert body["text"]["format"]["strict"] is True
    assert body["text"]["format"]["schema"] == request.payload["schema"]["schema"]


def test_flush_writes_chat_completions_lines(openai_server):
    batch_api = openai_server.batches
    with override_settings(LLM_AGENTS=llm_settings(openai_server, BATCH_ENDPOINT="/v1/chat/completions")):
        batches.enqueue(purpose="tickets", model="gpt-4.1-mini", instructions="Classify.", input="Lost parcel",
                        schema=TICKET_SCHEMA)  # fmt: skip
        (batch,) = batches.flush().batches
        (line,) = batch_api.input_lines(batch.provider_batch_id)
        assert line["url"] == "/v1/chat/completions"
        assert line["body"]["messages"] == [
            {"role": "system", "content": "Classify."},
            {"role": "user", "content": "Lost parcel"},
        ]
        assert line["body"]["response_format"]["json_schema"]["schema"] == TICKET_SCHEMA
        assert openai_server.requests_to("/v1/batches")[0].json["endpoint"] == "/v1/chat/completions"

        handler = RecordingHandler()
        batches.register_handler("tickets", handler)
        batch_api.respond = lambda custom_id, body: json.dumps({"category": "shipping"})
        report = batches.poll()
    assert report.succeeded == 1
    ((request, result),) = handler.calls
    assert result.parsed == {"category": "shipping"}
    assert result.usage["input_tokens"] > 0


def test_flush_of_one_purpose_leaves_the_others_pending(batch_api):
    enqueue_many(2)
    enqueue_many(2, purpose="tickets")
    report = batches.flush("tickets")
    assert [b.purpose for b in report.batches] == ["tickets"]
    assert BatchRequest.objects.filter(purpose="chat_summary", status="pending").count() == 2


def test_flush_splits_at_the_request_limit(batch_api):
    enqueue_many(5)
    report = batches.flush(max_requests=2)
    assert sorted(b.request_count for b in report.batches) == [1, 2, 2]
    submitted = batch_api.submitted_custom_ids()
    assert sorted(submitted) == sorted(BatchRequest.objects.values_list("custom_id", flat=True))


def test_flush_splits_at_the_size_limit(batch_api):
    requests = enqueue_many(7)
    line_size = len(json.dumps({"custom_id": requests[0].custom_id})) + 150
    report = batches.flush(max_bytes=line_size * 3)
    assert len(report.batches) >= 3
    assert sum(b.request_count for b in report.batches) == 7
    for batch in Batch.objects.all():
        lines = batch_api.input_lines(batch.provider_batch_id)
        assert len(lines) == batch.request_count == batch.requests.count()
        assert {line["custom_id"] for line in lines} == set(
            batch.requests.values_list("custom_id", flat=True)
        )
        assert len(batch_api.file_content(batch.input_file_id)) <= line_size * 3
    assert sorted(batch_api.submitted_custom_ids()) == sorted(r.custom_id for r in requests)


def test_the_batch_api_limits():
    assert batches.MAX_REQUESTS == 50_000
    assert batches.MAX_BYTES == 200 * 1024 * 1024


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/files"])
def test_a_failed_submission_returns_its_requests_to_pending(batch_api, openai_server, path):
    enqueue_many(3)
    openai_server.enqueue(openai_error(400, "Scripted refusal."), path=path)
    report = batches.flush()
    assert report.batches == []
    assert len(report.errors) == 1
    assert "Scripted refusal" in report.errors[0]
    assert not Batch.objects.exists()
    assert BatchRequest.objects.filter(status="pending", batch=None).count() == 3
    if path == "/v1/batches":  # the uploaded input file is not left behind
        assert openai_server.requests_to(f"/v1/files/{openai_server.requests_to('/v1/files')[0].json}") == []
        assert not any(f["purpose"] == "batch" for f in batch_api.files.values())
    # the next flush submits them
    assert batches.flush().requests == 3


def test_flush_with_nothing_pending_calls_no_provider(batch_api, openai_server):
    assert batches.flush().batches == []
    assert openai_server.requests == []


def test_batch_enabled_off_makes_flush_and_poll_do_nothing(openai_server):
    enqueue_many(2)
    with override_settings(LLM_AGENTS=llm_settings(openai_server, BATCH_ENABLED=False)):
        assert batches.flush().batches == []
        assert batches.poll().as_dict()["checked"] == 0
    assert openai_server.requests == []
    assert BatchRequest.objects.filter(status="pending").count() == 2


def test_an_unknown_endpoint_is_refused(openai_server):
    enqueue_many(1)
    with override_settings(LLM_AGENTS=llm_settings(openai_server, BATCH_ENDPOINT="/v1/embeddings")):
        with pytest.raises(ValueError, match="BATCH_ENDPOINT"):
            batches.flush()


# -- poll -----------------------------------------------------------------------------------------------


def test_poll_records_each_result_and_runs_its_handler(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    requests = enqueue_many(3, schema=Summary, temperature=0.2)
    batches.flush()
    batch_api.respond = lambda custom_id, body: SUMMARY_JSON
    batch_api.input_tokens, batch_api.output_tokens = 1200, 300
    sent, receiver = capture(signals.batch_reconciled)
    try:
        report = batches.poll()
    finally:
        signals.batch_reconciled.disconnect(receiver)

    assert (report.checked, len(report.reconciled), report.succeeded, report.failed) == (1, 1, 3, 0)
    assert report.errors == []
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.COMPLETED
    assert batch.completed_at is not None and batch.reconciled_at is not None
    assert batch.output_file_id and not batch.error_file_id
    assert [payload["batch"] for payload in sent] == [batch]

    assert len(handler.calls) == 3
    request, result = handler.calls[0]
    assert isinstance(result.parsed, Summary)
    assert result.parsed.points == ["ship it", "test it"]
    assert result.content == SUMMARY_JSON
    assert result.usage == {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500}
    assert request.routing == {"name": request.routing["name"]}

    expected = calculate_cost(
        "gpt-4.1-mini", 1200, 300, 0, at=batch.submitted_at, provider="openai", batch=True
    )
    full_price = calculate_cost("gpt-4.1-mini", 1200, 300, 0, at=batch.submitted_at, provider="openai")
    assert expected.total_cost < full_price.total_cost
    for request in requests:
        request.refresh_from_db()
        assert request.status == BatchRequest.Status.SUCCEEDED
        assert request.error == ""
        assert request.result["parsed"] == {"title": "Weekly sync", "points": ["ship it", "test it"]}
        assert (request.input_tokens, request.output_tokens) == (1200, 300)
        assert request.total_cost == expected.total_cost
        execution = request.execution
        assert execution.kind == Execution.Kind.BATCH
        assert execution.status == Execution.Status.SUCCESS
        assert execution.agent_type == "chat_summary"
        assert (execution.model_id, execution.provider, execution.temperature) == (
            "gpt-4.1-mini",
            "openai",
            0.2,
        )
        assert (execution.input_tokens, execution.output_tokens, execution.total_tokens) == (1200, 300, 1500)
        assert execution.total_cost == expected.total_cost
        assert execution.pricing_source == expected.source
        assert execution.system_prompt == "Summarize."
        assert execution.response == SUMMARY_JSON
        assert execution.metadata["custom_id"] == request.custom_id
        assert execution.metadata["routing"] == request.routing
        assert execution.metadata["provider_batch_id"] == batch.provider_batch_id
        (span,) = execution.spans.all()
        assert (span.kind, span.status, span.input_tokens, span.output_tokens) == ("llm", "ok", 1200, 300)
        assert span.total_cost == execution.total_cost
        assert Prompt.objects.filter(slug=f"handled-{request.custom_id}").exists()


def test_batch_results_are_priced_by_a_cost_config_at_the_batch_discount(batch_api):
    CostConfig.objects.create(
        provider="openai", model="house-model", input_price_per_mtok=Decimal("10"),
        output_price_per_mtok=Decimal("20"), effective_from=timezone.now() - timezone.timedelta(days=1),
    )  # fmt: skip
    batches.register_handler("chat_summary", RecordingHandler())
    enqueue_many(1, model="house-model")
    batches.flush()
    batch_api.input_tokens, batch_api.output_tokens = 1_000_000, 1_000_000
    batches.poll()
    execution = Execution.objects.get()
    assert execution.pricing_source == "config"
    assert execution.total_cost == Decimal("15")  # (10 + 20) × BATCH_DISCOUNT 0.5


def test_a_raising_handler_leaves_its_request_failed_and_its_writes_undone(batch_api):
    handler = RecordingHandler(raises_for={"r1"})
    batches.register_handler("chat_summary", handler)
    requests = enqueue_many(3)
    batches.flush()
    report = batches.poll()
    assert (report.succeeded, report.failed) == (2, 1)
    statuses = {r.routing["name"]: (r.status, r.error) for r in BatchRequest.objects.all()}
    assert statuses["r0"] == ("succeeded", "")
    assert statuses["r2"] == ("succeeded", "")
    assert statuses["r1"] == ("failed", "handler raised ValueError: cannot route r1")
    assert not Prompt.objects.filter(name="rolled back").exists()
    assert Prompt.objects.filter(name="handled").count() == 2
    assert handler.failures == []
    failed = BatchRequest.objects.get(routing__name="r1")
    assert failed.execution.status == Execution.Status.SUCCESS  # the answer came; our handling failed
    assert Batch.objects.get().reconciled_at is not None
    assert len(requests) == 3


def test_failed_lines_fail_their_requests_and_call_on_failure(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    enqueue_many(3)
    batches.flush()
    batch_api.respond = lambda custom_id, body: (
        BatchLineError(400, "Unsupported parameter.", "invalid_request_error")
        if body["input"] == "conversation 1"
        else "fine"
    )
    report = batches.poll()
    assert (report.succeeded, report.failed) == (2, 1)
    batch = Batch.objects.get()
    assert batch.error_file_id
    ((request, error),) = handler.failures
    assert request.routing == {"name": "r1"}
    assert isinstance(error, batches.BatchRequestError)
    assert (error.code, error.status_code, error.message) == (
        "invalid_request_error",
        400,
        "Unsupported parameter.",
    )
    request.refresh_from_db()
    assert request.status == BatchRequest.Status.FAILED
    assert request.error == "invalid_request_error: Unsupported parameter."
    assert request.execution.status == Execution.Status.ERROR
    assert request.execution.error_class == "BatchRequestError"
    assert request.execution.total_cost == 0
    assert len(handler.calls) == 2


def test_output_that_breaks_the_schema_fails_the_request(batch_api):
    handler = RecordingHandler()
    batches.register_handler("tickets", handler)
    batches.enqueue(
        purpose="tickets", model="gpt-4.1-mini", input="a", schema=TICKET_SCHEMA, routing={"name": "a"}
    )
    batches.enqueue(purpose="tickets", model="gpt-4.1-mini", input="b", schema=Summary, routing={"name": "b"})
    batches.enqueue(
        purpose="tickets", model="gpt-4.1-mini", input="c", schema=TICKET_SCHEMA, routing={"name": "c"}
    )
    batches.flush()
    answers = {"a": '{"category": "refund"}', "b": '{"title": "no points"}', "c": "not json"}
    batch_api.respond = lambda custom_id, body: answers[body["input"]]
    report = batches.poll()
    assert (report.succeeded, report.failed) == (0, 3)
    assert handler.calls == []
    errors = {r.routing["name"]: e for r, e in handler.failures}
    assert {e.code for e in errors.values()} == {"invalid_output"}
    assert "'refund' is not one of" in errors["a"].message
    assert "Summary" in errors["b"].message
    assert "not JSON" in errors["c"].message
    for execution in Execution.objects.all():
        assert execution.status == Execution.Status.ERROR
        assert execution.error_class == "BatchRequestError"
        assert execution.output_tokens > 0  # the answer was paid for


def test_results_missing_from_the_output_fail_their_requests(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    requests = enqueue_many(3)
    batches.flush()
    batch_api.drop = {requests[2].custom_id}
    report = batches.poll()
    assert (report.succeeded, report.failed) == (2, 1)
    ((request, error),) = handler.failures
    assert request.pk == requests[2].pk
    assert error.code == "missing_result"
    request.refresh_from_db()
    assert request.status == "failed"
    assert request.error.startswith("missing_result:")
    assert request.execution is None
    assert Execution.objects.count() == 2
    assert Batch.objects.get().reconciled_at is not None


@pytest.mark.parametrize("status", ["expired", "cancelled"])
def test_an_expired_or_cancelled_batch_fails_what_it_did_not_answer(batch_api, status):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    requests = enqueue_many(3)
    (batch,) = batches.flush().batches
    batch_api.auto_complete = False
    assert batches.poll().reconciled == []
    batch_api.finish(batch.provider_batch_id, status, answered=[requests[0].custom_id])
    report = batches.poll()
    assert (report.succeeded, report.failed) == (1, 2)
    batch.refresh_from_db()
    assert batch.status == status
    assert {e.code for _, e in handler.failures} == {f"batch_{status}"}
    assert {r.pk for r, _ in handler.failures} == {requests[1].pk, requests[2].pk}
    assert BatchRequest.objects.get(pk=requests[0].pk).status == "succeeded"


def test_a_failed_batch_fails_every_request_with_the_providers_reason(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    enqueue_many(2)
    (batch,) = batches.flush().batches
    batch_api.auto_complete = False
    batch_api.finish(batch.provider_batch_id, "failed")
    report = batches.poll()
    assert (report.succeeded, report.failed) == (0, 2)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.FAILED
    assert batch.error == "invalid_json_line: Scripted validation failure."
    assert all(
        e.code == "batch_failed" and "Scripted validation failure" in e.message for _, e in handler.failures
    )
    assert set(BatchRequest.objects.values_list("status", flat=True)) == {"failed"}
    assert not Execution.objects.exists()


def test_cancelling_a_batch(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    enqueue_many(2)
    (batch,) = batches.flush().batches
    batch_api.auto_complete = False
    assert batches.cancel(batch) is True
    assert batch_api.batches[batch.provider_batch_id]["status"] == "cancelling"
    batches.poll()
    assert Batch.objects.get().status == Batch.Status.SUBMITTED  # cancelling is not finished yet
    batch_api.auto_complete = True
    report = batches.poll()
    assert report.failed == 2
    assert Batch.objects.get().status == Batch.Status.CANCELLED
    assert batches.cancel(Batch.objects.get()) is False


def test_cancelling_an_unsubmitted_claim_releases_it(batch_api):
    claim = Batch.objects.create(purpose="chat_summary", model="gpt-4.1-mini")
    request = enqueue_many(1)[0]
    BatchRequest.objects.filter(pk=request.pk).update(status="submitted", batch=claim)
    assert batches.cancel(claim) is True
    assert not Batch.objects.exists()
    request.refresh_from_db()
    assert (request.status, request.batch) == ("pending", None)


def test_an_unfinished_batch_waits(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    enqueue_many(2)
    (batch,) = batches.flush().batches
    batch_api.auto_complete = False
    report = batches.poll()
    assert (report.checked, report.reconciled, report.succeeded) == (1, [], 0)
    assert Batch.objects.get().status == Batch.Status.SUBMITTED
    assert set(BatchRequest.objects.values_list("status", flat=True)) == {"submitted"}
    batch_api.finish(batch.provider_batch_id)
    assert batches.poll().succeeded == 2


def test_poll_is_safe_to_repeat(batch_api, openai_server):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    enqueue_many(4)
    batches.flush()
    assert batches.poll().succeeded == 4
    calls_before = len(openai_server.requests)
    again = batches.poll()
    assert (again.checked, again.reconciled, again.succeeded, again.failed) == (0, [], 0, 0)
    assert len(openai_server.requests) == calls_before  # nothing left to ask the provider
    assert len(handler.calls) == 4
    assert Execution.objects.count() == 4


def test_a_poll_interrupted_midway_finishes_the_batch_next_time(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    requests = enqueue_many(4)
    batches.flush()
    batches.poll()
    # As if the poller had died after its first chunk: two requests are still waiting (and what their
    # handler wrote was rolled back with them).
    BatchRequest.objects.filter(pk__in=[requests[2].pk, requests[3].pk]).update(status="submitted")
    Prompt.objects.filter(
        slug__in=[f"handled-{requests[2].custom_id}", f"handled-{requests[3].custom_id}"]
    ).delete()
    Batch.objects.update(reconciled_at=None)
    handler.calls.clear()
    report = batches.poll(chunk_size=1)
    assert report.succeeded == 2
    assert {r.pk for r, _ in handler.calls} == {requests[2].pk, requests[3].pk}
    assert Execution.objects.count() == 4  # the same executions, upserted
    assert Batch.objects.get().reconciled_at is not None


def test_results_wait_for_a_handler(batch_api):
    enqueue_many(2)
    batches.flush()
    report = batches.poll()
    assert report.succeeded == 0
    assert "no handler is registered for purpose 'chat_summary'" in report.errors[0]
    assert set(BatchRequest.objects.values_list("status", flat=True)) == {"submitted"}
    assert Batch.objects.get().reconciled_at is None
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    assert batches.poll().succeeded == 2


def test_a_function_is_a_handler(batch_api):
    seen = []
    batches.register_handler("chat_summary", lambda request, result: seen.append(result.content))
    enqueue_many(2)
    batches.flush()
    report = batches.poll()
    assert report.succeeded == 2
    assert sorted(seen) == ["conversation 0", "conversation 1"]
    with pytest.raises(TypeError):
        batches.register_handler("x", object())


def test_without_tracking_the_handler_runs_and_nothing_is_recorded(openai_server):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    with override_settings(LLM_AGENTS=llm_settings(openai_server, TRACK_EXECUTIONS=False)):
        enqueue_many(2)
        batches.flush()
        assert batches.poll().succeeded == 2
    assert not Execution.objects.exists()
    assert all(result.execution_id is None for _, result in handler.calls)
    assert set(BatchRequest.objects.values_list("execution", flat=True)) == {None}


def test_batch_executions_keep_the_tenant(openai_server):
    batches.register_handler("chat_summary", RecordingHandler())
    with override_settings(LLM_AGENTS=llm_settings(openai_server, MULTI_TENANCY=True)):
        with tenant("acme"):
            enqueue_many(1)
        batches.flush()
        batches.poll()
    assert Execution.objects.get().tenant_id == "acme"


def test_stale_claims_are_released(batch_api):
    stale = Batch.objects.create(purpose="chat_summary", model="gpt-4.1-mini")
    fresh = Batch.objects.create(purpose="chat_summary", model="gpt-4.1-mini")
    old, young = enqueue_many(2)
    BatchRequest.objects.filter(pk=old.pk).update(status="submitted", batch=stale)
    BatchRequest.objects.filter(pk=young.pk).update(status="submitted", batch=fresh)
    Batch.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timezone.timedelta(seconds=901))
    report = batches.poll()
    assert report.released == 1
    assert list(Batch.objects.values_list("pk", flat=True)) == [fresh.pk]
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.status, old.batch) == ("pending", None)
    assert (young.status, young.batch_id) == ("submitted", fresh.pk)
    with override_settings(LLM_AGENTS=llm_settings(batch_api.server, BATCH_STALE_CLAIM_AFTER=0)):
        assert batches.poll().released == 1
    # released requests are submitted by the next flush
    assert batches.flush().requests == 2


def test_retry_failed_puts_requests_back_in_the_queue(batch_api):
    handler = RecordingHandler()
    batches.register_handler("chat_summary", handler)
    requests = enqueue_many(2)
    batches.flush()
    batch_api.drop = {requests[0].custom_id}
    batches.poll()
    assert batches.retry_failed() == 1
    retried = BatchRequest.objects.get(pk=requests[0].pk)
    assert (retried.status, retried.batch, retried.error, retried.result) == ("pending", None, "", None)
    batch_api.drop = set()
    assert batches.flush().requests == 1
    assert batches.poll().succeeded == 1
    assert BatchRequest.objects.filter(status="succeeded").count() == 2


# -- tasks and commands ---------------------------------------------------------------------------------


def test_tasks_flush_and_poll(batch_api):
    batches.register_handler("chat_summary", RecordingHandler())
    enqueue_many(2)
    assert tasks.flush_batches.delay().get() == {"batches": 1, "requests": 2, "errors": []}
    assert tasks.poll_batches.delay().get() == {
        "released": 0, "checked": 1, "reconciled": 1, "succeeded": 2, "failed": 0, "errors": [],
    }  # fmt: skip


def test_beat_schedule_names_every_periodic_task():
    from celery import current_app

    schedule = tasks.beat_schedule()
    names = {entry["task"] for entry in schedule.values()}
    assert names == {
        "llm_agents.tasks.flush_batches",
        "llm_agents.tasks.poll_batches",
        "llm_agents.tasks.purge_executions",
        "llm_agents.tasks.ensure_partitions",
        "llm_agents.tasks.evaluate_alerts",
    }
    assert names <= set(current_app.tasks)
    assert schedule["llm_agents.poll_batches"]["schedule"] > 0


def test_flush_and_poll_commands(batch_api, capsys):
    batches.register_handler("chat_summary", RecordingHandler())
    enqueue_many(3)
    call_command("flush_batches", "--dry-run")
    out = capsys.readouterr().out
    assert "chat_summary / gpt-4.1-mini: 3 requests" in out
    assert "Would submit 3 requests in 1 batches" in out
    assert not Batch.objects.exists()

    call_command("poll_batches", "--dry-run")
    assert "check 0 unfinished batches" in capsys.readouterr().out

    call_command("flush_batches")
    out = capsys.readouterr().out
    assert "submitted batch" in out
    assert "Submitted 3 requests in 1 batches." in out

    call_command("poll_batches")
    out = capsys.readouterr().out
    assert "is completed" in out
    assert "3 of 3 results read" in out
    assert "reconciled 1 batches: 3 requests succeeded, 0 failed." in out


def test_commands_fail_loudly(batch_api, openai_server):
    enqueue_many(1)
    openai_server.enqueue(openai_error(400, "Scripted refusal."), path="/v1/batches")
    with pytest.raises(CommandError, match="Scripted refusal"):
        call_command("flush_batches", verbosity=0)
    assert BatchRequest.objects.get().status == "pending"
    batches.flush()
    with pytest.raises(CommandError, match="no handler is registered"):
        call_command("poll_batches", verbosity=0)


# -- admin ----------------------------------------------------------------------------------------------


def test_admin_shows_request_counts_and_the_requests(batch_api, staff_client):
    handler = RecordingHandler(raises_for={"r1"})
    batches.register_handler("chat_summary", handler)
    enqueue_many(3)
    (batch,) = batches.flush().batches
    batches.poll()
    response = staff_client.get("/admin/llm_agents/batch/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "2 succeeded" in content and "1 failed" in content

    response = staff_client.get(f"/admin/llm_agents/batch/{batch.pk}/change/")
    content = response.content.decode()
    assert f"/admin/llm_agents/batchrequest/?batch__id__exact={batch.pk}" in content

    response = staff_client.get(f"/admin/llm_agents/batchrequest/?batch__id__exact={batch.pk}")
    content = response.content.decode()
    assert response.context["cl"].result_count == 3
    assert "cannot route r1" in content
    assert "/admin/llm_agents/execution/" in content
    assert "r2" in content  # routing


def test_admin_actions_retry_failed_requests_and_cancel_batches(batch_api, staff_client):
    batches.register_handler("chat_summary", RecordingHandler(raises_for={"r0"}))
    enqueue_many(2)
    batches.flush()
    batches.poll()
    failed = BatchRequest.objects.get(status="failed")
    response = staff_client.post(
        "/admin/llm_agents/batchrequest/",
        {
            "action": "retry_failed_requests",
            "_selected_action": [str(r.pk) for r in BatchRequest.objects.all()],
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "1 failed request" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == "pending"

    batch_api.auto_complete = False
    (batch,) = batches.flush().batches
    response = staff_client.post(
        "/admin/llm_agents/batch/",
        {"action": "cancel_batches", "_selected_action": [str(batch.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert batch_api.batches[batch.provider_batch_id]["status"] == "cancelling"


def test_batch_results_are_spans_of_batch_executions(batch_api):
    batches.register_handler("chat_summary", RecordingHandler())
    enqueue_many(2)
    batches.flush()
    batches.poll()
    assert Span.objects.filter(kind="llm", execution__kind="batch").count() == 2
    assert Execution.objects.filter(kind="batch").root_executions().count() == 2


class CarefulHandler:
    """Writes through its own atomic blocks, registers on_commit work, and misbehaves on request."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    def call(self, request, result):
        name = request.routing["name"]
        transaction.on_commit(lambda: self.done.append(name))
        with transaction.atomic():
            Prompt.objects.create(slug=f"careful-{name}", name="careful")
        if name == "r0":
            raise RuntimeError("after writing")
        if name == "r1":
            try:  # a database error the handler swallows
                Prompt.objects.create(slug=f"careful-{name}", name="duplicate")
            except IntegrityError:
                pass


def test_handlers_run_in_a_savepoint_with_their_on_commit_work(batch_api, django_capture_on_commit_callbacks):
    done: list[str] = []
    batches.register_handler("chat_summary", CarefulHandler(done))
    enqueue_many(3)
    batches.flush()
    with django_capture_on_commit_callbacks(execute=True):
        report = batches.poll()
    assert (report.succeeded, report.failed) == (1, 2)
    statuses = {r.routing["name"]: (r.status, r.error) for r in BatchRequest.objects.all()}
    assert statuses["r0"] == ("failed", "handler raised RuntimeError: after writing")
    assert statuses["r1"][0] == "failed"
    assert "caught a database error" in statuses["r1"][1]
    assert statuses["r2"] == ("succeeded", "")
    assert list(Prompt.objects.values_list("slug", flat=True)) == ["careful-r2"]
    assert done == ["r2"]  # the failed handlers' on_commit work was dropped


def test_reasoning_models_get_no_temperature(batch_api):
    batches.enqueue(purpose="p", model="o4-mini", input="x", temperature=0.2)
    batches.enqueue(purpose="p", model="gpt-4.1-mini", input="x", temperature=0.2)
    report = batches.flush()
    bodies = {
        line["body"]["model"]: line["body"]
        for batch in report.batches
        for line in batch_api.input_lines(batch.provider_batch_id)
    }
    assert "temperature" not in bodies["o4-mini"]
    assert bodies["gpt-4.1-mini"]["temperature"] == 0.2


def test_a_request_too_large_for_a_batch_stays_pending_and_others_go_on(batch_api):
    batches.enqueue(purpose="huge", model="gpt-4.1-mini", input="x" * 5_000)
    enqueue_many(2)
    report = batches.flush(max_bytes=2_000)
    assert [b.purpose for b in report.batches] == ["chat_summary"]
    assert "alone is larger than the 2000-byte batch limit" in report.errors[0]
    assert BatchRequest.objects.get(purpose="huge").status == "pending"
    assert Batch.objects.count() == 1


def test_batch_results_count_against_the_budgets_once(batch_api, django_capture_on_commit_callbacks):
    """A batch's spend reaches the budgets' counters when its results are reconciled, under its
    purpose, tenant and the model that answered, once however often poll runs, and as
    rebuild_aggregates would count it."""
    budget = Budget.objects.create(name="all", scope="global", period="monthly", limit_usd=Decimal("100"))
    by_model = Budget.objects.create(
        name="mini", scope="model", scope_value="gpt-4.1-mini", period="monthly", limit_usd=Decimal("100")
    )
    by_purpose = Budget.objects.create(
        name="summaries",
        scope="agent",
        scope_value="chat_summary",
        period="monthly",
        limit_usd=Decimal("100"),
    )
    batches.register_handler("chat_summary", RecordingHandler())
    enqueue_many(3)
    batches.flush()
    batch_api.input_tokens, batch_api.output_tokens = 100_000, 50_000
    with django_capture_on_commit_callbacks(execute=True):
        batches.poll()
        batches.poll()
    spent = Execution.objects.aggregate(total=Sum("total_cost"))["total"]
    assert spent > 0
    assert budget.current_spend() == by_model.current_spend() == by_purpose.current_spend() == spent
    assert budget.current_tokens() == 3 * 150_000
    call_command("rebuild_aggregates", verbosity=0)
    assert budget.current_spend() == by_model.current_spend() == spent
