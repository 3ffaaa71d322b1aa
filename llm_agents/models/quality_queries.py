"""Sessions and scores as Execution queries (SPEC section 16): mixed into ``ExecutionQuerySet``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models import Avg, Count, F, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.db.models.query import ValuesIterable
from django.utils import timezone

from ..db import fastpaths
from ..failures import FAILED_STATUSES
from ..money import money
from ..statistics import rate
from . import rollup_reads
from .quality import Score, ScoreConfig

#: scores_by(name, group_by) -> the Execution field grouped on ("day": the local day it started).
SCORE_GROUPS = {
    "agent_type": "agent_type",
    "model_id": "model_id",
    "agent_version": "agent_version",
    "prompt_version": "prompt_version",
    "day": "day",
}
NUMERIC, BOOLEAN, CATEGORICAL = "numeric", "boolean", "categorical"
MEAN_PLACES = 4

# The names of the aggregates of sessions() in SQL, and the keys of its rows: an annotation may not
# take the name of a field of the model (total_cost, total_tokens, user_id).
SESSION_COLUMNS = {
    "session_id": "session_id",
    "latest_user_id": "user_id",
    "n_executions": "executions",
    "first_started": "first_started_at",
    "last_started": "last_started_at",
    "sum_cost": "total_cost",
    "sum_tokens": "total_tokens",
    "n_failed": "failed",
}


class SessionRows(ValuesIterable):
    """The rows of :class:`Sessions` under the SPEC's keys, money to 8 places."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in super().__iter__():
            session = {key: row[column] for column, key in SESSION_COLUMNS.items()}
            session["total_cost"] = money(session["total_cost"])
            session["total_tokens"] = session["total_tokens"] or 0
            session["user_id"] = session["user_id"] or ""
            yield session


class GroupSubquery(Subquery):
    """A subquery in the select list of a grouped query, correlated with its grouped columns only:
    computed once per group, after the grouping (Django would add a subquery to the GROUP BY, which
    computes it for every row before grouping)."""

    def get_group_by_cols(self) -> list[Any]:
        return []


class Sessions:
    """The rows of :meth:`QualityQueries.sessions`: a lazy sequence of sessions, newest activity
    first, computed in the database when sliced (``sessions()[:50]``, as a paginator does) or
    iterated; ``count()`` (and ``len()``) counts the sessions. ``queryset`` is every row as one
    grouped ``values()`` queryset (iterating it gives the same dicts).

    Grouping every root execution by session reads the whole history (``llm_exec_session_idx``,
    whose key is ``(session_id, started_at)`` and which covers what is summed) before the first
    row; a page needs far less. The sessions with the newest activity are the first distinct
    sessions met walking the root executions newest first, so a page ``[start:stop]`` is found
    from the newest ``stop × 20`` roots (a session in the page has a root among them: its last):
    one query finds where that walk ends (the ``started_at`` of its last root, through a
    ``started_at`` index), one groups only the page's sessions, their roots read through
    ``llm_exec_session_idx``. When the walk holds fewer sessions than the page needs (sessions of
    many interleaved executions), a walk 20 times longer is tried, then every root is grouped.

    A row's ``user_id`` is a correlated subquery, the session's newest root with a user (through
    the same index), computed once per row of the page: an ordered aggregate would carry every
    root's user through the grouping, and is PostgreSQL's alone. In SQL the row's columns are
    ``session_id, latest_user_id, n_executions, first_started, last_started, sum_cost,
    sum_tokens, n_failed`` (to filter or order ``queryset`` by)."""

    #: How many roots a page walks per session it shows, try after try.
    WALKS = (20, 400)

    def __init__(self, roots: Any) -> None:
        self.roots = roots
        latest_user = (
            roots.filter(session_id=OuterRef("session_id"))
            .exclude(user_id="")
            .order_by("-started_at")
            .values("user_id")[:1]
        )
        self.queryset = (
            roots.values("session_id")
            .annotate(
                n_executions=Count("*"),
                first_started=Min("started_at"),
                last_started=Max("started_at"),
                sum_cost=Sum("total_cost"),
                sum_tokens=Sum("total_tokens"),
                n_failed=Count("started_at", filter=Q(status__in=FAILED_STATUSES)),
                latest_user_id=GroupSubquery(latest_user),
            )
            .order_by("-last_started", "session_id")
        )
        self.queryset._iterable_class = SessionRows

    def count(self) -> int:
        """How many sessions there are (one query reading every root with a session)."""
        return int(self.roots.values("session_id").distinct().count())

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.queryset)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, int):
            if index < 0:
                raise ValueError("Negative indexing is not supported.")
            found = self[index : index + 1]
            if not found:
                raise IndexError("sessions() index out of range")
            return found[0]
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"sessions() takes an index or a slice without step, not {index!r}")
        start, stop = index.start or 0, index.stop
        if start < 0 or (stop is not None and stop < 0):
            raise ValueError("Negative indexing is not supported.")
        if stop is None:
            return list(self.queryset[start:])
        if stop <= start:
            return []
        for per_session in self.WALKS:
            walked = stop * per_session
            ends = list(
                self.roots.order_by("-started_at").values_list("started_at", flat=True)[walked - 1 : walked]
            )
            if not ends:
                break  # fewer roots than the walk: every root is read below
            page = list(self._page(start, stop, since=ends[0]))
            if len(page) == stop - start:
                return page
        return list(self.queryset[start:stop])

    def _page(self, start: int, stop: int, *, since: Any) -> Any:
        """The rows ``[start:stop]`` of the sessions with a root started at ``since`` or later."""
        newest = (
            self.roots.filter(started_at__gte=since)
            .values("session_id")
            .annotate(last=Max("started_at"))
            .order_by("-last", "session_id")
            .values("session_id")[start:stop]
        )
        return self.queryset.filter(session_id__in=newest)


class QualityQueries(models.QuerySet):
    """Scopes by session, end user and tag; ``sessions()``, ``score_summary()``, ``scores_by()``."""

    if TYPE_CHECKING:
        with_evaluations: bool

        def analysed_roots(self) -> Any: ...

        def production(self) -> Any: ...

    # -- scopes -------------------------------------------------------------------------------

    def by_session(self, session_id: str) -> Any:
        """The executions of one session (through ``llm_exec_session_idx``)."""
        return self.filter(session_id=session_id)

    def by_user(self, user_id: str) -> Any:
        """The executions of one end user (through ``llm_exec_user_idx``)."""
        return self.filter(user_id=user_id)

    def with_tag(self, tag: str) -> Any:
        """The executions whose ``tags`` hold ``tag`` (on PostgreSQL through the GIN index
        ``llm_exec_tags_idx``; see :func:`~llm_agents.db.fastpaths.tag_condition`)."""
        return self.filter(fastpaths.tag_condition(connections[self.db], str(tag)))

    # -- sessions -----------------------------------------------------------------------------

    def sessions(self) -> Sessions:
        """One row per session of this queryset's root executions (those with a ``session_id``;
        of no evaluation run unless :meth:`including_evaluations`), newest activity first:
        ``{session_id, user_id, executions, first_started_at, last_started_at, total_cost,
        total_tokens, failed}``; ``user_id`` is the session's most recent non-blank one. A lazy
        sequence, computed in the database when sliced (see :class:`Sessions`)."""
        return Sessions(self.analysed_roots().exclude(session_id="").order_by())

    # -- scores -------------------------------------------------------------------------------
    # The scores the analytics read are those of this queryset's executions, root or nested alike
    # (a score judges the execution it names), of no evaluation run (a score of an evaluation run's
    # execution belongs to the run: llm_agents.scores copies the run onto it) unless
    # including_evaluations(). Scores of whole sessions (no execution) are not counted: no agent,
    # model or day is theirs; read them with Score.objects.filter(session_id=...). Each score
    # carries the start of its execution (execution_started_at), so the three ways of reading them
    # count the same scores:
    # - unfiltered: the score table alone, by name (llm_score_name_idx; score_summary of production
    #   scores through llm_score_value_idx, its median walked to, see score_summary);
    # - filtered by a period alone (last_30_days(), between(), ...): the score table alone, the
    #   period one range of llm_score_name_idx's key (name, execution_started_at), no join;
    # - any other filter: the scores whose execution is one of this queryset's (a semi-join).

    def _scores_named(self, name: str, data_type: str | None = None) -> Any:
        """The Score rows named ``name`` (of ``data_type`` when given) of this queryset's executions,
        root or nested (see above): unfiltered, the score table alone, by name; filtered by a period
        of ``started_at`` alone, the scores whose ``execution_started_at`` is in it; otherwise the
        scores whose execution is one of this queryset's (a semi-join)."""
        rows: Any = Score._default_manager.using(self.db).filter(name=name, execution__isnull=False)
        if data_type is not None:
            rows = rows.filter(data_type=data_type)
        if not self.with_evaluations:
            rows = rows.filter(eval_run__isnull=True)
        period = rollup_reads.period_of(self)
        if period is None:
            rows = rows.filter(execution_id__in=self.order_by().values("pk"))
        else:
            start, end = period
            if start is not None:
                rows = rows.filter(execution_started_at__gte=start)
            if end is not None:
                rows = rows.filter(execution_started_at__lt=end)
        return rows.order_by()

    def score_summary(self, name: str) -> dict[str, Any]:
        """The scores named ``name`` of this queryset's executions, root or nested: numeric ``{name,
        data_type, count, mean, min, max, p50}``; boolean ``{name, data_type, count, true_rate}``
        (percent of True, 0–100); categorical ``{name, data_type, count, distribution: {category:
        count}}``. The data type is the ScoreConfig's, else the type of most of the scores; only
        scores of that type are counted. ``mean`` (and ``min``, ``max``, the continuous ``p50``: the
        average of the two middle values for an even count) to 4 places. Two queries (a
        ScoreConfig's look-up, one aggregate) for numeric and boolean scores on PostgreSQL, one more
        for the distribution of categories, or for the median elsewhere and of all time (production
        scores: then the middle one or two values are read by walking ``llm_score_value_idx``, not
        sorted out of all of them, :func:`~llm_agents.db.fastpaths.median_by_walk`)."""
        config = self._score_config(name)
        # All time, production scores: one row per data type, grouped (PostgreSQL reads the name's
        # scores in the order of llm_score_value_idx, (name, data_type, value), and needs no sort),
        # and the exact median walked to in that index rather than sorted out of every value.
        # Otherwise one aggregate with a filter per type (a period: one range of
        # llm_score_name_idx), the median by percentile_cont on PostgreSQL.
        walk = not self.with_evaluations and rollup_reads.period_of(self) == (None, None)
        percentile = fastpaths.is_postgresql(connections[self.db]) and not walk
        empty: dict[str, Any] = {"n": 0, "n_values": 0, "n_true": 0, "mean": None, "low": None, "high": None}
        found = {kind: dict(empty, p50=None) for kind in (NUMERIC, BOOLEAN, CATEGORICAL)}
        rows = self._scores_named(name)
        if walk:
            grouped = rows.values("data_type").annotate(
                n=Count("*"),
                n_values=Count("value"),
                n_true=Count("value", filter=Q(value__gte=0.5)),
                mean=Avg("value"),
                low=Min("value"),
                high=Max("value"),
            )
            for row in grouped:
                if row["data_type"] in found:
                    found[row["data_type"]].update(row)
        else:
            numeric = Q(data_type=NUMERIC)
            aggregates: dict[str, Any] = {
                "n_numeric": Count("value", filter=numeric),
                "n_boolean": Count("value", filter=Q(data_type=BOOLEAN)),
                "n_categorical": Count("data_type", filter=Q(data_type=CATEGORICAL)),
                "n_true": Count("value", filter=Q(data_type=BOOLEAN, value__gte=0.5)),
                "mean": Avg("value", filter=numeric),
                "low": Min("value", filter=numeric),
                "high": Max("value", filter=numeric),
            }
            if percentile:
                aggregates["p50"] = fastpaths.PercentileCont("value", 0.5, filter=numeric)
            flat = rows.aggregate(**aggregates)
            found[NUMERIC].update(
                n_values=flat["n_numeric"], mean=flat["mean"], low=flat["low"], high=flat["high"],
                p50=flat.get("p50"),
            )  # fmt: skip
            found[BOOLEAN].update(n_values=flat["n_boolean"], n_true=flat["n_true"])
            found[CATEGORICAL].update(n=flat["n_categorical"])
        counts = {
            NUMERIC: found[NUMERIC]["n_values"],
            BOOLEAN: found[BOOLEAN]["n_values"],
            CATEGORICAL: found[CATEGORICAL]["n"],
        }
        data_type = _data_type(config, counts)
        summary: dict[str, Any] = {"name": name, "data_type": data_type, "count": counts[data_type]}
        if data_type == BOOLEAN:
            summary["true_rate"] = rate(found[BOOLEAN]["n_true"], counts[BOOLEAN])
        elif data_type == CATEGORICAL:
            categories = (
                self._scores_named(name, CATEGORICAL)
                .values("string_value")
                .annotate(n=Count("*"))
                .values_list("string_value", "n")
            )
            summary["distribution"] = _distribution(config, dict(categories))
        else:
            numbers_found = found[NUMERIC]
            if percentile:
                median = numbers_found["p50"]
            elif walk:
                numbers = self._scores_named(name, NUMERIC).filter(value__isnull=False)
                median = fastpaths.median_by_walk(numbers, "value", counts[NUMERIC])
            else:
                numbers = self._scores_named(name, NUMERIC)
                median = fastpaths.grouped_percentile_portable(numbers, "name", "value", 50).get(name)
            summary.update(
                mean=_rounded(numbers_found["mean"]), min=_rounded(numbers_found["low"]),
                max=_rounded(numbers_found["high"]),
                p50=_rounded(median),
            )  # fmt: skip
        return summary

    def scores_by(self, name: str, group_by: str) -> list[dict[str, Any]]:
        """The scores named ``name`` of this queryset's executions per ``group_by`` (agent_type,
        model_id, agent_version, prompt_version (its id), day (the local day the execution
        started)): numeric ``[{key, count, mean}]``, boolean ``[{key, count, true_rate}]``,
        categorical ``[{key, count, distribution}]``; days oldest first, else most scores first.
        Data type and rounding as :meth:`score_summary`. An unknown ``group_by`` raises
        ``ValueError`` naming the valid ones. Two queries: a ScoreConfig's look-up, one grouped."""
        if group_by not in SCORE_GROUPS:
            raise ValueError(f"Unknown group_by {group_by!r}; valid groups are: {', '.join(SCORE_GROUPS)}.")
        config = self._score_config(name)
        rows = self._scores_named(name)
        if group_by == "day":
            # The execution's start, as its score carries it: no join.
            rows = rows.annotate(
                day=TruncDate("execution_started_at", tzinfo=timezone.get_default_timezone())
            )
            key = F("day")
        else:
            key = F(f"execution__{SCORE_GROUPS[group_by]}")
            period = rollup_reads.period_of(self)
            if period is not None:
                # The executions joined for their key are of the same period (their started_at is
                # their scores' execution_started_at): PostgreSQL reads only the period's partitions
                # and index range, not every execution.
                start, end = period
                if start is not None:
                    rows = rows.filter(execution__started_at__gte=start)
                if end is not None:
                    rows = rows.filter(execution__started_at__lt=end)
        grouped = rows.values(
            score_key=key, score_type=F("data_type"), score_category=F("string_value")
        ).annotate(
            n=Count("*"),
            n_values=Count("value"),
            total=Sum("value"),
            n_true=Count("value", filter=Q(value__gte=0.5)),
        )
        by_key: dict[Any, dict[str, list[dict[str, Any]]]] = {}
        counts = dict.fromkeys((NUMERIC, BOOLEAN, CATEGORICAL), 0)
        for group in grouped:
            counts[group["score_type"]] = counts.get(group["score_type"], 0) + group["n"]
            by_key.setdefault(group["score_key"], {}).setdefault(group["score_type"], []).append(group)
        data_type = _data_type(config, counts)
        result = []
        for key, types in by_key.items():
            parts = types.get(data_type)
            if not parts:
                continue
            count = sum(part["n"] for part in parts)
            row: dict[str, Any] = {"key": key, "count": count}
            if data_type == BOOLEAN:
                row["true_rate"] = rate(sum(part["n_true"] for part in parts), count)
            elif data_type == CATEGORICAL:
                row["distribution"] = _distribution(
                    config, {part["score_category"]: part["n"] for part in parts}
                )
            else:
                n_values = sum(part["n_values"] for part in parts)
                total = sum(part["total"] or 0.0 for part in parts)
                row["mean"] = _rounded(total / n_values if n_values else None)
            result.append(row)
        if group_by == "day":
            result.sort(key=lambda row: row["key"])
        else:
            result.sort(key=lambda row: (-row["count"], str(row["key"] if row["key"] is not None else "")))
        return result

    def score_means(self, field: str) -> dict[Any, dict[str, float]]:
        """``{value of field: {score name: mean}}`` over the numeric and boolean scores of this
        queryset's executions (a boolean's mean is its share of True, 0–1), to 4 places; scores of
        evaluation runs as the other score analytics. One query."""
        executions = self.analysed_roots()
        conditions: dict[str, Any] = {
            "scores__data_type__in": (NUMERIC, BOOLEAN),
            "scores__value__isnull": False,
        }
        if not self.with_evaluations:
            conditions["scores__eval_run__isnull"] = True
        rows = (
            executions.order_by()
            .filter(**conditions)
            .values(field, score_name=F("scores__name"))
            .annotate(mean=Avg("scores__value"))
            .order_by(field, "score_name")
        )
        means: dict[Any, dict[str, float]] = {}
        for row in rows:
            means.setdefault(row[field], {})[row["score_name"]] = round(row["mean"], MEAN_PLACES)
        return means

    def _score_config(self, name: str) -> ScoreConfig | None:
        return ScoreConfig._default_manager.using(self.db).filter(name=name).first()


def _distribution(config: ScoreConfig | None, counts: dict[str, int]) -> dict[str, int]:
    """``{category: count}``: the config's categories first, in its order (those without scores
    counted 0), then the others, most frequent first."""
    listed = list(config.categories) if config is not None and config.categories else []
    others = sorted(
        (item for item in counts.items() if item[0] not in listed), key=lambda item: (-item[1], item[0])
    )
    return {**{category: counts.get(category, 0) for category in listed}, **dict(others)}


def _data_type(config: ScoreConfig | None, counts: dict[str, int]) -> str:
    """The data type of a name's scores: its ScoreConfig's, else the type most of them (``counts``
    by type) have, else numeric."""
    if config is not None:
        return str(config.data_type)
    present = {data_type: count for data_type, count in counts.items() if count}
    return max(present, key=lambda data_type: (present[data_type], data_type)) if present else NUMERIC


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), MEAN_PLACES)
