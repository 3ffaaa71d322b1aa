"""Chainable scopes and database-computed analytics for executions (``Execution.objects``)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models import Avg, Count, F, Max, Q, Sum, Value
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce, TruncDate, TruncDay, TruncHour
from django.utils import timezone

from .. import latency
from ..conf import app_settings
from ..context import checked_subject
from ..db import fastpaths, rollups
from ..failures import ERROR_CATEGORIES, FAILED_STATUSES, error_category
from ..money import money
from ..periods import Period, day_range, last_day_of_month, local_now, resolve_period, start_of_day
from ..statistics import rate
from . import rollup_reads
from .quality_queries import QualityQueries

ZERO = Decimal("0")
MONEY = models.DecimalField(max_digits=20, decimal_places=8)
# cost_summary(group_by) -> the field grouped on.
COST_GROUPS = {"model": "model_id", "agent": "agent_type", "tenant": "tenant_id", "day": "day"}
PERCENTILE_FIELDS = (
    "duration_ms",
    "time_to_first_token_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "input_cost",
    "output_cost",
    "total_cost",
)


# What search() reads: an execution's short text columns, then its prompts and response. On
# PostgreSQL they are one full-text document, indexed by llm_exec_search_idx (migration 0009); the
# document stops at SEARCH_DOCUMENT_CHARS characters, far below PostgreSQL's 1 MB tsvector limit.
SEARCH_COLUMNS = (
    "agent_type",
    "model_id",
    "error_class",
    "error_message",
    "tenant_id",
    "system_prompt",
    "user_prompt",
    "response",
)
SEARCH_DOCUMENT_CHARS = 100_000


def parse_metadata_condition(text: str) -> tuple[str, str | None]:
    """``"key:value"`` as ``(key, value)``, ``"key"`` as ``(key, None)`` (the key only has to be
    there); the first colon separates them. ``ValueError`` when there is no key."""
    key, separator, value = text.partition(":")
    if not key.strip():
        raise ValueError(f"{text!r} names no metadata key; write key:value, or key alone.")
    return key, value if separator else None


def prompt_performance(
    executions: int = 0,
    successful: int = 0,
    avg_cost: Any = None,
    avg_duration_ms: float | None = None,
    p50_duration_ms: float | None = None,
    p95_duration_ms: float | None = None,
    scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The figures of a prompt version's performance (``by_prompt_version``); with no arguments, a
    version no execution used: ``{executions, success_rate, avg_cost, avg_duration_ms,
    p50_duration_ms, p95_duration_ms, scores}`` (``scores``: ``{name: mean}``)."""
    return {
        "executions": executions,
        "success_rate": rate(successful, executions),
        "avg_cost": money(avg_cost),
        "avg_duration_ms": _round(avg_duration_ms),
        "p50_duration_ms": None if p50_duration_ms is None else round(p50_duration_ms, 2),
        "p95_duration_ms": None if p95_duration_ms is None else round(p95_duration_ms, 2),
        "scores": dict(scores or {}),
    }


def _round(value: Any) -> float:
    return round(float(value), 2) if value is not None else 0.0


def _money(value: Any) -> Decimal:
    """A sum of money read by raw SQL (a float on SQLite, a Decimal on PostgreSQL), to 8 places."""
    return money(None if value is None else Decimal(str(value)))


class CountOf(models.Subquery):
    """The number of rows a queryset returns, as a scalar subquery."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = models.IntegerField()


class ExecutionQuerySet(QualityQueries):
    """Scopes chain (``Execution.objects.by_agent("X").failed().last_7_days()``); analytics end a chain."""

    # -- time ---------------------------------------------------------------------------------

    def for_period(self, period: str | Period) -> ExecutionQuerySet:
        """Executions started in a period: a name of ``llm_agents.periods.PERIODS`` or a ``Period``."""
        bounds = period if isinstance(period, Period) else resolve_period(period)
        queryset = self.filter(started_at__gte=bounds.start)
        return queryset.filter(started_at__lt=bounds.end) if bounds.end else queryset

    def today(self) -> ExecutionQuerySet:
        return self.for_period("today")

    def yesterday(self) -> ExecutionQuerySet:
        return self.for_period("yesterday")

    def this_week(self) -> ExecutionQuerySet:
        """Since Monday 00:00 in ``TIME_ZONE``."""
        return self.for_period("this_week")

    def this_month(self) -> ExecutionQuerySet:
        return self.for_period("this_month")

    def last_7_days(self) -> ExecutionQuerySet:
        return self.for_period("last_7_days")

    def last_30_days(self) -> ExecutionQuerySet:
        return self.for_period("last_30_days")

    def last_n_days(self, n: int) -> ExecutionQuerySet:
        """The rolling window of ``n`` × 24 hours ending now."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"last_n_days() needs a whole number of days >= 1, not {n!r}.")
        return self.filter(started_at__gte=timezone.now() - dt.timedelta(days=n))

    def between(self, start: dt.date | dt.datetime, end: dt.date | dt.datetime) -> ExecutionQuerySet:
        """Datetimes: ``start <= started_at < end``. Dates: both days included, in ``TIME_ZONE``."""
        if isinstance(start, dt.datetime) != isinstance(end, dt.datetime):
            raise ValueError("between() needs two datetimes or two dates, not a mix.")
        if not isinstance(start, dt.datetime):
            start, end = day_range(start, end)
        return self.filter(started_at__gte=start, started_at__lt=end)

    # -- status -------------------------------------------------------------------------------

    def successful(self) -> ExecutionQuerySet:
        return self.filter(status="success")

    def failed(self) -> ExecutionQuerySet:
        """Status error or timeout."""
        return self.filter(status__in=FAILED_STATUSES)

    def status_error(self) -> ExecutionQuerySet:
        return self.filter(status="error")

    def status_timeout(self) -> ExecutionQuerySet:
        return self.filter(status="timeout")

    def status_running(self) -> ExecutionQuerySet:
        return self.filter(status="running")

    # -- who ----------------------------------------------------------------------------------

    def by_agent(self, name: str) -> ExecutionQuerySet:
        return self.filter(agent_type=name)

    def by_model(self, model_id: str) -> ExecutionQuerySet:
        return self.filter(model_id=model_id)

    def by_version(self, version: str) -> ExecutionQuerySet:
        return self.filter(agent_version=version)

    def by_tenant(self, tenant_id: str) -> ExecutionQuerySet:
        return self.filter(tenant_id=tenant_id)

    def for_current_tenant(self) -> ExecutionQuerySet:
        """The current tenant's executions (``tenant()`` block, else TENANT_RESOLVER); none without one."""
        from ..context import current_tenant_id

        tenant_id = current_tenant_id()
        return self.none() if tenant_id is None else self.filter(tenant_id=tenant_id)

    def with_tenant(self) -> ExecutionQuerySet:
        return self.exclude(tenant_id__isnull=True).exclude(tenant_id="")

    def without_tenant(self) -> ExecutionQuerySet:
        return self.filter(Q(tenant_id__isnull=True) | Q(tenant_id=""))

    def search(self, text: str) -> ExecutionQuerySet:
        """Executions whose id is ``text``, or whose text (agent_type, model_id, error_class,
        error_message, tenant_id, system_prompt, user_prompt, response) holds every word of it.

        On PostgreSQL a full-text search through the ``llm_exec_search_idx`` GIN index: whole words,
        case-insensitive, in any order, with web-search syntax (``"a phrase"``, ``or``, ``-word``).
        Elsewhere each word is a case-insensitive substring of one of the columns."""
        text = text.strip()
        if not text:
            return self
        condition = fastpaths.search_condition(
            connections[self.db], text, SEARCH_COLUMNS, document_chars=SEARCH_DOCUMENT_CHARS
        )
        try:
            condition |= Q(pk=uuid.UUID(text))
        except ValueError:
            pass
        return self.filter(condition)

    def with_metadata(self, **pairs: Any) -> ExecutionQuerySet:
        """Executions whose metadata has every given key with the given value."""
        return self.filter(**{f"metadata__{key}": value for key, value in pairs.items()})

    def with_metadata_condition(self, text: str) -> ExecutionQuerySet:
        """``"key:value"`` as :meth:`with_metadata_value`, ``"key"`` as :meth:`with_metadata_key`
        (see :func:`parse_metadata_condition`): the API's ``metadata`` parameter and the admin's
        metadata filter."""
        key, value = parse_metadata_condition(text)
        return self.with_metadata_key(key) if value is None else self.with_metadata_value(key, value)

    def with_metadata_key(self, key: str) -> ExecutionQuerySet:
        """Executions whose metadata has ``key`` (any value), the key taken literally."""
        return self.filter(metadata__has_key=key)

    def with_metadata_value(self, key: str, value: str) -> ExecutionQuerySet:
        """Executions whose ``metadata[key]`` is the string ``value``, or the JSON number, boolean or
        null it spells (``"3"`` also finds 3, ``"true"`` true); the key is taken literally."""
        candidates: list[Any] = [value]
        try:
            spelled = json.loads(value)
        except ValueError:
            pass
        else:
            if spelled is None or isinstance(spelled, bool | int | float):
                candidates.append(spelled)
        # Through an alias, so that the key is one key even if it holds "__".
        queryset = self.alias(metadata_value=KeyTransform(key, "metadata"))
        return queryset.filter(functools.reduce(operator.or_, (Q(metadata_value=c) for c in candidates)))

    # -- size ---------------------------------------------------------------------------------

    def expensive(self, threshold: Decimal | float | None = None) -> ExecutionQuerySet:
        """``total_cost`` above ``threshold`` (default ``EXPENSIVE_THRESHOLD``)."""
        if threshold is None:
            threshold = app_settings.EXPENSIVE_THRESHOLD
        return self.filter(total_cost__gt=Decimal(str(threshold)))

    def slow(self, ms: int | None = None) -> ExecutionQuerySet:
        """``duration_ms`` above ``ms`` (default ``SLOW_THRESHOLD_MS``)."""
        return self.filter(duration_ms__gt=app_settings.SLOW_THRESHOLD_MS if ms is None else ms)

    def high_token_usage(self, count: int | None = None) -> ExecutionQuerySet:
        """``total_tokens`` above ``count`` (default ``HIGH_TOKEN_THRESHOLD``)."""
        return self.filter(total_tokens__gt=app_settings.HIGH_TOKEN_THRESHOLD if count is None else count)

    # -- other --------------------------------------------------------------------------------

    def streaming(self) -> ExecutionQuerySet:
        return self.filter(streaming=True)

    def non_streaming(self) -> ExecutionQuerySet:
        return self.filter(streaming=False)

    def with_fallback(self) -> ExecutionQuerySet:
        """A model other than the configured one answered."""
        return self.exclude(chosen_model_id="").exclude(chosen_model_id=F("model_id"))

    def without_fallback(self) -> ExecutionQuerySet:
        return self.filter(Q(chosen_model_id="") | Q(chosen_model_id=F("model_id")))

    def retryable_errors(self) -> ExecutionQuerySet:
        return self.failed().filter(retryable=True)

    def rate_limited(self) -> ExecutionQuerySet:
        return self.filter(rate_limited=True)

    def cached(self) -> ExecutionQuerySet:
        return self.filter(cache_hit=True)

    def cache_miss(self) -> ExecutionQuerySet:
        return self.filter(cache_hit=False)

    def with_tool_calls(self) -> ExecutionQuerySet:
        return self.filter(tool_calls_count__gt=0)

    def without_tool_calls(self) -> ExecutionQuerySet:
        return self.filter(tool_calls_count=0)

    def root_executions(self) -> ExecutionQuerySet:
        """Executions with no parent (nested agent runs and traces excluded)."""
        return self.filter(parent__isnull=True)

    # -- the host's objects ---------------------------------------------------------------------
    # Read through llm_exec_subject_idx: (subject_type, subject_id, started_at) where subject_id is
    # not blank, covering parent, eval_run and the totals, so an object's executions and cost come
    # from the index alone. Only root executions count: nested ones are in their roots' totals.

    def for_object(self, obj: Any) -> ExecutionQuerySet:
        """The root executions attributed to ``obj``, a saved model instance (else ``TypeError``)."""
        obj = checked_subject(obj)
        content_type = ContentType.objects.get_for_model(obj)
        return self.filter(subject_type_id=content_type.pk, subject_id=str(obj.pk), parent__isnull=True)

    def cost_by_subject(self, model: Any) -> list[dict[str, Any]]:
        """``[{subject_id, total_cost, executions}]``, costliest first: what the analysed root
        executions attributed to objects of ``model`` (a model class, else ``TypeError``) cost, per
        object (``subject_id`` is its primary key as text)."""
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            raise TypeError(f"cost_by_subject() takes a model class, not {model!r} ({type(model).__name__})")
        content_type = ContentType.objects.get_for_model(model)
        rows = (
            self.analysed_roots()
            .filter(subject_type_id=content_type.pk)
            .exclude(subject_id="")
            .order_by()
            .values("subject_id")
            .annotate(total_cost=Sum("total_cost"), executions=Count("*"))
            .order_by("-total_cost", "-executions", "subject_id")
        )
        return [
            {
                "subject_id": row["subject_id"],
                "total_cost": money(row["total_cost"]),
                "executions": row["executions"],
            }
            for row in rows
        ]

    # -- evaluations ----------------------------------------------------------------------------
    # Executions of evaluation runs (``eval_run`` set) stay out of the analytics below unless asked
    # for (SPEC section 17); lists and scopes show them like any other.

    #: The analytics of this queryset count the executions of evaluation runs too.
    with_evaluations = False

    def _clone(self) -> ExecutionQuerySet:
        clone = super()._clone()  # type: ignore[misc]
        clone.with_evaluations = self.with_evaluations
        return clone

    def evaluations(self) -> ExecutionQuerySet:
        """Executions of evaluation runs only; the analytics of the result count them."""
        return self.filter(eval_run__isnull=False).including_evaluations()

    def production(self) -> ExecutionQuerySet:
        """Executions of no evaluation run (what the analytics count by default)."""
        return self.filter(eval_run__isnull=True)

    def including_evaluations(self) -> ExecutionQuerySet:
        """This queryset, its analytics counting the executions of evaluation runs too (read from
        the rows: the rollups keep production executions only)."""
        clone = self.all()
        clone.with_evaluations = True
        return clone

    def analysed_roots(self) -> ExecutionQuerySet:
        """The root executions the analytics of this queryset count: those of no evaluation run,
        unless :meth:`including_evaluations` (or :meth:`evaluations`) asked for them."""
        roots = self.root_executions()
        return roots if self.with_evaluations else roots.production()

    # -- analytics ----------------------------------------------------------------------------
    # Each is a fixed number of queries over root executions, whatever the row count. Rows are
    # counted as COUNT(*), or COUNT(started_at) under a filter (never null either), not COUNT(id):
    # the id is not in the covering index, and reading it would send PostgreSQL to the table.
    # Amounts leave through money(): 8 places, whatever tail the database's arithmetic left.

    def rollup_plan(self) -> rollup_reads.Plan | None:
        """How the rollups answer analytics of this queryset's root executions, or None when its
        filters make the rows answer (see :mod:`llm_agents.models.rollup_reads`)."""
        return rollup_reads.plan_for(self.analysed_roots())

    def rollup_count(self) -> int | None:
        """How many executions this queryset holds, counted exactly from the rollups when its
        filters allow (see :meth:`rollup_plan`): its root executions from them, its nested ones (a
        few in a hundred) from the rows; None when the rows must count. Lists of millions of rows
        filtered by agent, model, tenant, status or time are paginated with it. Root executions of
        evaluation runs (a few, through their own index) are counted from the rows."""
        roots = self.root_executions().production()
        plan = rollup_reads.plan_for(roots)
        if plan is None:
            return None
        counted = rollup_reads.totals(roots, plan, (), ("executions",)).total()["executions"]
        others = self.filter(Q(parent__isnull=False) | Q(eval_run__isnull=False))
        return int(counted) + others.count()

    def _rollup_groups(
        self, group_by: Sequence[str], measures: Sequence[str] = tuple(rollup_reads.ROW_MEASURES), *,
        local: str | None = None,
    ) -> list[dict[str, Any]] | None:  # fmt: skip
        """Sums of ``measures`` per ``group_by`` from the rollups (and the rows at the period's
        edges), as dicts with the group's keys (``local`` adds ``"local"``: the local day or hour),
        leaving out groups without executions; None when the rows must answer."""
        plan = self.rollup_plan()
        if plan is None or (local is not None and not rollup_reads.whole_hour_zone(plan)):
            return None
        found = rollup_reads.totals(self.analysed_roots(), plan, group_by, measures, local=local)
        names = [*group_by, "local"] if local else list(group_by)
        return [
            {**dict(zip(names, key, strict=True)), **values}
            for key, values in found.groups.items()
            if values.get("executions", 1)
        ]

    def _summary_from_rollups(self) -> dict[str, Any] | None:
        # What the covering index of root executions holds, so the partial hours at the period's
        # edges are read from it alone.
        measures = ("executions", "total_cost", "duration_sum", "duration_count", "total_tokens", "input_tokens",
                    "output_tokens")  # fmt: skip
        groups = self._rollup_groups(("agent_type", "status"), measures)
        if groups is None:
            return None
        total = sum(group["executions"] for group in groups)
        successful = sum(group["executions"] for group in groups if group["status"] == "success")
        failed = sum(group["executions"] for group in groups if group["status"] in FAILED_STATUSES)
        cost = sum((group["total_cost"] for group in groups), ZERO)
        durations = sum(group["duration_count"] for group in groups)
        row = {
            "total": total,
            "successful": successful,
            "failed": failed,
            "total_cost": money(cost),
            "avg_cost": money(cost / total if total else None),
            "avg_duration_ms": _round(
                sum(group["duration_sum"] for group in groups) / durations if durations else None
            ),
            "total_tokens": sum(group["total_tokens"] for group in groups),
            "input_tokens": sum(group["input_tokens"] for group in groups),
            "output_tokens": sum(group["output_tokens"] for group in groups),
            "active_agents": len({group["agent_type"] for group in groups}),
        }
        row["success_rate"] = rate(successful, total)
        return row

    def _summary(self, duration_percents: Sequence[float] = ()) -> dict[str, Any]:
        """The figures of :meth:`summary`. On PostgreSQL, ``duration_percents`` adds the duration
        percentiles of the same rows (as :meth:`percentiles` gives them) to the same query, under
        ``"percentiles"``: one pass over the rows instead of two."""
        from_rollups = self._summary_from_rollups()
        if from_rollups is not None:
            if duration_percents:
                from_rollups["percentiles"] = self.percentiles("duration_ms", duration_percents)
            return from_rollups
        # The aliases must not be field names: an aggregate named like a field would shadow it for
        # the aggregates after it (Avg("total_cost") would then refer to Sum("total_cost")).
        roots = self.analysed_roots()
        extra = {
            f"percentile_{index}": fastpaths.PercentileCont("duration_ms", percent / 100)
            for index, percent in enumerate(duration_percents)
        }
        if extra and not fastpaths.is_postgresql(connections[self.db]):
            raise ValueError("duration percentiles in the summary query need PostgreSQL's percentile_cont")
        aggregated = roots.aggregate(
            **extra,
            n_total=Count("*"),
            n_successful=Count("started_at", filter=Q(status="success")),
            n_failed=Count("started_at", filter=Q(status__in=FAILED_STATUSES)),
            sum_total_cost=Coalesce(Sum("total_cost"), Value(ZERO), output_field=MONEY),
            avg_total_cost=Avg("total_cost"),
            avg_duration=Avg("duration_ms"),
            sum_total_tokens=Coalesce(Sum("total_tokens"), 0),
            sum_input_tokens=Coalesce(Sum("input_tokens"), 0),
            sum_output_tokens=Coalesce(Sum("output_tokens"), 0),
            # COUNT(DISTINCT) sorts every row; counting the rows of SELECT DISTINCT hashes them, in
            # a subquery PostgreSQL runs once (MAX only lifts the scalar into the aggregate).
            n_agents=Coalesce(Max(CountOf(roots.order_by().values("agent_type").distinct())), 0),
        )
        row = {
            "total": aggregated["n_total"],
            "successful": aggregated["n_successful"],
            "failed": aggregated["n_failed"],
            "total_cost": money(aggregated["sum_total_cost"]),
            "avg_cost": money(aggregated["avg_total_cost"]),
            "avg_duration_ms": aggregated["avg_duration"],
            "total_tokens": aggregated["sum_total_tokens"],
            "input_tokens": aggregated["sum_input_tokens"],
            "output_tokens": aggregated["sum_output_tokens"],
            "active_agents": aggregated["n_agents"],
        }
        row["success_rate"] = rate(row["successful"], row["total"])
        row["avg_duration_ms"] = _round(row["avg_duration_ms"])
        if extra:
            row["percentiles"] = {
                f"p{percent:g}": None if value is None else round(value, 2)
                for percent, value in zip(duration_percents, (aggregated[key] for key in extra), strict=True)
            }
        return row

    def summary(self) -> dict[str, Any]:
        """Totals of this queryset in one query: total, successful, failed, success_rate, total_cost,
        avg_cost, avg_duration_ms, total_tokens, input_tokens, output_tokens, active_agents."""
        return self._summary()

    def daily_report(self, date: dt.date | None = None) -> dict[str, Any]:
        """One day's totals (default today in ``TIME_ZONE``)."""
        date = date or local_now().date()
        row = self.between(date, date)._summary()
        return {
            "date": date,
            "total_executions": row["total"],
            "successful": row["successful"],
            "failed": row["failed"],
            "success_rate": row["success_rate"],
            "total_cost": row["total_cost"],
            "avg_duration_ms": row["avg_duration_ms"],
            "total_tokens": row["total_tokens"],
        }

    def _cost_by(self, field: str, period: str) -> list[dict[str, Any]]:
        groups = self.for_period(period)._rollup_groups((field,), ("total_cost", "executions"))
        if groups is not None:
            groups.sort(key=lambda group: (-group["total_cost"], group[field]))
            return [
                {
                    field: group[field],
                    "total_cost": money(group["total_cost"]),
                    "executions": group["executions"],
                }
                for group in groups
            ]
        rows = (
            self.analysed_roots()
            .for_period(period)
            .order_by()
            .values(field)
            .annotate(total_cost=Sum("total_cost"), executions=Count("*"))
            .order_by("-total_cost", field)
        )
        return [
            {field: row[field], "total_cost": money(row["total_cost"]), "executions": row["executions"]}
            for row in rows
        ]

    def cost_by_agent(self, period: str = "this_week") -> list[dict[str, Any]]:
        """``[{agent_type, total_cost, executions}]``, costliest first."""
        return self._cost_by("agent_type", period)

    def cost_by_model(self, period: str = "today") -> list[dict[str, Any]]:
        """``[{model_id, total_cost, executions}]``, costliest first, by the model that answered: each
        llm span's cost goes to its model, nested executions and fallbacks included, and
        ``executions`` counts the root executions that used the model (see :meth:`spend_by_model_sql`)."""
        rows = self.for_period(period)._spend_by_model()
        return [{key: row[key] for key in ("model_id", "total_cost", "executions")} for row in rows]

    def stats_for(self, agent_type: str, period: str | Period = "today") -> dict[str, Any]:
        """One agent's totals for a period."""
        row = self.by_agent(agent_type).for_period(period)._summary()
        return {
            "total": row["total"],
            "successful": row["successful"],
            "failed": row["failed"],
            "success_rate": row["success_rate"],
            "avg_cost": row["avg_cost"],
            "total_cost": row["total_cost"],
            "avg_duration_ms": row["avg_duration_ms"],
            "total_tokens": row["total_tokens"],
        }

    def trend_analysis(self, agent_type: str | None = None, days: int = 7) -> list[dict[str, Any]]:
        """``days`` rows, oldest first, the last one today, zero-filled:
        ``[{date, executions, cost, avg_duration_ms}]``."""
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise ValueError(f"days must be a whole number >= 1, not {days!r}.")
        today = local_now().date()
        first = today - dt.timedelta(days=days - 1)
        queryset = self.analysed_roots().between(first, today)
        if agent_type is not None:
            queryset = queryset.by_agent(agent_type)
        groups = queryset._rollup_groups(
            (), ("executions", "total_cost", "duration_sum", "duration_count"), local="day"
        )
        if groups is not None:
            rows: Any = [
                {
                    "day": group["local"],
                    "executions": group["executions"],
                    "cost": group["total_cost"],
                    "avg_duration_ms": group["duration_sum"] / group["duration_count"]
                    if group["duration_count"]
                    else None,
                }
                for group in groups
            ]
        else:
            rows = (
                queryset.order_by()
                .annotate(day=TruncDate("started_at", tzinfo=timezone.get_default_timezone()))
                .values("day")
                .annotate(executions=Count("*"), cost=Sum("total_cost"), avg_duration_ms=Avg("duration_ms"))
            )
        by_day = {row["day"]: row for row in rows}
        trend = []
        for offset in range(days):
            day = first + dt.timedelta(days=offset)
            row = by_day.get(day, {})
            trend.append(
                {
                    "date": day,
                    "executions": row.get("executions", 0),
                    "cost": money(row.get("cost")),
                    "avg_duration_ms": _round(row.get("avg_duration_ms")),
                }
            )
        return trend

    def timeline(self, period: str | Period, unit: str = "day") -> list[dict[str, Any]]:
        """The period's root executions per day (or per hour) in ``TIME_ZONE``, oldest first,
        zero-filled, in one query: ``[{start, end, executions, success, error, timeout, running,
        total_cost}]``. The buckets cover the whole period, so their sums equal ``summary()``'s."""
        if unit not in ("day", "hour"):
            raise ValueError(f"Unknown timeline unit {unit!r}; valid units are: day, hour.")
        bounds = period if isinstance(period, Period) else resolve_period(period)
        zone = timezone.get_default_timezone()
        trunc = TruncDay if unit == "day" else TruncHour
        groups = (
            self.analysed_roots()
            .for_period(bounds)
            ._rollup_groups(("status",), ("executions", "total_cost"), local=unit)
        )
        if groups is not None:
            rows: Any = [
                {
                    "bucket": start_of_day(group["local"]) if unit == "day" else group["local"],
                    "status": group["status"],
                    "n": group["executions"],
                    "cost": group["total_cost"],
                }
                for group in groups
            ]
        else:
            rows = (
                self.analysed_roots()
                .for_period(bounds)
                .order_by()
                .annotate(bucket=trunc("started_at", tzinfo=zone))
                .values("bucket", "status")
                .annotate(n=Count("*"), cost=Sum("total_cost"))
            )
        found: dict[float, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row["bucket"].timestamp(), []).append(row)

        def following(moment: dt.datetime) -> dt.datetime:
            if unit == "day":
                return start_of_day(moment.date() + dt.timedelta(days=1))
            return timezone.localtime(moment + dt.timedelta(hours=1), zone)

        first = timezone.localtime(bounds.start, zone)
        start = (
            start_of_day(first.date()) if unit == "day" else first.replace(minute=0, second=0, microsecond=0)
        )
        end = bounds.end or timezone.now()
        buckets = []
        while start < end:
            bucket: dict[str, Any] = {
                "start": start,
                "end": following(start),
                "executions": 0,
                "total_cost": ZERO,
            }
            bucket.update(dict.fromkeys(("success", "error", "timeout", "running"), 0))
            for row in found.get(start.timestamp(), []):
                bucket[row["status"]] = row["n"]
                bucket["executions"] += row["n"]
                bucket["total_cost"] += row["cost"] or ZERO
            bucket["total_cost"] = money(bucket["total_cost"])
            buckets.append(bucket)
            start = bucket["end"]
        return buckets

    def _summaries_from_rollups(self, field: str) -> list[dict[str, Any]] | None:
        """The rows of :meth:`summary_by` (``n_total`` … ``sum_total_tokens``, ``avg_total_cost``)
        from the rollups, costliest first, or None when the rows must answer (or ``field`` is not a
        key the rollups keep as the rows do: a tenant of None and of "" are one key there)."""
        if field not in ("agent_type", "agent_version", "model_id", "status", "kind"):
            return None
        groups = self._rollup_groups((field, "status"))
        if groups is None:
            return None
        rows: dict[Any, dict[str, Any]] = {}
        for group in groups:
            row = rows.setdefault(
                group[field],
                {field: group[field], "n_total": 0, "n_successful": 0, "n_failed": 0, "sum_total_cost": ZERO,
                 "duration_sum": 0, "duration_count": 0, "sum_total_tokens": 0},
            )  # fmt: skip
            row["n_total"] += group["executions"]
            row["n_successful"] += group["executions"] if group["status"] == "success" else 0
            row["n_failed"] += group["executions"] if group["status"] in FAILED_STATUSES else 0
            row["sum_total_cost"] += group["total_cost"]
            row["duration_sum"] += group["duration_sum"]
            row["duration_count"] += group["duration_count"]
            row["sum_total_tokens"] += group["total_tokens"]
        for row in rows.values():
            row["avg_duration"] = (
                row["duration_sum"] / row["duration_count"] if row["duration_count"] else None
            )
            row["avg_total_cost"] = row["sum_total_cost"] / row["n_total"]
        return sorted(rows.values(), key=lambda row: (-row["sum_total_cost"], -row["n_total"], row[field]))

    def summary_by(self, field: str) -> list[dict[str, Any]]:
        """``summary()`` per value of ``field`` (e.g. ``"agent_type"``), costliest first, in one query:
        ``[{<field>, total, successful, failed, success_rate, total_cost, avg_duration_ms,
        total_tokens}]``."""
        rows: Any = self._summaries_from_rollups(field)
        if rows is None:
            rows = (
                self.analysed_roots()
                .order_by()
                .values(field)
                .annotate(
                    n_total=Count("*"),
                    n_successful=Count("started_at", filter=Q(status="success")),
                    n_failed=Count("started_at", filter=Q(status__in=FAILED_STATUSES)),
                    sum_total_cost=Coalesce(Sum("total_cost"), Value(ZERO), output_field=MONEY),
                    avg_duration=Avg("duration_ms"),
                    sum_total_tokens=Coalesce(Sum("total_tokens"), 0),
                )
                .order_by("-sum_total_cost", "-n_total", field)
            )
        return [
            {
                field: row[field],
                "total": row["n_total"],
                "successful": row["n_successful"],
                "failed": row["n_failed"],
                "success_rate": rate(row["n_successful"], row["n_total"]),
                "total_cost": money(row["sum_total_cost"]),
                "avg_duration_ms": _round(row["avg_duration"]),
                "total_tokens": row["sum_total_tokens"],
            }
            for row in rows
        ]

    def compare_versions(
        self, agent_type: str, *versions: str, period: str | Period = "this_week"
    ) -> dict[str, dict[str, Any]]:
        """``{version: {total, success_rate, avg_cost, scores}}`` for each version asked for;
        ``scores`` is ``{name: mean}`` of the version's scored executions (:meth:`score_means`)."""
        queryset = (
            self.analysed_roots().by_agent(agent_type).for_period(period).filter(agent_version__in=versions)
        )
        summaries = queryset._summaries_from_rollups("agent_version")
        if summaries is not None:
            rows: Any = [
                {"agent_version": row["agent_version"], "total": row["n_total"], "successful": row["n_successful"],
                 "avg_cost": row["avg_total_cost"]}
                for row in summaries
            ]  # fmt: skip
        else:
            rows = (
                queryset.order_by()
                .values("agent_version")
                .annotate(
                    total=Count("*"),
                    successful=Count("started_at", filter=Q(status="success")),
                    avg_cost=Avg("total_cost"),
                )
            )
        found = {row["agent_version"]: row for row in rows}
        scores = (
            self.by_agent(agent_type)
            .for_period(period)
            .filter(agent_version__in=versions)
            .score_means("agent_version")
        )
        result = {}
        for version in versions:
            # str(): the filter above compares versions as strings, so 2 finds the rows of "2".
            row = found.get(str(version), {"total": 0, "successful": 0, "avg_cost": None})
            result[version] = {
                "total": row["total"],
                "success_rate": rate(row["successful"], row["total"]),
                "avg_cost": money(row["avg_cost"]),
                "scores": scores.get(str(version), {}),
            }
        return result

    def percentiles(
        self, field: str = "duration_ms", percents: Sequence[float] = (50, 95, 99)
    ) -> dict[str, float | None]:
        """Continuous percentiles of ``field`` (as PostgreSQL's ``percentile_cont``), ``{"p50": …}``;
        None when no row has a value."""
        if field not in PERCENTILE_FIELDS:
            raise ValueError(
                f"Unknown percentile field {field!r}; valid fields are: {', '.join(PERCENTILE_FIELDS)}."
            )
        for percent in percents:
            if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
                raise ValueError(f"Percentiles must be numbers from 0 to 100, not {percent!r}.")
        keys = [f"p{percent:g}" for percent in percents]
        plan = self.rollup_plan() if field == "duration_ms" else None
        counts = rollup_reads.histogram(self.analysed_roots(), plan) if plan is not None else None
        if counts is not None:
            values = latency.percentiles(counts.get("", {}), percents)
            return {
                key: None if value is None else round(value, 2)
                for key, value in zip(keys, values, strict=True)
            }
        queryset = self.analysed_roots().filter(**{f"{field}__isnull": False}).order_by()
        return dict(zip(keys, fastpaths.percentiles(queryset, field, percents), strict=True))

    def cost_forecast(self) -> dict[str, Decimal]:
        """``{month_to_date, projected_month_total, daily_average}`` for the current calendar month."""
        today = local_now().date()
        first = today.replace(day=1)
        month = self.analysed_roots().between(first, today)
        groups = month._rollup_groups((), ("total_cost", "executions"))
        if groups is not None:
            month_to_date = sum((group["total_cost"] for group in groups), ZERO)
        else:
            month_to_date = month.aggregate(total=Sum("total_cost"))["total"] or ZERO
        daily_average = month_to_date / today.day
        days_in_month = last_day_of_month(first).day
        return {
            "month_to_date": money(month_to_date),
            "projected_month_total": money(daily_average * days_in_month),
            "daily_average": money(daily_average),
        }

    def error_analysis(self) -> dict[str, Any]:
        """Failed executions counted by category, and the 10 latest failures, newest first."""
        failed = self.analysed_roots().failed()
        groups = failed._rollup_groups(("error_category",), ("executions",))
        if groups is not None:
            rows: Any = [{"category": group["error_category"], "n": group["executions"]} for group in groups]
        else:
            rows = (
                failed.order_by()
                .annotate(category=error_category())
                .values("category")
                .annotate(n=Count("*"))
            )
        categories = dict.fromkeys(ERROR_CATEGORIES, 0)
        for row in rows:
            categories[row["category"]] += row["n"]
        recent = list(
            failed.order_by("-started_at").values(
                "id", "agent_type", "model_id", "error_class", "error_message", "started_at"
            )[:10]
        )
        return {"categories": categories, "recent": recent}

    def by_prompt_version(self) -> list[dict[str, Any]]:
        """Per prompt version, the performance of the root executions that used it (SPEC §21),
        ordered by prompt and version: ``[{prompt_version, prompt, version, executions,
        success_rate, avg_cost, avg_duration_ms, p50_duration_ms, p95_duration_ms, scores}]``
        (``prompt`` is the slug, ``version`` the number; the percentiles are continuous, as
        ``percentiles()``; ``scores`` is ``{name: mean}`` of the numeric and boolean scores of those
        executions, :meth:`score_means`). Two queries on PostgreSQL, four elsewhere, however many versions."""
        roots = self.analysed_roots().filter(prompt_version__isnull=False).order_by()
        aggregates: dict[str, Any] = {
            "n_total": Count("*"),
            "n_successful": Count("started_at", filter=Q(status="success")),
            "avg_total_cost": Avg("total_cost"),
            "avg_duration": Avg("duration_ms"),
        }
        postgres = fastpaths.is_postgresql(connections[self.db])
        if postgres:
            aggregates["p50"] = fastpaths.PercentileCont("duration_ms", 0.50)
            aggregates["p95"] = fastpaths.PercentileCont("duration_ms", 0.95)
        rows = list(
            roots.values("prompt_version", "prompt_version__prompt__slug", "prompt_version__number")
            .annotate(**aggregates)
            .order_by("prompt_version__prompt__slug", "prompt_version__number")
        )
        if postgres:
            p50 = {row["prompt_version"]: row["p50"] for row in rows}
            p95 = {row["prompt_version"]: row["p95"] for row in rows}
        elif rows:
            p50 = fastpaths.grouped_percentile_portable(roots, "prompt_version", "duration_ms", 50)
            p95 = fastpaths.grouped_percentile_portable(roots, "prompt_version", "duration_ms", 95)
        else:
            p50 = p95 = {}
        means = self.score_means("prompt_version") if rows else {}
        return [
            {
                "prompt_version": row["prompt_version"],
                "prompt": row["prompt_version__prompt__slug"],
                "version": row["prompt_version__number"],
                **prompt_performance(
                    executions=row["n_total"],
                    successful=row["n_successful"],
                    avg_cost=row["avg_total_cost"],
                    avg_duration_ms=row["avg_duration"],
                    p50_duration_ms=p50.get(row["prompt_version"]),
                    p95_duration_ms=p95.get(row["prompt_version"]),
                    scores=means.get(row["prompt_version"], {}),
                ),
            }
            for row in rows
        ]

    # -- analytics grouped for the HTTP API ---------------------------------------------------

    def stats_by_agent(self) -> list[dict[str, Any]]:
        """``stats_for()`` of every agent in this queryset, costliest first, in one query:
        ``[{agent_type, total, successful, failed, success_rate, avg_cost, total_cost,
        avg_duration_ms, total_tokens}]``."""
        rows: Any = self._summaries_from_rollups("agent_type")
        if rows is None:
            rows = (
                self.analysed_roots()
                .order_by()
                .values("agent_type")
                .annotate(
                    n_total=Count("*"),
                    n_successful=Count("started_at", filter=Q(status="success")),
                    n_failed=Count("started_at", filter=Q(status__in=FAILED_STATUSES)),
                    sum_total_cost=Coalesce(Sum("total_cost"), Value(ZERO), output_field=MONEY),
                    avg_total_cost=Avg("total_cost"),
                    avg_duration=Avg("duration_ms"),
                    sum_total_tokens=Coalesce(Sum("total_tokens"), 0),
                )
                .order_by("-sum_total_cost", "-n_total", "agent_type")
            )
        return [
            {
                "agent_type": row["agent_type"],
                "total": row["n_total"],
                "successful": row["n_successful"],
                "failed": row["n_failed"],
                "success_rate": rate(row["n_successful"], row["n_total"]),
                "avg_cost": money(row["avg_total_cost"]),
                "total_cost": money(row["sum_total_cost"]),
                "avg_duration_ms": _round(row["avg_duration"]),
                "total_tokens": row["sum_total_tokens"],
            }
            for row in rows
        ]

    def cost_summary(self, group_by: str = "model") -> list[dict[str, Any]]:
        """Costs of the root executions grouped by ``model``, ``agent``, ``tenant`` or ``day`` (in
        ``TIME_ZONE``), in one query: ``[{key, total_cost, executions, total_tokens}]``, costliest
        first (days oldest first; only days with executions). ``model`` is the model that answered,
        as in :meth:`cost_by_model`. An unknown group raises ``ValueError``."""
        if group_by not in COST_GROUPS:
            raise ValueError(f"Unknown group_by {group_by!r}; valid groups are: {', '.join(COST_GROUPS)}.")
        if group_by == "model":
            return [
                {
                    "key": row["model_id"],
                    "total_cost": row["total_cost"],
                    "executions": row["executions"],
                    "total_tokens": row["total_tokens"],
                }
                for row in self._spend_by_model()
            ]
        field = COST_GROUPS[group_by]
        if group_by in ("agent", "day"):
            groups = self._rollup_groups(
                () if group_by == "day" else (field,), ("total_cost", "executions", "total_tokens"),
                local="day" if group_by == "day" else None,
            )  # fmt: skip
            if groups is not None:
                key = "local" if group_by == "day" else field
                if group_by == "day":
                    groups.sort(key=lambda group: group[key])
                else:
                    groups.sort(key=lambda group: (-group["total_cost"], -group["executions"], group[key]))
                return [
                    {"key": group[key], "total_cost": money(group["total_cost"]), "executions": group["executions"],
                     "total_tokens": group["total_tokens"]}
                    for group in groups
                ]  # fmt: skip
        queryset = self.analysed_roots().order_by()
        if group_by == "day":
            queryset = queryset.annotate(day=TruncDate("started_at", tzinfo=timezone.get_default_timezone()))
        rows = queryset.values(field).annotate(
            sum_total_cost=Coalesce(Sum("total_cost"), Value(ZERO), output_field=MONEY),
            n_total=Count("*"),
            sum_total_tokens=Coalesce(Sum("total_tokens"), 0),
        )
        rows = (
            rows.order_by(field) if group_by == "day" else rows.order_by("-sum_total_cost", "-n_total", field)
        )
        return [
            {
                "key": row[field],
                "total_cost": money(row["sum_total_cost"]),
                "executions": row["n_total"],
                "total_tokens": row["sum_total_tokens"],
            }
            for row in rows
        ]

    def compare_models(self) -> list[dict[str, Any]]:
        """Per model that answered, most executions first: ``[{model_id, executions, success_rate,
        avg_duration_ms, p95_duration_ms, avg_cost, total_tokens}]``. ``executions`` counts the root
        executions that used the model (a root that used two models counts for each); the success
        rate and the durations are those root executions' own; ``avg_cost`` and ``total_tokens`` are
        the spend attributed to the model (as :meth:`cost_by_model`) over them. The p95 is
        continuous, as ``percentiles()``. One query on PostgreSQL, two elsewhere."""
        from_rollups = self._models_from_rollups(with_p95=True)
        if from_rollups is not None:
            result = [
                {
                    "model_id": model_id,
                    "executions": row["executions"],
                    "success_rate": rate(row["successful"], row["executions"]),
                    "avg_duration_ms": _round(row["avg_duration"]),
                    "p95_duration_ms": row["p95"],
                    "avg_cost": money(row["cost"] / row["executions"]),
                    "total_tokens": row["tokens"],
                }
                for model_id, row in from_rollups.items()
            ]
            result.sort(key=lambda row: (-row["executions"], row["model_id"]))
            return result
        spend = self.spend_by_model_sql()
        if spend is None:
            return []
        sql, params = spend
        connection = connections[self.db]
        postgres = fastpaths.is_postgresql(connection)
        p95_column = fastpaths.USED_P95_POSTGRESQL if postgres else "NULL"
        rows = self._run_sql(
            sql
            + f"""
            SELECT model_id, SUM(counted), SUM(CASE WHEN counted = 1 AND status = 'success' THEN 1 ELSE 0 END),
                AVG(CASE WHEN counted = 1 THEN duration_ms END), {p95_column}, SUM(cost), SUM(tokens)
            FROM used
            GROUP BY model_id
            """,
            params,
        )
        p95 = (
            {row[0]: row[4] for row in rows}
            if postgres
            else fastpaths.used_p95_portable(connection, sql, params)
        )
        result = [
            {
                "model_id": model_id,
                "executions": n,
                "success_rate": rate(int(successful), n),
                "avg_duration_ms": _round(avg_duration),
                "p95_duration_ms": None if p95.get(model_id) is None else round(float(p95[model_id]), 2),
                "avg_cost": money(_money(cost) / n),
                "total_tokens": int(tokens or 0),
            }
            for model_id, n, successful, avg_duration, _, cost, tokens in rows
        ]
        result.sort(key=lambda row: (-row["executions"], row["model_id"]))
        return result

    # -- spend by the model that answered (SPEC section 15) ------------------------------------

    def _models_from_rollups(self, *, with_p95: bool) -> dict[str, dict[str, Any]] | None:
        """Spend by the model that answered from the rollups: ``{model: {executions, successful,
        avg_duration, cost, tokens, p95}}`` (``p95`` with ``with_p95``), or None when the rows must
        answer."""
        plan = self.rollup_plan()
        if plan is None:
            return None
        roots = self.analysed_roots()
        counts = rollup_reads.histogram(roots, plan, by_model=True) if with_p95 else {}
        if counts is None:
            return None

        def edge_spend(edges: list[Any]) -> rollup_reads.Statement | None:
            spend = edges[0].spend_by_model_sql(*edges[1:]) if edges else None
            if spend is None:
                return None
            sql, params = spend
            return (
                sql + "SELECT model_id, status, SUM(counted), SUM(cost), SUM(tokens), SUM(duration_ms), "
                "COUNT(duration_ms) FROM used GROUP BY model_id, status",
                params,
            )

        models_used: dict[str, dict[str, Any]] = {}
        for (model_id, status), values in rollup_reads.model_totals(roots, plan, edge_spend).items():
            row = models_used.setdefault(
                model_id, {"executions": 0, "successful": 0, "cost": ZERO, "tokens": 0, "duration_sum": 0,
                           "duration_count": 0}
            )  # fmt: skip
            row["executions"] += values["model_executions"]
            row["successful"] += values["model_executions"] if status == "success" else 0
            row["cost"] += values["model_cost"]
            row["tokens"] += values["model_tokens"]
            row["duration_sum"] += values["model_duration_sum"]
            row["duration_count"] += values["model_duration_count"]
        for model_id, row in models_used.items():
            row["avg_duration"] = (
                row["duration_sum"] / row["duration_count"] if row["duration_count"] else None
            )
            row["tokens"] = int(row["tokens"])
            if with_p95:
                (p95,) = latency.percentiles(counts.get(model_id, {}), (95,))
                row["p95"] = None if p95 is None else round(p95, 2)
        return models_used

    def spend_by_model_sql(self, *others: ExecutionQuerySet) -> tuple[str, list[Any]] | None:
        """The SQL of common table expressions over the root executions of this queryset (and of
        ``others``, added with UNION ALL: the partial hours at both edges of a period), and
        its parameters, ending with ``used (root_id, status, duration_ms, model_id, cost, tokens,
        counted)``: the spend of each root execution by model, with the root's own status and
        duration, one row per root and model (``counted`` is 1: count those for "roots that used it").

        A root's spend is its ``model_spend`` (recorded with it: its llm spans and those of the
        executions nested in it, by model, with what its totals hold beyond them under the model that
        answered); a root without one (no llm span spent anything, or a row a host wrote itself) spent
        its ``total_cost`` and ``total_tokens`` on the model that answered, its ``chosen_model_id``,
        else its ``model_id``. The rollups add the same amounts (``llm_agents.db.rollups``). None when
        this queryset can match no row (``none()``, an empty ``__in``).
        """
        connection = connections[self.db]
        selects: list[str] = []
        roots_params: list[Any] = []
        for queryset in (self, *others):
            try:
                select, params = (
                    queryset.analysed_roots()
                    .order_by()
                    .values_list(
                        "id",
                        "status",
                        "duration_ms",
                        "total_cost",
                        "total_tokens",
                        "model_id",
                        "chosen_model_id",
                        "model_spend",
                    )  # fmt: skip
                    .query.sql_with_params()
                )
            except EmptyResultSet:
                continue
            selects.append(select)  # no ORDER BY or LIMIT: SQLite takes no parentheses here
            roots_params.extend(params)
        if not selects:
            return None
        roots_sql = " UNION ALL ".join(selects)
        dialect = rollups.Dialect(connection.vendor)
        sql = f"""
        WITH roots (id, status, duration_ms, total_cost, total_tokens, model_id, chosen_model_id, model_spend)
            AS ({roots_sql}),
        spending (id, status, duration_ms, total_cost, total_tokens, answered, spend) AS (
            SELECT id, status, duration_ms, total_cost, total_tokens,
                COALESCE(NULLIF(chosen_model_id, ''), model_id), {dialect.spend("model_spend")}
            FROM roots
        ),
        used (root_id, status, duration_ms, model_id, cost, tokens, counted) AS (
            SELECT e.id, e.status, e.duration_ms, s.key, {dialect.element("s.value", 0, "money")},
                {dialect.element("s.value", 1, "count")}, 1
            FROM spending e, {dialect.each("e.spend")} s
            UNION ALL
            SELECT e.id, e.status, e.duration_ms, e.answered, e.total_cost, e.total_tokens, 1
            FROM spending e WHERE NOT EXISTS (SELECT 1 FROM {dialect.each("e.spend")} n)
        )
        """
        return sql, list(roots_params)

    def _run_sql(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def _spend_by_model(self) -> list[dict[str, Any]]:
        """``[{model_id, total_cost, executions, total_tokens}]`` by the model that answered, costliest
        first, in one query (see :meth:`spend_by_model_sql`); ``executions`` counts the root executions that
        used the model."""
        from_rollups = self._models_from_rollups(with_p95=False)
        if from_rollups is not None:
            result = [
                {"model_id": model_id, "total_cost": money(row["cost"]), "executions": row["executions"],
                 "total_tokens": row["tokens"]}
                for model_id, row in from_rollups.items()
            ]  # fmt: skip
            result.sort(key=lambda row: (-row["total_cost"], -row["executions"], row["model_id"]))
            return result
        spend = self.spend_by_model_sql()
        if spend is None:
            return []
        sql, params = spend
        rows = self._run_sql(
            sql + "SELECT model_id, SUM(cost), SUM(counted), SUM(tokens) FROM used GROUP BY model_id", params
        )
        result = [
            {
                "model_id": model_id,
                "total_cost": _money(cost),
                "executions": n,
                "total_tokens": int(tokens or 0),
            }
            for model_id, cost, n, tokens in rows
        ]
        result.sort(key=lambda row: (-row["total_cost"], -row["executions"], row["model_id"]))
        return result
