# Two entry points that work on a fresh machine with only Python and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo ui test system servers lint typecheck imports pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

ui: $(STAMP)
	$(BIN)/batchline ui --state demo-out/state.db --open

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/batchline

# The layer rules of DESIGN.md as import-linter contracts ([tool.importlinter] in pyproject.toml).
imports: $(STAMP)
	PYTHONPATH=src $(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

# System packages some tests need (PostgreSQL, Chromium + ChromeDriver), installed with
# apt-get when missing and run as root; elsewhere those tests skip with the reason.
system:
	@bash scripts/install-system-deps.sh

# Third-party LLM servers (LiteLLM's proxy, llmock) in their own virtualenvs, for the tests
# that check ChatModel against servers nobody here wrote.
servers:
	@PYTHON=$(PYTHON) bash scripts/install-llm-servers.sh

test: system servers lint typecheck imports pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@PYTHON=$(PYTHON) bash scripts/install-llm-servers.sh bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .venv-servers .pytest_cache .mypy_cache .ruff_cache
