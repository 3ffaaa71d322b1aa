"""Budget check time with 10,000 and with 1,000,000 executions stored (PostgreSQL).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_budget_check.py
    [--sizes 10000 1000000] [--checks 3000] [--quick]

The script uses a database of its own (``<name>_budget``) and EMPTIES its executions, spans and
budget tables, then for each
size: fills the executions table (server-side INSERT … SELECT generate_series, spread over the last
30 days, 20 agent types, 50 tenants), rebuilds the spend counters from it, and times ``budgets.check``
(with a global monthly hard stop, an agent weekly hard stop and a tenant daily warning budget applying,
so the check locks two budgets, sums their periods and reserves) followed by ``release()``, which is
not timed. ``--quick`` uses 1,000 and 10,000 executions and fewer checks, for CI smoke runs.

Targets (issue 4): the two p50s within 30% of each other; p50 under 1 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import time

from common import median, percentile, print_table, setup_django


def fill_executions(count: int) -> None:
    """Insert ``count`` executions in one server-side statement (every column given a value)."""
    from django.db import connection

    from llm_agents.models import Execution

    overrides = {
        "id": "gen_random_uuid()",
        "agent_type": "'Agent' || (g %% 20)",
        "model_id": "'gpt-4o-mini'",
        "chosen_model_id": "'gpt-4o-mini'",
        "tenant_id": "'tenant-' || (g %% 50)",
        "status": "'success'",
        "input_tokens": "1000",
        "output_tokens": "200",
        "total_tokens": "1200",
        "input_cost": "0.00015",
        "output_cost": "0.00012",
        "total_cost": "0.00027",
        # spread evenly over the last 30 days, whatever the count
        "started_at": "now() - (g * 2592.0 / %s) * interval '1000 seconds'",
        "completed_at": "now() - (g * 2592.0 / %s) * interval '1000 seconds' + interval '800 milliseconds'",
        "created_at": "now()",
        "duration_ms": "800",
        "parent_id": "NULL",
        "prompt_version_id": "NULL",
    }
    columns, expressions, params = [], [], []
    for field in Execution._meta.concrete_fields:
        columns.append(connection.ops.quote_name(field.column))
        if field.column in overrides:
            expressions.append(overrides[field.column])
            params.extend([count] * overrides[field.column].count("%s"))
        elif field.get_internal_type() == "JSONField":
            expressions.append("'[]'::jsonb" if field.default is list else "'{}'::jsonb")
        elif field.null and not field.has_default():
            expressions.append("NULL")
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    sql = (
        f"INSERT INTO {Execution._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS g"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, count])
        cursor.execute(f"ANALYZE {Execution._meta.db_table}")


def main() -> None:
    parser = argparse.ArgumentParser(description="budgets.check time against the number of stored executions")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="small sizes and few checks, for CI smoke runs")
    options = parser.parse_args()
    sizes = [1_000, 10_000] if options.quick else options.sizes
    checks = 300 if options.quick else options.checks
    vendor = setup_django("budget")

    from decimal import Decimal

    from django.db import connection

    from llm_agents import budgets
    from llm_agents.models import Budget, BudgetReservation, Execution, Span, SpendCounter

    def empty() -> None:
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                tables = [
                    m._meta.db_table for m in (Span, Execution, SpendCounter, BudgetReservation, Budget)
                ]
                cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        else:
            for model in (Span, Execution, SpendCounter, BudgetReservation, Budget):
                model.objects.all().delete()

    rows, p50s = [], {}
    for size in sizes:
        empty()
        started = time.perf_counter()
        if vendor == "postgresql":
            fill_executions(size)
        else:
            from tests.factories import ExecutionFactory

            Execution.objects.bulk_create([ExecutionFactory.build() for _ in range(size)], batch_size=2000)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        budgets.rebuild_counters()
        rebuilt = time.perf_counter() - started
        Budget.objects.create(name="all", limit_usd=Decimal("1000000"), period=Budget.Period.MONTHLY)
        Budget.objects.create(name="agent", scope="agent", scope_value="Agent7", limit_usd=Decimal("1000000"),
                              period=Budget.Period.WEEKLY)  # fmt: skip
        Budget.objects.create(name="tenant", scope="tenant", scope_value="tenant-7", limit_usd=Decimal("1"),
                              period=Budget.Period.DAILY, enforcement=Budget.Enforcement.WARNING)  # fmt: skip
        for _ in range(200):  # warm up the connection and Django's caches
            budgets.check(
                "Agent7", tenant_id="tenant-7", model="gpt-4o-mini", estimated_cost=Decimal("0.01")
            ).release()
        durations = []
        for _ in range(checks):
            start = time.perf_counter()
            reservation = budgets.check("Agent7", tenant_id="tenant-7", model="gpt-4o-mini",
                                        estimated_cost=Decimal("0.01"))  # fmt: skip
            durations.append((time.perf_counter() - start) * 1000)
            reservation.release()
        p50s[size] = median(durations)
        counters = SpendCounter.objects.count()
        rows.append(
            (f"{size:,} executions: p50 check", f"{p50s[size]:.3f} ms", "target < 1 ms on PostgreSQL")
        )
        rows.append((f"{size:,} executions: p95 check", f"{percentile(durations, 95):.3f} ms", ""))
        rows.append(
            (
                f"{size:,} executions: fill / rebuild",
                f"{filled:.1f} s / {rebuilt:.1f} s",
                f"{counters:,} counters",
            )
        )
    low, high = min(p50s.values()), max(p50s.values())
    rows.append(("p50 spread (largest vs smallest)", f"{(high / low - 1) * 100:.1f} %", "target within 30%"))
    print_table(f"budgets.check on {vendor}, {checks} checks per size", rows)
    empty()


if __name__ == "__main__":
    main()
