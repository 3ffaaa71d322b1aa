"""``manage.py import_dataset SLUG FILE.jsonl [--create] [--name NAME] [--dry-run]``: add items from JSON Lines."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from ...datasets import import_jsonl
from ...models import Dataset


class Command(BaseCommand):
    help = (
        'Add an item to a dataset for each line of a JSON Lines file: {"input": {...}, "expected_output": '
        '..., "metadata": {...}} ("-" reads standard input). Every line is checked first; if any is '
        "invalid nothing is written and the bad lines are named by number."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The dataset's slug.")
        parser.add_argument("file", help='The JSON Lines file to read ("-": standard input).')
        parser.add_argument(
            "--create", action="store_true", help="Create the dataset when none has the slug."
        )
        parser.add_argument("--name", help="The name of a dataset --create makes (default: the slug).")
        parser.add_argument("--dry-run", action="store_true", help="Check every line; write nothing.")

    def handle(
        self, *args: Any, slug: str, file: str, create: bool, name: str | None, dry_run: bool, **options: Any
    ) -> None:
        dataset = Dataset.objects.filter(slug=slug).first()
        if dataset is None:
            if not create:
                raise CommandError(f"No dataset has the slug {slug!r}; pass --create to make it.")
            dataset = Dataset(slug=slug, name=name or slug)
            try:
                dataset.full_clean()
            except ValidationError as error:
                raise CommandError(f"Cannot create dataset {slug!r}: {' '.join(error.messages)}") from None
        created = dataset.pk is None
        lines = self.read(file, options.get("stdin") or sys.stdin)
        try:
            with transaction.atomic():
                if created:
                    dataset.save()
                count = import_jsonl(dataset, lines)
                if dry_run:
                    transaction.set_rollback(True)
        except ValidationError as error:
            problems = error.messages
            summary = f"{len(problems)} invalid line(s) in {file}; nothing was written:"
            raise CommandError("\n".join([summary, *(f"  {problem}" for problem in problems)])) from None
        if options["verbosity"] >= 1:
            verb = "Would import" if dry_run else "Imported"
            made = f" (dataset {'would be ' if dry_run else ''}created)" if created else ""
            self.stdout.write(self.style.SUCCESS(f"{verb} {count} item(s) into {slug}{made}"))

    def read(self, file: str, stdin: TextIO) -> list[str]:
        if file == "-":
            return stdin.readlines()
        try:
            # utf-8-sig: a byte order mark some editors write is not part of the first line.
            with open(file, encoding="utf-8-sig") as source:
                return source.readlines()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise CommandError(f"{file} is not UTF-8 text: {error}") from None
