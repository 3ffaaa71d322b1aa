from decimal import Decimal

from django.db import migrations, models


def fill_totals(apps, schema_editor):
    # The daily totals start as sums of the daily rollups kept since 0011.
    from llm_agents.db import rollups

    schema_editor.create_model(apps.get_model("llm_agents", "DailyTotals"))  # unmanaged: created here
    rollups.fill_totals(schema_editor.connection, rollups.DAILY_TOTALS, rollups.DAILY)


def drop_totals(apps, schema_editor):
    from llm_agents.db import rollups

    schema_editor.delete_model(apps.get_model("llm_agents", "DailyTotals"))
    rollups.install_triggers(schema_editor.connection)  # without them


def count():
    return models.BigIntegerField(default=0)


def money():
    return models.DecimalField(decimal_places=8, default=Decimal("0"), max_digits=20)


class Migration(migrations.Migration):
    # Daily totals per agent, model used, status and error category, kept by the rollup triggers:
    # the dashboard's and the API's default questions read them (SPEC section 20).

    dependencies = [
        ("llm_agents", "0014_settled_rollups"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyTotals",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("start", models.DateTimeField(help_text="The hour or day (UTC) the executions started in.")),
                *((name, count()) for name in (
                    "executions", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
                    "reasoning_tokens", "total_tokens", "cache_hits", "duration_sum", "duration_count",
                    "model_executions", "model_tokens", "model_duration_sum", "model_duration_count",
                )),
                *((name, money()) for name in ("input_cost", "output_cost", "total_cost", "model_cost")),
                ("agent_type", models.CharField(max_length=255)),
                ("model_used", models.CharField(help_text="A model that answered (see the module).", max_length=255)),
                ("status", models.CharField(max_length=10)),
                ("error_category", models.CharField(help_text="Blank unless the status is a failure.", max_length=20)),
            ],
            options={
                "verbose_name_plural": "daily totals",
                "db_table": "llm_agents_totals_daily",
                "managed": False,
                "constraints": [
                    models.UniqueConstraint(
                        fields=("start", "agent_type", "model_used", "status", "error_category"),
                        name="llm_totals_daily_key",
                    )
                ],
            },
        ),
        migrations.RunPython(fill_totals, drop_totals),
    ]
