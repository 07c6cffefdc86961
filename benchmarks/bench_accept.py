"""Accepts per second: how fast a server takes a burst of new connections.

A client process opens ``count`` TCP connections to a server process as fast as it can
and holds them open; the server counts the connections it accepts and reports its own
rate, from its first accept to its ``count``-th. The servers:

* plain sockets: a blocking ``accept()`` loop, the least a server can do: the client's
  ceiling, for reference;
* an asyncio ``Protocol`` server (``loop.create_server``) counting ``connection_made``,
  on asyncio and on uvloop (the baseline);
* message_io FramedTcp: a node, ``Accepted`` events counted in the ``for_each`` callback;
* the ``websockets`` library's asyncio server, counting its handler's calls (each one
  then waits, keeping its connection open), on asyncio and on uvloop (the baseline of
  message_io WS);
* message_io WS: as FramedTcp, on ``Transport.WS`` (``Accepted`` comes after the
  handshake).

Every server asks for a ``listen()`` backlog of ``count``, which the kernel caps at
``net.core.somaxconn``. The client is the same for every server: blocking sockets, one
``connect`` after the other (on loopback the handshake is done when ``connect``
returns: the connection waits in the listener's accept queue); for a WebSocket server
it also sends the same upgrade request on each connection right after it connects, and
reads and checks every ``101`` answer once all are connected. A connection that finds
the accept queue full would have its SYN (or its last ACK) dropped and wait a whole
second for the retransmission, so the client never fills more than half the queue: it
reads the queue's length and size from the kernel (sock_diag, as ``ss -lnt`` shows
them) and then connects as many as fit in half of it; when none fits, it reads them
again. A run in which a connect took half a second or more fails anyway. At the end
the client resets its connections (:func:`bench_common.abort`). Both sides raise their
file-descriptor limit to the hard limit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from bench_common import (
    HOST,
    BenchmarkError,
    Case,
    Report,
    Row,
    abort,
    raise_fd_limit,
    run_async,
    run_pair,
)

__all__ = ["NAME", "cases", "connection_count", "method_text"]

NAME: Final = "accept"
UNIT: Final = "accepts/s"
TIMEOUT: Final = 60.0
BASELINE: Final = "uvloop Protocol"
PLAIN: Final = "plain sockets, blocking accept()"
WS_BASELINE: Final = "websockets, uvloop"
_STALL: Final = 0.5  # s: a connect that took this long waited for a SYN retransmission
_KEY: Final = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: any 16 bytes in base64
_UPGRADE: Final = (
    "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


def connection_count(quick: bool) -> int:
    return 2_000 if quick else 10_000


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 4096


class _Arrivals:
    """Counts the accepted connections, noting the time of the first and of the last."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.accepted = 0
        self.first = self.last = 0.0

    def arrive(self) -> bool:
        """One more accepted; True if it was the last one expected."""
        self.accepted += 1
        if self.accepted == 1:
            self.first = time.perf_counter()
        elif self.accepted == self.count:
            self.last = time.perf_counter()
            return True
        return False

    def rate(self) -> float:
        """Accepts per second from the first to the last."""
        if self.accepted != self.count:
            raise BenchmarkError(
                f"the server accepted {self.accepted:,} of {self.count:,} connections"
            )
        return (self.count - 1) / (self.last - self.first)


# -- servers: report(port), count `count` accepts, return accepts per second ----------------


def mio_server(report: Report, transport_name: str, count: int) -> float:
    import message_io
    from message_io import Accepted, FramedTcpListenConfig, Signal, Transport, WsListenConfig

    raise_fd_limit(count)
    transport = getattr(Transport, transport_name)
    config = (
        WsListenConfig(backlog=count)
        if transport is Transport.WS
        else FramedTcpListenConfig(backlog=count)
    )
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, f"{HOST}:0", config=config)
    arrivals = _Arrivals(count)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        if event.__class__ is Accepted:
            if arrivals.arrive():
                handler.stop()
        elif event.__class__ is Signal:  # the time limit: rate() says how many came
            handler.stop()

    handler.signals.send_with_timer(None, TIMEOUT)
    report(addr[1])
    listener.for_each(on_event)
    return arrivals.rate()


def asyncio_server(report: Report, loop_name: str, count: int) -> float:
    raise_fd_limit(count)

    async def main() -> float:
        done = asyncio.get_running_loop().create_future()
        arrivals = _Arrivals(count)

        class Count(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                if arrivals.arrive():
                    done.set_result(None)

        server = await asyncio.get_running_loop().create_server(Count, HOST, 0, backlog=count)
        report(server.sockets[0].getsockname()[1])
        await asyncio.wait_for(done, TIMEOUT)
        server.close()
        return arrivals.rate()

    return float(run_async(loop_name, main()))


def websockets_server(report: Report, loop_name: str, count: int) -> float:
    from websockets.asyncio.server import ServerConnection, serve

    raise_fd_limit(count)

    async def main() -> float:
        done = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        arrivals = _Arrivals(count)

        async def handler(_connection: ServerConnection) -> None:
            if arrivals.arrive():
                done.set_result(None)
            await stop.wait()

        async with serve(handler, HOST, 0, backlog=count) as server:
            report(next(iter(server.sockets)).getsockname()[1])
            await asyncio.wait_for(done, TIMEOUT)
            stop.set()
            server.close(close_connections=False)
        return arrivals.rate()

    return float(run_async(loop_name, main()))


def plain_server(report: Report, count: int) -> float:
    """The client's ceiling: a blocking ``accept()`` loop, the least a server can do."""
    raise_fd_limit(count)
    conns: list[socket.socket] = []
    with socket.create_server((HOST, 0), backlog=count) as lsock:
        report(lsock.getsockname()[1])
        accept = lsock.accept
        arrivals = _Arrivals(count)
        for _ in range(count):
            conn, _ = accept()
            arrivals.arrive()
            conns.append(conn)
    for conn in conns:
        conn.close()
    return arrivals.rate()


# -- the client: `count` connections, as fast as the accept queue has room for them -------

_NETLINK_SOCK_DIAG: Final = 4
_SOCK_DIAG_BY_FAMILY: Final = 20
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_NLM_F_REQUEST_DUMP: Final = 0x1 | 0x300
_TCP_LISTEN: Final = 10


class AcceptQueue:
    """The accept queue of the TCP listener on ``127.0.0.1:port``, read with sock_diag
    (the kernel's socket dump, what ``ss -lnt`` shows as Recv-Q and Send-Q)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
        # struct inet_diag_req_v2: listening TCP/IPv4 sockets whose local port is `port`
        body = struct.pack("=BBBxI", socket.AF_INET, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
        body += (
            struct.pack("!HH", port, 0) + bytes(32) + struct.pack("=III", 0, 2**32 - 1, 2**32 - 1)
        )
        header = struct.pack(
            "=IHHII", 16 + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0
        )
        self._request = header + body

    def read(self) -> tuple[int, int]:
        """``(connections waiting for accept, the backlog)`` of the listener."""
        self._sock.send(self._request)
        found: tuple[int, int] | None = None
        while True:
            data = self._sock.recv(65536)
            pos = 0
            while pos < len(data):
                length, kind = struct.unpack_from("=IH", data, pos)
                if kind == _NLMSG_DONE:
                    if found is None:
                        raise BenchmarkError("sock_diag: the listener is gone")
                    return found
                if kind == _NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", data, pos + 16)
                    raise OSError(-error, f"sock_diag: {os.strerror(-error)}")
                if kind == _SOCK_DIAG_BY_FAMILY:  # struct inet_diag_msg: idiag_rqueue, _wqueue
                    waiting, backlog = struct.unpack_from("=II", data, pos + 16 + 56)
                    found = waiting, backlog
                pos += (length + 3) & ~3

    def close(self) -> None:
        self._sock.close()


def client(port: int, count: int, websocket: bool) -> float:
    """Open ``count`` connections, never more at once than the accept queue has room
    for; hold them until the server is done. Return the longest ``connect``, in s."""
    raise_fd_limit(count)
    address = (HOST, port)
    queue = AcceptQueue(port)
    socks: list[socket.socket] = []
    longest = 0.0
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(socks) < count:
            waiting, backlog = queue.read()
            # The kernel queues up to backlog + 1 connections and drops the SYN (or the
            # last ACK) of any more. Half of it: a connect returns once it has sent its
            # last ACK, which the listener may not have had yet (on a busy machine the
            # kernel defers that work to a thread), so `waiting` may be short.
            room = min(backlog // 2 - waiting, count - len(socks))
            if room <= 0:  # the server is behind: ask again (it cannot call back)
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"the server accepted no more ({len(socks):,} made)")
                continue
            for _ in range(room):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                t0 = time.perf_counter()
                sock.connect(address)
                longest = max(longest, time.perf_counter() - t0)
                if websocket:
                    sock.sendall(_UPGRADE)
        for sock in socks:
            sock.settimeout(TIMEOUT)
        if websocket:
            for sock in socks:
                if not sock.recv(4096).startswith(b"HTTP/1.1 101"):
                    raise BenchmarkError("a WebSocket handshake was refused")
        socks[0].recv(1)  # until the server, done, exits and its connections close
    finally:
        queue.close()
        abort(socks)
    return longest


def _sample(server: Callable[..., float], args: tuple[Any, ...], count: int, ws: bool) -> float:
    rate, longest = run_pair(
        server,
        client,
        server_args=(*args, count),
        client_args=(count, ws),
        timeout=TIMEOUT + 30,
    )
    if longest > _STALL:
        raise BenchmarkError(
            f"a connect took {longest:.1f} s: the accept queue was full and its SYN dropped"
        )
    return float(rate)


def cases(quick: bool) -> list[Case]:
    count = connection_count(quick)
    variants: list[tuple[str, Callable[..., float], tuple[Any, ...], bool, str | None]] = [
        (PLAIN, plain_server, (), False, None),
        ("asyncio Protocol", asyncio_server, ("asyncio",), False, None),
        (BASELINE, asyncio_server, ("uvloop",), False, None),
        ("message_io FramedTcp", mio_server, ("FRAMED_TCP",), False, BASELINE),
        ("websockets, asyncio", websockets_server, ("asyncio",), True, None),
        (WS_BASELINE, websockets_server, ("uvloop",), True, None),
        ("message_io WS", mio_server, ("WS",), True, WS_BASELINE),
    ]
    return [
        Case(
            Row(NAME, name, UNIT, higher_is_better=True, baseline=baseline),
            partial(_sample, server, args, count, ws),
        )
        for name, server, args, ws, baseline in variants
    ]


_METHOD: Final = """\
**Accepts per second.** A client process opens {count} TCP connections to a server
process, one blocking `connect` after the other, and holds them open; the server counts
the connections it accepts, and a sample is its own rate, from its first accept to its
{count}-th. Every server asks for a `listen()` backlog of {count}, which the kernel caps
at `net.core.somaxconn` ({somaxconn} here). On loopback the handshake is done when
`connect` returns, and the connection waits in the listener's accept queue; one that
found the queue full would have its SYN (or its last ACK) dropped and wait a second for
the retransmission. So the client reads the queue's length and size from the kernel
(sock_diag: what `ss -lnt` shows) and makes only as many connections as fill it to half
(the other half for last ACKs the listener has not processed yet: on a busy machine the
kernel defers that work), then reads them again: the server always has connections
waiting and sets the pace, up to the client's own rate. The servers: a message_io node
with default configs but the backlog, `Accepted` events counted in its `for_each`
callback (FramedTcp; WS, whose `Accepted` comes after the opening handshake); asyncio's
`Protocol` server (`loop.create_server`, `connection_made` counted) on asyncio and on
uvloop; the `websockets` library's asyncio server on asyncio and on uvloop, its handler
counting and then waiting; and a blocking `accept()` loop on a plain socket, the least
a server can do, which shows the client's ceiling. For a WebSocket server the client
sends the same upgrade request on each connection right after `connect`, and reads and
checks every `101` answer once all are connected; it connects far faster than these
servers complete handshakes. The baseline of FramedTcp is uvloop's `Protocol` server,
that of WS the websockets server on uvloop."""


def method_text(quick: bool) -> str:
    return _METHOD.format(count=f"{connection_count(quick):,}", somaxconn=f"{_somaxconn():,}")
