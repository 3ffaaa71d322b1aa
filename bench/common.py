"""Shared set-up of the benchmark scripts: Django on a database of their own, data, figure printing.

With ``DATABASE_URL`` unset the scripts use a temporary SQLite file; point it at PostgreSQL for the
figures the issues quote: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench``.
Scripts that empty or grow tables of their own use a database beside it (``<name>_<suffix>``), so
the million executions the read benchmarks share survive between them. Every database is created
if missing and migrated.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Executions per day of the generated history: a million cover 90 days, so a history of N rows
# covers N / RATE days ending now and a 7-day window holds the same rows once the history is longer.
RATE_PER_DAY = 1_000_000 / 90
AGENTS = ["SearchAgent", "SummaryAgent", "SupportAgent", "InvoiceAgent", "RouterAgent", "TriageAgent",
          "WriterAgent", "ReviewAgent", "nightly_digest", "ExtractAgent", "PlannerAgent", "TranslateAgent"]  # fmt: skip
MODELS = [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.50, 10.00), ("claude-sonnet-4", 3.00, 15.00),
          ("gpt-4.1-nano", 0.10, 0.40), ("claude-3-5-haiku", 0.80, 4.00)]  # fmt: skip
TENANTS = ["acme", "globex", "initech", None]
CHUNK = 200_000

INSERT_EXECUTIONS = """
INSERT INTO llm_agents_execution (
    id, kind, agent_type, agent_version, model_id, chosen_model_id, provider, temperature, status,
    finish_reason, input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,
    total_tokens, input_cost, output_cost, total_cost, pricing_source, duration_ms, time_to_first_token_ms,
    started_at, completed_at, created_at, parameters, system_prompt, user_prompt, response,
    error_class, error_message, metadata, streaming, tool_calls, tool_calls_count, attempts,
    attempts_count, fallback_chain, fallback_reason, cache_hit, retryable, rate_limited, tenant_id,
    parent_id, root_id, prompt_version_id
)
SELECT
    g.id, 'agent', (%(agents)s::text[])[1 + (i %% %(n_agents)s)], '1.' || (i %% 2),
    (%(models)s::text[])[m], CASE WHEN i %% 50 = 0 THEN 'gpt-4o' ELSE (%(models)s::text[])[m] END,
    'openai', 0,
    CASE WHEN r < 0.03 THEN 'error' WHEN r < 0.04 THEN 'timeout' ELSE 'success' END,
    CASE WHEN r < 0.04 THEN '' ELSE 'stop' END,
    tin, tout, 0, 0, 0, tin + tout,
    round(tin * (%(in_prices)s::numeric[])[m] / 1000000, 8),
    round(tout * (%(out_prices)s::numeric[])[m] / 1000000, 8),
    round(tin * (%(in_prices)s::numeric[])[m] / 1000000, 8) + round(tout * (%(out_prices)s::numeric[])[m] / 1000000, 8),
    'genai_prices', dur, dur / 4, started, started + dur * interval '1 millisecond', started,
    '{}'::jsonb, 'You are a helpful agent.', 'Question ' || i, CASE WHEN r < 0.04 THEN '' ELSE 'Answer ' || i END,
    CASE WHEN r < 0.01 THEN 'RateLimitError' WHEN r < 0.02 THEN 'ProviderError'
         WHEN r < 0.03 THEN 'AuthenticationError' WHEN r < 0.04 THEN 'ProviderTimeoutError' ELSE '' END,
    CASE WHEN r < 0.01 THEN 'Rate limit reached' WHEN r < 0.02 THEN 'The server had an error'
         WHEN r < 0.03 THEN 'Invalid API key' WHEN r < 0.04 THEN 'Request timed out' ELSE '' END,
    '{}'::jsonb, i %% 5 = 0, '[]'::jsonb, i %% 3, '[]'::jsonb, 1, '[]'::jsonb, '', i %% 7 = 0,
    r < 0.02, r < 0.01, (%(tenants)s::text[])[1 + (i %% %(n_tenants)s)], NULL, g.id, NULL
FROM (
    SELECT gen_random_uuid() AS id, i, random() AS r, 1 + (i * 7 %% %(n_models)s) AS m,
           (200 + random() * 4000)::int AS tin, (20 + random() * 900)::int AS tout,
           (150 + random() * random() * 9000)::int AS dur,
           now() - (%(days)s * (1 - i::float / %(rows)s) + random() / 1000) * interval '1 day' AS started
    FROM generate_series(%(first)s, %(last)s) AS i
) AS g
"""

# Three spans per execution, as an agent call with a retrieval, a provider request and a tool run.
INSERT_SPANS = """
INSERT INTO llm_agents_span (
    id, execution_id, parent_id, name, kind, status, model_id, provider, input, output, input_tokens,
    output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, total_cost, duration_ms, time_to_first_token_ms, error_class,
    error_message, metadata, started_at, completed_at
)
SELECT
    gen_random_uuid(), e.id, NULL, (ARRAY['retrieval', e.model_id, 'lookup'])[k],
    (ARRAY['retriever', 'llm', 'tool'])[k], 'ok', CASE WHEN k = 2 THEN e.model_id ELSE '' END,
    CASE WHEN k = 2 THEN 'openai' ELSE '' END, '{"q": "x"}'::jsonb, '"y"'::jsonb,
    CASE WHEN k = 2 THEN e.input_tokens ELSE 0 END, CASE WHEN k = 2 THEN e.output_tokens ELSE 0 END, 0, 0, 0,
    CASE WHEN k = 2 THEN e.total_cost ELSE 0 END, e.duration_ms / 3, NULL, '', '', '{}'::jsonb,
    e.started_at + (k - 1) * e.duration_ms / 3 * interval '1 millisecond',
    e.started_at + k * e.duration_ms / 3 * interval '1 millisecond'
FROM llm_agents_execution AS e CROSS JOIN generate_series(1, %(per_execution)s) AS k
WHERE e.started_at >= %(low)s AND e.started_at < %(high)s
"""


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
    os.environ["DATABASE_URL"] = url
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


def drop_postgres_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def history_days(rows: int) -> float:
    """Days a history of ``rows`` executions covers at the generated rate."""
    return rows / RATE_PER_DAY


def fill_executions(rows: int, *, days: float | None = None, spans: int = 0, quiet: bool = False) -> None:
    """Empty the executions and spans tables, then insert ``rows`` root executions spread evenly
    over the ``days`` (default: at the generated rate) ending now, in time order as a live system
    writes them, with ``spans`` spans each; then analyse. On PostgreSQL the server generates the
    rows (``INSERT … SELECT generate_series`` in chunks); elsewhere ``bulk_create``."""
    import datetime as dt

    from django.db import connection

    days = history_days(rows) if days is None else days
    started = time.perf_counter()
    if connection.vendor != "postgresql":
        fill_python(rows, days, spans)
        return
    params = {
        "agents": AGENTS,
        "n_agents": len(AGENTS),
        "models": [m[0] for m in MODELS],
        "n_models": len(MODELS),
        "in_prices": [m[1] for m in MODELS],
        "out_prices": [m[2] for m in MODELS],
        "tenants": TENANTS,
        "n_tenants": len(TENANTS),
        "days": days,
        "rows": rows,
    }
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE llm_agents_span, llm_agents_execution CASCADE")
        for first in range(1, rows + 1, CHUNK):
            last = min(first + CHUNK - 1, rows)
            cursor.execute(INSERT_EXECUTIONS, {**params, "first": first, "last": last})
            if not quiet:
                print(f"  inserted executions {first:,}–{last:,}", flush=True)
        if spans:
            cursor.execute("SELECT min(started_at), max(started_at) FROM llm_agents_execution")
            low, high = cursor.fetchone()
            steps = max(rows // CHUNK, 1)
            edges = [low + (high - low) * step / steps for step in range(steps)]
            edges.append(high + dt.timedelta(seconds=1))
            for lower, upper in zip(edges, edges[1:], strict=False):
                cursor.execute(INSERT_SPANS, {"per_execution": spans, "low": lower, "high": upper})
            if not quiet:
                print(f"  inserted {spans} spans per execution", flush=True)
        cursor.execute("VACUUM ANALYZE llm_agents_execution")
        cursor.execute("VACUUM ANALYZE llm_agents_span")
    if not quiet:
        print(f"  {rows:,} executions in {time.perf_counter() - started:.0f} s", flush=True)


def fill_python(rows: int, days: float, spans: int) -> None:
    import datetime as dt
    import random
    from decimal import Decimal

    from django.utils import timezone

    from llm_agents.models import Execution, Span

    Span.objects.all().delete()
    Execution.objects.all().delete()
    rng = random.Random(8)
    now = timezone.now()
    executions, span_rows = [], []
    for i in range(rows):
        model, in_price, out_price = MODELS[i * 7 % len(MODELS)]
        r = rng.random()
        tin, tout = rng.randint(200, 4200), rng.randint(20, 920)
        input_cost = round(Decimal(tin) * Decimal(str(in_price)) / 1_000_000, 8)
        output_cost = round(Decimal(tout) * Decimal(str(out_price)) / 1_000_000, 8)
        started = now - dt.timedelta(days=days * (1 - i / rows) + rng.random() / 1000)
        execution = Execution(
            agent_type=AGENTS[i % len(AGENTS)], agent_version=f"1.{i % 2}", model_id=model,
            chosen_model_id="gpt-4o" if i % 50 == 0 else model,
            status="error" if r < 0.03 else "timeout" if r < 0.04 else "success",
            error_class="RateLimitError" if r < 0.01 else "", input_tokens=tin, output_tokens=tout,
            total_tokens=tin + tout, input_cost=input_cost, output_cost=output_cost,
            total_cost=input_cost + output_cost, duration_ms=int(150 + rng.random() ** 2 * 9000),
            streaming=i % 5 == 0, tool_calls_count=i % 3, cache_hit=i % 7 == 0, rate_limited=r < 0.01,
            started_at=started, tenant_id=TENANTS[i % len(TENANTS)],
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


def ensure_executions(rows: int, *, refill: bool = False) -> None:
    """Fill the executions table to ``rows`` (see ``fill_executions``) unless it already holds
    exactly that many root executions from an earlier run."""
    from llm_agents.models import Execution

    present = Execution.objects.count()
    if present != rows or refill:
        print(f"filling the executions table: {present:,} rows, want {rows:,}", flush=True)
        fill_executions(rows)


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
