from __future__ import annotations

import threading

import pytest
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection

from llm_agents.errors import PromptError
from llm_agents.models import Execution, Prompt, PromptVersion
from llm_agents.prompts.rendering import render, variable_names
from llm_agents.signals import prompt_version_created
from tests.factories import ExecutionFactory

MESSAGES = [
    {"role": "system", "content": "You analyze {{app_name}}."},
    {"role": "user", "content": "Analyze {{strategy}}."},
]


@pytest.fixture(autouse=True)
def clear_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def prompt(db):
    return Prompt.objects.create(slug="strategy-analysis", name="Strategy Analysis")


def make_prompt(slug, content, role="system"):
    prompt = Prompt.objects.create(slug=slug, name=slug.title())
    prompt.update_content([{"role": role, "content": content}])
    return prompt


# -- versions --------------------------------------------------------------------------------------


def test_update_content_creates_numbered_versions(prompt):
    first = prompt.update_content(
        messages=MESSAGES,
        model="claude-sonnet-4",
        model_params={"temperature": 0.3, "max_tokens": 2048},
        changelog="first",
    )
    assert (first.number, first.changelog, first.source) == (1, "first", "api")
    second = prompt.update_content([{"role": "system", "content": "Shorter."}], changelog="second")
    assert second.number == 2
    assert second.model == "claude-sonnet-4"  # kept from the current version when not given
    assert second.model_params == {"temperature": 0.3, "max_tokens": 2048}
    assert prompt.current_version == second
    assert prompt.version(1) == first
    assert list(prompt.versions.values_list("number", flat=True)) == [2, 1]


def test_update_content_with_identical_content_returns_the_current_version(prompt):
    first = prompt.update_content(MESSAGES, model="gpt-4o", model_params={"temperature": 0})
    again = prompt.update_content(MESSAGES, model="gpt-4o", model_params={"temperature": 0}, changelog="x")
    assert again == first
    assert prompt.versions.count() == 1
    changed = prompt.update_content(MESSAGES, model="gpt-4o", model_params={"temperature": 0.5})
    assert changed.number == 2
    assert prompt.update_content(MESSAGES, model="gpt-4o-mini").number == 3


def test_versions_are_immutable(prompt):
    version = prompt.update_content(MESSAGES)
    version.changelog = "edited"
    with pytest.raises(ValidationError):
        version.save()
    with pytest.raises(ValidationError):
        PromptVersion.objects.filter(pk=version.pk).update(changelog="edited")
    version.refresh_from_db()
    assert version.changelog == ""


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "wizard", "content": "x"}],
        [{"role": "user", "content": 3}],
        ["just text"],
        [{"role": "user", "content": "{{#open}} never closed"}],
    ],
)
def test_update_content_rejects_invalid_messages(prompt, messages):
    with pytest.raises(ValidationError):
        prompt.update_content(messages)
    assert not prompt.versions.exists()


def test_model_params_may_not_override_model_or_messages(prompt):
    with pytest.raises(ValidationError, match="model"):
        prompt.update_content(MESSAGES, model_params={"model": "other"})


def test_version_that_does_not_exist_raises_prompt_error(prompt):
    prompt.update_content(MESSAGES)
    with pytest.raises(PromptError, match="no version 7"):
        prompt.version(7)
    with pytest.raises(PromptError, match="no version 7"):
        prompt.build(version=7, app_name="a", strategy="b")


def test_rollback_creates_a_new_version_from_the_old_one(prompt):
    prompt.update_content(MESSAGES, model="gpt-4o", model_params={"temperature": 0.1})
    prompt.update_content([{"role": "system", "content": "Other."}], model="gpt-4.1", model_params={})
    rolled = prompt.rollback_to(1)
    assert rolled.number == 3
    assert rolled.source == PromptVersion.Source.ROLLBACK
    assert rolled.changelog == "Rollback to version 1"
    assert (rolled.messages, rolled.model, rolled.model_params) == (MESSAGES, "gpt-4o", {"temperature": 0.1})
    assert prompt.current_version == rolled
    # rolling back to the content already current creates nothing
    assert prompt.rollback_to(1) == rolled
    with pytest.raises(PromptError):
        prompt.rollback_to(42)


def test_prompt_version_created_is_sent_after_commit(prompt, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    prompt_version_created.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            version = prompt.update_content(MESSAGES)
            assert received == []
        assert len(callbacks) == 1
        assert received[0]["prompt"] == prompt
        assert received[0]["version"] == version
        with django_capture_on_commit_callbacks(execute=True):
            prompt.update_content(MESSAGES)  # unchanged: no version, no signal
        assert len(received) == 1
    finally:
        prompt_version_created.disconnect(receiver)


def test_a_failing_receiver_is_logged_and_does_not_break_the_call(
    prompt, django_capture_on_commit_callbacks, caplog
):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    prompt_version_created.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            version = prompt.update_content(MESSAGES)
    finally:
        prompt_version_created.disconnect(broken)
    assert version.number == 1
    assert "receiver bug" in caplog.text


# -- loading and building --------------------------------------------------------------------------


def test_build_returns_model_messages_and_params(prompt):
    prompt.update_content(
        messages=MESSAGES, model="claude-sonnet-4", model_params={"temperature": 0.3, "max_tokens": 2048}
    )
    built = Prompt.load("strategy-analysis").build(app_name="Tradebot", strategy="Momentum")
    assert built == {
        "model": "claude-sonnet-4",
        "messages": [
            {"role": "system", "content": "You analyze Tradebot."},
            {"role": "user", "content": "Analyze Momentum."},
        ],
        "temperature": 0.3,
        "max_tokens": 2048,
    }
    assert built.prompt_version == prompt.current_version


def test_build_an_older_version(prompt):
    prompt.update_content([{"role": "system", "content": "v1 {{x}}"}])
    prompt.update_content([{"role": "system", "content": "v2 {{x}}"}])
    assert prompt.build(x="!")["messages"][0]["content"] == "v2 !"
    built = prompt.build(version=1, x="!")
    assert built["messages"][0]["content"] == "v1 !"
    assert built.prompt_version.number == 1


def test_build_without_a_version_raises(prompt):
    with pytest.raises(PromptError, match="no version"):
        prompt.build()


def test_load_unknown_slug_raises(db):
    with pytest.raises(PromptError, match="nope"):
        Prompt.load("nope")


def test_load_is_cached_and_invalidated_when_a_version_is_created(
    prompt, django_assert_num_queries, django_capture_on_commit_callbacks
):
    prompt.update_content([{"role": "system", "content": "one"}])
    Prompt.load(prompt.slug)
    with django_assert_num_queries(0):
        loaded = Prompt.load(prompt.slug)
        assert loaded.current_version.number == 1
        assert loaded.build()["messages"][0]["content"] == "one"
    with django_capture_on_commit_callbacks(execute=True):
        prompt.update_content([{"role": "system", "content": "two"}])
    assert Prompt.load(prompt.slug).build()["messages"][0]["content"] == "two"
    prompt.name = "Renamed"
    prompt.save()
    assert Prompt.load(prompt.slug).name == "Renamed"


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        ("{{#items}}- {{name}}\n{{/items}}", {"items": [{"name": "a"}, {"name": "b"}]}, "- a\n- b\n"),
        ("{{#show}}shown{{/show}}{{^show}}hidden{{/show}}", {"show": True}, "shown"),
        ("{{#show}}shown{{/show}}{{^show}}hidden{{/show}}", {"show": False}, "hidden"),
        ("{{#show}}shown{{/show}}{{^show}}hidden{{/show}}", {}, "hidden"),
        ("{{^tips}}No tips.{{/tips}}", {"tips": []}, "No tips."),
        (
            "{{#user}}{{name}} from {{city}}{{/user}}",
            {"user": {"name": "Ann"}, "city": "Oslo"},
            "Ann from Oslo",
        ),
        ("{{user.address.city}}", {"user": {"address": {"city": "Oslo"}}}, "Oslo"),
        ("{{! a comment }}x{{=<% %>=}}<% y %>", {"y": "!"}, "x!"),
        ("<{{html}}> {{{html}}} {{&html}}", {"html": "<b>&\"'"}, "<<b>&\"'> <b>&\"' <b>&\"'"),
        ("[{{value}}]", {"value": None}, "[]"),
        ("{{count}}", {"count": 0}, "0"),
    ],
)
def test_build_renders_mustache_without_escaping(prompt, template, variables, expected):
    prompt.update_content([{"role": "user", "content": template}])
    assert prompt.build(**variables)["messages"][0]["content"] == expected


def test_every_list_item_renders_even_falsy_ones_and_iterables_loop():
    template = "{{#items}}[{{.}}]{{/items}}"
    assert render(template, {"items": [0, 1, "", None, False]}) == "[0][1][][][False]"
    assert render(template, {"items": (n for n in range(3))}) == "[0][1][2]"
    assert render(template, {"items": {"b"}}) == "[b]"
    assert render("{{#items}}{{title}};{{/items}}", {"items": [{}, {}], "title": "t"}) == "t;t;"


def test_objects_are_read_through_attributes():
    class User:
        name = "Ann"

        class address:
            city = "Oslo"

    assert render("{{user.name}} {{user.address.city}}", {"user": User()}) == "Ann Oslo"
    assert render("{{#user}}{{name}}/{{address.city}}{{/user}}", {"user": User()}) == "Ann/Oslo"


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        ("Hello {{name}}", "name"),
        ("Hello {{{name}}}", "name"),
        ("{{#user}}{{nickname}}{{/user}}", "nickname"),
        ("{{user.nickname}}", "user.nickname"),
        ("{{#show}}{{detail}}{{/show}}", "detail"),
    ],
)
def test_a_missing_variable_raises_naming_it(prompt, template, missing):
    prompt.update_content([{"role": "user", "content": template}])
    with pytest.raises(PromptError, match=f"'{missing}'") as caught:
        prompt.build(user={"name": "Ann"}, show=True)
    assert caught.value.variable == missing
    assert "strategy-analysis" in str(caught.value)


def test_sections_may_test_absent_keys_and_none_counts_as_supplied(prompt):
    prompt.update_content([{"role": "user", "content": "{{#extra}}{{detail}}{{/extra}}[{{note}}]"}])
    assert prompt.build(note=None)["messages"][0]["content"] == "[]"


def test_partials_include_other_prompts_current_content(prompt):
    tone = Prompt.objects.create(slug="tone", name="Tone")
    tone.update_content(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Speak to {{audience}}."}]
    )
    prompt.update_content([{"role": "system", "content": "Analyze.\n{{> tone}}"}])
    built = prompt.build(audience="traders")
    assert built["messages"][0]["content"] == "Analyze.\nBe brief.\n\nSpeak to traders."
    tone.update_content([{"role": "system", "content": "Be thorough."}])
    assert Prompt.load(prompt.slug).build()["messages"][0]["content"] == "Analyze.\nBe thorough."


def test_nested_partials(prompt):
    make_prompt("inner", "inner {{x}}")
    make_prompt("middle", "middle {{> inner}}")
    prompt.update_content([{"role": "system", "content": "top {{> middle}}"}])
    assert prompt.build(x=1)["messages"][0]["content"] == "top middle inner 1"


def test_missing_partial_raises_naming_it(prompt):
    prompt.update_content([{"role": "system", "content": "{{> ghost}}"}])
    with pytest.raises(PromptError, match="'ghost'"):
        prompt.build()


@pytest.mark.parametrize(
    "setup",
    [
        {"strategy-analysis": "{{> strategy-analysis}}"},
        {"strategy-analysis": "{{> a}}", "a": "{{> b}}", "b": "{{> a}}"},
        {"strategy-analysis": "{{> a}}", "a": "{{#x}}{{> strategy-analysis}}{{/x}}"},
    ],
)
def test_partial_cycles_raise(prompt, setup):
    for slug, content in setup.items():
        if slug != prompt.slug:
            make_prompt(slug, content)
    prompt.update_content([{"role": "system", "content": setup[prompt.slug]}])
    with pytest.raises(PromptError, match="cycle"):
        prompt.build(x=False)


def test_variable_names():
    assert variable_names("{{a}} {{#b}}{{c.d}}{{/b}} {{^e}}{{/e}} {{> p}} {{.}}") == ["a", "b", "c", "e"]


def test_tag_filter(db):
    Prompt.objects.create(slug="a", name="A", tags=["support", "en"])
    Prompt.objects.create(slug="b", name="B", tags=["sales"])
    Prompt.objects.create(slug="c", name="C", tags=["support-old"])
    assert list(Prompt.objects.with_tag("support").values_list("slug", flat=True)) == ["a"]
    assert Prompt.objects.all_tags() == ["en", "sales", "support", "support-old"]


# -- analytics per prompt version ------------------------------------------------------------------


def test_by_prompt_version(prompt, django_assert_num_queries):
    v1 = prompt.update_content([{"role": "system", "content": "one"}])
    v2 = prompt.update_content([{"role": "system", "content": "two"}])
    ExecutionFactory(prompt_version=v1, status="success", total_cost="0.010", duration_ms=100)
    ExecutionFactory(prompt_version=v1, status="error", total_cost="0.030", duration_ms=300)
    ExecutionFactory(prompt_version=v2, status="success", total_cost="0.002", duration_ms=50)
    ExecutionFactory(prompt_version=None, status="success")
    # One query on PostgreSQL; elsewhere two more for the latency percentiles.
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 4):  # then the score means
        rows = Execution.objects.by_prompt_version()
    assert [(row["prompt"], row["version"]) for row in rows] == [
        ("strategy-analysis", 1),
        ("strategy-analysis", 2),
    ]
    first, second = rows
    assert first["prompt_version"] == v1.pk
    assert first["executions"] == 2
    assert first["success_rate"] == 50.0
    assert float(first["avg_cost"]) == pytest.approx(0.02)
    assert first["avg_duration_ms"] == 200.0
    assert (second["executions"], second["success_rate"]) == (1, 100.0)
    assert Execution.objects.filter(status="error").by_prompt_version()[0]["executions"] == 1


# -- concurrency -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs row locks (PostgreSQL)")
def test_concurrent_updates_number_versions_without_gaps_or_duplicates():
    prompt = Prompt.objects.create(slug="busy", name="Busy")
    errors = []
    barrier = threading.Barrier(6)

    def write(index):
        try:
            barrier.wait()
            Prompt.objects.get(pk=prompt.pk).update_content([{"role": "system", "content": f"text {index}"}])
        except Exception as error:  # noqa: BLE001
            errors.append(error)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=write, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(prompt.versions.values_list("number", flat=True)) == [1, 2, 3, 4, 5, 6]
