"""Memory per idle connection: a server holding thousands of open, silent connections.

A client process opens the connections (WebSocket ones complete their handshake) and
sends nothing more; the server measures its resident memory before the first and once
every connection is accepted, and reports the difference per connection. The server is
a message_io node (FramedTcp, WS) or a baseline: an asyncio ``Protocol`` server on
asyncio and on uvloop, and a ``websockets`` server on asyncio.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import resource
import socket
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from bench_common import HOST, BenchmarkError, Case, Report, Row, run_async, run_pair

NAME: Final = "idle"
UNIT: Final = "KiB/connection"
TIMEOUT: Final = 120.0
TARGETS: Final = {"FramedTcp": 2.0, "WS": 6.0}  # KiB per idle connection


def connection_count(quick: bool) -> int:
    return 2_000 if quick else 5_000


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed + 100:
        if hard < needed + 100:
            raise BenchmarkError(f"{needed:,} connections need more fds than allowed ({hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss() -> int:
    """Resident memory in bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _per_connection(before: int, count: int) -> float:
    gc.collect()
    return (_rss() - before) / count / 1024


# -- servers: report(port), wait for `count` connections, return KiB per connection --


def _message_io_server(report: Report, transport_name: str, count: int) -> float:
    import message_io
    from message_io import Accepted, Transport

    _raise_fd_limit(count)
    handler, listener = message_io.split()
    _, addr = handler.network.listen(getattr(Transport, transport_name), f"{HOST}:0")
    accepted = threading.Event()
    seen = 0

    def on_event(event: Any) -> None:
        nonlocal seen
        if isinstance(event, Accepted):
            seen += 1
            if seen == count:
                accepted.set()

    task = listener.for_each_async(on_event)
    gc.collect()
    before = _rss()
    report(addr[1])
    if not accepted.wait(TIMEOUT):
        raise BenchmarkError(f"the server accepted {seen:,} of {count:,} connections")
    result = _per_connection(before, count)
    handler.stop()
    task.wait()
    return result


def _asyncio_server(report: Report, loop_name: str, count: int) -> float:
    _raise_fd_limit(count)
    transports: list[asyncio.BaseTransport] = []

    async def serve() -> float:
        done = asyncio.Event()

        class Idle(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                transports.append(transport)
                if len(transports) == count:
                    done.set()

            def data_received(self, data: bytes) -> None:
                pass

        server = await asyncio.get_running_loop().create_server(Idle, HOST, 0)
        gc.collect()
        before = _rss()
        report(server.sockets[0].getsockname()[1])
        await asyncio.wait_for(done.wait(), TIMEOUT)
        result = _per_connection(before, count)
        for transport in transports:
            transport.close()
        server.close()
        return result

    return float(run_async(loop_name, serve()))


def _websockets_server(report: Report, loop_name: str, count: int) -> float:
    from websockets.asyncio.server import ServerConnection, serve

    _raise_fd_limit(count)

    async def main() -> float:
        done = asyncio.Event()
        stop = asyncio.Event()
        opened = 0

        async def handler(_connection: ServerConnection) -> None:
            nonlocal opened
            opened += 1
            if opened == count:
                done.set()
            await stop.wait()

        async with serve(handler, HOST, 0) as server:
            gc.collect()
            before = _rss()
            report(next(iter(server.sockets)).getsockname()[1])
            await asyncio.wait_for(done.wait(), TIMEOUT)
            result = _per_connection(before, count)
            stop.set()
            server.close(close_connections=False)
            return result

    return float(run_async(loop_name, main()))


# -- the client: open `count` connections, hold them until the server closes -----------


def _client(port: int, count: int, websocket: bool) -> int:
    _raise_fd_limit(count)
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
            if websocket:
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(
                    "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
            socks.append(sock)
        if websocket:
            for sock in socks:
                if not sock.recv(4096).startswith(b"HTTP/1.1 101"):
                    raise BenchmarkError("a WebSocket handshake was refused")
        socks[0].recv(1)  # wait until the server has measured and closes
        return count
    finally:
        for sock in socks:
            sock.close()


def _sample(server: Callable[..., float], args: tuple[Any, ...], count: int, ws: bool) -> float:
    per_connection, opened = run_pair(
        server,
        _client,
        server_args=(*args, count),
        client_args=(count, ws),
        timeout=TIMEOUT + 60,
    )
    if opened != count:
        raise BenchmarkError(f"the client opened {opened} of {count} connections")
    return float(per_connection)


def cases(quick: bool) -> list[Case]:
    count = connection_count(quick)
    variants: list[tuple[str, Callable[..., float], tuple[Any, ...], bool, str | None]] = [
        ("asyncio Protocol (TCP)", _asyncio_server, ("asyncio",), False, None),
        ("uvloop Protocol (TCP)", _asyncio_server, ("uvloop",), False, None),
        ("message_io FramedTcp", _message_io_server, ("FRAMED_TCP",), False, "FramedTcp"),
        ("websockets (asyncio)", _websockets_server, ("asyncio",), True, None),
        ("message_io WS", _message_io_server, ("WS",), True, "WS"),
    ]
    result = []
    for name, server, args, ws, target in variants:
        row = Row(NAME, name, UNIT, higher_is_better=False)
        if target is not None:
            limit = TARGETS[target]
            row.target = f"<= {limit:g} KiB"
            row.target_met = lambda median, _ratio, limit=limit: median <= limit
        result.append(Case(row, partial(_sample, server, args, count, ws)))
    return result


_METHOD: Final = """\
**Memory per idle connection.** A client process opens {count} TCP connections to a
server process (WebSocket ones complete their handshake) and then sends nothing. The
server measures its resident memory (`/proc/self/statm`) after listening, before the
first connection, and again, after a garbage collection, once it has accepted all of
them; the row is the difference divided by {count}, in KiB (1,024 bytes). Kernel socket
buffers are not resident memory and are not counted; the Python objects, their
allocator's overhead and the pages they dirty are. The servers: a message_io node with
default configs (FramedTcp, WS); asyncio's own `Protocol` server (a transport and a
protocol object per connection, the least any asyncio server keeps) on asyncio and on
uvloop; the `websockets` library's asyncio server, each connection's handler waiting.
Both WebSocket servers keep their default heartbeat (a ping every 20 s). Targets: what
a server with tens of thousands of mostly silent clients can afford."""


def method_text(quick: bool) -> str:
    return _METHOD.format(count=f"{connection_count(quick):,}")
