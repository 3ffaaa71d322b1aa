# django-llm-agents — `make demo` runs the example project, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1:8000

.PHONY: demo test test-integration test-faults bench lint format typing docs nox wheel clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata changes.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[openai,anthropic,redis,postgres,example]"
	touch $@

## demo: install, migrate, create an admin user, run the demo agents, serve http://127.0.0.1:8000/admin/
demo: $(VENV)/.installed-demo
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo
	$(PY) manage.py runserver $(HOST)

## test: the suite on SQLite, or on the database in DATABASE_URL
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

## test-integration: tests that need Redis and a real Celery worker
test-integration: $(VENV)/.installed-dev
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

## test-faults: workers killed and brokers stopped with real processes (PostgreSQL DATABASE_URL, redis-server)
test-faults: $(VENV)/.installed-dev
	$(PY) -m pytest -m faults -s $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## typing: mypy with django-stubs and djangorestframework-stubs on llm_agents/ (config in pyproject.toml)
typing: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

## docs: the docs site, built strictly (broken links fail) into site/
docs: $(VENV)/.installed-dev
	$(VENV)/bin/mkdocs build --strict

## nox: the Python × Django matrix, the suite against the built wheel, lint, typing and docs (noxfile.py)
nox: $(VENV)/.installed-dev
	$(VENV)/bin/nox $(NOX_ARGS)

format: $(VENV)/.installed-dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

wheel: $(VENV)/.installed-dev
	$(PY) -m pip wheel --no-deps --quiet -w dist .

clean:
	rm -rf $(VENV) .nox dist build site *.egg-info db.sqlite3
