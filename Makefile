# Two commands do all the set-up: `make demo` runs the main job, `make test` the tests.
# The first one creates .venv with the pinned torch and cnnlab (editable, with the dev
# tools); later calls reuse it, and a changed pyproject.toml reinstalls.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint

demo: $(VENV)/.installed  ## the main job: the depth sweep on the bundled digits (offline)
	$(BIN)/cnnlab sweep quick-depth

test: $(VENV)/.installed  ## the test suite (about 3 minutes on 2 cores)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install "$(TORCH)" -e ".[dev]"
	touch $@
