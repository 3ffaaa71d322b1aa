from __future__ import annotations

import os
import textwrap
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from llm_agents.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from llm_agents.signals import prompt_label_moved, prompt_version_created

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clear_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    return folder


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def sync(folder, *args, verbosity=1):
    out = StringIO()
    call_command("sync_prompts", "--path", str(folder), *args, stdout=out, verbosity=verbosity)
    return out.getvalue()


def summary(output: str) -> str:
    return [line for line in output.splitlines() if line.startswith("created ")][-1]


SIMPLE = """
    ---
    slug: greeting
    name: Greeting
    description: Says hello.
    tags: [demo]
    model: gpt-4o-mini
    model_params:
      temperature: 0.2
    ---

    Greet {{name}} warmly.

"""


def test_first_sync_creates_prompts_with_a_system_message(source):
    write(source, "greeting.md", SIMPLE)
    output = sync(source)
    assert summary(output) == "created 1, updated 0, unchanged 0"
    prompt = Prompt.objects.get(slug="greeting")
    assert (prompt.name, prompt.description, prompt.tags) == ("Greeting", "Says hello.", ["demo"])
    version = prompt.current_version
    assert version.number == 1
    assert version.source == PromptVersion.Source.SYNC
    assert version.messages == [{"role": "system", "content": "Greet {{name}} warmly."}]
    assert (version.model, version.model_params) == ("gpt-4o-mini", {"temperature": 0.2})


def test_second_sync_is_unchanged(source):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    assert summary(sync(source)) == "created 0, updated 0, unchanged 1"
    assert PromptVersion.objects.count() == 1


def test_changed_content_creates_a_new_version(source):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", SIMPLE.replace("warmly", "briefly"))
    assert summary(sync(source)) == "created 0, updated 1, unchanged 0"
    prompt = Prompt.objects.get(slug="greeting")
    assert prompt.current_version.number == 2
    assert prompt.current_version.messages[0]["content"] == "Greet {{name}} briefly."


@pytest.mark.parametrize(
    ("old", "new"),
    [("temperature: 0.2", "temperature: 0.7"), ("model: gpt-4o-mini", "model: gpt-4.1")],
)
def test_model_or_params_change_creates_a_version(source, old, new):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", SIMPLE.replace(old, new))
    assert summary(sync(source)) == "created 0, updated 1, unchanged 0"
    assert PromptVersion.objects.count() == 2


def test_details_change_updates_the_prompt_without_a_version(source):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", SIMPLE.replace("name: Greeting", "name: Hello").replace("[demo]", "[x]"))
    assert summary(sync(source)) == "created 0, updated 1, unchanged 0"
    prompt = Prompt.objects.get(slug="greeting")
    assert (prompt.name, prompt.tags) == ("Hello", ["x"])
    assert PromptVersion.objects.count() == 1


def test_a_mixed_run_sends_prompt_version_created_for_each_new_version_after_commit(
    source, django_capture_on_commit_callbacks
):
    for slug in ("same", "content", "details"):
        write(source, f"{slug}.md", SIMPLE.replace("greeting", slug))
    sync(source)
    assert Prompt.load("content").current_version.number == 1  # now cached
    write(source, "content.md", SIMPLE.replace("greeting", "content").replace("warmly", "briefly"))
    write(source, "details.md", SIMPLE.replace("greeting", "details").replace("Says hello.", "Hi."))
    write(source, "new.md", SIMPLE.replace("greeting", "new"))
    received = []

    def receiver(sender, prompt, version, **kwargs):
        received.append((prompt.slug, version.number, version.pk is not None))

    prompt_version_created.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            output = sync(source)
            assert received == []
    finally:
        prompt_version_created.disconnect(receiver)
    assert summary(output) == "created 1, updated 2, unchanged 1"
    assert sorted(received) == [("content", 2, True), ("new", 1, True)]
    assert Prompt.load("content").current_version.messages[0]["content"] == "Greet {{name}} briefly."
    assert Prompt.objects.get(slug="details").description == "Hi."
    numbers = dict(PromptVersion.objects.values_list("prompt__slug", "number").order_by("number"))
    assert numbers == {"same": 1, "content": 2, "details": 1, "new": 1}


def test_multi_message_prompt_with_body_file(source):
    write(
        source,
        "support/answer.md",
        """
        ---
        slug: answer
        name: Answer
        messages:
          - role: system
            content: |
              You answer support questions for {{product}}.
          - role: user
            body_file: answer.user.txt
          - role: assistant
            body_file: ../shared/examples.md
        ---
        """,
    )
    write(source, "support/answer.user.txt", "\n\n  Question: {{question}}\n\n")
    write(source, "shared/examples.md", "Example answer.\n")
    output = sync(source)
    assert summary(output) == "created 1, updated 0, unchanged 0"
    prompt = Prompt.objects.get(slug="answer")
    assert prompt.current_version.messages == [
        {"role": "system", "content": "You answer support questions for {{product}}."},
        {"role": "user", "content": "Question: {{question}}"},
        {"role": "assistant", "content": "Example answer."},
    ]
    assert prompt.tags == ["support"]
    built = prompt.build(product="Acme", question="Why?")
    assert built["messages"][1]["content"] == "Question: Why?"


def test_subfolder_name_is_added_as_a_tag_and_root_files_are_read(source):
    write(source, "root.md", SIMPLE.replace("greeting", "root"))
    write(source, "sales/pitch.md", SIMPLE.replace("greeting", "pitch"))
    write(source, "sales/deep/nested.md", SIMPLE.replace("greeting", "nested"))
    write(source, "support/help.md", SIMPLE.replace("greeting", "help").replace("[demo]", "[demo, support]"))
    assert summary(sync(source)) == "created 4, updated 0, unchanged 0"
    tags = dict(Prompt.objects.values_list("slug", "tags"))
    assert tags == {
        "root": ["demo"],
        "pitch": ["demo", "sales"],
        "nested": ["demo", "sales"],
        "help": ["demo", "support"],
    }


def test_prompt_subfolders_setting_limits_the_folders_read(source):
    write(source, "root.md", SIMPLE.replace("greeting", "root"))
    write(source, "sales/pitch.md", SIMPLE.replace("greeting", "pitch"))
    write(source, "drafts/draft.md", "not even front matter")
    with override_settings(LLM_AGENTS={"PROMPTS_SOURCE_PATH": str(source), "PROMPT_SUBFOLDERS": ["sales"]}):
        out = StringIO()
        call_command("sync_prompts", stdout=out)
    assert summary(out.getvalue()) == "created 2, updated 0, unchanged 0"
    assert set(Prompt.objects.values_list("slug", flat=True)) == {"root", "pitch"}


def test_dry_run_writes_nothing(source):
    write(source, "greeting.md", SIMPLE)
    write(source, "other.md", SIMPLE.replace("greeting", "other"))
    sync(source)
    write(source, "greeting.md", SIMPLE.replace("warmly", "briefly"))
    write(source, "new.md", SIMPLE.replace("greeting", "new"))
    output = sync(source, "--dry-run")
    assert summary(output) == "created 1, updated 1, unchanged 1"
    assert "Dry run: nothing was written." in output
    assert "created: new (new.md)" in output
    assert not Prompt.objects.filter(slug="new").exists()
    assert PromptVersion.objects.count() == 2


def test_verbosity(source):
    write(source, "greeting.md", SIMPLE)
    assert sync(source, verbosity=0) == ""
    assert "unchanged: greeting" in sync(source, verbosity=2)
    assert "unchanged: greeting" not in sync(source, verbosity=1)


def test_progress_is_shown_for_large_folders(source):
    for index in range(250):
        write(source, f"p{index:03}.md", SIMPLE.replace("greeting", f"p{index:03}"))
    output = sync(source)
    assert "Validated 250/250 files" in output
    assert "Synced 250/250 prompts" in output
    assert summary(output) == "created 250, updated 0, unchanged 0"


def test_partials_between_synced_prompts(source):
    write(source, "tone.md", "---\nslug: tone\nname: Tone\n---\nBe brief.\n")
    write(source, "main.md", "---\nslug: main\nname: Main\n---\nHelp {{who}}. {{> tone}}\n")
    sync(source)
    assert Prompt.load("main").build(who="me")["messages"][0]["content"] == "Help me. Be brief."


# -- invalid files ---------------------------------------------------------------------------------

INVALID = {
    "no front matter": ("bad.md", "Just text.\n", "no YAML front matter"),
    "unclosed front matter": ("bad.md", "---\nslug: x\nname: X\n", "not closed"),
    "yaml syntax": (
        "bad.md",
        "---\nslug: x\nname: X\ntags: [a, b\n---\nBody\n",
        "invalid YAML front matter at line",
    ),
    "not a mapping": ("bad.md", "---\n- a\n- b\n---\nBody\n", "must be a YAML mapping"),
    "missing slug": ("bad.md", "---\nname: X\n---\nBody\n", "'slug' is required"),
    "missing name": ("bad.md", "---\nslug: x\n---\nBody\n", "'name' is required"),
    "bad slug": ("bad.md", "---\nslug: not a slug\nname: X\n---\nBody\n", "slug 'not a slug'"),
    "unknown key": (
        "bad.md",
        "---\nslug: x\nname: X\nmodle: gpt\n---\nBody\n",
        "unknown front matter key(s): modle",
    ),
    "tags not a list": ("bad.md", "---\nslug: x\nname: X\ntags: 3\n---\nBody\n", "'tags' must be a list"),
    "params not a mapping": (
        "bad.md",
        "---\nslug: x\nname: X\nmodel_params: [1]\n---\nBody\n",
        "model_params",
    ),
    "model not a string": (
        "bad.md",
        "---\nslug: x\nname: X\nmodel: [a]\n---\nBody\n",
        "'model' must be a string",
    ),
    "no content": ("bad.md", "---\nslug: x\nname: X\n---\n\n", "has no content"),
    "body and messages": (
        "bad.md",
        "---\nslug: x\nname: X\nmessages:\n  - {role: user, content: hi}\n---\nBody\n",
        "both a body and messages",
    ),
    "bad role": ("bad.md", "---\nslug: x\nname: X\nmessages:\n  - {role: robot, content: hi}\n---\n", "role"),
    "content and body_file": (
        "bad.md",
        "---\nslug: x\nname: X\nmessages:\n  - {role: user, content: hi, body_file: a.txt}\n---\n",
        "exactly one of content or body_file",
    ),
    "missing body_file": (
        "bad.md",
        "---\nslug: x\nname: X\nmessages:\n  - {role: user, body_file: nowhere.txt}\n---\n",
        "body_file 'nowhere.txt' does not exist",
    ),
    "body_file escapes": (
        "bad.md",
        "---\nslug: x\nname: X\nmessages:\n  - {role: user, body_file: ../../secret.txt}\n---\n",
        "outside the source folder",
    ),
    "absolute body_file": (
        "bad.md",
        "---\nslug: x\nname: X\nmessages:\n  - {role: user, body_file: /etc/hostname}\n---\n",
        "absolute path",
    ),
    "mustache syntax": ("bad.md", "---\nslug: x\nname: X\n---\n{{#open}} never closed\n", "Invalid Mustache"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_an_invalid_file_writes_nothing(source, tmp_path, case):
    name, text, reason = INVALID[case]
    (tmp_path / "secret.txt").write_text("secret")
    write(source, "good.md", SIMPLE)
    write(source, name, text)
    with pytest.raises(CommandError) as caught:
        sync(source)
    message = str(caught.value)
    assert f"{name}: " in message
    assert reason in message
    assert "nothing was written" in message
    assert not Prompt.objects.exists()


def test_yaml_errors_give_the_file_line(source):
    write(source, "bad.md", "---\nslug: x\nname: X\ntags: [a, b\n---\nBody\n")
    with pytest.raises(CommandError, match=r"bad\.md: invalid YAML front matter at line \d"):
        sync(source)


def test_every_bad_file_is_named_and_an_existing_prompt_is_not_updated(source):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", SIMPLE.replace("warmly", "briefly"))
    write(source, "a/one.md", "no front matter")
    write(source, "b/two.md", "---\nslug: two\n---\nBody\n")
    with pytest.raises(CommandError) as caught:
        sync(source)
    message = str(caught.value)
    assert "2 invalid prompt file(s)" in message
    assert "a/one.md: no YAML front matter" in message
    assert "b/two.md: 'name' is required" in message
    assert PromptVersion.objects.count() == 1
    assert Prompt.objects.get().current_version.messages[0]["content"] == "Greet {{name}} warmly."


def test_duplicate_slugs_are_invalid(source):
    write(source, "one.md", SIMPLE)
    write(source, "sub/two.md", SIMPLE)
    with pytest.raises(CommandError) as caught:
        sync(source)
    assert "one.md: slug 'greeting' is also used by sub/two.md" in str(caught.value)
    assert "sub/two.md: slug 'greeting' is also used by one.md" in str(caught.value)
    assert not Prompt.objects.exists()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinks_out_of_the_source_folder_are_refused(source, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (source / "link.txt").symlink_to(outside)
    write(source, "bad.md", "---\nslug: x\nname: X\nmessages:\n  - {role: user, body_file: link.txt}\n---\n")
    with pytest.raises(CommandError, match="outside the source folder"):
        sync(source)
    (source / "bad.md").unlink()
    outside_prompt = tmp_path / "outside.md"
    outside_prompt.write_text(textwrap.dedent(SIMPLE).lstrip())
    (source / "linked.md").symlink_to(outside_prompt)
    with pytest.raises(CommandError, match="linked.md: is a link to a file outside the source folder"):
        sync(source)
    assert not Prompt.objects.exists()


def test_missing_folder_or_setting(source):
    with pytest.raises(CommandError, match="does not exist"):
        sync(source / "nope")
    with pytest.raises(CommandError, match="PROMPTS_SOURCE_PATH"):
        call_command("sync_prompts", stdout=StringIO())


# -- export ----------------------------------------------------------------------------------------


def test_export_then_sync_reports_everything_unchanged(source, tmp_path):
    write(source, "greeting.md", SIMPLE)
    write(
        source,
        "support/answer.md",
        """
        ---
        slug: answer
        name: Answer
        description: |
          Two lines
          of description.
        messages:
          - role: system
            content: "Line one.\\n\\nLine: two {{> greeting}}"
          - role: user
            body_file: answer.user.txt
        ---
        """,
    )
    write(source, "support/answer.user.txt", "Question: {{question}}\nThanks — ünïcode.")
    write(source, "plain.md", "---\nslug: plain\nname: Plain\n---\nNo model, no params.\n")
    sync(source)
    api = Prompt.objects.create(slug="from-api", name="From API", tags=["x", "y: z"])
    api.update_content(
        [
            {"role": "user", "content": "#1 {{a}}: 'quoted' \"double\""},
            {"role": "assistant", "content": "ok"},
        ],
        model="m",
        model_params={"stop": ["\n"], "nested": {"a": [1, 2.5, None, True]}},
    )
    exported = tmp_path / "exported"
    out = StringIO()
    call_command("export_prompts", "--path", str(exported), stdout=out)
    assert "Exported 4 prompt(s)" in out.getvalue()
    assert sorted(path.name for path in exported.iterdir()) == [
        "answer.md",
        "from-api.md",
        "greeting.md",
        "plain.md",
    ]
    assert summary(sync(exported)) == "created 0, updated 0, unchanged 4"
    assert PromptVersion.objects.count() == 4


def test_export_selected_slugs_and_dry_run(source, tmp_path):
    write(source, "greeting.md", SIMPLE)
    write(source, "other.md", SIMPLE.replace("greeting", "other"))
    sync(source)
    target = tmp_path / "out"
    call_command("export_prompts", "greeting", "--path", str(target), "--dry-run", stdout=StringIO())
    assert not target.exists()
    call_command("export_prompts", "greeting", "--path", str(target), stdout=StringIO())
    assert [path.name for path in target.iterdir()] == ["greeting.md"]
    with pytest.raises(CommandError, match="ghost"):
        call_command("export_prompts", "ghost", "--path", str(target), stdout=StringIO())


def test_exported_file_format(source, tmp_path):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    call_command("export_prompts", "--path", str(tmp_path / "out"), stdout=StringIO())
    assert (tmp_path / "out" / "greeting.md").read_text() == textwrap.dedent(
        """\
        ---
        slug: greeting
        name: Greeting
        description: Says hello.
        tags:
        - demo
        model: gpt-4o-mini
        model_params:
          temperature: 0.2
        ---

        Greet {{name}} warmly.
        """
    )


# -- labels ----------------------------------------------------------------------------------------

LABELLED = SIMPLE.replace("tags: [demo]", "tags: [demo]\n    labels: [staging, production]")


def label_numbers(slug: str = "greeting") -> dict[str, int]:
    return dict(PromptLabel.objects.filter(prompt__slug=slug).values_list("name", "version__number"))


def moves(slug: str = "greeting") -> list[tuple]:
    return list(
        PromptLabelMove.objects.filter(prompt__slug=slug)
        .order_by("id")
        .values_list("label", "old_number", "new_number", "source", "moved_by")
    )


def test_labels_from_front_matter_are_set_on_sync(source, django_capture_on_commit_callbacks):
    write(source, "greeting.md", LABELLED)
    write(source, "other.md", SIMPLE.replace("greeting", "other").replace("tags: [demo]", "labels: staging"))
    received = []

    def receiver(sender, prompt, label, old_version, new_version, **kwargs):
        received.append((prompt.slug, label, old_version, new_version.number))

    prompt_label_moved.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert summary(sync(source)) == "created 2, updated 0, unchanged 0"
    finally:
        prompt_label_moved.disconnect(receiver)
    assert label_numbers() == {"production": 1, "staging": 1}
    assert label_numbers("other") == {"staging": 1}
    # production is protected, but sync_prompts acts for no user: whoever runs manage.py may promote.
    assert moves() == [("staging", None, 1, "sync", None), ("production", None, 1, "sync", None)]
    assert sorted(received) == [
        ("greeting", "production", None, 1),
        ("greeting", "staging", None, 1),
        ("other", "staging", None, 1),
    ]
    assert Prompt.load("greeting", label="staging").current_version.number == 1


def test_a_second_sync_with_the_same_labels_is_unchanged(source):
    write(source, "greeting.md", LABELLED)
    sync(source)
    assert summary(sync(source)) == "created 0, updated 0, unchanged 1"
    assert PromptVersion.objects.count() == 1
    assert len(moves()) == 2


def test_a_changed_file_moves_its_labels_to_the_new_version(source):
    write(source, "greeting.md", LABELLED)
    sync(source)
    Prompt.objects.get(slug="greeting").set_label("canary", 1)
    write(source, "greeting.md", LABELLED.replace("warmly", "briefly"))
    assert summary(sync(source)) == "created 0, updated 1, unchanged 0"
    assert label_numbers() == {"canary": 1, "production": 2, "staging": 2}
    assert moves()[-2:] == [("staging", 1, 2, "sync", None), ("production", 1, 2, "sync", None)]
    assert Prompt.load("greeting").current_version.number == 2


def test_a_label_move_alone_counts_as_updated(source):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", LABELLED)
    assert summary(sync(source)) == "created 0, updated 1, unchanged 0"
    assert label_numbers() == {"production": 1, "staging": 1}
    prompt = Prompt.objects.get(slug="greeting")
    prompt.update_content([{"role": "system", "content": "Something else."}])
    prompt.rollback_to(1)  # version 3 has the file's content again
    prompt.set_label("staging", 2)
    assert summary(sync(source)) == "created 0, updated 1, unchanged 0"
    assert label_numbers() == {"production": 3, "staging": 3}
    assert PromptVersion.objects.count() == 3


def test_dry_run_moves_no_label(source):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", LABELLED)
    output = sync(source, "--dry-run")
    assert summary(output) == "created 0, updated 1, unchanged 0"
    assert "updated: greeting (greeting.md)" in output
    assert label_numbers() == {}
    assert moves() == []


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ("[staging, not ok]", "'labels': 'not ok' is not a label name"),
        ("[staging, 3]", "'labels': 3 is not a label name"),
        ("{a: b}", "'labels' must be a list of label names"),
        ("''", "'labels': '' is not a label name"),
    ],
)
def test_a_bad_label_name_names_the_file_and_writes_nothing(source, labels, reason):
    write(source, "greeting.md", SIMPLE)
    sync(source)
    write(source, "greeting.md", LABELLED.replace("warmly", "briefly"))
    write(
        source, "sub/bad.md", SIMPLE.replace("greeting", "bad").replace("tags: [demo]", f"labels: {labels}")
    )
    with pytest.raises(CommandError) as caught:
        sync(source)
    message = str(caught.value)
    assert f"sub/bad.md: {reason}" in message
    assert "1 invalid prompt file(s); nothing was written" in message
    assert PromptVersion.objects.count() == 1
    assert not Prompt.objects.filter(slug="bad").exists()
    assert (label_numbers(), moves()) == ({}, [])


def test_export_then_sync_round_trip_with_labels(source, tmp_path):
    write(source, "greeting.md", LABELLED)
    write(source, "plain.md", "---\nslug: plain\nname: Plain\n---\nNothing else.\n")
    sync(source)
    prompt = Prompt.objects.get(slug="greeting")
    prompt.update_content([{"role": "system", "content": "Greet {{name}} twice."}])
    prompt.set_label("staging", 2)
    prompt.set_label("beta", 2)
    exported = tmp_path / "exported"
    call_command("export_prompts", "--path", str(exported), stdout=StringIO())
    text = (exported / "greeting.md").read_text()
    # production stays on version 1: a file of version 2 cannot say so, and sync leaves it there.
    assert "labels:\n- beta\n- staging\n---" in text
    assert "labels:" not in (exported / "plain.md").read_text()
    before = moves()
    assert summary(sync(exported)) == "created 0, updated 0, unchanged 2"
    assert label_numbers() == {"beta": 2, "production": 1, "staging": 2}
    assert moves() == before
    assert PromptVersion.objects.count() == 3
