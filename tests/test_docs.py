"""The reference pages of docs/ name everything they claim to list.

`mkdocs build --strict` checks links and the nav; these tests check that a setting, signal, system
check, command or public name added to the code is added to its reference page too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import get_commands
from django.dispatch import Signal

import llm_agents
from llm_agents import signals
from llm_agents.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The wheel session runs a copy of tests/ without the docs beside it.
pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="docs/ is not beside the tests")


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_setting_is_in_the_settings_reference():
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", page("settings.md"), flags=re.MULTILINE))
    assert documented == set(DEFAULTS)


def test_every_system_check_is_in_the_settings_reference():
    source = (Path(llm_agents.__file__).parent / "checks.py").read_text(encoding="utf-8")
    ids = set(re.findall(r"llm_agents\.[EW]\d{3}", source))
    assert ids
    assert ids <= set(re.findall(r"`(llm_agents\.[EW]\d{3})`", page("settings.md")))


def test_every_signal_is_in_the_signals_reference():
    defined = {name for name, value in vars(signals).items() if isinstance(value, Signal)}
    text = page("signals.md")
    assert defined
    assert [name for name in sorted(defined) if f"`{name}`" not in text] == []


def test_every_management_command_has_a_section():
    ours = {name for name, app in get_commands().items() if app == "llm_agents"}
    headings = set(re.findall(r"^## `([a-z_]+)`", page("commands.md"), flags=re.MULTILINE))
    assert ours
    assert ours <= headings


def test_every_public_name_is_in_the_api_reference():
    text = page("reference.md")
    assert [name for name in llm_agents.__all__ if f"`{name}`" not in text] == []


def test_the_changelog_page_is_the_changelog():
    """docs/hooks/changelog.py puts CHANGELOG.md on the changelog page; its version is the package's."""
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{llm_agents.__version__}]" in changelog
    assert "CHANGELOG.md" in page("changelog.md")


@pytest.mark.django_db
def test_the_http_api_reference_is_built_from_the_schema_the_api_serves(staff_client):
    from .api_schema import SCHEMA_FILE, schema_text, served_schema

    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(served_schema(staff_client)), (
        "docs/openapi.json is stale: run `make api-schema`"
    )
