"""The local spool: records that could not reach the database wait here as files until it is back.

Each file is one JSON payload (the ``record_executions`` message format), written atomically.
``drain()`` writes spooled payloads to the database and deletes their files; it runs after the
next successful write in a process that spooled, at every ``record_executions`` task run, and
from ``python manage.py drain_spool``. Writes are upserts by UUID, so a payload written twice
(two processes draining at once) is harmless.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .conf import app_settings

logger = logging.getLogger("llm_agents")

#: Seconds between checks of the spool folder by a process that has not spooled anything itself.
CHECK_EVERY = 30.0


class Spool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outage_since: float | None = None
        self.next_check = 0.0

    @property
    def path(self) -> Path:
        configured = app_settings.SPOOL_PATH
        return Path(configured) if configured else Path(tempfile.gettempdir()) / "llm_agents_spool"

    def save(self, message: dict[str, list[dict[str, Any]]], error: BaseException) -> Path:
        """Keep a JSON-safe payload on disk; warn once per database outage."""
        folder = self.path
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.json"
        temporary = folder / f".{name}.tmp"
        temporary.write_text(json.dumps(message))
        os.replace(temporary, folder / name)
        with self.lock:
            first = self.outage_since is None
            if first:
                self.outage_since = time.monotonic()
            self.next_check = 0.0
        if first:
            logger.warning(
                "llm_agents could not write to the database (%s: %s); executions are spooled in %s "
                "and written when it is back",
                type(error).__name__,
                error,
                folder,
            )
        return folder / name

    def files(self) -> list[Path]:
        folder = self.path
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def maybe_drain(self) -> None:
        """After a successful write: drain if this process spooled, or now and then in case others did."""
        now = time.monotonic()
        if self.outage_since is None and now < self.next_check:
            return
        self.next_check = now + CHECK_EVERY
        if self.files():
            self.drain()
        elif self.outage_since is not None:
            self.recovered(0)

    def drain(self, limit: int | None = None) -> int:
        """Write spooled payloads to the database; returns how many executions were written.

        Each file is claimed by renaming it first, so concurrent drainers never share one. A file
        that fails to write is put back and draining stops (the database is still unreachable).
        """
        from .recording import write_payload

        written = 0
        for number, path in enumerate(self.files()):
            if limit is not None and number >= limit:
                break
            claimed = path.with_name(f".{path.name}.{os.getpid()}.claimed")
            try:
                os.replace(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            message = json.loads(claimed.read_text())
            try:
                write_payload(message)
            except Exception:
                os.replace(claimed, path)
                raise
            claimed.unlink()
            written += len(message.get("executions", []))
        if written or self.outage_since is not None:
            self.recovered(written)
        return written

    def recovered(self, written: int) -> None:
        with self.lock:
            was_down, self.outage_since = self.outage_since, None
        if was_down is not None or written:
            logger.warning("llm_agents reached the database again; %d spooled executions written", written)


spool = Spool()
