# Developer entry points. Each target builds the virtualenv it needs in .venv on first use;
# a stamp per extra (rebuilt when pyproject.toml changes) keeps later runs quick.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# PostgreSQL for the first test run; an exported DATABASE_URL wins.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/test)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help demo test lint bench

help:
	@echo "make demo   migrate and run the example project on http://127.0.0.1:$(PORT)/ (PORT=...)"
	@echo "            SQLite by default, DATABASE_URL respected; prints curl commands to try it"
	@echo "make test   the whole suite on PostgreSQL ($(TEST_DATABASE_URL)), then on SQLite"
	@echo "make lint   ruff check, ruff format --check, mypy"
	@echo "make soak   10 minutes of randomized faults, every operation checked (ARGS=--quick: 90 s)"
	@echo "make bench  benchmarks against the bare create and other packages (docs/benchmarks.md);"
	@echo "            ARGS=--quick for a 2-minute run (benchmarks/README.md)"

# .venv/.installed-example, -test, -dev: the package in editable mode with that extra.
$(VENV)/.installed-%: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$*]"
	@touch $@

demo: $(VENV)/.installed-example
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --base-url http://127.0.0.1:$(PORT)
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# Both runs always happen, so one report shows every failure; the target fails if either
# does. Exit code 5 ("no tests collected") is a failure too: a suite that ran nothing
# must never look green.
test: $(VENV)/.installed-test
	@status=0; \
	echo "== pytest on PostgreSQL: $(TEST_DATABASE_URL)"; \
	DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "!! PostgreSQL run collected no tests"; fi; \
	pg=$$status; status=0; \
	echo "== pytest on SQLite (in memory), without the postgres and e2e tests"; \
	env -u DATABASE_URL $(BIN)/python -m pytest -m "not postgres and not e2e" $(PYTEST_ARGS) \
		|| status=$$?; \
	if [ $$status -eq 5 ]; then echo "!! SQLite run collected no tests"; fi; \
	echo "== PostgreSQL run: exit $$pg; SQLite run: exit $$status"; \
	[ $$pg -eq 0 ] && [ $$status -eq 0 ]

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy django_idempotency

# make bench: the benchmark against the bare create and the other packages, in its own
# benchmarks/.venv, on a scratch PostgreSQL database (docs/benchmarks.md; ARGS=--quick: ~2 min).
.PHONY: bench
bench:
	$(PYTHON) benchmarks/run.py $(ARGS)

# make soak: randomized faults against two gunicorn instances (one through PgBouncer) on a private
# PostgreSQL cluster, every operation checked from the history (tests/soak/, issue 13); updates
# its section of docs/reliability.md. ARGS=--quick for 90 s, ARGS=--seed=N to replay a run.
.PHONY: soak
soak: $(VENV)/.installed-test
	$(BIN)/python -m tests.soak --write-docs $(ARGS)
