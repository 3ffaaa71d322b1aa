"""ASYNC_LOGGING with a real Celery worker on Redis, writing into PostgreSQL.

Run by ``make test-integration`` (``.ci/run`` does) with DATABASE_URL pointing at PostgreSQL.
"""

from __future__ import annotations

import os
import time

import pytest
from celery import Celery, _state
from django.test import override_settings

from llm_agents import Agent, Param, trace
from llm_agents.models import Execution, Span
from llm_agents.tracking.transport import publisher
from tests.workers import CeleryWorker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("LLM_AGENTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class EchoAgent(Agent):
    model = "fake/echo"
    text = Param(required=True)

    def user_prompt(self):
        return self.text


@pytest.fixture
def sending_to_redis():
    """Make the test process publish to Redis (the test settings' Celery app is eager)."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    sender = Celery("sender", broker=REDIS_URL, set_as_current=False)
    previous = _state.get_current_app()
    sender.set_current()
    try:
        yield
    finally:
        previous.set_current()


def test_a_real_worker_records_every_execution_exactly_once(sending_to_redis):
    with override_settings(LLM_AGENTS={"ASYNC_LOGGING": True}):
        ids = [EchoAgent.call(text=f"message {n}").execution_id for n in range(40)]
        with trace("pipeline") as t:
            EchoAgent.call(text="nested")
    assert publisher.flush(timeout=30)
    assert Execution.objects.count() == 0  # everything is waiting in Redis for a worker
    worker = CeleryWorker(REDIS_URL).start()
    try:
        expected = len(ids) + 2
        assert wait_for(lambda: Execution.objects.count() >= expected), Execution.objects.count()
        time.sleep(0.5)
    finally:
        worker.stop()
    assert Execution.objects.count() == expected
    assert Execution.objects.filter(pk__in=ids, status="success").count() == 40
    assert Span.objects.filter(execution_id__in=ids, kind="llm").count() == 40
    root = Execution.objects.get(pk=t.execution_id)
    assert root.children.get().response == "nested"
    print(f"\nworker recorded {expected} executions from {expected} calls")
