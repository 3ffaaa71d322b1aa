from __future__ import annotations

import pytest
from django.core.cache import caches
from django.urls import reverse

from llm_agents.models import Prompt, PromptVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clear_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def prompt(db):
    prompt = Prompt.objects.create(slug="greeting", name="Greeting", tags=["support", "en"])
    prompt.update_content(
        [{"role": "system", "content": "Be kind.\nGreet {{name}}."}, {"role": "user", "content": "Hi"}],
        model="gpt-4o-mini",
        model_params={"temperature": 0.1},
        changelog="first",
    )
    prompt.update_content(
        [{"role": "system", "content": "Be brief.\nGreet {{name}}."}],
        model="gpt-4.1",
        model_params={"temperature": 0.1},
        changelog="shorter",
    )
    return prompt


def url(name, *args):
    return reverse(f"admin:llm_agents_prompt_{name}", args=args)


def test_changelist_shows_current_version_and_filters_by_tag(staff_client, prompt):
    Prompt.objects.create(slug="other", name="Other", tags=["sales"])
    response = staff_client.get(url("changelist"))
    assert response.status_code == 200
    rows = {row.slug: row.current_number for row in response.context["cl"].result_list}
    assert rows == {"greeting": 2, "other": None}
    filtered = staff_client.get(url("changelist"), {"tag": "sales"})
    assert [row.slug for row in filtered.context["cl"].result_list] == ["other"]
    assert "support" in filtered.content.decode()  # the tag appears among the filter choices


def test_change_page_shows_version_history(staff_client, prompt):
    response = staff_client.get(url("change", prompt.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Version history" in html
    assert "shorter" in html and "first" in html
    assert url("rollback", prompt.pk, 1) in html
    assert url("preview", prompt.pk) in html
    form = response.context["adminform"].form
    assert form.initial["content_0"] == "Be brief.\nGreet {{name}}."
    assert form.initial["model"] == "gpt-4.1"
    assert "content_1" in form.fields  # an empty row to add a message


def edit_data(prompt, **overrides):
    data = {
        "name": prompt.name,
        "slug": prompt.slug,
        "description": prompt.description,
        "tags": ", ".join(prompt.tags),
        "model": "gpt-4.1",
        "model_params": '{"temperature": 0.1}',
        "role_0": "system",
        "content_0": "Be brief.\r\nGreet {{name}}.",
        "role_1": "user",
        "content_1": "",
        "changelog": "",
    }
    data.update(overrides)
    return data


def test_saving_unchanged_content_creates_no_version(staff_client, prompt):
    response = staff_client.post(url("change", prompt.pk), edit_data(prompt, name="Renamed"))
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert prompt.name == "Renamed"
    assert prompt.versions.count() == 2


def test_saving_changed_content_creates_an_admin_version(staff_client, prompt):
    data = edit_data(prompt, content_1="Hello {{name}}", changelog="added a user message", tags="a, b")
    response = staff_client.post(url("change", prompt.pk), data)
    assert response.status_code == 302
    prompt.refresh_from_db()
    version = prompt.current_version
    assert (version.number, version.source, version.changelog) == (3, "admin", "added a user message")
    assert version.messages == [
        {"role": "system", "content": "Be brief.\nGreet {{name}}."},
        {"role": "user", "content": "Hello {{name}}"},
    ]
    assert prompt.tags == ["a", "b"]


def test_invalid_content_is_refused(staff_client, prompt):
    response = staff_client.post(url("change", prompt.pk), edit_data(prompt, content_0="{{#x}} open"))
    assert response.status_code == 200
    assert "Invalid Mustache" in response.content.decode()
    response = staff_client.post(url("change", prompt.pk), edit_data(prompt, model_params="[1]"))
    assert response.status_code == 200
    assert prompt.versions.count() == 2


def test_adding_a_prompt_creates_version_one(staff_client):
    data = {
        "name": "New",
        "slug": "new",
        "description": "",
        "tags": "",
        "model": "",
        "model_params": "",
        "role_0": "system",
        "content_0": "Hello",
        "role_1": "user",
        "content_1": "",
        "changelog": "created in admin",
    }
    response = staff_client.post(url("add"), data)
    assert response.status_code == 302
    version = Prompt.objects.get(slug="new").current_version
    assert (version.number, version.source, version.messages) == (
        1,
        "admin",
        [{"role": "system", "content": "Hello"}],
    )


def test_version_page(staff_client, prompt):
    response = staff_client.get(url("version", prompt.pk, 1))
    assert response.status_code == 200
    assert "Be kind." in response.content.decode()
    assert staff_client.get(url("version", prompt.pk, 9)).status_code == 404


def test_diff_between_two_versions(staff_client, prompt):
    response = staff_client.get(url("diff", prompt.pk), {"old": 1, "new": 2})
    assert response.status_code == 200
    diff = response.context["diff"]
    first, second = diff.messages
    assert [(line.kind, line.text) for line in first.lines if line.kind in ("added", "removed")] == [
        ("removed", "-Be kind."),
        ("added", "+Be brief."),
    ]
    assert second.status == "removed"
    assert diff.model == ("gpt-4o-mini", "gpt-4.1")
    assert diff.model_params == []
    html = response.content.decode()
    assert "-Be kind." in html and "+Be brief." in html
    # default: previous against current
    assert staff_client.get(url("diff", prompt.pk)).context["old"].number == 1
    assert staff_client.get(url("diff", prompt.pk), {"old": 1, "new": 7}).status_code == 404


def test_rollback_asks_then_creates_a_version(staff_client, prompt):
    confirm = staff_client.get(url("rollback", prompt.pk, 1))
    assert confirm.status_code == 200
    assert prompt.versions.count() == 2
    response = staff_client.post(url("rollback", prompt.pk, 1))
    assert response.status_code == 302
    assert response["Location"] == url("change", prompt.pk)
    current = prompt.current_version
    assert (current.number, current.source) == (3, PromptVersion.Source.ROLLBACK)
    assert current.messages == prompt.version(1).messages


def test_preview_renders_with_typed_variables(staff_client, prompt):
    form = staff_client.get(url("preview", prompt.pk))
    assert form.status_code == 200
    assert "var_name" in form.context["form"].fields
    response = staff_client.post(url("preview", prompt.pk), {"version": 2, "var_name": "<Ann>"})
    assert response.status_code == 200
    assert response.context["built"]["messages"][0]["content"] == "Be brief.\nGreet <Ann>."
    older = staff_client.post(url("preview", prompt.pk), {"version": 1, "var_name": "Bo"})
    assert older.context["built"]["messages"][0]["content"] == "Be kind.\nGreet Bo."


def test_preview_with_json_variables_and_errors(staff_client, prompt):
    prompt.update_content([{"role": "user", "content": "{{#items}}{{label}};{{/items}}{{> missing}}"}])
    response = staff_client.post(url("preview", prompt.pk), {"version": 3})
    assert "Missing partial &#x27;missing&#x27;" in response.content.decode()
    prompt.update_content([{"role": "user", "content": "{{#items}}{{label}};{{/items}}"}])
    response = staff_client.post(
        url("preview", prompt.pk),
        {"version": 4, "json_variables": '{"items": [{"label": "a"}, {"label": "b"}]}'},
    )
    assert response.context["built"]["messages"][0]["content"] == "a;b;"
    response = staff_client.post(url("preview", prompt.pk), {"version": 4, "var_items": "x", "var_label": ""})
    assert "Missing variable &#x27;label&#x27;" in response.content.decode()
    response = staff_client.post(
        url("preview", prompt.pk), {"version": 4, "json_variables": '{"items": true, "label": ""}'}
    )
    assert response.context["built"]["messages"][0]["content"] == ";"


@pytest.mark.parametrize("name", ["changelist", "change", "version", "diff", "rollback", "preview"])
def test_anonymous_users_are_redirected_to_login(client, prompt, name):
    args = {"changelist": (), "version": (prompt.pk, 1), "rollback": (prompt.pk, 1)}.get(name, (prompt.pk,))
    response = client.get(url(name, *args))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
    assert client.post(url("rollback", prompt.pk, 1)).status_code == 302
    assert prompt.versions.count() == 2


def test_staff_without_permissions_are_refused(client, django_user_model, prompt):
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(url("diff", prompt.pk)).status_code == 403
    assert client.post(url("rollback", prompt.pk, 1)).status_code == 403
    assert prompt.versions.count() == 2
