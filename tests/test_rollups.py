"""The rollups are exact (SPEC section 20): whatever writes the executions — the product, the ORM,
raw SQL, COPY, ``recompute_costs``, retention — the hourly and daily rollup and latency tables equal
what ``rebuilds.rebuild()`` computes from the rows; and each execution the product records carries its
llm spans' spend by model (``model_spend``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import random
import uuid
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Sum
from django.test import override_settings
from django.utils import timezone

from llm_agents import Agent, Param, trace
from llm_agents.db import rollups as sql_rollups
from llm_agents.models import (
    CostConfig,
    DailyDurations,
    DailyLatency,
    DailyModelDurations,
    DailyRollup,
    DailyTotals,
    Execution,
    HourlyDurations,
    HourlyLatency,
    HourlyModelDurations,
    HourlyRollup,
    HourlyTotals,
    rebuilds,
    rollups,
)
from llm_agents.testing import fake_llm
from llm_agents.tracing import span, tenant

from .factories import ExecutionFactory, PromptVersionFactory, SpanFactory, local_today

pytestmark = pytest.mark.django_db
POSTGRES = connection.vendor == "postgresql"
MONEY = {"input_cost", "output_cost", "total_cost", "model_cost"}
TABLES = (
    (HourlyRollup, rollups.ROLLUP_KEYS, rollups.ROLLUP_MEASURES),
    (DailyRollup, rollups.ROLLUP_KEYS, rollups.ROLLUP_MEASURES),
    (HourlyTotals, rollups.TOTALS_KEYS, rollups.ROLLUP_MEASURES),
    (DailyTotals, rollups.TOTALS_KEYS, rollups.ROLLUP_MEASURES),
    (HourlyLatency, rollups.LATENCY_KEYS, rollups.LATENCY_MEASURES),
    (DailyLatency, rollups.LATENCY_KEYS, rollups.LATENCY_MEASURES),
    (HourlyDurations, rollups.DURATION_KEYS, rollups.DURATION_MEASURES),
    (DailyDurations, rollups.DURATION_KEYS, rollups.DURATION_MEASURES),
    (HourlyModelDurations, rollups.MODEL_DURATION_KEYS, rollups.DURATION_MEASURES),
    (DailyModelDurations, rollups.MODEL_DURATION_KEYS, rollups.DURATION_MEASURES),
)
CENT = Decimal("0.00000001")


# -- what is compared -------------------------------------------------------------------------------


def write_while_migrated_back(**fields) -> None:
    """An ExecutionFactory row written while the app is migrated back, through the model of the
    migrations applied then (the current model has columns the table lacks)."""
    executor = MigrationExecutor(connection)
    applied = max(name for app, name in executor.loader.applied_migrations if app == "llm_agents")
    old = executor.loader.project_state(("llm_agents", applied)).apps.get_model("llm_agents", "Execution")
    built = ExecutionFactory.build(**fields)
    names = {model_field.attname for model_field in old._meta.concrete_fields}
    old(**{name: getattr(built, name) for name in names}).save(force_insert=True)


def snapshot() -> dict[str, dict[tuple, tuple]]:
    """Every rollup table as ``{key: measures}``, without rows whose measures are all zero (what a
    row's removal leaves), money rounded to 8 places."""
    tables = {}
    for model, keys, measures in TABLES:
        rows = {}
        for row in model.objects.values_list(*keys, *measures):
            values = tuple(
                Decimal(value).quantize(CENT) if name in MONEY else value
                for name, value in zip(measures, row[len(keys) :], strict=True)
            )
            if any(values):
                rows[row[: len(keys)]] = values
        tables[model.__name__] = rows
    return tables


def check_totals() -> None:
    """The rollups add up to the finished root rows themselves (so they cannot be equally wrong as a
    rebuild); running ones are left out until they finish."""
    roots = Execution.objects.filter(parent__isnull=True, eval_run__isnull=True).exclude(
        status=Execution.Status.RUNNING
    )
    expected = roots.aggregate(
        executions=Count("*"), total_cost=Sum("total_cost"), total_tokens=Sum("total_tokens"),
        duration_sum=Sum("duration_ms"), input_tokens=Sum("input_tokens"),
    )  # fmt: skip
    expected = {key: value or 0 for key, value in expected.items()}
    expected["total_cost"] = Decimal(expected["total_cost"]).quantize(CENT)
    timed = roots.filter(duration_ms__isnull=False).count()
    for model in (HourlyRollup, DailyRollup, HourlyTotals, DailyTotals):
        got = model.objects.aggregate(
            **{key: Sum(key) for key in expected}, duration_count=Sum("duration_count")
        )
        got = {key: value or 0 for key, value in got.items()}
        got["total_cost"] = Decimal(got["total_cost"]).quantize(CENT)
        assert got == {**expected, "duration_count": timed}, model.__name__
    for model in (HourlyLatency, DailyLatency, HourlyDurations, DailyDurations):
        assert (model.objects.aggregate(n=Sum("executions"))["n"] or 0) == timed, model.__name__
    used = HourlyLatency.objects.aggregate(n=Sum("model_executions"))["n"] or 0
    for model in (HourlyModelDurations, DailyModelDurations):
        assert (model.objects.aggregate(n=Sum("executions"))["n"] or 0) == used, model.__name__


def rebuild_days() -> None:
    """The rollups recomputed from the rows as they are (``rebuild()`` without its ``model_spend``
    refresh)."""
    for day in sql_rollups.days_with_rows(connection):
        with transaction.atomic():
            sql_rollups.rebuild_day(connection, day)


def assert_exact(*, spend_current: bool = True) -> None:
    """The rollups equal what ``rebuilds.rebuild()`` makes of the rows. ``spend_current``: every
    root's ``model_spend`` is what its spans say (``recompute_model_spend`` changes nothing); False
    where a test edited the totals of rows that have spans by hand, which ``model_spend`` follows only
    after ``rebuild_aggregates`` (then the triggers are compared to a rebuild of the rows as they are)."""
    check_totals()
    kept = snapshot()
    assert any(kept.values()), "no rollups at all"
    if spend_current:
        assert rebuilds.recompute_model_spend() == 0, "model_spend was not what the spans say"
        rebuilds.rebuild()
    else:
        rebuild_days()
    assert snapshot() == kept


# -- what writes ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def prices(db):
    """$1 per 1,000 input tokens on model-a, $2 on model-b, $4 on model-c; output is free."""
    for model, price in (("model-a", "1000"), ("model-b", "2000"), ("model-c", "4000")):
        CostConfig.objects.create(model=model, input_price_per_mtok=Decimal(price),
                                  output_price_per_mtok=Decimal("0"), effective_from="2020-01-01T00:00Z")  # fmt: skip


class AskA(Agent):
    model = "model-a"
    retry_backoff = 0
    retries = 0
    question = Param(default="q")

    def user_prompt(self):
        return self.question


class AskB(AskA):
    model = "model-b"


class AskBThenC(AskA):
    model = "model-b"
    fallback_models = ["model-c"]


class RetryA(AskA):
    retries = 2


def answer(llm, model: str, input_tokens: int = 1000) -> None:
    llm.respond("ok", model=model, input_tokens=input_tokens, output_tokens=10)


def product_work(rng: random.Random, rounds: int = 3) -> None:
    """Agent calls of every outcome, and traces with nested agents and manual llm spans."""
    with fake_llm() as llm:
        for _ in range(rounds):
            answer(llm, "model-a", rng.randint(100, 3000))
            AskA.call()
            for kind in ("rate_limit", "timeout", "auth", "invalid_request", "server_error"):
                if rng.random() < 0.6:
                    llm.fail(kind, model="model-b")
                    with contextlib.suppress(Exception):
                        AskB.call()
            llm.fail("rate_limit", model="model-a")  # a retry, then an answer
            answer(llm, "model-a")
            RetryA.call()
            llm.fail("server_error", model="model-b")  # a fallback
            answer(llm, "model-c", rng.randint(100, 3000))
            AskBThenC.call()
            llm.respond(chunks=["a", "b"], model="model-b", input_tokens=rng.randint(1, 900), output_tokens=2)
            list(AskB.stream())
            with trace("pipeline"):
                answer(llm, "model-a")
                AskA.call()
                answer(llm, "model-b")
                AskB.call()
                with span("vendor", kind="llm") as call:
                    call.record_usage(rng.randint(1, 2000), 5, model_id="model-c")
            with contextlib.suppress(ValueError), trace("failing"):
                answer(llm, "model-a")
                AskA.call()
                raise ValueError("network unreachable")
            with override_settings(LLM_AGENTS={"MULTI_TENANCY": True}), tenant("acme"):
                answer(llm, "model-b")
                AskB.call()


ERRORS = [
    ("RateLimitError", "slow down"),
    ("ProviderError", "Connection reset by peer"),
    ("ProviderError", "HTTP 429 Too Many Requests"),
    ("ProviderError", "invalid_request: 100% of max_tokens"),  # LIKE's % and _ inside
    ("ValueError", "it timed out"),
    ("ProviderError", "a_b%c"),
    ("BudgetExceededError", "over budget"),
    ("KeyError", "'x'"),
]


def host_row(rng: random.Random, now: dt.datetime, **fields) -> Execution:
    """An unsaved execution as a host writes it (no spans, no ``model_spend``), at a random minute of
    the last 6 days."""
    status = rng.choice(["success", "success", "error", "timeout", "running"])
    error_class, error_message = rng.choice(ERRORS) if status in ("error", "timeout") else ("", "")
    values = dict(
        agent_type=rng.choice(["Host", "Other"]),
        agent_version=rng.choice(["1.0", "2.0"]),
        model_id=rng.choice(["model-a", "model-b", "model-c"]),
        chosen_model_id=rng.choice(["", "model-a", "model-c"]),
        tenant_id=rng.choice([None, "acme", "globex", ""]),
        status=status,
        error_class=error_class,
        error_message=error_message,
        input_tokens=rng.randint(50, 5000),
        output_tokens=rng.randint(0, 500),
        cached_tokens=rng.randint(0, 10),
        input_cost=Decimal(rng.randint(0, 10**8)) * CENT,
        output_cost=Decimal(rng.randint(0, 10**6)) * CENT,
        duration_ms=None if status == "running" else rng.choice([0, 1, rng.randint(2, 90_000), 3_600_000]),
        cache_hit=rng.random() < 0.2,
        started_at=now - dt.timedelta(minutes=rng.randint(0, 6 * 24 * 60)),
    )
    values.update(fields)
    return ExecutionFactory.build(**values)


def save_host_rows(rng: random.Random, n: int) -> list[Execution]:
    """``n`` rows by ``Execution.objects.create`` and as many by ``bulk_create``, some nested."""
    now = timezone.now()
    version = PromptVersionFactory()
    created = [
        Execution.objects.create(
            **field_values(host_row(rng, now, prompt_version=rng.choice([None, version])))
        )
        for _ in range(n)
    ]
    batch = [host_row(rng, now, prompt_version=rng.choice([None, version])) for _ in range(n)]
    for row in batch[: n // 3]:
        row.parent = rng.choice(created)
        row.root_id = row.parent.root_id
    Execution.objects.bulk_create(batch)
    return created + batch


def field_values(row: Execution) -> dict:
    return {
        field.attname: getattr(row, field.attname)
        for field in Execution._meta.concrete_fields
        if field.attname not in ("id", "root_id")
    }


def orm_edits(rng: random.Random, *, spend_rows_too: bool) -> None:
    """``.update()`` of every key and measure the rollups keep, moves, re-parenting, deletes."""
    pick = Execution.objects.order_by("?")
    if not spend_rows_too:
        pick = pick.filter(model_spend={})
    ids = lambda n: list(pick.values_list("id", flat=True)[:n])  # noqa: E731
    Execution.objects.filter(id__in=ids(5)).update(status="error", error_class="RateLimitError")
    Execution.objects.filter(id__in=ids(3)).update(status="success", error_class="", error_message="")
    Execution.objects.filter(id__in=ids(4)).update(agent_type="Renamed", agent_version="9")
    Execution.objects.filter(id__in=ids(4)).update(tenant_id="moved")
    Execution.objects.filter(id__in=ids(3)).update(tenant_id=None)
    Execution.objects.filter(id__in=ids(4)).update(total_cost=Decimal("1.23456789"), total_tokens=77)
    Execution.objects.filter(id__in=ids(4)).update(duration_ms=rng.randint(0, 10**6))
    Execution.objects.filter(id__in=ids(2)).update(duration_ms=None)
    Execution.objects.filter(id__in=ids(3)).update(model_id="model-c", chosen_model_id="model-b")
    Execution.objects.filter(id__in=ids(3)).update(
        started_at=timezone.now() - dt.timedelta(days=3, minutes=7)
    )
    # A root becomes nested, a nested row becomes a root.
    parent = Execution.objects.filter(parent__isnull=True).first()
    Execution.objects.filter(id__in=ids(2), parent__isnull=True).exclude(pk=parent.pk).update(parent=parent)
    Execution.objects.filter(id__in=list(Execution.objects.filter(parent__isnull=False).values_list("id", flat=True)[:2])).update(parent=None)  # fmt: skip
    Execution.objects.filter(id__in=ids(4)).delete()


def raw_sql_writes(rng: random.Random) -> None:
    """INSERT (a copy of a row under a new id, and a nested one), UPDATE and DELETE by hand."""
    columns = [field.column for field in Execution._meta.concrete_fields]
    pk = Execution._meta.pk
    started_at = Execution._meta.get_field("started_at")
    source = Execution.objects.filter(parent__isnull=True).order_by("?").first()
    with connection.cursor() as cursor:
        for nested in (False, True):
            new = pk.get_db_prep_value(uuid.uuid4(), connection)
            root = pk.get_db_prep_value(source.pk, connection) if nested else new
            selected = []
            params: list = []
            for column in columns:
                if column in ("id", "root_id", "parent_id", "started_at"):
                    selected.append("%s")
                    value = {
                        "id": new,
                        "root_id": root,
                        "parent_id": root if nested else None,
                        "started_at": started_at.get_db_prep_value(
                            timezone.now() - dt.timedelta(hours=rng.randint(1, 100), minutes=13), connection
                        ),
                    }[column]
                    params.append(value)
                else:
                    selected.append(column)
            cursor.execute(
                f"INSERT INTO llm_agents_execution ({', '.join(columns)}) SELECT {', '.join(selected)} "
                "FROM llm_agents_execution WHERE id = %s",
                [*params, pk.get_db_prep_value(source.pk, connection)],
            )
        victims = [pk.get_db_prep_value(v, connection) for v in Execution.objects.order_by("?").values_list("id", flat=True)[:6]]  # fmt: skip
        cursor.execute(
            "UPDATE llm_agents_execution SET total_cost = total_cost * 2, status = 'timeout', "
            "duration_ms = 1234, tenant_id = 'raw' WHERE id IN (%s, %s, %s)",
            victims[:3],
        )
        cursor.execute(
            "UPDATE llm_agents_execution SET started_at = %s, error_message = 'dns failure' WHERE id = %s",
            [
                started_at.get_db_prep_value(timezone.now() - dt.timedelta(days=2, minutes=59), connection),
                victims[3],
            ],
        )
        leaves = (
            Execution.objects.filter(children__isnull=True).order_by("?").values_list("id", flat=True)[:2]
        )
        cursor.execute(
            "DELETE FROM llm_agents_execution WHERE id IN (%s, %s)",
            [pk.get_db_prep_value(leaf, connection) for leaf in leaves],
        )


# -- the tests --------------------------------------------------------------------------------------


def test_what_the_product_records_is_rolled_up_exactly():
    product_work(random.Random(1))
    assert Execution.objects.filter(parent__isnull=False).exists()
    assert Execution.objects.filter(status="error").exists()
    assert Execution.objects.filter(streaming=True).exists()
    assert Execution.objects.exclude(chosen_model_id="").exclude(chosen_model_id="model-b").filter(model_id="model-b").exists()  # fmt: skip
    assert_exact()


def test_rows_written_by_the_orm_are_rolled_up_exactly():
    rng = random.Random(2)
    save_host_rows(rng, 12)
    assert_exact()
    orm_edits(rng, spend_rows_too=False)
    assert_exact()


def test_orm_edits_of_recorded_executions_are_rolled_up_exactly():
    rng = random.Random(3)
    product_work(rng, rounds=1)
    save_host_rows(rng, 6)
    orm_edits(rng, spend_rows_too=True)
    # Totals edited by hand on rows with spans: model_spend follows after rebuild_aggregates only.
    assert_exact(spend_current=False)


def test_raw_sql_writes_are_rolled_up_exactly():
    rng = random.Random(4)
    product_work(rng, rounds=1)
    save_host_rows(rng, 6)
    raw_sql_writes(rng)
    assert_exact(spend_current=False)


@pytest.mark.skipif(not POSTGRES, reason="COPY is PostgreSQL's")
def test_rows_copied_in_on_postgresql_are_rolled_up_exactly():
    rng = random.Random(5)
    save_host_rows(rng, 6)
    columns = [field.column for field in Execution._meta.concrete_fields]

    def copy_text(value: object) -> str:
        """A value in COPY's text format."""
        if value is None:
            return "\\N"
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, dict | list):
            value = json.dumps(value)
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        text = str(value)
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM llm_agents_execution WHERE parent_id IS NULL")
        sources = cursor.fetchall()
        lines = []
        for source in sources * 2:
            row = dict(zip(columns, source, strict=True))
            row["id"] = row["root_id"] = uuid.uuid4()
            row["started_at"] = timezone.now() - dt.timedelta(minutes=rng.randint(0, 5000))
            row["agent_type"] = "Copied"
            lines.append("\t".join(copy_text(value) for value in row.values()) + "\n")
        statement = f"COPY llm_agents_execution ({', '.join(columns)}) FROM STDIN"
        driver_cursor = cursor.cursor
        if hasattr(driver_cursor, "copy"):  # psycopg 3
            with driver_cursor.copy(statement) as copy:
                copy.write("".join(lines))
        else:  # psycopg 2
            driver_cursor.copy_expert(statement, io.StringIO("".join(lines)))
    assert Execution.objects.filter(agent_type="Copied").count() == 2 * len(sources)
    assert_exact()


def test_recompute_costs_after_a_price_change_keeps_the_rollups_exact():
    rng = random.Random(6)
    product_work(rng, rounds=1)
    save_host_rows(rng, 6)
    before = Execution.objects.root_executions().aggregate(total=Sum("total_cost"))["total"]
    CostConfig.objects.filter(model="model-a").update(input_price_per_mtok=Decimal("3000"))
    CostConfig.objects.filter(model="model-c").update(input_price_per_mtok=Decimal("500"))
    from llm_agents.pricing import clear_cost_config_cache

    clear_cost_config_cache()
    since = (local_today() - dt.timedelta(days=7)).isoformat()
    call_command("recompute_costs", since=since, verbosity=0, stdout=StringIO())
    total = Execution.objects.root_executions().aggregate(total=Sum("total_cost"))["total"]
    assert total != before
    with override_settings(LLM_AGENTS={"ROLLUPS": False}):
        assert sum(row["total_cost"] for row in Execution.objects.cost_by_model("30d")) == total
    assert_exact()


def test_retention_keeps_the_rollups_exact():
    rng = random.Random(7)
    now = timezone.now()
    old = [
        host_row(rng, now, started_at=now - dt.timedelta(days=40, minutes=rng.randint(0, 5000)))
        for _ in range(8)
    ]
    Execution.objects.bulk_create(old)
    product_work(rng, rounds=1)
    save_host_rows(rng, 4)
    call_command("purge_executions", days=30, verbosity=0, stdout=StringIO())
    assert not Execution.objects.filter(started_at__lt=now - dt.timedelta(days=30)).exists()
    assert (
        not DailyRollup.objects.filter(start__lt=now - dt.timedelta(days=31)).exclude(executions=0).exists()
    )
    assert_exact()


def test_a_random_mix_of_writes_is_rolled_up_exactly():
    rng = random.Random(17)
    steps = [
        lambda: product_work(rng, rounds=1),
        lambda: save_host_rows(rng, rng.randint(1, 6)),
        lambda: orm_edits(rng, spend_rows_too=False),
        lambda: raw_sql_writes(rng),
        lambda: Execution.objects.filter(
            pk__in=list(Execution.objects.order_by("?").values_list("id", flat=True)[:3])
        ).delete(),  # fmt: skip
    ]
    save_host_rows(rng, 6)
    for _ in range(12):
        rng.choice(steps)()
    # Raw SQL doubled the totals of recorded rows: their model_spend follows after a rebuild only.
    assert_exact(spend_current=False)


@pytest.mark.skipif(not POSTGRES, reason="TRUNCATE triggers are PostgreSQL's")
def test_truncating_the_executions_empties_the_rollups():
    save_host_rows(random.Random(8), 6)
    assert HourlyRollup.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's own writes: no pending FK checks
        cursor.execute("TRUNCATE llm_agents_execution CASCADE")
    assert [model.objects.count() for model, _, _ in TABLES] == [0] * len(TABLES)


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_executions_and_their_rollups():
    """Django's flush (run after every transactional test) truncates every table in one statement,
    the rollups' own included."""
    save_host_rows(random.Random(11), 4)
    assert HourlyRollup.objects.exists()
    call_command("flush", interactive=False, verbosity=0)
    assert not Execution.objects.exists()
    assert [model.objects.count() for model, _, _ in TABLES] == [0] * len(TABLES)


# -- rebuild_aggregates -----------------------------------------------------------------------------


def test_rebuild_aggregates_reports_each_day_and_changes_nothing_that_did_not_drift():
    rng = random.Random(9)
    product_work(rng, rounds=1)
    save_host_rows(rng, 10)
    kept = snapshot()
    days = sql_rollups.days_with_rows(connection)
    assert len(days) > 2
    out = StringIO()
    call_command("rebuild_aggregates", verbosity=2, stdout=out)
    output = out.getvalue()
    for done, day in enumerate(days, start=1):
        assert f"rollups of {day} (UTC) rebuilt, {done}/{len(days)}" in output
    assert f"Rebuilt the rollups of {len(days)} days." in output
    assert snapshot() == kept


def test_rebuild_aggregates_repairs_a_rollup_table_emptied_by_hand():
    rng = random.Random(10)
    product_work(rng, rounds=1)
    save_host_rows(rng, 10)
    kept = snapshot()
    HourlyRollup.objects.all().delete()
    DailyLatency.objects.filter(pk__in=DailyLatency.objects.values("pk")[:3]).delete()
    DailyRollup.objects.update(executions=0)
    assert snapshot() != kept
    call_command("rebuild_aggregates", verbosity=0)
    assert snapshot() == kept
    check_totals()


# -- spend by model ---------------------------------------------------------------------------------


def test_a_recorded_execution_carries_its_llm_spans_spend_by_model():
    with fake_llm() as llm:
        with trace("pipeline") as pipeline:
            answer(llm, "model-a")
            AskA.call()  # $1 on model-a
            answer(llm, "model-b")
            AskB.call()  # $2 on model-b
            llm.fail("server_error", model="model-b")  # spends nothing
            answer(llm, "model-c")
            AskBThenC.call()  # $4 on model-c
            with span("vendor", kind="llm") as call:
                call.record_usage(500, 0, model_id="model-c")  # $2 on model-c
        llm.fail("server_error", model="model-b")
        answer(llm, "model-c")
        fallback = AskBThenC.call().execution
    root = pipeline.execution
    assert root.model_spend == {
        "model-a": ["1.00000000", 1010],
        "model-b": ["2.00000000", 1010],
        "model-c": ["6.00000000", 1510],
    }
    fallback.refresh_from_db()
    assert fallback.model_spend == {"model-c": ["4.00000000", 1010]}
    # What rebuild_aggregates computes from the spans is what was recorded.
    assert rebuilds.recompute_model_spend() == 0
    spent = (
        DailyRollup.objects.values("model_used").annotate(c=Sum("model_cost")).values_list("model_used", "c")
    )
    by_model = {model: cost for model, cost in spent if cost}
    assert by_model == {"model-a": Decimal("1"), "model-b": Decimal("2"), "model-c": Decimal("10")}
    assert_exact()


def test_spans_a_host_adds_by_orm_count_only_after_rebuild_aggregates():
    root = ExecutionFactory(model_id="model-a", input_cost=Decimal("5"), output_cost=0, total_tokens=100)
    SpanFactory(execution=root, model_id="model-c", total_cost=Decimal("3"), input_tokens=60, output_tokens=0)
    root.refresh_from_db()
    assert root.model_spend == {}

    def spend() -> dict:
        rows = DailyRollup.objects.values("model_used").annotate(c=Sum("model_cost"), t=Sum("model_tokens"))
        return {row["model_used"]: (row["c"], row["t"]) for row in rows if row["c"] or row["t"]}

    assert spend() == {"model-a": (Decimal("5"), 100)}
    call_command("rebuild_aggregates", verbosity=0)
    root.refresh_from_db()
    assert root.model_spend == {"model-c": ["3.00000000", 60], "model-a": ["2.00000000", 40]}
    assert spend() == {"model-a": (Decimal("2"), 40), "model-c": (Decimal("3"), 60)}
    assert_exact()


# -- migration 0011 ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_0011_fills_model_spend_and_the_rollups_of_existing_executions():
    try:
        call_command("migrate", "llm_agents", "0010", verbosity=0)
        state = MigrationExecutor(connection).loader.project_state(("llm_agents", "0010_llm_span_index"))
        OldExecution = state.apps.get_model("llm_agents", "Execution")
        OldSpan = state.apps.get_model("llm_agents", "Span")
        now = timezone.now()

        def execution(**fields):
            fields.setdefault("started_at", now)
            fields.setdefault("status", "success")
            row = OldExecution(agent_type=fields.pop("agent_type", "a"), **fields)
            row.root_id = fields["parent"].root_id if fields.get("parent") else row.id
            row.save()
            return row

        def llm_span(on, model, cost, tokens):
            OldSpan.objects.create(execution=on, name="llm", kind="llm", model_id=model, total_cost=Decimal(cost),
                                   input_tokens=tokens, output_tokens=0, started_at=on.started_at)  # fmt: skip

        traced = execution(agent_type="pipeline", kind="trace", model_id="", total_cost=Decimal("7"),
                           total_tokens=700, duration_ms=1500)  # fmt: skip
        nested = execution(parent=traced, model_id="model-a", total_cost=Decimal("3"), total_tokens=300)
        llm_span(nested, "model-a", "3", 300)
        llm_span(traced, "model-c", "4", 400)
        fallback = execution(model_id="model-b", chosen_model_id="model-c", total_cost=Decimal("2"),
                             total_tokens=20, duration_ms=300, started_at=now - dt.timedelta(days=2, hours=5))  # fmt: skip
        llm_span(fallback, "model-b", "0", 0)
        llm_span(fallback, "model-c", "2", 20)
        plain = execution(model_id="model-a", total_cost=Decimal("1"), total_tokens=10, duration_ms=90,
                          status="error", error_class="RateLimitError", started_at=now - dt.timedelta(days=9))  # fmt: skip
        call_command("migrate", "llm_agents", "0011", verbosity=0)

        spends = dict(Execution.objects.values_list("id", "model_spend"))
        assert spends[traced.id] == {"model-a": ["3.00000000", 300], "model-c": ["4.00000000", 400]}
        assert spends[fallback.id] == {"model-c": ["2.00000000", 20]}
        assert spends[plain.id] == {}
        assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 3
        # Durations (0012) and totals (0015, 0016) from the rollups.
        call_command("migrate", "llm_agents", verbosity=0)
        kept = snapshot()
        check_totals()
        rebuilds.rebuild()
        assert snapshot() == kept
    finally:
        call_command("migrate", "llm_agents", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_migration_0012_back_and_forth_keeps_writes_working_and_durations_exact():
    ExecutionFactory(duration_ms=1200)
    try:
        call_command("migrate", "llm_agents", "0011", verbosity=0)
        assert sql_rollups.DAILY_DURATIONS not in connection.introspection.table_names()
        write_while_migrated_back(duration_ms=450)  # the triggers no longer keep the dropped tables
        assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 2
        call_command("migrate", "llm_agents", verbosity=0)
        assert DailyDurations.objects.aggregate(n=Sum("executions"))["n"] == 2
        ExecutionFactory(duration_ms=80)
        kept = snapshot()
        check_totals()
        rebuild_days()
        assert snapshot() == kept
    finally:
        call_command("migrate", "llm_agents", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_migration_0014_leaves_running_executions_out_of_the_rollups_and_back_in():
    ExecutionFactory(duration_ms=700)
    running = ExecutionFactory(status=Execution.Status.RUNNING, duration_ms=None, total_tokens=50)
    assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 1  # the running one is not there
    try:
        call_command("migrate", "llm_agents", "0013", verbosity=0)
        # As before 0014: running executions are in, and a finish moves their contribution.
        assert DailyRollup.objects.aggregate(n=Sum("executions"), t=Sum("total_tokens"))["n"] == 2
        Execution.objects.filter(pk=running.pk).update(status=Execution.Status.SUCCESS, duration_ms=900)
        write_while_migrated_back(status=Execution.Status.RUNNING, duration_ms=None)
        assert DailyRollup.objects.filter(status="running").aggregate(n=Sum("executions"))["n"] == 1
        assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 3
        call_command("migrate", "llm_agents", verbosity=0)
        assert not DailyRollup.objects.filter(status="running").exists()
        assert not HourlyRollup.objects.filter(status="running").exists()
        assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 2
        kept = snapshot()
        check_totals()
        rebuild_days()
        assert snapshot() == kept
    finally:
        call_command("migrate", "llm_agents", verbosity=0)


def test_a_trace_reaches_the_rollups_when_it_finishes():
    with fake_llm() as llm, trace("pipeline"):
        answer(llm, "model-a")
        AskA.call()
        # While the trace runs, its running row is written but not in the rollups.
        assert Execution.objects.filter(parent__isnull=True, status=Execution.Status.RUNNING).count() == 1
        assert not DailyRollup.objects.exists()
        assert Execution.objects.last_30_days().summary()["total"] == 1
    assert DailyRollup.objects.aggregate(n=Sum("executions"))["n"] == 1
    check_totals()


@pytest.mark.django_db(transaction=True)
def test_migrations_0015_and_0016_fill_the_totals_from_the_rollups():
    ExecutionFactory(duration_ms=1200, tenant_id="acme")
    ExecutionFactory(duration_ms=300, agent_version="2.0", started_at=timezone.now() - dt.timedelta(days=3))
    try:
        call_command("migrate", "llm_agents", "0014", verbosity=0)
        assert sql_rollups.DAILY_TOTALS not in connection.introspection.table_names()
        assert sql_rollups.HOURLY_TOTALS not in connection.introspection.table_names()
        write_while_migrated_back(duration_ms=450, status="error", error_class="RateLimitError")
        call_command("migrate", "llm_agents", verbosity=0)
        assert DailyTotals.objects.aggregate(n=Sum("executions"))["n"] == 3
        assert HourlyTotals.objects.aggregate(n=Sum("executions"))["n"] == 3
        ExecutionFactory(duration_ms=80)
        kept = snapshot()
        check_totals()
        rebuild_days()
        assert snapshot() == kept
    finally:
        call_command("migrate", "llm_agents", verbosity=0)
