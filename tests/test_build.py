"""setup.py: the compiled engine is optional, unless the build says it is required."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SETUP = Path(__file__).resolve().parent.parent / "setup.py"

pytestmark = pytest.mark.skipif(not SETUP.exists(), reason="not a source checkout")


def _setup_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("message_io_setup", SETUP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() itself only runs as __main__
    return module


@pytest.fixture
def setup_py(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.delenv("MESSAGE_IO_NO_EXTENSIONS", raising=False)
    monkeypatch.delenv("MESSAGE_IO_REQUIRE_EXTENSIONS", raising=False)
    return _setup_module()


def test_every_compiled_module_exists_and_is_in_the_package(setup_py: ModuleType) -> None:
    src = SETUP.parent / "src"
    assert setup_py.COMPILED, "nothing to compile"
    for path in setup_py.COMPILED:
        assert (src / path).is_file(), path
        assert path.startswith("message_io/"), path


def test_no_compiled_module_awaits(setup_py: ModuleType) -> None:
    """A compiled coroutine throws into what it awaits (and a compiled generator into
    what it yields from) with the three-argument ``throw()``, deprecated since Python
    3.12: a cancelled task would get a ``DeprecationWarning`` (an error under ``-W
    error``). Coroutines stay interpreted."""
    src = SETUP.parent / "src"
    found = [
        f"{path}:{node.lineno}"
        for path in setup_py.COMPILED
        for node in ast.walk(ast.parse((src / path).read_text(), path))
        if isinstance(
            node, ast.Await | ast.YieldFrom | ast.AsyncFunctionDef | ast.AsyncFor | ast.AsyncWith
        )
    ]
    assert found == []


def test_every_c_twin_has_its_python_twin(setup_py: ModuleType) -> None:
    src = SETUP.parent / "src"
    for path in setup_py.C_TWINS:
        assert (src / path).is_file(), path
        assert (src / path).with_suffix(".py").is_file(), f"{path} has no Python twin"


def test_c_twins_are_optional_and_built_with_the_engine(setup_py: ModuleType) -> None:
    twins = setup_py._c_twins()
    assert [ext.sources for ext in twins] == [[f"src/{path}"] for path in setup_py.C_TWINS]
    assert all(ext.optional for ext in twins)
    assert {ext.name for ext in twins} >= {"message_io.network.sockio"}


def test_turned_off_builds_plain_python(
    setup_py: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGE_IO_NO_EXTENSIONS", "1")
    assert setup_py._extensions() == []


def test_without_mypyc_it_warns_and_builds_plain_python(
    setup_py: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mypyc.build", None)  # import fails
    with pytest.warns(UserWarning, match="mypyc is not installed; installing the pure-Python"):
        assert setup_py._extensions() == []


def test_a_failed_compilation_warns_and_builds_plain_python(
    setup_py: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_args: object, **_kwargs: object) -> list[object]:
        raise SystemExit(1)  # what mypycify does on a type error

    fake = ModuleType("mypyc.build")
    fake.mypycify = failing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mypyc.build", fake)
    with pytest.warns(UserWarning, match=r"mypyc failed \(SystemExit\(1\)\)"):
        assert setup_py._extensions() == []


def test_required_extensions_make_a_failure_fatal(
    setup_py: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGE_IO_REQUIRE_EXTENSIONS", "1")
    monkeypatch.setitem(sys.modules, "mypyc.build", None)
    with pytest.raises(RuntimeError, match="mypyc is not installed"):
        setup_py._extensions()
