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

demo: setup
	$(BIN)/fastfair train --dataset unfair2d --epochs 20 --batch-size 5
	$(BIN)/fastfair train --dataset adult --epochs 2 --batch-size 100 --train-size 10000

test: setup
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check src tests benchmarks examples

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

bench: setup
	$(BIN)/fastfair bench --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info
