"""Answers from the rollups (SPEC section 20): which questions they can answer, and how.

:func:`plan_for` reads the filters of a queryset of root executions of no evaluation run (the
rollups keep no other, ``db.rollups.Kept``). When every other filter is one the rollups keep (the
start time, agent, version, model asked for, tenant, status, kind, prompt version) it returns a
:class:`Plan`, else None and the analytics read the rows as before. A plan splits the
period into whole UTC days (read from the daily rollups), whole hours (the hourly rollups) and the
partial hours at its edges (the rows themselves, through the same queryset), and adds the three up,
with the executions still running, which the rollups leave out (the rows again): counts and sums
are the rows' own, to the cent and the token. Durations come from the latency
histograms (:mod:`llm_agents.latency`), within 1%, when the filters are only on time and tenant.

Grouping by local day or hour (trends, timelines) reads hourly rollups and needs ``TIME_ZONE`` to be
a whole number of hours from UTC over the period; otherwise the rows answer.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, TruncHour
from django.db.models.lookups import GreaterThanOrEqual, IsNull, LessThan
from django.db.models.sql.where import WhereNode
from django.utils import timezone

from ..conf import app_settings
from ..db import rollups as sql
from ..failures import FAILED_STATUSES, error_category
from .rollups import (
    DailyDurations,
    DailyLatency,
    DailyModelDurations,
    DailyRollup,
    DailyTotals,
    HourlyDurations,
    HourlyLatency,
    HourlyModelDurations,
    HourlyRollup,
    HourlyTotals,
)

ZERO = Decimal(0)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# Execution field -> rollup key column, for the filters the rollups can answer.
KEYED = {
    "agent_type": "agent_type",
    "agent_version": "agent_version",
    "model_id": "model_id",
    "status": "status",
    "kind": "kind",
    "tenant_id": "tenant_id",
    "prompt_version": "prompt_version_id",
}
#: A rollup measure -> how the rows give it.
ROW_MEASURES: dict[str, Any] = {
    "executions": Count("*"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "cache_write_tokens": Sum("cache_write_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
    "total_tokens": Sum("total_tokens"),
    "input_cost": Sum("input_cost"),
    "output_cost": Sum("output_cost"),
    "total_cost": Sum("total_cost"),
    "cache_hits": Count("started_at", filter=Q(cache_hit=True)),
    "duration_sum": Sum("duration_ms"),
    "duration_count": Count("duration_ms"),
}
MONEY_MEASURES = frozenset({"input_cost", "output_cost", "total_cost", "model_cost"})


@dataclass(frozen=True)
class Plan:
    """What the rollups are asked: key conditions ``(column, values, keep)`` — the column's value in
    ``values`` when ``keep``, not in them otherwise — over ``start <= started_at < end``."""

    conditions: tuple[tuple[str, tuple[Any, ...], bool], ...]
    start: dt.datetime | None
    end: dt.datetime | None

    def only_on(self, columns: Iterable[str]) -> bool:
        allowed = set(columns)
        return all(column in allowed for column, _, _ in self.conditions)

    def pieces(
        self, by_day: bool
    ) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]], list[tuple[Any, Any]]]:
        """The period as (daily ranges, hourly ranges, row ranges); ``None`` for an open end. Daily
        ranges only when ``by_day``."""
        hour_start = ceil(self.start, HOUR) if self.start is not None else None
        hour_end = floor(self.end, HOUR) if self.end is not None else None
        if hour_start is not None and hour_end is not None and hour_start >= hour_end:
            return [], [], [(self.start, self.end)]
        rows: list[tuple[Any, Any]] = []
        if self.start is not None and self.start < hour_start:  # type: ignore[operator]
            rows.append((self.start, hour_start))
        if self.end is not None and hour_end < self.end:  # type: ignore[operator]
            rows.append((hour_end, self.end))
        if not by_day:
            return [], [(hour_start, hour_end)], rows
        day_start = ceil(hour_start, DAY) if hour_start is not None else None
        day_end = floor(hour_end, DAY) if hour_end is not None else None
        if day_start is not None and day_end is not None and day_start >= day_end:
            return [], [(hour_start, hour_end)], rows
        hours: list[tuple[Any, Any]] = []
        if hour_start is not None and hour_start < day_start:  # type: ignore[operator]
            hours.append((hour_start, day_start))
        if hour_end is not None and day_end < hour_end:  # type: ignore[operator]
            hours.append((day_end, hour_end))
        return [(day_start, day_end)], hours, rows


def floor(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    utc = moment.astimezone(dt.UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((utc - epoch) // step) * step


def ceil(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    down = floor(moment, step)
    return down if down == moment else down + step


def plan_for(queryset: Any) -> Plan | None:
    """The rollup plan of a queryset of root executions of no evaluation run, or None when the rows
    must answer."""
    if not app_settings.ROLLUPS:
        return None
    query = queryset.query
    if (
        query.distinct
        or query.low_mark
        or query.high_mark is not None
        or query.extra
        or query.combinator
        or query.model is None
        or query.model._meta.db_table != sql.EXECUTIONS
    ):
        return None
    table = query.model._meta.db_table
    conditions: list[tuple[str, tuple[Any, ...], bool]] = []
    bounds: dict[str, list[dt.datetime]] = {"start": [], "end": []}
    root = production = False
    tenant_excluded: set[str] = set()
    for child in query.where.children:
        if isinstance(child, WhereNode):
            found = _tenant_node(child, table)
            if found == "blank":
                conditions.append(("tenant_id", ("",), True))
            elif found in ("not_null", "not_empty"):
                tenant_excluded.add(found)
            else:
                return None
            continue
        column = _column(child, table)
        if column is None:
            return None
        name, value = column, child.rhs
        if name == "parent" and isinstance(child, IsNull) and value is True:
            root = True
        elif name == "eval_run" and isinstance(child, IsNull) and value is True:
            production = True
        elif (
            name == "started_at" and isinstance(child, GreaterThanOrEqual) and isinstance(value, dt.datetime)
        ):
            bounds["start"].append(value)
        elif name == "started_at" and isinstance(child, LessThan) and isinstance(value, dt.datetime):
            bounds["end"].append(value)
        elif name in KEYED and child.lookup_name in ("exact", "in"):
            values = tuple(getattr(v, "pk", v) for v in (value if child.lookup_name == "in" else (value,)))
            if name == "tenant_id" and any(v in ("", None) for v in values):
                return None
            if any(v is None or hasattr(v, "resolve_expression") for v in values):
                return None
            conditions.append((KEYED[name], values, True))
        elif name == "prompt_version" and child.lookup_name == "isnull" and isinstance(value, bool):
            conditions.append(("prompt_version_id", (0,), value))
        else:
            return None
    if tenant_excluded:
        if tenant_excluded != {"not_null", "not_empty"}:
            return None
        conditions.append(("tenant_id", ("",), False))
    if not root or not production:
        return None
    start = max(bounds["start"]) if bounds["start"] else None
    end = min(bounds["end"]) if bounds["end"] else None
    return Plan(tuple(conditions), start, end)


def period_of(queryset: Any) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    """``(start, end)`` when a queryset of executions is filtered by nothing but a period of
    ``started_at`` (``start <= started_at < end``, either end open: None), whatever ``ROLLUPS`` says;
    None when it has any other filter (or a slice, distinct, ...). An unfiltered queryset gives
    ``(None, None)``."""
    query = queryset.query
    if (
        query.distinct
        or query.low_mark
        or query.high_mark is not None
        or query.extra
        or query.combinator
        or query.model is None
        or query.model._meta.db_table != sql.EXECUTIONS
        or query.where.connector != "AND"
        or query.where.negated
    ):
        return None
    table = query.model._meta.db_table
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    for child in query.where.children:
        if isinstance(child, WhereNode) or _column(child, table) != "started_at":
            return None
        if isinstance(child, GreaterThanOrEqual) and isinstance(child.rhs, dt.datetime):
            starts.append(child.rhs)
        elif isinstance(child, LessThan) and isinstance(child.rhs, dt.datetime):
            ends.append(child.rhs)
        else:
            return None
    return (max(starts) if starts else None, min(ends) if ends else None)


def _column(lookup: Any, table: str) -> str | None:
    """The Execution field a lookup filters on, when it compares a column of the table itself with
    plain values."""
    lhs = getattr(lookup, "lhs", None)
    target = getattr(lhs, "target", None)
    if target is None or getattr(lhs, "alias", None) != table or type(lhs).__name__ != "Col":
        return None
    if hasattr(lookup.rhs, "resolve_expression"):
        return None
    return str(target.name)


def _tenant_node(node: WhereNode, table: str) -> str | None:
    """Recognise ``without_tenant()`` (``blank``) and the two halves of ``with_tenant()``."""
    lookups = node.children
    if any(isinstance(child, WhereNode) for child in lookups) or any(
        _column(c, table) != "tenant_id" for c in lookups
    ):
        return None
    kinds = {(type(c).__name__, getattr(c, "rhs", None)) for c in lookups}
    if node.connector == "OR" and not node.negated and kinds == {("IsNull", True), ("Exact", "")}:
        return "blank"
    if node.connector == "AND" and node.negated and kinds == {("IsNull", True)}:
        return "not_null"
    if (
        node.connector == "AND"
        and node.negated
        and kinds in ({("Exact", "")}, {("Exact", ""), ("IsNull", False)})
    ):
        return "not_empty"
    return None


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class Totals:
    """Sums per group: ``groups[key] = {measure: value}``."""

    measures: Sequence[str]
    groups: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)

    def add(self, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        into = self.groups.setdefault(key, dict.fromkeys(self.measures, 0))
        for measure in self.measures:
            value = values.get(measure)
            if value is None:
                continue
            if measure in MONEY_MEASURES:
                value = Decimal(str(value)) if not isinstance(value, Decimal) else value
            into[measure] += value

    def total(self) -> dict[str, Any]:
        out = dict.fromkeys(self.measures, 0)
        for values in self.groups.values():
            for measure in self.measures:
                out[measure] += values[measure]
        return out


def _range_q(prefix: str, low: Any, high: Any) -> Q:
    condition = Q()
    if low is not None:
        condition &= Q(**{f"{prefix}__gte": low})
    if high is not None:
        condition &= Q(**{f"{prefix}__lt": high})
    return condition


def _key_q(plan: Plan) -> Q:
    condition = Q()
    for column, values, keep in plan.conditions:
        lookup = Q(**{f"{column}__in": values})
        condition &= lookup if keep else ~lookup
    return condition


def totals(
    queryset: Any,
    plan: Plan,
    group_by: Sequence[str] = (),
    measures: Sequence[str] = tuple(ROW_MEASURES),
    *,
    local: str | None = None,
    edges: bool = True,
) -> Totals:
    """The sums of ``measures`` per ``group_by`` (rollup key columns) over the plan's period, from
    the rollups and the rows at the edges, in one query. ``local`` ("day" or "hour") adds the local
    day or hour the executions started in (``TIME_ZONE``) as the last item of each group key, as a
    date (day) or an aware datetime (hour). ``edges`` False leaves the rows at the edges out."""
    if local is None and edges:
        shared = _shared_totals(queryset.db, plan, group_by, measures)
        if shared is not None:
            return shared
    result = Totals(measures)
    zone = timezone.get_default_timezone()
    combined, names = _totals_query(queryset, plan, group_by, measures, local=local, edges=edges)
    if combined is None:
        return result
    for row in combined:
        key = tuple(row[name] for name in names[: len(group_by)])
        if local:
            key += (_local(row["g_start"], local, zone),)
        result.add(key, {measure: row[f"m{index}"] for index, measure in enumerate(measures)})
    return result


def _totals_query(
    queryset: Any,
    plan: Plan,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    local: str | None,
    edges: bool,
) -> tuple[Any, list[str]]:
    """:func:`totals`' query (a values queryset of ``g0…``, ``g_start`` with ``local``, then
    ``m0…``), or None when the plan has nothing to read; and the names of its group columns."""
    # Local days are UTC days, and the daily rollups serve them, only where the zone is UTC.
    by_day = local is None or (local == "day" and zone_offsets(plan) == {dt.timedelta(0)})
    days, hours, rows = plan.pieces(by_day=by_day)
    # At least one column to group on (a query grouped on nothing would not be one row per group).
    grouped = list(group_by) or ["status"]
    names = [f"g{index}" for index in range(len(grouped))] + (["g_start"] if local else [])
    sums = {f"m{index}": Sum(measure) for index, measure in enumerate(measures)}
    parts = []
    # The totals answer when the question needs none of the keys they leave out.
    narrow = plan.only_on(sql.TOTALS_KEYS) and set(grouped) <= set(sql.TOTALS_KEYS)
    daily, hourly = (DailyTotals, HourlyTotals) if narrow else (DailyRollup, HourlyRollup)
    for model, ranges in ((daily, days), (hourly, hours)):
        if ranges:
            groups = {name: F(column) for name, column in zip(names, grouped, strict=False)}
            if local:
                groups["g_start"] = F("start")
            parts.append(
                model.objects.using(queryset.db)
                .filter(_key_q(plan))
                .filter(_ranges_q("start", ranges))
                .order_by()
                .annotate(**groups)
                .values(*names)
                .annotate(**sums)
            )
    for edge in row_parts(queryset, plan, rows) if edges else ():
        parts.append(
            edge.order_by()
            .annotate(**_row_groups(names, grouped, local))
            .values(*names)
            .annotate(**{f"m{index}": ROW_MEASURES[measure] for index, measure in enumerate(measures)})
        )
    if not parts:
        return None, names
    return (parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]), names


#: The reads :func:`shared_totals` made: (database alias, plan, keys grouped by, totals).
_SHARED: ContextVar[tuple[tuple[str, Plan, tuple[str, ...], Totals], ...]] = ContextVar(
    "llm_agents_shared_totals", default=()
)


@contextmanager
def shared_totals(queryset: Any, group_by: Sequence[str]) -> Iterator[None]:
    """Within the block, the totals of the root executions of ``queryset`` — or of those of them
    filtered on keys of ``group_by`` (a status, an agent) — grouped by any of ``group_by``, are summed
    in Python from one read of every measure made on entry, instead of a query each: the dashboard
    asks for the summary, the summary by agent and the error categories of one period. Grouping by
    local day or hour still queries. Nothing is shared when the rows answer ``queryset``."""
    roots = queryset.analysed_roots()
    plan = plan_for(roots)
    if plan is None:
        yield
        return
    found = totals(roots, plan, group_by, tuple(ROW_MEASURES))
    token = _SHARED.set((*_SHARED.get(), (roots.db, plan, tuple(group_by), found)))
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared_totals(alias: str, plan: Plan, group_by: Sequence[str], measures: Sequence[str]) -> Totals | None:
    """``totals()`` from a read of :func:`shared_totals` that holds it, or None."""
    for db, base, grouped, found in _SHARED.get():
        extra = set(plan.conditions) - set(base.conditions)
        if (
            db != alias
            or (base.start, base.end) != (plan.start, plan.end)
            or not set(base.conditions) <= set(plan.conditions)
            or not set(group_by) <= set(grouped)
            or not set(measures) <= set(found.measures)
            or any(column not in grouped for column, _, _ in extra)
        ):
            continue
        result = Totals(measures)
        positions = [grouped.index(column) for column in group_by]
        checks = [(grouped.index(column), set(values), keep) for column, values, keep in extra]
        for key, values in found.groups.items():
            if all((key[index] in values_) == keep for index, values_, keep in checks):
                result.add(tuple(key[index] for index in positions), values)
        return result
    return None


def edge_rows(queryset: Any, rows: Sequence[tuple[Any, Any]]) -> list[Any]:
    """``queryset`` narrowed to each range of ``rows`` (the partial hours at the period's edges), one
    queryset per range: ANDed with the period's own bounds, a single range is what the index scans
    (PostgreSQL keeps the tightest bounds), where an OR of two would be a filter on a scan of the
    whole period."""
    return [queryset.filter(_range_q("started_at", low, high)) for low, high in rows]


def row_parts(queryset: Any, plan: Plan, rows: Sequence[tuple[Any, Any]]) -> list[Any]:
    """The querysets whose rows are added to the rollups' part of a plan: the partial hours at the
    edges (:func:`edge_rows`) and the running executions of the whole hours, which the rollups leave
    out until they finish (``db.rollups.Kept``); an index on (status, started_at) finds those few."""
    parts = edge_rows(queryset, rows)
    low = ceil(plan.start, HOUR) if plan.start is not None else None
    high = floor(plan.end, HOUR) if plan.end is not None else None
    if low is None or high is None or low < high:
        parts.append(queryset.filter(status=sql.RUNNING).filter(_range_q("started_at", low, high)))
    return parts


def _ranges_q(field: str, ranges: Sequence[tuple[Any, Any]]) -> Q:
    condition = Q()
    for low, high in ranges:
        condition |= _range_q(field, low, high)
    return condition


def _row_groups(names: Sequence[str], grouped: Sequence[str], local: str | None) -> dict[str, Any]:
    """The rows' expressions of the rollup keys ``grouped`` (as the triggers compute them)."""
    groups: dict[str, Any] = {}
    for name, column in zip(names, grouped, strict=False):
        if column == "error_category":
            groups[name] = Case(
                When(status__in=FAILED_STATUSES, then=error_category()),
                default=Value(""),
                output_field=CharField(),
            )
        elif column == "tenant_id":
            groups[name] = Coalesce("tenant_id", Value(""), output_field=CharField())
        elif column == "prompt_version_id":
            groups[name] = Coalesce(F("prompt_version"), Value(0), output_field=BigIntegerField())
        else:
            groups[name] = F(column)
    if local:
        groups["g_start"] = TruncHour("started_at", tzinfo=dt.UTC)
    return groups


def zone_offsets(plan: Plan) -> set[dt.timedelta]:
    """The offsets from UTC that ``TIME_ZONE`` takes over the plan's period, sampled every 12 hours
    (real zones change at most twice a year, at a whole local hour); an open start looks back 400 days."""
    zone = timezone.get_default_timezone()
    end = plan.end or timezone.now()
    moment = plan.start or end - dt.timedelta(days=400)
    offsets = set()
    while moment <= end + DAY:
        offsets.add(timezone.localtime(moment, zone).utcoffset() or dt.timedelta(0))
        moment += dt.timedelta(hours=12)
    return offsets


def whole_hour_zone(plan: Plan) -> bool:
    """Whether local hours (and so local days) are whole UTC hours over the plan's period: then the
    hourly rollups can be grouped by local day or hour (``Asia/Kolkata`` is not; the rows answer)."""
    return all(offset.total_seconds() % 3600 == 0 for offset in zone_offsets(plan))


def _local(start: Any, unit: str, zone: Any) -> Any:
    if isinstance(start, str):
        start = dt.datetime.fromisoformat(start)
    if timezone.is_naive(start):
        start = start.replace(tzinfo=dt.UTC)
    moment = timezone.localtime(start, zone)
    return moment.date() if unit == "day" else moment.replace(minute=0, second=0, microsecond=0)


#: SQL (a statement that may start with WITH) and its parameters.
Statement = tuple[str, list[Any]]


def model_totals(
    queryset: Any, plan: Plan, spend: Callable[[list[Any]], Statement | None]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model used, status): ``model_executions``, ``model_cost``, ``model_tokens``,
    ``model_duration_sum``, ``model_duration_count`` — the rollups' spend by model, with the rows'
    (the partial hours at the edges and the running executions, :func:`row_parts`) from
    ``spend(querysets)``: a statement selecting ``(model, status, executions, cost, tokens,
    duration_sum, duration_count)``, or None when they can hold no row. One query."""
    measures = (
        "model_executions",
        "model_cost",
        "model_tokens",
        "model_duration_sum",
        "model_duration_count",
    )
    days, hours, rows = plan.pieces(by_day=True)
    # The rollups' part: the plan without its rows (spend()'s part).
    rolled, _ = _totals_query(
        queryset.none(), plan, ("model_used", "status"), measures, local=None, edges=False
    )
    out = Totals(measures)
    for from_rollups, (model_used, status, *values) in _one_query(
        queryset.db, rolled, spend(row_parts(queryset, plan, rows))
    ):
        out.add((model_used, status), dict(zip(measures, _sums(measures, values, from_rollups), strict=True)))
    return {key: values for key, values in out.groups.items() if values["model_executions"]}


#: How Django reads a sum of a money column on SQLite (a float): 15 significant digits.
FLOAT_MONEY = decimal.Context(prec=15)


def _sums(measures: Sequence[str], values: Sequence[Any], from_rollups: bool) -> list[Any]:
    """Raw sums as the ORM gives them: counts as int (PostgreSQL sums bigints as numeric), and the
    rollups' money, a float on SQLite, as Django's Sum() reads it."""
    out = []
    for measure, value in zip(measures, values, strict=True):
        if value is not None and measure not in MONEY_MEASURES:
            value = int(value)
        elif from_rollups and isinstance(value, float):
            value = FLOAT_MONEY.create_decimal_from_float(value)
        out.append(value)
    return out


def _one_query(alias: str, rolled: Any, rows: Statement | None) -> list[tuple[bool, tuple[Any, ...]]]:
    """The rows of ``rolled`` (a values queryset over the rollups, or None) and of ``rows`` (a
    statement over execution rows, or None), with the same columns, in one query: ``(from the
    rollups, row)`` pairs."""
    statements = []
    if rows is not None:
        statements.append((f"SELECT 0, rows_part.* FROM ({rows[0]}) rows_part", list(rows[1])))
    if rolled is not None:
        text, params = rolled.query.sql_with_params()
        statements.append((f"SELECT 1, rolled.* FROM ({text}) rolled", list(params)))
    if not statements:
        return []
    with connections[alias].cursor() as cursor:
        cursor.execute(
            " UNION ALL ".join(text for text, _ in statements),
            [param for _, params in statements for param in params],
        )
        return [(bool(row[0]), row[1:]) for row in cursor.fetchall()]


def histogram(queryset: Any, plan: Plan, *, by_model: bool = False) -> dict[str, dict[int, int]] | None:
    """Duration counts per latency bucket (``{"": {bucket: n}}``, or per model used with ``by_model``:
    counted for every model a root execution used), or None when the plan filters on more than the
    tenant (the histograms keep no other key). One query (two with ``by_model`` and edges)."""
    if not plan.only_on(("tenant_id",)):
        return None
    measure = "model_executions" if by_model else "executions"
    out: dict[str, dict[int, int]] = {}
    days, hours, rows = plan.pieces(by_day=True)
    parts = []
    # All traffic, and every model, have histograms of their own, without the tenant: a few hundred
    # rows a day (per model) rather than one per tenant, model used and bucket.
    if plan.conditions:
        tables: tuple[Any, Any] = (DailyLatency, HourlyLatency)
    else:
        tables = (
            (DailyModelDurations, HourlyModelDurations) if by_model else (DailyDurations, HourlyDurations)
        )
        measure = "executions"
    for model, ranges in zip(tables, (days, hours), strict=True):
        if ranges:
            parts.append(
                model.objects.using(queryset.db)
                .filter(_key_q(plan))
                .filter(_ranges_q("start", ranges))
                .order_by()
                .annotate(g_model=F("model_used") if by_model else Value(""), g_bucket=F("bucket"))
                .values("g_model", "g_bucket")
                .annotate(n=Sum(measure))
            )
    bucket = RawSQL(sql.bucket_lookup("duration_ms")[1:-1], ())
    for edge in row_parts(queryset, plan, rows) if not by_model else ():
        parts.append(
            edge.filter(duration_ms__isnull=False)
            .order_by()
            .annotate(g_model=Value(""), g_bucket=ExpressionWrapper(bucket, output_field=IntegerField()))
            .values("g_model", "g_bucket")
            .annotate(n=Count("*"))
        )
    combined = (parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]) if parts else None
    if not by_model:
        for row in combined if combined is not None else ():
            counts = out.setdefault(row["g_model"], {})
            counts[row["g_bucket"]] = counts.get(row["g_bucket"], 0) + row["n"]
        return out
    edges = [edge.filter(duration_ms__isnull=False) for edge in row_parts(queryset, plan, rows)]
    for _, (model_used, bucket_index, n) in _one_query(queryset.db, combined, _durations_by_model(edges)):
        counts = out.setdefault(model_used, {})
        counts[int(bucket_index)] = counts.get(int(bucket_index), 0) + int(n)
    return out


def _durations_by_model(edges: list[Any]) -> Statement | None:
    """The latency buckets of the root executions of ``edges`` per model they used (the rows'
    part of the per-model histograms): ``(model, bucket, executions)``."""
    spend = edges[0].spend_by_model_sql(*edges[1:]) if edges else None
    if spend is None:
        return None
    text, params = spend
    # Each distinct duration is looked up once, after grouping: a lookup for every row would make
    # the statement look costly enough to PostgreSQL's planner (which takes jsonb_each() for 100
    # rows a row) for its default JIT compilation, 40 ms at 10M executions for a read of a few.
    return (
        text + f"SELECT d.model_id, {sql.bucket_lookup('d.duration_ms')}, d.n FROM (SELECT model_id, "
        "duration_ms, COUNT(*) AS n FROM used WHERE duration_ms IS NOT NULL GROUP BY 1, 2) d",
        params,
    )
