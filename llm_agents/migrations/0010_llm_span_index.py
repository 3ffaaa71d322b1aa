import llm_agents.models.indexes
from django.db import migrations, models


class Migration(migrations.Migration):
    # Spend by model (section 15) reads the llm spans of a period: this partial index covers what it
    # reads (INCLUDE on PostgreSQL; key-only on SQLite, see CoveringIndex).

    dependencies = [
        ('llm_agents', '0009_execution_search'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='span',
            index=llm_agents.models.indexes.CoveringIndex(condition=models.Q(('kind', 'llm')), covering=('execution', 'model_id', 'total_cost', 'input_tokens', 'output_tokens'), fields=['started_at'], name='llm_span_llm_started_idx'),
        ),
    ]
