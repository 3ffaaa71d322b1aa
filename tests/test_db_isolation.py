"""The one isolation helper: where the product's own writes run (llm_agents.db.isolation)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connection, transaction

from llm_agents.db.isolation import in_callers_transaction, run_isolated, single_writer

pytestmark = pytest.mark.django_db


def test_a_transaction_the_caller_opened_is_told_from_the_test_cases_own():
    alias = connection.alias
    assert not in_callers_transaction(alias)  # only the test's wrapping transaction is open
    with transaction.atomic():
        assert in_callers_transaction(alias)
        with transaction.atomic():
            assert in_callers_transaction(alias)
    assert not in_callers_transaction(alias)
    assert connection.savepoint_ids == []  # the probe left nothing behind


@pytest.mark.django_db(transaction=True)
def test_outside_any_transaction_nothing_is_the_callers():
    assert not in_callers_transaction(connection.alias)


def test_work_inside_the_callers_transaction_runs_apart_from_it_except_on_sqlite():
    caller = threading.get_ident()
    with transaction.atomic():
        ran_on = run_isolated(threading.get_ident, connection.alias)
    if connection.vendor == "sqlite":
        assert ran_on == caller  # one writer: the work joins the caller's transaction
    else:
        assert ran_on != caller


def test_work_asked_for_on_an_event_loop_runs_on_a_worker_thread():
    async def main():
        return threading.get_ident(), run_isolated(threading.get_ident, connection.alias)

    loop_thread, ran_on = asyncio.run(main())
    assert ran_on != loop_thread


def test_work_sent_off_a_loop_by_a_caller_holding_the_writer_lock_does_not_wait_for_it():
    """A batch poll holds the single writer lock and settles its spend on commit; from a thread
    that runs an event loop (sync Playwright, ASGI) that work goes to a worker thread, which must
    not wait for the lock its caller holds (it deadlocked on SQLite)."""

    results = []

    def write():
        with single_writer(connection.alias):  # as the budget counters' write does
            return "done"

    async def main():
        with single_writer(connection.alias):
            results.append(run_isolated(write, connection.alias))

    caller = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    caller.start()
    caller.join(timeout=10)
    assert not caller.is_alive(), "the work waited for the lock its caller holds"
    assert results == ["done"]
