"""Issue 20's figure: one full evaluation of 100 active alert rules over issue 17's history.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_alerts.py
    [--rows 1000000] [--days 90] [--runs 7] [--quick]

The rules are a mix: cost, executions, error rate and p95 latency, over every agent and model and
tenant of the history or none, with windows of 5, 15, 60 and 1440 minutes, 30 of them anomaly rules
(each reads its window and the 24 before it). Each ``evaluate()`` pass, at the moment the history
ends (its last execution), is timed (p50 / p95 ms after a warm-up), then the reads of each window
length's rules (``measure()``) alone; the cooldowns are 0 and the thresholds out of reach, so every
pass evaluates every rule (an anomaly rule may still fire: its events are counted and deleted with
the rules). The history is read, never written.
``--days`` spreads the history over fewer days than 90: ``--rows 2890000 --days 26`` puts in the
25 windows of each length as many executions as the 10M history of 90 days does (≈4,630 an hour),
without generating the 64 days before them, which no rule reads.
``--quick`` (10,000 rows, 3 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import itertools

from common import ensure_executions, median, percentile, print_table, setup_django, timed

METRICS = ("cost", "executions", "error_rate", "p95_latency")
WINDOWS = (5, 15, 60, 1440)
RULES = 100
ANOMALY_EVERY = 10  # rules 0, 3, 6 of every 10 are anomaly rules: 30 %


def create_rules() -> list[int]:
    """100 rules over the history's agents, models (the model that answered) and tenants."""
    from history import AGENTS, MODELS, TENANTS

    from llm_agents.models import AlertRule

    agents = [agent[0] for agent in AGENTS]
    models = [model[0] for model in MODELS]
    tenants = [tenant[0] for tenant in TENANTS if tenant[0]]
    filters = itertools.cycle(
        [{}, {"agent_type": agents[0]}, {"model_id": models[0]}, {"tenant_id": tenants[0]}, {}]
        + [{"agent_type": agent} for agent in agents[1:6]]
        + [{"model_id": model} for model in models[1:4]]
        + [{"tenant_id": tenant} for tenant in tenants[1:]]
        + [{"agent_type": agents[1], "tenant_id": tenants[1]}]
    )
    ids = []
    for index in range(RULES):
        anomaly = index % ANOMALY_EVERY in (0, 3, 6)
        rule = AlertRule.objects.create(
            name=f"bench alert {index}", metric=METRICS[index % len(METRICS)],
            window_minutes=WINDOWS[(index // len(METRICS)) % len(WINDOWS)], anomaly=anomaly,
            threshold=None if anomaly else 1e12, sensitivity=1e9, cooldown_minutes=0, **next(filters),
        )  # fmt: skip
        ids.append(rule.pk)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=90.0, help="days the history covers (90)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 3 runs (the CI smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.runs = 10_000, 3
    setup_django()
    ensure_executions(args.rows, days=args.days)
    import datetime as dt

    from django.db.models import Max

    from llm_agents.alerts.evaluation import evaluate, measure
    from llm_agents.models import AlertEvent, AlertRule, Execution

    roots = Execution.objects.filter(parent__isnull=True, eval_run__isnull=True)
    now = roots.aggregate(last=Max("started_at"))["last"] + dt.timedelta(seconds=1)
    ids = create_rules()
    try:
        fired: list[int] = []
        durations = timed(lambda: fired.append(len(evaluate(now))), args.runs)
        read = {
            minutes: roots.filter(started_at__gte=now - dt.timedelta(minutes=minutes * 25)).count()
            for minutes in WINDOWS
        }
        rules = AlertRule.objects.filter(pk__in=ids)
        anomalies = rules.filter(anomaly=True).count()
        groups = {minutes: list(rules.filter(window_minutes=minutes)) for minutes in WINDOWS}
        by_group = {
            minutes: timed(
                lambda group=group, minutes=minutes: measure(group, minutes, now, roots.db), args.runs
            )
            for minutes, group in groups.items()
        }
    finally:
        AlertEvent.objects.filter(rule_id__in=ids).delete()
        AlertRule.objects.filter(pk__in=ids).delete()
    shape = ", ".join(f"{minutes} min: {n:,}" for minutes, n in read.items())
    print_table(
        f"Alert rule evaluation: {RULES} rules ({anomalies} anomaly) over {args.rows:,} executions, "
        f"{args.runs} runs",
        [
            ("evaluate() p50", f"{median(durations):.1f} ms", "target <= 1000 ms"),
            ("evaluate() p95", f"{percentile(durations, 95):.1f} ms", ""),
            *(
                (
                    f"  reads of the {minutes}-minute rules p50",
                    f"{median(by_group[minutes]):.1f} ms",
                    f"{len(group)} rules, {sum(rule.anomaly for rule in group)} anomaly",
                )
                for minutes, group in groups.items()
            ),
            ("root executions in the 25 windows of each length", shape, ""),
            ("events fired per pass", "/".join(str(n) for n in fired), ""),
        ],
    )


if __name__ == "__main__":
    main()
