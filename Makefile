# The two commands: `make demo` and `make test`. Both create .venv and install the lock first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml devkit/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-system lint airflow install lock clean bench chaos celery-up celery-down

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml devkit/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e . -e devkit
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# pytest worker processes of make test: one more than the cores, as the tests also wait on the simulator
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))

# The fast tiers (unit, DAG, contract, PostgreSQL, simulator-backed integration and fault tests), spread
# over TEST_WORKERS processes (pytest-xdist; an idle worker takes tests queued on a busy one); prints its time.
test: $(STAMP)
	@start=$$(date +%s); $(PY) -m pytest -m "not system" -n $(TEST_WORKERS) --dist worksteal; status=$$?; \
	  echo "make test: $$(( $$(date +%s) - start )) s"; exit $$status

# The system tier, one test at a time (real Airflow components; the chaos run restarts PostgreSQL):
# scheduler/triggerer, backfill, Celery, fresh install, invoice days, preflight pool, deployment
# (wheel, plugins folder, compose), browser and the short chaos run.
test-system: $(STAMP)
	@start=$$(date +%s); $(PY) -m pytest -m system; status=$$?; \
	  echo "make test-system: $$(( $$(date +%s) - start )) s"; exit $$status

# The static checks alone (make test runs them too, in tests/unit/test_static_checks.py): ruff's lint and
# format, and mypy, over the provider and the DAG as pyproject.toml configures them.
lint: $(STAMP)
	$(VENV)/bin/ruff check && $(VENV)/bin/ruff format --check && $(VENV)/bin/mypy

airflow: $(STAMP)
	$(PY) scripts/standalone.py

# Native CeleryExecutor on this machine (PostgreSQL + Redis): scripts/celery_stack.py runs
# devkit/inexchange_devkit/services.py with the demo's data.
celery-up: $(STAMP)
	$(PY) scripts/celery_stack.py up

celery-down: $(STAMP)
	$(PY) scripts/celery_stack.py down

bench: $(STAMP)
	@for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# The full chaos run: 100,000 invoices over a week, faults, 20 SIGKILLs, a PostgreSQL restart (tests/chaos).
chaos: $(STAMP)
	$(PY) tests/chaos/chaos.py --invoices 100000 --kills 20

# Re-resolve requirements.in into requirements.txt in a throw-away venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# Resolved lock for Python 3.11 of requirements.in (pip freeze of a clean venv); regenerate with 'make lock'."; \
	  .lock-venv/bin/pip freeze; } > requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf .demo .airflow .pytest_cache .mypy_cache .ruff_cache
