"""A child process of the budget concurrency test: ``python -m tests.budget_workers CONFIG OUT``.

CONFIG is a JSON file with ``database_url`` (the test database), ``go`` (a file whose appearance starts
every child at once), ``model``, ``delay`` (seconds each provider answer takes), ``tokens`` (input and
output tokens of each answer) and ``user_id`` (the end user of every call). The child calls :class:`HammerAgent` until its hard-stop budget has
refused it three times, and writes ``{"pid", "admitted", "refused", "errors"}`` as JSON to ``OUT.report``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tests.workers import READY_TIMEOUT


def main() -> None:
    config_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = json.loads(config_path.read_text())
    os.environ["DATABASE_URL"] = config["database_url"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.db import connection

    from llm_agents import Agent
    from llm_agents.errors import BudgetExceededError
    from llm_agents.testing import fake_llm

    class HammerAgent(Agent):
        agent_type = "HammerAgent"
        model = config["model"]
        max_tokens = config["tokens"]

        def user_prompt(self) -> str:
            return "x" * (config["tokens"] * 4)  # estimated at exactly `tokens` input tokens

    connection.ensure_connection()
    Path(f"{out}.ready").touch()
    deadline = time.monotonic() + READY_TIMEOUT
    while not Path(config["go"]).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the parent never said go")
        time.sleep(0.002)
    report = {"pid": os.getpid(), "admitted": 0, "refused": 0, "errors": []}
    with fake_llm() as llm:
        while report["refused"] < 3:
            llm.respond(
                "ok", input_tokens=config["tokens"], output_tokens=config["tokens"], delay=config["delay"]
            )
            try:
                HammerAgent.call(_user_id=config["user_id"])
            except BudgetExceededError:
                report["refused"] += 1
            except Exception as exc:  # reported to the parent, which fails the test
                report["errors"].append(f"{type(exc).__name__}: {exc}")
                break
            else:
                report["admitted"] += 1
    Path(f"{out}.report").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
