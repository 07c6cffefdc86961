"""1-byte round-trip latency: message_io echo vs plain blocking sockets.

Both processes are pinned to CPU 0, so a round trip is the work of both sides plus two
context switches on one core (unpinned, the cost of waking the other core dominates and
varies from run to run). The client sends one 1-byte message, waits for the echo, sends
the next: ``warmup`` round trips first, then ``count`` timed ones; the result is the
mean time of one round trip, in µs, measured inside the client.

* message_io: the client sends the next ping from its callback on each ``Message``; the
  server echoes from its callback. Both run ``for_each`` on their main thread and
  dispatch with ``event.__class__ is Message``, as a consumer that cares about speed
  would (``use_match``: the documented ``match event: case Message(...)``, which costs
  CPython 3.11 about 0.2 µs more per event).
* plain: blocking sockets, ``TCP_NODELAY`` on (as message_io by default). TCP: client
  ``sendall`` + ``recv``, server ``recv`` + ``sendall``. Framed: the same with a 1-byte
  varint length prefix put on and parsed by hand, on both sides.
* nodelay off: message_io with ``nodelay=False`` on both ends (Nagle's algorithm on).
* 2-write request: each request is two 1-byte messages written by two flushes of the
  client's loop (one sent from the callback of the previous reply, one from the callback
  of a signal), and the server answers once it has both. With Nagle's algorithm the
  second write waits for the ACK of the first, which the server delays (it has nothing
  to answer yet): this is the case that justifies ``nodelay=True`` by default.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench_common import HOST, BenchmarkError, Case, Report, Row, configs, run_pair

import message_io
from message_io import Connected, Disconnected, Endpoint, Message, Signal, Transport

__all__ = ["Rounds", "cases", "counts", "measure"]

_PAYLOAD = b"x"
_SPLIT_REPLY = b"ok"


# -- plain sockets ---------------------------------------------------------------------------


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _read_frame(sock: socket.socket, buf: bytearray) -> bytes | None:
    """Read one frame with a 1-byte varint header from ``sock``; ``buf`` keeps the excess.

    Returns the payload, or None at end of stream.
    """
    while True:
        if buf:
            size = buf[0]
            if size >= 0x80:
                raise BenchmarkError("the benchmark frames only carry 1-byte headers")
            if len(buf) > size:
                payload = bytes(buf[1 : 1 + size])
                del buf[: 1 + size]
                return payload
        data = sock.recv(65536)
        if not data:
            return None
        if not buf and len(data) == data[0] + 1:  # the usual case: exactly one frame
            return data[1:]
        buf += data


def plain_echo_server(report: Report, framed: bool) -> int:
    with socket.create_server((HOST, 0)) as lsock:
        report(lsock.getsockname()[1])
        sock, _ = lsock.accept()
    echoes = 0
    with sock:
        _nodelay(sock)
        if framed:
            buf = bytearray()
            while (payload := _read_frame(sock, buf)) is not None:
                sock.sendall(bytes((len(payload),)) + payload)
                echoes += 1
        else:
            while data := sock.recv(65536):
                sock.sendall(data)
                echoes += len(data)
    return echoes


def plain_ping_client(port: int, framed: bool, warmup: int, count: int) -> float:
    with socket.create_connection((HOST, port)) as sock:
        _nodelay(sock)
        t0 = 0.0
        if framed:
            buf = bytearray()
            frame = bytes((len(_PAYLOAD),)) + _PAYLOAD
            for i in range(warmup + count):
                if i == warmup:
                    t0 = time.perf_counter()
                sock.sendall(frame)
                if _read_frame(sock, buf) != _PAYLOAD:
                    raise BenchmarkError("wrong echo")
        else:
            for i in range(warmup + count):
                if i == warmup:
                    t0 = time.perf_counter()
                sock.sendall(_PAYLOAD)
                if sock.recv(65536) != _PAYLOAD:
                    raise BenchmarkError("wrong echo")
        return (time.perf_counter() - t0) / count


# -- message_io ------------------------------------------------------------------------------


def mio_echo_server(
    report: Report, transport: Transport, nodelay: bool, *, use_match: bool = False
) -> int:
    """Echo every message; stop when the client goes. ``use_match``: dispatch with the
    documented ``match`` instead of the fast consumer's class test."""
    handler, listener = message_io.split()
    _, listen_config = configs(transport, nodelay=nodelay)
    _, addr = handler.network.listen(transport, f"{HOST}:0", config=listen_config)
    report(addr[1])
    send = handler.network.send
    echoes = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        # A fast consumer's dispatch: a class test, then the attributes it needs. (A
        # positional class pattern costs CPython 3.11 about 0.2 µs more per event.)
        nonlocal echoes
        if event.__class__ is Message:
            data = event.data
            send(event.endpoint, data)
            echoes += len(data)
        elif event.__class__ is Disconnected:
            handler.stop()

    def on_event_match(event: message_io.NodeEvent[Any]) -> None:
        nonlocal echoes
        match event:
            case Message(endpoint, data):
                send(endpoint, data)
                echoes += len(data)
            case Disconnected():
                handler.stop()

    listener.for_each(on_event_match if use_match else on_event)
    return echoes


class Rounds:
    """Counts the echoes of a ping client: the clock starts at the end of ``warmup``
    round trips and stops after ``count`` more."""

    def __init__(self, warmup: int, count: int) -> None:
        self.warmup = warmup
        self.count = count
        self.total = warmup + count
        self.done = 0
        self.t0 = self.t1 = 0.0

    def echo(self) -> bool:
        """One echo came back; True if it was the last one."""
        self.done += 1
        if self.done == self.warmup:
            self.t0 = time.perf_counter()
        elif self.done == self.total:
            self.t1 = time.perf_counter()
            return True
        return False

    def seconds(self, fail: Callable[[str], Exception] = BenchmarkError) -> float:
        """Seconds per timed round trip.

        Raises:
            Exception: ``fail(...)``, if not every round trip was made.
        """
        if self.done != self.total:
            raise fail(f"{self.done} round trips of {self.total}")
        return (self.t1 - self.t0) / self.count


def mio_ping_client(
    port: int,
    transport: Transport,
    nodelay: bool,
    warmup: int,
    count: int,
    *,
    use_match: bool = False,
) -> float:
    handler, listener = message_io.split()
    connect_config, _ = configs(transport, nodelay=nodelay)
    server, _ = handler.network.connect(transport, f"{HOST}:{port}", config=connect_config)
    return ping_rounds(handler, listener, server, warmup, count, use_match=use_match)


def mio_match_echo_server(report: Report, transport: Transport, nodelay: bool) -> int:
    """:func:`mio_echo_server` dispatching with ``match``."""
    return mio_echo_server(report, transport, nodelay, use_match=True)


def mio_match_ping_client(
    port: int, transport: Transport, nodelay: bool, warmup: int, count: int
) -> float:
    """:func:`mio_ping_client` dispatching with ``match``."""
    return mio_ping_client(port, transport, nodelay, warmup, count, use_match=True)


def ping_rounds(
    handler: message_io.NodeHandler[Any],
    listener: message_io.NodeListener[Any],
    server: Endpoint,
    warmup: int,
    count: int,
    *,
    fail: Callable[[str], Exception] = BenchmarkError,
    use_match: bool = False,
) -> float:
    """Ping ``server`` with a 1-byte message once connected, each echo sending the next;
    return seconds per round trip over ``count`` rounds after ``warmup``. Shared by the
    UDP and WebSocket latency benchmarks; ``fail`` builds the exception to raise;
    ``use_match`` dispatches with ``match`` instead of class tests."""
    send = handler.network.send
    rounds = Rounds(warmup, count)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        if event.__class__ is Message:
            data = event.data
            if data != _PAYLOAD:
                raise fail(f"wrong echo: {data!r}")
            if rounds.echo():
                handler.stop()
                return
            send(server, _PAYLOAD)
        elif event.__class__ is Connected:
            if not event.established:
                raise fail("could not connect")
            send(server, _PAYLOAD)
        elif event.__class__ is Disconnected:
            raise fail("the server went away")

    def on_event_match(event: message_io.NodeEvent[Any]) -> None:
        match event:
            case Message(_, data):
                if data != _PAYLOAD:
                    raise fail(f"wrong echo: {data!r}")
                if rounds.echo():
                    handler.stop()
                    return
                send(server, _PAYLOAD)
            case Connected(_, established):
                if not established:
                    raise fail("could not connect")
                send(server, _PAYLOAD)
            case Disconnected():
                raise fail("the server went away")

    listener.for_each(on_event_match if use_match else on_event)
    return rounds.seconds(fail)


def mio_split_server(report: Report, transport: Transport, nodelay: bool) -> int:
    """Answer ``_SPLIT_REPLY`` once both 1-byte parts of a request are in."""
    handler, listener = message_io.split()
    _, listen_config = configs(transport, nodelay=nodelay)
    _, addr = handler.network.listen(transport, f"{HOST}:0", config=listen_config)
    report(addr[1])
    send = handler.network.send
    pending = 0
    answers = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal pending, answers
        match event:
            case Message(endpoint, data):
                pending += len(data)
                if pending >= 2:
                    pending -= 2
                    send(endpoint, _SPLIT_REPLY)
                    answers += 1
            case Disconnected():
                handler.stop()

    listener.for_each(on_event)
    return answers


def mio_split_client(
    port: int, transport: Transport, nodelay: bool, warmup: int, count: int
) -> float:
    """Each request is two 1-byte messages written by two flushes: the first from the
    callback of the previous reply, the second from the callback of a signal."""
    handler, listener = message_io.split()
    connect_config, _ = configs(transport, nodelay=nodelay)
    server, _ = handler.network.connect(transport, f"{HOST}:{port}", config=connect_config)
    send = handler.network.send
    rounds = Rounds(warmup, count)
    received = 0

    def request() -> None:
        send(server, b"a")
        handler.signals.send(None)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal received
        match event:
            case Message(_, data):
                received += len(data)
                if received < len(_SPLIT_REPLY):
                    return
                received -= len(_SPLIT_REPLY)
                if rounds.echo():
                    handler.stop()
                    return
                request()
            case Signal():
                send(server, b"b")
            case Connected(_, established):
                if not established:
                    raise BenchmarkError("could not connect")
                request()
            case Disconnected():
                raise BenchmarkError("the server went away")

    listener.for_each(on_event)
    if received:
        raise BenchmarkError(f"{received} bytes of a reply left over")
    return rounds.seconds()


# -- the cases -------------------------------------------------------------------------------


def measure(
    server_side: Callable[..., int],
    client_side: Callable[..., float],
    args: tuple[Any, ...],
    *,
    warmup: int,
    count: int,
) -> float:
    answers, seconds = run_pair(
        server_side,
        client_side,
        server_args=args,
        client_args=(*args, warmup, count),
        pin_cpu0=True,
    )
    if answers != warmup + count:
        raise BenchmarkError(f"the server answered {answers} of {warmup + count}")
    return float(seconds) * 1e6


_UNIT = "µs/round trip"


def _within(limit: float) -> Callable[[float, float | None], bool]:
    return lambda _median, ratio: ratio is not None and ratio <= limit


def counts(quick: bool) -> tuple[int, int]:
    """``(warmup, timed)`` round trips per sample."""
    return (500, 5_000) if quick else (1_000, 15_000)


def cases(quick: bool) -> list[Case]:
    """The latency variants; each sample is µs per round trip."""
    warmup, count = counts(quick)
    result: list[Case] = []
    for transport, label, framed in (
        (Transport.FRAMED_TCP, "FramedTcp", True),
        (Transport.TCP, "Tcp", False),
    ):
        base = f"plain {'framed ' if framed else ''}sockets"
        result.append(
            Case(
                Row("latency", base, _UNIT, higher_is_better=False),
                partial(
                    measure,
                    plain_echo_server,
                    plain_ping_client,
                    (framed,),
                    warmup=warmup,
                    count=count,
                ),
            )
        )
        for nodelay in (True, False):
            target = framed and nodelay
            result.append(
                Case(
                    Row(
                        "latency",
                        f"message_io {label}{'' if nodelay else ', nodelay off'}",
                        _UNIT,
                        higher_is_better=False,
                        baseline=base,
                        target="<= 1.3x plain" if target else "",
                        target_met=_within(1.3) if target else None,
                    ),
                    partial(
                        measure,
                        mio_echo_server,
                        mio_ping_client,
                        (transport, nodelay),
                        warmup=warmup,
                        count=count,
                    ),
                )
            )
    # A request in two writes: with Nagle, the second waits for the ACK of the first,
    # which the server delays (~40 ms on Linux) since it has nothing to answer yet.
    for transport, label in ((Transport.FRAMED_TCP, "FramedTcp"), (Transport.TCP, "Tcp")):
        base = f"message_io {label}, 2-write request"
        for nodelay in (True, False):
            # ~44 ms per round trip with nodelay off: a few are plenty.
            n_warmup, n_count = (warmup, count // 4) if nodelay else (2, 5 if quick else 10)
            result.append(
                Case(
                    Row(
                        "latency",
                        base if nodelay else f"{base}, nodelay off",
                        _UNIT,
                        higher_is_better=False,
                        baseline=None if nodelay else base,
                    ),
                    partial(
                        measure,
                        mio_split_server,
                        mio_split_client,
                        (transport, nodelay),
                        warmup=n_warmup,
                        count=n_count,
                    ),
                )
            )
    return result
