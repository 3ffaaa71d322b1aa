"""Alert rules evaluated over recent executions (SPEC section 19).

A rule's window is ``[now - window_minutes, now)``; anomaly rules also measure the 24 windows of the
same length before it, back to back. Every metric but ``budget_percent`` counts the root executions
of no evaluation run, filtered by the rule's agent, model (the model that answered: the
``chosen_model_id`` of a fallback, else ``model_id``, as the rollups' ``model_used`` and the spend by
model) and tenant.

Rules are read in groups of one window length, the anomaly rules' 25 windows apart from the current
window of the others: one query sums the executions, failures and cost of every window per agent,
model and tenant (only those the rules ask for are told apart, :class:`Keys`), another counts their
durations per latency bucket (p95 within 1%, :mod:`llm_agents.latency`), and each rule then picks
its filter's groups. Windows shorter than an hour are read from the rows. With ``ROLLUPS``
longer ones are differences of totals at their boundaries (:meth:`Windows.pieces`): the whole
hours between the boundaries' nearest hours come from the hourly rollups (for windows of a day or
more, the whole days between their nearest days from the daily rollups, and the hours from those
days to the nearest hours), and the rows only within half an hour of each boundary, added or taken
away, and the executions still running, which the rollups leave out. A p95 filtered by agent has
no histogram to read and counts the durations of that agent's rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    CharField,
    Count,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce, NullIf
from django.db.models.lookups import In
from django.db.models.query import QuerySet
from django.utils import timezone

from .. import latency
from ..budgets import local_day
from ..conf import app_settings
from ..db import rollups as sql
from ..db.statements import without_jit
from ..failures import FAILED_STATUSES
from ..models import AgentPause, AlertEvent, AlertRule, Execution, Score
from ..models.rollup_reads import DAY, HOUR, floor
from ..models.rollups import (
    DailyDurations,
    DailyLatency,
    DailyRollup,
    DailyTotals,
    HourlyDurations,
    HourlyLatency,
    HourlyRollup,
    HourlyTotals,
)
from ..money import money
from ..statistics import rate
from .delivery import record_event

logger = logging.getLogger("llm_agents")

#: Anomaly rules compare the current window with this many earlier ones…
EARLIER_WINDOWS = 24
#: …of which at least this many must have had data.
MIN_WINDOWS_WITH_DATA = 12
#: A rule's filters, in the order of the group keys (g_agent, g_model, g_tenant).
FILTERS = ("agent_type", "model_id", "tenant_id")
#: Metrics whose value in a window without executions is 0 (the others have none).
COUNTED = (AlertRule.Metric.COST, AlertRule.Metric.EXECUTIONS)


#: A range of moments ``[low, high)`` read as one group, and the id of that group.
Span = tuple[dt.datetime, dt.datetime, int]


@dataclass(slots=True)
class Pieces:
    """Where a read finds its windows: spans of the daily and hourly rollups and of the rows, each
    with its effects, the ``(window, sign)`` pairs its figures are added to (see :meth:`Windows.pieces`).
    With rollups the rows read are the finished ones, and ``running`` holds every window again for
    the executions still running, which the rollups leave out."""

    days: list[Span] = field(default_factory=list)
    hours: list[Span] = field(default_factory=list)
    rows: list[Span] = field(default_factory=list)
    running: list[Span] = field(default_factory=list)
    effects: list[tuple[tuple[int, int], ...]] = field(default_factory=list)

    def add(
        self, spans: list[Span], low: dt.datetime, high: dt.datetime, effects: Iterable[tuple[int, int]]
    ) -> None:
        effects = tuple(effects)
        if low < high and effects:
            spans.append((low, high, len(self.effects)))
            self.effects.append(effects)


@dataclass(slots=True)
class Windows:
    """``count`` windows of ``minutes`` ending at ``now``, newest first: window 0 is
    ``[now - minutes, now)``, window k the one ``k`` lengths before it."""

    minutes: int
    now: dt.datetime
    count: int

    def bounds(self, index: int) -> tuple[dt.datetime, dt.datetime]:
        length = dt.timedelta(minutes=self.minutes)
        return self.now - (index + 1) * length, self.now - index * length

    @property
    def start(self) -> dt.datetime:
        return self.bounds(self.count - 1)[0]

    def rows(self) -> Pieces:
        """Every window read from the rows."""
        pieces = Pieces()
        self._each_window(pieces, pieces.rows)
        return pieces

    def _each_window(self, pieces: Pieces, spans: list[Span]) -> None:
        for index in range(self.count):
            pieces.add(spans, *self.bounds(index), [(index, 1)])

    def pieces(self) -> Pieces:
        """The windows as signed pieces of the rollups and rows (with ``ROLLUPS``, for windows of an
        hour or more). The windows are back to back: window i is ``P(b_i) - P(b_i+1)``, where b_k =
        now - k lengths are their boundaries and ``P(t)`` the total before ``t``. ``P`` at a boundary is
        ``P`` at its nearest hour, plus the rows from that hour to it (at most 30 minutes, taken
        away when the hour is past it); for windows of a day or more, ``P`` at an hour is ``P`` at
        its nearest day plus the hours from that day to it (at most 12, taken away likewise). So a
        window is the whole days (hours) between its boundaries' anchors and the corrections at its
        two boundaries, each added to the window that ends there and taken from the one that starts
        there. The boundaries being a length apart, the corrections of one kind never overlap."""
        if not app_settings.ROLLUPS or self.minutes < 60:
            return self.rows()
        length = dt.timedelta(minutes=self.minutes)
        boundaries = [self.now - index * length for index in range(self.count + 1)]
        hours = [_nearest(boundary, HOUR) for boundary in boundaries]
        by_day = self.minutes >= 24 * 60
        anchors = [_nearest(hour, DAY) for hour in hours] if by_day else hours
        pieces = Pieces()
        for index in range(self.count):
            pieces.add(
                pieces.days if by_day else pieces.hours, anchors[index + 1], anchors[index], [(index, 1)]
            )
        corrections = [(pieces.rows, hours, boundaries)] + (
            [(pieces.hours, anchors, hours)] if by_day else []
        )
        for spans, froms, tos in corrections:
            for index, (anchor, moment) in enumerate(zip(froms, tos, strict=True)):
                sign = 1 if anchor < moment else -1
                effects = [
                    (window, s)
                    for window, s in ((index, sign), (index - 1, -sign))
                    if 0 <= window < self.count
                ]
                pieces.add(spans, min(anchor, moment), max(anchor, moment), effects)
        self._each_window(pieces, pieces.running)
        return pieces


def _nearest(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    """The multiple of ``step`` (from the UTC epoch) nearest ``moment``; the earlier one on a tie."""
    down = floor(moment, step)
    return down if moment - down <= step / 2 else down + step


def _in_spans(column: str, spans: Sequence[Span], alias: str) -> RawSQL:
    """Whether a moment in ``column`` (of the query's own table) falls in one of the spans: their
    ranges merged and written out once as ``OR``-ed comparisons (as :func:`_span_of`)."""
    operations = connections[alias].ops
    ranges = _merged((low, high) for low, high, _ in spans)
    text = " OR ".join(f"({column} >= %s AND {column} < %s)" for _ in ranges) or "1 = 0"
    bounds = [operations.adapt_datetimefield_value(moment) for moment in itertools.chain(*ranges)]
    return RawSQL(f"({text})", bounds, output_field=BooleanField())


def _span_of(column: str, spans: Sequence[Span], alias: str) -> RawSQL:
    """The span a moment in ``column`` (of the query's own table) falls in: a CASE of the spans'
    starts, latest first (the spans do not overlap, and the moments read are all in one). Written
    out once, not as ``When`` lookups the ORM would resolve for every query."""
    operations = connections[alias].ops
    ordered = sorted(spans, reverse=True)
    whens = " ".join(f"WHEN {column} >= %s THEN {span}" for _, _, span in ordered)
    starts = [operations.adapt_datetimefield_value(low) for low, _, _ in ordered]
    return RawSQL(f"CASE {whens} END", starts, output_field=IntegerField())


def _merged(ranges: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    merged: list[list[Any]] = []
    for low, high in sorted(ranges):
        if merged and merged[-1][1] >= low:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged]


@dataclass(slots=True)
class Measures:
    """What the reads of one window length found per (window, agent, model, tenant): executions,
    failures and cost, duration histograms (those of the rules filtered by agent apart), and score
    sums and counts (per score name)."""

    counts: dict[tuple[int, str, str, str], list[Any]] = field(default_factory=dict)
    durations: dict[tuple[int, str, str, str], dict[int, int]] = field(default_factory=dict)
    agent_durations: dict[tuple[int, str, str, str], dict[int, int]] = field(default_factory=dict)
    scores: dict[tuple[int, str, str, str, str], list[float]] = field(default_factory=dict)

    picked_by: dict[tuple[str, tuple[str, ...]], dict[int, list[Any]]] = field(default_factory=dict)

    def picked(self, found: str, rule: AlertRule, index: int) -> list[Any]:
        """The entries of ``found`` (the name of a field holding them) of window ``index``
        that match the rule's filters (and score name): one pass over them per distinct filter."""
        wanted: tuple[str, ...] = (rule.agent_type, rule.model_id, rule.tenant_id)
        if found == "scores":
            wanted += (rule.score_name,)
        by_window = self.picked_by.get((found, wanted))
        if by_window is None:
            by_window = {}
            for key, value in getattr(self, found).items():
                if all(not want or got == want for want, got in zip(wanted, key[1:], strict=False)):
                    by_window.setdefault(key[0], []).append(value)
            self.picked_by[found, wanted] = by_window
        return by_window.get(index, [])

    def value(self, rule: AlertRule, index: int) -> tuple[float | None, bool]:
        """The rule's metric in window ``index``, and whether the window had data."""
        metric = rule.metric
        if metric == AlertRule.Metric.SCORE_MEAN:
            sums = self.picked("scores", rule, index)
            total, n = sum(entry[0] for entry in sums), sum(entry[1] for entry in sums)
            return (round(total / n, 4), True) if n else (None, False)
        if metric == AlertRule.Metric.P95_LATENCY:
            histogram: dict[int, int] = {}
            for counts in self.picked("agent_durations" if rule.agent_type else "durations", rule, index):
                for bucket, n in counts.items():
                    histogram[bucket] = histogram.get(bucket, 0) + n
            (p95,) = latency.percentiles(histogram, (95,))
            return (None, False) if p95 is None else (round(p95, 2), True)
        entries = self.picked("counts", rule, index)
        executions = sum(entry[0] for entry in entries)
        if metric == AlertRule.Metric.EXECUTIONS:
            return float(executions), executions > 0
        if metric == AlertRule.Metric.COST:
            cost = money(sum((entry[2] for entry in entries), Decimal(0)))
            return float(cost), executions > 0
        if not executions:
            return None, False
        return rate(sum(entry[1] for entry in entries), executions), True


@dataclass(slots=True)
class Measured:
    """What the reads of one window length found for its anomaly rules and for the others."""

    anomalies: Measures
    current: Measures

    def value(self, rule: AlertRule, index: int) -> tuple[float | None, bool]:
        return (self.anomalies if rule.anomaly else self.current).value(rule, index)


# -- reading ---------------------------------------------------------------------------------------


#: What a read groups by: the span, then the keys of :meth:`Keys.groups`.
GROUPS = ("g_span", "g_agent", "g_model", "g_tenant")


@dataclass(frozen=True, slots=True)
class Keys:
    """What a read groups by: the filters its rules set (agent, model, tenant), with the values they
    ask for; ``every`` when one of the rules filters on nothing."""

    values: dict[str, list[str]]
    every: bool

    @classmethod
    def of(cls, rules: Sequence[AlertRule]) -> Keys:
        values: dict[str, set[str]] = {}
        for rule in rules:
            for name in FILTERS:
                if getattr(rule, name):
                    values.setdefault(name, set()).add(getattr(rule, name))
        every = any(not any(getattr(rule, name) for name in FILTERS) for rule in rules)
        return cls({name: sorted(found) for name, found in values.items()}, every)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __bool__(self) -> bool:
        return bool(self.values)

    def _columns(self, model: str) -> dict[str, str]:
        """The columns of the query's own table the keys are read from, as SQL: the model that
        answered is ``model`` (the rollups' ``model_used``), else the rows' chosen model or model."""
        return {
            "agent_type": "agent_type",
            "model_id": model or "COALESCE(NULLIF(chosen_model_id, ''), model_id)",
            "tenant_id": "tenant_id",
        }

    def _in(self, column: str, name: str) -> tuple[str, list[str]]:
        values = self.values[name]
        return f"{column} IN ({_marks(values)})", list(values)

    def group_sql(self, *, model: str = "") -> list[tuple[str, list[str]]]:
        """The group keys ``g_agent``, ``g_model``, ``g_tenant`` as SQL with their parameters: the
        agent, model (that answered) and tenant of the rows of the query's own table when a rule asks
        for that value, else blank: the values no rule asks for fall together, so a read has a few
        groups however many tenants and models there are."""
        columns = self._columns(model)
        found: list[tuple[str, list[str]]] = []
        for name in FILTERS:
            if name in self.values:
                test, params = self._in(columns[name], name)
                found.append((f"CASE WHEN {test} THEN {columns[name]} ELSE '' END", params))
            else:
                found.append(("''", []))
        return found

    def groups(self, *, model: str = "") -> dict[str, Any]:
        """:meth:`group_sql` as annotations, written out once (as :func:`_span_of`)."""
        return {
            group: RawSQL(text, params, output_field=CharField())
            for group, (text, params) in zip(GROUPS[1:], self.group_sql(model=model), strict=True)
        }

    def groups_through(self, prefix: str) -> dict[str, Any]:
        """:meth:`groups` of the execution that ``prefix`` (a relation, ``"execution__"``) leads to."""
        blank = Value("", output_field=CharField())
        columns = {
            "agent_type": F(f"{prefix}agent_type"),
            "model_id": Coalesce(
                NullIf(f"{prefix}chosen_model_id", Value("")), f"{prefix}model_id", output_field=CharField()
            ),
            "tenant_id": F(f"{prefix}tenant_id"),
        }
        return {
            group: Case(
                When(In(columns[name], self.values[name]), then=columns[name]),
                default=blank,
                output_field=CharField(),
            )
            if name in self.values
            else blank
            for name, group in zip(FILTERS, GROUPS[1:], strict=True)
        }

    def wanted_sql(self, *, model: str = "") -> tuple[str, list[str]] | None:
        """The rows some rule counts, as an SQL condition with its parameters: None (all of them) when
        one filters on nothing, else those with a value a rule asks for."""
        if self.every:
            return None
        columns = self._columns(model)
        tests = [self._in(columns[name], name) for name in self.values]
        return f"({' OR '.join(test for test, _ in tests)})", [p for _, params in tests for p in params]

    def wanted(self, *, model: str = "") -> Any:
        """:meth:`wanted_sql` as a filter."""
        found = self.wanted_sql(model=model)
        return Q() if found is None else RawSQL(found[0], found[1], output_field=BooleanField())


def _marks(values: Collection[Any]) -> str:
    """The placeholders of an ``IN`` list of ``values``."""
    return ", ".join(["%s"] * len(values))


def _roots(alias: str) -> QuerySet[Execution]:
    return Execution.objects.using(alias).filter(parent__isnull=True, eval_run__isnull=True).order_by()


def _running(alias: str, pieces: Pieces, keys: Keys) -> QuerySet[Any] | None:
    """The executions still running in the windows (which the rollups leave out), through the index
    on status, by span; None when the read takes every window from the rows."""
    if not pieces.running:
        return None
    return (
        _roots(alias)
        .filter(status=sql.RUNNING)
        .filter(_in_spans("started_at", pieces.running, alias), keys.wanted())
        .annotate(g_span=_span_of("started_at", pieces.running, alias), **keys.groups())
    )


def _finished(
    alias: str, pieces: Pieces, keys: Keys, measures: str, params: Sequence[Any], *, by: str = "",
    condition: str = "", condition_params: Sequence[Any] = (),
) -> list[tuple[str, list[Any]]]:  # fmt: skip
    """The statements reading the rows of ``pieces.rows`` (the finished ones when the rollups answer
    too), one per span: ``g_span``, the keys, then ``measures`` (SQL, with ``params``) per key (and
    ``by``), of the root executions in the span that some rule counts (and meet ``condition``).

    Why one a span: each is a range of ``llm_exec_root_cover_idx``, read from the index alone (it
    covers the keys), where one statement over all the spans ORs their ranges, which PostgreSQL
    reads as a bitmap of the table's pages: at 10M executions 90 ms against 33 for the 26 boundary
    pieces of a 1440-minute anomaly read."""
    operations = connections[alias].ops
    groups = keys.group_sql()
    wanted = keys.wanted_sql()
    where = ["parent_id IS NULL", "eval_run_id IS NULL", "started_at >= %s", "started_at < %s"]
    tail: list[Any] = []
    if pieces.running:
        where.append("status <> %s")
        tail.append(sql.RUNNING)
    if wanted is not None:
        where.append(wanted[0])
        tail += wanted[1]
    if condition:
        where.append(condition)
        tail += condition_params
    head = [p for _, group_params in groups for p in group_params] + list(params)
    table = operations.quote_name(Execution._meta.db_table)
    rest = (
        f"{', '.join(group for group, _ in groups)}, {measures} FROM {table} "
        f"WHERE {' AND '.join(where)} GROUP BY 2, 3, 4{', ' + by if by else ''}"
    )
    return [
        (
            f"SELECT {int(span)} AS g_span, {rest}",
            [
                *head,
                operations.adapt_datetimefield_value(low),
                operations.adapt_datetimefield_value(high),
                *tail,
            ],
        )
        for low, high, span in pieces.rows
    ]


def _run(alias: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[Any, ...]]:
    """The rows of the statements, run as one ``UNION ALL``."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            " UNION ALL ".join(f"SELECT * FROM ({text}) part" for text, _ in statements),
            [p for _, params in statements for p in params],
        )
        return cursor.fetchall()


def _rolled(table: type[Any], alias: str, spans: Sequence[Span], keys: Keys) -> QuerySet[Any]:
    return (
        table.objects.using(alias)
        .filter(_in_spans("start", spans, alias), keys.wanted(model="model_used"))
        .order_by()
        .annotate(g_span=_span_of("start", spans, alias), **keys.groups(model="model_used"))
    )


def read_counts(alias: str, windows: Windows, keys: Keys, into: Measures) -> None:
    """Executions, failures and cost per window and key, in one query."""
    pieces = windows.pieces()
    failed = Q(status__in=FAILED_STATUSES)
    rolled = {
        "n": Sum("executions"),
        "n_failed": Sum(
            Case(When(failed, then=F("executions")), default=Value(0), output_field=BigIntegerField())
        ),
        "cost": Sum("total_cost"),
    }
    # The totals, without the tenant, are a fourth of the rollups' rows.
    tables = (DailyRollup, HourlyRollup) if "tenant_id" in keys else (DailyTotals, HourlyTotals)
    statements: list[tuple[str, Sequence[Any]]] = [
        _rolled(table, alias, spans, keys).values(*GROUPS).annotate(**rolled).query.sql_with_params()
        for table, spans in zip(tables, (pieces.days, pieces.hours), strict=True)
        if spans
    ]
    running = _running(alias, pieces, keys)
    if running is not None:
        statements.append(
            running.values(*GROUPS)
            .annotate(n=Count("*"), n_failed=Count("started_at", filter=failed), cost=Sum("total_cost"))
            .query.sql_with_params()
        )
    statements += _finished(
        alias, pieces, keys,
        f"COUNT(*), SUM(CASE WHEN status IN ({_marks(FAILED_STATUSES)}) THEN 1 ELSE 0 END), SUM(total_cost)",
        list(FAILED_STATUSES),
    )  # fmt: skip
    for span, agent, model, tenant, n, n_failed, cost in _run(alias, statements):
        cost = Decimal(str(cost)) if cost is not None else Decimal(0)
        for index, sign in pieces.effects[int(span)]:
            entry = into.counts.setdefault((index, agent, model, tenant), [0, 0, Decimal(0)])
            entry[0] += sign * int(n or 0)
            entry[1] += sign * int(n_failed or 0)
            entry[2] += sign * cost


#: A typed NULL: the parts of a UNION agree on their columns' types only if they have one.
NONE = Cast(Value(None), IntegerField())


def read_durations(
    alias: str, windows: Windows, keys: Keys, into: Measures, agents: Collection[str] = ()
) -> None:
    """Durations counted per latency bucket, window and key, in one query: the latency rollups
    (keyed by tenant and model used) for the whole days and hours and the rows elsewhere; or, for
    the rules of ``agents`` (which no histogram keeps), the rows of those agents alone, into
    ``agent_durations``."""
    pieces, found = (windows.rows(), into.agent_durations) if agents else (windows.pieces(), into.durations)
    tables = (DailyLatency, HourlyLatency) if keys else (DailyDurations, HourlyDurations)
    statements: list[tuple[str, Sequence[Any]]] = []
    for table, spans in zip(tables, (pieces.days, pieces.hours), strict=True):
        if spans:
            rolled = (
                _rolled(table, alias, spans, keys)
                .values(*GROUPS, "bucket")
                .annotate(duration=NONE, n=Sum("executions"))
            )
            statements.append(rolled.query.sql_with_params())
    running = _running(alias, pieces, keys)  # None for the rules of ``agents``: rows only
    if running is not None:
        statements.append(
            running.filter(duration_ms__isnull=False)
            .annotate(bucket=NONE)
            .values(*GROUPS, "bucket", "duration_ms")
            .annotate(n=Count("*"))
            .query.sql_with_params()
        )
    condition = "duration_ms IS NOT NULL"
    if agents:
        condition += f" AND agent_type IN ({_marks(agents)})"
    statements += _finished(
        alias, pieces, keys, "CAST(NULL AS integer), duration_ms, COUNT(*)", [], by="duration_ms",
        condition=condition, condition_params=sorted(agents),
    )  # fmt: skip
    for span, agent, model, tenant, bucket, duration, n in _run(alias, statements):
        # A row's duration is put in its bucket here: looked up in SQL it cost a probe of the
        # buckets' table per distinct duration, more than the rest of the read.
        bucket = latency.bucket_of(max(int(duration), 0)) if bucket is None else int(bucket)
        for index, sign in pieces.effects[int(span)]:
            counts = found.setdefault((index, agent, model, tenant), {})
            counts[bucket] = counts.get(bucket, 0) + sign * int(n)


def read_scores(alias: str, windows: Windows, keys: Keys, names: set[str], into: Measures) -> None:
    """Sums and counts of the numeric and boolean scores named ``names`` of the root executions of
    each window (by their start), per key, in one query."""
    pieces = windows.rows()
    rows = (
        Score.objects.using(alias)
        .filter(
            name__in=sorted(names),
            execution_started_at__gte=windows.start,
            execution_started_at__lt=windows.now,
            data_type__in=(Score.DataType.NUMERIC, Score.DataType.BOOLEAN),
            value__isnull=False,
            eval_run__isnull=True,
            execution__parent__isnull=True,
            execution__eval_run__isnull=True,
        )
        .order_by()
        .annotate(
            g_span=_span_of("execution_started_at", pieces.rows, alias), **keys.groups_through("execution__")
        )
        .values(*GROUPS, "name")
        .annotate(total=Sum("value"), n=Count("*"))
    )
    for row in rows:
        ((index, _),) = pieces.effects[row["g_span"]]
        key = (index, row["g_agent"], row["g_model"], row["g_tenant"], row["name"])
        into.scores[key] = [float(row["total"]), int(row["n"])]


# -- firing ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Verdict:
    """What a rule measured, and whether it fires."""

    value: float | None
    fires: bool
    threshold: float | None = None
    baseline: float | None = None
    sd: float | None = None


def judge(rule: AlertRule, measures: Measured) -> Verdict:
    """Threshold rules: the current window's value strictly above (below) the threshold. Anomaly
    rules: strictly more than ``sensitivity`` sample standard deviations from the mean of the 24
    earlier windows, given at least 12 of them had data (windows without data count as 0 for cost
    and executions, and not at all for the other metrics)."""
    value, _ = measures.value(rule, 0)
    if value is None:
        return Verdict(None, False)
    if not rule.anomaly:
        assert rule.threshold is not None  # AlertRule.clean()
        beyond = (
            value > rule.threshold
            if rule.comparison == AlertRule.Comparison.ABOVE
            else value < rule.threshold
        )
        return Verdict(value, beyond, threshold=rule.threshold)
    earlier = [measures.value(rule, index) for index in range(1, EARLIER_WINDOWS + 1)]
    if sum(1 for _, had_data in earlier if had_data) < MIN_WINDOWS_WITH_DATA:
        return Verdict(value, False)
    values = [found for found, had_data in earlier if had_data or rule.metric in COUNTED]
    mean = statistics.fmean(float(found or 0) for found in values)
    sd = statistics.stdev(float(found or 0) for found in values)
    bound = mean + rule.sensitivity * sd if value >= mean else mean - rule.sensitivity * sd
    return Verdict(
        value,
        abs(value - mean) > rule.sensitivity * sd,
        threshold=round(bound, 8),
        baseline=round(mean, 8),
        sd=round(sd, 8),
    )


def fire(rule: AlertRule, verdict: Verdict, now: dt.datetime) -> AlertEvent | None:
    """Record the rule's event (and pause its agent with ``pause_agent``) unless another evaluator
    fired it within its cooldown: the claim on ``last_fired_at`` is one conditional UPDATE, so two
    evaluators at once fire a rule once."""
    cutoff = now - dt.timedelta(minutes=rule.cooldown_minutes)
    with transaction.atomic():
        claimed = (
            AlertRule.objects.filter(pk=rule.pk, is_active=True)
            .filter(Q(last_fired_at__isnull=True) | Q(last_fired_at__lte=cutoff))
            .update(last_fired_at=now)
        )
        if not claimed:
            return None
        rule.last_fired_at = now
        payload = {
            "rule": rule.name,
            "rule_id": rule.pk,
            "metric": rule.metric,
            "value": verdict.value,
            "threshold": verdict.threshold,
            "comparison": None if rule.anomaly else rule.comparison,
            "anomaly": rule.anomaly,
            "baseline": verdict.baseline,
            "sd": verdict.sd,
            "sensitivity": rule.sensitivity if rule.anomaly else None,
            "window_minutes": rule.window_minutes,
            "window_start": (now - dt.timedelta(minutes=rule.window_minutes)).isoformat(),
            "fired_at": now.isoformat(),
            "filters": {name: getattr(rule, name) for name in FILTERS},
            "score_name": rule.score_name or None,
            "budget": rule.budget_id,
            "summary": describe(rule, verdict),
        }
        event = record_event(
            channels=rule.channels.all(), rule=rule, value=verdict.value, threshold=verdict.threshold,
            baseline=verdict.baseline, payload=payload, fired_at=now,
        )  # fmt: skip
        if (
            rule.pause_agent
            and not AgentPause.objects.applying_to(rule.agent_type, rule.tenant_id or None, now).exists()
        ):
            AgentPause.objects.create(
                agent_type=rule.agent_type, tenant_id=rule.tenant_id, rule=rule, created_at=now,
                reason=f"alert rule {rule.name}: {describe(rule, verdict)}",
            )  # fmt: skip
    return event


def describe(rule: AlertRule, verdict: Verdict) -> str:
    """One line on why the rule fires: ``error_rate 12.5 above 10 over 60 min``."""
    if rule.anomaly:
        told = f"{verdict.value:g} against a mean of {verdict.baseline:g} (sd {verdict.sd:g})"
    else:
        told = f"{verdict.value:g} {rule.comparison} {rule.threshold:g}"
    return f"{rule.metric} {told} over {rule.window_minutes} min"


def _budget_verdict(rule: AlertRule, now: dt.datetime) -> Verdict:
    budget = rule.budget
    assert budget is not None and rule.threshold is not None  # AlertRule.clean()
    percent = budget.percent_of_limit(budget.current_usage(local_day(now))[0])
    beyond = (
        percent > rule.threshold
        if rule.comparison == AlertRule.Comparison.ABOVE
        else percent < rule.threshold
    )
    return Verdict(percent, beyond, threshold=rule.threshold)


def measure(rules: Sequence[AlertRule], minutes: int, now: dt.datetime, alias: str) -> Measured:
    """The reads the rules of one window length need: the 25 windows of the anomaly rules, the
    current window alone of the others (so that the long reads group only by what anomaly rules
    ask for); in one transaction without JIT compilation (:func:`~llm_agents.db.statements.without_jit`)."""
    found = Measured(Measures(), Measures())
    with without_jit(alias):
        for anomaly, into in ((True, found.anomalies), (False, found.current)):
            windows = Windows(minutes, now, EARLIER_WINDOWS + 1 if anomaly else 1)
            read(alias, windows, [rule for rule in rules if rule.anomaly == anomaly], into)
    return found


def read(alias: str, windows: Windows, rules: Sequence[AlertRule], into: Measures) -> None:
    """What the metrics of ``rules`` need of ``windows``: counts, durations (apart for the rules
    filtered by agent) and scores, each in one query."""
    counted = [rule for rule in rules if rule.metric in (*COUNTED, AlertRule.Metric.ERROR_RATE)]
    if counted:
        read_counts(alias, windows, Keys.of(counted), into)
    timed = [rule for rule in rules if rule.metric == AlertRule.Metric.P95_LATENCY and not rule.agent_type]
    if timed:
        read_durations(alias, windows, Keys.of(timed), into)
    timed = [rule for rule in rules if rule.metric == AlertRule.Metric.P95_LATENCY and rule.agent_type]
    if timed:
        read_durations(alias, windows, Keys.of(timed), into, {rule.agent_type for rule in timed})
    scored = [rule for rule in rules if rule.metric == AlertRule.Metric.SCORE_MEAN]
    if scored:
        read_scores(alias, windows, Keys.of(scored), {rule.score_name for rule in scored}, into)


def judge_all(now: dt.datetime) -> list[tuple[AlertRule, Verdict]]:
    """The verdict on every active rule out of its cooldown at ``now``, writing nothing. A rule
    that cannot be evaluated is logged and left out."""
    alias = Execution.objects.db
    rules = list(AlertRule.objects.filter(is_active=True).select_related("budget").order_by("pk"))
    by_window: dict[int, list[AlertRule]] = {}
    verdicts: list[tuple[AlertRule, Verdict]] = []
    for rule in rules:
        if rule.in_cooldown(now):
            continue
        if rule.metric == AlertRule.Metric.BUDGET_PERCENT:
            try:
                verdicts.append((rule, _budget_verdict(rule, now)))
            except Exception:
                logger.exception("Alert rule %s (%s) could not be evaluated", rule.pk, rule.name)
        else:
            by_window.setdefault(rule.window_minutes, []).append(rule)
    for minutes, group in sorted(by_window.items()):
        try:
            measures = measure(group, minutes, now, alias)
        except Exception:
            logger.exception("Alert rules of %s-minute windows could not be evaluated", minutes)
            continue
        for rule in group:
            try:
                verdicts.append((rule, judge(rule, measures)))
            except Exception:
                logger.exception("Alert rule %s (%s) could not be evaluated", rule.pk, rule.name)
    return verdicts


def evaluate(now: dt.datetime | None = None) -> list[AlertEvent]:
    """Evaluate every active rule at ``now`` (default: now) and fire those whose condition holds and
    that are out of their cooldown; returns the events fired. A rule that cannot be evaluated, or
    fire, is logged and skipped."""
    now = now or timezone.now()
    events = []
    for rule, verdict in judge_all(now):
        if not verdict.fires:
            continue
        try:
            event = fire(rule, verdict, now)
        except Exception:
            logger.exception("Alert rule %s (%s) could not fire", rule.pk, rule.name)
            continue
        if event is not None:
            events.append(event)
    return events
