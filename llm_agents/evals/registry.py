"""Evaluators by name: ``@evaluator("name")`` registers a function, :func:`resolve` checks a run's list of
them before anything runs, and :meth:`Evaluator.score` turns what a function returns into a
:class:`Judgement` (the value of one Score).

An evaluator is called with the keyword arguments ``output`` (the response text, or ``parsed`` when the
agent has a schema), ``expected`` (the item's expected output), ``item`` (the DatasetItem) and
``execution`` (the Execution of the agent's call), plus its params; it returns a float in [0, 1], a bool,
or an :class:`EvalScore` carrying either with a comment.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "ARGUMENTS",
    "EvalScore",
    "Evaluator",
    "EvaluatorSpec",
    "Judgement",
    "evaluator",
    "get_evaluator",
    "judgement",
    "registered",
    "resolve",
    "unregister",
]

#: The keyword arguments every evaluator receives (its params come beside them).
ARGUMENTS = ("output", "expected", "item", "execution")

EvaluatorFunction = Callable[..., Any]
ParamsCheck = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class EvalScore:
    """An evaluator's value (a float in [0, 1] or a bool) with a comment, stored on its Score."""

    value: float | bool
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Judgement:
    """One evaluator's score of one output: ``data_type`` is ``numeric`` or ``boolean`` (1.0 / 0.0)."""

    name: str
    data_type: str
    value: float
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Evaluator:
    """A registered evaluator: its name, its function and the optional check of its params."""

    name: str
    function: EvaluatorFunction
    check: ParamsCheck | None = None

    def validate(self, params: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming this evaluator when ``params`` do not fit its function (a
        missing or unknown param) or fail its check."""
        try:
            inspect.signature(self.function).bind(**dict.fromkeys(ARGUMENTS), **params)
        except TypeError as exc:
            raise ValueError(f"Evaluator {self.name!r} cannot take the params {params!r}: {exc}.") from None
        if self.check is not None:
            try:
                self.check(params)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Evaluator {self.name!r}: {exc}") from None

    def score(
        self, params: dict[str, Any], *, output: Any, expected: Any, item: Any, execution: Any
    ) -> Judgement:
        """Call the function and read its answer (``ValueError`` or ``TypeError`` when it does not fit)."""
        value = self.function(output=output, expected=expected, item=item, execution=execution, **params)
        return judgement(self.name, value)


@dataclass(frozen=True, slots=True)
class EvaluatorSpec:
    """One evaluator of a run and its params, as stored in ``EvalRun.evaluators`` (``as_dict()``)."""

    evaluator: Evaluator
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.evaluator.name

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params}

    def score(self, *, output: Any, expected: Any, item: Any, execution: Any) -> Judgement:
        return self.evaluator.score(
            self.params, output=output, expected=expected, item=item, execution=execution
        )


_lock = threading.Lock()
_evaluators: dict[str, Evaluator] = {}


def evaluator(
    name: str, *, check: ParamsCheck | None = None
) -> Callable[[EvaluatorFunction], EvaluatorFunction]:
    """Register the decorated function as the evaluator ``name`` (replacing one of that name)::

        @evals.evaluator("mentions_product")
        def mentions_product(*, output, expected, item, execution, product="Django"):
            return product.lower() in output.lower()

    ``check(params)``, when given, raises ``ValueError`` for params the evaluator cannot use; it runs
    when a run is created, before anything is sent. Register in a module every process imports (an
    ``AppConfig.ready()``), so that Celery workers running evaluations know the name too."""
    if not isinstance(name, str) or not name:
        raise ValueError("An evaluator's name must be a non-empty string.")

    def register(function: EvaluatorFunction) -> EvaluatorFunction:
        if not callable(function):
            raise TypeError(f"Evaluator {name!r} must be a function, not {function!r}.")
        with _lock:
            _evaluators[name] = Evaluator(name=name, function=function, check=check)
        return function

    return register


def unregister(name: str) -> None:
    """Forget the evaluator ``name`` (nothing happens when there is none)."""
    with _lock:
        _evaluators.pop(name, None)


def get_evaluator(name: str) -> Evaluator:
    """The evaluator registered as ``name``; ``ValueError`` naming it when there is none."""
    found = _evaluators.get(name)
    if found is None:
        known = ", ".join(sorted(_evaluators)) or "none"
        raise ValueError(f"No evaluator is registered as {name!r} (registered: {known}).")
    return found


def registered() -> list[str]:
    """The names of the registered evaluators, sorted."""
    return sorted(_evaluators)


def resolve(evaluators: Iterable[Any]) -> list[EvaluatorSpec]:
    """The evaluators of a run, checked: each entry is a name, a ``(name, params)`` pair or a
    ``{"name", "params"}`` mapping. An unknown name, params that do not fit, params that are not JSON, or
    a name given twice (their scores would share it) raise ``ValueError`` naming the evaluator."""
    if isinstance(evaluators, str | Mapping):
        evaluators = [evaluators]
    specs: list[EvaluatorSpec] = []
    for entry in evaluators:
        name, params = _entry(entry)
        found = get_evaluator(name)
        if any(spec.name == name for spec in specs):
            raise ValueError(f"Evaluator {name!r} is given twice; each evaluator names its scores.")
        try:
            json.dumps(params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"The params of evaluator {name!r} must be JSON-serialisable: {exc}.") from None
        found.validate(params)
        specs.append(EvaluatorSpec(found, params))
    return specs


def _entry(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping):
        name, params = entry.get("name"), entry.get("params") or {}
    elif isinstance(entry, list | tuple) and len(entry) == 2:
        name, params = entry
    else:
        raise ValueError(
            f"An evaluator is a name, a (name, params) pair or a {{name, params}} object, not {entry!r}."
        )
    if not isinstance(name, str) or not name:
        raise ValueError(f"An evaluator's name must be a non-empty string, not {name!r}.")
    if not isinstance(params, Mapping):
        raise ValueError(f"The params of evaluator {name!r} must be an object, not {params!r}.")
    return name, dict(params)


def judgement(name: str, answer: Any) -> Judgement:
    """The Judgement an evaluator's answer stands for: a bool is a boolean score (1.0 / 0.0), a number
    in [0, 1] a numeric one; anything else raises."""
    comment = ""
    value = answer
    if isinstance(answer, EvalScore):
        value, comment = answer.value, str(answer.comment or "")
    if isinstance(value, bool):
        return Judgement(name, "boolean", 1.0 if value else 0.0, comment)
    if isinstance(value, numbers.Real | Decimal):
        number = float(value)
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise ValueError(f"evaluator {name!r} returned {value!r}, outside [0, 1]")
        return Judgement(name, "numeric", number, comment)
    raise TypeError(
        f"evaluator {name!r} returned {type(value).__name__} {value!r}; "
        "expected a float in [0, 1], a bool or an EvalScore"
    )
