"""Real processes for the integration and fault tests: a private redis-server and Celery workers
sharing the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

#: Seconds child processes get to start Django and connect: generous, for a loaded two-core machine.
READY_TIMEOUT = 180


def database_url() -> str:
    """The URL of the test database (the one pytest-django created), for child processes."""
    if connection.vendor != "postgresql":
        raise RuntimeError("Workers share the test database: set DATABASE_URL to a PostgreSQL database.")
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER'] or 'postgres'}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def database_activity() -> str:
    """The other sessions on the test database, for a failure message: what each is doing or
    waiting on, and which sessions block it (a worker stuck on a lock shows here)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid), "
            "now() - xact_start, left(query, 100) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        rows = cursor.fetchall()
    return (
        "; ".join(
            f"pid {pid} {state} (waiting: {kind or '-'}/{event or '-'}, blocked by {blockers or '-'}, "
            f"transaction {age or '-'}): {query!r}"
            for pid, state, kind, event, blockers, age, query in rows
        )
        or "no other session"
    )


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, on a free port, that the test may stop and restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_for(self.ping, timeout=20), "redis-server did not start"

    def ping(self) -> bool:
        return (
            subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode == 0
        )

    def describe(self) -> str:
        """What the broker still holds: queued messages and messages delivered but not acknowledged."""

        def ask(*command: str) -> str:
            run = subprocess.run(
                ["redis-cli", "-p", str(self.port), *command], capture_output=True, text=True
            )
            return run.stdout.strip()

        return f"{ask('llen', 'celery')} queued, {ask('hlen', 'unacked')} unacknowledged"

    def shutdown_saving(self) -> None:
        """Stop the server, keeping its data on disk (as a graceful restart does)."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "save"], capture_output=True)
        if self.process is not None:
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


RABBITMQ_URL = os.environ.get("LLM_AGENTS_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


class RabbitQueue:
    """A queue of the test's own on the machine's RabbitMQ (``RABBITMQ_URL``), emptied before and
    deleted after."""

    def __init__(self) -> None:
        self.url = RABBITMQ_URL
        self.name = f"llm_agents_faults_{os.getpid()}_{time.monotonic_ns()}"

    def reachable(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=5) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception:
            return False
        return True

    def _queue(self, connection):
        from kombu import Exchange, Queue

        return Queue(self.name, Exchange(self.name, type="direct"), routing_key=self.name)(
            connection.default_channel
        )

    def describe(self) -> str:
        """Messages ready in the queue (RabbitMQ counts unacknowledged ones apart)."""
        from kombu import Connection

        with Connection(self.url) as connection:
            _, ready, consumers = self._queue(connection).queue_declare(passive=True)
        return f"{ready} ready, {consumers} consumer(s)"

    def delete(self) -> None:
        from kombu import Connection

        with Connection(self.url) as connection:
            self._queue(connection).delete()


class CeleryWorker:
    """``celery -A tests.celery_app worker`` in a process of its own, on the test database."""

    def __init__(self, broker_url: str, *, visibility_timeout: int = 3600, queue: str = "celery") -> None:
        self.queue = queue
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "LLM_AGENTS_VISIBILITY_TIMEOUT": str(visibility_timeout),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=solo", "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", self.queue],
            env=self.env,
        )  # fmt: skip
        return self

    def dump_stacks(self) -> None:
        """Ask the worker for its threads' stacks (Celery's SIGUSR1 handler prints them to its
        stderr, which is the test's): what a worker that stopped consuming is doing."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2)

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement of the message in hand."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
