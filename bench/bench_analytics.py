"""How the analytics grow with history: every QuerySet analytics method and ``overview()`` at
100,000 and 1,000,000 executions stored.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_analytics.py
    [--sizes 100000 1000000] [--runs 15] [--refill] [--quick]

Each size is a history of issue 17's shape (``bench/history.py``: that many root executions
spread evenly over the 90 days ending now, so every window holds ten times more rows at 1M than at
100k), written with COPY. On PostgreSQL the largest size lives in ``DATABASE_URL``'s database, which
``bench_scale.py``, ``bench_api.py``, ``bench_dashboard.py`` and ``bench_export.py`` share, and each
smaller one in a database of its own (``<name>_100k``); a database already holding that history is
reused. Each call is timed ``--runs`` times after a warm-up; the figure is the median. Calls over
the whole history (``percentiles()``, ``error_analysis()`` and ``by_prompt_version()`` unscoped)
necessarily read every row.

Target (issue 9): ``overview()`` p50 ≤ 150 ms at 1,000,000. ``--quick`` (1,000 and 10,000
executions, 2 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from common import (
    HISTORY_DAYS,
    ensure_executions,
    median,
    percentile,
    print_table,
    setup_django,
    timed,
    use_database,
)


def calls() -> list[tuple[str, Callable[[], object]]]:
    from llm_agents.analytics import overview
    from llm_agents.models import Execution
    from llm_agents.periods import resolve_period

    e = Execution.objects
    return [
        ("overview(7d)  [API overview/, dashboard tiles]", lambda: overview(e.all(), resolve_period("7d"))),
        ("overview(30d)", lambda: overview(e.all(), resolve_period("30d"))),
        ("daily_report()", lambda: e.daily_report()),
        ("cost_by_agent()  [this_week]", lambda: e.cost_by_agent()),
        ("cost_by_agent('30d')", lambda: e.cost_by_agent("30d")),
        ("cost_by_model()  [today]", lambda: e.cost_by_model()),
        ("cost_by_model('7d')", lambda: e.cost_by_model("7d")),
        ("stats_for('SupportAgent')  [today]", lambda: e.stats_for("SupportAgent")),
        ("stats_for('SupportAgent', '7d')", lambda: e.stats_for("SupportAgent", "7d")),
        ("trend_analysis()  [7 days]", lambda: e.trend_analysis()),
        ("trend_analysis('SupportAgent', days=30)", lambda: e.trend_analysis("SupportAgent", days=30)),
        ("compare_versions('SupportAgent', '2.1', '2.0')", lambda: e.compare_versions("SupportAgent", "2.1", "2.0")),
        ("last_7_days().percentiles()", lambda: e.last_7_days().percentiles()),
        ("percentiles()  [whole history]", lambda: e.percentiles()),
        ("cost_forecast()", lambda: e.cost_forecast()),
        ("last_7_days().error_analysis()", lambda: e.last_7_days().error_analysis()),
        ("error_analysis()  [whole history]", lambda: e.error_analysis()),
        ("last_7_days().summary()", lambda: e.last_7_days().summary()),
        ("for_period('7d').summary_by('agent_type')", lambda: e.for_period("7d").summary_by("agent_type")),
        ("timeline('7d')", lambda: e.timeline("7d")),
        ("timeline('24h', 'hour')", lambda: e.timeline("24h", "hour")),
        ("for_period('7d').stats_by_agent()", lambda: e.for_period("7d").stats_by_agent()),
        ("for_period('30d').cost_summary('day')", lambda: e.for_period("30d").cost_summary("day")),
        ("for_period('7d').compare_models()", lambda: e.for_period("7d").compare_models()),
        ("by_prompt_version()  [whole history]", lambda: e.by_prompt_version()),
    ]  # fmt: skip


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 and size % 1_000_000 == 0 else f"{size // 1000}k"


def main() -> None:
    parser = argparse.ArgumentParser(description="Analytics time against the size of the history")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--refill", action="store_true", help="generate the histories again")
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 executions, 2 runs")
    options = parser.parse_args()
    sizes = [1_000, 10_000] if options.quick else sorted(options.sizes)
    runs = 2 if options.quick else options.runs
    vendor = setup_django()

    results: dict[str, dict[int, list[float]]] = {}
    for size in sizes:
        print(f"history of {size:,} executions ({HISTORY_DAYS:g} days)", flush=True)
        if vendor == "postgresql":
            use_database("" if size == sizes[-1] else label(size))
        ensure_executions(size, refill=options.refill)
        for what, call in calls():
            results.setdefault(what, {})[size] = timed(call, runs)

    largest = sizes[-1]
    reference = (
        100_000 if 100_000 in sizes and largest != 100_000 else sizes[-2] if len(sizes) > 1 else largest
    )
    rows = []
    for what, by_size in results.items():
        figures = " · ".join(f"{label(size)} {median(by_size[size]):7.1f}" for size in sizes)
        ratio = median(by_size[largest]) / median(by_size[reference])
        target = ""
        if what.startswith("overview(7d)"):
            p95 = percentile(by_size[largest], 95)
            target = f"p95 at {label(largest)} {p95:.1f} ms; target p50 ≤ 150 ms at 1M"
        rows.append((what, f"{figures} ms · {label(largest)}/{label(reference)} {ratio:4.1f}×", target))
    print_table(
        f"Analytics p50 against history size on {vendor}, {runs} runs each "
        f"(each history over {HISTORY_DAYS:g} days)",
        rows,
    )


if __name__ == "__main__":
    main()
