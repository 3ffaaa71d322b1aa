"""Tracking overhead of ``Agent.call`` with the offline provider: tracked vs TRACK_EXECUTIONS off.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llm_agents_bench .venv/bin/python bench/bench_tracking.py
    [--calls N] [--async-broker redis://127.0.0.1:6379/14] [--quick]

Runs on a database of its own (``<name>_tracking``), as tracked calls add rows. Calls alternate
between the modes in blocks within one run, so machine noise hits both alike.
The modes: TRACK_EXECUTIONS off; tracked (the default: on PostgreSQL the writes commit without
waiting for the WAL flush); tracked with DURABLE_TRACKING_WRITES (the finished rows wait for it);
ASYNC_LOGGING. Targets (issue 9): sync ≤ 1.5 ms added per call (p50); ASYNC_LOGGING with a Redis
broker ≤ 0.25 ms added on the caller's thread (p50).
"""

from __future__ import annotations

import argparse
import time

from common import median, percentile, print_table, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description="Tracking overhead of Agent.call")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--async-broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--quick", action="store_true", help="a few calls, for CI smoke runs")
    options = parser.parse_args()
    calls = 60 if options.quick else options.calls
    vendor = setup_django("tracking")

    from celery import Celery
    from django.test import override_settings

    from llm_agents import Agent, Param

    class BenchAgent(Agent):
        model = "fake/bench"
        question = Param(required=True)

        def system_prompt(self):
            return "You answer briefly."

        def user_prompt(self):
            return f"Question: {self.question}"

    def timed(settings: dict, count: int) -> list[float]:
        durations = []
        with override_settings(LLM_AGENTS=settings):
            for n in range(count):
                start = time.perf_counter()
                BenchAgent.call(question=f"q{n}")
                durations.append((time.perf_counter() - start) * 1000)
        return durations

    timed({"TRACK_EXECUTIONS": True}, 50)  # warm up connections and caches
    results: dict[str, list[float]] = {"off": [], "sync": [], "durable": [], "async": []}
    block = 50
    broker = Celery("bench", broker=options.async_broker, set_as_current=False)
    broker.conf.update(task_always_eager=False, broker_connection_retry=False)
    from celery import _state

    default_app = _state.get_current_app()
    for _ in range(max(calls // block, 1)):
        results["off"] += timed({"TRACK_EXECUTIONS": False}, block)
        results["sync"] += timed({"TRACK_EXECUTIONS": True}, block)
        results["durable"] += timed({"DURABLE_TRACKING_WRITES": True}, block)
        broker.set_current()
        try:
            results["async"] += timed({"ASYNC_LOGGING": True}, block)
        finally:
            default_app.set_current()
    import redis

    redis.Redis.from_url(options.async_broker).flushdb()  # the queued messages had no worker

    off = median(results["off"])
    rows = []
    for mode, target in (
        ("sync", "target ≤ 1.5 ms"),
        ("durable", "DURABLE_TRACKING_WRITES"),
        ("async", "target ≤ 0.25 ms"),
    ):
        added = median(results[mode]) - off
        rows.append((f"{mode}: added per call (p50)", f"{added:.3f} ms", target))
    rows += [
        ("untracked call (p50)", f"{off:.3f} ms", ""),
        (
            "sync tracked call (p50 / p95)",
            f"{median(results['sync']):.3f} / {percentile(results['sync'], 95):.3f} ms",
            "",
        ),
        (
            "async tracked call (p50 / p95)",
            f"{median(results['async']):.3f} / {percentile(results['async'], 95):.3f} ms",
            "",
        ),
    ]
    print_table(f"Tracking overhead on {vendor}, {len(results['off'])} calls per mode", rows)


if __name__ == "__main__":
    main()
