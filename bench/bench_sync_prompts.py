"""Time ``sync_prompts`` on 1,000 generated prompt files: the first run and an unchanged re-run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_sync_prompts.py
    [--files 1000] [--quick]

Uses a temporary SQLite database, or with ``DATABASE_URL`` on PostgreSQL a database of its own
(``<name>_prompts``, created and migrated). Targets (issue 5): first run ≤ 5 s, unchanged re-run
≤ 2 s; the script prints them and does not judge them. ``--quick`` (100 files) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from io import StringIO
from pathlib import Path

from common import print_table, setup_django

FIRST_RUN_TARGET = 5.0
RERUN_TARGET = 2.0
FOLDERS = ("support", "sales", "research", "ops")


def generate(folder: Path, count: int) -> None:
    for index in range(count):
        subfolder = folder / FOLDERS[index % len(FOLDERS)]
        subfolder.mkdir(exist_ok=True)
        slug = f"prompt-{index:04}"
        if index % 3 == 0:
            (subfolder / f"{slug}.user.txt").write_text(
                f"Question {index}: {{{{question}}}}\n{{{{#context}}}}Context: {{{{.}}}}\n{{{{/context}}}}"
            )
            body = (
                "messages:\n"
                "  - role: system\n"
                f"    content: You are assistant number {index} for {{{{product}}}}.\n"
                "  - role: user\n"
                f"    body_file: {slug}.user.txt\n"
                "---\n"
            )
        else:
            body = f"---\n\nYou are assistant number {index}. Help {{{{user.name}}}} with {{{{topic}}}}.\n"
        (subfolder / f"{slug}.md").write_text(
            "---\n"
            f"slug: {slug}\n"
            f"name: Prompt {index}\n"
            f"description: Generated prompt {index} for the benchmark.\n"
            "tags: [bench, generated]\n"
            "model: gpt-4o-mini\n"
            "model_params:\n"
            "  temperature: 0.2\n"
            "  max_tokens: 512\n" + body
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 files, for CI smoke runs")
    options = parser.parse_args()
    files = 100 if options.quick else options.files
    vendor = setup_django("prompts")

    from django.core.management import call_command

    from llm_agents.models import Prompt

    with tempfile.TemporaryDirectory() as workdir:
        Prompt.objects.filter(slug__startswith="prompt-").delete()
        folder = Path(workdir, "prompts")
        folder.mkdir()
        generate(folder, files)

        def timed_sync() -> tuple[float, str]:
            out = StringIO()
            started = time.perf_counter()
            call_command("sync_prompts", "--path", str(folder), stdout=out, verbosity=1)
            elapsed = time.perf_counter() - started
            summary = [line for line in out.getvalue().splitlines() if line.startswith("created ")][-1]
            return elapsed, summary

        first, first_summary = timed_sync()
        rerun, rerun_summary = timed_sync()
        Prompt.objects.filter(slug__startswith="prompt-").delete()

    print_table(
        f"sync_prompts on {files:,} files, {vendor}",
        [
            (
                "first run",
                f"{first:.2f} s",
                f"[{first_summary}]  target ≤ {FIRST_RUN_TARGET:.0f} s for 1,000",
            ),
            (
                "unchanged re-run",
                f"{rerun:.2f} s",
                f"[{rerun_summary}]  target ≤ {RERUN_TARGET:.0f} s for 1,000",
            ),
        ],
    )


if __name__ == "__main__":
    main()
