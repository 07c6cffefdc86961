"""Fan-out: one server sends the same 100-byte message to each of many clients, round
after round.

A client process opens ``clients`` connections to a server process, then says it is
ready (a 1-byte FramedTcp frame on its last connection). The server then sends
``rounds`` rounds: in each, one FramedTcp frame of 100 bytes (the round's number, then
padding) to every client. The client process reads all its connections (``epoll``,
``recv`` into a buffer per connection) until every one has all the rounds; then it
checks every connection's bytes against the expected stream (every frame, in order:
each delivery checked) and resets them all, which ends the server. A sample is the
deliveries (``clients * rounds``) divided by the time from the server's first send to
the client's last receive (``perf_counter``: one clock for both processes). Each sample
also gives the server's CPU time per delivery (its process's ``process_time``, every
thread, user and kernel, from its first send to the first disconnection): what one
delivery costs the server, whichever side set the pace.

Servers:

* an asyncio ``Protocol`` server on asyncio and on uvloop (the baseline): one round per
  iteration of the event loop, ``transport.write`` of the whole frame to every client
  (each one written to its socket at once), the next round asked for with
  ``loop.call_soon``;
* message_io FramedTcp, loop thread: each round from the ``for_each`` callback, ``send``
  to every endpoint, then ``handler.signals.send`` asks for the next. The node writes
  the first message of a connection in a turn of its loop at once and coalesces the
  next ones into one write at the end of the turn, and it delivers up to 1,024 signals
  in one turn: so round 1 is written at once and all the later rounds leave together,
  one write per client;
* message_io FramedTcp, loop thread, 0 s timer: the same, the next round asked for with
  ``handler.signals.send_with_timer(None, 0)``, which the loop delivers in its next
  turn: one round per turn, one write per client per round, as the baselines;
* message_io FramedTcp, foreign thread: the node runs ``for_each_async``, the main
  thread sends every round, one after the other, with ``send`` (``wait_drained`` after
  ``QUEUE_FULL``).

The frames are the same bytes on every server's wire, so the client is the same.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final, cast

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

__all__ = ["NAME", "cases", "method_text", "sizes"]

NAME: Final = "fanout"
UNIT: Final = "deliveries/s"
CPU_UNIT: Final = "µs CPU/delivery"
CPU_SUFFIX: Final = ": server CPU"
SIZE: Final = 100
TIMEOUT: Final = 60.0
BASELINE: Final = "uvloop Protocol"
_READY: Final = b"\x01!"  # the client's FramedTcp frame: every connection is being read


def sizes(quick: bool) -> tuple[int, int]:
    """``(clients, rounds)`` of one sample."""
    return (1_000, 20) if quick else (1_000, 100)


def payloads(rounds: int) -> list[bytes]:
    """The message of each round: its number, then padding, ``SIZE`` bytes."""
    return [f"{n:08d}".encode().ljust(SIZE, b".") for n in range(rounds)]


def _frame(payload: bytes) -> bytes:
    """FramedTcp's framing of a message under 128 bytes: a 1-byte varint length."""
    return bytes((len(payload),)) + payload


# -- message_io ------------------------------------------------------------------------------


def mio_loop_server(report: Report, clients: int, rounds: int, timer: bool) -> tuple[float, float]:
    """Every round from the callback, the next one asked for with a signal (``timer``:
    a timer signal of 0 s); the time of the first, and the CPU seconds (see _sample)."""
    import message_io
    from message_io import Accepted, Disconnected, Message, SendStatus, Signal, Transport

    raise_fd_limit(clients)
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{HOST}:0")
    send = handler.network.send
    signals = handler.signals
    sent = SendStatus.SENT
    messages = payloads(rounds)
    endpoints: list[message_io.Endpoint] = []
    ready = False
    done = 0
    t_start = c_start = 0.0
    c_end: float | None = None

    def send_round() -> None:
        nonlocal done
        payload = messages[done]
        for endpoint in endpoints:
            status = send(endpoint, payload)
            if status is not sent:
                raise BenchmarkError(f"send returned {status}")
        done += 1
        if done >= rounds:
            return
        if timer:  # due at once, delivered in the next turn, after this round is written
            signals.send_with_timer(None, 0.0)
        else:  # delivered in this same turn if the loop has taken fewer than 1024 signals
            signals.send(None)

    def start() -> None:
        nonlocal t_start, c_start
        if ready and len(endpoints) == clients:
            t_start = time.perf_counter()
            c_start = time.process_time()
            send_round()

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal ready, c_end
        if event.__class__ is Signal:
            send_round()
        elif event.__class__ is Accepted:
            endpoints.append(event.endpoint)
            start()
        elif event.__class__ is Message:
            ready = True
            start()
        elif event.__class__ is Disconnected:  # the client has everything and closes
            if c_end is None:
                c_end = time.process_time()
            handler.stop()

    report(addr[1])
    listener.for_each(on_event, on_error="stop")
    if done != rounds or c_end is None:
        raise BenchmarkError(f"sent {done} rounds of {rounds}")
    return t_start, c_end - c_start


def mio_thread_server(report: Report, clients: int, rounds: int) -> tuple[float, float]:
    """Every round sent from the main thread while the node runs; the time of the first,
    and the CPU seconds (see _sample)."""
    import message_io
    from message_io import Accepted, Disconnected, Message, SendStatus, Transport

    raise_fd_limit(clients)
    handler, listener = message_io.split()
    network = handler.network
    _, addr = network.listen(Transport.FRAMED_TCP, f"{HOST}:0")
    endpoints: list[message_io.Endpoint] = []
    ready = threading.Event()
    gone = threading.Event()
    got_ready = False
    c_end = 0.0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal got_ready, c_end
        if event.__class__ is Accepted:
            endpoints.append(event.endpoint)
        elif event.__class__ is Message:
            got_ready = True
        elif event.__class__ is Disconnected:  # the client has everything and closes
            if not gone.is_set():
                c_end = time.process_time()
            gone.set()
            handler.stop()
            return
        if got_ready and len(endpoints) == clients:
            ready.set()

    send = network.send
    sent, full = SendStatus.SENT, SendStatus.QUEUE_FULL
    messages = payloads(rounds)
    with listener.for_each_async(on_event) as task:
        report(addr[1])
        if not ready.wait(TIMEOUT):
            raise BenchmarkError(f"{len(endpoints)} of {clients} clients, ready: {got_ready}")
        t_start = time.perf_counter()
        c_start = time.process_time()
        for payload in messages:
            for endpoint in endpoints:
                status = send(endpoint, payload)
                while status is full:
                    if not network.wait_drained(endpoint, TIMEOUT):
                        raise BenchmarkError("wait_drained failed")
                    status = send(endpoint, payload)
                if status is not sent:
                    raise BenchmarkError(f"send returned {status}")
        if not gone.wait(TIMEOUT):
            raise BenchmarkError("the client did not close")
        task.wait(TIMEOUT)
    return t_start, c_end - c_start


# -- asyncio and uvloop ----------------------------------------------------------------------


def asyncio_server(
    report: Report, clients: int, rounds: int, loop_name: str
) -> tuple[float, float]:
    """One round per iteration of the event loop (``call_soon``); the time of the first,
    and the CPU seconds (see _sample)."""
    raise_fd_limit(clients)
    frames = [_frame(payload) for payload in payloads(rounds)]

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        transports: list[asyncio.Transport] = []
        ready = False
        done = 0
        t_start = c_start = 0.0
        c_end: float | None = None

        def send_round() -> None:
            nonlocal done
            frame = frames[done]
            for transport in transports:
                transport.write(frame)
            done += 1
            if done < rounds:
                loop.call_soon(send_round)

        def start() -> None:
            nonlocal t_start, c_start
            if ready and len(transports) == clients:
                t_start = time.perf_counter()
                c_start = time.process_time()
                send_round()

        class Server(asyncio.Protocol):
            def __init__(self) -> None:
                self.received = 0

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                transports.append(cast(asyncio.Transport, transport))  # uvloop's: no subclass
                start()

            def data_received(self, data: bytes) -> None:
                nonlocal ready
                self.received += len(data)
                if self.received == len(_READY):
                    ready = True
                    start()

            def connection_lost(self, exc: Exception | None) -> None:
                nonlocal c_end
                if not finished.done():  # the client has everything and closes
                    c_end = time.process_time()
                    finished.set_result(None)

        server = await loop.create_server(Server, HOST, 0, backlog=clients)
        report(server.sockets[0].getsockname()[1])
        await asyncio.wait_for(finished, TIMEOUT)
        server.close()
        if done != rounds or c_end is None:
            raise BenchmarkError(f"sent {done} rounds of {rounds}")
        return t_start, c_end - c_start

    t_start, cpu = run_async(loop_name, main())
    return t_start, cpu


# -- the client: `clients` connections, each one read until it has every round -------------


def client(port: int, clients: int, rounds: int) -> float:
    """Receive every round on every connection and check it; the time of the last."""
    raise_fd_limit(clients)
    expected = b"".join(_frame(payload) for payload in payloads(rounds))
    total = clients * len(expected)
    socks = [socket.create_connection((HOST, port), timeout=TIMEOUT) for _ in range(clients)]
    poller = select.epoll()
    try:
        buffers: dict[int, tuple[socket.socket, bytearray]] = {}
        for sock in socks:
            sock.setblocking(False)
            poller.register(sock.fileno(), select.EPOLLIN)
            buffers[sock.fileno()] = sock, bytearray()
        socks[-1].sendall(_READY)
        received = 0
        deadline = time.monotonic() + TIMEOUT
        poll = poller.poll
        while received < total:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError(
                    f"received {received // len(_frame(b'x' * SIZE)):,} deliveries"
                    f" of {clients * rounds:,} before the time limit"
                )
            for fd, _ in poll(remaining):
                sock, buffer = buffers[fd]
                data = sock.recv(65536)
                if not data:
                    raise BenchmarkError("the server closed a connection early")
                buffer += data
                received += len(data)
        t_end = time.perf_counter()
        for n, (_, buffer) in enumerate(buffers.values()):
            if buffer != expected:
                frames = len(buffer) // (1 + SIZE)
                raise BenchmarkError(
                    f"client {n}: {len(buffer):,} bytes ({frames} frames of {rounds}),"
                    " not the rounds in order"
                )
    finally:
        poller.close()
        abort(socks)
    return t_end


def _sample(
    server: Callable[..., tuple[float, float]],
    args: tuple[Any, ...],
    clients: int,
    rounds: int,
    cpu_row: Row,
) -> float:
    """Deliveries per second; ``cpu_row`` gets the server's CPU time per delivery, in µs:
    its whole process (every thread, user and kernel: ``time.process_time``) from the
    first send to the first disconnection, when the client has everything."""
    (t_start, cpu), t_end = run_pair(
        server,
        client,
        server_args=(clients, rounds, *args),
        client_args=(clients, rounds),
        timeout=TIMEOUT + 30,
    )
    cpu_row.samples.append(cpu / (clients * rounds) * 1e6)
    return float(clients * rounds / (t_end - t_start))


def cases(quick: bool) -> list[Case]:
    clients, rounds = sizes(quick)
    variants: list[tuple[str, Callable[..., tuple[float, float]], tuple[Any, ...], str | None]] = [
        ("asyncio Protocol", asyncio_server, ("asyncio",), None),
        (BASELINE, asyncio_server, ("uvloop",), None),
        ("message_io FramedTcp, loop thread", mio_loop_server, (False,), BASELINE),
        ("message_io FramedTcp, loop thread, 0 s timer", mio_loop_server, (True,), BASELINE),
        ("message_io FramedTcp, foreign thread", mio_thread_server, (), BASELINE),
    ]
    cases = []
    for name, server, args, baseline in variants:
        cpu_row = Row(
            NAME,
            name + CPU_SUFFIX,
            CPU_UNIT,
            higher_is_better=False,
            baseline=None if baseline is None else baseline + CPU_SUFFIX,
        )
        cases.append(
            Case(
                Row(NAME, name, UNIT, higher_is_better=True, baseline=baseline),
                partial(_sample, server, args, clients, rounds, cpu_row),
                extra_rows=(cpu_row,),
            )
        )
    return cases


_METHOD: Final = """\
**Fan-out.** A client process opens {clients} connections to a server process and reads
them all through one `epoll`; once they are open it sends a 1-byte FramedTcp frame on
the last one. The server, once it has accepted them all and has that frame, sends
{rounds} rounds: in each, one 100-byte FramedTcp message (the round's number, then
padding) to every client. The client `recv`s into a buffer per connection until every
connection has all the rounds, then checks each one's bytes against the expected stream
(every delivery, in order) and resets them all, which ends the server. A sample is the
{deliveries} deliveries divided by the time from the server's first send to the client's
last receive. Each variant's *server CPU* row is, from the same sample, the server
process's CPU time (`time.process_time`: every thread, user and kernel) from its first
send to the first disconnection, per delivery. Baselines: asyncio's `Protocol` server
on asyncio and on uvloop, one round per iteration of the event loop: `transport.write`
of the 101-byte frame to every client (each goes to the socket at once), the next round
scheduled with `loop.call_soon`. message_io FramedTcp, default configs: the first message to a
connection in a turn of the loop is written at once, the next ones of that turn are
coalesced and written at its end. *loop thread*: each round from the `for_each`
callback, `send` to every endpoint, the next round asked for with
`handler.signals.send`; the loop delivers up to 1,024 signals in one turn, so round 1
is written at once and the {later} later rounds leave together at the end of that same
turn: two writes per client in all, not one round per turn. *loop thread, 0 s timer*:
the next round asked for with `handler.signals.send_with_timer(None, 0)` instead, which
the loop delivers in its next turn, after this round is written: one round per turn and
one write per client per round, as the baselines. *foreign thread*: the node runs
`for_each_async` and the main thread sends every round, one after the other, with
`send`; what the first message of a turn does not write, the loop writes when the
socket is writable."""


def method_text(quick: bool) -> str:
    clients, rounds = sizes(quick)
    return _METHOD.format(
        clients=f"{clients:,}",
        rounds=f"{rounds:,}",
        later=f"{rounds - 1:,}",
        deliveries=f"{clients * rounds:,}",
    )
