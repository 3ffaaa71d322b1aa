"""The admin's "Export CSV": the executions list as filtered (every page) and the dashboard's period,
streamed with the columns and formula neutralisation of the API's export/."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from llm_agents.api.export import EXPORT_FIELDS
from tests.api_support import API, TENANCY, body
from tests.factories import ExecutionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:llm_agents_execution_changelist")
EXPORT = reverse("admin:llm_agents_execution_export")
DASHBOARD = reverse("admin:llm_agents_dashboard")


def exported(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="executions.csv"' == response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(body(response).decode(), newline="")))


def test_the_list_links_to_the_export_of_its_filters(staff_client):
    html = staff_client.get(CHANGELIST, {"status__exact": "error", "q": "quota"}).content.decode()
    assert f'href="{EXPORT}?q=quota&amp;status__exact=error"' in html


def test_the_export_holds_every_row_the_filtered_list_shows_on_all_pages(staff_client):
    now = timezone.now()
    failed = [
        ExecutionFactory(
            status="error", error_message="quota exceeded", started_at=now - dt.timedelta(minutes=n)
        )
        for n in range(60)
    ]  # more than the list's 50 a page
    ExecutionFactory(status="error", error_message="network down")
    ExecutionFactory(status="success", error_message="quota exceeded")
    params = {"status__exact": "error", "q": "quota", "p": "2"}
    shown = staff_client.get(CHANGELIST, params).context["cl"]
    assert shown.result_count == 60 and len(shown.result_list) == 10  # the second page
    rows = exported(staff_client.get(EXPORT, params))
    assert [row["id"] for row in rows] == [str(execution.pk) for execution in failed]  # the list's order
    assert list(rows[0]) == EXPORT_FIELDS


def test_the_export_is_the_api_export_byte_for_byte(staff_client):
    ExecutionFactory(agent_type="=HYPERLINK(1)", error_message="@SUM(A1)", total_cost="0.00036000")
    ExecutionFactory(agent_type="plain")
    admin_csv = body(staff_client.get(EXPORT))
    assert admin_csv == body(staff_client.get(API + "export/"))
    rows = exported(staff_client.get(EXPORT))
    assert {row["agent_type"] for row in rows} == {"'=HYPERLINK(1)", "plain"}


def test_the_dashboard_exports_its_period(staff_client):
    now = timezone.now()
    recent = ExecutionFactory(started_at=now - dt.timedelta(days=2))
    ExecutionFactory(parent=recent, started_at=now - dt.timedelta(days=2))  # nested: not counted there
    ExecutionFactory(started_at=now - dt.timedelta(days=20))
    for period, expected in (("7d", {recent.pk}), ("30d", None)):
        response = staff_client.get(DASHBOARD, {"period": period})
        link = response.context["export_url"]
        assert (
            link.startswith(EXPORT + "?")
            and f'href="{link.replace("&", "&amp;")}"' in response.content.decode()
        )
        rows = exported(staff_client.get(link))
        assert len(rows) == response.context["overview"]["total_executions"]
        if expected is not None:
            assert {row["id"] for row in rows} == {str(pk) for pk in expected}


def test_a_bad_filter_is_a_400(staff_client):
    response = staff_client.get(EXPORT, {"no_such_field": "1"})
    assert response.status_code == 400
    assert "no_such_field" in response.content.decode()


def test_staff_only(client, django_user_model):
    ExecutionFactory()
    assert client.get(EXPORT).status_code == 302  # to the login
    user = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(EXPORT).status_code == 403  # staff without the view permission
    user.user_permissions.add(Permission.objects.get(codename="view_execution"))
    assert len(exported(client.get(EXPORT))) == 1


@override_settings(LLM_AGENTS=TENANCY)
def test_a_tenant_exports_its_own_executions_only(staff_client):
    acme = ExecutionFactory(tenant_id="acme")
    ExecutionFactory(tenant_id="globex")
    rows = exported(staff_client.get(EXPORT, headers={"X-Tenant": "acme"}))
    assert [row["id"] for row in rows] == [str(acme.pk)]
