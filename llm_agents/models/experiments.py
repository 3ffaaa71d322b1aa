"""Prompt experiments (SPEC §18, §21): sticky A/B splits of a prompt's ``production`` traffic between
versions, their results with intervals and p-values, and guardrails that take a failing variant out."""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from decimal import Decimal
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Avg, Count, Q, StdDev
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import context
from ..db import fastpaths
from ..events import emit
from ..money import money
from ..signals import experiment_guardrail_tripped
from ..statistics import PLACES, normal_ci95, rate, two_sample_comparison
from .prompts import PRODUCTION, Prompt, PromptVersion, invalidate_prompt_cache

#: Metrics every experiment can use; any other metric is the name of a score.
BUILT_IN_METRICS = ("cost", "latency", "error_rate")
GUARDRAILS = ("error_rate_max", "cost_per_call_max")
#: Buckets of the assignment hash (SPEC §21): weights are resolved to 1/10,000 of the traffic.
BUCKETS = 10_000
SIGNIFICANCE = 0.05
MAX_VERSION = 2**31 - 1  # PositiveIntegerField
#: Weights and guardrails beyond this are refused: they are not exact as floats.
LARGEST_NUMBER = 2**53


def is_plain_number(value: Any) -> bool:
    """An int or a finite float within ±2**53 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= LARGEST_NUMBER and (isinstance(value, int) or math.isfinite(value))


class PromptExperiment(models.Model):
    """A split of a prompt's ``production`` traffic between versions (its variants, the first being
    the control), sticky per user, session or tenant, judged by one metric."""

    class Unit(models.TextChoices):
        USER = "user", _("user")
        SESSION = "session", _("session")
        TENANT = "tenant", _("tenant")
        CALL = "call", _("call")

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        RUNNING = "running", _("running")
        STOPPED = "stopped", _("stopped")

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=255)
    variants = models.JSONField(
        default=list,
        help_text=_('[{"version": number, "weight": positive number}, …]; the first is the control.'),
    )
    unit = models.CharField(max_length=10, choices=Unit.choices, default=Unit.USER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    metric = models.CharField(
        max_length=100, help_text=_("cost, latency, error_rate, or the name of a score (higher is better).")
    )
    guardrails = models.JSONField(
        default=dict,
        blank=True,
        help_text=_('{"error_rate_max": percent, "cost_per_call_max": USD}, both optional.'),
    )
    min_samples = models.PositiveIntegerField(default=100)
    tripped = models.JSONField(
        default=list, blank=True, editable=False,
        help_text=_("Variants a guardrail took out of the split: [{version, reason, tripped_at}]."),
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt"],
                condition=Q(status="running"),
                name="llm_experiment_one_running",
                violation_error_message="This prompt already has a running experiment; stop it first.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (``ValidationError`` naming the field; a second running experiment of a prompt
        is refused) and save; ``Prompt.load()`` sees the change at once."""
        self.full_clean()
        try:
            with transaction.atomic(using=kwargs.get("using") or self._state.db):
                super().save(*args, **kwargs)
        except IntegrityError:
            if self.status == self.Status.RUNNING:
                raise ValidationError(
                    {"status": "This prompt already has a running experiment; stop it first."}
                ) from None
            raise
        self._forget_cached_prompt()

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        result = super().delete(*args, **kwargs)
        self._forget_cached_prompt()
        return result

    # -- validation --------------------------------------------------------------------------------

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field, check in (("variants", self._variants_problem), ("metric", self._metric_problem),
                             ("guardrails", self._guardrails_problem)):  # fmt: skip
            problem = check()
            if problem:
                errors[field] = problem
        if self.min_samples is not None and self.min_samples < 1:
            errors["min_samples"] = "min_samples must be at least 1."
        if self.status == self.Status.RUNNING and self.prompt_id is not None:
            running = PromptExperiment.objects.filter(prompt_id=self.prompt_id, status=self.Status.RUNNING)
            if running.exclude(pk=self.pk).exists():
                errors["status"] = "This prompt already has a running experiment; stop it first."
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude: Any = None) -> None:
        # clean() reports a second running experiment under ``status``; the database constraint
        # (the only one involving ``prompt``) still guards against a race.
        super().validate_constraints(exclude={*(exclude or ()), "prompt"})

    def _variants_problem(self) -> str | None:
        variants = self.variants
        if not isinstance(variants, list) or len(variants) < 2:
            return "variants must be a list of at least two {version, weight} objects."
        numbers = []
        for index, variant in enumerate(variants, start=1):
            if (
                not isinstance(variant, dict)
                or set(variant) - {"version", "weight"}
                or "version" not in variant
            ):
                return f"variant {index} must be an object with version and weight."
            number, weight = variant["version"], variant.get("weight", 1)
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_VERSION:
                return f"variant {index}: version must be a version number (1, 2, …), not {number!r}."
            if not is_plain_number(weight):
                return f"variant {index}: weight must be a number, not {weight!r}."
            if weight <= 0:
                return f"variant {index}: weight must be above 0, not {weight!r}."
            numbers.append(number)
        if len(set(numbers)) != len(numbers):
            return "variants must name different versions."
        if self.prompt_id is not None:
            existing = set(
                PromptVersion.objects.filter(prompt_id=self.prompt_id, number__in=numbers).values_list(
                    "number", flat=True
                )
            )
            missing = [str(number) for number in numbers if number not in existing]
            if missing:
                return f"Prompt '{self.prompt}' has no version {', '.join(missing)}."
        return None

    def _metric_problem(self) -> str | None:
        if not isinstance(self.metric, str) or not self.metric.strip():
            return f"metric must be {', '.join(BUILT_IN_METRICS)} or the name of a score."
        return None

    def _guardrails_problem(self) -> str | None:
        guardrails = self.guardrails
        if guardrails in (None, ""):
            self.guardrails = guardrails = {}
        if not isinstance(guardrails, dict):
            return "guardrails must be an object with error_rate_max and/or cost_per_call_max."
        unknown = sorted(set(guardrails) - set(GUARDRAILS))
        if unknown:
            return f"guardrails has no {', '.join(unknown)}: use {', '.join(GUARDRAILS)}."
        for key, value in guardrails.items():
            if not is_plain_number(value) or value < 0:
                return f"guardrails.{key} must be a number of at least 0, not {value!r}."
        if guardrails.get("error_rate_max", 0) > 100:
            return "guardrails.error_rate_max is a percentage (0–100)."
        return None

    def _forget_cached_prompt(self) -> None:
        _guardrails_read.pop(self.pk, None)
        slug = Prompt.objects.filter(pk=self.prompt_id).values_list("slug", flat=True).first()
        invalidate_prompt_cache(slug)
        transaction.on_commit(lambda: invalidate_prompt_cache(slug))

    # -- the lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start splitting the prompt's ``production`` traffic (a draft experiment only)."""
        if self.status != self.Status.DRAFT:
            raise ValidationError(
                {"status": f"Only a draft experiment can start; this one is {self.status}."}
            )
        self.status = self.Status.RUNNING
        self.started_at = timezone.now()
        try:
            self.save()
        except ValidationError:
            self.status, self.started_at = self.Status.DRAFT, None
            raise

    def stop(self) -> None:
        """Stop the split: loading the prompt by ``production`` gives the label's version again."""
        if self.status != self.Status.RUNNING:
            raise ValidationError(
                {"status": f"Only a running experiment can stop; this one is {self.status}."}
            )
        self.status = self.Status.STOPPED
        self.stopped_at = timezone.now()
        self.save()

    def promote(self, version: int | PromptVersion, *, user: Any = None, source: str = "api") -> None:
        """Move the prompt's ``production`` label to ``version`` (one of the variants) and stop the
        experiment, in one transaction. ``user`` needs the permission to move a protected label;
        ``source`` is recorded on the label's move (``api``, ``admin``)."""
        number = version.number if isinstance(version, PromptVersion) else version
        if number not in self.numbers():
            raise ValidationError({"version": f"Version {number} is not a variant of this experiment."})
        with transaction.atomic():
            self.prompt.set_label(PRODUCTION, version, user=user, source=source)
            if self.status == self.Status.RUNNING:
                self.stop()

    # -- assignment --------------------------------------------------------------------------------

    def numbers(self) -> list[int]:
        """The variants' version numbers, the control first."""
        return [variant["version"] for variant in self.variants]

    def tripped_numbers(self) -> set[int]:
        return {entry["version"] for entry in self.tripped or []}

    def unit_value(self, *, user_id: Any = None, session_id: Any = None, tenant_id: Any = None) -> str | None:
        """The value the variant is chosen by: the given user, session or tenant, else the current
        ``session()``'s or tenant; a fresh random value for unit ``call``; None when there is none."""
        if self.unit == self.Unit.CALL:
            return uuid.uuid4().hex
        if self.unit == self.Unit.USER:
            value = user_id if user_id not in (None, "") else context.current_session().user_id
        elif self.unit == self.Unit.SESSION:
            value = session_id if session_id not in (None, "") else context.current_session().session_id
        else:
            value = tenant_id if tenant_id not in (None, "") else context.current_tenant_id()
        return None if value in (None, "") else str(value)

    def assign(self, unit_value: str | None) -> int:
        """The version number for ``unit_value`` (SPEC §21): ``sha256("{id}:{unit value}")`` modulo
        10,000 is the bucket; the variant is the first whose cumulative weight × 10,000 ÷ the total
        weight is above it. Variants a guardrail tripped are left out of the split; with no unit
        value (or every variant tripped) the control is used."""
        control = self.variants[0]["version"]
        tripped = self.tripped_numbers()
        active = [variant for variant in self.variants if variant["version"] not in tripped]
        if unit_value is None or not active:
            return control
        bucket = int(hashlib.sha256(f"{self.pk}:{unit_value}".encode()).hexdigest(), 16) % BUCKETS
        total = sum(variant.get("weight", 1) for variant in active)
        cumulative = 0.0
        for variant in active:
            cumulative += variant.get("weight", 1)
            if cumulative * BUCKETS / total > bucket:
                return variant["version"]
        return active[-1]["version"]

    # -- results -----------------------------------------------------------------------------------

    def settled_executions(self) -> models.QuerySet[Any]:
        """The finished root production executions of the experiment (every variant): an evaluation
        run's calls that went through the experiment (with no user, they get the control) are left out."""
        from .executions import Execution

        return Execution.objects.filter(experiment=self, parent__isnull=True, eval_run__isnull=True).exclude(
            status="running"
        )

    def variant_versions(self) -> dict[int, PromptVersion]:
        return {version.number: version for version in self.prompt.versions.filter(number__in=self.numbers())}

    def results(self) -> dict[str, Any]:
        """``{"metric", "variants": [{version, executions, success_rate, avg_cost, p50_duration_ms,
        p95_duration_ms, metric_mean, ci95, tripped}], "comparisons": [{version, delta, ci95, p_value,
        significant}]}`` over the experiment's finished root executions; one comparison per variant
        after the control, against it (SPEC §21). ``tripped`` is the guardrail's reason or None."""
        versions = self.variant_versions()
        executions = self.settled_executions()
        by_version = {
            row["prompt_version"]: row
            for row in executions.order_by()
            .values("prompt_version")
            .annotate(
                n=Count("*"),
                ok=Count("status", filter=Q(status="success")),
                avg_cost=Avg("total_cost"),
                sd_cost=StdDev("total_cost", sample=True),
                avg_duration=Avg("duration_ms"),
                sd_duration=StdDev("duration_ms", sample=True),
            )
        }
        scores = self._score_rows(executions) if self.metric not in BUILT_IN_METRICS else {}
        reasons = {entry["version"]: entry["reason"] for entry in self.tripped or []}
        variants, samples = [], []
        for number in self.numbers():
            version = versions.get(number)
            key = version.pk if version is not None else 0
            row = by_version.get(key) or {}
            count = row.get("n", 0)
            sample = self._metric_sample(row, scores.get(key))
            samples.append(sample)
            p50 = p95 = None
            if count and version is not None:
                timed = executions.filter(prompt_version=version, duration_ms__isnull=False)
                p50, p95 = fastpaths.percentiles(timed, "duration_ms", [50, 95])
            variants.append({
                "version": number,
                "executions": count,
                "success_rate": rate(row.get("ok", 0), count),
                "avg_cost": money(row.get("avg_cost")),
                "p50_duration_ms": p50,
                "p95_duration_ms": p95,
                "metric_mean": round(sample[1], PLACES) if sample else None,
                "ci95": list(normal_ci95(*sample)) if sample else None,
                "tripped": reasons.get(number),
            })  # fmt: skip
        comparisons = []
        for variant, sample in zip(variants[1:], samples[1:], strict=True):
            comparison: dict[str, Any] = {"version": variant["version"], "delta": None, "ci95": None,
                                          "p_value": None, "significant": False}  # fmt: skip
            control = samples[0]
            if control and sample and control[0] >= 2 and sample[0] >= 2:
                comparison.update(two_sample_comparison(control, sample))
                enough = min(variants[0]["executions"], variant["executions"]) >= self.min_samples
                comparison["significant"] = enough and comparison["p_value"] < SIGNIFICANCE
            comparisons.append(comparison)
        return {"metric": self.metric, "variants": variants, "comparisons": comparisons}

    def _metric_sample(
        self, row: dict[str, Any], score: dict[str, Any] | None
    ) -> tuple[int, float, float] | None:
        """``(count, mean, sample sd)`` of the metric over one variant's executions (None: no values)."""
        if self.metric == "error_rate":
            count = row.get("n", 0)
            if not count:
                return None
            share = (count - row["ok"]) / count
            spread = math.sqrt(share * (1 - share) * count / (count - 1)) if count > 1 else 0.0
            return count, share * 100, spread * 100
        if self.metric in ("cost", "latency"):
            field = "cost" if self.metric == "cost" else "duration"
            mean = row.get(f"avg_{field}")
            if not row.get("n") or mean is None:
                return None
            return row["n"], float(mean), float(row.get(f"sd_{field}") or 0.0)
        if not score or not score["n"]:
            return None
        return score["n"], float(score["mean"]), float(score["sd"] or 0.0)

    def _score_rows(self, executions: models.QuerySet[Any]) -> dict[int, dict[str, Any]]:
        """Per prompt version, ``{n, mean, sd}`` of the metric's numeric and boolean scores (True is 1)
        given to the variant's executions (evaluation scores left out)."""
        from .quality import Score

        rows = (
            Score.objects.filter(
                execution__in=executions.values("pk"),
                name=self.metric,
                value__isnull=False,
                data_type__in=(Score.DataType.NUMERIC, Score.DataType.BOOLEAN),
                eval_run__isnull=True,
            )  # fmt: skip
            .order_by()
            .values(version=models.F("execution__prompt_version"))
            .annotate(n=Count("*"), mean=Avg("value"), sd=StdDev("value", sample=True))
        )
        return {row["version"]: dict(row) for row in rows}

    # -- guardrails --------------------------------------------------------------------------------

    def check_guardrails(self) -> list[dict[str, Any]]:
        """Take out of the split every variant with at least ``min_samples`` finished executions whose
        error rate (percent) or average cost per call is above its guardrail; returns the entries
        added to ``tripped``. ``experiment_guardrail_tripped`` is sent for each once the
        transaction commits. The control is judged like the others."""
        limits = self.guardrails or {}
        if not limits or self.status != self.Status.RUNNING:
            return []
        versions = self.variant_versions()
        rows = {
            row["prompt_version"]: row
            for row in self.settled_executions()
            .order_by()
            .values("prompt_version")
            .annotate(
                n=Count("*"), ok=Count("status", filter=Q(status="success")), avg_cost=Avg("total_cost")
            )
        }
        breaking = []
        for number in self.numbers():
            version = versions.get(number)
            row = rows.get(version.pk if version is not None else None)
            if row is None or row["n"] < self.min_samples or number in self.tripped_numbers():
                continue
            reason = self._breach(row, limits)
            if reason:
                breaking.append((number, reason))
        if not breaking:
            return []
        added = []
        with transaction.atomic():
            locked = PromptExperiment.objects.select_for_update().get(pk=self.pk)
            already = locked.tripped_numbers()
            for number, reason in breaking:
                if number not in already:
                    entry = {"version": number, "reason": reason, "tripped_at": timezone.now().isoformat()}
                    locked.tripped = [*locked.tripped, entry]
                    added.append(entry)
            if added:
                PromptExperiment.objects.filter(pk=self.pk).update(tripped=locked.tripped)
                self.tripped = locked.tripped
                self._forget_cached_prompt()
                for entry in added:
                    transaction.on_commit(partial(self._tripped_committed, entry))
        return added

    @staticmethod
    def _breach(row: dict[str, Any], limits: dict[str, Any]) -> str | None:
        error_rate = (row["n"] - row["ok"]) * 100 / row["n"]
        if "error_rate_max" in limits and error_rate > limits["error_rate_max"]:
            return (f"error rate {error_rate:.2f}% over {row['n']} executions is above "
                    f"error_rate_max {limits['error_rate_max']}%")  # fmt: skip
        cost = Decimal(row["avg_cost"] or 0)
        if "cost_per_call_max" in limits and cost > Decimal(str(limits["cost_per_call_max"])):
            return (f"average cost per call ${money(cost)} over {row['n']} executions is above "
                    f"cost_per_call_max ${limits['cost_per_call_max']}")  # fmt: skip
        return None

    def _tripped_committed(self, entry: dict[str, Any]) -> None:
        emit(experiment_guardrail_tripped, sender=PromptExperiment, experiment=self,
             version=entry["version"], reason=entry["reason"])  # fmt: skip


#: Seconds a process keeps an experiment's guardrails before reading them again (the hook below).
GUARDRAILS_READ_EVERY = 10.0
_guardrails_read: dict[int, tuple[float, dict[str, Any]]] = {}


def _running_guardrails(experiment_id: int) -> dict[str, Any]:
    """The guardrails of a running experiment ({} when it has none or does not run), read at most
    every ``GUARDRAILS_READ_EVERY`` seconds by a process."""
    now = time.monotonic()
    kept = _guardrails_read.get(experiment_id)
    if kept is not None and kept[0] > now:
        return kept[1]
    guardrails = (
        PromptExperiment.objects.filter(pk=experiment_id, status=PromptExperiment.Status.RUNNING)
        .values_list("guardrails", flat=True)
        .first()
    ) or {}
    _guardrails_read[experiment_id] = (now + GUARDRAILS_READ_EVERY, guardrails)
    return guardrails


def could_break_guardrails(record: Any, guardrails: dict[str, Any]) -> bool:
    """Whether this finished execution can have made its variant break a guardrail: only a failure
    raises an error rate, and only a call costing more than ``cost_per_call_max`` can lift an average
    above it."""
    if "error_rate_max" in guardrails and record.status != "success":
        return True
    limit = guardrails.get("cost_per_call_max")
    return limit is not None and Decimal(record.total_cost or 0) > Decimal(str(limit))


def check_experiment_guardrails(record: Any) -> None:
    """Completion hook: after a root production execution of a running experiment finishes in a way
    that could break a guardrail (:func:`could_break_guardrails`), check the experiment's guardrails.
    Other executions cost nothing but a look at guardrails read every few seconds."""
    experiment_id = getattr(record, "experiment_id", None)
    if experiment_id is None or record.parent is not None or record.eval_run_id is not None:
        return
    guardrails = _running_guardrails(experiment_id)
    if not guardrails or not could_break_guardrails(record, guardrails):
        return
    experiment = PromptExperiment.objects.filter(
        pk=experiment_id, status=PromptExperiment.Status.RUNNING
    ).first()
    if experiment is not None:
        experiment.check_guardrails()
