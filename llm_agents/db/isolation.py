"""Where the product's own writes run: outside the caller's transaction, off an event loop's thread,
and one at a time on SQLite.

Tracking rows, budget counters and batch claims must survive the rollback of a transaction the
calling code opened (and a budget's lock must not be held until that code commits); Django allows
no synchronous query on an event loop's thread. In both cases the work runs on a worker thread of
this module's pool, with a database connection of its own, and the caller waits for it. SQLite
allows one writer at a time, so there the work joins the caller's transaction instead, and the
threads of this process take turns (:func:`single_writer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections, connections, transaction

__all__ = ["in_callers_transaction", "on_event_loop", "on_worker", "run_isolated", "single_writer"]

T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llm_agents_db")
_sqlite_writer = threading.RLock()
#: Per thread: how deep in single_writer it is; whether it works for a caller that holds the lock.
_writer = threading.local()


def on_event_loop() -> bool:
    """True on a thread running an asyncio event loop (where Django allows no synchronous query)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def in_callers_transaction(alias: str) -> bool:
    """True inside a transaction the calling code opened.

    Django refuses to open a durable atomic block inside another one, except inside the transaction
    its ``TestCase`` wraps each test in; entering one without a savepoint (which sends no query)
    tells the two apart through that public behaviour.
    """
    connection = connections[alias]
    if not connection.in_atomic_block:
        return False
    try:
        with transaction.atomic(using=alias, savepoint=False, durable=True):
            pass
    except RuntimeError:
        return True
    return False


@contextlib.contextmanager
def single_writer(alias: str) -> Iterator[None]:
    """On SQLite, this process's threads take turns writing (a shared-cache database, such as the
    in-memory test one, reports a locked table at once instead of waiting for it). Re-entrant, and
    held on behalf of its caller by work the caller waits for on a worker (:func:`on_worker`)."""
    if connections[alias].vendor != "sqlite" or getattr(_writer, "borrowed", False):
        yield
        return
    with _sqlite_writer:
        _writer.depth = getattr(_writer, "depth", 0) + 1
        try:
            yield
        finally:
            _writer.depth -= 1


def on_worker(work: Callable[[], T]) -> T:
    """Run ``work`` on a worker thread with a connection of its own (closed after it, as at the end of
    a request, honouring ``CONN_MAX_AGE``) and wait for its result. A caller holding the SQLite
    writer lock lends it to the work: the caller only waits, so the two never write at once."""
    borrowed = getattr(_writer, "depth", 0) > 0

    def run() -> T:
        _writer.borrowed = borrowed
        close_old_connections()
        try:
            return work()
        finally:
            close_old_connections()
            _writer.borrowed = False

    return _pool.submit(run).result()


def run_isolated(work: Callable[[], T], alias: str) -> T:
    """Run ``work`` (queries on database ``alias``) outside the caller's transaction and off an event
    loop's thread; on SQLite inside the caller's transaction, one writer at a time."""
    if on_event_loop() or (in_callers_transaction(alias) and connections[alias].vendor != "sqlite"):
        return on_worker(work)
    with single_writer(alias):
        return work()
