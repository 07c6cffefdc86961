# Two commands do everything on a fresh machine:
#   make demo   - an echo server and clients over every transport, then exits
#   make test   - lint (ruff), types (mypy --strict), the test suite on Python 3.11 (with the
#                 compiled engine, then without it) and 3.10, the compiled engine's tests
#                 and the awaitable API's on the newest Python (3.13), the built wheel's
#                 check (make wheel-check) and the docs site (make docs)
PYTHON ?= python3
# pyenv's shims only work for the selected version, so prefer the interpreter's real path.
PYTHON310 ?= $(shell ls $(HOME)/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | tail -n1 || true)
ifeq ($(PYTHON310),)
PYTHON310 := $(shell command -v python3.10 2>/dev/null)
endif
# The newest Python the package supports: what most new users run.
PYTHON_NEWEST ?= $(shell ls $(HOME)/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | tail -n1 || true)
ifeq ($(PYTHON_NEWEST),)
PYTHON_NEWEST := $(shell command -v python3.13 2>/dev/null)
endif
VENV := .venv
VENV310 := .venv310
VENV_NEWEST := .venv-newest
STAMP := $(VENV)/.installed
STAMP310 := $(VENV310)/.installed
STAMP_NEWEST := $(VENV_NEWEST)/.installed
BUILT := $(VENV)/.built
BUILT310 := $(VENV310)/.built
BUILT_NEWEST := $(VENV_NEWEST)/.built
# What the build tools need to compile the engine in place (setup.py, pyproject.toml).
BUILD_TOOLS := pip "setuptools>=77" "mypy>=1.15" "websockets>=14"
# The modules setup.py compiles, and its C twins with their Python twins: a change to
# one of them rebuilds the extensions.
COMPILED_SOURCES := $(shell sed -n 's@^    "\(message_io/.*\.\(py\|c\)\)",$$@src/\1@p' setup.py)
COMPILED_SOURCES += $(patsubst %.c,%.py,$(filter %.c,$(COMPILED_SOURCES)))

.PHONY: demo build test lint typecheck pytest pytest310 pytest-newest wheel-check bench instructions fuzz fuzz-ws valgrind clean docs

# The editable installs skip the compilation (MESSAGE_IO_NO_EXTENSIONS=1): $(BUILT) does
# it, and again whenever a compiled module changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade $(BUILD_TOOLS)
	MESSAGE_IO_NO_EXTENSIONS=1 $(VENV)/bin/python -m pip install -q -e '.[test,lint,bench,release,examples]'
	touch $@

$(STAMP310): pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (set PYTHON310=/path/to/python3.10)"; exit 1; }
	$(PYTHON310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q --upgrade $(BUILD_TOOLS)
	MESSAGE_IO_NO_EXTENSIONS=1 $(VENV310)/bin/python -m pip install -q -e '.[test,examples]'
	touch $@

$(STAMP_NEWEST): pyproject.toml
	@test -n "$(PYTHON_NEWEST)" || { echo "Python 3.13 not found (set PYTHON_NEWEST=/path/to/python3.13)"; exit 1; }
	$(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/python -m pip install -q --upgrade $(BUILD_TOOLS)
	MESSAGE_IO_NO_EXTENSIONS=1 $(VENV_NEWEST)/bin/python -m pip install -q -e '.[test]'
	touch $@

# The compiled engine, built in place beside its sources (about 40 s per Python).
$(BUILT): $(STAMP) setup.py $(COMPILED_SOURCES)
	MESSAGE_IO_REQUIRE_EXTENSIONS=1 $(VENV)/bin/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

$(BUILT310): $(STAMP310) setup.py $(COMPILED_SOURCES)
	MESSAGE_IO_REQUIRE_EXTENSIONS=1 $(VENV310)/bin/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

$(BUILT_NEWEST): $(STAMP_NEWEST) setup.py $(COMPILED_SOURCES)
	MESSAGE_IO_REQUIRE_EXTENSIONS=1 $(VENV_NEWEST)/bin/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILT)

demo: $(BUILT)
	$(VENV)/bin/python examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples tools setup.py
	$(VENV)/bin/ruff format --check src tests benchmarks examples tools setup.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tools/autobahn  # a separate run: its run.py would clash with benchmarks/run.py

# MESSAGE_IO_EXPECT tells tests/test_compiled.py which engine must be running.
pytest: $(BUILT)
	MESSAGE_IO_EXPECT=compiled $(VENV)/bin/python -m pytest
	MESSAGE_IO_NO_EXTENSIONS=1 MESSAGE_IO_EXPECT=pure $(VENV)/bin/python -m pytest -q

# PYTHONMALLOC=debug: CPython's debug allocator catches the compiled code's buffer
# overruns, double frees and API misuse as they happen.
pytest310: $(BUILT310)
	PYTHONMALLOC=debug MESSAGE_IO_EXPECT=compiled $(VENV310)/bin/python -m pytest -q

# The newest Python, where the compiled engine meets what older ones lack (such as the
# deprecation of the three-argument throw() that compiled coroutines used): the engine's
# build, the awaitable API on asyncio, uvloop and trio, the node's core behaviour, and the
# hand-written C twins (which reach into CPython's object layout: Message's deallocator).
NEWEST_TESTS := tests/test_compiled.py tests/test_build.py tests/test_asyncio.py \
	tests/test_awaitable_core.py tests/test_trio.py tests/test_node.py tests/test_api.py \
	tests/network/test_new_message.py tests/network/test_sockio.py \
	tests/network/test_epoll_wait.py tests/network/test_coalesce.py tests/codec/test_mask.py
pytest-newest: $(BUILT_NEWEST)
	MESSAGE_IO_EXPECT=compiled $(VENV_NEWEST)/bin/python -m pytest -q $(NEWEST_TESTS)

test: lint typecheck pytest pytest310 pytest-newest wheel-check docs

# The release check: build the sdist and wheel (the wheel from the sdist, compiling the
# engine), check their metadata, install the wheel (not editable) into a fresh virtual
# environment, check that its engine is compiled, and run the README's echo server and
# client and the command-line tool's tests against that installation.
WHEEL_VENV := .venv-wheel
wheel-check: $(STAMP)
	rm -rf dist $(WHEEL_VENV)
	MESSAGE_IO_REQUIRE_EXTENSIONS=1 $(VENV)/bin/python -m build --outdir dist . > /dev/null
	$(VENV)/bin/twine check --strict dist/*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q dist/*.whl
	$(WHEEL_VENV)/bin/python -c 'import message_io, message_io.network.sockio as c, sys; \
	sys.exit(not (message_io.COMPILED and c.COMPILED and c.DIRECT))' \
	|| { echo "the wheel's engine is not compiled"; exit 1; }
	MESSAGE_IO_PYTHON=$(abspath $(WHEEL_VENV))/bin/python \
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_readme.py tests/test_cli.py

bench: $(BUILT)
	$(VENV)/bin/python benchmarks/run.py

# Instructions per round trip and per message received, counted by callgrind (valgrind):
# a figure the machine's noise does not move, to compare two versions of the engine
# (PYTHONPATH=other/src make instructions). About 10 minutes.
instructions: $(BUILT)
	$(VENV)/bin/python benchmarks/instructions.py

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
fuzz: $(BUILT)
	MESSAGE_IO_FUZZ_SECONDS=$(or $(FUZZ_SECONDS),300) MESSAGE_IO_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	$(VENV)/bin/python -m pytest tests/fuzz -q -p no:cacheprovider \
	-o timeout=$$(( $(or $(FUZZ_SECONDS),300) + 600 ))

# The differential campaign of the WebSocket frame input against websockets' own parser:
# FUZZ_CASES inputs (a million by default, about 4 minutes), from seed FUZZ_SEED; the
# smallest input of each kind of behaviour is kept in .hypothesis/fuzz/ws_frames.jsonl
# (copy it over tests/fuzz/corpus/ws_frames.jsonl to have the test suite replay it).
fuzz-ws: $(BUILT)
	$(VENV)/bin/python -m tests.fuzz.ws_differential --cases $(or $(FUZZ_CASES),1000000) \
	--seed $(or $(FUZZ_SEED),1) --corpus .hypothesis/fuzz/ws_frames.jsonl

# The compiled engine under valgrind's memcheck, once: the churn tests (connections
# opened and closed on every transport), the WebSocket frame input's fuzz targets and
# the hand-written C twins' own tests (sockio, epoll_wait, new_message, mask, coalesce) and the lock's, with Python's allocator off (PYTHONMALLOC=malloc) so that memcheck sees every block.
# Fails on a failed test, a definite leak, or an invalid write or free. CPython itself
# makes memcheck report uses of uninitialised values (in int and json internals) and
# glibc's AVX2 wmemcmp reads past a string's end: reported in the log, not failed.
# One test is left out: under valgrind a signal sent to the main thread does not
# interrupt its epoll_wait (select.epoll.poll's own wait included), so the test of a
# wait that goes on after a signal handler waits out its timeout. About 4 minutes.
VALGRIND_LOG := .valgrind.log
valgrind: $(BUILT)
	PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
	--log-file=$(VALGRIND_LOG) $(VENV)/bin/python -m pytest -q -p no:cacheprovider \
	-o timeout=1800 tests/network/test_churn.py tests/fuzz/test_fuzz_ws_frames.py \
	tests/network/test_sockio.py tests/network/test_datagram_reader.py tests/network/test_epoll_wait.py \
	tests/network/test_new_message.py tests/network/test_lock.py tests/codec/test_mask.py \
	tests/network/test_coalesce.py \
	-k "not test_a_signal_that_does_not_raise_lets_the_wait_go_on"
	@grep -E "definitely lost|ERROR SUMMARY" $(VALGRIND_LOG)
	@! grep -qE "definitely lost: [1-9]|Invalid write|Invalid free|Mismatched free" $(VALGRIND_LOG) \
	|| { echo "memcheck found errors: see $(VALGRIND_LOG)"; exit 1; }

clean:
	rm -rf $(VENV) $(VENV310) $(VENV_NEWEST) $(WHEEL_VENV) dist build .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find src -name '*.so' -delete
