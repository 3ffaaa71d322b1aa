"""The executions list and the execution page: columns, filters, read-only rules, the span tree and
everything else an execution holds, in a bounded number of queries."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import connection
from django.forms import CheckboxInput
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.text import capfirst

from llm_agents.admin.executions import PAYLOAD_PREVIEW_CHARS
from llm_agents.models import Execution
from llm_agents.models.pagination import LargeTablePaginator

from .factories import ExecutionFactory, PromptVersionFactory, SpanFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:llm_agents_execution_changelist"


def change_url(execution: Execution) -> str:
    return reverse("admin:llm_agents_execution_change", args=[execution.pk])


def queries_for(client, url: str, params: dict | None = None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
        assert response.status_code == 200
    return len(captured)


@pytest.fixture
def staff_viewer(client, django_user_model):
    """A staff user (not a superuser) allowed to view executions."""
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_execution"), Permission.objects.get(codename="delete_execution")
    )
    client.force_login(user)
    return client


# -- the list ---------------------------------------------------------------------------------------


def test_list_columns(staff_client):
    ExecutionFactory(
        agent_type="InvoiceAgent",
        model_id="gpt-4o",
        chosen_model_id="gpt-4o-mini",
        status="timeout",
        input_tokens=1000,
        output_tokens=234,
        input_cost=Decimal("0.0123"),
        output_cost=Decimal("0"),
        duration_ms=12_500,
    )
    response = staff_client.get(reverse(CHANGELIST))
    html = response.content.decode()
    for header in ("Agent", "Model", "Status", "Tokens", "Cost", "Duration", "Started at"):
        assert f">{header}<" in html or f">{header}</a>" in html, header
    assert "InvoiceAgent" in html
    assert 'class="llm-status llm-status-timeout"' in html
    assert "→ gpt-4o-mini" in html
    assert "1234" in html
    assert "$0.0123" in html
    assert "12.5 s" in html
    assert "llm_agents/admin.css" in html


def test_list_rows_have_the_checkbox_django_renders_for_actions(staff_client):
    execution = ExecutionFactory()
    html = staff_client.get(reverse(CHANGELIST)).content.decode()
    django_checkbox = CheckboxInput(
        {"class": "action-select", "aria-label": f"Select this object for an action - {execution}"},
        lambda value: False,
    ).render(ACTION_CHECKBOX_NAME, str(execution.pk))
    assert django_checkbox in html
    assert '<input type="checkbox" id="action-toggle"' in html


def test_list_is_ordered_newest_first_and_sortable(staff_client):
    old = ExecutionFactory(started_at=timezone.now() - dt.timedelta(days=1), input_cost=Decimal("1"))
    new = ExecutionFactory(input_cost=Decimal("0"))
    response = staff_client.get(reverse(CHANGELIST))
    assert [e.pk for e in response.context["cl"].result_list] == [new.pk, old.pk]
    cost_column = response.context["cl"].list_display.index("cost")
    response = staff_client.get(reverse(CHANGELIST), {"o": f"-{cost_column}"})
    assert [e.pk for e in response.context["cl"].result_list] == [old.pk, new.pk]


def test_list_has_date_hierarchy_and_search(staff_client):
    ExecutionFactory(agent_type="InvoiceAgent", error_message="quota exceeded")
    ExecutionFactory(agent_type="SearchAgent")
    response = staff_client.get(reverse(CHANGELIST), {"q": "quota"})
    assert [e.agent_type for e in response.context["cl"].result_list] == ["InvoiceAgent"]
    today = timezone.localdate()
    response = staff_client.get(
        reverse(CHANGELIST),
        {"started_at__year": today.year, "started_at__month": today.month, "started_at__day": today.day},
    )
    assert response.context["cl"].result_count == 2
    assert 'class="toplinks"' in response.content.decode()


@pytest.fixture
def mixed():
    root = ExecutionFactory(agent_type="Planner", status="error", error_class="RateLimitError")
    return {
        "root": root,
        "child": ExecutionFactory(agent_type="Helper", parent=root),
        "timeout": ExecutionFactory(agent_type="Planner", status="timeout"),
        "auth": ExecutionFactory(
            agent_type="Planner", status="error", error_message="Invalid API key: unauthorized"
        ),
        "ok": ExecutionFactory(agent_type="Planner", kind="trace"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"root": "yes"}, {"root", "timeout", "auth", "ok"}),
        ({"root": "no"}, {"child"}),
        ({"error_category": "rate_limit"}, {"root"}),
        ({"error_category": "timeout"}, {"timeout"}),
        ({"error_category": "authentication"}, {"auth"}),
        ({"kind__exact": "trace"}, {"ok"}),
        ({"status__in": "error,timeout"}, {"root", "timeout", "auth"}),
    ],
)
def test_extra_filters(staff_client, mixed, query, expected):
    response = staff_client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200
    assert {e.pk for e in response.context["cl"].result_list} == {mixed[name].pk for name in expected}


def test_list_offers_the_filters_of_the_spec(staff_client):
    response = staff_client.get(reverse(CHANGELIST))
    titles = {str(spec.title) for spec in response.context["cl"].filter_specs}
    assert {
        "status",
        "agent type",
        "model id",
        "tenant id",
        "started at",
        "streaming",
        "cache hit",
        "fallback",
    } <= titles
    assert {"nesting", "error category", "kind"} <= titles


def test_value_filters_offer_every_value_of_their_column(staff_client):
    """The agent, model and tenant filters list each distinct value once, in order, with an empty
    choice for rows without one (on PostgreSQL read by skipping through each column's index)."""
    for agent_type, model_id, tenant_id in [("b", "m2", "acme"), ("a", "m1", None), ("b", "", "acme"),
                                            ("c", "m1", ""), ("a", "m2", "globex")]:  # fmt: skip
        parent = ExecutionFactory(agent_type=agent_type, model_id=model_id, tenant_id=tenant_id)
    ExecutionFactory(agent_type="nested", model_id="m3", parent=parent)  # nested executions are listed too
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(reverse(CHANGELIST))
    skips = sum("WITH RECURSIVE" in query["sql"] for query in captured)
    assert skips == (3 if connection.vendor == "postgresql" else 0)
    choices = {
        str(spec.title): [choice["display"] for choice in spec.choices(response.context["cl"])][
            1:
        ]  # after "All"
        for spec in response.context["cl"].filter_specs
        if str(spec.title) in ("agent type", "model id", "tenant id")
    }
    assert choices == {
        "agent type": ["a", "b", "c", "nested"],
        "model id": ["", "m1", "m2", "m3"],
        "tenant id": ["", "acme", "globex", "-"],  # "-": the admin's empty value
    }
    tenant = next(spec for spec in response.context["cl"].filter_specs if str(spec.title) == "tenant id")
    assert list(tenant.lookup_choices) == list(
        Execution.objects.order_by("tenant_id").values_list("tenant_id", flat=True).distinct()
    )


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"started_at__year": "2025"},
        {"started_at__year": "2026", "started_at__month": "1"},
        {"status__exact": "error"},
    ],
)
def test_the_date_hierarchy_offers_the_periods_that_hold_executions(staff_client, settings, query):
    """Years, months and days in TIME_ZONE, as Django's own ``datetimes()`` gives them (on PostgreSQL
    found by probing the started_at index), within the list's filters."""
    from django.contrib.admin.templatetags.admin_list import date_hierarchy

    settings.TIME_ZONE = "America/New_York"
    moments = [
        "2025-03-10T12:00Z",
        "2025-12-31T23:30Z",
        "2026-01-01T03:00Z",
        "2026-01-20T12:00Z",
        "2026-04-02T12:00Z",
    ]
    for number, moment in enumerate(moments):
        ExecutionFactory(started_at=dt.datetime.fromisoformat(moment.replace("Z", "+00:00")),
                         status="error" if number % 2 else "success")  # fmt: skip
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(reverse(CHANGELIST), query)
    hierarchy = date_hierarchy(response.context["cl"])
    shown = [choice["title"] for choice in hierarchy["choices"]]
    listed = Execution.objects.filter(
        **{
            key.replace("__exact", ""): int(value) if value.isdigit() else value
            for key, value in query.items()
        }
    )
    kind = "day" if "started_at__month" in query else "month" if "started_at__year" in query else "year"
    expected = list(listed.datetimes("started_at", kind))  # Django's own SELECT DISTINCT
    formats = {"year": "Y", "month": "YEAR_MONTH_FORMAT", "day": "MONTH_DAY_FORMAT"}
    assert shown == [capfirst(date_format(timezone.localtime(moment), formats[kind])) for moment in expected]
    assert (
        shown
        == {
            (): ["2025", "2026"],  # 2026-01-01T03:00Z is still 2025 in New York
            ("started_at__year",): ["March 2025", "December 2025"],
            ("started_at__year", "started_at__month"): ["January 20"],
            ("status__exact",): ["2025", "2026"],
        }[tuple(query)]
    )
    probed = any("generate_series" in entry["sql"] for entry in captured)
    assert probed == (connection.vendor == "postgresql")


def test_list_queries_do_not_grow_with_the_data(staff_client):
    for n in range(5):
        ExecutionFactory(agent_type=f"Agent{n}", model_id=f"m{n}", tenant_id=f"t{n}")
    few = queries_for(staff_client, reverse(CHANGELIST))
    for n in range(45):
        ExecutionFactory(agent_type=f"Agent{n % 5}", model_id=f"m{n % 5}", tenant_id=f"t{n % 5}")
    assert queries_for(staff_client, reverse(CHANGELIST)) == few
    assert few <= 12


def test_list_does_not_load_the_heavy_fields(staff_client):
    ExecutionFactory(response="x" * 10_000)
    with CaptureQueriesContext(connection) as captured:
        staff_client.get(reverse(CHANGELIST))
    listing = [q["sql"] for q in captured if "LIMIT" in q["sql"] and '"response"' not in q["sql"]]
    assert listing, "the list query selects the response text"


# -- permissions ------------------------------------------------------------------------------------


def test_nobody_adds_or_changes(staff_client):
    execution = ExecutionFactory()
    assert staff_client.get(reverse("admin:llm_agents_execution_add")).status_code == 403
    page = staff_client.get(change_url(execution))
    assert page.context["has_change_permission"] is False
    assert page.context["has_add_permission"] is False


def test_superusers_delete_through_the_action(staff_client):
    kept, gone = ExecutionFactory(), ExecutionFactory()
    SpanFactory(execution=gone)
    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [gone.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(Execution.objects.values_list("pk", flat=True)) == [kept.pk]


def test_other_staff_cannot_delete_even_with_the_permission(staff_viewer):
    execution = ExecutionFactory()
    response = staff_viewer.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    response = staff_viewer.post(
        reverse("admin:llm_agents_execution_delete", args=[execution.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert Execution.objects.exists()


@pytest.mark.parametrize("name", ["changelist", "change", "dashboard", "span_changelist"])
def test_anonymous_is_redirected(client, name):
    execution = ExecutionFactory()
    url = {
        "changelist": reverse(CHANGELIST),
        "change": change_url(execution),
        "dashboard": reverse("admin:llm_agents_dashboard"),
        "span_changelist": reverse("admin:llm_agents_span_changelist"),
    }[name]
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_viewer_sees_the_pages(staff_viewer):
    execution = ExecutionFactory()
    SpanFactory(execution=execution)
    for url in (reverse(CHANGELIST), change_url(execution), reverse("admin:llm_agents_dashboard")):
        assert staff_viewer.get(url).status_code == 200, url


def test_unknown_execution_redirects_to_the_list(staff_client):
    response = staff_client.get(reverse("admin:llm_agents_execution_change", args=["not-a-uuid"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:index"))


# -- the execution page -----------------------------------------------------------------------------


@pytest.fixture
def traced():
    """An agent run that fell back, called a tool, used a prompt version and ran a nested agent."""
    start = timezone.now() - dt.timedelta(minutes=5)
    version = PromptVersionFactory(prompt__slug="invoice-reminder")
    execution = ExecutionFactory(
        agent_type="InvoiceAgent",
        agent_version="2.1",
        model_id="gpt-4o",
        chosen_model_id="claude-sonnet-4",
        provider="anthropic",
        input_tokens=2000,
        cached_tokens=500,
        output_tokens=300,
        input_cost=Decimal("0.004"),
        output_cost=Decimal("0.0045"),
        duration_ms=4000,
        time_to_first_token_ms=640,
        started_at=start,
        parameters={"customer": "ACME", "api_key": "[REDACTED]"},
        metadata={"invoice_id": 42},
        attempts=[
            {"model_id": "gpt-4o", "status": "error", "error_class": "RateLimitError",
             "error_message": "Rate limit reached", "duration_ms": 120, "input_tokens": 0,
             "output_tokens": 0, "started_at": start.isoformat()},
            {"model_id": "claude-sonnet-4", "status": "success", "error_class": "", "error_message": "",
             "duration_ms": 3800, "input_tokens": 2000, "output_tokens": 300, "started_at": start.isoformat()},
        ],
        attempts_count=2,
        fallback_chain=["gpt-4o", "claude-sonnet-4"],
        fallback_reason="RateLimitError",
        tool_calls=[{"id": "call_1", "name": "lookup_invoice", "arguments": {"number": "INV-7"},
                     "result": {"amount": "120.00", "due": "2024-06-01"}}],
        tool_calls_count=1,
        prompt_version=version,
        response="Dear ACME, your invoice INV-7 is due.",
    )  # fmt: skip
    llm = SpanFactory(
        execution=execution,
        name="anthropic.messages",
        started_at=start + dt.timedelta(milliseconds=100),
        input=[{"role": "user", "content": "Remind ACME about INV-7"}],
        output={"text": "x" * (PAYLOAD_PREVIEW_CHARS + 500)},
        duration_ms=3800,
    )
    tool = SpanFactory(
        execution=execution,
        parent=llm,
        name="lookup_invoice",
        kind="tool",
        status="error",
        error_class="KeyError",
        error_message="'INV-8'",
        started_at=start + dt.timedelta(milliseconds=900),
        input={"number": "INV-7"},
        output={"amount": "120.00"},
        duration_ms=40,
    )
    child = ExecutionFactory(
        agent_type="SummaryAgent", parent=execution, started_at=start + dt.timedelta(seconds=1)
    )
    return {"execution": execution, "llm": llm, "tool": tool, "child": child, "version": version}


def test_page_header(staff_client, traced):
    html = staff_client.get(change_url(traced["execution"])).content.decode()
    header = html[html.index('id="execution-header"') : html.index('id="span-tree"')]
    assert "llm-status-success" in header
    assert "InvoiceAgent" in header and "v2.1" in header
    assert "claude-sonnet-4" in header and "configured gpt-4o" in header
    assert "2000 in" in header and "300 out" in header and "500 cached" in header
    assert "$0.008500" in header
    assert "4000 ms" in header
    assert "640 ms" in header


def test_span_tree_is_nested_and_collapsible(staff_client, traced):
    html = staff_client.get(change_url(traced["execution"])).content.decode()
    tree = html[html.index('id="span-tree"') : html.index('id="attempts"')]
    llm_at = tree.index(f'data-span="{traced["llm"].pk}"')
    tool_at = tree.index(f'data-span="{traced["tool"].pk}"')
    assert llm_at < tool_at
    # the tool span sits in a list nested inside the llm span's item
    assert '<ul class="llm-spans">' in tree[llm_at:tool_at]
    assert tree.count('<details class="llm-span"') == 2
    assert "KeyError" in tree and "llm-status-error" in tree


def test_span_bars_stay_on_the_timeline(staff_client):
    """A span placed after the execution's end (clock skew between processes) is drawn at the edge."""
    started = timezone.now() - dt.timedelta(hours=1)
    execution = ExecutionFactory(started_at=started, duration_ms=1000)
    SpanFactory(execution=execution, started_at=started + dt.timedelta(milliseconds=250), duration_ms=500)
    SpanFactory(execution=execution, started_at=started + dt.timedelta(minutes=30), duration_ms=900)
    html = staff_client.get(change_url(execution)).content.decode()
    bars = re.findall(r'style="left: ([\d.]+)%; width: ([\d.]+)%"', html)
    assert [(float(left), float(width)) for left, width in bars] == [(25.0, 50.0), (99.5, 0.5)]


def test_span_payloads_are_pretty_printed_and_long_ones_truncated(staff_client, traced):
    html = staff_client.get(change_url(traced["execution"])).content.decode()
    assert "&quot;role&quot;: &quot;user&quot;" in html
    assert "{\n  &quot;number&quot;: &quot;INV-7&quot;\n}" in html
    size = len('{\n  "text": ""\n}') + PAYLOAD_PREVIEW_CHARS + 500
    assert f"Show all ({size} characters)" in html
    assert "x" * (PAYLOAD_PREVIEW_CHARS + 500) in html  # inside the "show all" details


def test_attempts_fallback_and_tool_calls(staff_client, traced):
    html = staff_client.get(change_url(traced["execution"])).content.decode()
    attempts = html[html.index('id="attempts"') : html.index('id="tool-calls"')]
    assert "<code>gpt-4o</code> → <code>claude-sonnet-4</code>" in attempts
    assert "RateLimitError" in attempts and "3800 ms" in attempts
    tools = html[html.index('id="tool-calls"') : html.index('id="prompts"')]
    assert "lookup_invoice" in tools and "call_1" in tools and "2024-06-01" in tools


def test_prompt_version_parent_children_parameters_metadata(staff_client, traced):
    html = staff_client.get(change_url(traced["execution"])).content.decode()
    version = traced["version"]
    assert reverse("admin:llm_agents_prompt_version", args=[version.prompt_id, version.number]) in html
    assert f"invoice-reminder v{version.number}" in html
    assert change_url(traced["child"]) in html
    assert "&quot;api_key&quot;: &quot;[REDACTED]&quot;" in html
    assert "&quot;invoice_id&quot;: 42" in html
    assert "your invoice INV-7 is due" in html
    child_page = staff_client.get(change_url(traced["child"])).content.decode()
    assert change_url(traced["execution"]) in child_page


def test_page_queries_do_not_grow_with_spans_or_children(staff_client):
    execution = ExecutionFactory()
    parent = None
    for n in range(5):
        parent = SpanFactory(execution=execution, parent=parent if n % 2 else None, name=f"s{n}")
        ExecutionFactory(parent=execution)
    few = queries_for(staff_client, change_url(execution))
    for n in range(45):
        parent = SpanFactory(execution=execution, parent=parent if n % 2 else None, name=f"t{n}")
        ExecutionFactory(parent=execution)
    assert queries_for(staff_client, change_url(execution)) == few
    assert few <= 8


# -- counting at scale ------------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="planner statistics are PostgreSQL's")
def test_unfiltered_large_lists_use_the_planner_estimate(django_assert_num_queries):
    for _ in range(30):
        ExecutionFactory()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Execution._meta.db_table}")

    class SmallThreshold(LargeTablePaginator):
        estimate_above = 10

    with CaptureQueriesContext(connection) as captured:
        assert SmallThreshold(Execution.objects.all(), 50).count == 30
    assert len(captured) == 1 and "reltuples" in captured[0]["sql"]
    with CaptureQueriesContext(connection) as captured:  # filtered: counted exactly
        assert SmallThreshold(Execution.objects.filter(streaming=False), 50).count == 30
    assert "COUNT(" in captured[0]["sql"].upper()


def test_small_tables_are_counted_exactly():
    for _ in range(3):
        ExecutionFactory()
    assert LargeTablePaginator(Execution.objects.all(), 50).count == 3
