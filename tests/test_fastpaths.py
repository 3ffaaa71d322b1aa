"""Each PostgreSQL fast path of ``llm_agents.db.fastpaths`` against its portable twin: the twin is
checked on every database; on PostgreSQL the fast path runs on the same rows and must give the same
result (on SQLite that half does not run: the fast path's SQL is PostgreSQL's)."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from llm_agents.db import fastpaths
from llm_agents.models import BatchRequest, Execution, Span
from llm_agents.models.querysets import SEARCH_COLUMNS, SEARCH_DOCUMENT_CHARS
from llm_agents.tracking.rows import to_payload, with_defaults

from .factories import BatchRequestFactory, ExecutionFactory, SpanFactory

pytestmark = pytest.mark.django_db

POSTGRESQL = connection.vendor == "postgresql"


class Rollback(Exception):
    pass


def rolled_back(work):
    """``work()``'s result and the rows it left, then the database as it was before."""
    result = None
    try:
        with transaction.atomic():
            result = work()
            left = rows()
            raise Rollback
    except Rollback:
        pass
    return result, left


def rows():
    """Every execution and span, by id, without the creation time (the moment of the write)."""
    return {
        "executions": sorted(
            (
                {k: v for k, v in row.items() if k != "created_at"}
                for row in Execution.objects.values(*[f.attname for f in Execution._meta.concrete_fields])
            ),
            key=lambda row: str(row["id"]),
        ),
        "spans": sorted(
            (
                {k: v for k, v in row.items() if k != "created_at"}
                for row in Span.objects.values(*[f.attname for f in Span._meta.concrete_fields])
            ),
            key=lambda row: str(row["id"]),
        ),
    }


def field_values(obj):
    """A row as tracking writes it: every field but the creation time (which the write sets)."""
    return {
        f.attname: getattr(obj, f.attname)
        for f in type(obj)._meta.concrete_fields
        if f.attname != "created_at"
    }


# -- tracking writes ------------------------------------------------------------------------------


def test_upserting_a_document_writes_the_rows_the_bulk_statements_write():
    root = ExecutionFactory.build(metadata={"ticket": 7}, tenant_id="acme")
    child = ExecutionFactory.build(parent=root, root_id=root.pk, status=Execution.Status.RUNNING, response="")
    spans = [SpanFactory.build(execution=root), SpanFactory.build(execution=child, output=None)]
    executions = [root, child]
    finished = {**field_values(child), "status": "success", "response": "done", "total_cost": Decimal("0.5")}
    update = ["response", "status", "total_cost"]

    def portable():
        fastpaths.upsert_objects(connection, Execution, Span, executions, spans, insert_only=True)
        fastpaths.upsert_objects(connection, Execution, Span, [Execution(**finished)], [], insert_only=False,
                                 update_fields=update)  # fmt: skip

    def document(execution_rows, span_rows):
        return json.dumps(
            {
                "executions": with_defaults(Execution, to_payload(execution_rows)),
                "spans": with_defaults(Span, to_payload(span_rows)),
            }
        )

    def fast():
        first = document([field_values(e) for e in executions], [field_values(s) for s in spans])
        second = document([finished], [])
        return (
            fastpaths.upsert_document(connection, Execution, Span, first, ()),
            fastpaths.upsert_document(connection, Execution, Span, second, update, large=True),
        )

    _, twin = rolled_back(portable)
    assert [row["status"] for row in twin["executions"] if row["id"] == child.pk] == ["success"]
    assert len(twin["executions"]) == 2 and len(twin["spans"]) == 2
    if POSTGRESQL:
        counts, fast_rows = rolled_back(fast)
        assert counts == (2, 1)
        assert fast_rows == twin


# -- retention ------------------------------------------------------------------------------------


def family():
    root = ExecutionFactory()
    children = [ExecutionFactory(parent=root) for _ in range(3)]
    ExecutionFactory(parent=children[0])
    for execution in (root, *children):
        SpanFactory(execution=execution)
    BatchRequestFactory(execution=root)
    return root, children


def test_child_ids_by_array_are_those_the_orm_finds():
    roots, children = zip(*(family() for _ in range(3)), strict=True)
    ExecutionFactory()  # no parent, no children
    ids = [root.pk for root in roots]

    twin = sorted(fastpaths.child_ids_portable(connection, Execution, ids))

    assert twin == sorted(child.pk for group in children for child in group)
    if POSTGRESQL:
        assert sorted(fastpaths.child_ids_postgresql(connection, Execution, ids)) == twin


def test_deleting_by_array_deletes_what_the_orm_deletes():
    (root, children), (kept, _) = family(), family()
    ids = [root.pk, *(child.pk for child in children)]

    def purge(delete):
        def work():
            counts = delete(connection, Execution, Span, BatchRequest, ids)
            unlinked = BatchRequest.objects.filter(execution__isnull=True).count()
            return counts, unlinked

        return rolled_back(work)

    twin = purge(fastpaths.delete_executions_portable)
    (counts, unlinked), left = twin
    assert counts == (4, 4) and unlinked == 1
    assert {row["id"] for row in left["executions"]} >= {kept.pk}
    assert not {row["id"] for row in left["executions"]} & set(ids)
    if POSTGRESQL:
        assert purge(fastpaths.delete_executions_postgresql) == twin


# -- analytics ------------------------------------------------------------------------------------


@pytest.fixture
def durations():
    for agent, values in (("A", [100, 200, 300, 400, 1000]), ("B", [50, 70]), ("C", [10])):
        for value in values:
            ExecutionFactory(agent_type=agent, duration_ms=value)
    return Execution.objects.filter(duration_ms__isnull=False).order_by()


def test_percentile_cont_gives_the_percentiles_read_by_offset(durations):
    percents = (0, 25, 50, 95, 99, 100)

    twin = fastpaths.percentiles_portable(durations, "duration_ms", percents)

    assert twin[0] == 10 and twin[2] == 150 and twin[-1] == 1000
    assert fastpaths.percentiles_portable(durations.none(), "duration_ms", percents) == [None] * len(percents)
    if POSTGRESQL:
        assert fastpaths.percentiles_postgresql(durations, "duration_ms", percents) == twin
        assert fastpaths.percentiles_postgresql(durations.none(), "duration_ms", percents) == [None] * 6


@pytest.mark.parametrize("percent", [50, 95])
def test_grouped_percentile_cont_gives_the_ranked_twins_figures(durations, percent):
    twin = fastpaths.grouped_percentile_portable(durations, "agent_type", "duration_ms", percent)

    assert twin["C"] == 10 and twin["B"] == pytest.approx(50 + 20 * percent / 100)
    if POSTGRESQL:
        rows = durations.values("agent_type").annotate(
            p=fastpaths.PercentileCont("duration_ms", percent / 100)
        )
        assert {row["agent_type"]: pytest.approx(row["p"]) for row in rows} == twin


@pytest.mark.parametrize("agent", ["A", "B", "C", "none"])
def test_the_median_walked_to_is_percentile_cont(durations, agent):
    rows = durations.filter(agent_type=agent)
    walked = fastpaths.median_by_walk(rows, "duration_ms", rows.count())

    # Odd count: the middle value; even: the average of the two middle ones; none: None.
    assert walked == {"A": 300.0, "B": 60.0, "C": 10.0, "none": None}[agent]
    ranked = fastpaths.grouped_percentile_portable(rows, "agent_type", "duration_ms", 50).get(agent)
    assert walked == (None if ranked is None else pytest.approx(ranked))
    if POSTGRESQL:
        exact = rows.aggregate(p=fastpaths.PercentileCont("duration_ms", 0.5))["p"]
        assert walked == (None if exact is None else pytest.approx(exact))


def test_the_p95_column_over_used_rows_gives_the_ranked_twins_figures():
    values = [("a", 100, 1), ("a", 300, 1), ("a", 200, 1), ("a", 9999, 0), ("b", 40, 1), ("c", None, 1)]
    sql = "WITH used (model_id, duration_ms, counted) AS (VALUES {}) ".format(
        ", ".join(["(%s, CAST(%s AS INTEGER), %s)"] * len(values))
    )
    params = [value for row in values for value in row]

    twin = fastpaths.used_p95_portable(connection, sql, params)

    assert twin == {"a": pytest.approx(290), "b": 40}
    if POSTGRESQL:
        with connection.cursor() as cursor:
            cursor.execute(sql + f"SELECT model_id, {fastpaths.USED_P95_POSTGRESQL} FROM used GROUP BY model_id",
                           params)  # fmt: skip
            fast = {model_id: p95 for model_id, p95 in cursor.fetchall() if p95 is not None}
        assert fast == {key: pytest.approx(value) for key, value in twin.items()}


@pytest.mark.parametrize("text", ["refund", "Refund ORDER", "acme", "invoice", "BillingAgent refund"])
def test_full_text_search_finds_for_whole_words_what_substrings_find(text):
    ExecutionFactory(agent_type="BillingAgent", user_prompt="I want a refund for my order")
    ExecutionFactory(user_prompt="Where is my order?", tenant_id="acme")
    ExecutionFactory(failed=True, error_message="invoice service unreachable")
    ExecutionFactory(response="A REFUND was issued.")

    def found(condition):
        return sorted(Execution.objects.filter(condition).values_list("pk", flat=True))

    twin = found(fastpaths.search_condition_portable(text, SEARCH_COLUMNS))

    assert twin
    if POSTGRESQL:
        fast = fastpaths.search_condition_postgresql(
            text, SEARCH_COLUMNS, document_chars=SEARCH_DOCUMENT_CHARS
        )
        assert found(fast) == twin


def test_a_loose_index_scan_finds_the_distinct_values(durations):
    ExecutionFactory(tenant_id="acme")
    ExecutionFactory(tenant_id="beta")
    ExecutionFactory(tenant_id="acme")

    twin = fastpaths.distinct_values_portable(Execution.objects.all(), "tenant_id")

    assert twin == ["acme", "beta", None]
    assert fastpaths.distinct_values_portable(Execution.objects.all(), "agent_type") == [
        "A",
        "B",
        "C",
        "SupportAgent",
    ]
    if POSTGRESQL:
        assert fastpaths.distinct_values_postgresql(Execution.objects.all(), "tenant_id") == twin
        assert fastpaths.distinct_values_postgresql(Execution.objects.all(), "agent_type") == [
            "A",
            "B",
            "C",
            "SupportAgent",
        ]


@pytest.mark.skipif(not POSTGRESQL, reason="the twin is QuerySet.count(), which every other test runs")
def test_the_row_estimate_is_the_count_once_the_table_is_analyzed(durations):
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(Execution._meta.db_table)}")

    assert fastpaths.row_estimate_postgresql(Execution.objects.all()) == Execution.objects.count() == 8


@pytest.mark.parametrize("kind", ["year", "month", "day"])
def test_probing_each_period_finds_the_periods_distinct_dates_find(kind):
    zone = zoneinfo.ZoneInfo("America/New_York")
    for moment in ("2025-12-31T23:30:00-05:00", "2026-01-01T01:00:00-05:00", "2026-03-15T12:00:00-04:00",
                   "2026-03-15T13:00:00-04:00", "2026-03-17T04:30:00+00:00"):  # fmt: skip
        ExecutionFactory(started_at=dt.datetime.fromisoformat(moment))
    ExecutionFactory(started_at=timezone.now() - dt.timedelta(days=3650), tenant_id="elsewhere")
    queryset = Execution.objects.filter(tenant_id__isnull=True)

    twin = fastpaths.datetimes_portable(queryset, "started_at", kind, zone)

    assert len(twin) == {"year": 2, "month": 3, "day": 4}[kind]
    assert all(value.utcoffset() == value.astimezone(zone).utcoffset() for value in twin)
    if POSTGRESQL:
        assert fastpaths.datetimes_postgresql(queryset, "started_at", kind, zone) == twin
        assert fastpaths.datetimes_postgresql(queryset.none(), "started_at", kind, zone) == []
