"""Issue 19's figures: what a running prompt experiment costs each agent call, and how long its
results and guardrail check take over a large experiment.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_experiments.py
    [--rows 1000000] [--runs 7] [--calls 2000] [--quick]

Per call: ``--calls`` agent calls of a managed prompt (in-process fake provider, synchronous
tracking) three ways, interleaved over three rounds (the median per way): the prompt with a
``production`` label, the same prompt under a running experiment of two variants split by user, and
such an experiment with guardrails; the differences per call are what assignment, the recorded
experiment and the guardrail hook add.

Results: in a database of its own (``<name>_experiments``), ``--rows`` root executions of
``bench/history.py``'s shape (90 days); the executions of the last 30 days that used one of the
history's prompts (every version of it) become the executions of one experiment whose variants are
those versions, and each gets one numeric ``helpfulness`` score. Timed (p50 / p95 ms after a warm-up):
``results()`` with metric ``error_rate``, ``latency``, ``cost`` and the score, and
``check_guardrails()``. ``--quick`` (10,000 rows, 200 calls, 2 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from common import median, percentile, print_table, setup_django, timed, use_database

SCORE_SQL = """
INSERT INTO llm_agents_score (id, execution_id, session_id, name, data_type, value, string_value, comment,
                              source, tenant_id, created_at, execution_started_at)
SELECT md5(e.id::text || 'experiment')::uuid, e.id, '', 'helpfulness', 'numeric',
       1 + abs(hashtext(e.id::text)) %% 5, '', '', 'api', e.tenant_id, e.started_at + interval '5 seconds',
       e.started_at
FROM llm_agents_execution e WHERE e.experiment_id = %s
"""


def call_overhead(calls: int) -> list[tuple[str, str, str]]:
    """Milliseconds per agent call: labelled prompt, running experiment, experiment with guardrails."""
    from llm_agents import Agent, Param
    from llm_agents.models import Prompt, PromptExperiment
    from llm_agents.testing import fake_llm

    use_database("experiment_calls")
    Prompt.objects.filter(slug="bench-experiment").delete()
    prompt = Prompt.objects.create(slug="bench-experiment", name="bench")
    for text in ("Answer {{question}}.", "Answer {{question}} briefly."):
        prompt.update_content([{"role": "user", "content": text}], model="fake/bench")
    prompt.set_label("production", 1)

    class BenchExperimentAgent(Agent):
        prompt = "bench-experiment"
        question = Param(required=True)

    def per_call() -> float:
        with fake_llm():
            started = time.perf_counter()
            for index in range(calls):
                BenchExperimentAgent.call(question=f"q{index}", _user_id=f"user-{index % 500}")
            return (time.perf_counter() - started) * 1000 / calls

    def under(guardrails: dict[str, float] | None) -> float:
        """Calls under a new running experiment with these guardrails, or with none running (None)."""
        for running in PromptExperiment.objects.filter(prompt=prompt, status="running"):
            running.stop()
        if guardrails is not None:
            PromptExperiment.objects.create(
                prompt=prompt, name="bench", metric="error_rate", min_samples=100, guardrails=guardrails,
                variants=[{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
            ).start()  # fmt: skip
        return per_call()

    modes: dict[str, dict[str, float] | None] = {
        "labelled": None,
        "split": {},
        "guarded": {"error_rate_max": 50, "cost_per_call_max": 1},
    }
    rounds: dict[str, list[float]] = {mode: [] for mode in modes}
    per_call()  # warm-up
    for _ in range(3):  # the modes interleaved, so the table's growth weighs on each alike
        for mode, guardrails in modes.items():
            rounds[mode].append(under(guardrails))
    labelled, split, checked = (median(rounds[mode]) for mode in modes)
    return [
        ("call, prompt by production label", f"{labelled:.2f} ms", ""),
        ("call, running experiment (split by user)", f"{split:.2f} ms", f"{split - labelled:+.2f} ms"),
        ("call, experiment with guardrails", f"{checked:.2f} ms", f"{checked - labelled:+.2f} ms"),
    ]


def experiment_over_history(rows: int) -> tuple[object, int]:
    """The experiment made of the last 30 days' executions of one of the history's prompts."""
    import history
    from django.db import connection, transaction
    from django.db.models import Count
    from django.utils import timezone

    from llm_agents.models import Execution, Prompt, PromptExperiment

    use_database("experiments")
    history.ensure(rows)
    prompt = (
        Prompt.objects.filter(slug__startswith="bench-")
        .annotate(count=Count("versions"))
        .filter(count__gte=2)
        .order_by("-count", "slug")
        .first()
    )
    numbers = list(prompt.versions.order_by("number").values_list("number", flat=True))
    experiment = PromptExperiment.objects.filter(prompt=prompt, name="bench").first()
    if experiment is None:
        experiment = PromptExperiment.objects.create(
            prompt=prompt, name="bench", metric="error_rate", min_samples=100,
            guardrails={"error_rate_max": 99, "cost_per_call_max": 100},
            variants=[{"version": number, "weight": 1} for number in numbers],
        )  # fmt: skip
        experiment.start()
    since = timezone.now() - dt.timedelta(days=30)
    members = Execution.objects.filter(
        parent__isnull=True, prompt_version__prompt=prompt, started_at__gte=since
    )
    if not Execution.objects.filter(experiment=experiment).exists():
        with transaction.atomic(), connection.cursor() as cursor:
            query, params = members.values("id").query.sql_with_params()
            cursor.execute(
                f"UPDATE llm_agents_execution SET experiment_id = %s WHERE id IN ({query})",  # noqa: S608
                [experiment.pk, *params],
            )
            cursor.execute(SCORE_SQL, [experiment.pk])
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE llm_agents_execution")
            cursor.execute("VACUUM ANALYZE llm_agents_score")
    return experiment, Execution.objects.filter(experiment=experiment).count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 200 calls, 2 runs (CI smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.calls, args.runs = 10_000, 200, 2
    vendor = setup_django()
    if vendor != "postgresql":
        raise SystemExit(
            "bench_experiments.py measures PostgreSQL: set DATABASE_URL to a PostgreSQL database."
        )
    print_table(
        f"experiment cost per agent call ({args.calls:,} calls, fake provider)", call_overhead(args.calls)
    )
    experiment, members = experiment_over_history(args.rows)
    figures = []
    for metric in ("error_rate", "latency", "cost", "helpfulness"):
        experiment.metric = metric
        durations = timed(experiment.results, args.runs)
        figures.append(
            (f"results() metric {metric}", f"{median(durations):.1f} / {percentile(durations, 95):.1f}", "")
        )
    durations = timed(experiment.check_guardrails, args.runs)
    figures.append(("check_guardrails()", f"{median(durations):.1f} / {percentile(durations, 95):.1f}", ""))
    variants = len(experiment.variants)
    print_table(
        f"experiment of {members:,} executions ({variants} variants) in a history of {args.rows:,}: p50 / p95 ms",
        figures,
    )


if __name__ == "__main__":
    main()
