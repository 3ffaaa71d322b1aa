from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router

from ...budgets import RebuildResult, rebuild_counters
from ...models import Execution, rebuilds
from ...periods import start_of_day
from ..arguments import parse_day


class Command(BaseCommand):
    help = (
        "Rebuild what is kept beside the executions from the executions table, from --since (a local "
        "date) or from the first execution: the budget spend counters, each execution's spend by model "
        "and the hourly and daily rollups the analytics read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="First local day to rebuild, YYYY-MM-DD (default: all).")
        parser.add_argument(
            "--chunk-days", type=int, default=31, help="Days rebuilt per transaction (default 31)."
        )

    def handle(self, *args: Any, since: str | None, chunk_days: int, **options: Any) -> None:
        day = parse_day(since, "--since") if since else None
        if chunk_days < 1:
            raise CommandError(f"--chunk-days must be at least 1, not {chunk_days}.")
        verbosity = options["verbosity"]

        def report(result: RebuildResult) -> None:
            if verbosity > 1:
                self.stdout.write(f"  {result.counters} counters written ({result.chunks} chunks)")

        result = rebuild_counters(day, chunk_days=chunk_days, progress=report)
        if verbosity:
            self.stdout.write(
                f"Rebuilt spend counters from {result.first_day} to {result.last_day}: {result.counters} "
                f"counters, {result.expired_reservations} expired reservations removed."
            )

        def report_day(done: int, total: int, rebuilt: dt.date) -> None:
            if verbosity > 1:
                self.stdout.write(f"  rollups of {rebuilt} (UTC) rebuilt, {done}/{total}")

        since_moment = start_of_day(day) if day else None
        days = rebuilds.rebuild(router.db_for_write(Execution), since=since_moment, progress=report_day)
        if verbosity:
            self.stdout.write(f"Rebuilt the rollups of {days} days.")
