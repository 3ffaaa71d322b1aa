from django.db import migrations


def _days_with_running_rows(connection):
    from llm_agents.db import rollups

    day = rollups.Dialect(connection.vendor).truncate("started_at", "day")
    with connection.cursor() as cursor:
        # No parameters: SQLite's day expression holds % (strftime), which DEBUG's query log would
        # take for a placeholder.
        cursor.execute(
            f"SELECT DISTINCT {day} FROM {rollups.EXECUTIONS} WHERE parent_id IS NULL AND status = '{rollups.RUNNING}'"
        )
        return sorted({rollups.parse_day(row[0]) for row in cursor.fetchall()})


def _switch(schema_editor, settled_only):
    # The triggers change, then the days holding running executions (few: calls in flight, and
    # any a crash left running) are rebuilt under the new rule; nothing else changes.
    from llm_agents.db import rollups

    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {rollups.EXECUTIONS} IN SHARE ROW EXCLUSIVE MODE")
    rollups.install_triggers(connection, settled_only=settled_only)
    for day in _days_with_running_rows(connection):
        rollups.rebuild_day(connection, day, settled_only=settled_only)


def leave_running_out(apps, schema_editor):
    _switch(schema_editor, settled_only=True)


def keep_running_in(apps, schema_editor):
    _switch(schema_editor, settled_only=False)


class Migration(migrations.Migration):
    # The rollups keep finished executions only; readers add the running ones from the rows
    # (SPEC section 20, docs/performance.md): an agent call's first write no longer touches them.

    dependencies = [
        ("llm_agents", "0013_nested_executions_index"),
    ]

    operations = [
        migrations.RunPython(leave_running_out, keep_running_in),
    ]
