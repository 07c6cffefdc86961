"""Which build of the engine runs: the compiled extension modules or their Python sources.

A build with a C compiler turns the engine's hot modules into extension modules (mypyc,
see ``setup.py``) that sit beside their ``.py`` sources; Python's import prefers them.
:func:`select` runs when the package is imported, before anything else, and decides
once for all of them together (compiled modules call each other directly and cannot be
mixed with interpreted ones):

- ``MESSAGE_IO_NO_EXTENSIONS=1`` in the environment: the Python sources, always;
- an extension module older than its source (a source edited since the last build): the
  Python sources, with a :class:`RuntimeWarning` that says to rebuild;
- otherwise whatever import finds: the extensions if they were built.

:data:`message_io.COMPILED` tells which one runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ENV_VAR = "MESSAGE_IO_NO_EXTENSIONS"
_PACKAGE = "message_io"
# An extension built less than this long before its source was written is still its
# build: installers write a package's files in any order, within moments.
_SLACK = 2.0


class _SourceFinder:
    """A meta path finder that loads the package's modules from their ``.py`` files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PACKAGE + "."):
            return None
        relative = Path(*fullname.split(".")[1:])
        source = self.root / relative.with_suffix(".py")
        if not source.is_file():
            return None  # a package (its __init__.py has no twin) or not ours
        return importlib.util.spec_from_file_location(fullname, source)


def _extensions(root: Path) -> list[tuple[Path, Path]]:
    """Each extension module of the package with its ``.py`` source (the package and its
    subpackages, one level deep: where the compiled modules are)."""
    # This interpreter's own suffixes, whole: another Python's build of the same tree
    # (loop.cpython-310-...so beside loop.cpython-311-...so) ends with ".so" too, but is
    # never imported here, so its age does not count.
    suffixes = set(importlib.machinery.EXTENSION_SUFFIXES)
    found: list[tuple[Path, Path]] = []
    folders = [str(root), *(entry.path for entry in os.scandir(root) if entry.is_dir())]
    for folder in folders:
        for entry in os.scandir(folder):
            stem, dot, rest = entry.name.partition(".")
            if dot and dot + rest in suffixes:
                # Its Python source, and the C source of a hand-written twin (sockio.c).
                sources = (Path(folder, stem + ".py"), Path(folder, stem + ".c"))
                found.extend((Path(entry.path), source) for source in sources if source.is_file())
    return found


def select(root: Path) -> bool:
    """Decide between the extensions and the sources of the package at ``root``.

    Returns True if the extension modules will be imported. Called once, by the
    package's ``__init__``, before it imports any compiled module.
    """
    extensions = _extensions(root)
    if not extensions:
        return False
    if os.environ.get(ENV_VAR, "") in ("", "0"):
        stale = [
            source.name
            for extension, source in extensions
            if source.stat().st_mtime > extension.stat().st_mtime + _SLACK
        ]
        if not stale:
            return True
        warnings.warn(
            "message_io: compiled modules older than their sources "
            f"({', '.join(sorted(stale))}); running the Python sources instead (rebuild: "
            f"pip install -e . or make build; or set {ENV_VAR}=1)",
            RuntimeWarning,
            stacklevel=3,
        )
    sys.meta_path.insert(0, _SourceFinder(root))
    return False


ACTIVE: bool = select(Path(__file__).parent)
"""The decision, made once when the package is first imported."""
