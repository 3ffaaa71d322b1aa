"""``manage.py export_dataset SLUG [--output FILE]``: write a dataset's active items as JSON Lines."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...datasets import export_jsonl
from ...models import Dataset


class Command(BaseCommand):
    help = (
        "Write the active items of a dataset as JSON Lines, one "
        '{"input", "expected_output", "metadata"} object a line, in the format import_dataset reads.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The dataset's slug.")
        parser.add_argument("--output", "-o", help="The file to write (default: standard output).")

    def handle(self, *args: Any, slug: str, output: str | None, **options: Any) -> None:
        dataset = Dataset.objects.filter(slug=slug).first()
        if dataset is None:
            raise CommandError(f"No dataset has the slug {slug!r}.")
        if output is None:
            for line in export_jsonl(dataset):
                self.stdout.write(line)
            return
        count = 0
        try:
            with open(output, "w", encoding="utf-8") as target:
                for line in export_jsonl(dataset):
                    target.write(line + "\n")
                    count += 1
        except OSError as error:
            raise CommandError(f"Cannot write {output}: {error.strerror or error}") from None
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(f"Exported {count} item(s) of {slug} to {output}"))
