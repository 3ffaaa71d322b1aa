"""Server time of the HTTP API's overview/ and executions/ over a large executions table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_t5 .venv/bin/python bench/bench_api.py
    [--rows 1000000] [--days 90] [--runs 30] [--export] [--refill] [--quick]

The table is filled once to ``--rows`` root executions spread over the last ``--days`` days (on
PostgreSQL by the server itself, ``INSERT … SELECT generate_series`` in chunks of 250,000 rows, well
under a minute for a million; elsewhere ``bulk_create`` in batches of 5,000); later runs reuse the
rows. Each URL is requested ``--runs`` times in-process through Django's test client, logged in as
staff, after a warm-up: the figure is the server's time to answer, every query included.
``--export`` also streams the whole table through export/ (CSV) and prints the time and the
process's peak resident memory before and after (flat: the rows are read 2,000 at a time from a
server-side cursor). Target (issue 7): overview/ p50 ≤ 150 ms at 1,000,000
executions on PostgreSQL. ``--quick`` (20,000 rows, 5 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import time

from common import median, percentile, print_table, setup_django

AGENTS = ["SearchAgent", "SummaryAgent", "SupportAgent", "InvoiceAgent", "RouterAgent", "TriageAgent",
          "WriterAgent", "ReviewAgent", "nightly_digest", "ExtractAgent"]  # fmt: skip
MODELS = [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.50, 10.00), ("claude-sonnet-4", 3.00, 15.00),
          ("gpt-4.1-nano", 0.10, 0.40)]  # fmt: skip
CHUNK = 250_000

INSERT = """
INSERT INTO llm_agents_execution (
    id, kind, agent_type, agent_version, model_id, chosen_model_id, provider, status, finish_reason,
    input_tokens, output_tokens, cached_tokens, reasoning_tokens, total_tokens, input_cost, output_cost,
    total_cost, pricing_source, duration_ms, started_at, completed_at, created_at, parameters,
    system_prompt, user_prompt, response, error_class, error_message, metadata, streaming, tool_calls,
    tool_calls_count, attempts, attempts_count, fallback_chain, fallback_reason, cache_hit, retryable,
    rate_limited, tenant_id
)
SELECT
    gen_random_uuid(), 'agent', (%(agents)s::text[])[1 + i %% %(n_agents)s], '1.' || (i %% 2),
    (%(models)s::text[])[m], (%(models)s::text[])[m], 'openai',
    CASE WHEN r < 0.03 THEN 'error' WHEN r < 0.04 THEN 'timeout' ELSE 'success' END,
    CASE WHEN r < 0.04 THEN '' ELSE 'stop' END,
    tin, tout, 0, 0, tin + tout,
    round(tin * (%(in_prices)s::numeric[])[m] / 1000000, 8),
    round(tout * (%(out_prices)s::numeric[])[m] / 1000000, 8),
    round(tin * (%(in_prices)s::numeric[])[m] / 1000000, 8) + round(tout * (%(out_prices)s::numeric[])[m] / 1000000, 8),
    'genai_prices', dur, started, started + dur * interval '1 millisecond', started,
    '{}'::jsonb, 'You are a helpful agent.', 'Question ' || i, 'Answer ' || i,
    CASE WHEN r < 0.01 THEN 'RateLimitError' WHEN r < 0.03 THEN 'ProviderError'
         WHEN r < 0.04 THEN 'ProviderTimeoutError' ELSE '' END,
    CASE WHEN r < 0.01 THEN 'Rate limit reached' WHEN r < 0.03 THEN 'The server had an error'
         WHEN r < 0.04 THEN 'Request timed out' ELSE '' END,
    '{}'::jsonb, i %% 5 = 0, '[]'::jsonb, 0, '[]'::jsonb, 1, '[]'::jsonb, '', i %% 7 = 0, false, r < 0.01,
    (ARRAY['acme', 'globex', 'initech', NULL])[1 + i %% 4]
FROM (
    SELECT i, random() AS r, 1 + i * 3 %% %(n_models)s AS m,
           (200 + random() * 4000)::int AS tin, (20 + random() * 900)::int AS tout,
           (150 + random() * random() * 9000)::int AS dur,
           now() - %(days)s * (1 - i::float / %(rows)s) * interval '1 day' AS started
    FROM generate_series(%(first)s, %(last)s) AS i
) AS g
"""


def fill_postgres(rows: int, days: int) -> None:
    from django.db import connection

    params = {
        "agents": AGENTS,
        "n_agents": len(AGENTS),
        "models": [m[0] for m in MODELS],
        "n_models": len(MODELS),
        "in_prices": [m[1] for m in MODELS],
        "out_prices": [m[2] for m in MODELS],
        "days": days,
        "rows": rows,
    }
    with connection.cursor() as cursor:
        for first in range(1, rows + 1, CHUNK):
            last = min(first + CHUNK - 1, rows)
            started = time.perf_counter()
            cursor.execute(INSERT, {**params, "first": first, "last": last})
            print(f"  inserted rows {first:,}–{last:,} in {time.perf_counter() - started:.1f} s", flush=True)
        cursor.execute("VACUUM ANALYZE llm_agents_execution")


def fill_python(rows: int, days: int) -> None:
    import datetime as dt
    import random
    from decimal import Decimal

    from django.utils import timezone

    from llm_agents.models import Execution

    rng = random.Random(7)
    now = timezone.now()
    batch = []
    for i in range(rows):
        model, in_price, out_price = MODELS[i * 3 % len(MODELS)]
        r = rng.random()
        tin, tout = rng.randint(200, 4200), rng.randint(20, 920)
        input_cost = round(Decimal(tin) * Decimal(str(in_price)) / 1_000_000, 8)
        output_cost = round(Decimal(tout) * Decimal(str(out_price)) / 1_000_000, 8)
        batch.append(
            Execution(
                agent_type=AGENTS[i % len(AGENTS)], agent_version=f"1.{i % 2}", model_id=model,
                chosen_model_id=model, status="error" if r < 0.03 else "timeout" if r < 0.04 else "success",
                input_tokens=tin, output_tokens=tout, total_tokens=tin + tout, input_cost=input_cost,
                output_cost=output_cost, total_cost=input_cost + output_cost,
                duration_ms=int(150 + rng.random() ** 2 * 9000), streaming=i % 5 == 0,
                started_at=now - dt.timedelta(days=days * (1 - i / rows)),
                tenant_id=["acme", "globex", "initech", None][i % 4],
            )
        )  # fmt: skip
        if len(batch) == 5000:
            Execution.objects.bulk_create(batch)
            batch = []
    Execution.objects.bulk_create(batch)


def timed(client, url: str, runs: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert client.get(url).status_code == 200, url  # warm-up
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return durations, len(captured)


def stream_export(client) -> tuple[int, float, float, float]:
    """Rows and seconds to stream every execution through export/ (CSV), and the process's peak
    resident memory (MiB) before and after."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    response = client.get("/api/llm-agents/export/")
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return lines - 1, elapsed, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description="Server time of the HTTP API")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="spread the rows over this many days")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--export", action="store_true", help="also stream the whole table through export/")
    parser.add_argument("--refill", action="store_true", help="delete and insert the rows again")
    parser.add_argument("--quick", action="store_true", help="20,000 rows and 5 runs, for CI smoke runs")
    options = parser.parse_args()
    rows, runs = (20_000, 5) if options.quick else (options.rows, options.runs)
    vendor = setup_django()

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from llm_agents.models import Execution

    present = Execution.objects.count()
    if present != rows or options.refill:
        print(f"filling the executions table: {present:,} rows, want {rows:,}", flush=True)
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE llm_agents_execution CASCADE")
        else:
            Execution.objects.all().delete()
        started = time.perf_counter()
        (fill_postgres if vendor == "postgresql" else fill_python)(rows, options.days)
        print(f"  {rows:,} executions in {time.perf_counter() - started:.1f} s", flush=True)

    user, _ = get_user_model().objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    settings.ALLOWED_HOSTS = ["testserver"]
    client = Client()
    client.force_login(user)
    api = "/api/llm-agents/"
    urls = [
        ("overview/ (default 7d)", f"{api}overview/"),
        ("overview/?period=24h", f"{api}overview/?period=24h"),
        ("overview/?period=30d", f"{api}overview/?period=30d"),
        ("overview/?period=90d", f"{api}overview/?period=90d"),
        ("executions/ (first page)", f"{api}executions/"),
        ("executions/?page=100", f"{api}executions/?page=100"),
        ("executions/?status=error&period=7d", f"{api}executions/?status=error&period=7d"),
        ("executions/?agent_type=…&ordering=-total_cost", f"{api}executions/?agent_type=SupportAgent&ordering=-total_cost"),
        ("agents/ (7d)", f"{api}agents/"),
        ("costs/summary/?group_by=day&period=30d", f"{api}costs/summary/?group_by=day&period=30d"),
        ("comparison/models/ (7d)", f"{api}comparison/models/"),
        ("errors/ (7d)", f"{api}errors/"),
    ]  # fmt: skip
    table = []
    for what, url in urls:
        durations, queries = timed(client, url, runs)
        target = "≤ 150 ms p50 (target)" if what.startswith("overview/ (default") else ""
        figure = f"p50 {median(durations):6.1f} ms · p95 {percentile(durations, 95):6.1f} ms"
        table.append((f"{what} [{queries} queries]", figure, target))
    if options.export:
        exported, seconds, before, after = stream_export(client)
        memory = f"peak RSS {before:.0f} MiB before, {after:.0f} MiB after"
        table.append(("export/ CSV, every row", f"{exported:,} rows in {seconds:.1f} s", memory))
    print_table(
        f"API server time, {rows:,} executions over {options.days} days, {vendor}, {runs} runs each", table
    )


if __name__ == "__main__":
    main()
