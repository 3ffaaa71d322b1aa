"""The README's install, proved: a project made by ``django-admin startproject`` plus only the lines the
README tells a host to add migrates quietly, passes ``manage.py check``, and answers 200 to a staff user on
every route of the API, ``schema/`` included. The lines are read from README.md, so the README and this
test cannot drift apart.

On PostgreSQL (``DATABASE_URL``) the project uses a fresh database of its own beside the test database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import environ
import pytest
from django.db import connection

from llm_agents.api import urls

REPOSITORY = Path(__file__).resolve().parent.parent
README = REPOSITORY / "README.md"

# A project whose REST_FRAMEWORK defaults differ from DRF's in every way that could reach the API's views.
UNUSUAL_REST_FRAMEWORK = """
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.TemplateHTMLRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 1,
    "DEFAULT_FILTER_BACKENDS": ["rest_framework.filters.OrderingFilter"],
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.NamespaceVersioning",
    "ALLOWED_VERSIONS": ["v1"],
    "COERCE_DECIMAL_TO_STRING": False,
    "COERCE_BIGINT_TO_STRING": True,
}
"""


def readme_block(first_line: str) -> str:
    """The README's python code block that starts with ``first_line`` (e.g. ``# settings.py``)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    matching = [block for block in blocks if block.startswith(first_line)]
    assert len(matching) == 1, f"README.md should have one python block starting with {first_line!r}"
    return matching[0]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in the host project (this checkout's llm_agents on the path) and return its output."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),
        "DJANGO_SETTINGS_MODULE": "host.settings",
        "PYTHONWARNINGS": "default",
    }
    env.pop("DATABASE_URL", None)
    completed = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, f"{' '.join(args)}\n{completed.stdout}\n{completed.stderr}"
    return completed


@pytest.fixture
def host_database(django_db_blocker: Any) -> Iterator[dict[str, object] | None]:
    """On PostgreSQL, a fresh database for the host project (dropped afterwards); on SQLite, None: the
    project keeps startproject's own ``db.sqlite3``."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres", "postgresql", "pgsql")):
        yield None
        return
    config = environ.Env.db_url_config(url)
    config["NAME"] = f"{config['NAME']}_host"
    statements = [f'DROP DATABASE IF EXISTS "{config["NAME"]}"', f'CREATE DATABASE "{config["NAME"]}"']
    with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:  # type: ignore[attr-defined]
        for statement in statements:
            cursor.execute(statement)
    yield config
    with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(statements[0])


def host_project(folder: Path, database: dict[str, object] | None, extra_settings: str = "") -> Path:
    """``startproject host`` in ``folder`` plus the README's settings and urls lines."""
    run(sys.executable, "-m", "django", "startproject", "host", str(folder), cwd=folder)
    settings = folder / "host" / "settings.py"
    lines = readme_block("# settings.py")
    if database is not None:
        lines += f"DATABASES = {{'default': {database!r}}}\n"
    settings.write_text(settings.read_text() + "\n" + lines + extra_settings)
    urls_file = folder / "host" / "urls.py"
    urls_file.write_text(urls_file.read_text() + "\n" + readme_block("# urls.py"))
    return folder


def route_answers(folder: Path) -> dict[str, dict[str, object]]:
    """What every route of the API answers a staff user in the host project (``tests/host_project.py``)."""
    return json.loads(run(sys.executable, "-m", "tests.host_project", cwd=folder).stdout)


def check_answers(answers: dict[str, dict]) -> None:
    """Every route answers staff, and refuses anonymous requests — but ``feedback/``, whose signed
    token is the permission: the host project posts it no token, which both are told (400)."""
    feedback = answers.pop("feedback")
    assert (feedback["status"], feedback["anonymous_status"]) == (400, 400), feedback
    assert "token" in feedback["body"]
    failed = {name: answer for name, answer in answers.items() if answer["status"] != 200}
    assert failed == {}
    assert {answer["anonymous_status"] for answer in answers.values()} == {403}


def test_a_project_made_of_the_readme_lines_is_quiet_and_serves_every_route(tmp_path, host_database):
    folder = host_project(tmp_path, host_database)

    check = run(sys.executable, "manage.py", "check", "--database", "default", cwd=folder)
    assert check.stdout.strip() == "System check identified no issues (0 silenced).", check.stdout
    assert check.stderr == ""
    migrate = run(sys.executable, "manage.py", "migrate", "--noinput", cwd=folder)
    assert "WARNING" not in migrate.stdout + migrate.stderr, migrate.stdout + migrate.stderr
    assert migrate.stderr == ""
    assert "llm_agents" in migrate.stdout

    answers = route_answers(folder)
    assert set(answers) == {pattern.name for pattern in urls.urlpatterns}
    check_answers(answers)
    assert answers["schema"]["body"].startswith("openapi: 3")


def test_the_api_ignores_the_projects_rest_framework_defaults(tmp_path, host_database):
    folder = host_project(tmp_path, host_database, UNUSUAL_REST_FRAMEWORK)
    run(sys.executable, "manage.py", "migrate", "--noinput", cwd=folder)

    answers = route_answers(folder)
    check_answers(answers)
    listing = answers["execution-list"]
    assert listing["content_type"] == "application/json"
    page = json.loads(listing["body"])
    assert set(page) == {"count", "next", "previous", "results"}
    (execution,) = page["results"]
    assert isinstance(execution["input_tokens"], int)
    assert isinstance(execution["total_cost"], str)
    assert Decimal(execution["total_cost"]).as_tuple().exponent == -8
    assert isinstance(json.loads(answers["budget-detail"]["body"])["limit_usd"], str)
    assert answers["schema"]["body"].startswith("openapi: 3")
