from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...budgets import rebuild_counters
from ...periods import start_of_day
from ...pricing.recompute import RecomputeResult, recompute_costs
from ..arguments import parse_day


class Command(BaseCommand):
    help = (
        "Re-price the executions started from --since (and before the end of --until), with their llm "
        "spans, at the prices in force when each ran; then rebuild the budget counters of those days."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="First local day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Last local day included, YYYY-MM-DD (default: up to now).")
        parser.add_argument("--dry-run", action="store_true", help="Show the new totals; write nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Root executions per transaction.")

    def handle(self, *args: Any, since: str, until: str | None, dry_run: bool, batch_size: int,
               **options: Any) -> None:  # fmt: skip
        first = parse_day(since, "--since")
        last = parse_day(until, "--until") if until else None
        if last is not None and last < first:
            raise CommandError(f"--until ({last}) is before --since ({first}).")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, not {batch_size}.")
        verbosity = options["verbosity"]
        start = start_of_day(first)
        end = start_of_day(last + dt.timedelta(days=1)) if last else None
        if verbosity:
            span = f"{first} to {last}" if last else f"{first} on"
            self.stdout.write(f"{'Dry run: re-pricing' if dry_run else 'Re-pricing'} executions from {span}")

        def report(result: RecomputeResult) -> None:
            if verbosity > 1 or (verbosity and result.chunks % 10 == 0):
                self.stdout.write(
                    f"  {result.executions} executions re-priced so far, {result.changed} changed"
                )

        result = recompute_costs(start, end, dry_run=dry_run, chunk_size=batch_size, progress=report)
        verb = "would change" if dry_run else "changed"
        self.stdout.write(
            f"Old total ${result.old_total:.8f}, new total ${result.new_total:.8f}; {result.changed} of "
            f"{result.executions} executions and {result.spans_changed} spans {verb}."
        )
        if not dry_run and result.changed:
            rebuilt = rebuild_counters(first)
            if verbosity:
                self.stdout.write(f"Budget counters rebuilt from {first}: {rebuilt.counters} counters.")
