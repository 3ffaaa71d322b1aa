"""The quality loop (SPEC sections 16 and 17): scores of executions and sessions, their configs,
datasets of inputs with expected outputs, and evaluation runs of an agent over a dataset."""

from __future__ import annotations

import json
import math
import numbers
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from ..statistics import mean_ci95, paired_comparison
from .fields import money_field
from .indexes import CoveringIndex

#: An evaluator's value at or above this passes (booleans: True is 1.0), for ``pass_rate``.
PASS_THRESHOLD = 0.5


def json_value(value: Any, field: str) -> Any:
    """``value`` as stored in a JSON column (a copy); ``ValidationError`` naming ``field`` when it is not
    JSON (NaN and infinities included: PostgreSQL's jsonb refuses them)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValidationError({field: f"{field} must be JSON: {error}"}) from None


class ScoreConfig(models.Model):
    """What the scores of one name may hold: scores of ``name`` are validated against it."""

    class DataType(models.TextChoices):
        NUMERIC = "numeric", _("numeric")
        BOOLEAN = "boolean", _("boolean")
        CATEGORICAL = "categorical", _("categorical")

    name = models.CharField(max_length=100, unique=True)
    data_type = models.CharField(max_length=12, choices=DataType.choices, default=DataType.NUMERIC)
    min_value = models.FloatField(
        null=True, blank=True, help_text=_("Lowest numeric value allowed (none: no bound).")
    )
    max_value = models.FloatField(
        null=True, blank=True, help_text=_("Highest numeric value allowed (none: no bound).")
    )
    categories = models.JSONField(
        default=list, blank=True, help_text=_("The values a categorical score may take.")
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("score config")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Bounds are finite, in order, and only numeric scores have them; categories are distinct
        non-empty strings, and only categorical scores have them (none listed: any category)."""
        errors: dict[str, str] = {}
        numeric = self.data_type == self.DataType.NUMERIC
        for bound in ("min_value", "max_value"):
            value = getattr(self, bound)
            if value is None:
                continue
            if not numeric:
                errors[bound] = f"Only numeric scores have bounds, not {self.data_type} ones."
            elif isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                errors[bound] = f"{bound} must be a finite number, not {value!r}."
        if not errors and numeric and None not in (self.min_value, self.max_value):
            if self.min_value > self.max_value:  # type: ignore[operator]
                errors["max_value"] = f"max_value {self.max_value} is below min_value {self.min_value}."
        categories = self.categories
        if not isinstance(categories, list) or not all(isinstance(c, str) and c.strip() for c in categories):
            errors["categories"] = f"categories must be a list of non-empty strings, not {categories!r}."
        elif len(set(categories)) != len(categories):
            errors["categories"] = "categories must not repeat a category."
        elif categories and self.data_type != self.DataType.CATEGORICAL:
            errors["categories"] = f"Only categorical scores have categories, not {self.data_type} ones."
        if errors:
            raise ValidationError(errors)


class Score(models.Model):
    """A judgement of an execution, or of a whole session (``session_id`` and no execution)."""

    DataType = ScoreConfig.DataType

    class Source(models.TextChoices):
        HUMAN = "human", _("human")
        API = "api", _("API")
        EVALUATOR = "evaluator", _("evaluator")
        FEEDBACK = "feedback", _("end-user feedback")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No database constraint, like spans: executions are purged in bulk; their scores go with them
    # (``Execution.delete`` cascades through the ORM, purge deletes them by execution).
    execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="scores",
        db_constraint=False,
    )
    session_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=100)
    data_type = models.CharField(max_length=12, choices=DataType.choices, default=DataType.NUMERIC)
    value = models.FloatField(null=True, blank=True, help_text=_("Numeric value; booleans are 1.0 or 0.0."))
    string_value = models.CharField(
        max_length=255, blank=True, help_text=_("The category of a categorical score.")
    )
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    eval_run = models.ForeignKey(
        "llm_agents.EvalRun", null=True, blank=True, on_delete=models.CASCADE, related_name="scores"
    )
    eval_result = models.ForeignKey(
        "llm_agents.EvalResult", null=True, blank=True, on_delete=models.CASCADE, related_name="scores"
    )
    tenant_id = models.CharField(max_length=255, null=True, blank=True)
    execution_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the scored execution started (a copy of its started_at; none for session scores): "
            "score analytics of a period read the scores alone, by it."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # score_summary(name) and scores_by(name, ...): the scores of executions of a name, a
            # period of them one range of the key, covering what they read, so PostgreSQL answers
            # from the index alone.
            CoveringIndex(
                fields=["name", "execution_started_at"],
                covering=["data_type", "value", "string_value", "eval_run", "execution"],
                condition=Q(execution__isnull=False),
                name="llm_score_name_idx",
            ),
            # score_summary(name) of all time, production scores: the name's scores grouped by data
            # type in the index's order (no sort), and the exact median the middle of the numeric
            # range, reached by walking it (OFFSET), not by sorting every value.
            models.Index(
                fields=["name", "data_type", "value"],
                condition=Q(execution__isnull=False, eval_run__isnull=True),
                name="llm_score_value_idx",
            ),
            models.Index(fields=["execution", "name"], name="llm_score_execution_idx"),
            models.Index(
                fields=["session_id", "name"], condition=~Q(session_id=""), name="llm_score_session_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(execution__isnull=False) | ~Q(session_id=""), name="llm_score_has_subject"
            ),
        ]

    def __str__(self) -> str:
        shown = self.string_value if self.data_type == self.DataType.CATEGORICAL else self.value
        return f"{self.name} = {shown}"

    @cached_property
    def config(self) -> ScoreConfig | None:
        """The ScoreConfig of this score's name, if there is one (read once)."""
        configs = ScoreConfig._default_manager.db_manager(self._state.db)
        return configs.filter(name=self.name).first()

    #: What a value of each data type is, in Python.
    VALUE_KINDS = {
        "boolean": "True or False",
        "numeric": "a number",
        "categorical": "a string (the category)",
    }

    def set_value(self, value: Any) -> None:
        """Set ``data_type``, ``value`` and ``string_value`` from a Python value. The ScoreConfig of
        the name, when there is one, decides the data type and the value must be of it (True or
        False for boolean, a number for numeric, a string for categorical); without one, True or
        False is boolean (stored as 1.0 or 0.0), a number numeric, a string categorical. A value of
        another type raises ``ValidationError`` on ``value``; :meth:`clean` checks the rest."""
        config = self.config
        given = self.data_type_of(value)
        data_type = config.data_type if config is not None else given
        if data_type is None or given != data_type:
            wanted = self.VALUE_KINDS[data_type] if data_type else "True or False, a number or a string"
            scores = f" for {data_type} score {self.name!r}" if data_type else ""
            raise ValidationError({"value": f"value must be {wanted}{scores}, not {value!r}."})
        if data_type == self.DataType.CATEGORICAL:
            self.data_type, self.value, self.string_value = data_type, None, value
            return
        try:
            number = float(value)
        except OverflowError:
            number = math.inf  # refused by clean() as not finite
        self.data_type, self.value, self.string_value = data_type, number, ""

    @classmethod
    def data_type_of(cls, value: Any) -> str | None:
        """The data type a Python value is scored as (None for a value that cannot be a score)."""
        if isinstance(value, bool):
            return cls.DataType.BOOLEAN
        if isinstance(value, numbers.Real | Decimal):
            return cls.DataType.NUMERIC
        if isinstance(value, str):
            return cls.DataType.CATEGORICAL
        return None

    def clean(self) -> None:
        """The score has a subject and a value of its data type; when a ScoreConfig exists for its
        name, it has the config's data type, a numeric value within the config's bounds, a category
        the config lists. Errors name the field (``value``, ``data_type``, ``session_id``)."""
        errors: dict[str, str] = {}
        if self.execution_id is None and not self.session_id:
            errors["session_id"] = "A score needs an execution or a session_id."
        config = self.config
        if config is not None and self.data_type != config.data_type:
            errors["data_type"] = f"Scores of {self.name!r} are {config.data_type}, not {self.data_type}."
        elif self.data_type == self.DataType.CATEGORICAL:
            if not self.string_value:
                errors["value"] = f"A categorical score of {self.name!r} needs a category."
            elif config is not None and config.categories and self.string_value not in config.categories:
                listed = ", ".join(config.categories)
                errors["value"] = f"Unknown category {self.string_value!r} of {self.name!r}; valid: {listed}."
        elif self.value is None or not math.isfinite(self.value):
            errors["value"] = f"value of {self.name!r} must be a finite number, not {self.value!r}."
        elif self.data_type == self.DataType.BOOLEAN and self.value not in (0.0, 1.0):
            errors["value"] = f"A boolean score is 1.0 or 0.0, not {self.value!r}."
        elif config is not None:
            low, high = config.min_value, config.max_value
            if low is not None and self.value < low:
                errors["value"] = f"value {self.value:g} is below the minimum of {self.name!r}, {low:g}."
            elif high is not None and self.value > high:
                errors["value"] = f"value {self.value:g} is above the maximum of {self.name!r}, {high:g}."
        if errors:
            raise ValidationError(errors)

    @property
    def display_value(self) -> Any:
        """The value as it was given: a category, True/False, or a number."""
        if self.data_type == self.DataType.CATEGORICAL:
            return self.string_value
        if self.data_type == self.DataType.BOOLEAN:
            return None if self.value is None else self.value >= 0.5
        return self.value


class Dataset(models.Model):
    """Inputs for an agent, with the outputs expected of it: what evaluation runs run over."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    def build_item(
        self,
        input: Mapping[str, Any],
        expected_output: Any = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        source_execution: Any = None,
    ) -> DatasetItem:
        """A new, unsaved item of this dataset, validated: ``input`` must be a JSON object (the agent's
        params), ``expected_output`` any JSON value, ``metadata`` a JSON object (None: ``{}``).
        ``ValidationError`` names the field that does not fit."""
        if not isinstance(input, Mapping):
            raise ValidationError(
                {"input": f"input must be a JSON object (the agent's params), not {input!r}."}
            )
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise ValidationError({"metadata": f"metadata must be a JSON object, not {metadata!r}."})
        return DatasetItem(
            dataset=self,
            input=json_value(dict(input), "input"),
            expected_output=json_value(expected_output, "expected_output"),
            metadata=json_value(dict(metadata), "metadata"),
            source_execution=source_execution,
        )

    def add_item(
        self,
        input: Mapping[str, Any],
        expected_output: Any = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        source_execution: Any = None,
    ) -> DatasetItem:
        """Add one item (validated as :meth:`build_item` does) and return it."""
        item = self.build_item(input, expected_output, metadata, source_execution=source_execution)
        item.save(using=self._state.db)
        return item

    def add_items(self, items: Iterable[DatasetItem]) -> list[DatasetItem]:
        """Save new items of this dataset (from :meth:`build_item`) in one transaction and return them.

        They keep their order: the items are listed by ``created_at``, then ``id``, and items saved
        together may share a ``created_at``, so their ids are given in ascending order."""
        items = list(items)
        for item, item_id in zip(items, sorted(uuid.uuid4() for item in items), strict=True):
            if item.dataset_id != self.pk:
                raise ValidationError({"dataset": f"Item {item.pk} belongs to another dataset."})
            item.id = item_id
        with transaction.atomic(using=self._state.db):
            return DatasetItem.objects.using(self._state.db).bulk_create(items)

    def add_executions(self, executions: Iterable[Any]) -> list[DatasetItem]:
        """Add an item for each execution: its ``parameters`` as input and its ``response`` text as the
        expected output (None when it has none, a failed call's), with ``source_execution`` set.

        Executions already in this dataset (an item with the same ``source_execution``) are skipped, as
        are repeats in ``executions``; concurrent calls for one dataset take turns (its row is locked).
        Returns the items added, in the order of ``executions``, written in one transaction."""
        if isinstance(executions, models.QuerySet):
            executions = executions.only("id", "parameters", "response")
        executions = list(executions)
        database = self._state.db
        with transaction.atomic(using=database):
            Dataset.objects.using(database).select_for_update().filter(pk=self.pk).first()
            present = set(
                self.items.filter(source_execution_id__in=[execution.pk for execution in executions])
                .values_list("source_execution_id", flat=True)
                .order_by()
            )
            items = []
            for execution in executions:
                if execution.pk in present:
                    continue
                present.add(execution.pk)
                if not isinstance(execution.parameters, Mapping):
                    raise ValidationError(
                        {"input": f"Execution {execution.pk} has parameters that are not a JSON object."}
                    )
                items.append(
                    self.build_item(
                        execution.parameters, execution.response or None, source_execution=execution
                    )
                )
            return self.add_items(items)


class DatasetItem(models.Model):
    """One input of a dataset (the agent's params) and the output expected for it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    input = models.JSONField(help_text=_("The agent's params."))
    expected_output = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source_execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["dataset", "created_at"], name="llm_dataset_item_idx")]

    def __str__(self) -> str:
        return f"{self.dataset.slug} item {self.pk}"


class EvalRun(models.Model):
    """An agent run over every active item of a dataset, each output scored by the evaluators."""

    class Mode(models.TextChoices):
        SYNC = "sync", _("sync")
        BATCH = "batch", _("batch")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        COMPLETED = "completed", _("completed")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=255, blank=True)
    agent_type = models.CharField(max_length=255)
    target = models.CharField(max_length=500, help_text=_("The dotted path of the agent class."))
    agent_version = models.CharField(max_length=50, blank=True)
    model = models.CharField(
        max_length=255, blank=True, help_text=_("The model used instead of the agent's.")
    )
    prompt_version = models.ForeignKey(
        "llm_agents.PromptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evaluators = models.JSONField(default=list, blank=True, help_text=_("[{name, params}]"))
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.SYNC)
    concurrency = models.PositiveIntegerField(default=4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    item_count = models.PositiveIntegerField(default=0)
    completed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    total_cost = money_field(help_text=_("What the agent calls cost."))
    eval_cost = money_field(help_text=_("What the evaluators' own model calls (judges) cost."))
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("evaluation run")
        indexes = [models.Index(fields=["dataset", "created_at"], name="llm_eval_run_dataset_idx")]

    def __str__(self) -> str:
        return self.name or f"{self.agent_type} on {self.dataset_id}"

    def evaluator_names(self) -> list[str]:
        """The names of this run's evaluators, in the order they were given (the names of their scores)."""
        names = []
        for evaluator in self.evaluators or []:
            name = evaluator.get("name") if isinstance(evaluator, Mapping) else evaluator
            if isinstance(name, str) and name not in names:
                names.append(name)
        return names

    def summarize(self) -> dict[str, dict[str, Any]]:
        """``{evaluator: {n, mean, pass_rate, ci95: [low, high]}}`` from the scores of this run's
        evaluators (what the runner stores in ``summary``).

        Every item of the run counts (``n`` is ``item_count``, or the number of results when larger):
        an item with no score from an evaluator (it failed to run, or the evaluator raised) counts as 0.
        ``pass_rate`` is the percentage of items scoring 0.5 or more, rounded to 2 places; ``mean`` and
        ``ci95`` (a bootstrap interval seeded by the run's id) are rounded to 4 places, and None when the
        run has no items. Two queries."""
        count = max(self.item_count, self.results.count())
        values = self.evaluator_values()
        named = self.evaluator_names()
        summary: dict[str, dict[str, Any]] = {}
        for name in named + sorted(set(values) - set(named)):
            scored = list(values.get(name, {}).values())
            scores = scored + [0.0] * max(count - len(scored), 0)
            if not scores:
                summary[name] = {"n": 0, "mean": None, "pass_rate": None, "ci95": None}
                continue
            passed = sum(1 for value in scores if value >= PASS_THRESHOLD)
            summary[name] = {
                "n": len(scores),
                "mean": round(math.fsum(scores) / len(scores), 4),
                "pass_rate": round(100 * passed / len(scores), 2),
                "ci95": list(mean_ci95(scores, seed=str(self.pk))),
            }
        return summary

    def evaluator_values(self) -> dict[str, dict[Any, float]]:
        """``{evaluator: {item id: value}}``: the values of the scores this run's evaluators gave, by item
        (a score with no value counts as 0). One query."""
        return evaluator_values_by_run(self.scores.all()).get(self.pk, {})

    def compare(self, other: EvalRun) -> dict[str, Any]:
        """This run against ``other``, item by item (SPEC sections 17 and 21).

        Returns ``{evaluator: {n_paired, mean_a, mean_b, delta, ci95: [low, high], p_value, wins, losses,
        ties}, "items": [{item, a: {evaluator: value}, b: {...}}]}`` for each evaluator of both runs, over
        the items both runs have a result for (in the items' order): ``a`` is this run, ``delta`` this
        run's mean minus the other's, ``ci95`` the paired bootstrap interval of that difference and
        ``p_value`` the two-sided paired sign-flip test's (``llm_agents.statistics``), both seeded by the
        two runs' ids. An item with no score from an evaluator (it failed to run, or the evaluator
        raised) counts as 0 there, in the pairs and in ``items``. With no paired item, an evaluator's
        means, ``delta``, ``ci95`` and ``p_value`` are None. Two queries."""
        runs = (self.pk, other.pk)
        results = EvalResult.objects.filter(run__in=runs).order_by("item__created_at", "item_id")
        items: dict[Any, set[Any]] = {}
        for run_id, item_id in results.values_list("run_id", "item_id"):
            items.setdefault(item_id, set()).add(run_id)
        paired = [item_id for item_id, found_in in items.items() if found_in == set(runs)]
        values = evaluator_values_by_run(Score.objects.filter(eval_run__in=runs))
        mine, theirs = values.get(self.pk, {}), values.get(other.pk, {})
        names_a = self.evaluator_names() + sorted(set(mine) - set(self.evaluator_names()))
        names_b = set(other.evaluator_names()) | set(theirs)
        names = [name for name in names_a if name in names_b]
        comparison: dict[str, Any] = {}
        for name in names:
            a = [mine.get(name, {}).get(item_id, 0.0) for item_id in paired]
            b = [theirs.get(name, {}).get(item_id, 0.0) for item_id in paired]
            if paired:
                comparison[name] = paired_comparison(a, b, seed=f"{self.pk}:{other.pk}")
            else:
                comparison[name] = {"n_paired": 0, "mean_a": None, "mean_b": None, "delta": None, "ci95": None,
                                    "p_value": None, "wins": 0, "losses": 0, "ties": 0}  # fmt: skip
        comparison["items"] = [
            {
                "item": str(item_id),
                "a": {name: mine.get(name, {}).get(item_id, 0.0) for name in names},
                "b": {name: theirs.get(name, {}).get(item_id, 0.0) for name in names},
            }
            for item_id in paired
        ]
        return comparison


class EvalResult(models.Model):
    """One item of an evaluation run: the agent's output for it, its scores (``scores``), or why
    it has none (``error``)."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="+")
    execution = models.ForeignKey(
        "llm_agents.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    output = models.JSONField(null=True, blank=True, help_text=_("The response text, or the parsed answer."))
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "item"], name="llm_eval_result_unique")]

    def __str__(self) -> str:
        return f"{self.run_id} / {self.item_id}"


def evaluator_values_by_run(scores: models.QuerySet[Score]) -> dict[Any, dict[str, dict[Any, float]]]:
    """``{run id: {evaluator: {item id: value}}}`` from the evaluator scores among ``scores`` (those of
    an evaluation result; the latest wins when a result has two of one name). One query."""
    rows = (
        scores.filter(source=Score.Source.EVALUATOR, eval_run__isnull=False, eval_result__isnull=False)
        .order_by("created_at")
        .values_list("eval_run_id", "name", "eval_result__item_id", "value")
    )
    values: dict[Any, dict[str, dict[Any, float]]] = {}
    for run_id, name, item_id, value in rows:
        values.setdefault(run_id, {}).setdefault(name, {})[item_id] = 0.0 if value is None else value
    return values
