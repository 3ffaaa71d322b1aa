"""Time ``sync_prompts`` on 1,000 generated prompt files: the first run and an unchanged re-run.

    .venv/bin/python bench/bench_sync_prompts.py [--files N]

Uses a temporary SQLite database (or ``DATABASE_URL`` when set; the tables are created by
``migrate``). Targets: first run <= 5 s, unchanged re-run <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

        import django

        django.setup()
        from django.core.management import call_command

        from llm_agents.models import Prompt

        call_command("migrate", verbosity=0)
        Prompt.objects.filter(slug__startswith="prompt-").delete()
        folder = Path(workdir, "prompts")
        folder.mkdir()
        generate(folder, options.files)

        def timed_sync() -> tuple[float, str]:
            out = StringIO()
            started = time.perf_counter()
            call_command("sync_prompts", "--path", str(folder), stdout=out, verbosity=1)
            elapsed = time.perf_counter() - started
            summary = [line for line in out.getvalue().splitlines() if line.startswith("created ")][-1]
            return elapsed, summary

        first, first_summary = timed_sync()
        rerun, rerun_summary = timed_sync()
        database = django.db.connection.vendor
        Prompt.objects.filter(slug__startswith="prompt-").delete()

    print(f"sync_prompts on {options.files} files ({database})")
    print(f"first run:         {first:6.2f} s  [{first_summary}]  target <= {FIRST_RUN_TARGET:.0f} s")
    print(f"unchanged re-run:  {rerun:6.2f} s  [{rerun_summary}]  target <= {RERUN_TARGET:.0f} s")
    return 0 if first <= FIRST_RUN_TARGET and rerun <= RERUN_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
