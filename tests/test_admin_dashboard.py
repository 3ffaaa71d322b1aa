"""The admin dashboard: the figures of ``analytics.overview()``, charts whose links land on the
matching filtered list, a constant number of queries, and the QuerySet methods behind it."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from llm_agents.admin.charts import (
    Bar,
    Column,
    Segment,
    axis_step,
    bar_list_chart,
    nice_ceiling,
    stacked_column_chart,
)
from llm_agents.admin.dashboard import Links, moment
from llm_agents.admin.formatting import change, format_cost, format_ms
from llm_agents.analytics import overview
from llm_agents.models import Execution
from llm_agents.periods import Period, resolve_period

from .factories import ExecutionFactory, local_datetime, local_today

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:llm_agents_dashboard"


def ago(**delta) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


def links_in(html: str, section_id: str) -> list[str]:
    """The hrefs inside the element with ``id=section_id`` (up to the next section)."""
    start = html.index(f'id="{section_id}"')
    end = html.find("<section", start + 1)
    return [unescape(href) for href in re.findall(r'href="([^"]+)"', html[start : end if end > 0 else None])]


@pytest.fixture
def traffic():
    """A week of traffic on two agents and three models, with failures, a child run, and older rows."""
    rows = []
    for hours, agent, model, status, cost, duration in [
        (1, "SearchAgent", "gpt-4o", "success", "0.010", 400),
        (2, "SearchAgent", "gpt-4o", "error", "0.000", 100),
        (5, "SearchAgent", "gpt-4o-mini", "success", "0.001", 300),
        (30, "WriterAgent", "claude-sonnet-4", "success", "0.050", 2400),
        (50, "WriterAgent", "claude-sonnet-4", "timeout", "0.000", 30000),
        (100, "WriterAgent", "gpt-4o-mini", "success", "0.002", 900),
    ]:
        rows.append(
            ExecutionFactory(
                agent_type=agent,
                model_id=model,
                status=status,
                input_cost=Decimal(cost),
                output_cost=Decimal("0"),
                duration_ms=duration,
                started_at=ago(hours=hours),
                error_class="RateLimitError" if status == "error" else "",
                error_message="Rate limit reached" if status == "error" else "",
            )
        )
    ExecutionFactory(agent_type="ToolAgent", parent=rows[0], started_at=ago(hours=1))  # nested: not counted
    ExecutionFactory(
        agent_type="SearchAgent", started_at=ago(days=9), input_cost=Decimal("0.004")
    )  # previous week
    ExecutionFactory(agent_type="SearchAgent", started_at=ago(days=200))  # outside every period
    return rows


# -- access -------------------------------------------------------------------------------------


def test_dashboard_url_name():
    assert reverse(DASHBOARD) == "/admin/llm_agents/execution/dashboard/"


@pytest.mark.parametrize("period", ["24h", "7d", "30d", "90d"])
def test_dashboard_renders_for_staff_in_every_period(staff_client, traffic, period):
    response = staff_client.get(reverse(DASHBOARD), {"period": period})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="llm-chart') == 4
    assert f'data-period="{period}" aria-current="page"' in html


def test_dashboard_renders_with_no_executions(staff_client):
    response = staff_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert "No executions in this period." in response.content.decode()


def test_unknown_period_falls_back_to_seven_days(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "forever"})
    assert response.status_code == 200
    assert response.context["period"].name == "7d"


def test_anonymous_is_redirected_to_login(client):
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_is_redirected_to_login(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="reader", password="x"))
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_execution_permission_is_refused(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="staff", password="x", is_staff=True))
    assert client.get(reverse(DASHBOARD)).status_code == 403


def test_staff_with_view_permission_sees_it(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_execution"))
    client.force_login(user)
    assert client.get(reverse(DASHBOARD)).status_code == 200


def test_linked_from_the_app_index_and_the_executions_list(staff_client):
    url = reverse(DASHBOARD)
    assert url in staff_client.get(reverse("admin:app_list", args=["llm_agents"])).content.decode()
    assert url in staff_client.get(reverse("admin:llm_agents_execution_changelist")).content.decode()


# -- the figures --------------------------------------------------------------------------------


@pytest.mark.parametrize("period", ["24h", "7d", "30d"])
def test_figures_are_those_of_overview(staff_client, traffic, period):
    response = staff_client.get(reverse(DASHBOARD), {"period": period})
    shown = response.context["overview"]
    expected = overview(Execution.objects.all(), resolve_period(period))
    assert shown == expected
    before = overview(Execution.objects.all(), resolve_period(period).previous(), forecast=False)
    assert response.context["previous"] == {**before, "period": response.context["previous"]["period"]}


def test_tiles_show_the_overview_numbers(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    tiles = {tile["key"]: tile for tile in response.context["tiles"]}
    figures = overview(Execution.objects.all(), resolve_period("7d"))
    assert figures["total_executions"] == 6
    assert tiles["total_executions"]["value"] == "6"
    assert tiles["success_rate"]["value"] == "66.67 %"
    assert tiles["total_cost"]["value"] == format_cost(figures["total_cost"]) == "$0.0630"
    assert tiles["p95_duration_ms"]["value"] == format_ms(figures["p95_duration_ms"])
    assert tiles["active_agents"]["value"] == "2"
    html = response.content.decode()
    for tile in tiles.values():
        assert tile["value"] in html


def test_change_against_the_previous_period(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    tiles = {tile["key"]: tile for tile in response.context["tiles"]}
    # 6 executions this week against 1 the week before; $0.063 against $0.00418 (0.004 + the default output cost).
    assert tiles["total_executions"]["change"] == 500.0
    assert tiles["total_executions"]["good"] is True
    assert tiles["total_cost"]["change"] == round((0.063 - 0.00418) * 100 / 0.00418, 1)
    assert tiles["total_cost"]["good"] is False  # spending more is not good news
    assert tiles["success_rate"]["change"] == round(66.67 - 100.0, 2)  # percentage points
    assert tiles["success_rate"]["change_unit"] == "pts"


def test_no_previous_data_says_so(staff_client):
    ExecutionFactory(started_at=ago(hours=1))
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    tiles = {tile["key"]: tile for tile in response.context["tiles"]}
    assert tiles["total_executions"]["change"] is None
    assert "no previous data" in response.content.decode()


def test_change():
    assert change(150, 100) == 50.0
    assert change(Decimal("0.5"), Decimal("1")) == -50.0
    assert change(3, 0) is None
    assert change(None, 4) is None


def test_chart_totals_equal_the_tiles(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    figures = response.context["overview"]
    timeline = response.context["charts"]["timeline"]
    assert sum(row["executions"] for row in timeline) == figures["total_executions"]
    assert sum(row["total_cost"] for row in timeline) == figures["total_cost"]
    assert sum(row["error"] + row["timeout"] for row in timeline) == figures["failed"]
    models = response.context["charts"]["models"]
    assert sum(row["executions"] for row in models) == figures["total_executions"]


def test_top_agents_and_recent_executions(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    agents = response.context["agents"]
    assert [row["agent_type"] for row in agents] == ["WriterAgent", "SearchAgent"]
    assert agents[0]["total"] == 3
    assert agents[1]["success_rate"] == 66.67
    recent = response.context["recent"]
    assert [row["id"] for row in recent] == [
        row.pk for row in sorted(traffic, key=lambda e: -e.started_at.timestamp())
    ]


def test_recent_errors_are_grouped_by_category(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    groups = {group["category"]: group for group in response.context["error_groups"]}
    assert set(groups) == {"rate_limit", "timeout"}
    assert groups["rate_limit"]["count"] == 1
    assert [row["id"] for row in groups["rate_limit"]["recent"]] == [traffic[1].pk]
    assert [row["id"] for row in groups["timeout"]["recent"]] == [traffic[4].pk]


# -- links into the executions list ---------------------------------------------------------


def follow(client, url):
    response = client.get(url)
    assert response.status_code == 200, url
    assert "?e=1" not in response.get("Location", "")
    return {execution.pk for execution in response.context["cl"].queryset}


def test_every_chart_link_opens_a_filtered_list(staff_client, traffic):
    html = staff_client.get(reverse(DASHBOARD), {"period": "7d"}).content.decode()
    changelist = reverse("admin:llm_agents_execution_changelist")
    for section in ("chart-cost", "chart-executions", "chart-models", "chart-latency", "top-agents"):
        urls = [url for url in links_in(html, section) if url.startswith(changelist)]
        assert urls, section
        for url in urls:
            follow(staff_client, url)


def test_model_bar_lands_on_that_models_executions(staff_client, traffic):
    html = staff_client.get(reverse(DASHBOARD), {"period": "7d"}).content.decode()
    url = next(url for url in links_in(html, "chart-models") if "model_id=claude-sonnet-4" in url)
    assert follow(staff_client, url) == {traffic[3].pk, traffic[4].pk}


def test_day_segments_land_on_that_days_executions_of_that_status(staff_client, traffic):
    response = staff_client.get(reverse(DASHBOARD), {"period": "7d"})
    html = response.content.decode()
    for url in links_in(html, "chart-executions"):
        if "status__exact=" not in url or "started_at__lt" not in url:
            continue
        shown = follow(staff_client, url)
        status = re.search(r"status__exact=(\w+)", url).group(1)
        assert shown and {Execution.objects.get(pk=pk).status for pk in shown} == {status}
    timeline = response.context["charts"]["timeline"]
    total = sum(
        len(follow(staff_client, url)) for url in links_in(html, "chart-cost") if "started_at__lt" in url
    )
    assert total == sum(row["executions"] for row in timeline) == 6


def test_agent_row_and_error_group_links(staff_client, traffic):
    html = staff_client.get(reverse(DASHBOARD), {"period": "7d"}).content.decode()
    writer = next(url for url in links_in(html, "top-agents") if "agent_type=WriterAgent" in url)
    assert follow(staff_client, writer) == {traffic[3].pk, traffic[4].pk, traffic[5].pk}
    timeout = next(url for url in links_in(html, "recent-errors") if "error_category=timeout" in url)
    assert follow(staff_client, timeout) == {traffic[4].pk}


def test_latency_bar_lists_the_slow_executions(staff_client, traffic):
    html = staff_client.get(reverse(DASHBOARD), {"period": "7d"}).content.decode()
    p50 = next(url for url in links_in(html, "chart-latency") if "duration_ms__gte" in url)
    threshold = int(re.search(r"duration_ms__gte=(\d+)", p50).group(1))
    expected = {e.pk for e in traffic if e.duration_ms >= threshold}
    assert follow(staff_client, p50) == expected


# -- queries --------------------------------------------------------------------------------------


def queries_for(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("period", ["24h", "7d"])
def test_dashboard_queries_do_not_grow_with_the_data(staff_client, period):
    url = f"{reverse(DASHBOARD)}?period={period}"
    for n in range(5):
        ExecutionFactory(
            agent_type=f"Agent{n}", model_id=f"model-{n}", started_at=ago(hours=n + 1), status="error"
        )
    few = queries_for(staff_client, url)
    for n in range(45):
        ExecutionFactory(
            agent_type=f"Agent{n % 9}", model_id=f"model-{n % 7}", started_at=ago(hours=n % 20 + 1)
        )
    assert queries_for(staff_client, url) == few
    limit = 20 if connection.vendor == "postgresql" else 32
    assert few <= limit


# -- QuerySet methods behind the dashboard -------------------------------------------------------


@pytest.fixture
def two_days(paris):
    """Two local days in Europe/Paris, hand-placed rows at known local times."""
    first = local_today() - dt.timedelta(days=3)
    second = first + dt.timedelta(days=1)
    rows = {
        "early": ExecutionFactory(started_at=local_datetime(first, 0, 30), status="success",
                                  input_cost=Decimal("0.10"), output_cost=Decimal("0")),
        "late": ExecutionFactory(started_at=local_datetime(first, 23, 59), status="error",
                                 input_cost=Decimal("0.20"), output_cost=Decimal("0")),
        "next": ExecutionFactory(started_at=local_datetime(second, 9, 15), status="timeout",
                                 input_cost=Decimal("0.40"), output_cost=Decimal("0")),
        "running": ExecutionFactory(started_at=local_datetime(second, 9, 45), status="running",
                                    input_cost=Decimal("0"), output_cost=Decimal("0")),
        "outside": ExecutionFactory(started_at=local_datetime(first, 0, 0) - dt.timedelta(seconds=1)),
    }  # fmt: skip
    ExecutionFactory(started_at=local_datetime(first, 12), parent=rows["early"])  # nested: not counted
    period = Period("custom", local_datetime(first), local_datetime(second + dt.timedelta(days=1)))
    return first, second, period, rows


def test_timeline_by_day_in_local_time(two_days):
    first, second, period, _ = two_days
    rows = Execution.objects.timeline(period)
    assert [row["start"] for row in rows] == [local_datetime(first), local_datetime(second)]
    assert [row["end"] for row in rows] == [
        local_datetime(second),
        local_datetime(second + dt.timedelta(days=1)),
    ]
    assert [
        (row["executions"], row["success"], row["error"], row["timeout"], row["running"]) for row in rows
    ] == [
        (2, 1, 1, 0, 0),
        (2, 0, 0, 1, 1),
    ]
    assert [row["total_cost"] for row in rows] == [Decimal("0.30"), Decimal("0.40")]


def test_timeline_by_hour_is_zero_filled(two_days):
    _, second, _, _ = two_days
    period = Period("custom", local_datetime(second, 8, 30), local_datetime(second, 11))
    rows = Execution.objects.timeline(period, "hour")
    assert [row["start"].hour for row in rows] == [8, 9, 10]
    assert [row["executions"] for row in rows] == [0, 2, 0]
    assert rows[1]["timeout"] == rows[1]["running"] == 1


def test_timeline_is_one_query(two_days, django_assert_num_queries):
    _, _, period, _ = two_days
    with django_assert_num_queries(1):
        Execution.objects.timeline(period)


def test_timeline_rejects_an_unknown_unit():
    with pytest.raises(ValueError, match="day, hour"):
        Execution.objects.timeline("7d", "week")


def test_summary_by_agent(django_assert_num_queries):
    ExecutionFactory(
        agent_type="A",
        status="success",
        input_cost=Decimal("1"),
        output_cost=Decimal("0"),
        duration_ms=100,
        input_tokens=10,
        output_tokens=5,
    )
    ExecutionFactory(
        agent_type="A",
        status="error",
        input_cost=Decimal("0"),
        output_cost=Decimal("0"),
        duration_ms=300,
        input_tokens=0,
        output_tokens=0,
    )
    ExecutionFactory(
        agent_type="A",
        status="timeout",
        input_cost=Decimal("0"),
        output_cost=Decimal("0"),
        duration_ms=None,
        input_tokens=0,
        output_tokens=0,
    )
    ExecutionFactory(
        agent_type="B",
        status="success",
        input_cost=Decimal("2"),
        output_cost=Decimal("0"),
        duration_ms=50,
        input_tokens=1,
        output_tokens=1,
    )
    parent = Execution.objects.filter(agent_type="B").get()
    ExecutionFactory(agent_type="A", parent=parent, input_cost=Decimal("9"))  # nested: not counted
    with django_assert_num_queries(1):
        rows = Execution.objects.summary_by("agent_type")
    assert rows == [
        {"agent_type": "B", "total": 1, "successful": 1, "failed": 0, "success_rate": 100.0,
         "total_cost": Decimal("2"), "avg_duration_ms": 50.0, "total_tokens": 2},
        {"agent_type": "A", "total": 3, "successful": 1, "failed": 2, "success_rate": 33.33,
         "total_cost": Decimal("1"), "avg_duration_ms": 200.0, "total_tokens": 15},
    ]  # fmt: skip


# -- the chart drawing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (0.7, 1), (1, 1), (1.2, 2), (2.1, 2.5), (3, 5), (7, 10), (0.0123, 0.02), (430, 500)],
)
def test_nice_ceiling(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_chart_labels_and_links_are_escaped():
    svg = bar_list_chart([Bar('<script>alert("x")</script>', 3, url='/list/?a=1&b="2"')], label="Cost & more")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert 'href="/list/?a=1&amp;b=&quot;2&quot;"' in svg
    assert 'aria-label="Cost &amp; more"' in svg


def test_stacked_columns_draw_one_linked_rect_per_non_empty_segment():
    svg = stacked_column_chart(
        [
            Column(
                "Mon", [Segment("success", 3, "/s"), Segment("error", 0, "/e"), Segment("timeout", 1, "/t")]
            )
        ],
        label="Executions",
    )
    assert svg.count('class="bar series-') == 2
    assert 'href="/s"' in svg and 'href="/t"' in svg and 'href="/e"' not in svg


@pytest.mark.parametrize(
    ("value", "whole", "step"),
    [(4.2, True, 2), (5, True, 2), (3, True, 1), (20, True, 5), (9, True, 5), (0.1, False, 0.025)],
)
def test_axis_steps_are_round(value, whole, step):
    assert axis_step(value, whole) == pytest.approx(step)


def test_count_axes_label_whole_numbers():
    svg = stacked_column_chart([Column("Mon", [Segment("success", 5)])], label="Executions", value_format=str)
    ticks = re.findall(r'class="tick"[^>]*text-anchor="end">([^<]+)<', svg)
    assert ticks == ["0.0", "2.0", "4.0", "6.0", "8.0"]


def test_links_filter_the_executions_list_to_the_period_and_what_they_count():
    period = resolve_period("7d")
    links = Links(period)

    def query(url: str) -> dict[str, list[str]]:
        parts = urlsplit(url)
        assert parts.path == reverse("admin:llm_agents_execution_changelist")
        return parse_qs(parts.query)

    within = {"root": ["yes"], "started_at__gte": [moment(period.start)]}
    assert query(links()) == within
    assert query(links(agent_type="A&B", status__in="error,timeout")) == {
        **within, "agent_type": ["A&B"], "status__in": ["error,timeout"]
    }  # fmt: skip
    assert query(links(started_at__gte="2026-01-01")) == {"root": ["yes"], "started_at__gte": ["2026-01-01"]}
    assert query(links(within_period=False, model_id="m")) == {"root": ["yes"], "model_id": ["m"]}
    start, end = ago(days=2), ago(days=1)
    day = {"root": ["yes"], "started_at__gte": [moment(start)], "started_at__lt": [moment(end)]}
    assert query(links.between(start, end)) == day
    assert query(links.between(start, end, status__exact="error")) == {**day, "status__exact": ["error"]}
    assert query(links.between(start, end, root="no")) == {**day, "root": ["no"]}
