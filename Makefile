# Two commands do all the set-up: `make demo` runs the main job, `make test` the tests.
# The first one creates .venv with the pinned torch and cnnlab (editable, with the dev
# tools); later calls reuse it, and a changed pyproject.toml reinstalls.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# the pyproject extras to install; CI (.ci/run) adds the Ray backend: EXTRAS=dev,ray
EXTRAS ?= dev
BIN := $(VENV)/bin
comma := ,
# one stamp per set of extras: a venv made without ray gets it when asked
INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test lint

demo: $(INSTALLED)  ## the main job: the depth sweep on the bundled digits (offline)
	$(BIN)/cnnlab sweep quick-depth

test: $(INSTALLED)  ## the test suite (about 3 minutes on 2 cores)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check src tests benchmarks

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install "$(TORCH)" -e ".[$(EXTRAS)]"
	touch $@
