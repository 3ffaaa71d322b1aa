from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...retention import DEFAULT_BATCH_SIZE, PurgeResult, cutoff_for, purge


class Command(BaseCommand):
    help = "Delete executions (with their spans and nested runs) older than RETENTION_DAYS or --days."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="Age in days (default: the RETENTION_DAYS setting).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                            help=f"Root executions per transaction (default {DEFAULT_BATCH_SIZE}).")  # fmt: skip

    def handle(self, *args: Any, days: int | None, dry_run: bool, batch_size: int, **options: Any) -> None:
        if days is not None and days < 0:
            raise CommandError(f"--days must be 0 or more, not {days}.")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, not {batch_size}.")
        cutoff = cutoff_for(days)
        if cutoff is None:
            self.stdout.write("RETENTION_DAYS is None and no --days given: nothing to purge.")
            return
        verbosity = options["verbosity"]
        if verbosity:
            self.stdout.write(f"Purging executions started before {cutoff:%Y-%m-%d %H:%M:%S %Z}")

        def report(result: PurgeResult) -> None:
            if verbosity > 1 or (verbosity and result.chunks % 10 == 0):
                self.stdout.write(f"  {result.executions} executions, {result.spans} spans deleted so far")

        result = purge(days, batch_size=batch_size, dry_run=dry_run, progress=report)
        verb = "Would delete" if dry_run else "Deleted"
        months = f" (monthly partitions dropped: {result.months})" if result.months else ""
        self.stdout.write(f"{verb} {result.executions} executions and {result.spans} spans{months}.")
