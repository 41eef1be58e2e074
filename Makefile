# The README's two commands are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench docs screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ems demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_control_loop.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_flood.py

docs: $(STAMP)
	$(BIN)/python -m drivers.profile_docs > docs/register-maps.md

# the dashboard on the real-time HIL site, after its first paint and after a forced 0 W, and with the demo's
# ramp limit and the fast smoothing loop (headless Chromium)
screenshots: $(STAMP)
	EMS_DASHBOARD_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/browser/test_dashboard_hil.py tests/browser/test_dashboard_smoothing.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
