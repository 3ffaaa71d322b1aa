from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from ...batches import flush
from ...batches.submit import MAX_REQUESTS
from ...conf import app_settings
from ...models import BatchRequest


class Command(BaseCommand):
    help = "Submit pending batch requests to the Batch API (one batch per purpose and model, 50,000 at most)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--purpose", help="Only requests of this purpose (default: every purpose).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be submitted; submit nothing."
        )

    def handle(self, *args: Any, purpose: str | None, dry_run: bool, **options: Any) -> None:
        verbosity = options["verbosity"]
        if not app_settings.BATCH_ENABLED:
            self.stdout.write("BATCH_ENABLED is off: nothing flushed.")
            return
        if dry_run:
            self.dry_run(purpose)
            return

        def progress(message: str) -> None:
            if verbosity:
                self.stdout.write(f"  {message}")

        report = flush(purpose, progress=progress)
        self.stdout.write(f"Submitted {report.requests} requests in {len(report.batches)} batches.")
        if report.errors:
            raise CommandError(f"{len(report.errors)} submissions failed (their requests are pending again):\n"
                               + "\n".join(report.errors))  # fmt: skip

    def dry_run(self, purpose: str | None) -> None:
        pending = BatchRequest.objects.filter(status=BatchRequest.Status.PENDING)
        if purpose is not None:
            pending = pending.filter(purpose=purpose)
        groups = (
            pending.values("purpose", "model").annotate(requests=Count("pk")).order_by("purpose", "model")
        )
        total = batches = 0
        for group in groups:
            count = -(-group["requests"] // MAX_REQUESTS)
            total += group["requests"]
            batches += count
            self.stdout.write(f"  {group['purpose']} / {group['model']}: {group['requests']} requests")
        self.stdout.write(
            f"Would submit {total} requests in {batches} batches (or more, if files pass 200 MB)."
        )
