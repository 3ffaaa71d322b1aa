import llm_agents.models.indexes
from django.db import migrations, models


def fill_root_ids(apps, schema_editor):
    """Roots point at themselves, then each level of nesting takes its parent's root."""
    Execution = apps.get_model("llm_agents", "Execution")
    rows = Execution.objects.using(schema_editor.connection.alias)
    rows.filter(parent__isnull=True).update(root_id=models.F("id"))
    while True:
        parent_root = Execution.objects.filter(pk=models.OuterRef("parent_id")).values("root_id")[:1]
        updated = rows.filter(root_id__isnull=True, parent__root_id__isnull=False).update(
            root_id=models.Subquery(parent_root)
        )
        if not updated:
            break


class Migration(migrations.Migration):
    # Cache writes (Anthropic's cache_creation_input_tokens) get their own token columns and price.
    # The covering index becomes a CoveringIndex: the same index in the database (INCLUDE on
    # PostgreSQL, key-only on SQLite, as before), declared so that SQLite stops warning models.W040.
    # Execution.root_id names the outermost execution, so spend is attributed to the model of each
    # llm span with the root it belongs to in one join; existing rows are filled in, level by level.

    dependencies = [
        ('llm_agents', '0007_span_foreign_keys_without_constraint'),
    ]

    operations = [
        migrations.AddField(
            model_name='costconfig',
            name='cache_write_price_per_mtok',
            field=models.DecimalField(blank=True, decimal_places=6, help_text="Empty: genai-prices' cache-write price for the model, else the input price.", max_digits=14, null=True),
        ),
        migrations.RemoveConstraint(
            model_name='costconfig',
            name='llm_costconfig_prices_gte_0',
        ),
        migrations.AddConstraint(
            model_name='costconfig',
            constraint=models.CheckConstraint(condition=models.Q(('input_price_per_mtok__gte', 0), ('output_price_per_mtok__gte', 0), models.Q(('cached_input_price_per_mtok__isnull', True), ('cached_input_price_per_mtok__gte', 0), _connector='OR'), models.Q(('cache_write_price_per_mtok__isnull', True), ('cache_write_price_per_mtok__gte', 0), _connector='OR')), name='llm_costconfig_prices_gte_0'),
        ),
        migrations.AddField(
            model_name='execution',
            name='cache_write_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="Input tokens written to the provider's prompt cache."),
        ),
        migrations.AddField(
            model_name='span',
            name='cache_write_tokens',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='span',
            name='reasoning_tokens',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name='execution',
            name='cached_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="Input tokens read from the provider's prompt cache."),
        ),
        migrations.AlterField(
            model_name='execution',
            name='input_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text='Includes cached tokens and cache writes.'),
        ),
        migrations.AddField(
            model_name='execution',
            name='root_id',
            field=models.UUIDField(blank=True, editable=False, help_text='The outermost execution this one is nested in (its own id for a root execution).', null=True),
        ),
        migrations.RunPython(fill_root_ids, migrations.RunPython.noop, elidable=True),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name='execution', name='llm_exec_root_cover_idx'),
                migrations.AddIndex(
                    model_name='execution',
                    index=llm_agents.models.indexes.CoveringIndex(condition=models.Q(('parent__isnull', True)), covering=('status', 'total_cost', 'duration_ms', 'input_tokens', 'output_tokens', 'total_tokens', 'agent_type', 'model_id'), fields=['started_at'], name='llm_exec_root_cover_idx'),
                ),
            ],
        ),
    ]
