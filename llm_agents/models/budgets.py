from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..periods import calendar_days, day_range, local_now
from .fields import money_field, token_field

if TYPE_CHECKING:
    from .querysets import ExecutionQuerySet


ZERO = Decimal("0")

#: A spend counter's key, ``(scope, scope value)``: ``("global", "")``, ``("agent", "SearchAgent")``,
#: ``("tenant", "acme")``, ``("model", "gpt-4o")``, ``("user", "u-7")``.
Key = tuple[str, str]


def spend_keys(
    agent_type: str, tenant_id: str | None, models: Iterable[str | None], user_id: str | None = None
) -> list[Key]:
    """The counter keys a call's spend goes to: global, its agent type, its tenant, each model named
    and its end user (a call with no user counts under no user's budget)."""
    keys: list[Key] = [("global", "")]
    if agent_type:
        keys.append(("agent", agent_type))
    if tenant_id not in (None, ""):
        keys.append(("tenant", str(tenant_id)))
    if user_id not in (None, ""):
        keys.append(("user", str(user_id)))
    keys.extend(("model", model) for model in dict.fromkeys(models) if model)
    return sorted(keys)  # one order everywhere, so concurrent upserts of the same rows never deadlock


# -- periods --------------------------------------------------------------------------------------
# The one rule for a budget's period, in local days (settings.TIME_ZONE). The ORM reads use it, and the
# PostgreSQL budget check receives its days as parameters (llm_agents.db.fastpaths): SQL only sums.


def days_of_period(period: str, rolling_days: int | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last local day of the period ``period`` that contains ``today``: a calendar
    period of :func:`~llm_agents.periods.calendar_days`, or else a rolling window of ``rolling_days``
    days (today and the ``rolling_days - 1`` days before it)."""
    calendar = calendar_days(today)
    if period in calendar:
        return calendar[period]
    return today - dt.timedelta(days=(rolling_days or 1) - 1), today


# -- budgets --------------------------------------------------------------------------------------


class BudgetQuerySet(models.QuerySet["Budget"]):
    """Which budgets apply to a call: ``Budget.objects.applying_to(agent_type="SearchAgent",
    tenant_id="acme", model="gpt-4o", user_id="u-7")``."""

    def active(self) -> BudgetQuerySet:
        return self.filter(is_active=True)

    def hard_stops(self) -> BudgetQuerySet:
        return self.filter(enforcement=Budget.Enforcement.HARD_STOP)

    def for_keys(self, keys: Iterable[Key]) -> BudgetQuerySet:
        """The active budgets whose scope is one of the counter ``keys``."""
        condition = Q()
        for scope, value in keys:
            condition |= Q(scope=scope, scope_value=value)
        return self.active().filter(condition) if condition else self.none()

    def applying_to(
        self,
        *,
        agent_type: str,
        tenant_id: str | None = None,
        model: str | Iterable[str] | None = None,
        user_id: str | None = None,
    ) -> BudgetQuerySet:
        """The active budgets whose scope matches a call: the global ones, those of its agent type,
        of its tenant, of its model (or of each of several models) and of its end user."""
        models = [model] if model is None or isinstance(model, str) else list(model)
        return self.for_keys(spend_keys(agent_type, tenant_id, models, user_id))

    def locked(self) -> list[Budget]:
        """These budgets, locked until the transaction ends (in primary key order, so lockers never
        deadlock), read fresh under the lock. Inside ``transaction.atomic()``."""
        if not connections[self.db].features.has_select_for_update:
            # SQLite: a write first takes the database's single write lock for this transaction.
            self.update(alerted_on=F("alerted_on"))
            return list(self.order_by("pk"))
        return list(self.select_for_update().order_by("pk"))


@dataclass(frozen=True)
class BudgetForecast:
    """Where a budget's period is heading at the current run rate."""

    spend: Decimal
    projected_spend: Decimal
    projected_percent: float
    period_start: dt.datetime
    period_end: dt.datetime
    will_exceed: bool


class Budget(models.Model):
    """A spending limit for a scope (everything, one agent, one tenant, one model or one end user) over
    a period.

    Spend is read from :class:`SpendCounter` rows (one per scope key and local day), never summed over
    the executions table, so the figures cost the same however many executions are stored.
    """

    class Scope(models.TextChoices):
        GLOBAL = "global", _("global")
        AGENT = "agent", _("agent")
        TENANT = "tenant", _("tenant")
        MODEL = "model", _("model")
        USER = "user", _("end user")

    class Period(models.TextChoices):
        DAILY = "daily", _("daily")
        WEEKLY = "weekly", _("weekly")
        MONTHLY = "monthly", _("monthly")
        ROLLING = "rolling", _("rolling N days")

    class Enforcement(models.TextChoices):
        WARNING = "warning", _("warning")
        HARD_STOP = "hard_stop", _("hard stop")

    name = models.CharField(max_length=255)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.GLOBAL)
    scope_value = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("Agent type, tenant id, model id or end user id; blank for global."),
    )
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTHLY)
    period_days = models.PositiveIntegerField(null=True, blank=True, help_text=_("For rolling budgets."))
    limit_usd = money_field()
    token_limit = models.PositiveBigIntegerField(null=True, blank=True)
    enforcement = models.CharField(max_length=10, choices=Enforcement.choices, default=Enforcement.HARD_STOP)
    alert_at_percentage = models.PositiveSmallIntegerField(default=80)
    is_active = models.BooleanField(default=True)
    channels = models.ManyToManyField(
        "llm_agents.AlertChannel",
        blank=True,
        related_name="budgets",
        help_text=_("Where this budget's alerts and refusals are also sent."),
    )
    # The local day of the last budget_alert / warning budget_exceeded: each fires once per period.
    alerted_on = models.DateField(null=True, blank=True, editable=False)
    exceeded_on = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BudgetQuerySet.as_manager()
    #: The counter keys a call's spend goes to (:func:`spend_keys`), for code that reaches the model only.
    spend_keys = staticmethod(spend_keys)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(limit_usd__gte=0), name="llm_budget_limit_gte_0"),
            models.CheckConstraint(
                condition=Q(alert_at_percentage__gte=1, alert_at_percentage__lte=100),
                name="llm_budget_alert_1_100",
            ),
            models.CheckConstraint(
                # IS NOT NULL spelled out: a CHECK passes when its condition is NULL.
                condition=~Q(period="rolling") | Q(period_days__isnull=False, period_days__gte=1),
                name="llm_budget_rolling_has_days",
            ),
            models.CheckConstraint(
                condition=Q(scope="global", scope_value="") | (~Q(scope="global") & ~Q(scope_value="")),
                name="llm_budget_scope_value",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.period == self.Period.ROLLING and not self.period_days:
            raise ValidationError({"period_days": "A rolling budget needs the number of days."})
        if self.scope == self.Scope.GLOBAL and self.scope_value:
            raise ValidationError({"scope_value": "A global budget has no scope value."})
        if self.scope != self.Scope.GLOBAL and not self.scope_value:
            raise ValidationError({"scope_value": f"A {self.scope} budget needs a scope value."})

    # -- periods ------------------------------------------------------------------------------

    def period_days_range(self, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
        """The first and last local day of the current period (both included).

        Weeks start on Monday; a rolling budget of N days covers today and the N - 1 days before
        (:func:`days_of_period`).
        """
        return days_of_period(self.period, self.period_days, today or local_now().date())

    def period_bounds(self, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
        """The current period as ``(start, end)``, half-open, in ``settings.TIME_ZONE``."""
        now = timezone.localtime(now, timezone.get_default_timezone()) if now else local_now()
        return day_range(*self.period_days_range(now.date()))

    def executions(self, now: dt.datetime | None = None) -> ExecutionQuerySet:
        """The executions of this budget's scope in its current period (for browsing; the figures
        below come from the spend counters)."""
        from .executions import Execution

        start, end = self.period_bounds(now)
        queryset = Execution.objects.filter(started_at__gte=start, started_at__lt=end)
        if self.scope == self.Scope.AGENT:
            queryset = queryset.filter(agent_type=self.scope_value)
        elif self.scope == self.Scope.TENANT:
            queryset = queryset.filter(tenant_id=self.scope_value)
        elif self.scope == self.Scope.MODEL:
            queryset = queryset.filter(Q(model_id=self.scope_value) | Q(chosen_model_id=self.scope_value))
        elif self.scope == self.Scope.USER:
            queryset = queryset.filter(user_id=self.scope_value)
        return queryset

    # -- figures ------------------------------------------------------------------------------

    def counters(self, today: dt.date | None = None) -> models.QuerySet[SpendCounter]:
        """The spend counter rows of this budget's scope in its current period."""
        first, last = self.period_days_range(today)
        return SpendCounter.objects.filter(
            scope=self.scope, scope_value=self.scope_value, day__gte=first, day__lte=last
        )

    def current_usage(self, today: dt.date | None = None) -> tuple[Decimal, int]:
        """``(spend, tokens)`` recorded in the current period, in one query."""
        totals = self.counters(today).aggregate(spend=Sum("spend"), tokens=Sum("tokens"))
        return (totals["spend"] or ZERO).quantize(Decimal("0.00000001")), totals["tokens"] or 0

    def current_spend(self) -> Decimal:
        """US dollars recorded in the current period (calls in flight are not spend yet)."""
        return self.current_usage()[0]

    def current_tokens(self) -> int:
        return self.current_usage()[1]

    def percent_of_limit(self, spend: Decimal) -> float:
        """``spend`` as a percentage of ``limit_usd``, 2 places; a zero limit with spend is 100.0."""
        if not self.limit_usd:
            return 100.0 if spend > 0 else 0.0
        return round(float(spend / self.limit_usd * 100), 2)

    def percent_used(self) -> float:
        return self.percent_of_limit(self.current_spend())

    def remaining(self) -> Decimal:
        return max(self.limit_usd - self.current_spend(), ZERO)

    def is_over(self, spend: Decimal, tokens: int) -> bool:
        """Whether ``spend``/``tokens`` reach the dollar limit or the token limit."""
        return spend >= self.limit_usd or (self.token_limit is not None and tokens >= self.token_limit)

    def forecast(self, now: dt.datetime | None = None) -> BudgetForecast:
        """The spend at the end of the current period if it goes on at the rate seen so far."""
        now = timezone.localtime(now, timezone.get_default_timezone()) if now else local_now()
        start, end = self.period_bounds(now)
        spend = self.current_usage(now.date())[0]
        elapsed = max((now - start).total_seconds(), 1.0)
        factor = Decimal(str((end - start).total_seconds() / elapsed))
        projected = (spend * factor).quantize(Decimal("0.00000001"))
        return BudgetForecast(
            spend=spend,
            projected_spend=projected,
            projected_percent=self.percent_of_limit(projected),
            period_start=start,
            period_end=end,
            will_exceed=projected >= self.limit_usd and projected > 0,
        )


# -- spend counters -------------------------------------------------------------------------------


class SpendCounterQuerySet(models.QuerySet["SpendCounter"]):
    def add(self, entries: Iterable[tuple[str, str, Decimal, int]], day: dt.date) -> None:
        """Add each ``(scope, scope_value, spend, tokens)`` of ``entries`` to its counter of the local
        ``day``: the missing rows are inserted at zero (an insert racing another one is ignored), then
        each row is incremented with ``F()``, in key order so that concurrent adders never deadlock.
        Entries with neither spend nor tokens are skipped. Inside ``transaction.atomic()`` to add all
        or nothing."""
        entries = sorted(entry for entry in entries if entry[2] or entry[3])
        if not entries:
            return
        self.bulk_create(
            [self.model(scope=scope, scope_value=value, day=day) for scope, value, _, _ in entries],
            ignore_conflicts=True,
        )
        for scope, value, spend, tokens in entries:
            self.filter(scope=scope, scope_value=value, day=day).update(
                spend=F("spend") + spend, tokens=F("tokens") + tokens
            )

    def totals_for(self, budgets: Iterable[Budget], today: dt.date) -> dict[int, tuple[Decimal, int]]:
        """``{budget pk: (spend, tokens)}`` of each budget's current period, in one query (at most 31
        counter rows per budget)."""
        budgets = list(budgets)
        if not budgets:
            return {}
        ranges = {budget.pk: budget.period_days_range(today) for budget in budgets}
        condition = Q()
        for budget in budgets:
            first, last = ranges[budget.pk]
            condition |= Q(scope=budget.scope, scope_value=budget.scope_value, day__gte=first, day__lte=last)
        rows = list(self.filter(condition).values_list("scope", "scope_value", "day", "spend", "tokens"))
        totals = {}
        for budget in budgets:
            first, last = ranges[budget.pk]
            spend, tokens = ZERO, 0
            for scope, value, day, row_spend, row_tokens in rows:
                if scope == budget.scope and value == budget.scope_value and first <= day <= last:
                    spend += row_spend
                    tokens += row_tokens
            totals[budget.pk] = (spend, tokens)
        return totals


class SpendCounter(models.Model):
    """Spend and tokens recorded for one scope key on one local day (``settings.TIME_ZONE``).

    Every recorded call adds to the rows of its keys: global, its agent type, its tenant, its end
    user, and the model asked for and the model that answered. A budget's spend is the sum of at most
    31 of them.
    ``rebuild_aggregates`` recomputes the rows from the executions table.
    """

    scope = models.CharField(max_length=10, choices=Budget.Scope.choices)
    scope_value = models.CharField(max_length=255, blank=True)
    day = models.DateField()
    spend = money_field()
    tokens = token_field()

    objects = SpendCounterQuerySet.as_manager()

    class Meta:
        verbose_name = _("spend counter")
        constraints = [
            models.UniqueConstraint(fields=["scope", "scope_value", "day"], name="llm_spend_counter_key"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.scope_value or '*'} on {self.day}: ${self.spend}"


# -- reservations ---------------------------------------------------------------------------------


class BudgetReservationQuerySet(models.QuerySet["BudgetReservation"]):
    def hold(self, reservation: BudgetReservation) -> BudgetReservation:
        """Insert ``reservation`` (built unsaved by a budget check): its amount and tokens count
        against the hard-stop budgets of its agent type, tenant, model and end user until it is
        released or expires."""
        reservation.save(force_insert=True, using=self.db)
        return reservation

    def release(self, reservation_id: uuid.UUID) -> bool:
        """Drop a reservation (its call settled or gave up); True if it was still held."""
        deleted, _ = self.filter(pk=reservation_id).delete()
        return deleted > 0

    def live(self, now: dt.datetime) -> BudgetReservationQuerySet:
        """Reservations that count at ``now``."""
        return self.filter(expires_at__gt=now)

    def expired(self, now: dt.datetime) -> BudgetReservationQuerySet:
        """Reservations past their ``expires_at`` at ``now`` (a process died mid-call): they no longer
        count, and rebuilding the counters removes them."""
        return self.filter(expires_at__lte=now)

    def reserved_for(self, budgets: Iterable[Budget], now: dt.datetime) -> dict[int, tuple[Decimal, int]]:
        """``{budget pk: (amount, tokens)}`` held at ``now`` by calls in flight within each budget's
        scope, in one query."""
        budgets = list(budgets)
        if not budgets:
            return {}
        held = list(
            self.live(now).values_list("agent_type", "tenant_id", "model", "user_id", "amount", "tokens")
        )
        totals = {}
        for budget in budgets:
            amount, tokens = ZERO, 0
            for agent_type, tenant_id, model, user_id, row_amount, row_tokens in held:
                scope_value = {"agent": agent_type, "tenant": tenant_id, "model": model, "user": user_id}.get(
                    budget.scope
                )
                if budget.scope == Budget.Scope.GLOBAL or scope_value == budget.scope_value:
                    amount += row_amount
                    tokens += row_tokens
            totals[budget.pk] = (amount, tokens)
        return totals


class BudgetReservation(models.Model):
    """The estimated cost of a call in flight under a hard-stop budget, held until the call is settled.

    Reservations past ``expires_at`` (a process that died mid-call) no longer count.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent_type = models.CharField(max_length=255)
    tenant_id = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255, blank=True)
    user_id = models.CharField(max_length=255, blank=True, default="")
    amount = money_field()
    tokens = token_field()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = BudgetReservationQuerySet.as_manager()

    class Meta:
        verbose_name = _("budget reservation")
        indexes = [models.Index(fields=["expires_at"], name="llm_reservation_expires_idx")]

    def __str__(self) -> str:
        return f"{self.agent_type} ${self.amount} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
