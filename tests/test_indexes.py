"""The indexes the hot queries need, proved with EXPLAIN on PostgreSQL.

The tables here are tiny, so the planner would rightly read them whole; ``enable_seqscan`` off makes
it pick an index whenever one applies, which is what these tests prove: that the index serves the
query, not how fast it is (``bench/`` measures that).
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llm_agents.alerts.evaluation import measure
from llm_agents.models import AlertRule, Execution, PromptExperiment, Span
from llm_agents.periods import resolve_period

from .factories import ExecutionFactory, PromptFactory, SpanFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="EXPLAIN plans are PostgreSQL's")


def plan(sql: str, params: list | tuple = ()) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan TO off")
        try:
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")


@pytest.mark.django_db
def test_deleting_a_span_finds_its_children_through_the_parent_index():
    execution = ExecutionFactory()
    parent = SpanFactory(execution=execution)
    SpanFactory(execution=execution, parent=parent)
    # The look-up the ORM's cascade runs when a span is deleted.
    children = Span.objects.filter(parent__in=[parent]).values("pk")
    text = plan(*children.query.sql_with_params())
    assert "llm_span_parent_idx" in text, text


@pytest.mark.django_db
def test_purge_finds_an_executions_spans_and_children_by_index():
    execution = ExecutionFactory()
    SpanFactory(execution=execution)
    ExecutionFactory(parent=execution)
    # The statements purge runs on PostgreSQL, a chunk's ids as one array.
    ids = f"{{{execution.pk}}}"
    spans = f"DELETE FROM {Span._meta.db_table} WHERE execution_id = ANY(%s::uuid[])"
    assert "llm_span_execution_started_idx" in plan(spans, [ids])
    executions = f"DELETE FROM {Execution._meta.db_table} WHERE id = ANY(%s::uuid[])"
    assert f"{Execution._meta.db_table}_pkey" in plan(executions, [ids])
    children = f"SELECT id FROM {Execution._meta.db_table} WHERE parent_id = ANY(%s::uuid[])"
    assert "llm_agents_execution_parent_id" in plan(children, [ids])


@pytest.mark.django_db(transaction=True)
def test_the_overview_and_cost_by_model_read_the_covering_index_alone():
    # A history longer than the period, as in production: 1,000 executions over 100 days, 70 of them
    # in the last 7 (with a handful of rows, an index on model_id plus the table's one page could cost
    # the planner about the same as the covering index), written in no order of their start, as
    # executions finish (a table sorted by start makes the narrow index plus the heap cost the
    # planner a little less than the covering index, at this size).
    now = timezone.now()
    starts = [now - dt.timedelta(days=n / 10) for n in range(1000)]
    random.Random(7).shuffle(starts)
    Execution.objects.bulk_create(ExecutionFactory.build(started_at=started_at) for started_at in starts)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")  # marks the pages all-visible
    with override_settings(LLM_AGENTS={"ROLLUPS": False}), CaptureQueriesContext(connection) as captured:
        Execution.objects.for_period("7d").summary()
        Execution.objects.for_period("7d").percentiles()
    assert len(captured) == 2
    for query in captured:
        text = plan(query["sql"])
        assert "Index Only Scan using llm_exec_root_cover_idx" in text, text
    # From the rollups: the daily and hourly totals by their keys' index (start first), and the
    # partial hour at the period's start from the covering index alone. A period starting in the
    # day's last hour has no whole hour before its first whole day: no hourly totals to read then.
    whole_hours = timezone.localtime(resolve_period("7d").start).hour < 23
    with CaptureQueriesContext(connection) as captured:
        Execution.objects.for_period("7d").summary()
    (query,) = captured
    text = plan(query["sql"])
    assert "llm_totals_daily_key" in text, text
    assert ("llm_totals_hourly_key" in text) == whole_hours, text
    assert "Index Only Scan using llm_exec_root_cover_idx" in text, text
    assert "Seq Scan" not in text, text


@pytest.mark.django_db(transaction=True)
def test_spend_by_model_reads_the_period_by_index():
    # cost_by_model attributes spend to the llm spans' models (section 15) through each root's
    # model_spend, recorded with it: from the rows, the period's roots come from a started_at index
    # and no span is read; no table is read whole.
    now = timezone.now()
    executions = Execution.objects.bulk_create(
        ExecutionFactory.build(started_at=now - dt.timedelta(days=n / 10)) for n in range(1000)
    )
    Span.objects.bulk_create(
        SpanFactory.build(execution=execution, kind="llm", started_at=execution.started_at)
        for execution in executions
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Span._meta.db_table}")
    with override_settings(LLM_AGENTS={"ROLLUPS": False}), CaptureQueriesContext(connection) as captured:
        Execution.objects.cost_by_model("7d")
    (query,) = captured
    text = plan(query["sql"])
    assert "llm_exec_started_idx" in text or "llm_exec_root_cover_idx" in text, text
    assert Span._meta.db_table not in text, text
    assert "Seq Scan" not in text, text


@pytest.mark.django_db(transaction=True)
def test_an_experiments_results_and_guardrails_read_its_index_alone():
    # 1,000 executions, 200 of them an experiment's: its figures per variant (results(), the
    # guardrail check) come from llm_exec_experiment_idx alone, without reading the table.
    prompt = PromptFactory()
    for text in ("two", "three"):
        prompt.update_content([{"role": "user", "content": text}])
    experiment = PromptExperiment.objects.create(
        prompt=prompt, name="plan", metric="cost", guardrails={"error_rate_max": 50},
        variants=[{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    )  # fmt: skip
    versions = list(prompt.versions.order_by("number"))
    Execution.objects.bulk_create(
        ExecutionFactory.build(
            experiment=experiment if n % 5 == 0 else None,
            prompt_version=versions[n % 2] if n % 5 == 0 else None,
            status="error" if n % 7 == 0 else "success",
        )
        for n in range(1000)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")
    experiment.start()
    with CaptureQueriesContext(connection) as captured:
        experiment.check_guardrails()
        experiment.results()
    reads = [query["sql"] for query in captured if "llm_agents_execution" in query["sql"]]
    assert len(reads) >= 3, reads
    for sql in reads:
        text = plan(sql)
        assert "Index Only Scan using llm_exec_experiment_idx" in text, (sql, text)
        assert "Seq Scan on llm_agents_execution" not in text, text


@pytest.mark.django_db(transaction=True)
def test_alert_rules_read_the_rows_around_window_boundaries_from_the_covering_index_alone():
    # 2,000 executions over 5 days: an anomaly rule on a tenant's cost over 60-minute windows reads
    # 25 hours, the rows within 30 minutes of each of its 26 boundaries a range of the covering
    # index each (it carries the tenant and the model that answered), never the table's pages.
    now = timezone.now()
    starts = [now - dt.timedelta(minutes=3.6 * n + 1) for n in range(2000)]
    random.Random(7).shuffle(starts)
    Execution.objects.bulk_create(
        ExecutionFactory.build(started_at=started_at, tenant_id="acme" if n % 3 else "")
        for n, started_at in enumerate(starts)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")
    rule = AlertRule.objects.create(
        name="acme cost", metric="cost", tenant_id="acme", window_minutes=60, anomaly=True
    )
    moment = now.replace(minute=20, second=0, microsecond=0)  # 20 minutes of rows at each boundary
    with CaptureQueriesContext(connection) as captured:
        measure([rule], 60, moment, connection.alias)
    (read,) = [query["sql"] for query in captured if "llm_agents_execution" in query["sql"]]
    text = plan(read)
    assert text.count("Index Only Scan using llm_exec_root_cover_idx") == 26, text
    assert "Heap Scan on llm_agents_execution" not in text, text
