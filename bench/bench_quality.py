"""Issue 18's figures: scores and sessions over a large history, and what an evaluation run adds to
each agent call.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_quality.py
    [--rows 1000000] [--runs 7] [--items 200] [--quick]

Data: ``--rows`` root executions of ``bench/history.py``'s shape (90 days, a third in the last 30;
~60 % of the calls in sessions of ~2–3 calls of 20,000 end users, ~10 % tagged ``beta``) and one
score per root execution, ``--rows`` scores in all, written with one INSERT … SELECT: 60 %
``helpfulness`` (numeric 1–5), 30 % ``resolved`` (boolean), 10 % ``csat`` (categorical: happy,
neutral, unhappy), each created a few seconds after its execution and carrying its start. An
existing history of that size is reused (``history.ensure``), and the scores are written again only
when their count differs or they lack their execution's start (``execution_started_at``).

Timed (p50 / p95 ms after a warm-up): ``score_summary`` of each data type over all time and the
last 30 days, ``scores_by`` by agent and by day over 30 days, the first page (50 rows) of
``sessions()`` over all time and the last 7 days, one session's executions (``by_session``), one
user's latest 50 (``by_user``), the latest 50 tagged ``beta`` (``with_tag``). Target (issue 18):
``score_summary`` and ``sessions()`` p50 ≤ 100 ms at 1M executions with 1M scores.

Then the evaluation overhead: ``--items`` dataset items run once as plain agent calls and once as
an evaluation run (``evals.run``, sync, concurrency 1, ``exact_match`` and ``contains``), both
against the in-process fake provider, so the difference per item is what the run adds beyond the
agent call (its result and score rows, the evaluators, the counters). Target: ≤ 5 ms per item.
Evaluation runs write into a database of their own (``<name>_evals``), so the history stays as it is.
``--quick`` (10,000 rows, 20 items, 2 runs) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from common import median, percentile, print_table, setup_django, timed, use_database

SCORE_SQL = """
INSERT INTO llm_agents_score (id, execution_id, session_id, name, data_type, value, string_value, comment,
                              source, tenant_id, created_at, execution_started_at)
SELECT md5(e.id::text || 'score')::uuid, e.id, '', kind.name, kind.data_type,
       CASE kind.name WHEN 'helpfulness' THEN 1 + (h % 5) WHEN 'resolved' THEN (h % 4 > 0)::int ELSE NULL END,
       CASE kind.name WHEN 'csat' THEN (ARRAY['happy', 'neutral', 'unhappy'])[1 + h % 3] ELSE '' END,
       '', CASE WHEN h % 10 = 0 THEN 'feedback' ELSE 'api' END, e.tenant_id,
       e.started_at + interval '5 seconds', e.started_at
FROM (SELECT id, tenant_id, started_at, abs(hashtext(id::text)) AS h FROM llm_agents_execution
      WHERE parent_id IS NULL) e
CROSS JOIN LATERAL (SELECT CASE WHEN e.h % 10 < 6 THEN 'helpfulness' WHEN e.h % 10 < 9 THEN 'resolved'
                                ELSE 'csat' END AS name) n
CROSS JOIN LATERAL (SELECT n.name, CASE n.name WHEN 'helpfulness' THEN 'numeric' WHEN 'resolved' THEN 'boolean'
                                   ELSE 'categorical' END AS data_type) kind
"""


def ensure_scores(rows: int) -> int:
    """One score per root execution, written again when their count is not ``rows`` or when they lack
    the start of their execution (``execution_started_at``, written by an earlier version)."""
    from django.db import connection, transaction

    from llm_agents.models import Score

    if (
        Score.objects.count() == rows
        and not Score.objects.filter(execution__isnull=False, execution_started_at__isnull=True).exists()
    ):
        return rows
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE llm_agents_score")
        cursor.execute(SCORE_SQL)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE llm_agents_score")
    return Score.objects.count()


def query_calls() -> list[tuple[str, Callable[[], object]]]:
    from llm_agents.models import Execution

    executions = Execution.objects
    session = (
        executions.exclude(session_id="").order_by("-started_at").values_list("session_id", flat=True).first()
    )
    user = executions.exclude(user_id="").order_by("-started_at").values_list("user_id", flat=True).first()
    return [
        ("score_summary numeric, all time", lambda: executions.score_summary("helpfulness")),
        ("score_summary numeric, 30 days", lambda: executions.last_30_days().score_summary("helpfulness")),
        ("score_summary boolean, 30 days", lambda: executions.last_30_days().score_summary("resolved")),
        ("score_summary categorical, 30 days", lambda: executions.last_30_days().score_summary("csat")),
        (
            "scores_by agent_type, 30 days",
            lambda: executions.last_30_days().scores_by("helpfulness", "agent_type"),
        ),
        ("scores_by day, 30 days", lambda: executions.last_30_days().scores_by("helpfulness", "day")),
        ("sessions() first 50, all time", lambda: list(executions.sessions()[:50])),
        ("sessions() first 50, 7 days", lambda: list(executions.last_7_days().sessions()[:50])),
        ("by_session(latest)", lambda: list(executions.by_session(session).order_by("started_at"))),
        ("by_user(latest) first 50", lambda: list(executions.by_user(user).order_by("-started_at")[:50])),
        ("with_tag('beta') first 50", lambda: list(executions.with_tag("beta").order_by("-started_at")[:50])),
    ]


def evaluation_overhead(items: int) -> list[tuple[str, str, str]]:
    """Per item: an evaluation run's time minus the same agent calls made plainly."""
    from quality_agents import BenchAnswer

    from llm_agents import evals
    from llm_agents.models import Dataset
    from llm_agents.testing import fake_llm

    use_database("evals")
    dataset, _ = Dataset.objects.get_or_create(slug=f"bench-{items}", defaults={"name": "bench"})
    if dataset.items.count() != items:
        dataset.items.all().delete()
        for index in range(items):
            dataset.add_item(input={"question": f"question {index}"}, expected_output=f"answer {index}")
    inputs = list(dataset.items.values_list("input", flat=True))

    def answers(llm) -> None:
        for index in range(items):
            llm.respond(f"answer {index}", input_tokens=50, output_tokens=10)

    rounds = []
    for _ in range(3):
        with fake_llm() as llm:
            answers(llm)
            started = time.perf_counter()
            for params in inputs:
                BenchAnswer.call(**params)
            plain = time.perf_counter() - started
        with fake_llm() as llm:
            answers(llm)
            started = time.perf_counter()
            run = evals.run(dataset, BenchAnswer, evaluators=["exact_match", "contains"], concurrency=1)
            evaluated = time.perf_counter() - started
        if run.status != run.Status.COMPLETED:
            raise SystemExit(f"the evaluation run ended {run.status}: {run.error}")
        rounds.append((plain, evaluated))
    plain, evaluated = min(rounds, key=lambda pair: pair[1] - pair[0])
    per_item = (evaluated - plain) / items * 1000
    return [
        ("plain agent calls", f"{plain / items * 1000:7.2f} ms per item", ""),
        ("evaluation run (sync, concurrency 1)", f"{evaluated / items * 1000:7.2f} ms per item", ""),
        ("overhead of the run", f"{per_item:7.2f} ms per item (best of 3 rounds)", "≤ 5 ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Scores, sessions and evaluation overhead (issue 18)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 20 items, 2 runs (CI smoke run)")
    options = parser.parse_args()
    rows, runs, items = (10_000, 2, 20) if options.quick else (options.rows, options.runs, options.items)
    vendor = setup_django()
    if vendor != "postgresql":
        raise SystemExit("bench_quality.py measures PostgreSQL: set DATABASE_URL=postgres://…")

    import history

    meta = history.ensure(rows)
    scores = ensure_scores(rows)
    print_table(
        f"Data: {rows:,} root executions of bench/history.py's shape (generated in {meta['seconds']:.0f} s), "
        f"{scores:,} scores",
        [(what, value, "") for what, value in history.describe()],
    )
    table = []
    for what, call in query_calls():
        durations = timed(call, runs)
        table.append(
            (what, f"p50 {median(durations):7.1f} ms · p95 {percentile(durations, 95):7.1f} ms", "≤ 100 ms")
        )
    print_table(f"Scores and sessions at {rows:,} executions, {runs} runs each after a warm-up", table)
    print_table(f"Evaluation overhead over {items} items", evaluation_overhead(items))


if __name__ == "__main__":
    main()
