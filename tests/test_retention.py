"""purge_executions: what goes, what stays, chunking, dry run, bad input, and spans' integrity
without database foreign keys (migration 0007)."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from llm_agents import retention
from llm_agents.models import BatchRequest, Execution, Span
from llm_agents.tasks import purge_executions
from tests.factories import BatchRequestFactory, ExecutionFactory, SpanFactory

pytestmark = pytest.mark.django_db


def family(days_ago: float, *, children: int = 1, spans: int = 2) -> Execution:
    started = timezone.now() - dt.timedelta(days=days_ago)
    root = ExecutionFactory(started_at=started)
    for _ in range(spans):
        SpanFactory(execution=root, started_at=started)
    for _ in range(children):
        child = ExecutionFactory(parent=root, started_at=started + dt.timedelta(seconds=1))
        grandchild = ExecutionFactory(parent=child, started_at=started + dt.timedelta(seconds=2))
        SpanFactory(execution=grandchild, started_at=started)
    return root


def span_tree(execution: Execution, started: dt.datetime) -> None:
    """An agent span with an llm span under it and a tool span under that."""
    agent = SpanFactory(execution=execution, started_at=started, kind=Span.Kind.AGENT)
    llm = SpanFactory(execution=execution, parent=agent, started_at=started)
    SpanFactory(execution=execution, parent=llm, started_at=started, kind=Span.Kind.TOOL)


def orphan_spans() -> list:
    """Spans whose execution, or whose parent span, is gone."""
    without_execution = Span.objects.exclude(execution_id__in=Execution.objects.values("pk"))
    without_parent = Span.objects.filter(parent__isnull=False).exclude(
        parent_id__in=Span.objects.values("pk")
    )
    return [*without_execution.values_list("pk", flat=True), *without_parent.values_list("pk", flat=True)]


def run(*args: str) -> str:
    out = StringIO()
    call_command("purge_executions", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_old_families_and_keeps_recent_ones():
    old = [family(40) for _ in range(3)]
    recent = family(5)
    request = BatchRequestFactory(execution=old[0])
    output = run("--batch-size", "2")
    # each old family: root + child + grandchild = 3 executions; 2 root spans + 1 grandchild span = 3 spans
    assert "Deleted 9 executions and 9 spans." in output
    assert set(Execution.objects.values_list("pk", flat=True)) == {
        recent.pk, *Execution.objects.filter(parent=recent).values_list("pk", flat=True),
        *Execution.objects.filter(parent__parent=recent).values_list("pk", flat=True),
    }  # fmt: skip
    assert Execution.objects.count() == 3
    assert Span.objects.count() == 3
    request.refresh_from_db()
    assert request.execution is None and BatchRequest.objects.count() == 1


def test_dry_run_counts_and_deletes_nothing():
    family(40)
    family(1)
    output = run("--dry-run", "--days", "30")
    assert "Would delete 3 executions and 3 spans." in output
    assert Execution.objects.count() == 6


def test_days_overrides_retention_days():
    family(10)
    assert "Deleted 0 executions" in run()  # default RETENTION_DAYS is 30
    assert "Deleted 3 executions" in run("--days", "7")


@override_settings(LLM_AGENTS={"RETENTION_DAYS": None})
def test_retention_none_keeps_everything_unless_days_given():
    family(400)
    assert "nothing to purge" in run()
    assert Execution.objects.count() == 3
    assert purge_executions.apply(kwargs={"days": 365}).get() == 3
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"), [(("--days", "-1"), "--days"), (("--batch-size", "0"), "--batch-size")]
)
def test_bad_input_is_a_command_error_naming_the_option(args, message):
    family(40)
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert Execution.objects.count() == 3


def test_purge_leaves_no_orphan_spans_of_span_trees_and_nested_executions():
    old, recent = family(40, children=2), family(3)
    for execution in [old, recent, *Execution.objects.filter(parent__in=[old, recent])]:
        span_tree(execution, execution.started_at)
    grandchild = Execution.objects.filter(parent__parent=old).first()
    span_tree(grandchild, grandchild.started_at)
    result = retention.purge(30)
    # old: root + 2 children + 2 grandchildren; spans: 2 + 3 (tree) on the root, 3 on each child,
    # 1 on each grandchild and one more tree on one grandchild
    assert (result.executions, result.spans) == (5, 2 + 3 + 2 * 3 + 2 + 3)
    assert not Execution.objects.filter(pk=old.pk).exists()
    assert Execution.objects.count() == 3 and Span.objects.count() == 2 + 3 + 3 + 1
    assert orphan_spans() == []


def test_purge_goes_in_chunks_of_root_executions_oldest_first():
    families = [family(44 - n, children=0, spans=1) for n in range(5)]  # the oldest first
    recent = family(1)
    left_after_each_chunk: list[tuple[int, int, list]] = []

    def progress(result: retention.PurgeResult) -> None:
        left = Execution.objects.filter(pk__in=[f.pk for f in families]).values_list("pk", flat=True)
        left_after_each_chunk.append((result.chunks, result.executions, sorted(left)))

    result = retention.purge(30, batch_size=2, progress=progress)
    assert (result.executions, result.spans, result.chunks) == (5, 5, 3)
    assert left_after_each_chunk == [
        (1, 2, sorted(f.pk for f in families[2:])),
        (2, 4, [families[4].pk]),
        (3, 5, []),
    ]
    assert Execution.objects.filter(parent__isnull=True).get() == recent and orphan_spans() == []


def test_purge_of_a_chunk_larger_than_one_statements_parameters():
    started = timezone.now() - dt.timedelta(days=40)
    ExecutionFactory.create_batch(1200, started_at=started)
    kept = ExecutionFactory(started_at=started, parent=ExecutionFactory(started_at=timezone.now()))
    result = retention.purge(30, batch_size=5000)
    assert (result.executions, result.chunks) == (1200, 1)
    assert list(Execution.objects.values_list("pk", flat=True).order_by("pk")) == sorted(
        [kept.pk, kept.parent_id]
    )


def test_deleting_an_execution_through_the_orm_deletes_its_spans_and_nested_executions():
    root = family(1)
    for execution in [root, *Execution.objects.filter(parent=root)]:
        span_tree(execution, execution.started_at)
    other = family(1)
    root.delete()
    assert set(Execution.objects.values_list("pk", flat=True)) == {
        other.pk, *Execution.objects.filter(parent=other).values_list("pk", flat=True),
        *Execution.objects.filter(parent__parent=other).values_list("pk", flat=True),
    }  # fmt: skip
    assert Span.objects.count() == 3 and orphan_spans() == []


def test_deleting_a_span_through_the_orm_deletes_the_spans_under_it():
    execution = ExecutionFactory()
    span_tree(execution, execution.started_at)
    Span.objects.get(execution=execution, kind=Span.Kind.AGENT).delete()
    assert not Span.objects.filter(execution=execution).exists()


def span_foreign_keys() -> list[str]:
    """The columns of the span table that carry a database foreign key."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Span._meta.db_table)
    return sorted(column for c in constraints.values() if c["foreign_key"] for column in c["columns"])


@pytest.mark.django_db(transaction=True)
def test_migration_0007_drops_the_span_foreign_keys_and_keeps_the_indexes():
    try:
        call_command("migrate", "llm_agents", "0006", verbosity=0)
        assert span_foreign_keys() == ["execution_id", "parent_id"]
        call_command("migrate", "llm_agents", "0007", verbosity=0)
    finally:
        call_command("migrate", "llm_agents", verbosity=0)
    assert span_foreign_keys() == []
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Span._meta.db_table)
    assert constraints["llm_span_execution_started_idx"]["columns"] == ["execution_id", "started_at"]
    assert constraints["llm_span_parent_idx"]["columns"] == ["parent_id"]
