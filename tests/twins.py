"""The C twins' tests: each case runs on the Python twin, and on the C twin when the
compiled engine is built."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def python_twin(module: ModuleType) -> ModuleType:
    """The ``.py`` twin of ``module``, loaded afresh whichever twin the package imported
    (under a name inside the package, for its relative imports)."""
    source = Path(module.__file__ or "").with_name(module.__name__.rpartition(".")[2] + ".py")
    spec = importlib.util.spec_from_file_location(f"{module.__name__}_python_twin", source)
    assert spec is not None and spec.loader is not None
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    return twin


def twins(module: ModuleType) -> list[object]:
    """``pytest.param``s of the Python twin, and of ``module`` if it is the C twin."""
    params: list[object] = [pytest.param(python_twin(module), id="python")]
    if getattr(module, "COMPILED", False):
        params.append(pytest.param(module, id="c"))
    return params


def same_names(module: ModuleType) -> None:
    """The C twin ``module`` offers exactly the Python twin's ``__all__``."""
    python = python_twin(module)
    assert all(hasattr(python, name) for name in python.__all__)
    if getattr(module, "COMPILED", False):
        assert {name for name in dir(module) if not name.startswith("_")} == set(python.__all__)
