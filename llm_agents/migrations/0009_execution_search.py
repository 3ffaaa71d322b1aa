from django.db import migrations

# The document must stay exactly what llm_agents.db.fastpaths.SearchMatch writes, or PostgreSQL will not
# use the index for search().
SEARCH_INDEX = (
    "CREATE INDEX CONCURRENTLY llm_exec_search_idx ON llm_agents_execution USING gin "
    "((to_tsvector('simple'::regconfig, left(agent_type || ' ' || model_id || ' ' || error_class || ' ' "
    "|| error_message || ' ' || COALESCE(tenant_id, '') || ' ' || system_prompt || ' ' || user_prompt "
    "|| ' ' || response, 100000))))"
)


def create_search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # An interrupted concurrent build leaves an invalid index behind: drop it and build anew.
        schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS llm_exec_search_idx")
        schema_editor.execute(SEARCH_INDEX)


def drop_search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS llm_exec_search_idx")


class Migration(migrations.Migration):
    # Full-text search over executions (search() on PostgreSQL): a GIN index of their text columns,
    # prompts and response. PostgreSQL only; other databases search with icontains and get no index.
    # Built CONCURRENTLY, so a large table stays writable while it builds (which is why this
    # migration is not atomic); running it again after an interrupted build replaces the invalid
    # index that build left.
    # Not in the model's Meta: Django's schema editor cannot express an index that exists only on
    # PostgreSQL.

    atomic = False

    dependencies = [
        ("llm_agents", "0008_cache_writes"),
    ]

    operations = [
        migrations.RunPython(create_search_index, drop_search_index, elidable=False),
    ]
