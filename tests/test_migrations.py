"""The migrations match the models, and the data migrations fill in what they add."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from llm_agents.models import Execution


@pytest.mark.django_db
def test_models_have_no_pending_migrations():
    out = StringIO()
    try:
        call_command("makemigrations", "llm_agents", "--check", "--dry-run", stdout=out, stderr=StringIO())
    except SystemExit:  # --check exits with status 1 when a migration is missing
        pytest.fail(f"Missing migrations:\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migration_0008_fills_in_the_root_of_every_existing_execution():
    """Executions recorded before 0008 learn their outermost execution, however deep they nest."""
    try:
        call_command("migrate", "llm_agents", "0007", verbosity=0)
        state = MigrationExecutor(connection).loader.project_state(
            ("llm_agents", "0007_span_foreign_keys_without_constraint")
        )
        OldExecution = state.apps.get_model("llm_agents", "Execution")

        def insert(parent: uuid.UUID | None) -> uuid.UUID:
            row = OldExecution.objects.create(agent_type="a", parent_id=parent, started_at=timezone.now())
            return row.pk

        root = insert(None)
        child = insert(root)
        grandchild = insert(child)
        other = insert(None)
        call_command("migrate", "llm_agents", "0008", verbosity=0)
    finally:
        call_command("migrate", "llm_agents", verbosity=0)

    roots = dict(Execution.objects.values_list("id", "root_id"))
    assert roots == {root: root, child: root, grandchild: root, other: other}
