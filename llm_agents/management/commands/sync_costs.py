from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...pricing.sync import DEFAULT_SYNC_PROVIDERS, SyncResult, sync_costs


class Command(BaseCommand):
    help = (
        "Write cost configs (source genai_prices) from the bundled genai-prices data, one per price "
        "window of each model. Running it again changes nothing; manual cost configs are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider", action="append", dest="providers",
            help=f"A genai-prices provider id; repeat for several (default: {', '.join(DEFAULT_SYNC_PROVIDERS)}).",
        )  # fmt: skip
        parser.add_argument("--model", action="append", dest="models", help="Only this model id; repeatable.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing.")

    def handle(self, *args: Any, providers: list[str] | None, models: list[str] | None, dry_run: bool,
               **options: Any) -> None:  # fmt: skip
        from genai_prices.data import providers as catalogue

        known = {provider.id for provider in catalogue}
        unknown = sorted(set(providers or ()) - known)
        if unknown:
            raise CommandError(
                f"Unknown genai-prices provider(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
            )
        verbosity = options["verbosity"]

        def report(result: SyncResult) -> None:
            if verbosity > 1:
                self.stdout.write(
                    f"  {result.created + result.updated + result.unchanged} price windows read"
                )

        result = sync_costs(providers, models, dry_run=dry_run, progress=report)
        if result.unknown:
            raise CommandError(f"genai-prices has no price for: {', '.join(result.unknown)}.")
        prefix = "Dry run: " if dry_run else ""
        self.stdout.write(
            f"{prefix}{result.models} models: created {result.created}, updated {result.updated}, "
            f"unchanged {result.unchanged}"
        )
