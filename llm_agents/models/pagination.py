"""Counting the lists of executions and spans without reading millions of rows (admin and API)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

from ..db import fastpaths


class LargeTablePaginator(Paginator):
    """A paginator whose count stays cheap on large tables: on PostgreSQL an unfiltered list of more
    than ``estimate_above`` rows is counted from the planner's statistics (``pg_class.reltuples``);
    a list of executions filtered on what the rollups keep (agent, model, tenant, status, kind,
    time) is counted exactly from them (``ExecutionQuerySet.rollup_count``); other lists, and small
    tables, are counted row by row."""

    estimate_above = 100_000

    @cached_property
    def count(self) -> int:
        queryset: Any = self.object_list
        query = getattr(queryset, "query", None)
        if query is None:
            return super().count
        if not query.where and fastpaths.is_postgresql(connections[queryset.db]):
            estimate = fastpaths.row_estimate_postgresql(queryset)
            if estimate is not None and estimate > self.estimate_above:
                return estimate
        if query.where and hasattr(queryset, "rollup_count"):
            counted = queryset.rollup_count()
            if counted is not None:
                return int(counted)
        return super().count
