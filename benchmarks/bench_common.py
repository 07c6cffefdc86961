"""What every benchmark shares: two-process runs, time bounds, statistics, result rows.

Each measurement runs its two ends in two fresh processes (forked from a fork server):
a *server* that listens on ``127.0.0.1:0`` and reports its port, and a *client* that
connects to it. Each side reports one result (or its traceback) through a pipe; the
parent enforces a deadline and kills both sides if it passes, so a stuck benchmark fails
instead of hanging.

Timestamps are ``time.perf_counter()``, which on Linux is ``CLOCK_MONOTONIC``: one clock
for the whole machine, so a start taken in one process and an end taken in another can be
subtracted.
"""

from __future__ import annotations

import asyncio
import cProfile
import multiprocessing
import os
import resource
import socket
import statistics
import struct
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from message_io import (
    FramedTcpConnectConfig,
    FramedTcpListenConfig,
    TcpConnectConfig,
    TcpListenConfig,
    Transport,
)

__all__ = [
    "HOST",
    "BenchmarkError",
    "Case",
    "Report",
    "Row",
    "Stats",
    "abort",
    "configs",
    "raise_fd_limit",
    "run_async",
    "run_one",
    "run_pair",
]

HOST: Final = "127.0.0.1"

# Each side is forked from a fork server: a fresh interpreter that imported only the
# benchmark modules (and message_io). So every side starts from the same interpreter and
# allocator state whatever the parent did before (``fork`` from the parent would inherit
# its malloc state). Then each side raises glibc's mmap threshold (_settle_malloc), as
# the first free of a large block does for good in any long-running program.
_SETTLE_BLOCK: Final = 1 << 20  # above every read buffer here, below glibc's 32 MiB cap
_ctx = multiprocessing.get_context("forkserver")
_ctx.set_forkserver_preload(["bench_latency", "bench_stream", "bench_udp"])

PROFILE_DIR: Path | None = None
"""When set (``run.py --profile DIR``), each side runs under cProfile and dumps its stats
here as ``<function>-<args>-<pid>.prof`` (slower: for finding hot spots, not for numbers)."""

Report = Callable[[Any], None]
"""What a server side calls once with its port (before serving)."""


class BenchmarkError(RuntimeError):
    """A benchmark failed: a side raised, lost data, died, or ran out of time."""


@dataclass(frozen=True)
class Stats:
    """The median, min and max of repeated measurements of one quantity."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


@dataclass
class Row:
    """One line of the results table: a variant and its repeated measurements.

    ``higher_is_better`` says which way the unit goes (µs: lower; msgs/s, GB/s: higher).
    ``baseline`` names the row this one is compared with (None for a baseline itself); the
    ratio is always message_io / plain in the row's unit, whatever the direction.
    """

    benchmark: str
    name: str
    unit: str
    higher_is_better: bool
    baseline: str | None = None
    target: str = ""
    target_met: Callable[[float, float | None], bool] | None = None
    """Given the median and the ratio to the baseline, is the target met?"""
    samples: list[float] = field(default_factory=list)

    @property
    def stats(self) -> Stats:
        return Stats(tuple(self.samples))


def configs(transport: Transport, *, nodelay: bool = True) -> tuple[Any, Any]:
    """The ``(connect_config, listen_config)`` of ``transport`` with ``nodelay`` set."""
    if transport is Transport.FRAMED_TCP:
        return FramedTcpConnectConfig(nodelay=nodelay), FramedTcpListenConfig(nodelay=nodelay)
    if transport is Transport.TCP:
        return TcpConnectConfig(nodelay=nodelay), TcpListenConfig(nodelay=nodelay)
    raise ValueError(f"no benchmark configs for {transport!r}")


_LINGER_OFF: Final = struct.pack("ii", 1, 0)  # struct linger: on, 0 s


def abort(socks: Iterable[socket.socket]) -> None:
    """Close ``socks`` with a reset (``SO_LINGER`` 0): nothing lingers on either side.

    For a side that ends thousands of connections: a normal close leaves each one to the
    FIN handshake, whose packets the kernel drops when its loopback backlog is full (1,000
    by default) and sends again later, in bursts that can drop packets of the next run, a
    SYN among them (a 1 s wait). A reset needs no answer: the peer's socket is gone at
    once, however the peer closes it later.
    """
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
        sock.close()


def raise_fd_limit(connections: int) -> None:
    """Raise this process's soft limit of open files to its hard limit, for a side
    holding ``connections`` sockets; :class:`BenchmarkError` if even that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < connections + 100:
        raise BenchmarkError(f"{connections:,} connections need more fds than allowed ({hard})")
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_async(loop: str, main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` on a new event loop of kind ``loop`` (``asyncio`` or ``uvloop``)."""
    if loop == "uvloop":
        import uvloop  # optional; imported only by the processes that use it

        return uvloop.run(main)
    return asyncio.run(main)


def _describe(args: Sequence[Any]) -> str:
    parts = [arg.name if isinstance(arg, Transport) else str(arg) for arg in args]
    return "-".join(part for part in parts if part.isidentifier() or part.isdigit())


def _settle_malloc() -> None:
    """Put glibc's malloc in the state of a long-running program: until a block served
    by ``mmap`` (128 KiB or more) is freed, every such block costs an ``mmap`` and a
    ``munmap`` (asyncio's transports read into 256 KiB: its ``Protocol`` echo takes twice
    as long); the first free raises the threshold to that block's size for good. When
    it happens depended on what the fork server's imports did, so it is done here, the
    same for every side."""
    block = bytearray(_SETTLE_BLOCK)
    del block


def _child(
    target: Callable[..., Any],
    conn: Connection,
    args: Sequence[Any],
    *,
    cpus: frozenset[int] | None,
    is_server: bool,
    profile_dir: Path | None,
) -> None:
    try:
        _settle_malloc()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

        def report(value: Any) -> None:
            conn.send(("port", value))

        call_args = (report, *args) if is_server else tuple(args)
        if profile_dir is None:
            result = target(*call_args)
        else:
            profile = cProfile.Profile()
            try:
                result = profile.runcall(target, *call_args)
            finally:
                described = _describe(args if is_server else args[1:])  # not the port
                name = f"{target.__name__}-{described}-{os.getpid()}.prof"
                profile.dump_stats(profile_dir / name)
        conn.send(("result", result))
    except BaseException:  # noqa: BLE001 - handed to the parent, which fails loudly
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _expect(conn: Connection, kind: str, deadline: float, who: str) -> Any:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not conn.poll(remaining):
        raise BenchmarkError(f"{who}: no {kind} before the time limit")
    try:
        tag, value = conn.recv()
    except EOFError:
        raise BenchmarkError(f"{who}: the process died without reporting") from None
    if tag == "error":
        raise BenchmarkError(f"{who} failed:\n{value}")
    if tag != kind:
        raise BenchmarkError(f"{who}: expected {kind}, got {tag}")
    return value


def run_pair(
    server_side: Callable[..., Any],
    client_side: Callable[..., Any],
    *,
    server_args: Sequence[Any] = (),
    client_args: Sequence[Any] = (),
    pin_cpu0: bool = False,
    pin_apart: bool = False,
    timeout: float = 60.0,
) -> tuple[Any, Any]:
    """Run a server and a client in two processes; return ``(server_result, client_result)``.

    The server is called as ``server_side(report, *server_args)`` and must call
    ``report(port)`` once it listens; the client as ``client_side(port, *client_args)``.
    ``pin_cpu0`` pins both processes to CPU 0; ``pin_apart`` pins the client to CPU 0 and
    the server to CPU 1 (if the machine has two CPUs; else neither is pinned).
    Both sides must finish within ``timeout`` seconds; otherwise both are killed and
    :class:`BenchmarkError` is raised, as it is when either side raises or dies.
    """
    deadline = time.monotonic() + timeout
    s_parent, s_child = _ctx.Pipe()
    c_parent, c_child = _ctx.Pipe()
    server_cpus = client_cpus = None
    if pin_cpu0:
        server_cpus = client_cpus = frozenset({0})
    elif pin_apart and len(os.sched_getaffinity(0) & {0, 1}) == 2:
        server_cpus, client_cpus = frozenset({1}), frozenset({0})
    options = {"profile_dir": PROFILE_DIR}
    sproc = _ctx.Process(
        target=_child,
        args=(server_side, s_child, server_args),
        kwargs={**options, "cpus": server_cpus, "is_server": True},
        daemon=True,
    )
    cproc: Any = None
    try:
        sproc.start()
        s_child.close()
        port = _expect(s_parent, "port", deadline, "server")
        cproc = _ctx.Process(
            target=_child,
            args=(client_side, c_child, (port, *client_args)),
            kwargs={**options, "cpus": client_cpus, "is_server": False},
            daemon=True,
        )
        cproc.start()
        c_child.close()
        client_result = _expect(c_parent, "result", deadline, "client")
        server_result = _expect(s_parent, "result", deadline, "server")
        for proc in (cproc, sproc):
            proc.join(max(0.1, deadline - time.monotonic()))
        return server_result, client_result
    finally:
        for proc in (cproc, sproc):
            if proc is not None and proc.is_alive():
                proc.kill()
                proc.join()
        for end in (s_parent, s_child, c_parent, c_child):
            end.close()


def run_one(target: Callable[..., Any], *args: Any, timeout: float = 60.0) -> Any:
    """Run ``target(*args)`` in a process of its own (as each side of :func:`run_pair`);
    return its result. :class:`BenchmarkError` if it raises, dies or outlasts ``timeout``
    seconds (it is then killed)."""
    deadline = time.monotonic() + timeout
    parent, child = _ctx.Pipe()
    proc = _ctx.Process(
        target=_child,
        args=(target, child, args),
        kwargs={"profile_dir": PROFILE_DIR, "cpus": None, "is_server": False},
        daemon=True,
    )
    try:
        proc.start()
        child.close()
        result = _expect(parent, "result", deadline, target.__name__)
        proc.join(max(0.1, deadline - time.monotonic()))
        return result
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
        child.close()


@dataclass
class Case:
    """One variant to measure: its table row and a function returning one sample."""

    row: Row
    measure: Callable[[], float]
    extra_rows: tuple[Row, ...] = ()
    """Rows that ``measure`` fills itself, one sample per call, from the same run (what
    arrived of a UDP send, say); they follow ``row`` in the table."""
