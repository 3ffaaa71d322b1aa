"""``manage.py export_prompts [--path DIR] [--dry-run] [slug ...]``: write prompts as Markdown files."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import app_settings
from ...prompts.sync import export


class Command(BaseCommand):
    help = (
        "Write the current version of each prompt to <path>/<slug>.md, in the format sync_prompts "
        "reads, with the labels that point at that version; syncing the written files back reports "
        "every prompt unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", help="Export only these prompts (default: all).")
        parser.add_argument("--path", help="Folder to write (default: LLM_AGENTS['PROMPTS_SOURCE_PATH']).")
        parser.add_argument("--dry-run", action="store_true", help="List the files; write nothing.")

    def handle(self, *slugs: str, path: str | None = None, dry_run: bool = False, **options: Any) -> None:
        verbosity = options["verbosity"]
        slugs = tuple(options.get("slugs") or slugs)
        path = path or app_settings.PROMPTS_SOURCE_PATH
        if not path:
            raise CommandError("No folder: pass --path or set LLM_AGENTS['PROMPTS_SOURCE_PATH'].")
        written = export(path, slugs, dry_run=dry_run)
        missing = sorted(set(slugs) - {slug for slug, _ in written})
        if verbosity >= 2:
            for slug, file_path in written:
                self.stdout.write(f"{'would write' if dry_run else 'wrote'} {file_path} ({slug})")
        if verbosity >= 1:
            verb = "Would export" if dry_run else "Exported"
            self.stdout.write(self.style.SUCCESS(f"{verb} {len(written)} prompt(s) to {path}"))
        if missing:
            raise CommandError(f"No prompt with a version has the slug(s): {', '.join(missing)}")
