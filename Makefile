# Everything a fresh machine needs: Python 3 and make. Each target builds .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The runtime dependencies only (what `make demo` and `pip install bitrix24-dlt` need): no dev tools.
RUNTIME_STAMP := $(VENV)/.runtime-stamp

.PHONY: install demo test check lint typecheck bench sandbox clean

# $(call setup,EXTRAS,WHAT): create .venv if needed and pip-install the package with EXTRAS, quietly.
define setup
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
		|| { echo "bitrix24-dlt needs Python 3.10 or newer (PYTHON=$(PYTHON))"; exit 1; }
	@echo "installing $(2) into $(VENV) (first run only; log in $(VENV)/install.log) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@( $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e ".$(1)" ) \
		> $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
endef

$(STAMP): pyproject.toml
	$(call setup,[dev],the package with its dev tools)
	@touch $(STAMP) $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	$(call setup,,the package's runtime dependencies)
	@touch $(RUNTIME_STAMP)

install: $(STAMP)

## Main job: start the sandbox portal, sync it into ./bitrix24_demo.duckdb (its own file), print what landed.
demo: $(RUNTIME_STAMP)
	$(BIN)/python pipelines/bitrix24_pipeline.py demo

## Lint, format check and type check.
check: $(STAMP)
	$(BIN)/ruff check bitrix24_source tests pipelines bench
	$(BIN)/ruff format --check bitrix24_source tests pipelines bench
	$(BIN)/mypy

## The test suite (runs `check` first). pytest's "no tests collected" (exit 5) is a failure.
test: check
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sandbox: $(STAMP)
	$(BIN)/python -m bitrix24_source sandbox --port 8024

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bitrix24_demo.duckdb
