#!/usr/bin/env bash
# Install Autobahn|Testsuite's `wstest` (Python 2.7 only) into a private virtualenv.
#
#   bash tools/autobahn/setup.sh            # installs into ${AUTOBAHN_HOME:-/tmp/wstest}
#
# Idempotent: a second run finds the working install and only prints where it is.
# Needs a CPython 2.7 (pyenv's 2.7.x, or `python2.7` on PATH; override with PY27=...),
# a Python 3 (PYTHON3=..., default python3) and a C compiler (wsaccel builds from source).
# All state (pip cache, virtualenv's app data) stays under AUTOBAHN_HOME.
# The last line printed is the wstest executable's path.
set -euo pipefail

VERSION=25.10.1
W=${AUTOBAHN_HOME:-/tmp/wstest}
WSTEST=$W/venv/bin/wstest

if [ -x "$WSTEST" ] && "$WSTEST" -a 2>/dev/null | grep -q "AutobahnTestSuite $VERSION"; then
    echo "wstest $VERSION already installed" >&2
    echo "$WSTEST"
    exit 0
fi

PY27=${PY27:-}
if [ -z "$PY27" ]; then
    PYENV_ROOT=${PYENV_ROOT:-$( (pyenv root) 2>/dev/null || echo "$HOME/.pyenv")}
    PY27=$(ls -d "$PYENV_ROOT"/versions/2.7.*/bin/python 2>/dev/null | tail -n1 || true)
fi
if [ -z "$PY27" ]; then
    PY27=$(command -v python2.7 || true)
fi
if [ -z "$PY27" ] || ! "$PY27" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    echo "setup.sh: no CPython 2.7 found (pyenv's 2.7.x or python2.7); set PY27=/path/to/python2.7" >&2
    exit 1
fi
PYTHON3=${PYTHON3:-python3}

mkdir -p "$W"
export PIP_CACHE_DIR=$W/pipcache VIRTUALENV_OVERRIDE_APP_DATA=$W/appdata
export PIP_DISABLE_PIP_VERSION_CHECK=1
# virtualenv >= 20.22 can no longer create Python 2 environments.
if [ ! -f "$W/vtool/virtualenv/__init__.py" ]; then
    "$PYTHON3" -m pip install -q --target "$W/vtool" 'virtualenv<20.22'
fi
rm -rf "$W/venv"
PYTHONPATH=$W/vtool "$PYTHON3" -m virtualenv -q -p "$PY27" "$W/venv"
"$W/venv/bin/pip" install -q "autobahntestsuite==$VERSION"
"$WSTEST" -a >&2
echo "$WSTEST"
