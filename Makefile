# Developer entry points. Each target builds the virtualenv it needs in .venv on first use
# (pip >= 25.1 installs the PEP 735 dependency groups of pyproject.toml); a stamp per group,
# rebuilt when pyproject.toml changes, keeps later runs quick.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# PostgreSQL of the test run, created by scripts/bootstrap.sh if missing; DATABASE_URL wins.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/django_idempotency)
PYTEST_ARGS ?=
# The oldest supported stack (README, "Supported versions"), run by `make test-oldest` and CI.
OLDEST_ENV ?= py310-django42-lowest
# The doors that need no DRF, in an environment without it, run by `make test-nodrf` and CI.
NODRF_ENV ?= py313-nodrf
# tox finds python3.10 ... python3.13 on PATH; pyenv keeps them out of it unless asked.
PYENV_PATH := $(shell for d in $$(pyenv root 2>/dev/null)/versions/3.1[0-9]*/bin; do \
	[ -d "$$d" ] && printf '%s:' "$$d"; done)

.DEFAULT_GOAL := help
.PHONY: help demo bootstrap test test-oldest test-nodrf tox lint bench clean

help:
	@echo "make demo         migrate and run the example project on http://127.0.0.1:$(PORT)/"
	@echo "                  (PORT=...; SQLite by default, DATABASE_URL respected)"
	@echo "make test         set the machine up (scripts/bootstrap.sh), then the whole suite on"
	@echo "                  PostgreSQL ($(TEST_DATABASE_URL)), on SQLite and (make test-mariadb) on MariaDB, with coverage"
	@echo "make test-fast    the SQLite tests (no server database, not e2e): no root, no services, 1-2 min"
	@echo "make test-mariadb the suite less the PostgreSQL-only tests on MariaDB ($(MARIADB_DATABASE_URL)),"
	@echo "                  READ COMMITTED and (a smaller set) REPEATABLE READ; make test runs them too"
	@echo "make test-oldest  the suite on the oldest supported stack (tox -e $(OLDEST_ENV))"
	@echo "make test-nodrf   the tests that need no DRF, with DRF not installed (tox -e $(NODRF_ENV))"
	@echo "make tox          the whole tox matrix (README, Supported versions)"
	@echo "make lint         ruff check, ruff format --check, mypy"
	@echo "make bench        benchmarks against the bare create and other packages; ARGS=--quick"
	@echo "make bench-databases  the headline ratios on PostgreSQL and MariaDB side by side"
	@echo "make clean        remove virtualenvs, caches, build output and the demo database"
	@echo "make docs         the docs site into site/ (MkDocs, strict: broken links or anchors fail)"
	@echo "make soak         10 minutes of randomized faults, every operation checked (ARGS=--quick: 90 s;"
	@echo "                  ARGS='--duration=75m --operations=100000': until either comes first;"
	@echo "                  --faults-per-kind=300: and every kind of fault 300 times; --database=mariadb)"

# .venv/.installed-example, -test, -dev: the package in editable mode with that group.
$(VENV)/.installed-%: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . --group $*
	@touch $@

# The demo's admin login and the curl commands are printed by seed_demo; --insecure serves the
# admin's static files although DEBUG is off (fine for a demo, never for production).
demo: $(VENV)/.installed-example
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --base-url http://127.0.0.1:$(PORT)
	$(BIN)/python manage.py runserver --insecure 127.0.0.1:$(PORT)

# Packages, services and the test databases: silent when everything is there.
bootstrap:
	@DATABASE_URL='$(TEST_DATABASE_URL)' MARIADB_URL='$(MARIADB_DATABASE_URL)' scripts/bootstrap.sh

# fail_under (pyproject.toml) holds for the whole suite; a run narrowed by PYTEST_ARGS only reports.
COVERAGE_ARGS := $(if $(strip $(PYTEST_ARGS)),--fail-under=0)

# Every run always happens (PostgreSQL, SQLite, the MariaDB runs), so one report shows every
# failure; the target fails if any does. Exit code 5 ("no tests collected") is a failure too: a
# suite that ran nothing must never look green. Coverage of all runs is combined and must reach
# fail_under.
test: bootstrap $(VENV)/.installed-test
	@status=0; started=$$(date +%s); rm -f .coverage .coverage.*; \
	echo "== pytest on PostgreSQL: $(TEST_DATABASE_URL)"; \
	DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS) \
		|| status=$$?; \
	if [ $$status -eq 5 ]; then echo "!! PostgreSQL run collected no tests"; fi; \
	pg=$$status; status=0; \
	echo "== pytest on SQLite (in memory), without the server-database and e2e tests"; \
	env -u DATABASE_URL $(BIN)/python -m coverage run -m pytest \
		-m "not postgres and not concurrent_db and not mysql and not e2e" \
		$(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "!! SQLite run collected no tests"; fi; \
	lite=$$status; status=0; \
	$(MAKE) --no-print-directory test-mariadb-runs || status=$$?; \
	maria=$$status; status=0; \
	$(BIN)/python -m coverage combine -q && $(BIN)/python -m coverage report $(COVERAGE_ARGS) \
		|| status=$$?; \
	cov=$$status; status=0; \
	if [ -f mkdocs.yml ]; then echo "== make docs"; $(MAKE) --no-print-directory docs || status=$$?; fi; \
	echo "== PostgreSQL run: exit $$pg; SQLite run: exit $$lite; MariaDB runs: exit $$maria;" \
		"coverage: exit $$cov; docs: exit $$status; $$(( $$(date +%s) - started ))s"; \
	[ $$pg -eq 0 ] && [ $$lite -eq 0 ] && [ $$maria -eq 0 ] && [ $$cov -eq 0 ] \
		&& [ $$status -eq 0 ]

# -- MariaDB (issue 23) -----------------------------------------------------------------------
# The whole suite again on MariaDB under READ COMMITTED (Django's default): every door, the
# admin, the example project's contract, and of the end-to-end tests those that need a concurrent
# database (concurrent_db: the storms, a worker SIGKILLed mid-request, a session killed, a private
# MariaDB server killed under load); then the mysql_rr set under REPEATABLE READ (InnoDB's).
# Under coverage: `make test` combines them with the other runs.
MARIADB_DATABASE_URL ?= mysql://root@127.0.0.1:3306/django_idempotency
# Never the postgres tests (PostgreSQL itself: EXPLAIN plans, pg_terminate_backend ...).
MARIADB_MARKS ?= not postgres and (not e2e or concurrent_db or mysql)
MARIADB_RR_MARKS ?= mysql_rr and not postgres
.PHONY: test-mariadb test-mariadb-runs
test-mariadb: bootstrap $(VENV)/.installed-test
	@rm -f .coverage .coverage.*; $(MAKE) --no-print-directory test-mariadb-runs

test-mariadb-runs:
	@status=0; started=$$(date +%s); \
	for level in "read committed" "repeatable read"; do \
		marks='$(MARIADB_MARKS)'; [ "$$level" = "read committed" ] || marks='$(MARIADB_RR_MARKS)'; \
		echo "== pytest on MariaDB, $$level: $(MARIADB_DATABASE_URL) -m \"$$marks\""; \
		one=0; DATABASE_URL='$(MARIADB_DATABASE_URL)' IDEMPOTENCY_TEST_MYSQL_ISOLATION="$$level" \
			$(BIN)/python -m coverage run -m pytest -m "$$marks" $(PYTEST_ARGS) || one=$$?; \
		if [ $$one -eq 5 ]; then echo "!! MariaDB run ($$level) collected no tests"; fi; \
		[ $$one -eq 0 ] || status=$$one; \
	done; \
	echo "== MariaDB runs: exit $$status; $$(( $$(date +%s) - started ))s"; exit $$status

# The tests that need no service: SQLite in memory, without the PostgreSQL and end-to-end tests
# and without the outbox's publishing tests (they talk to the local RabbitMQ and Redis; `make test`
# runs them). No bootstrap (no root, no apt, nothing started); PYTEST_ARGS narrows it further.
FAST_IGNORE := --ignore-glob='*/celery/test_outbox.py'
.PHONY: test-fast
test-fast: $(VENV)/.installed-test
	env -u DATABASE_URL $(BIN)/python -m pytest \
		-m "not postgres and not concurrent_db and not mysql and not e2e" $(FAST_IGNORE) \
		$(PYTEST_ARGS)

# tox with tox-uv (the tox group); the same services as `make test`.
TOX := PATH="$(PYENV_PATH)$$PATH" DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/tox

test-oldest: bootstrap $(VENV)/.installed-tox
	$(TOX) -e $(OLDEST_ENV)

# `-m "not drf and not e2e"` on PostgreSQL; tests/conftest.py stops the run if DRF imports.
test-nodrf: bootstrap $(VENV)/.installed-tox
	$(TOX) -e $(NODRF_ENV) -- $(PYTEST_ARGS)

tox: bootstrap $(VENV)/.installed-tox
	$(TOX) $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy django_idempotency

# make bench: the benchmark against the bare create and the other packages, in its own
# benchmarks/.venv, on a scratch PostgreSQL database, the attribution also on a private MariaDB
# server (docs/benchmarks.md; ARGS=--quick: ~2 min; ARGS=--no-mariadb: PostgreSQL only).
bench:
	$(PYTHON) benchmarks/run.py $(ARGS)

# make bench-databases: the headline ratios on PostgreSQL and on MariaDB side by side, each server
# in one interleaved run (benchmarks/databases.py; docs/databases.md; ARGS=--quick: ~2 min).
.PHONY: bench-databases
bench-databases:
	$(PYTHON) benchmarks/databases.py $(ARGS)

clean:
	rm -rf $(VENV) .tox build dist site *.egg-info benchmarks/.venv benchmarks/out \
		.coverage .coverage.* htmlcov .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		.schemathesis example_project/db.sqlite3
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# make docs: the docs site from docs/ into site/ with mkdocs.yml, strict (a broken link or
# anchor fails); docs/requirements.txt is also what Read the Docs installs.
.PHONY: docs
docs: $(VENV)/.installed-docs
	$(BIN)/python -m mkdocs build --strict

$(VENV)/.installed-docs: pyproject.toml docs/requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . -r docs/requirements.txt
	@touch $@

# make soak: randomized faults against two gunicorn instances (one through PgBouncer), uvicorn and
# a Celery worker on a private PostgreSQL cluster and a private RabbitMQ node, every operation
# checked from the history (tests/soak/, issues 13 and 25); updates its section of
# docs/reliability.md. ARGS=--quick for 90 s, ARGS=--seed=N to replay a run, the full-length run:
# ARGS="--duration=40m --operations=100000" (it stops at whichever comes first); on a private
# MariaDB server instead: ARGS="--database=mariadb ..." (a section of its own in the docs).
.PHONY: soak
soak: $(VENV)/.installed-test
	$(BIN)/python -m tests.soak --write-docs $(ARGS)
