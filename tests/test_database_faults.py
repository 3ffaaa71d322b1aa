"""The database unreachable during agent calls: the calls answer, the records wait in the spool,
and nothing is lost once the database is back."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from llm_agents import Agent, Param
from llm_agents.models import Execution, Span
from llm_agents.tasks import record_executions
from llm_agents.tracking.transport import spool

pytestmark = pytest.mark.django_db(transaction=True)


class EchoAgent(Agent):
    model = "fake/echo"
    text = Param(required=True)

    def user_prompt(self):
        return self.text


@pytest.fixture
def spool_folder(tmp_path):
    with override_settings(LLM_AGENTS={"SPOOL_PATH": str(tmp_path / "spool")}):
        yield tmp_path / "spool"


@contextmanager
def database_unreachable():
    """Make the database refuse our writes for real: on PostgreSQL the connection points at a
    closed port; on SQLite (whose in-memory test database cannot be reconnected) the connection
    is switched to read-only, so every write fails with an OperationalError."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA query_only = ON")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA query_only = OFF")
        return
    settings = connection.settings_dict
    saved_port = settings["PORT"]
    connection.close()
    settings["PORT"] = "1"
    try:
        yield
    finally:
        connection.close()
        settings["PORT"] = saved_port


def test_calls_answer_during_an_outage_and_their_records_are_written_afterwards(spool_folder, caplog):
    EchoAgent.call(text="before")  # the process has read its prices and is connected
    with caplog.at_level(logging.WARNING, logger="llm_agents"), database_unreachable():
        results = [EchoAgent.call(text=f"during {n}") for n in range(20)]
    assert [r.content for r in results] == [f"during {n}" for n in range(20)]
    assert len(list(spool_folder.glob("*.json"))) == 20
    outage_warnings = [r for r in caplog.records if "could not write to the database" in r.getMessage()]
    assert len(outage_warnings) == 1

    assert Execution.objects.count() == 1
    out = StringIO()
    call_command("drain_spool", stdout=out)
    assert "Wrote 20 spooled executions; 0 payload(s) left." in out.getvalue()
    ids = [r.execution_id for r in results]
    assert Execution.objects.filter(pk__in=ids, status="success").count() == 20
    assert Span.objects.filter(execution_id__in=ids).count() == 20
    assert not list(spool_folder.glob("*.json"))


def test_the_next_successful_write_drains_the_spool(spool_folder):
    EchoAgent.call(text="warm up")
    with database_unreachable():
        lost_then = EchoAgent.call(text="during").execution_id
    EchoAgent.call(text="after")
    assert Execution.objects.filter(pk=lost_then).exists()
    assert Execution.objects.count() == 3


def test_drain_spool_fails_clearly_while_the_database_is_still_down(spool_folder):
    EchoAgent.call(text="warm up")
    with database_unreachable():
        EchoAgent.call(text="during")
        with pytest.raises(Exception, match="still unreachable"):
            call_command("drain_spool", stdout=StringIO())
    assert len(list(spool_folder.glob("*.json"))) == 1
    call_command("drain_spool", stdout=StringIO())
    assert Execution.objects.count() == 2


def test_a_worker_whose_database_is_down_spools_and_drains_on_its_next_run(spool_folder):
    from llm_agents.tracking.records import ExecutionRecord
    from llm_agents.tracking.rows import payload_for, to_message

    first, second = (
        ExecutionRecord(kind="agent", agent_type="Queued", status="success", model_id="fake/x")
        for _ in range(2)
    )
    with database_unreachable():
        assert record_executions.apply(args=[to_message(payload_for([first]))]).get() == 0
    assert len(spool.files()) == 1
    assert record_executions.apply(args=[to_message(payload_for([second]))]).get() == 1
    assert set(Execution.objects.values_list("pk", flat=True)) == {first.id, second.id}
