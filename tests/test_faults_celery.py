"""Fault injection with real processes: workers killed with SIGKILL (RabbitMQ), the broker stopped
mid-run (a private redis-server).

Run by ``.ci/run`` (``pytest -m faults``) with DATABASE_URL pointing at PostgreSQL and the machine's
RabbitMQ at ``LLM_AGENTS_RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672//``).
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from celery import Celery, _state
from django.test import override_settings

from llm_agents import Agent, Param
from llm_agents.models import Execution, Span
from llm_agents.tracking.transport import publisher, spool
from tests.workers import CeleryWorker, RabbitQueue, RedisServer, database_activity, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


class EchoAgent(Agent):
    model = "fake/echo"
    text = Param(required=True)

    def user_prompt(self):
        return self.text


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    sender = Celery("sender", broker=server.url, set_as_current=False)
    sender.conf.broker_transport_options = {"visibility_timeout": 5}
    previous = _state.get_current_app()
    sender.set_current()
    try:
        yield server
    finally:
        previous.set_current()
        server.stop()


@pytest.fixture
def rabbit_queue():
    """The machine's RabbitMQ, through a queue of this test's own: a worker killed with SIGKILL loses its
    connection, and RabbitMQ requeues every message the worker had not acknowledged, including one
    delivered to its socket that it had not read yet. (kombu's Redis transport pops a message before
    it records it as unacknowledged, so a worker killed in between loses that message: see
    docs/reliability.md.)"""
    queue = RabbitQueue()
    if not queue.reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"RabbitMQ is not reachable at {queue.url}")
        pytest.skip(f"RabbitMQ is not reachable at {queue.url}")
    sender = Celery("sender", broker=queue.url, set_as_current=False)
    sender.conf.task_default_queue = queue.name
    previous = _state.get_current_app()
    sender.set_current()
    try:
        yield queue
    finally:
        previous.set_current()
        queue.delete()


def test_workers_killed_twice_lose_and_duplicate_nothing(rabbit_queue):
    """10,000 executions through ASYNC_LOGGING; the worker is SIGKILLed twice mid-run and restarted."""
    worker = CeleryWorker(rabbit_queue.url, queue=rabbit_queue.name).start()
    kills = 0
    started = time.monotonic()
    try:
        with override_settings(LLM_AGENTS={"ASYNC_LOGGING": True}):
            ids = []
            for n in range(10_000):
                ids.append(EchoAgent.call(text=f"message {n}").execution_id)
                if n in (3_000, 6_500):
                    publisher.flush(timeout=30)
                    wait_for(lambda: Execution.objects.count() > 0, timeout=20, interval=0.05)
                    worker.kill()
                    kills += 1
                    worker.start()
            assert publisher.flush(timeout=60)
        arrived = wait_for(lambda: Execution.objects.count() >= 10_000, timeout=300)
        if not arrived:
            worker.dump_stacks()
        assert arrived, (
            f"{Execution.objects.count()} stored; broker: {rabbit_queue.describe()}; spool: {spool.files()}; "
            f"worker alive: {worker.process.poll() is None}; database: {database_activity()}"
        )
        time.sleep(1)
    finally:
        worker.stop()
    stored = Execution.objects.count()
    print(f"\n10,000 calls, {kills} SIGKILLs: {stored} executions stored, "
          f"{Span.objects.count()} spans, in {time.monotonic() - started:.1f} s")  # fmt: skip
    assert stored == 10_000
    assert Execution.objects.filter(pk__in=ids[:5000]).count() == 5000
    assert Span.objects.count() == 10_000


def test_broker_stopped_mid_run_loses_nothing_and_says_so_once(redis_server, caplog):
    """2,000 calls; Redis is stopped after 500 and started again at the end."""
    worker = CeleryWorker(redis_server.url, visibility_timeout=5).start()
    try:
        with (
            override_settings(LLM_AGENTS={"ASYNC_LOGGING": True}),
            caplog.at_level(logging.WARNING, "llm_agents"),
        ):
            results = []
            for n in range(2_000):
                results.append(EchoAgent.call(text=f"call {n}"))
                if n == 500:
                    assert publisher.flush(timeout=30)
                    redis_server.shutdown_saving()
            assert publisher.flush(timeout=60)
        redis_server.start()  # the messages sent before the stop come back from its dump
        assert wait_for(lambda: Execution.objects.count() >= 2_000, timeout=120), Execution.objects.count()
    finally:
        worker.stop()
    assert all(result.content == f"call {n}" for n, result in enumerate(results))
    assert Execution.objects.count() == 2_000
    outage = [r for r in caplog.records if "could not reach the Celery broker" in r.getMessage()]
    print(f"\n2,000 calls with Redis stopped after 500: {Execution.objects.count()} stored, "
          f"{len(outage)} outage warning(s)")  # fmt: skip
    assert len(outage) == 1
