"""Getting finished executions to the database: now, through Celery, or by way of the local spool.

With ``ASYNC_LOGGING`` a background :class:`Publisher` thread sends finished root executions to the
``record_executions`` task (defined here, registered as ``llm_agents.tasks.record_executions``) in
batches; when the broker cannot be reached (:class:`BrokerState`) it writes them synchronously. A
write the database cannot take waits in the :class:`Spool` (files of JSON payloads) until it is
back: drained after the next successful write, at every task run, and by ``drain_spool``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from celery import shared_task
from django.db import DatabaseError, connections

from ..conf import app_settings
from .rows import encode_message, to_message
from .writer import write_document, write_isolated, write_payload

logger = logging.getLogger("llm_agents")


# -- the spool ------------------------------------------------------------------------------------

#: Seconds between checks of the spool folder by a process that has not spooled anything itself.
CHECK_EVERY = 30.0


class Spool:
    """The local spool: payloads the database could not take wait here as files until it is back.

    Each file is one JSON payload (the ``record_executions`` message format), written atomically.
    :meth:`drain` writes them and deletes their files. Writes are upserts by UUID, so a payload
    written twice (two processes draining at once) is harmless.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outage_since: float | None = None
        self.next_check = 0.0

    @property
    def path(self) -> Path:
        configured = app_settings.SPOOL_PATH
        return Path(configured) if configured else Path(tempfile.gettempdir()) / "llm_agents_spool"

    def save(self, message: dict[str, list[dict[str, Any]]], error: BaseException) -> Path:
        """Keep a JSON-safe payload on disk; warn once per database outage."""
        folder = self.path
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.json"
        temporary = folder / f".{name}.tmp"
        temporary.write_text(json.dumps(message))
        os.replace(temporary, folder / name)
        with self.lock:
            first = self.outage_since is None
            if first:
                self.outage_since = time.monotonic()
            self.next_check = 0.0
        if first:
            logger.warning(
                "llm_agents could not write to the database (%s: %s); executions are spooled in %s "
                "and written when it is back",
                type(error).__name__,
                error,
                folder,
            )
        return folder / name

    def files(self) -> list[Path]:
        folder = self.path
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def maybe_drain(self) -> None:
        """After a successful write: drain if this process spooled, or now and then in case others did."""
        now = time.monotonic()
        if self.outage_since is None and now < self.next_check:
            return
        self.next_check = now + CHECK_EVERY
        if self.files():
            self.drain()
        elif self.outage_since is not None:
            self.recovered(0)

    def drain(self, limit: int | None = None) -> int:
        """Write spooled payloads to the database; returns how many executions were written.

        Each file is claimed by renaming it first, so concurrent drainers never share one. A file
        that fails to write is put back and draining stops (the database is still unreachable).
        """
        written = 0
        for number, path in enumerate(self.files()):
            if limit is not None and number >= limit:
                break
            claimed = path.with_name(f".{path.name}.{os.getpid()}.claimed")
            try:
                os.replace(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            message = json.loads(claimed.read_text())
            try:
                write_payload(message)
            except Exception:
                os.replace(claimed, path)
                raise
            claimed.unlink()
            written += len(message.get("executions", []))
        if written or self.outage_since is not None:
            self.recovered(written)
        return written

    def recovered(self, written: int) -> None:
        with self.lock:
            was_down, self.outage_since = self.outage_since, None
        if was_down is not None or written:
            logger.warning("llm_agents reached the database again; %d spooled executions written", written)


spool = Spool()


# -- the task -------------------------------------------------------------------------------------


@shared_task(name="llm_agents.tasks.record_executions", acks_late=True, ignore_result=True)
def record_executions(payload: str | dict[str, list[dict[str, Any]]]) -> int:
    """Write finished executions and their spans; idempotent by UUID, so a redelivery is harmless.

    ``payload`` is ``{"executions": [...], "spans": [...]}`` of JSON-safe rows, or that document as a
    JSON string with every field of every row (what ``ASYNC_LOGGING`` sends: see
    :func:`~llm_agents.tracking.rows.encode_message`), which goes to PostgreSQL undecoded.

    If the database cannot be reached, the payload goes to this worker's local spool (and the
    message is acknowledged); every later run drains the spool once the database is back.
    """
    try:
        if isinstance(payload, str):
            written = write_document(payload)
        else:
            write_payload(payload)
            written = len(payload.get("executions", []))
    except DatabaseError as exc:
        spool.save(json.loads(payload) if isinstance(payload, str) else payload, exc)
        return 0
    spool.maybe_drain()
    return written


# -- the broker -----------------------------------------------------------------------------------

BROKER_RETRY_AFTER = 10.0  # seconds to write synchronously before trying an unreachable broker again


class BrokerState:
    """Remembers that the broker was unreachable, so calls do not each wait on it, and so that the
    outage is logged once rather than once per call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.retry_at = 0.0

    def usable(self) -> bool:
        return self.down_since is None or time.monotonic() >= self.retry_at

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            first = self.down_since is None
            now = time.monotonic()
            if first:
                self.down_since = now
            self.retry_at = now + BROKER_RETRY_AFTER
        if first:
            logger.warning(
                "llm_agents could not reach the Celery broker (%s: %s); writing executions synchronously "
                "until it is back",
                type(exc).__name__,
                exc,
            )

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            was_down, self.down_since = self.down_since, None
        if was_down is not None:
            logger.warning("llm_agents reached the Celery broker again; async logging resumed")


_brokers: dict[str, BrokerState] = {}


def broker_state(app: Any) -> BrokerState:
    """The reachability of the broker of a Celery app (one state per broker URL)."""
    url = str(app.conf.broker_url)
    state = _brokers.get(url)
    if state is None:
        state = _brokers.setdefault(url, BrokerState())
    return state


def write_or_spool(payload: dict[str, list[dict[str, Any]]], *, durable: bool = True) -> bool:
    """Write a payload now; if the database cannot take it, keep it in the local spool.
    Returns True when it reached the database."""
    try:
        write_isolated(payload, durable=durable)
    except DatabaseError as exc:
        try:
            spool.save(to_message(payload), exc)
        except Exception:
            logger.exception(
                "llm_agents could neither write nor spool %d executions", len(payload["executions"])
            )
        return False
    except Exception:
        logger.exception("llm_agents could not record %d executions", len(payload["executions"]))
        return False
    try:
        spool.maybe_drain()
    except Exception:
        logger.debug("llm_agents could not drain the spool yet", exc_info=True)
    return True


def send_async(payload: dict[str, list[dict[str, Any]]]) -> None:
    """Hand a finished root execution (and what is nested in it) to ``record_executions``.

    With an eager Celery (tests, development) the task runs here and now. Otherwise the payload
    goes to a background publisher thread, so the caller only pays for a queue put; the thread
    sends what has gathered as one message, and writes it to the database itself when the broker
    cannot be reached.
    """
    task = record_executions._get_current_object()  # bound to the Celery app current here
    if task.app.conf.task_always_eager:
        publish(task, [payload])
    else:
        publisher.submit(task, payload)


def publish(task: Any, payloads: list[dict[str, list[dict[str, Any]]]]) -> bool:
    """Send payloads as one ``record_executions`` message; write them synchronously if that fails.
    Returns True when they went to the broker."""
    payload = {
        "executions": [row for item in payloads for row in item["executions"]],
        "spans": [row for item in payloads for row in item["spans"]],
    }
    broker = broker_state(task.app)
    if broker.usable():
        try:
            task.apply_async(args=[encode_message(payload)], retry=False)
        except Exception as exc:
            broker.failed(exc)
        else:
            broker.succeeded()
            return True
    write_or_spool(payload)
    return False


class Publisher:
    """A daemon thread that publishes queued payloads: it gathers for up to ``linger`` seconds
    (or ``max_batch`` payloads) and sends them as one message, so workers write in bulk."""

    max_batch = 200
    linger = 0.05

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[Any, dict[str, list[dict[str, Any]]]]] = queue.Queue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def submit(self, task: Any, payload: dict[str, list[dict[str, Any]]]) -> None:
        if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
            self.start()
        self.queue.put((task, payload))

    def start(self) -> None:
        with self.lock:
            if self.thread is not None and self.pid == os.getpid() and self.thread.is_alive():
                return
            if self.pid != os.getpid():
                self.queue = queue.Queue()  # a forked child does not inherit the parent's backlog
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self.run, name="llm_agents_publisher", daemon=True)
            self.thread.start()

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.linger
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            by_task: dict[Any, list[dict[str, list[dict[str, Any]]]]] = {}
            for task, payload in batch:
                by_task.setdefault(task, []).append(payload)
            try:
                if not all([publish(task, payloads) for task, payloads in by_task.items()]):
                    connections.close_all()  # this thread wrote to the database; hold no connection
            except Exception:
                logger.exception("llm_agents could not publish %d payloads", len(batch))
            finally:
                for _ in batch:
                    self.queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is published (or written); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


publisher = Publisher()
atexit.register(publisher.flush, 5.0)
