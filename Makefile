# Two commands do everything on a fresh machine:
#   make demo   - an echo server and clients over every transport, then exits
#   make test   - lint (ruff), types (mypy --strict), the test suite on Python 3.11 and 3.10,
#                 the built wheel's check (make wheel-check) and the docs site (make docs)
PYTHON ?= python3
# pyenv's shims only work for the selected version, so prefer the interpreter's real path.
PYTHON310 ?= $(shell ls $(HOME)/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | tail -n1 || true)
ifeq ($(PYTHON310),)
PYTHON310 := $(shell command -v python3.10 2>/dev/null)
endif
VENV := .venv
VENV310 := .venv310
STAMP := $(VENV)/.installed
STAMP310 := $(VENV310)/.installed

.PHONY: demo test lint typecheck pytest pytest310 wheel-check bench fuzz clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test,lint,bench,release,examples]'
	touch $@

$(STAMP310): pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (set PYTHON310=/path/to/python3.10)"; exit 1; }
	$(PYTHON310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q --upgrade pip
	$(VENV310)/bin/python -m pip install -q -e '.[test,examples]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/python examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples tools
	$(VENV)/bin/ruff format --check src tests benchmarks examples tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tools/autobahn  # a separate run: its run.py would clash with benchmarks/run.py

pytest: $(STAMP)
	$(VENV)/bin/python -m pytest

pytest310: $(STAMP310)
	$(VENV310)/bin/python -m pytest -q

test: lint typecheck pytest pytest310 wheel-check docs

# The release check: build the sdist and wheel, check their metadata, install the wheel
# (not editable) into a fresh virtual environment, and run the README's echo server and
# client and the command-line tool's tests against that installation.
WHEEL_VENV := .venv-wheel
wheel-check: $(STAMP)
	rm -rf dist $(WHEEL_VENV)
	$(VENV)/bin/python -m build --outdir dist . > /dev/null
	$(VENV)/bin/twine check --strict dist/*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q dist/*.whl
	MESSAGE_IO_PYTHON=$(abspath $(WHEEL_VENV))/bin/python \
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_readme.py tests/test_cli.py

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py

# The documentation site (mkdocs.yml) into site/. --strict makes every warning fatal: a
# broken link or anchor, a docstring mkdocstrings cannot parse. The docs extra goes into
# the same venv, with a stamp of its own. NO_MKDOCS_2_WARNING quiets Material's banner
# about MkDocs 2.0, which the docs extra excludes (mkdocs<2).
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/python -m pip install -q -e '.[docs]'
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# A long fuzz campaign of tests/fuzz: FUZZ_SECONDS (default 300) split among the targets,
# FUZZ_EXAMPLES (if set) caps each; failing inputs are kept in .hypothesis/fuzz.
fuzz: $(STAMP)
	MESSAGE_IO_FUZZ_SECONDS=$(or $(FUZZ_SECONDS),300) MESSAGE_IO_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	$(VENV)/bin/python -m pytest tests/fuzz -q -p no:cacheprovider \
	-o timeout=$$(( $(or $(FUZZ_SECONDS),300) + 600 ))

clean:
	rm -rf $(VENV) $(VENV310) $(WHEEL_VENV) dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
