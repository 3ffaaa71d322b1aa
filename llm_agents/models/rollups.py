"""Hourly and daily aggregates of root executions, kept by the database itself (SPEC section 20).

The rows of ``Execution`` stay the single source of truth: triggers installed by migration 0011
(:mod:`llm_agents.db.rollups`) add every finished root execution written, and take away every one
updated or deleted, in the same statement's transaction, whatever writes it (the product, the ORM,
raw SQL, COPY). Running executions are left out (since migration 0014) until they finish. Analytics
read these tables for the whole hours and days of a period and the rows for the partial hours at
its edges and the running executions (:mod:`llm_agents.models.rollup_reads`).

Each root execution adds one contribution per model it used (the keys of its ``model_spend``, or
the model that answered when it has none recorded) and one for the model that answered: the
execution's own measures (``executions`` … ``duration_count``) go to the model that answered only,
so that they are counted once; the ``model_*`` measures go to every model used, so that spend by
model (section 15) is a sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..money import money
from .fields import money_field

#: The rollups' keys, in the order of their unique constraints.
ROLLUP_KEYS = (
    "start",
    "kind",
    "agent_type",
    "agent_version",
    "model_id",
    "model_used",
    "tenant_id",
    "status",
    "error_category",
    "prompt_version_id",
)
#: The rollups' measures: sums over the executions of a key.
ROLLUP_MEASURES = (
    "executions",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "input_cost",
    "output_cost",
    "total_cost",
    "cache_hits",
    "duration_sum",
    "duration_count",
    "model_executions",
    "model_tokens",
    "model_cost",
    "model_duration_sum",
    "model_duration_count",
)
#: The keys of the daily totals: the rollups' without tenant, versions, model asked for and kind.
TOTALS_KEYS = ("start", "agent_type", "model_used", "status", "error_category")
LATENCY_KEYS = ("start", "tenant_id", "model_used", "bucket")
LATENCY_MEASURES = ("executions", "model_executions")
DURATION_KEYS = ("start", "bucket")
DURATION_MEASURES = ("executions",)
MODEL_DURATION_KEYS = ("start", "model_used", "bucket")


def _count() -> models.BigIntegerField:
    return models.BigIntegerField(default=0)


class Rollup(models.Model):
    """The figures of the root executions that share a key, for one hour or one day (UTC)."""

    start = models.DateTimeField(help_text=_("The hour or day (UTC) the executions started in."))
    kind = models.CharField(max_length=10)
    agent_type = models.CharField(max_length=255)
    agent_version = models.CharField(max_length=50)
    model_id = models.CharField(max_length=255, help_text=_("The model the executions asked for."))
    model_used = models.CharField(max_length=255, help_text=_("A model that answered (see the module)."))
    tenant_id = models.CharField(max_length=255, help_text=_("Blank for executions without a tenant."))
    status = models.CharField(max_length=10)
    error_category = models.CharField(max_length=20, help_text=_("Blank unless the status is a failure."))
    prompt_version_id = models.BigIntegerField(help_text=_("0 for executions without a prompt version."))

    executions = _count()
    input_tokens = _count()
    output_tokens = _count()
    cached_tokens = _count()
    cache_write_tokens = _count()
    reasoning_tokens = _count()
    total_tokens = _count()
    input_cost = money_field()
    output_cost = money_field()
    total_cost = money_field()
    cache_hits = _count()
    duration_sum = _count()
    duration_count = _count()
    model_executions = _count()
    model_tokens = _count()
    model_cost = money_field()
    model_duration_sum = _count()
    model_duration_count = _count()

    class Meta:
        # Unmanaged: migration 0011 creates the tables, and Django's test flush (which empties the
        # tables of managed models in no particular order, row by row on SQLite) leaves them to the
        # triggers, which empty them with the executions.
        abstract = True

    def __str__(self) -> str:
        return f"{self.agent_type} {self.model_used} {self.status} at {self.start:%Y-%m-%d %H:%M}"


class HourlyRollup(Rollup):
    class Meta:
        db_table = "llm_agents_rollup_hourly"
        managed = False  # see Rollup.Meta
        constraints = [models.UniqueConstraint(fields=ROLLUP_KEYS, name="llm_rollup_hourly_key")]


class DailyRollup(Rollup):
    class Meta:
        db_table = "llm_agents_rollup_daily"
        managed = False  # see Rollup.Meta
        constraints = [models.UniqueConstraint(fields=ROLLUP_KEYS, name="llm_rollup_daily_key")]


class Totals(models.Model):
    """The figures of an hour's or a day's (UTC) root executions per agent, model used, status and
    error category: the rollups summed over tenants, versions, models asked for and kinds, about a
    fourth of their rows, for the questions that filter and group on nothing else (the dashboard's
    and the API's own). Counts come first, then money, then the keys: PostgreSQL reads the
    fixed-width columns at the front of a row fastest."""

    start = models.DateTimeField(help_text=_("The hour or day (UTC) the executions started in."))
    executions = _count()
    input_tokens = _count()
    output_tokens = _count()
    cached_tokens = _count()
    cache_write_tokens = _count()
    reasoning_tokens = _count()
    total_tokens = _count()
    cache_hits = _count()
    duration_sum = _count()
    duration_count = _count()
    model_executions = _count()
    model_tokens = _count()
    model_duration_sum = _count()
    model_duration_count = _count()
    input_cost = money_field()
    output_cost = money_field()
    total_cost = money_field()
    model_cost = money_field()
    agent_type = models.CharField(max_length=255)
    model_used = models.CharField(max_length=255, help_text=_("A model that answered (see the module)."))
    status = models.CharField(max_length=10)
    error_category = models.CharField(max_length=20, help_text=_("Blank unless the status is a failure."))

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.agent_type} {self.model_used} {self.status} at {self.start:%Y-%m-%d %H:%M}"


class HourlyTotals(Totals):
    class Meta:
        db_table = "llm_agents_totals_hourly"
        managed = False  # see Rollup.Meta
        verbose_name_plural = "hourly totals"
        constraints = [models.UniqueConstraint(fields=TOTALS_KEYS, name="llm_totals_hourly_key")]


class DailyTotals(Totals):
    class Meta:
        db_table = "llm_agents_totals_daily"
        managed = False  # see Rollup.Meta
        verbose_name_plural = "daily totals"
        constraints = [models.UniqueConstraint(fields=TOTALS_KEYS, name="llm_totals_daily_key")]


class Latency(models.Model):
    """How many root executions of an hour or a day (UTC) took a duration in each latency bucket
    (:mod:`llm_agents.latency`): ``executions`` counts them under the model that answered,
    ``model_executions`` under every model they used."""

    start = models.DateTimeField()
    tenant_id = models.CharField(max_length=255)
    model_used = models.CharField(max_length=255)
    bucket = models.SmallIntegerField()
    executions = _count()
    model_executions = _count()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.model_used} bucket {self.bucket} at {self.start:%Y-%m-%d %H:%M}"


class HourlyLatency(Latency):
    class Meta:
        db_table = "llm_agents_latency_hourly"
        managed = False  # see Rollup.Meta
        constraints = [models.UniqueConstraint(fields=LATENCY_KEYS, name="llm_latency_hourly_key")]


class DailyLatency(Latency):
    class Meta:
        db_table = "llm_agents_latency_daily"
        managed = False  # see Rollup.Meta
        constraints = [models.UniqueConstraint(fields=LATENCY_KEYS, name="llm_latency_daily_key")]


class Durations(models.Model):
    """How many root executions of an hour or a day (UTC) took a duration in each latency bucket,
    whatever their tenant and model: the histogram of all traffic, a few hundred rows a day, for the
    questions that filter on nothing but time (overview, dashboard, ``percentiles()``)."""

    start = models.DateTimeField()
    bucket = models.SmallIntegerField()
    executions = _count()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"bucket {self.bucket} at {self.start:%Y-%m-%d %H:%M}"


class HourlyDurations(Durations):
    class Meta:
        db_table = "llm_agents_durations_hourly"
        managed = False  # see Rollup.Meta
        verbose_name_plural = "hourly durations"
        constraints = [models.UniqueConstraint(fields=DURATION_KEYS, name="llm_durations_hourly_key")]


class DailyDurations(Durations):
    class Meta:
        db_table = "llm_agents_durations_daily"
        managed = False  # see Rollup.Meta
        verbose_name_plural = "daily durations"
        constraints = [models.UniqueConstraint(fields=DURATION_KEYS, name="llm_durations_daily_key")]


class ModelDurations(models.Model):
    """How many root executions of an hour or a day (UTC) that used a model took a duration in each
    latency bucket, whatever their tenant (counted under every model they used, as the latency
    rollups' ``model_executions``): the per-model histograms of ``compare_models()``."""

    start = models.DateTimeField()
    model_used = models.CharField(max_length=255)
    bucket = models.SmallIntegerField()
    executions = _count()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.model_used} bucket {self.bucket} at {self.start:%Y-%m-%d %H:%M}"


class HourlyModelDurations(ModelDurations):
    class Meta:
        db_table = "llm_agents_model_durations_hourly"
        managed = False  # see Rollup.Meta
        verbose_name_plural = "hourly model durations"
        constraints = [
            models.UniqueConstraint(fields=MODEL_DURATION_KEYS, name="llm_model_durations_hourly_key")
        ]


class DailyModelDurations(ModelDurations):
    class Meta:
        db_table = "llm_agents_model_durations_daily"
        managed = False  # see Rollup.Meta
        verbose_name_plural = "daily model durations"
        constraints = [
            models.UniqueConstraint(fields=MODEL_DURATION_KEYS, name="llm_model_durations_daily_key")
        ]


def spend_by_model(
    answered: str, total_cost: Decimal, total_tokens: int, spent: Iterable[tuple[str, Decimal, int]]
) -> dict[str, list[Any]]:
    """An execution's ``model_spend``: ``{model: [cost, tokens]}`` from ``spent``, the ``(model, cost,
    tokens)`` of the llm spans of the execution and of those nested in it (a span's model, else the
    model that answered its execution), with what ``total_cost`` and ``total_tokens`` hold beyond them
    under ``answered``, the model that answered the execution. Spans that spent nothing (a request
    refused before any work) count for no model. ``{}`` when no span spent anything: then everything
    belongs to ``answered`` (which is how a row without it is read). Costs are strings of 8 places."""
    by_model: dict[str, list[Any]] = {}
    for model, cost, tokens in spent:
        if cost > 0 or tokens > 0:
            entry = by_model.setdefault(model, [Decimal(0), 0])
            entry[0] += cost
            entry[1] += tokens
    if not by_model:
        return {}
    covered_cost = sum((entry[0] for entry in by_model.values()), Decimal(0))
    covered_tokens = sum(entry[1] for entry in by_model.values())
    if total_cost > covered_cost or total_tokens > covered_tokens:
        entry = by_model.setdefault(answered, [Decimal(0), 0])
        entry[0] += max(total_cost - covered_cost, Decimal(0))
        entry[1] += max(total_tokens - covered_tokens, 0)
    return {model: [str(money(cost)), tokens] for model, (cost, tokens) in by_model.items()}
