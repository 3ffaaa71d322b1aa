"""nox sessions: the Python × Django matrix, the suite against the built wheel, lint, typing and the docs.

    nox -l                                  # list the sessions
    nox -s "tests(3.11-django5.2)"          # one cell of the matrix
    nox -s wheel typing docs lint
    DATABASE_URL=postgres://… nox -s psycopg2   # the suite on PostgreSQL through psycopg 2

Every session runs in a fresh virtualenv under .nox/ (``-R`` reuses one). The test sessions use SQLite
unless ``DATABASE_URL`` names another database; ``nox -s <session> -- <pytest args>`` passes arguments on.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent

# pyenv's interpreters, for machines where they are not on PATH already.
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
for interpreter_bin in sorted(PYENV_VERSIONS.glob("3.1[123].*/bin")):
    if str(interpreter_bin) not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = f"{os.environ['PATH']}{os.pathsep}{interpreter_bin}"

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests", "wheel", "lint", "typing", "docs"]

DJANGO = {"5.2": "django>=5.2,<6", "6": "django>=6.0,<7"}
MATRIX = [
    nox.param("3.11", "5.2", id="3.11-django5.2"),
    nox.param("3.12", "6", id="3.12-django6"),
    nox.param("3.13", "6", id="3.13-django6"),
]
#: Browser tests drive Chromium through Playwright; .ci/run runs them once, not in every cell.
PYTEST_DEFAULT = ["-m", "not integration and not faults and not browser", "-p", "no:cacheprovider"]


def pytest_args(session: nox.Session) -> list[str]:
    return session.posargs or PYTEST_DEFAULT


@nox.session(name="tests")
@nox.parametrize("python,django", MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """The suite on one Python × Django cell, against the source tree."""
    session.install("-e", ".[test]", DJANGO[django])
    session.run("python", "-m", "django", "--version")
    session.run("python", "-m", "pytest", *pytest_args(session))


@nox.session(python="3.11")
def psycopg2(session: nox.Session) -> None:
    """The suite with psycopg 2 in place of psycopg 3 (Django supports both), on the PostgreSQL
    database ``DATABASE_URL`` names: the tracking writes and budget checks run raw statements."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        session.error("set DATABASE_URL to a PostgreSQL database for the psycopg 2 session")
    session.install("-e", ".[test]", DJANGO["5.2"])
    session.run("python", "-m", "pip", "uninstall", "--quiet", "--yes", "psycopg", "psycopg-binary")
    session.install("psycopg2-binary")
    session.run(
        "python", "-c", "import psycopg2, importlib.util; assert importlib.util.find_spec('psycopg') is None"
    )
    session.run("python", "-m", "pytest", *pytest_args(session))


@nox.session(python="3.12")
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it (not the source tree) and run the suite against it.

    The suite runs from a temporary folder outside the work tree holding only a copy of tests/, of
    example_project/ (the demo's tests run its ``demo`` command), the README (whose install lines
    tests/test_install.py follows) and the pytest settings, so ``llm_agents`` is imported from
    site-packages: a template, static file or migration missing from the wheel fails here.
    """
    tmp = Path(session.create_tmp()).resolve()
    source, dist = tmp / "source", tmp / "dist"
    for folder in (source, dist):
        shutil.rmtree(folder, ignore_errors=True)

    # Build from a clean copy: a stale build/ folder in the work tree could slip old files into the wheel.
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "llm_agents", source / "llm_agents", ignore=ignore)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source))
    (built,) = glob.glob(str(dist / "django_llm_agents-*.whl"))
    session.install(f"{built}[test]", DJANGO["6"])

    run = Path(tempfile.mkdtemp(prefix="llm_agents_wheel_"))
    try:
        shutil.copytree(ROOT / "tests", run / "tests", ignore=ignore)
        shutil.copytree(ROOT / "example_project", run / "example_project", ignore=ignore)
        shutil.copy2(ROOT / "README.md", run / "README.md")  # tests/test_install.py builds a project from it
        (run / "pytest.ini").write_text(pytest_ini())
        (run / "wheel_check.py").write_text(WHEEL_CHECK)
        with session.chdir(run):
            session.run("python", "-m", "pytest", "-p", "wheel_check", *pytest_args(session))
    finally:
        shutil.rmtree(run, ignore_errors=True)


#: A pytest plugin for the wheel session: stop unless llm_agents comes from site-packages.
WHEEL_CHECK = """\
import pathlib

import pytest

import llm_agents

PATH = pathlib.Path(llm_agents.__file__).parent


def pytest_configure(config):
    if "site-packages" not in PATH.parts:
        raise pytest.UsageError(f"llm_agents imported from {PATH}, not from the installed wheel")


def pytest_report_header(config):
    return f"llm_agents {llm_agents.__version__} from {PATH}"
"""


def pytest_ini() -> str:
    """pyproject.toml's [tool.pytest.ini_options] as a pytest.ini."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    # pytest-django would otherwise put the folder of a manage.py it finds above on sys.path.
    lines = ["[pytest]", "django_find_project = false", "pythonpath = ."]
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines.extend(f"    {item}" for item in value)
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and import-linter's layer contracts (pyproject.toml)."""
    session.install("ruff>=0.5", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session(python="3.11")
def typing(session: nox.Session) -> None:
    """mypy with django-stubs and djangorestframework-stubs on llm_agents/ (config in pyproject.toml)."""
    session.install("-e", ".[dev]")
    session.run("mypy", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The docs site, built strictly: a broken link or a page missing from the nav fails."""
    session.install(*extra("docs"))
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"))


def extra(name: str) -> list[str]:
    """The requirements of one of pyproject.toml's extras, so a session installs just those."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"][name]


if __name__ == "__main__":
    sys.exit("run with nox: nox -l")
