"""A hard-stop budget hammered by concurrent callers is overshot by at most one call.

On PostgreSQL the callers are 8 separate processes (``tests.budget_workers``) running ``Agent.call``
against the test database until the budget refuses them; each provider answer takes a few
milliseconds, so calls overlap. On SQLite, which has one writer at a time, they are 8 threads of this
process going through ``budgets.check`` and ``Reservation.settle`` (the single-writer path), and the same
bound must hold. Every caller acts for one end user, so the bound is checked for an agent-scope and for a
user-scope budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, connections
from django.db.models import Sum

from llm_agents import budgets
from llm_agents.errors import BudgetExceededError
from llm_agents.models import Budget, BudgetReservation, CostConfig, Execution, SpendCounter

from .workers import READY_TIMEOUT, database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 8
MODEL = "fake/hammer"
TOKENS = 100  # input and output tokens of every call, and the call's max_tokens
CALL_COST = Decimal("0.2")  # 200 tokens at $1,000 per million
LIMIT = Decimal("10.1")  # 50.5 calls' worth: the 51st call is admitted and overshoots by $0.10
USER_ID = "u-hammer"  # the end user every caller acts for


@pytest.fixture(
    params=[(Budget.Scope.AGENT, "HammerAgent"), (Budget.Scope.USER, USER_ID)], ids=["agent", "user"]
)
def hard_stop(request):
    scope, scope_value = request.param
    CostConfig.objects.create(model=MODEL, input_price_per_mtok=Decimal("1000"),
                              output_price_per_mtok=Decimal("1000"), effective_from="2020-01-01T00:00Z")  # fmt: skip
    return Budget.objects.create(
        name="hammered", scope=scope, scope_value=scope_value, period=Budget.Period.DAILY,
        limit_usd=LIMIT, enforcement=Budget.Enforcement.HARD_STOP,
    )  # fmt: skip


def run_processes(tmp_path: Path) -> list[dict]:
    go = tmp_path / "go"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "database_url": database_url(),
                "go": str(go),
                "model": MODEL,
                "delay": 0.003,
                "tokens": TOKENS,
                "user_id": USER_ID,
            }
        )
    )
    outs = [tmp_path / f"worker-{n}.out" for n in range(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.budget_workers", str(config), str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for out in outs
    ]
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(Path(f"{out}.ready").exists() for out in outs):
        failed = [child for child in children if child.poll() not in (None, 0)]
        assert not failed, failed[0].communicate()[1].decode()
        assert time.monotonic() < deadline, "the workers did not get ready"
        time.sleep(0.01)
    go.touch()
    for child in children:
        _, stderr = child.communicate(timeout=180)
        assert child.returncode == 0, stderr.decode()
    return [json.loads(Path(f"{out}.report").read_text()) for out in outs]


def run_threads() -> list[dict]:
    barrier = threading.Barrier(WORKERS)
    reports: list[dict] = []
    errors: list[BaseException] = []

    def work() -> None:
        report = {"admitted": 0, "refused": 0, "errors": []}
        try:
            barrier.wait()
            while report["refused"] < 3:
                try:
                    reservation = budgets.check("HammerAgent", model=MODEL, user_id=USER_ID,
                                                estimated_cost=CALL_COST, estimated_tokens=2 * TOKENS)  # fmt: skip
                except BudgetExceededError:
                    report["refused"] += 1
                    continue
                time.sleep(0.003)  # the provider answering
                reservation.settle(CALL_COST, 2 * TOKENS)
                report["admitted"] += 1
            reports.append(report)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    return reports


def test_concurrent_callers_overshoot_a_hard_stop_by_at_most_one_call(hard_stop, tmp_path):
    if connection.vendor == "postgresql":
        reports = run_processes(tmp_path)
        competitors = f"{WORKERS} processes calling Agent.call"
    else:
        reports = run_threads()
        competitors = f"{WORKERS} threads calling budgets.check + settle"

    admitted = sum(report["admitted"] for report in reports)
    spend = hard_stop.current_spend()
    overshoot = spend - LIMIT
    print(
        f"\n{hard_stop.scope} hard stop on {connection.vendor}, {competitors}: limit ${LIMIT}, one call ${CALL_COST}; "
        f"{admitted} calls admitted, {sum(r['refused'] for r in reports)} refused; spend ${spend}, "
        f"overshoot ${max(overshoot, Decimal(0))} (bound: one call, ${CALL_COST}); admitted per caller "
        f"{[r['admitted'] for r in reports]}"
    )
    assert all(report["errors"] == [] for report in reports)
    assert overshoot <= CALL_COST
    assert spend == admitted * CALL_COST
    assert spend > LIMIT - CALL_COST  # the budget was used up, not refused early
    assert not BudgetReservation.objects.exists()
    if connection.vendor == "postgresql":
        executions = Execution.objects.filter(agent_type="HammerAgent")
        assert executions.filter(status="success").count() == admitted
        assert executions.filter(status="error", error_class="BudgetExceededError").count() == 3 * WORKERS
        assert executions.aggregate(total=Sum("total_cost"))["total"] == spend
        live = set(SpendCounter.objects.values_list("scope", "scope_value", "day", "spend", "tokens"))
        budgets.rebuild_counters()
        assert set(SpendCounter.objects.values_list("scope", "scope_value", "day", "spend", "tokens")) == live
