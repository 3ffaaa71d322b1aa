"""A child process of the batch concurrency tests: ``python -m tests.batch_workers ROLE CONFIG OUT``.

ROLE is ``flush`` or ``poll``; CONFIG a JSON file with ``database_url`` (the test database),
``llm_agents`` (the LLM_AGENTS setting, pointing at the parent's fake server), ``go`` (a file whose
appearance starts every child at once), ``max_requests`` and ``chunk_size``. The child writes
``OUT.ready`` once set up, waits for ``go``, runs, and writes its report as JSON to ``OUT.report``. A
poller's handler appends each request's custom id to OUT, one line per call, so the parent can count
how many times every handler ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tests.workers import READY_TIMEOUT


def main() -> None:
    role, config_path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    config = json.loads(config_path.read_text())
    os.environ["DATABASE_URL"] = config["database_url"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.db import connection
    from django.test import override_settings

    from llm_agents import batches

    handled = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    class Handler:
        def call(self, request, result):
            os.write(handled, f"{request.custom_id}\n".encode())

        def on_failure(self, request, error):
            os.write(handled, f"{request.custom_id} failed {error}\n".encode())

    batches.register_handler(config["purpose"], Handler())
    connection.ensure_connection()
    Path(f"{out}.ready").touch()
    deadline = time.monotonic() + READY_TIMEOUT
    while not Path(config["go"]).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the parent never said go")
        time.sleep(0.002)
    with override_settings(LLM_AGENTS=config["llm_agents"]):
        if role == "flush":
            report = batches.flush(max_requests=config["max_requests"]).as_dict()
        else:
            report = batches.poll(chunk_size=config["chunk_size"]).as_dict()
    report["pid"] = os.getpid()
    Path(f"{out}.report").write_text(json.dumps(report))
    os.close(handled)


if __name__ == "__main__":
    main()
