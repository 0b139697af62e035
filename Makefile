# The two commands of the README, and the helpers they stand on.
# Each target sets up .venv by itself when it is missing or older than pyproject.toml.
# The test set-up installs the cluster extras (dask, ray) too: their tests run in CI.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.plait-installed
BENCH_STAMP := $(VENV)/.plait-bench-installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py $(wildcard plait/_core/*.c)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dask,ray]'
	$(PY) -m compileall -q plait
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dask,ray,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m plait demo

lint: $(STAMP)
	$(VENV)/bin/ruff check plait tests benchmarks examples

test: lint
	$(PY) -m pytest

bench: $(BENCH_STAMP)
	$(PY) -m compileall -q plait  # spawned children then load .pyc like the stdlib's
	$(PY) -m plait bench

clean:
	rm -rf $(VENV) build *.egg-info
