"""Shared set-up of the benchmark scripts: Django on a database of their own, data, figure printing.

With ``DATABASE_URL`` unset the scripts use a temporary SQLite file; point it at PostgreSQL for the
figures the issues quote: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench``.
Scripts that empty or grow tables of their own use a database beside it (``<name>_<suffix>``), so
the million executions the read benchmarks share survive between them. Every database is created
if missing and migrated. The executions are issue 17's shape, written with COPY by ``history.py``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The generated history (bench/history.py): N root executions spread evenly over the 90 days
# ending now, whatever N, so a third of them fall in any 30-day window (issue 17's data shape).
HISTORY_DAYS = 90.0
BASE_URL = {"url": ""}  # the database setup_django() chose (use_database() adds suffixes to it)


def database_url(suffix: str = "") -> str:
    """``DATABASE_URL`` (a temporary SQLite file when unset), with ``_<suffix>`` added to a
    PostgreSQL database's name."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    if suffix and is_postgres(url):
        parts = urlsplit(url)
        url = parts._replace(path=f"{parts.path}_{suffix}").geturl()
    return url


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def setup_django(suffix: str = "", *, migrate: bool = True) -> str:
    """Configure Django with the test settings on the benchmark database (created and migrated
    unless ``migrate`` is false); returns its vendor."""
    url = database_url(suffix)
    os.environ["DATABASE_URL"] = BASE_URL["url"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if is_postgres(url) and migrate:
        create_postgres_database(url)
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    if migrate:
        call_command("migrate", verbosity=0)
    return connection.vendor


def create_postgres_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def use_database(suffix: str = "") -> None:
    """Point Django's default connection at the PostgreSQL database ``setup_django()`` chose, with
    ``_<suffix>`` added to its name (created and migrated if missing)."""
    from django.core.management import call_command
    from django.db import connections

    parts = urlsplit(BASE_URL["url"])
    name = parts.path.lstrip("/") + (f"_{suffix}" if suffix else "")
    url = parts._replace(path=f"/{name}").geturl()
    create_postgres_database(url)
    connection = connections["default"]
    connection.close()
    connection.settings_dict["NAME"] = name
    os.environ["DATABASE_URL"] = url
    call_command("migrate", verbosity=0)


def drop_postgres_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def history_days(rows: int) -> float:
    """Days a generated history covers (the same for every size)."""
    return HISTORY_DAYS


def fill_executions(rows: int, *, days: float | None = None, spans: int = 3, quiet: bool = False) -> None:
    """Empty the executions and spans tables and write ``rows`` root executions of issue 17's shape
    (``bench/history.py``: over ``days``, default 90, ending now, 3 spans each) with COPY; on SQLite
    (no COPY) a plainer history with ``bulk_create``."""
    import history
    from django.db import connection

    days = HISTORY_DAYS if days is None else days
    if connection.vendor != "postgresql":
        fill_python(rows, days, spans)
        return
    if spans != 3:
        raise ValueError("the generated history has 3 spans per root execution")
    history.generate(rows, days=days, quiet=quiet)


def fill_python(rows: int, days: float, spans: int) -> None:
    import datetime as dt
    import random
    from decimal import Decimal

    from django.utils import timezone
    from history import AGENTS, MODELS

    from llm_agents.models import Execution, Span

    tenants = ["acme", "globex", "initech", None]
    Span.objects.all().delete()
    Execution.objects.all().delete()
    rng = random.Random(8)
    now = timezone.now()
    executions, span_rows = [], []
    for i in range(rows):
        model, _provider, in_price, out_price = MODELS[i * 7 % len(MODELS)]
        r = rng.random()
        tin, tout = rng.randint(200, 4200), rng.randint(20, 920)
        input_cost = round(Decimal(tin) * Decimal(in_price) / 1_000_000, 8)
        output_cost = round(Decimal(tout) * Decimal(out_price) / 1_000_000, 8)
        started = now - dt.timedelta(days=days * (1 - i / rows) + rng.random() / 1000)
        execution = Execution(
            agent_type=AGENTS[i % len(AGENTS)][0], agent_version=f"1.{i % 2}", model_id=model,
            chosen_model_id="gpt-4o" if i % 50 == 0 else model,
            status="error" if r < 0.03 else "timeout" if r < 0.04 else "success",
            error_class="RateLimitError" if r < 0.01 else "", input_tokens=tin, output_tokens=tout,
            total_tokens=tin + tout, input_cost=input_cost, output_cost=output_cost,
            total_cost=input_cost + output_cost, duration_ms=int(150 + rng.random() ** 2 * 9000),
            streaming=i % 5 == 0, tool_calls_count=i % 3, cache_hit=i % 7 == 0, rate_limited=r < 0.01,
            started_at=started, tenant_id=tenants[i % len(tenants)],
        )  # fmt: skip
        executions.append(execution)
        for k in range(spans):
            span_rows.append(Span(execution=execution, name=f"step {k}", status="ok", started_at=started))
        if len(executions) == 5000:
            Execution.objects.bulk_create(executions)
            Span.objects.bulk_create(span_rows)
            executions, span_rows = [], []
    Execution.objects.bulk_create(executions)
    Span.objects.bulk_create(span_rows)


def ensure_executions(rows: int, *, refill: bool = False, days: float | None = None) -> None:
    """Fill the executions table to ``rows`` root executions over ``days`` (default 90; see
    ``fill_executions``) unless it already holds that generated history (``history.ensure``: same
    size, days, seed and shape, less than a day old)."""
    import history
    from django.db import connection

    if connection.vendor == "postgresql":
        history.ensure(rows, refill=refill, days=days or HISTORY_DAYS)
        return
    from llm_agents.models import Execution

    present = Execution.objects.filter(parent__isnull=True).count()
    if present != rows or refill:
        print(f"filling the executions table: {present:,} rows, want {rows:,}", flush=True)
        fill_executions(rows, days=days)


def machine() -> str:
    """CPU, cores, load, Python, and the database server's version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "/".join(f"{value:.1f}" for value in os.getloadavg())
    details = f"{cpu} · {os.cpu_count()} CPUs · load {load} · Python {platform.python_version()}"
    try:
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                details += f" · PostgreSQL {cursor.fetchone()[0].split()[0]}"
        else:
            details += f" · {connection.vendor}"
    except Exception:  # noqa: BLE001 - Django not set up: the machine's details are enough
        pass
    return details


def timed(call: Callable[[], object], runs: int) -> list[float]:
    """``runs`` timings of ``call`` in milliseconds, after one warm-up call."""
    call()  # warm-up
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Print ``(what, figure, target)`` rows under a title and the machine's details."""
    print(f"\n{title}\n{machine()}")
    width = max(len(row[0]) for row in rows)
    figure_width = max(len(row[1]) for row in rows)
    for what, figure, target in rows:
        print(f"  {what:<{width}}  {figure:>{figure_width}}   {target}".rstrip())
    sys.stdout.flush()
