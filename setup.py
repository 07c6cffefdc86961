"""Build message_io, with its engine compiled by mypyc when it can be.

The modules in ``COMPILED`` are ordinary, ``mypy --strict`` typed Python. mypyc turns
them into C extension modules that sit beside their sources; the sources stay in the
package and are what runs when the extensions are absent or turned off
(``MESSAGE_IO_NO_EXTENSIONS=1``, at build time or at run time).

The build never fails for want of the accelerator: with ``MESSAGE_IO_NO_EXTENSIONS=1``
set, or when mypyc or a C compiler is missing or the compilation fails, it warns and
builds the pure-Python package; ``MESSAGE_IO_REQUIRE_EXTENSIONS=1`` (``make build``)
makes such a failure fatal instead.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The engine's hot path: poll, read, decode, emit, send, and the two types it touches on
# every message (Endpoint, the connections' lock). Other public types (events, resource
# ids, configs) and the adapters stay interpreted, so users may subclass and inspect them.
COMPILED = [
    "message_io/codec/body_pool.py",
    "message_io/codec/framing.py",
    "message_io/codec/varint.py",
    "message_io/codec/ws_frames.py",
    "message_io/network/acceptor.py",
    "message_io/network/connection.py",
    "message_io/network/datagrams.py",
    "message_io/network/driver.py",
    "message_io/network/endpoint.py",
    "message_io/network/fd_table.py",
    "message_io/network/framed_reader.py",
    "message_io/network/inbox.py",
    "message_io/network/input_guard.py",
    "message_io/network/listener.py",
    "message_io/network/lock.py",
    "message_io/network/loop.py",
    "message_io/network/poller.py",
    "message_io/network/reader.py",
    "message_io/network/registry.py",
    "message_io/network/resource.py",
    "message_io/network/turner.py",
    "message_io/network/ws_reader.py",
    "message_io/util/count.py",
    "message_io/util/guarded.py",
    "message_io/util/timers.py",
]

# Hand-written C, each the twin of the ``.py`` module beside it (same functions, same
# behaviour): small system-call shims that mypyc cannot write. Optional: a failure to
# build one warns and leaves its Python twin in use.
C_TWINS = [
    "message_io/codec/mask.c",
    "message_io/network/coalesce.c",
    "message_io/network/epoll_wait.c",
    "message_io/network/new_message.c",
    "message_io/network/sockio.c",
]

HERE = Path(__file__).resolve().parent


def _flag(name: str) -> bool:
    """An environment variable set to anything but empty or ``0``."""
    return os.environ.get(name, "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """``build_ext`` that falls back to the pure-Python package instead of failing."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the pure package
            _fallback(f"the extensions did not build ({exc!r})")

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if ext.optional:  # a C twin: its Python twin serves instead
                warnings.warn(
                    f"message_io: {ext.name} did not build ({exc!r}); its Python twin is "
                    "used (slower, same behaviour)",
                    stacklevel=1,
                )
                return
            _fallback(f"{ext.name} did not build ({exc!r})")
            raise


def _fallback(why: str) -> None:
    if _flag("MESSAGE_IO_REQUIRE_EXTENSIONS"):
        raise RuntimeError(f"message_io: {why}")  # make build: a failure must show
    warnings.warn(
        f"message_io: {why}; installing the pure-Python package (slower, same behaviour)",
        stacklevel=1,
    )


def _c_twins() -> list[Any]:
    return [
        Extension(
            path.removesuffix(".c").replace("/", "."),
            [f"src/{path}"],
            optional=not _flag("MESSAGE_IO_REQUIRE_EXTENSIONS"),
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        )
        for path in C_TWINS
    ]


def _extensions() -> list[Any]:
    if _flag("MESSAGE_IO_NO_EXTENSIONS"):
        return []
    # Built with the compiled engine only: "compiled" means all of it, or none.
    twins = _c_twins()
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 - optional: the build may lack it
    except ImportError:
        _fallback("mypyc is not installed")
        return []
    try:
        return [*mypycify([f"src/{path}" for path in COMPILED], opt_level="3"), *twins]
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - it exits on a type error
        _fallback(f"mypyc failed ({exc!r})")
        return []


if __name__ == "__main__":
    setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
