import llm_agents.models.indexes
from django.db import migrations, models


class Migration(migrations.Migration):
    # Cache writes (Anthropic's cache_creation_input_tokens) get their own token columns and price.
    # The covering index becomes a CoveringIndex: the same index in the database (INCLUDE on
    # PostgreSQL, key-only on SQLite, as before), declared so that SQLite stops warning models.W040.

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
