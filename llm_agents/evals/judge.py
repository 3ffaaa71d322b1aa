"""``llm_judge``: a model grades an output against criteria and the expected output.

The judge is an agent (:class:`JudgeAgent`, agent_type ``llm_judge``), so each of its calls is a tracked
Execution; run inside an evaluation run it carries the run's ``eval_run`` and its cost counts in the
run's ``eval_cost``. It answers ``{"score", "reasoning"}``: on a scale of 5, a score from 1 to 5 becomes
(score - 1) / 4 (1 → 0, 3 → 0.5, 5 → 1); with ``scale="pass_fail"`` a pass is True. An answer that is
not such JSON is asked again once; a second one fails the judge's score for that item, the answer
quoted in the item's error.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from ..agents import Agent, Param
from ..agents.base import Run
from .registry import EvalScore, evaluator

__all__ = ["SCALES", "JudgeAgent", "JudgeAnswerError", "llm_judge", "read_verdict"]

SCALES = (5, "pass_fail")
ATTEMPTS = 2


class JudgeAnswerError(ValueError):
    """The judge's answer is not ``{"score", "reasoning"}`` JSON with a score on its scale."""


class JudgeAgent(Agent):
    """Grades ``output`` (the answer to ``input``) against ``criteria`` and ``expected``."""

    agent_type: ClassVar[str] = "llm_judge"
    temperature: ClassVar[float | None] = 0.0
    version: ClassVar[str] = "1.0"

    criteria = Param(required=True)
    scale = Param(default=5)
    input = Param(default=None)
    output = Param(default=None)
    expected = Param(default=None)
    attempt = Param(default=1)

    def system_prompt(self) -> str:
        if self.scale == "pass_fail":
            scale = (
                'Decide whether the output meets the criteria: "score" is true (it passes) or false '
                "(it fails)."
            )
        else:
            scale = (
                'Grade how well the output meets the criteria: "score" is an integer from 1 (not at all) '
                "to 5 (fully)."
            )
        return (
            "You are an impartial evaluator of an AI agent's output.\n"
            f"{scale}\n"
            'Answer with only a JSON object: {"score": ..., "reasoning": "one or two sentences"}.'
        )

    def user_prompt(self) -> str:
        parts = [f"Criteria:\n{self.criteria}"]
        if self.input is not None:
            parts.append(f"Input given to the agent:\n{text_of(self.input)}")
        if self.expected is not None:
            parts.append(f"Expected output:\n{text_of(self.expected)}")
        parts.append(f"Output to grade:\n{text_of(self.output)}")
        if self.attempt > 1:
            parts.append(
                'Your previous answer could not be read. Reply with the JSON object {"score", "reasoning"} only.'
            )
        return "\n\n".join(parts)


def text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, ensure_ascii=False, default=str)


FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)


def read_verdict(answer: str, scale: Any) -> EvalScore:
    """The score in the judge's ``answer`` (JSON, optionally in a code fence), normalised to [0, 1] (or a
    bool for ``pass_fail``), with its reasoning as the comment; ``JudgeAnswerError`` otherwise."""
    text = answer.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        verdict = json.loads(text)
    except ValueError:
        raise JudgeAnswerError("the answer is not JSON") from None
    if not isinstance(verdict, dict) or "score" not in verdict:
        raise JudgeAnswerError('the answer has no "score"')
    score, reasoning = verdict["score"], verdict.get("reasoning") or ""
    comment = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    if scale == "pass_fail":
        word = score.strip().lower() if isinstance(score, str) else score
        if word in (True, "pass", "true", "yes") or (isinstance(word, int | float) and word == 1):
            return EvalScore(True, comment=comment)
        if word in (False, "fail", "false", "no") or (isinstance(word, int | float) and word == 0):
            return EvalScore(False, comment=comment)
        raise JudgeAnswerError(f"the score {score!r} is neither a pass nor a fail")
    try:
        number = float(score) if not isinstance(score, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 1.0 <= number <= 5.0:
        raise JudgeAnswerError(f"the score {score!r} is not a number from 1 to 5")
    return EvalScore((number - 1.0) / 4.0, comment=comment)


def check_judge(params: dict[str, Any]) -> None:
    criteria = params.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise ValueError("criteria must be a non-empty text")
    if params.get("scale", 5) not in SCALES:
        raise ValueError(f'scale must be 5 or "pass_fail", not {params.get("scale")!r}')
    model = params.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise ValueError(f"model must be a model id, not {model!r}")


@evaluator("llm_judge", check=check_judge)
def llm_judge(
    *, output: Any, expected: Any, item: Any, execution: Any, criteria: str, model: str | None = None,
    scale: Any = 5,
) -> EvalScore:  # fmt: skip
    """A judge model's grade of ``output`` against ``criteria`` (and the expected output, when the item
    has one), with its reasoning as the comment. ``model`` defaults to ``DEFAULT_MODEL``."""
    answer, problem = "", ""
    for attempt in range(1, ATTEMPTS + 1):
        judge = JudgeAgent(
            criteria=criteria, scale=scale, input=getattr(item, "input", None), output=output, expected=expected,
            attempt=attempt,
        )  # fmt: skip
        answer = Run(judge, streaming=False, model=model).call().content
        try:
            return read_verdict(answer, scale)
        except JudgeAnswerError as exc:
            problem = str(exc)
    raise JudgeAnswerError(
        f"the judge answered {ATTEMPTS} times without a valid {{score, reasoning}} ({problem}); "
        f"its last answer: {answer!r}"
    )
