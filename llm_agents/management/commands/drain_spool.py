from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ...tracking.transport import spool


class Command(BaseCommand):
    help = "Write executions spooled while the database was unreachable, then delete their files."

    def handle(self, *args: Any, **options: Any) -> None:
        waiting = len(spool.files())
        if options["verbosity"]:
            self.stdout.write(f"{waiting} spooled payload(s) in {spool.path}")
        try:
            written = spool.drain()
        except DatabaseError as exc:
            raise CommandError(f"The database is still unreachable ({exc}); the spool is kept.") from exc
        self.stdout.write(f"Wrote {written} spooled executions; {len(spool.files())} payload(s) left.")
