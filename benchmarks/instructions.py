"""Instructions per operation, counted by callgrind: a figure the machine's noise does not
move, for comparing two versions of the engine.

``make instructions`` (or ``python benchmarks/instructions.py [--only NAME ...]``) runs
each scenario in a fresh process under ``valgrind --tool=callgrind``, twice, with ``n1``
and then ``n2`` operations, and prints ``(Ir(n2) - Ir(n1)) / (n2 - n1)``: what one more
operation costs in user-space instructions, start-up and set-up cancelled out. The
kernel's share (the system calls' work) is not counted: the wall-clock benchmarks
(``make bench``) measure that.

To compare two trees, run it once with each on ``PYTHONPATH`` (the children inherit it)::

    PYTHONPATH=/path/to/other/src python benchmarks/instructions.py

Scenarios (both ends of a round trip run in one process, on one loop):

* ``rtt-sync``: a message_io node connected to itself over FramedTcp, 1-byte ping-pong
  from the ``for_each`` callback; one operation is one round trip.
* ``rtt-ws``, ``rtt-udp``: the same over WebSocket (``ws``) and UDP.
* ``rtt-asyncio``: the same with ``message_io.asyncio`` (``await listener.for_each``) on
  asyncio's loop.
* ``rtt-async-for``: two ``message_io.asyncio`` nodes on asyncio's loop, each consumed
  with ``async for`` in a task of its own, echoing with ``await send``.
* ``rtt-protocol``: two ``asyncio.Protocol`` objects, the same bytes (1-byte varint
  prefix), echoing in ``data_received``; ``rtt-uvloop``: the same on uvloop.
* ``receive``: a FramedTcp node receiving 100-byte messages that a plain socket thread
  sends in 100 KB writes; one operation is one message.
* ``send``: a FramedTcp node sending 100-byte messages from its callback, 1,000 per
  turn of its loop (a signal asks for the next batch, ``Drained`` after
  ``QUEUE_FULL``), to a plain socket that a thread reads in 256 KiB ``recv_into``
  calls (counted too); one operation is one message. ``send-foreign``: the same
  messages sent by the main thread while the node runs in the background (``wait_drained``
  after ``QUEUE_FULL``).
* ``accept``: a FramedTcp listener accepting connections that wait in its backlog,
  all opened (``socket.create_connection``, counted) before its loop runs; one
  operation is one connection, closed at the end (the node closes its connections
  when it stops). ``accept-protocol``, ``accept-uvloop``: the same with an asyncio
  server on asyncio and on uvloop (``connection_made``; every transport closed, up to
  its ``connection_lost``).
* ``fanout``: a FramedTcp node sends a 100-byte message to each of ``_FANOUT`` accepted
  connections per round, one round per turn of its loop (a 0 s timer asks for the
  next); the peers are plain sockets nobody reads (the kernel holds every round). One
  operation is one delivery. ``fanout-foreign``: the same rounds sent by the main
  thread while the node runs in the background. ``fanout-protocol``, ``fanout-uvloop``:
  ``transport.write`` of the framed message to every transport, one round per
  ``call_soon``, on asyncio and uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, cast

from bench_common import run_async

import message_io
import message_io.asyncio as mio
from message_io import Accepted, Connected, Message, Transport
from message_io.adapters.framed_tcp import FramedTcpListenConfig

_HOST: Final = "127.0.0.1"
_PING: Final = b"x"
_FRAME: Final = b"\x01x"  # the ping with its varint length prefix
_SIZE: Final = 100
_BATCH: Final = 1000  # messages per write of the receive scenario's sender
_FANOUT: Final = 200  # connections of the fan-out scenarios
_BACKLOG: Final = 2048  # listen() backlog of the accept scenarios (somaxconn caps it)
_CHILD_TIMEOUT: Final = 900.0  # seconds for one run under callgrind (about 50x slower)


def _ping_pong(
    server: message_io.Endpoint,
    count: int,
    send: Callable[[message_io.Endpoint, bytes], object],
    stop: Callable[[], None],
) -> Callable[[message_io.NodeEvent[Any]], None]:
    """The callback of a node connected to itself: ``server`` is its connection's
    endpoint. The ping goes out on ``Connected``; both sides echo every message; after
    ``count`` echoes back at the connecting side, ``stop()``."""
    echoes = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal echoes
        if event.__class__ is Message:
            if event.endpoint is server or event.endpoint == server:
                echoes += 1
                if echoes >= count:
                    stop()
                    return
            send(event.endpoint, event.data)
        elif event.__class__ is Connected and event.endpoint == server:
            send(server, _PING)

    return on_event


def rtt_sync(count: int, transport: Transport = Transport.FRAMED_TCP) -> None:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, f"{_HOST}:0")
    server, _ = handler.network.connect(transport, addr)
    listener.for_each(_ping_pong(server, count, handler.network.send, handler.stop))


def rtt_asyncio(count: int) -> None:
    async def main() -> None:
        handler, listener = mio.split()
        _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{_HOST}:0")
        server, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
        # Connected is queued: for_each delivers it first, and the ping goes out.
        await listener.for_each(
            _ping_pong(server, count, handler.network.send_nowait, handler.stop)
        )

    run_async("asyncio", main())


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Ping(asyncio.Protocol):
    def __init__(self, count: int, done: asyncio.Future[None]) -> None:
        self.count = count
        self.done = done
        self.echoes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(_FRAME)

    def data_received(self, data: bytes) -> None:
        self.echoes += 1
        if self.echoes >= self.count:
            self.done.set_result(None)
            return
        self.transport.write(_FRAME)


def rtt_async_for(count: int) -> None:
    async def main() -> None:
        async with mio_node() as (handler, listener), mio_node() as (client, client_events):
            _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{_HOST}:0")

            async def echo() -> None:
                send = handler.network.send
                async for event in listener:
                    if event.__class__ is Message:
                        await send(event.endpoint, event.data)

            echoing = asyncio.get_running_loop().create_task(echo())
            server, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            send = client.network.send
            await send(server, _PING)
            echoes = 0
            async for event in client_events:
                if event.__class__ is Message:
                    echoes += 1
                    if echoes >= count:
                        break
                    await send(server, _PING)
            handler.stop()
            await echoing

    run_async("asyncio", main())


@contextlib.asynccontextmanager
async def mio_node() -> AsyncIterator[tuple[Any, Any]]:
    """A ``message_io.asyncio`` node, stopped and closed at the end of the block."""
    handler, listener = mio.split()
    async with handler:
        yield handler, listener


def _rtt_protocol(loop_name: str, count: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Echo, _HOST, 0)
        port = server.sockets[0].getsockname()[1]
        done: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(lambda: _Ping(count, done), _HOST, port)
        await done
        transport.close()
        server.close()

    run_async(loop_name, main())


def receive(count: int) -> None:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{_HOST}:0")
    assert isinstance(addr, tuple)
    port: int = addr[1]
    frame = bytes([_SIZE]) + b"x" * _SIZE

    def sender() -> None:
        with socket.create_connection((_HOST, port)) as sock:
            chunk = frame * _BATCH
            for _ in range(count // _BATCH):
                sock.sendall(chunk)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    listener.for_each(_stop_at(Message, count, handler.stop))
    thread.join()


def send(count: int, foreign: bool = False) -> None:
    with socket.create_server((_HOST, 0)) as server_sock:
        handler, listener = message_io.split()
        endpoint, _ = handler.network.connect(Transport.FRAMED_TCP, server_sock.getsockname())
        peer, _ = server_sock.accept()
    expected = count * (_SIZE + 1)

    def drain() -> None:
        buffer = bytearray(256 * 1024)
        received = 0
        with peer:
            while received < expected:
                got = peer.recv_into(buffer)
                if not got:
                    break
                received += got
        if received == expected:
            handler.stop()

    payload = b"x" * _SIZE
    send_message = handler.network.send
    more = handler.signals.send
    sent_status = message_io.SendStatus.SENT
    sent = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal sent
        if (
            event.__class__ is Connected
            or event.__class__ is message_io.Signal
            or (event.__class__ is message_io.Drained)
        ):
            stop = min(count, sent + _BATCH)
            while sent < stop:
                status = send_message(endpoint, payload)
                if status is not sent_status:
                    if status is message_io.SendStatus.QUEUE_FULL:
                        return  # Drained follows
                    raise SystemExit(f"send returned {status}")
                sent += 1
            if sent < count:
                more(None)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    if foreign:
        with listener.for_each_async(lambda _event: None) as task:
            full = message_io.SendStatus.QUEUE_FULL
            for _ in range(count):
                while (status := send_message(endpoint, payload)) is not sent_status:
                    if status is not full:
                        raise SystemExit(f"send returned {status}")
                    if not handler.network.wait_drained(endpoint, _CHILD_TIMEOUT):
                        raise SystemExit("wait_drained failed")
            task.wait(_CHILD_TIMEOUT)
    else:
        listener.for_each(on_event)
    thread.join()


def _stop_at(
    kind: type[Any], count: int, stop: Callable[[], None]
) -> Callable[[message_io.NodeEvent[Any]], None]:
    """A callback that counts the events of class ``kind`` and calls ``stop()`` at the
    ``count``-th."""
    seen = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal seen
        if event.__class__ is kind:
            seen += 1
            if seen == count:
                stop()

    return on_event


def accept(count: int) -> None:
    """A FramedTcp listener accepting ``count`` connections, all made (and waiting in
    its backlog) before its loop runs, until the ``count``-th ``Accepted``."""
    handler, listener = message_io.split()
    config = FramedTcpListenConfig(backlog=_BACKLOG)
    _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{_HOST}:0", config=config)
    assert isinstance(addr, tuple)
    clients = _connected(addr[1], count)
    listener.for_each(_stop_at(Accepted, count, handler.stop))
    for sock in clients:
        sock.close()


def _connected(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port``, which wait in the listener's backlog (the
    kernel finishes each handshake: nobody has to accept first)."""
    if count > _BACKLOG:
        raise SystemExit(f"at most {_BACKLOG} connections wait in a backlog")
    return [socket.create_connection((_HOST, port)) for _ in range(count)]


def _accept_protocol(loop_name: str, count: int) -> None:
    """``accept`` with an asyncio server (``loop_name``), until the ``count``-th
    ``connection_made``."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        closed: asyncio.Future[None] = loop.create_future()
        transports: list[asyncio.BaseTransport] = []
        lost = 0

        class Server(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                transports.append(transport)
                if len(transports) == count:
                    done.set_result(None)

            def connection_lost(self, exc: Exception | None) -> None:
                nonlocal lost
                lost += 1
                if lost == count:
                    closed.set_result(None)

        server = await loop.create_server(Server, _HOST, 0, backlog=_BACKLOG)
        clients = _connected(server.sockets[0].getsockname()[1], count)  # blocks the loop
        await done
        server.close()
        for transport in transports:  # as the node closes its connections when it stops
            transport.close()
        await closed
        for sock in clients:
            sock.close()

    run_async(loop_name, main())


def _fanout_peers(port: int) -> list[socket.socket]:
    """``_FANOUT`` plain sockets connected to ``port`` (the kernel finishes each
    handshake from the listener's backlog: nobody has to accept first)."""
    return [socket.create_connection((_HOST, port)) for _ in range(_FANOUT)]


def fanout(count: int, foreign: bool = False) -> None:
    """``count // _FANOUT`` rounds of a 100-byte message to ``_FANOUT`` connections."""
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{_HOST}:0")
    assert isinstance(addr, tuple)
    peers = _fanout_peers(addr[1])
    rounds = count // _FANOUT
    payload = b"x" * _SIZE
    send = handler.network.send
    endpoints: list[message_io.Endpoint] = []
    accepted = threading.Event()
    done = 0

    def send_round() -> None:
        nonlocal done
        for endpoint in endpoints:
            send(endpoint, payload)
        done += 1
        if done == rounds:
            handler.stop()
        else:
            handler.signals.send_with_timer(None, 0.0)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        if event.__class__ is Accepted:
            endpoints.append(event.endpoint)
            if len(endpoints) == _FANOUT:
                if foreign:
                    accepted.set()
                else:
                    send_round()
        elif event.__class__ is message_io.Signal:
            send_round()

    if foreign:
        with listener.for_each_async(on_event) as task:
            accepted.wait(_CHILD_TIMEOUT)
            for _ in range(rounds):
                for endpoint in endpoints:
                    send(endpoint, payload)
            handler.stop()
            task.wait(_CHILD_TIMEOUT)
    else:
        listener.for_each(on_event)
    for sock in peers:
        sock.close()


def _fanout_protocol(loop_name: str, count: int) -> None:
    rounds = count // _FANOUT
    frame = bytes([_SIZE]) + b"x" * _SIZE

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transports: list[asyncio.Transport] = []
        finished: asyncio.Future[None] = loop.create_future()
        done = 0

        def send_round() -> None:
            nonlocal done
            for transport in transports:
                transport.write(frame)
            done += 1
            if done == rounds:
                finished.set_result(None)
            else:
                loop.call_soon(send_round)

        class Server(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                transports.append(cast(asyncio.Transport, transport))  # uvloop's: no subclass
                if len(transports) == _FANOUT:
                    send_round()

        server = await loop.create_server(Server, _HOST, 0, backlog=_FANOUT)
        peers = _fanout_peers(server.sockets[0].getsockname()[1])
        await finished
        for transport in transports:
            transport.abort()
        server.close()
        for sock in peers:
            sock.close()

    run_async(loop_name, main())


# name -> (run, n1, n2, unit)
SCENARIOS: Final[dict[str, tuple[Callable[[int], None], int, int, str]]] = {
    "rtt-sync": (rtt_sync, 2_000, 6_000, "round trip"),
    "rtt-ws": (lambda n: rtt_sync(n, Transport.WS), 2_000, 6_000, "round trip"),
    "rtt-udp": (lambda n: rtt_sync(n, Transport.UDP), 2_000, 6_000, "round trip"),
    "rtt-asyncio": (rtt_asyncio, 2_000, 6_000, "round trip"),
    "rtt-async-for": (rtt_async_for, 2_000, 6_000, "round trip"),
    "rtt-protocol": (lambda n: _rtt_protocol("asyncio", n), 2_000, 6_000, "round trip"),
    "rtt-uvloop": (lambda n: _rtt_protocol("uvloop", n), 2_000, 6_000, "round trip"),
    "receive": (receive, 100_000, 300_000, "message"),
    "send": (send, 100_000, 300_000, "message"),
    "send-foreign": (lambda n: send(n, foreign=True), 100_000, 300_000, "message"),
    "accept": (accept, 500, 1_500, "connection"),
    "accept-protocol": (lambda n: _accept_protocol("asyncio", n), 500, 1_500, "connection"),
    "accept-uvloop": (lambda n: _accept_protocol("uvloop", n), 500, 1_500, "connection"),
    "fanout": (fanout, 20 * _FANOUT, 60 * _FANOUT, "delivery"),
    "fanout-foreign": (lambda n: fanout(n, foreign=True), 20 * _FANOUT, 60 * _FANOUT, "delivery"),
    "fanout-protocol": (
        lambda n: _fanout_protocol("asyncio", n),
        20 * _FANOUT,
        60 * _FANOUT,
        "delivery",
    ),
    "fanout-uvloop": (
        lambda n: _fanout_protocol("uvloop", n),
        20 * _FANOUT,
        60 * _FANOUT,
        "delivery",
    ),
}


def _instructions(name: str, count: int) -> int:
    """User-space instructions of one child process running ``name`` ``count`` times."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            name,
            str(count),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=_CHILD_TIMEOUT,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{name} x {count} failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="these only")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, count = args.child
        SCENARIOS[name][0](int(count))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt install valgrind)")
    names = args.only or list(SCENARIOS)
    if importlib.util.find_spec("uvloop") is None:
        names = [name for name in names if not name.endswith("uvloop")]
    print(f"message_io {message_io.__file__} (compiled: {message_io.COMPILED})")
    print(f"{'scenario':<14} {'instructions':>12}  per")
    for name in names:
        _run, n1, n2, unit = SCENARIOS[name]
        per = (_instructions(name, n2) - _instructions(name, n1)) / (n2 - n1)
        print(f"{name:<14} {per:>12,.0f}  {unit}", flush=True)


if __name__ == "__main__":
    main()
