"""Shared set-up of the benchmark scripts: Django on a database of their own, and figure printing.

With ``DATABASE_URL`` unset the scripts use a temporary SQLite file; point it at PostgreSQL for the
figures the issues quote: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench``.
The database is created if missing and migrated.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> str:
    """Configure Django with the test settings on the benchmark database; returns its vendor."""
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    url = os.environ["DATABASE_URL"]
    if url.startswith(("postgres://", "postgresql://")):
        create_postgres_database(url)
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    return connection.vendor


def create_postgres_database(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.node()} · {platform.processor() or platform.machine()} · {cpus} CPUs · Python {platform.python_version()}"


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Print ``(what, figure, target)`` rows under a title and the machine's details."""
    print(f"\n{title}\n{machine()}")
    width = max(len(row[0]) for row in rows)
    for what, figure, target in rows:
        print(f"  {what:<{width}}  {figure:>14}   {target}")
