from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...batches import poll
from ...conf import app_settings
from ...models import Batch


class Command(BaseCommand):
    help = (
        "Release stale batch claims, refresh unfinished batches and reconcile finished ones "
        "(record each result, run its handler)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what is waiting; call no provider, change nothing."
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        verbosity = options["verbosity"]
        if not app_settings.BATCH_ENABLED:
            self.stdout.write("BATCH_ENABLED is off: nothing polled.")
            return
        if dry_run:
            self.dry_run()
            return

        def progress(message: str) -> None:
            if verbosity:
                self.stdout.write(f"  {message}")

        report = poll(progress=progress)
        self.stdout.write(
            f"Released {report.released} stale claims, checked {report.checked} batches, reconciled "
            f"{len(report.reconciled)} batches: {report.succeeded} requests succeeded, {report.failed} failed."
        )
        if report.errors:
            raise CommandError(f"{len(report.errors)} problems:\n" + "\n".join(report.errors))

    def dry_run(self) -> None:
        cutoff = timezone.now() - dt.timedelta(seconds=app_settings.BATCH_STALE_CLAIM_AFTER)
        stale = Batch.objects.filter(status=Batch.Status.PENDING, provider_batch_id="", created_at__lt=cutoff)
        unfinished = Batch.objects.unfinished()
        finished = Batch.objects.awaiting_reconciliation()
        self.stdout.write(
            f"Would release {stale.count()} stale claims, check {unfinished.count()} unfinished batches "
            f"and reconcile {finished.count()} finished ones."
        )
