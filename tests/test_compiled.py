"""Which engine runs: the compiled extension modules or their Python sources.

``make test`` runs the suite with the compiled engine and again with
``MESSAGE_IO_NO_EXTENSIONS=1``, and says in ``MESSAGE_IO_EXPECT`` which one each run
must get, so that a build that silently fell back to Python cannot pass as compiled.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import message_io
from message_io import _compiled
from message_io.network import loop as loop_module
from message_io.network import sockio

from .helpers import PYTHON_ENV

PACKAGE = Path(message_io.__file__).parent
# Modules that setup.py compiles: the engine's hot path.
ENGINE = ("network/loop", "network/connection", "network/driver", "codec/framing")


def _is_extension(path: str | None) -> bool:
    return path is not None and path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _built() -> bool:
    """True if this checkout or installation has the compiled engine beside its sources."""
    return any(
        (PACKAGE / (module + suffix)).exists()
        for module in ENGINE
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def _probe(package_parent: Path, **env: str) -> list[str]:
    """Import message_io from ``package_parent`` in a fresh interpreter; report
    ``COMPILED``, the engine modules' files, and any warnings."""
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import message_io\n"
        "    import message_io.network.loop, message_io.network.connection\n"
        "    import message_io.network.sockio\n"
        "print(message_io.COMPILED)\n"
        "print(message_io.network.loop.__file__)\n"
        "print(message_io.network.connection.__file__)\n"
        "print(len(caught), *(str(w.message) for w in caught))\n"
        "print(message_io.network.sockio.__file__)\n"
    )
    environment = {**PYTHON_ENV, "PYTHONPATH": str(package_parent)}
    environment.pop("MESSAGE_IO_NO_EXTENSIONS", None)  # only what the caller sets
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_running_engine_is_the_expected_one() -> None:
    loaded = _is_extension(loop_module.__file__)
    assert message_io.COMPILED is loaded
    expect = os.environ.get("MESSAGE_IO_EXPECT")
    if expect is None:
        pytest.skip("MESSAGE_IO_EXPECT not set: this run states no expectation")
    assert expect in ("compiled", "pure"), expect
    assert message_io.COMPILED is (expect == "compiled"), (
        f"expected the {expect} engine, got {loop_module.__file__}"
    )
    # The C twin comes with the compiled engine, and reads sockets directly.
    assert sockio.COMPILED is message_io.COMPILED, sockio.__file__
    assert sockio.DIRECT is message_io.COMPILED, sockio.__file__


def test_the_switch_turns_the_extensions_off_for_every_module() -> None:
    if not _built():
        pytest.skip("no compiled engine in this installation (built without a C compiler?)")
    on = _probe(PACKAGE.parent)
    assert on[0] == "True"
    assert _is_extension(on[1]) and _is_extension(on[2]), on
    assert _is_extension(on[4]), on  # the C twin of sockio.py
    off = _probe(PACKAGE.parent, MESSAGE_IO_NO_EXTENSIONS="1")
    assert off[0] == "False"
    assert off[1].endswith("loop.py") and off[2].endswith("connection.py"), off
    assert off[4].endswith("sockio.py"), off
    assert off[3] == "0", off  # turned off on purpose: nothing to warn about


def test_an_extension_older_than_its_source_is_not_used(tmp_path: Path) -> None:
    copy = _built_copy(tmp_path)
    assert _probe(tmp_path)[0] == "True"  # the copy as built runs compiled
    source = copy / "network" / "driver.py"
    extension = _own_extension(copy / "network" / "driver")
    newer = extension.stat().st_mtime + 60
    os.utime(source, (newer, newer))  # as if edited a minute after the build
    stale = _probe(tmp_path)
    assert stale[0] == "False", stale
    assert stale[1].endswith("loop.py"), stale  # all or nothing: loop.py was not edited
    assert stale[3].startswith("1 message_io: compiled modules older than their sources"), stale
    assert "driver.py" in stale[3]


def test_an_extension_older_than_its_c_source_is_not_used(tmp_path: Path) -> None:
    """sockio.c edited after the build: the engine falls back to the Python sources, as
    for an edited ``.py``, and says why."""
    copy = _built_copy(tmp_path)
    source = copy / "network" / "sockio.c"
    if not source.is_file():
        pytest.skip("an installed package: the C source stays in the source tree")
    newer = _own_extension(copy / "network" / "sockio").stat().st_mtime + 60
    os.utime(source, (newer, newer))
    stale = _probe(tmp_path)
    assert stale[0] == "False", stale
    assert stale[4].endswith("sockio.py"), stale
    assert "sockio.c" in stale[3], stale


def _built_copy(tmp_path: Path) -> Path:
    """A copy of the built package (and mypyc's runtime beside it) in ``tmp_path``; skips
    the test where there is no compiled engine."""
    if not _built():
        pytest.skip("no compiled engine in this installation (built without a C compiler?)")
    copy = tmp_path / "message_io"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for shared in PACKAGE.parent.glob("*__mypyc*"):  # mypyc's runtime, beside the package
        shutil.copy2(shared, tmp_path)
    return copy


def _own_extension(module: Path) -> Path:
    """The extension of ``module`` that this interpreter imports."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = module.with_name(module.name + suffix)
        if path.exists():
            return path
    raise AssertionError(f"no extension of {module} for this Python")


def test_another_pythons_extension_is_not_taken_for_a_stale_one(tmp_path: Path) -> None:
    """A tree built for two Pythons (make test builds 3.11 and 3.10 in place): the other
    one's extensions are never imported here, so however old they are, they do not
    make this one fall back to the sources."""
    copy = _built_copy(tmp_path)
    source = copy / "network" / "driver.py"
    other = copy / "network" / "driver.cpython-29-x86_64-linux-gnu.so"
    other.write_bytes(b"")
    older = source.stat().st_mtime - 3600
    os.utime(other, (older, older))  # built an hour before the source was last edited
    probe = _probe(tmp_path)
    assert probe[0] == "True", probe
    assert probe[3] == "0", probe  # no warning


def test_without_extensions_nothing_is_chosen(tmp_path: Path) -> None:
    copy = tmp_path / "message_io"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    assert _compiled.select(copy) is False
    plain = _probe(tmp_path)
    assert plain[0] == "False" and plain[1].endswith("loop.py"), plain
    assert plain[3] == "0", plain  # a pure installation is normal: no warning
