"""purge_executions: what goes, what stays, chunking, dry run, bad input."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

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
