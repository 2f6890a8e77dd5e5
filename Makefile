# Fresh-machine entry points: `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every install goes through the lock file: torch is pinned to the local CPU build (2.13.0).
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[test,dask]"
	touch $(STAMP)

# The main job on the bundled data: the paper's experiments in their quick form (about 2 minutes here).
demo: setup
	$(BIN)/fastfair reproduce --quick --out results/demo
	@echo "report: results/demo/report.html (and report.md)"

test: setup
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check src tests benchmarks examples

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

bench: setup
	$(BIN)/fastfair bench --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info
