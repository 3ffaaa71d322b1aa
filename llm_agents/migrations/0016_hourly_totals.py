from decimal import Decimal

from django.db import migrations, models


def fill_totals(apps, schema_editor):
    # The hourly totals start as sums of the hourly rollups kept since 0011.
    from llm_agents.db import rollups

    schema_editor.create_model(apps.get_model("llm_agents", "HourlyTotals"))  # unmanaged: created here
    rollups.fill_totals(schema_editor.connection, rollups.HOURLY_TOTALS, rollups.HOURLY)


def drop_totals(apps, schema_editor):
    from llm_agents.db import rollups

    schema_editor.delete_model(apps.get_model("llm_agents", "HourlyTotals"))
    rollups.install_triggers(schema_editor.connection)  # without them


def count():
    return models.BigIntegerField(default=0)


def money():
    return models.DecimalField(decimal_places=8, default=Decimal("0"), max_digits=20)


class Migration(migrations.Migration):
    # Hourly totals per agent, model used, status and error category, kept by the rollup triggers:
    # the hours at the edges of the default questions' periods (SPEC section 20).

    dependencies = [
        ("llm_agents", "0015_daily_totals"),
    ]

    operations = [
        migrations.CreateModel(
            name="HourlyTotals",
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
                "verbose_name_plural": "hourly totals",
                "db_table": "llm_agents_totals_hourly",
                "managed": False,
                "constraints": [
                    models.UniqueConstraint(
                        fields=("start", "agent_type", "model_used", "status", "error_category"),
                        name="llm_totals_hourly_key",
                    )
                ],
            },
        ),
        migrations.RunPython(fill_totals, drop_totals),
    ]
