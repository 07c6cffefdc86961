"""A WebSocket client's large binary bodies come from its connection's BodyPool and go
back to it once written: the bytes on the wire stay exactly the messages sent, through
short writes (a peer that does not read), reuse, a caller that changes its buffer after
send returned, and a close with bodies still queued. The spare bodies of a burst go
once nothing was lent for a period of the node's timers (a fake clock here), and a
close cancels that check."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

import message_io.util.timers as timers_module
from message_io import Connected, Endpoint, SendStatus, Transport
from message_io.codec.body_pool import IDLE_DELAY, BodyPool
from message_io.network.connection import Connection

from .conftest import TIMEOUT, Net, Node

SENT = SendStatus.SENT


class RawServer:
    """A listening socket that accepts one WebSocket client by hand and parses its frames
    with ``websockets`` (which unmasks them), reading only when told to."""

    def __init__(self, net: Net) -> None:
        self.listener = net._keep(socket.socket())
        # A small receive buffer: the client's writes come up short sooner.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(TIMEOUT)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.sock: socket.socket | None = None
        self.protocol = ServerProtocol(max_size=None)
        self.payloads: list[bytes] = []

    def accept(self, net: Net) -> None:
        """Accept the client and answer its opening handshake."""
        sock, _addr = self.listener.accept()
        self.sock = net._keep(sock)
        sock.settimeout(TIMEOUT)
        protocol = self.protocol
        while True:
            data = sock.recv(4096)
            assert data, "EOF during the handshake"
            protocol.receive_data(data)
            events = protocol.events_received()
            if events:
                break
        request = events[0]
        assert isinstance(request, Request)
        protocol.send_response(protocol.accept(request))
        sock.sendall(b"".join(protocol.data_to_send()))

    def read(self, count: int) -> None:
        """Read until ``count`` more binary messages arrived (kept in ``payloads``)."""
        sock = self.sock
        assert sock is not None
        want = len(self.payloads) + count
        while len(self.payloads) < want:
            data = sock.recv(1 << 16)
            assert data, "EOF before every message"
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                assert isinstance(event, Frame)
                assert event.opcode is Opcode.BINARY
                self.payloads.append(bytes(event.data))


def _client(net: Net, server: RawServer) -> tuple[Node, Endpoint, Connection]:
    client = net.node("client")
    endpoint, _local = client.network.connect(Transport.WS, server.url)
    server.accept(net)
    event = client.wait_for(Connected, lambda e: e.endpoint == endpoint)
    assert event.established
    conn = client.handler._loop.connections[endpoint.resource_id]
    assert isinstance(conn.pool, BodyPool)
    # A fixed send buffer (no autotuning): what the OS cannot take waits in the queue
    # until the peer reads.
    assert conn.sock is not None
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    return client, endpoint, conn


def _messages(count: int, seed: int) -> list[bytes]:
    """Large messages of assorted sizes (odd ones too: the key's offset moves)."""
    sizes = [16 * 1024, 65_536, 70_001, 16 * 1024 + 3, 100_003]
    return [os.urandom(sizes[(index + seed) % len(sizes)]) for index in range(count)]


def _send(client: Node, endpoint: Endpoint, message: bytes, index: int) -> None:
    """Send ``message`` from this thread (not the loop's); every other one from a
    bytearray that is scribbled over as soon as send returns."""
    if index % 2:
        buffer = bytearray(message)
        assert client.network.send(endpoint, buffer) is SENT
        buffer[:] = bytes(len(buffer))
    else:
        assert client.network.send(endpoint, message) is SENT


def _send_all(client: Node, endpoint: Endpoint, messages: list[bytes]) -> None:
    for index, message in enumerate(messages):
        _send(client, endpoint, message, index)


def _fill(client: Node, endpoint: Endpoint, conn: Connection, seed: int) -> list[bytes]:
    """Send large messages until some wait in the queue (the OS took what it could:
    the last write came up short), then a few more; the messages sent."""
    sent: list[bytes] = []
    while conn.queued == 0:
        assert len(sent) < 2000, "the OS takes everything"
        sent += _messages(1, seed + len(sent))
        _send(client, endpoint, sent[-1], len(sent))
    more = _messages(8, seed)
    _send_all(client, endpoint, more)
    return sent + more


def test_bodies_are_reused_and_the_wire_stays_right(ws: Net) -> None:
    server = RawServer(ws)
    client, endpoint, conn = _client(ws, server)
    pool = conn.pool
    assert pool is not None

    first = _fill(client, endpoint, conn, 0)  # the peer reads nothing yet
    with conn.lock:
        lent = [chunk for chunk in conn.chunks if pool.lends(chunk)]
        assert conn.queued > 0
    assert lent, "the large bodies are queued as lent by the pool"

    reader = threading.Thread(target=server.read, args=(len(first),))
    reader.start()
    assert client.network.wait_drained(endpoint, TIMEOUT)
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    assert server.payloads == first
    with conn.lock:
        spare = pool.spare()
        assert spare > 0  # written out: given back
        assert pool.lent_bytes == 0

    second = _fill(client, endpoint, conn, 1)
    with conn.lock:
        assert pool.spare() < spare  # the spare bodies were taken again
    reader = threading.Thread(target=server.read, args=(len(second),))
    reader.start()
    assert client.network.wait_drained(endpoint, TIMEOUT)
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    assert server.payloads == first + second


def test_a_loop_thread_sender_reuses_bodies_too(ws: Net) -> None:
    server = RawServer(ws)
    messages = _messages(12, 2)
    done = threading.Event()

    def send_from_loop(node: Node, event: Any) -> None:
        if isinstance(event, Connected):
            for message in messages:
                assert node.network.send(event.endpoint, message) is SENT
            done.set()

    client = ws.node("client", send_from_loop)
    endpoint, _local = client.network.connect(Transport.WS, server.url)
    server.accept(ws)
    assert done.wait(TIMEOUT)
    server.read(len(messages))
    assert client.network.wait_drained(endpoint, TIMEOUT)
    assert server.payloads == messages
    conn = client.handler._loop.connections[endpoint.resource_id]
    with conn.lock:
        assert conn.pool is not None
        assert conn.pool.spare() > 0


def test_closing_with_bodies_queued_lets_go_of_them(ws: Net) -> None:
    server = RawServer(ws)
    client, endpoint, conn = _client(ws, server)
    pool = conn.pool
    assert pool is not None
    _fill(client, endpoint, conn, 3)
    with conn.lock:
        assert pool.lent_bytes > 0  # queued: the peer reads nothing
    client.stop()  # closes the connection, its queue not written out
    assert conn.queued == 0
    assert pool.lent_bytes == 0
    assert pool.spare() == 0
    assert not any(pool.lends(chunk) for chunk in conn.chunks)


class FakeClock:
    """The node timers' clock, moved only by the test. It starts an hour ahead of the
    real one: the loop, which plans its poll on the real clock, sleeps until woken."""

    def __init__(self) -> None:
        self.now = time.monotonic() + 3600.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Replace ``monotonic`` in the timer module (only there) by a fake clock."""
    fake = FakeClock()
    monkeypatch.setattr(timers_module, "monotonic", fake.monotonic)
    return fake


def _tick(client: Node, clock: FakeClock, seconds: float) -> None:
    """Move the timers' clock, then let the loop run what is due (a turn runs its due
    timers before it delivers the signals that sync() waits for)."""
    clock.now += seconds
    client.sync()


def _burst(client: Node, endpoint: Endpoint, conn: Connection, server: RawServer) -> None:
    """Queue large messages the peer reads only afterwards, until the queue drains."""
    sent = _fill(client, endpoint, conn, 5)
    reader = threading.Thread(target=server.read, args=(len(sent),))
    reader.start()
    assert client.network.wait_drained(endpoint, TIMEOUT)
    reader.join(TIMEOUT)
    assert not reader.is_alive()


def test_spare_bodies_go_once_nothing_is_lent_for_a_period(ws: Net, clock: FakeClock) -> None:
    server = RawServer(ws)
    client, endpoint, conn = _client(ws, server)
    pool = conn.pool
    assert pool is not None
    _burst(client, endpoint, conn, server)
    with conn.lock:
        spare = pool.spare()
        assert spare > 1  # kept for the next burst
        first = conn.pool_timer
        assert first is not None  # the idle check, armed by the drain

    # Lending goes on within the period: the check finds it and looks again later.
    message = os.urandom(65_536)
    _send(client, endpoint, message, 0)
    server.read(1)
    assert client.network.wait_drained(endpoint, TIMEOUT)
    with conn.lock:
        assert conn.pool_timer is first  # one check at a time, not one per drain
    _tick(client, clock, IDLE_DELAY)
    with conn.lock:
        assert pool.spare() == spare
        assert conn.pool_timer is not None
        assert conn.pool_timer is not first  # armed once more

    # A period with nothing lent: the pool keeps one small spare at most, and no timer.
    _tick(client, clock, IDLE_DELAY)
    with conn.lock:
        assert pool.spare() <= 1
        assert conn.pool_timer is None
    assert server.payloads[-1] == message

    # The connection goes on as before: a new burst lends again and arms a new check.
    _burst(client, endpoint, conn, server)
    with conn.lock:
        assert pool.spare() > 1
        assert conn.pool_timer is not None


def test_an_idle_connection_keeps_no_check_without_spares(ws: Net, clock: FakeClock) -> None:
    server = RawServer(ws)
    client, endpoint, conn = _client(ws, server)
    assert client.network.send(endpoint, b"small") is SENT
    server.read(1)
    assert client.network.wait_drained(endpoint, TIMEOUT)
    _tick(client, clock, 2 * IDLE_DELAY)
    with conn.lock:
        assert conn.pool_timer is None  # nothing lent: nothing to check


def test_closing_cancels_the_idle_check(ws: Net, clock: FakeClock) -> None:
    server = RawServer(ws)
    client, endpoint, conn = _client(ws, server)
    pool = conn.pool
    assert pool is not None
    _burst(client, endpoint, conn, server)
    timer = conn.pool_timer
    assert timer is not None
    driver = client.handler._loop
    client.run_on_loop(lambda: driver.close_connection(conn))
    # Not due yet (the clock did not move): cancelled by the close, which let go of
    # the callback (and so of the connection).
    assert timer.cancelled
    assert timer.callback is None
    assert conn.pool_timer is None
    assert pool.spare() == 0
    _tick(client, clock, 2 * IDLE_DELAY)  # nothing runs, nothing breaks
    assert conn.pool_timer is None
