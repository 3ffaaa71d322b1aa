"""``manage.py sync_prompts [--path DIR] [--dry-run]``: create or update prompts from Markdown files."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import app_settings
from ...prompts.sync import PromptFile, read_folder, sync

PROGRESS_FROM = 200


class Command(BaseCommand):
    help = (
        "Create or update prompts from the *.md files (YAML front matter) of the prompts folder. "
        "Every file is validated first; if any is invalid nothing is written. A new version is "
        "created only when a prompt's messages, model or model_params changed; the labels named in "
        "a file's front matter (labels: [staging]) are moved to the file's version, protected ones too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", help="Folder to read (default: LLM_AGENTS['PROMPTS_SOURCE_PATH']).")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing.")

    def handle(self, *args: Any, path: str | None = None, dry_run: bool = False, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        path = path or app_settings.PROMPTS_SOURCE_PATH
        if not path:
            raise CommandError("No prompts folder: pass --path or set LLM_AGENTS['PROMPTS_SOURCE_PATH'].")
        subfolders = app_settings.PROMPT_SUBFOLDERS or []
        try:
            files, errors = read_folder(path, subfolders, progress=self.progress)
        except FileNotFoundError as error:
            raise CommandError(str(error)) from None
        if errors:
            lines = [f"{len(errors)} invalid prompt file(s); nothing was written:"]
            lines += [f"  {error}" for error in errors]
            raise CommandError("\n".join(lines))
        result = sync(files, dry_run=dry_run, progress=self.progress, on_change=self.report)
        if dry_run and self.verbosity >= 1:
            self.stdout.write("Dry run: nothing was written.")
        if self.verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(result.summary))

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.verbosity < 1 or total < PROGRESS_FROM:
            return
        step = max(total // 10, 1)
        if done % step == 0 or done == total:
            verb = "Validated" if stage == "read" else "Synced"
            noun = "files" if stage == "read" else "prompts"
            self.stdout.write(f"{verb} {done}/{total} {noun}")

    def report(self, outcome: str, prompt_file: PromptFile) -> None:
        wanted = 2 if outcome == "unchanged" else 1
        if self.verbosity >= wanted:
            self.stdout.write(f"{outcome}: {prompt_file.slug} ({prompt_file.path})")
