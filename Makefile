# Autonomy OS. `make run` and `make test` are all a new user needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT ?= 8000
DEMO_AGENTS ?= 1000
SYSTEMS_PORT ?= 8100
PYTEST_WORKERS ?= 2

.PHONY: setup run test test-deps lint format bench faults clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# Everything on the embedded default: SQLite file, filesystem broker, console e-mail;
# web server, one Celery worker, Celery beat, demo runs, the demo ERP/CRM/ITSM and the demo fleet.
run: setup
	$(BIN)/python manage.py migrate --noinput
	AUTONOMY_DEMO_SYSTEMS_URL=$${AUTONOMY_DEMO_SYSTEMS_URL:-http://127.0.0.1:$(SYSTEMS_PORT)} \
		$(BIN)/python manage.py seed_demo --agents $(DEMO_AGENTS)
	$(BIN)/python manage.py demo_admin
	@echo "Autonomy OS on http://127.0.0.1:$(PORT)/admin/  (API docs: /api/docs/) — Ctrl-C stops every process"
	PORT=$(PORT) SYSTEMS_PORT=$(SYSTEMS_PORT) DEMO_AGENTS=$(DEMO_AGENTS) AUTONOMY_PORTAL_URL=$${AUTONOMY_PORTAL_URL:-http://127.0.0.1:$(PORT)} PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# What the suite needs beyond PyPI: Debian's chromium and the OIDC provider from npm.
test-deps: setup
	@$(BIN)/python tests/install_deps.py

test: test-deps
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -c pyproject.toml -r . --severity-level high --quiet

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python -m tests.bench.run

# The fault suite (tests/faults/): its own Redis and PostgreSQL, the portal in production mode,
# workers killed, the broker restarted and database sessions dropped under 1,000 agents.
# FAULTS_AGENTS, FAULTS_ACTIONS and FAULTS_RATE change its size.
FAULTS_AGENTS ?= 1000
FAULTS_ACTIONS ?= 10000
FAULTS_RATE ?= 14
faults: setup
	FAULTS_AGENTS=$(FAULTS_AGENTS) FAULTS_ACTIONS=$(FAULTS_ACTIONS) FAULTS_RATE=$(FAULTS_RATE) \
		$(BIN)/python -m tests.faults.run

clean:
	rm -rf $(VENV) var tests/oidc/node_modules
