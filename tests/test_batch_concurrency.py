"""Flushers and pollers running at once never submit a request twice nor run a handler twice.

On PostgreSQL the competitors are separate processes (``tests.batch_workers``) on the test database,
all talking to the fake server this process runs. On SQLite, which has no row locks and one writer at a
time, they are threads of this process: flush and poll take the single-writer path, and the same
exactly-once counts must hold.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings

from llm_agents import batches
from llm_agents.batches.claims import release_stale_claims
from llm_agents.models import Batch, BatchRequest, Execution

from .workers import READY_TIMEOUT, database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
OPENAI = "llm_agents.providers.openai.OpenAIProvider"
REQUESTS = 2_000
PURPOSE = "concurrency"


def llm_settings(server) -> dict[str, Any]:
    return {"PROVIDERS": {"openai": {"class": OPENAI, "api_key": "test", "base_url": server.url}}}


@pytest.fixture(autouse=True)
def no_handlers():
    yield
    batches.handlers._handlers.clear()


def pending_requests(count: int) -> set[str]:
    models = ["gpt-4.1-mini", "gpt-4.1-nano"]
    BatchRequest.objects.bulk_create(
        [
            BatchRequest(
                purpose=PURPOSE,
                model=models[n % 2],
                payload={"instructions": "Echo.", "input": f"request {n}", "schema": None, "temperature": 0},
                routing={"n": n},
            )
            for n in range(count)
        ],
        batch_size=500,
    )
    return set(BatchRequest.objects.values_list("custom_id", flat=True))


def run_processes(
    role: str, count: int, server, tmp_path: Path, **options: Any
) -> tuple[list[dict], list[str]]:
    """Start ``count`` child processes, release them at once, and return their reports and the lines
    their handlers wrote."""
    go = tmp_path / "go"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"database_url": database_url(), "llm_agents": llm_settings(server), "go": str(go), "purpose": PURPOSE,
             "max_requests": options.get("max_requests", batches.MAX_REQUESTS),
             "chunk_size": options.get("chunk_size", 500)}
        )
    )  # fmt: skip
    outs = [tmp_path / f"{role}-{n}.out" for n in range(count)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.batch_workers", role, str(config), str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for out in outs
    ]
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(Path(f"{out}.ready").exists() for out in outs):
        failed = [child for child in children if child.poll() not in (None, 0)]
        assert not failed, failed[0].communicate()[1].decode()
        assert time.monotonic() < deadline, "the children did not get ready"
        time.sleep(0.01)
    go.touch()
    for child in children:
        _, stderr = child.communicate(timeout=180)
        assert child.returncode == 0, stderr.decode()
    reports = [json.loads(Path(f"{out}.report").read_text()) for out in outs]
    lines = [line for out in outs for line in out.read_text().splitlines()]
    return reports, lines


def run_threads(count: int, work) -> list[dict]:
    barrier = threading.Barrier(count)
    reports: list[dict] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            reports.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    return reports


def test_concurrent_flushers_submit_each_request_exactly_once(openai_server, tmp_path):
    custom_ids = pending_requests(REQUESTS)
    with override_settings(LLM_AGENTS=llm_settings(openai_server)):
        if connection.vendor == "postgresql":
            reports, _ = run_processes("flush", 4, openai_server, tmp_path, max_requests=100)
            competitors = "4 processes"
        else:
            reports = run_threads(4, lambda: batches.flush(max_requests=100).as_dict())
            competitors = "4 threads"

    submitted = openai_server.batches.submitted_custom_ids()
    per_competitor = [report["requests"] for report in reports]
    print(
        f"\nflush on {connection.vendor} by {competitors}: {REQUESTS} pending requests, "
        f"{len(submitted)} lines submitted, {len(set(submitted))} distinct, "
        f"{len(submitted) - len(set(submitted))} duplicates, "
        f"{len(openai_server.batches.batches)} provider batches; requests per competitor {per_competitor}"
    )
    assert all(report["errors"] == [] for report in reports)
    assert len(submitted) == REQUESTS
    assert set(submitted) == custom_ids
    assert sum(per_competitor) == REQUESTS
    assert BatchRequest.objects.filter(status="submitted").exclude(batch=None).count() == REQUESTS
    assert Batch.objects.filter(status="submitted").count() == len(openai_server.batches.batches)
    for batch in Batch.objects.all():
        assert batch.requests.count() == batch.request_count <= 100


def test_concurrent_pollers_run_each_handler_exactly_once(openai_server, tmp_path):
    custom_ids = pending_requests(REQUESTS)
    with override_settings(LLM_AGENTS=llm_settings(openai_server)):
        assert batches.flush(max_requests=100).requests == REQUESTS
        if connection.vendor == "postgresql":
            reports, handled = run_processes("poll", 2, openai_server, tmp_path, chunk_size=25)
            competitors = "2 processes"
        else:
            handled = []
            lock = threading.Lock()

            def handler(request, result):
                with lock:
                    handled.append(request.custom_id)

            batches.register_handler(PURPOSE, handler)
            reports = run_threads(2, lambda: batches.poll(chunk_size=25).as_dict())
            competitors = "2 threads"

    per_competitor = [report["succeeded"] for report in reports]
    print(
        f"\npoll on {connection.vendor} by {competitors}: {REQUESTS} results, {len(handled)} handler runs, "
        f"{len(set(handled))} distinct requests, {len(handled) - len(set(handled))} repeated; "
        f"succeeded per competitor {per_competitor}"
    )
    assert all(report["errors"] == [] for report in reports)
    assert len(handled) == REQUESTS
    assert set(handled) == custom_ids
    assert sum(per_competitor) == REQUESTS
    assert BatchRequest.objects.filter(status="succeeded").count() == REQUESTS
    assert Execution.objects.filter(kind="batch").count() == REQUESTS
    assert not Batch.objects.filter(reconciled_at=None).exists()


def test_a_claim_released_during_its_submission_is_not_run(openai_server):
    """A flusher slower than BATCH_STALE_CLAIM_AFTER: poll releases its claim while it is creating the
    provider batch. The flusher must then cancel that batch, not mark its requests submitted."""
    api = openai_server.batches

    def create_after_release(request):
        try:
            released.append(release_stale_claims(now=Batch.objects.get().created_at + dt.timedelta(hours=1)))
        finally:
            connections.close_all()
        return api._create(request)

    released: list[int] = []
    openai_server.route("POST", "/v1/batches", create_after_release)
    custom_ids = pending_requests(3)
    with override_settings(LLM_AGENTS=llm_settings(openai_server)):
        report = batches.flush()
    assert released == [1, 1]  # one claim per model
    assert report.batches == []
    assert all("was released during submission" in error for error in report.errors)
    assert [remote["status"] for remote in api.batches.values()] == ["cancelling", "cancelling"]
    assert not Batch.objects.exists()
    assert set(
        BatchRequest.objects.filter(status="pending", batch=None).values_list("custom_id", flat=True)
    ) == (custom_ids)
