"""Evaluation runs: an agent over every active item of a dataset, each output scored by evaluators::

    from llm_agents import evals

    @evals.evaluator("mentions_product")
    def mentions_product(*, output, expected, item, execution, product="Django"):
        return product.lower() in output.lower()

    run = evals.run("faq", SearchAgent, evaluators=["exact_match", ("llm_judge", {"criteria": "Cites a source"})],
                    model=None, prompt_version=None, mode="sync", concurrency=4, name="nightly")
    run.summary   # {evaluator: {n, mean, pass_rate, ci95}}

``create_run`` + ``execute`` split ``run`` in two (the API creates a pending run, the Celery task
``llm_agents.tasks.run_eval`` executes it); ``settle`` scores what the Batch API answered for a
``mode="batch"`` run (polls do it by themselves). Built-in evaluators: exact_match, contains, regex,
json_valid, json_schema, similarity, max_cost, max_latency and llm_judge. Command: ``run_eval``.
"""

from __future__ import annotations

from . import builtins as builtins
from . import judge as judge
from .batch import EVAL_PURPOSE, settle
from .hooks import install
from .judge import JudgeAgent, JudgeAnswerError
from .registry import EvalScore, evaluator, get_evaluator, registered, resolve, unregister
from .runner import create_run, execute, run

__all__ = [
    "EVAL_PURPOSE",
    "EvalScore",
    "JudgeAgent",
    "JudgeAnswerError",
    "create_run",
    "evaluator",
    "execute",
    "get_evaluator",
    "install",
    "registered",
    "resolve",
    "run",
    "settle",
    "unregister",
]
