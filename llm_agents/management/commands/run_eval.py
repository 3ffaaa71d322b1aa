from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from ... import batches, evals
from ...models import EvalRun

EXAMPLE = (
    'regex:pattern=^yes,  or  llm_judge:criteria=Cites a source,scale=5,  or  json_schema:{"schema": {...}}'
)


def parse_evaluator(value: str) -> tuple[str, dict[str, Any]]:
    """``NAME``, ``NAME:key=value,key=value`` (values read as JSON when they are, else as text) or
    ``NAME:{JSON object}`` as ``(name, params)``; ``CommandError`` naming the option otherwise."""
    name, _, given = value.partition(":")
    name, given = name.strip(), given.strip()
    if not name:
        raise CommandError(f"--evaluator {value!r} has no name (e.g. {EXAMPLE}).")
    if not given:
        return name, {}
    if given.startswith("{"):
        try:
            params = json.loads(given)
        except ValueError as exc:
            raise CommandError(f"--evaluator {value!r}: the params are not a JSON object: {exc}.") from None
        if not isinstance(params, dict):
            raise CommandError(f"--evaluator {value!r}: the params must be a JSON object.")
        return name, params
    params = {}
    for pair in given.split(","):
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise CommandError(f"--evaluator {value!r}: {pair!r} is not key=value (e.g. {EXAMPLE}).")
        try:
            params[key.strip()] = json.loads(text)
        except ValueError:
            params[key.strip()] = text
    return name, params


class Command(BaseCommand):
    help = (
        "Evaluate an agent on every active item of a dataset, print the progress and each evaluator's "
        "summary, and exit non-zero when an evaluator's mean is under --fail-under (for CI). In batch mode "
        "the command flushes and polls the Batch API every --poll-interval seconds until every item is settled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="The dataset's slug.")
        parser.add_argument("--agent", required=True, help="The dotted path of the Agent class.")
        parser.add_argument(
            "--evaluator",
            action="append",
            default=[],
            dest="evaluators",
            metavar="NAME[:key=value,...]",
            help=(
                "An evaluator and its params, repeated for several; a value is read as JSON when it is one "
                f'(0.5, true, "text"), else as text (e.g. {EXAMPLE}).'
            ),
        )
        parser.add_argument(
            "--model", help="The model used instead of the agent's (its fallbacks are dropped)."
        )
        parser.add_argument(
            "--prompt-version",
            type=int,
            help="The version number of the agent's prompt used instead of its current one.",
        )
        parser.add_argument("--mode", choices=["sync", "batch"], default="sync")
        parser.add_argument(
            "--concurrency", type=int, default=4, help="Items called at once in sync mode (default 4)."
        )
        parser.add_argument("--name", default="", help="A name for the run.")
        parser.add_argument(
            "--fail-under",
            type=float,
            help="Exit non-zero when an evaluator's mean (0 to 1) is under this value.",
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=60.0,
            help="Seconds between polls of the Batch API in batch mode (default 60).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check the arguments and say what would run; call and store nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        fail_under = options["fail_under"]
        if fail_under is not None and not 0.0 <= fail_under <= 1.0:
            raise CommandError(f"--fail-under must be between 0 and 1, not {fail_under}.")
        if options["poll_interval"] < 0:
            raise CommandError(f"--poll-interval must be at least 0, not {options['poll_interval']}.")
        evaluators = [parse_evaluator(value) for value in options["evaluators"]]
        arguments = {
            "model": options["model"],
            "prompt_version": options["prompt_version"],
            "mode": options["mode"],
            "concurrency": options["concurrency"],
            "name": options["name"],
        }
        try:
            if options["dry_run"]:
                with transaction.atomic():
                    run = evals.create_run(options["dataset"], options["agent"], evaluators, **arguments)
                    transaction.set_rollback(True)
                names = ", ".join(spec["name"] for spec in run.evaluators) or "no evaluator"
                self.stdout.write(
                    f"Would evaluate {run.target} on {run.item_count} items of {options['dataset']!r} "
                    f"({run.mode} mode) with {names}."
                )
                return
            run = evals.create_run(options["dataset"], options["agent"], evaluators, **arguments)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Evaluation run {run.pk}: {run.agent_type} on {run.item_count} items ({run.mode} mode)."
        )
        run = evals.execute(run, progress=self.show_progress)
        if run.mode == EvalRun.Mode.BATCH:
            run = self.wait_for_batches(run, options["poll_interval"])
        self.report(run, fail_under)

    def show_progress(self, run: EvalRun) -> None:
        if self.verbosity:
            done = run.completed_count + run.failed_count
            self.stdout.write(f"  {done}/{run.item_count} items done ({run.failed_count} failed)")

    def wait_for_batches(self, run: EvalRun, interval: float) -> EvalRun:
        """Flush and poll until every item of the run has settled (and been scored)."""
        shown = -1
        while run.status == EvalRun.Status.RUNNING:
            time.sleep(interval)
            batches.flush(evals.EVAL_PURPOSE)
            report = batches.poll()
            for problem in report.errors:
                self.stderr.write(f"  poll: {problem}")
            run = evals.settle(run)
            done = run.completed_count + run.failed_count
            if done != shown:
                shown = done
                self.show_progress(run)
        return run

    def report(self, run: EvalRun, fail_under: float | None) -> None:
        self.stdout.write(
            f"Run {run.pk} {run.status}: {run.completed_count} items completed, {run.failed_count} failed; "
            f"agent cost ${money(run.total_cost)}, evaluator cost ${money(run.eval_cost)}."
        )
        for name, figures in (run.summary or {}).items():
            ci95 = figures.get("ci95")
            interval = f"[{ci95[0]:.4f}, {ci95[1]:.4f}]" if ci95 else "-"
            mean = "-" if figures.get("mean") is None else f"{figures['mean']:.4f}"
            rate = "-" if figures.get("pass_rate") is None else f"{figures['pass_rate']:.2f}%"
            self.stdout.write(
                f"  {name}: mean {mean}, pass rate {rate}, ci95 {interval}, n {figures.get('n', 0)}"
            )
        if run.status != EvalRun.Status.COMPLETED:
            raise CommandError(f"The run did not complete ({run.status}): {run.error or 'no reason given'}")
        if fail_under is None:
            return
        under = [
            f"{name} {'no score' if figures.get('mean') is None else format(figures['mean'], '.4f')}"
            for name, figures in (run.summary or {}).items()
            if figures.get("mean") is None or figures["mean"] < fail_under
        ]
        if under:
            raise CommandError(f"Under --fail-under {fail_under}: {', '.join(under)}.")


def money(value: Any) -> str:
    return f"{Decimal(value or 0).quantize(Decimal('0.000001')):f}"
