# django-llm-agents — `make demo` runs the example project, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1:8000

.PHONY: api-schema demo test test-integration test-faults bench bench-10m bench-smoke lint format typing docs nox wheel clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata changes.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[openai,anthropic,redis,postgres,example]"
	touch $@

## demo: install, migrate, fill every admin page with demo data (offline), serve http://$(HOST)/admin/
demo: $(VENV)/.installed-demo
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --url http://$(HOST)/
	$(PY) manage.py runserver $(HOST)

## test: the suite on SQLite, or on the database in DATABASE_URL
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

## test-integration: tests that need Redis and a real Celery worker
test-integration: $(VENV)/.installed-dev
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

## test-faults: workers killed and brokers stopped with real processes (PostgreSQL DATABASE_URL, redis-server, RabbitMQ)
test-faults: $(VENV)/.installed-dev
	$(PY) -m pytest -m faults -s $(PYTEST_ARGS)

## bench: issue 17's table at 1M executions in monthly partitions (bench_scale.py --partitioned), then every other
## bench/ script at full size on PostgreSQL (databases $(BENCH_DATABASE_URL)*; the 1M history is generated once and
## reused); prints the figures
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/llm_agents_bench
BENCH_RESULTS ?= /tmp/llm_agents_bench
BENCH_SCRIPTS := analytics api dashboard export budget_check retention retention_partitions tracking ingestion batches quality \
  sync_prompts experiments alerts
bench: $(VENV)/.installed-dev
	cd bench && DATABASE_URL=$(BENCH_DATABASE_URL) ../$(PY) bench_scale.py --rows 1000000 --partitioned \
	  --json $(BENCH_RESULTS)/scale-1000000.json $(BENCH_SCALE_ARGS)
	cd bench && for script in $(BENCH_SCRIPTS); do \
	  echo "== bench_$$script.py"; \
	  DATABASE_URL=$(BENCH_DATABASE_URL) ../$(PY) bench_$$script.py $(BENCH_ARGS) || exit 1; \
	done

## bench-10m: issue 17's table at 10M executions in monthly partitions, in a database of its own
## ($(BENCH_DATABASE_URL)_10m; generating it takes about 50 minutes, a populated one is reused), with the ratio to the
## last `make bench` figures, then dropping a month of it (which leaves it to be generated again next time; not in CI)
bench-10m: $(VENV)/.installed-dev
	cd bench && DATABASE_URL=$(BENCH_DATABASE_URL)_10m ../$(PY) bench_scale.py --rows 10000000 --partitioned \
	  --json $(BENCH_RESULTS)/scale-10000000.json --baseline $(BENCH_RESULTS)/scale-1000000.json $(BENCH_SCALE_ARGS)
	cd bench && DATABASE_URL=$(BENCH_DATABASE_URL)_10m ../$(PY) bench_retention_partitions.py --rows 10000000 --in-place

## bench-smoke: every bench/ script at small sizes (CI: they must run; their timings are not judged)
bench-smoke: $(VENV)/.installed-dev
	cd bench && for script in $(BENCH_SCRIPTS) scale; do \
	  echo "== bench_$$script.py --quick"; \
	  DATABASE_URL=$(BENCH_DATABASE_URL)_smoke ../$(PY) bench_$$script.py --quick || exit 1; \
	done

## audit: pip-audit of the dev environment against PyPI's vulnerability data, from a tool venv of its own;
## --strict fails when a package could not be checked (PyPI's JSON API unreachable), never a silent pass
AUDIT_VENV := $(VENV)/audit
.PHONY: audit
audit: $(VENV)/.installed-dev
	test -x $(AUDIT_VENV)/bin/pip-audit || { $(PY) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install --quiet pip-audit; }
	PIPAPI_PYTHON_LOCATION=$(PY) $(AUDIT_VENV)/bin/pip-audit --strict --skip-editable --progress-spinner off $(AUDIT_ARGS)

## lint: ruff, and import-linter's contracts of the package's layers (pyproject.toml, docs/architecture.md)
lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

## typing: mypy with django-stubs and djangorestframework-stubs on llm_agents/ (config in pyproject.toml)
typing: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

## api-schema: rewrite docs/openapi.json (the HTTP API reference's source) from what schema/ serves
api-schema: $(VENV)/.installed-dev
	$(PY) -m tests.api_schema

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
