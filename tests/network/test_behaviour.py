"""How every connection-oriented transport behaves: one suite, run over TCP, FRAMED_TCP,
WS and UNIX.

``Transport.TCP`` is a byte stream (a ``Message`` is what one read returned), so where
message boundaries matter its tests compare the concatenated stream instead.

The last section runs on UNIX only, with its connections instrumented
(:mod:`.unix_probe`) to record how the node drives them; its addresses (paths) can be
any ``os.PathLike``.
"""

from __future__ import annotations

import array
import contextlib
import errno
import logging
import os
import random
import socket
import struct
import threading
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    NodeEvent,
    SendStatus,
)

from .conftest import (
    TIMEOUT,
    Net,
    Node,
    Worker,
    accepted,
    kernel_send_capacity,
    receive_one,
    recv_exactly,
)
from .unix_probe import accepted_remote

SENT = SendStatus.SENT
QUEUE_FULL = SendStatus.QUEUE_FULL


def assert_same_bytes(got: bytes, expected: bytes) -> None:
    """``got == expected``, reporting the first difference instead of a huge diff."""
    if got == expected:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"{len(got)} bytes received, {len(expected)} expected; first difference at offset "
        f"{first}: got {got[first : first + 16]!r}, expected {expected[first : first + 16]!r}"
    )


def send_all(node: Node, endpoint: Endpoint, messages: list[bytes]) -> int:
    """Send ``messages`` in order from the calling thread, honouring backpressure: on
    ``QUEUE_FULL`` wait until the queue is drained and send the same message again.

    Returns:
        How many times the queue was full.
    """
    send = node.network.send
    full = 0
    for data in messages:
        status = send(endpoint, data)
        while status is QUEUE_FULL:
            full += 1
            assert node.network.wait_drained(endpoint, TIMEOUT), "the queue did not drain"
            status = send(endpoint, data)
        assert status is SENT, status
    return full


class Sink:
    """A server hook that keeps the ``Message`` data of one node (on the loop thread) and
    sets :attr:`done` once ``count`` messages (packet transports) or ``size`` bytes (TCP)
    have arrived. Other events go to the node's queue."""

    def __init__(self, net: Net, *, count: int, size: int) -> None:
        self.packet_based = net.packet_based
        self.count = count
        self.size = size
        self.messages: list[bytes] = []
        self.stream = bytearray()
        self.senders: set[Endpoint] = set()
        self.done = threading.Event()

    def __call__(self, _node: Node, event: NodeEvent[Any]) -> bool:
        if not isinstance(event, Message):
            return False
        self.senders.add(event.endpoint)
        if self.packet_based:
            self.messages.append(event.data)
            if len(self.messages) >= self.count:
                self.done.set()
        else:
            self.stream += event.data
            if len(self.stream) >= self.size:
                self.done.set()
        return True

    def wait(self) -> None:
        assert self.done.wait(3 * TIMEOUT), (
            f"received {len(self.messages)} of {self.count} messages, "
            f"{len(self.stream)} of {self.size} stream bytes"
        )


# -- echo ------------------------------------------------------------------------------


@pytest.mark.parametrize("clients", [1, 100])
def test_echo(net: Net, clients: int) -> None:
    server, listener_id, addr = net.echo_server()
    client = net.node("client")

    endpoints = [client.network.connect(net.transport, addr)[0] for _ in range(clients)]
    assert len(set(endpoints)) == clients
    for _ in range(clients):
        event = client.expect(Connected)
        assert event.established, event
    for endpoint in endpoints:
        assert client.network.is_ready(endpoint.resource_id) is True
        assert client.network.send(endpoint, b"\x2a") is SENT

    replied: list[Endpoint] = []
    for _ in range(clients):
        reply = client.expect(Message)
        assert reply.data == b"\x2a"
        replied.append(reply.endpoint)
    assert set(replied) == set(endpoints)
    assert len(replied) == clients
    for endpoint in endpoints:
        assert client.network.remove(endpoint.resource_id) is True

    accepted_eps: list[Endpoint] = []
    disconnected: list[Endpoint] = []
    echoed = 0
    while len(disconnected) < clients:
        match server.next_event():
            case Accepted(endpoint, lid):
                assert lid == listener_id
                accepted_eps.append(endpoint)
            case Message(endpoint, data):
                assert endpoint in accepted_eps
                assert data == b"\x2a"
                echoed += 1
            case Disconnected(endpoint):
                assert endpoint in accepted_eps, "Disconnected before Accepted"
                disconnected.append(endpoint)
            case other:
                raise AssertionError(f"unexpected server event {other}")
    assert len(accepted_eps) == clients
    assert len(set(accepted_eps)) == clients
    assert all(ep.resource_id.is_remote for ep in accepted_eps)
    assert len(set(disconnected)) == clients
    assert set(disconnected) == set(accepted_eps)
    assert echoed == clients
    # Removed endpoints produce no event on the side that removed them.
    client.sync()
    assert client.drain_events() == []


# -- ordering and backpressure -----------------------------------------------------------

BURST = 200_000


def test_burst_arrives_in_order(net: Net) -> None:
    messages = [f"msg {i}".encode() for i in range(BURST)]
    sink = Sink(net, count=BURST, size=sum(map(len, messages)))
    server, listener_id, addr = net.server(sink)
    client = net.node("client")
    # A small send queue, so that the sender meets backpressure on the way.
    endpoint = net.connected(client, addr, send_buffer_limit=64 * 1024)
    server_ep = accepted(server, listener_id)

    sender = Worker(lambda: send_all(client, endpoint, messages), "burst-sender")
    sender.join()
    sink.wait()
    server.sync()

    assert sink.senders == {server_ep}
    if net.packet_based:
        assert len(sink.messages) == BURST
        assert sink.messages == messages
    else:
        assert_same_bytes(bytes(sink.stream), b"".join(messages))


def test_large_message_intact(net: Net) -> None:
    payload = random.Random(8).randbytes(8 * 1024 * 1024)
    server, listener_id, addr = net.echo_server()
    client = net.node("client")
    endpoint = net.connected(client, addr)
    server_ep = accepted(server, listener_id)

    assert client.network.send(endpoint, payload) is SENT
    # One Message on packet transports, the stream reassembled on TCP; then echoed back.
    assert_same_bytes(receive_one(net, server, server_ep, len(payload)), payload)
    assert_same_bytes(receive_one(net, client, endpoint, len(payload)), payload)


THREADS = 8
PER_THREAD = 2000


def record(thread: int, index: int) -> bytes:
    """Message ``index`` of sender ``thread``: a header, a body of one letter (some
    bodies above the node's coalescing size, so they are queued by reference), and a
    newline that delimits records in the TCP stream."""
    size = 20_000 if index % 250 == 7 else (index * 7 + thread * 13) % 200
    return f"{thread} {index} {size}|".encode() + bytes([97 + thread]) * size + b"\n"


def test_concurrent_senders_never_interleave(net: Net) -> None:
    batches = [[record(t, i) for i in range(PER_THREAD)] for t in range(THREADS)]
    total = THREADS * PER_THREAD
    sink = Sink(net, count=total, size=sum(len(m) for batch in batches for m in batch))
    _server, _listener_id, addr = net.server(sink)
    client = net.node("client")
    endpoint = net.connected(client, addr)

    start = threading.Barrier(THREADS)

    def sender(batch: list[bytes]) -> None:
        start.wait(TIMEOUT)
        send_all(client, endpoint, batch)

    workers = [
        Worker(lambda batch=batch: sender(batch), f"sender-{t}")  # type: ignore[misc]
        for t, batch in enumerate(batches)
    ]
    for worker in workers:
        worker.join()
    sink.wait()

    if net.packet_based:
        records = sink.messages
        assert all(r.endswith(b"\n") for r in records)
        records = [r[:-1] for r in records]
    else:
        stream = bytes(sink.stream)
        assert stream.endswith(b"\n")
        records = stream[:-1].split(b"\n")
    assert len(records) == total

    seen: list[list[int]] = [[] for _ in range(THREADS)]
    for rec in records:
        head, sep, body = rec.partition(b"|")
        assert sep, f"record without a header: {rec[:40]!r}"
        thread_text, index_text, size_text = head.split(b" ")
        thread, index, size = int(thread_text), int(index_text), int(size_text)
        assert body == bytes([97 + thread]) * size, f"record {thread}/{index} is mixed"
        seen[thread].append(index)
    for thread in range(THREADS):
        assert seen[thread] == list(range(PER_THREAD)), f"thread {thread} out of order"


def test_peer_that_stops_reading(net: Net) -> None:
    limit = 1024 * 1024
    server, listener_id, addr = net.server(config=net.listen_config(send_buffer_limit=limit))
    raw = net.raw_connect(addr, rcvbuf=16 * 1024)  # connects, then reads nothing
    endpoint = accepted(server, listener_id)

    size = 64 * 1024
    sent: list[bytes] = []
    queue_full = False
    for k in range(4096):  # 256 MiB: far more than the kernel's buffers plus the queue
        payload = k.to_bytes(4, "big") * (size // 4)
        status = server.network.send(endpoint, payload)
        if status is QUEUE_FULL:
            queue_full = True
            break
        assert status is SENT, status
        sent.append(payload)
        pending = server.network.pending_bytes(endpoint)
        assert pending <= limit + len(net.wire(payload)), f"{pending} bytes queued"
    assert queue_full, "the send queue never filled up"

    # The peer reads again: everything sent arrives, in order, and Drained follows.
    expected = b"".join(net.wire(p) for p in sent)
    assert_same_bytes(recv_exactly(raw, len(expected)), expected)
    assert server.expect(Drained) == Drained(endpoint)
    assert server.network.pending_bytes(endpoint) == 0
    assert server.network.wait_drained(endpoint, TIMEOUT) is True

    assert server.network.send(endpoint, b"again") is SENT
    assert recv_exactly(raw, len(net.wire(b"again"))) == net.wire(b"again")


# -- removing, disconnecting, failing ------------------------------------------------------


@pytest.mark.parametrize("by", ["resource_id", "endpoint"])
def test_remove(net: Net, by: str) -> None:
    server, listener_id, addr = net.server()
    client = net.node("client")
    endpoint = net.connected(client, addr)
    server_ep = accepted(server, listener_id)
    target = server_ep.resource_id if by == "resource_id" else server_ep

    # Kicking a client: it sees Disconnected; the server sees nothing.
    assert server.network.remove(target) is True
    assert server.network.remove(target) is False
    assert server.network.is_ready(server_ep.resource_id) is None
    assert client.expect(Disconnected) == Disconnected(endpoint)
    assert client.network.is_ready(endpoint.resource_id) is None

    # Removing the listener: new connections are refused, accepted ones carry on.
    survivor = net.connected(client, addr)
    survivor_server_ep = accepted(server, listener_id)
    assert server.network.is_ready(listener_id) is True
    assert server.network.remove(listener_id) is True
    assert server.network.remove(listener_id) is False
    assert server.network.is_ready(listener_id) is None
    server.sync()  # the loop has closed the listening socket
    late, _local = client.network.connect(net.transport, addr)
    assert client.expect(Connected) == Connected(late, False)
    assert client.network.is_ready(late.resource_id) is None
    assert client.network.send(survivor, b"alive") is SENT
    assert receive_one(net, server, survivor_server_ep, 5) == b"alive"

    server.sync()
    assert server.drain_events() == []


def test_peer_stop_is_detected(net: Net) -> None:
    server, listener_id, addr = net.server()
    client = net.node("client")
    net.connected(client, addr)
    server_ep = accepted(server, listener_id)

    client.stop()
    assert server.expect(Disconnected) == Disconnected(server_ep)
    assert server.network.is_ready(server_ep.resource_id) is None
    assert server.network.send(server_ep, b"x") is SendStatus.RESOURCE_NOT_FOUND


@pytest.mark.parametrize("loop_running", [True, False], ids=["loop", "no-loop"])
def test_connect_refused(net: Net, loop_running: bool) -> None:
    client = net.node("client", start=loop_running)
    addr = net.unused_addr()

    with pytest.raises(message_io.ConnectError) as info:
        client.network.connect_sync(net.transport, addr, timeout=TIMEOUT)
    assert not isinstance(info.value, message_io.ConnectTimeout)
    assert info.value.errno in (errno.ECONNREFUSED, errno.ENOENT)

    endpoint, _local = client.network.connect(net.transport, addr)
    if not loop_running:
        assert client.network.is_ready(endpoint.resource_id) is False
        client.start()
    # The failed connect_sync still reports its outcome as an event, then this one.
    first = client.expect(Connected)
    assert not first.established
    assert first.endpoint != endpoint
    failed = client.expect(Connected)
    assert failed == Connected(endpoint, False)
    # The event says why, as connect_sync's exception does.
    match failed:
        case Connected(_, False, message_io.ConnectError() as error):
            assert not isinstance(error, message_io.ConnectTimeout)
            assert error.errno in (errno.ECONNREFUSED, errno.ENOENT)
            assert error.__cause__ is not None
        case _:
            raise AssertionError(f"no error in {failed!r}")
    assert client.network.is_ready(endpoint.resource_id) is None
    assert client.network.is_ready(first.endpoint.resource_id) is None
    assert client.network.send(endpoint, b"x") is SendStatus.RESOURCE_NOT_FOUND


def test_send_status(net: Net) -> None:
    server, listener_id, addr = net.server()
    client = net.node("client", start=False)

    # No loop runs yet, so the connection is certainly still pending.
    endpoint, _local = client.network.connect(net.transport, addr)
    assert client.network.is_ready(endpoint.resource_id) is False
    assert client.network.send(endpoint, b"early") is SendStatus.RESOURCE_NOT_AVAILABLE

    client.start()
    assert client.expect(Connected) == Connected(endpoint, True)
    assert client.network.is_ready(endpoint.resource_id) is True
    assert client.network.send(endpoint, b"ok") is SENT
    server_ep = accepted(server, listener_id)
    assert receive_one(net, server, server_ep, 2) == b"ok"  # not b"earlyok"

    assert client.network.remove(endpoint.resource_id) is True
    assert client.network.send(endpoint, b"late") is SendStatus.RESOURCE_NOT_FOUND
    assert server.expect(Disconnected) == Disconnected(server_ep)
    assert server.network.send(server_ep, b"late") is SendStatus.RESOURCE_NOT_FOUND


def test_removed_connection_writes_its_queue(net: Net) -> None:
    """Bytes queued before ``remove`` are still written before the connection closes."""
    server, listener_id, addr = net.server()
    raw = net.raw_connect(addr, rcvbuf=16 * 1024)
    endpoint = accepted(server, listener_id)
    payloads = [bytes([i % 251]) * 50_000 for i in range(40)]  # 2 MB: more than one write

    def send_and_remove() -> None:
        for data in payloads:
            assert server.network.send(endpoint, data) is SENT
        assert server.network.remove(endpoint.resource_id) is True

    server.run_on_loop(send_and_remove)  # the peer reads nothing yet: bytes stay queued
    expected = b"".join(net.wire(p) for p in payloads) + net.farewell_wire()
    assert_same_bytes(recv_exactly(raw, len(expected)), expected)
    assert raw.recv(1) == b""  # then closed
    server.sync()
    assert server.drain_events() == []


def test_kick_with_a_goodbye(net: Net) -> None:
    """The common pattern: on Accepted, send a last message and remove the connection
    (both from the callback): the peer gets the message, then Disconnected."""

    def kick(node: Node, event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted):
            assert node.network.send(event.endpoint, b"go away") is SENT
            assert node.network.remove(event.endpoint.resource_id) is True

    _server, _listener_id, addr = net.server(kick)
    client = net.node("client")
    endpoint = net.connected(client, addr)
    assert receive_one(net, client, endpoint, 7) == b"go away"
    assert client.expect(Disconnected) == Disconnected(endpoint)


def test_wait_drained_released_when_the_peer_goes_away(net: Net) -> None:
    # A queue the kernel cannot swallow while the peer reads nothing, so that it can
    # never drain: the waiter below is released by the disconnection, not by a Drained.
    limit = 2 * kernel_send_capacity() + 1024 * 1024
    server, listener_id, addr = net.server(config=net.listen_config(send_buffer_limit=limit))
    raw = net.raw_connect(addr, rcvbuf=16 * 1024)
    endpoint = accepted(server, listener_id)
    payload = b"z" * 64 * 1024
    for _ in range(4096):
        status = server.network.send(endpoint, payload)
        if status is QUEUE_FULL:
            break
        assert status is SENT, status
    else:
        raise AssertionError("the send queue never filled up")

    results: list[bool] = []
    waiter = Worker(
        lambda: results.append(server.network.wait_drained(endpoint, 3 * TIMEOUT)), "waiter"
    )
    raw.close()  # with unread data: the connection breaks
    assert server.expect(Disconnected) == Disconnected(endpoint)
    waiter.join()
    assert results == [False]
    assert server.network.send(endpoint, payload) is SendStatus.RESOURCE_NOT_FOUND


def test_mutable_payloads_are_copied(net: Net) -> None:
    """``send`` keeps what the buffer held when it was called, even if it is queued."""
    server, listener_id, addr = net.server()
    client = net.node("client")
    endpoint = net.connected(client, addr)
    server_ep = accepted(server, listener_id)

    small = bytearray(b"a" * 100)
    big = bytearray(b"b" * 100_000)
    view = memoryview(bytearray(b"c" * 50_000))
    words = array.array("H", [0x6464] * 1000)  # 2000 bytes of b"d", in a 'H' view
    expected = [b"a" * 100, b"b" * 100_000, b"c" * 50_000, b"d" * 2000]

    def send_then_scribble() -> None:
        # On the loop thread, sends are queued until the end of the iteration.
        for data in (small, big, view, memoryview(words)):
            assert client.network.send(endpoint, data) is SENT
        small[:] = b"x" * len(small)
        big[:] = b"x" * len(big)
        view[:] = b"x" * len(view)
        words[:] = array.array("H", [0] * len(words))

    client.run_on_loop(send_then_scribble)
    if net.packet_based:
        for data in expected:
            assert receive_one(net, server, server_ep, len(data)) == data
    else:
        joined = b"".join(expected)
        assert_same_bytes(receive_one(net, server, server_ep, len(joined)), joined)


@pytest.mark.parametrize("loop_running", [True, False], ids=["loop", "no-loop"])
def test_connect_sync_and_addresses(net: Net, loop_running: bool) -> None:
    server, listener_id, addr = net.server()
    client = net.node("client", start=loop_running)

    endpoint, local = client.network.connect_sync(net.transport, addr, timeout=TIMEOUT)
    assert client.network.is_ready(endpoint.resource_id) is True
    assert endpoint.addr == addr  # the peer of a connection is where it connected to
    server_ep = accepted(server, listener_id)
    assert server_ep.addr == local  # and the server sees the client's local address
    if not loop_running:
        client.start()
    assert client.expect(Connected) == Connected(endpoint, True)  # still delivered

    assert server.network.send(server_ep, b"welcome") is SENT
    assert receive_one(net, client, endpoint, 7) == b"welcome"


def test_connect_sync_timeout_removes_the_attempt(net: Net) -> None:
    _server, _listener_id, addr = net.server()
    client = net.node("client", start=False)
    # With no loop running nothing can resolve the attempt, so a zero timeout expires
    # deterministically, although the address accepts connections.
    with pytest.raises(message_io.ConnectTimeout) as info:
        client.network.connect_sync(net.transport, addr, timeout=0)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, message_io.ConnectError)

    client.start()
    endpoint, _local = client.network.connect(net.transport, addr)
    # The abandoned attempt produces no event: the first one is this connection's.
    assert client.expect(Connected) == Connected(endpoint, True)
    client.sync()
    assert client.drain_events() == []


# -- before the loop ------------------------------------------------------------------------


def test_events_before_the_loop_are_kept(net: Net) -> None:
    node = net.node("node", start=False)
    listener_id, addr = node.network.listen(net.transport, net.listen_addr())
    endpoint, _local = node.network.connect(net.transport, addr)
    assert node.network.is_ready(endpoint.resource_id) is False

    node.start()
    events = [node.next_event(), node.next_event()]
    assert Connected(endpoint, True) in events
    accepts = [e for e in events if isinstance(e, Accepted)]
    assert len(accepts) == 1
    assert accepts[0].listener_id == listener_id
    server_ep = accepts[0].endpoint

    assert node.network.send(endpoint, b"ping") is SENT
    assert receive_one(net, node, server_ep, 4) == b"ping"
    assert node.network.send(server_ep, b"pong") is SENT
    assert receive_one(net, node, endpoint, 4) == b"pong"


def test_data_received_before_the_loop_is_kept(net: Net) -> None:
    def greet(node: Node, event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted):
            assert node.network.send(event.endpoint, b"hello") is SENT

    server, listener_id, addr = net.server(greet)
    client = net.node("client", start=False)
    if net.has_handshake:  # the handshake needs the client to run: connect_sync drives it
        endpoint, _local = client.network.connect_sync(net.transport, addr)
    else:
        endpoint, _ = client.network.connect(net.transport, addr)
    server_ep = accepted(server, listener_id)
    server.sync()  # the greeting is written before the client's loop ever runs

    client.start()
    assert client.expect(Connected) == Connected(endpoint, True)
    assert receive_one(net, client, endpoint, 5) == b"hello"
    assert client.network.send(endpoint, b"hi") is SENT
    assert receive_one(net, server, server_ep, 2) == b"hi"


def test_raw_socket_bytes_match_the_wire_format(net: Net) -> None:
    """What a plain socket sends arrives as the transport's messages, and the reverse."""
    server, listener_id, addr = net.server()
    raw = net.raw_connect(addr)
    endpoint = accepted(server, listener_id)

    raw.sendall(net.client_wire(b"from raw"))
    assert receive_one(net, server, endpoint, 8) == b"from raw"
    assert server.network.send(endpoint, b"to raw") is SENT
    assert recv_exactly(raw, len(net.wire(b"to raw"))) == net.wire(b"to raw")

    raw.shutdown(socket.SHUT_WR)
    assert server.expect(Disconnected) == Disconnected(endpoint)


# -- the node's side of the adapter contract, probed with the instrumented UNIX transport --


def test_lingering_removed_connection_stops_reading_at_eof(unix_net: Net) -> None:
    """A removed connection that is still writing its queue, whose peer half-closes:
    ``receive`` reports DISCONNECTED, and the node must not poll it for reading again
    (EOF stays readable: a level-triggered loop would spin until the queue is written or
    the linger time ends)."""
    capacity = kernel_send_capacity()
    config = unix_net.listen_config(send_buffer_limit=4 * capacity)
    server, listener_id, addr = unix_net.server(config=config)
    peer_path = unix_net.listen_addr()
    raw = unix_net.raw_connect(addr, bind=peer_path)
    endpoint = accepted(server, listener_id)
    assert endpoint.addr == peer_path
    remote = accepted_remote(peer_path)

    payload = b"q" * 64 * 1024
    count = 2 * capacity // len(payload) + 1  # more than the kernel can hold
    for _ in range(count):
        assert server.network.send(endpoint, payload) is SENT
    assert server.network.remove(endpoint.resource_id) is True
    raw.shutdown(socket.SHUT_WR)  # EOF for the server, which still has bytes to write

    assert remote.eof.wait(TIMEOUT), "the node never read the EOF"
    server.sync()  # two more turns of the loop, with the EOF still readable
    assert remote.receives_after_eof == 0, (
        f"receive() called {remote.receives_after_eof} times after it returned DISCONNECTED"
    )
    # A half-closed peer may still read: everything queued arrives, in order, then EOF.
    expected = unix_net.wire(payload) * count
    assert_same_bytes(recv_exactly(raw, len(expected)), expected)
    assert raw.recv(1) == b""


class _PathAfterTwoTurns(os.PathLike[str]):
    """A Unix socket path whose ``repr`` (which ``connect`` computes for its log line,
    after the connection is registered with the loop) lets the loop turn twice, so it
    has polled and failed the connection before ``connect_sync`` looks: the loop wins
    the race."""

    def __init__(self, path: str, node: Node) -> None:
        self.path = path
        self.node = node

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        self.node.sync()
        return f"_PathAfterTwoTurns({self.path!r})"


def test_connect_sync_keeps_the_os_error_when_the_loop_fails_first(unix_net: Net) -> None:
    returned = threading.Event()
    seen_after_return: list[bool] = []

    def on_outcome(_node: Node, event: NodeEvent[Any]) -> None:
        if isinstance(event, Connected):
            seen_after_return.append(returned.is_set())

    client = unix_net.node("client", on_outcome)
    path = _PathAfterTwoTurns(unix_net.unused_addr(), client)
    try:
        with pytest.raises(message_io.ConnectError) as info:
            client.network.connect_sync(unix_net.transport, path, timeout=TIMEOUT)
    finally:
        returned.set()
    assert not isinstance(info.value, message_io.ConnectTimeout)
    assert info.value.errno == errno.ENOENT, f"the OS error was lost: {info.value!r}"
    # The loop failed it first, but its event waited for connect_sync to raise.
    event = client.expect(Connected)
    assert not event.established
    assert event.error is not None and event.error.errno == errno.ENOENT
    assert seen_after_return == [True]


def test_a_peer_stalling_inside_a_message_is_disconnected(net: Net) -> None:
    """message_timeout, on every transport with messages (the test Unix transport comes
    through the adapter API: its Remote.incomplete() is all it takes)."""
    if not net.packet_based:
        pytest.skip("a raw byte stream has no messages, so nothing is ever incomplete")
    config = net.listen_config(message_timeout=0.3, min_message_rate=None)
    server, _listener_id, addr = net.server(config=config)
    stalled = net.raw_connect(addr)
    accepted = server.expect(Accepted)
    healthy = net.raw_connect(addr)
    other = server.expect(Accepted)
    wire = net.client_wire(b"m" * 1000)
    stalled.sendall(wire[:-10])  # all but the last 10 bytes, then silence
    gone = server.wait_for(Disconnected)
    assert gone.endpoint == accepted.endpoint
    healthy.sendall(net.client_wire(b"whole"))
    message = server.wait_for(Message)
    assert (message.endpoint, message.data) == (other.endpoint, b"whole")


def test_idle_timeout_disconnects_a_silent_peer(net: Net) -> None:
    config = net.listen_config(idle_timeout=0.3)
    server, _listener_id, addr = net.server(config=config)
    silent = net.raw_connect(addr)
    accepted = server.expect(Accepted)
    gone = server.wait_for(Disconnected)
    assert gone.endpoint == accepted.endpoint
    silent.settimeout(TIMEOUT)
    with contextlib.suppress(ConnectionResetError):
        while silent.recv(65536):  # a WS close frame may come first, then EOF
            pass


def _fill_queue(net: Net, server: Any, endpoint: Endpoint) -> list[bytes]:
    """Send 64 KiB messages until QUEUE_FULL; return what was accepted."""
    sent: list[bytes] = []
    for k in range(4096):
        payload = k.to_bytes(4, "big") * (16 * 1024)
        if server.network.send(endpoint, payload) is QUEUE_FULL:
            return sent
        sent.append(payload)
    raise AssertionError("the send queue never filled up")


def test_backpressure_is_logged_once_per_episode_and_counted(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 256 * 1024
    server, listener_id, addr = net.server(config=net.listen_config(send_buffer_limit=limit))
    raw = net.raw_connect(addr, rcvbuf=16 * 1024)
    endpoint = accepted(server, listener_id)
    with caplog.at_level(logging.WARNING, logger="message_io"):
        sent = _fill_queue(net, server, endpoint)
        for _ in range(9):  # nine more refusals in the same episode: no more lines
            assert server.network.send(endpoint, b"x" * 1024) is QUEUE_FULL
        stats = server.network.statistics(endpoint)
        assert stats is not None and stats.refused_sends == 10 and stats.reading
        assert stats.queued_bytes >= limit
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1 and str(endpoint) in lines[0]
        expected = b"".join(net.wire(p) for p in sent)
        assert_same_bytes(recv_exactly(raw, len(expected)), expected)
        assert server.expect(Drained) == Drained(endpoint)
        _fill_queue(net, server, endpoint)  # a new episode: one more line
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 2


def test_send_wait_waits_out_backpressure_instead_of_dropping(net: Net) -> None:
    limit = 128 * 1024
    server, listener_id, addr = net.server(config=net.listen_config(send_buffer_limit=limit))
    raw = net.raw_connect(addr, rcvbuf=16 * 1024)
    endpoint = accepted(server, listener_id)
    payloads = [k.to_bytes(4, "big") * (16 * 1024) for k in range(64)]  # 4 MiB in all
    statuses: list[SendStatus] = []
    sender = threading.Thread(
        target=lambda: statuses.extend(server.network.send_wait(endpoint, p) for p in payloads)
    )
    sender.start()
    expected = b"".join(net.wire(p) for p in payloads)
    assert_same_bytes(recv_exactly(raw, len(expected)), expected)  # read slowly, all there
    sender.join(TIMEOUT)
    assert statuses == [SENT] * len(payloads)
    with pytest.raises(message_io.LoopThreadError):
        server.run_on_loop(lambda: server.network.send_wait(endpoint, b"x"))


def test_send_wait_times_out_with_queue_full(net: Net) -> None:
    server, listener_id, addr = net.server(config=net.listen_config(send_buffer_limit=64 * 1024))
    net.raw_connect(addr, rcvbuf=16 * 1024)  # reads nothing
    endpoint = accepted(server, listener_id)
    # Fill the queue until the kernel's buffers are full too and it cannot drain.
    for _ in range(1000):
        _fill_queue(net, server, endpoint)
        if not server.network.wait_drained(endpoint, 0.1):
            break
    else:
        raise AssertionError("the queue always drained")
    assert server.network.send_wait(endpoint, b"late", timeout=0.2) is QUEUE_FULL


def test_pause_reading_holds_a_peer_back_and_resume_delivers(net: Net) -> None:
    server, listener_id, addr = net.server()
    raw = net.raw_connect(addr)
    endpoint = accepted(server, listener_id)
    assert server.network.pause_reading(endpoint) is True
    stats = server.network.statistics(endpoint)
    assert stats is not None and not stats.reading
    raw.sendall(net.client_wire(b"held"))
    server.sync()  # two loop turns: a readable peer would have been read by now
    assert not any(isinstance(e, Message) for e in server.drain_events())
    assert server.network.resume_reading(endpoint) is True
    message = server.wait_for(Message)
    assert message.endpoint == endpoint
    assert message.data == b"held" or b"held".startswith(message.data)  # TCP: a stream
    unknown = Endpoint.from_listener(listener_id, ("127.0.0.1", 9))
    assert server.network.pause_reading(unknown) is False


def test_a_paused_connection_whose_peer_resets_is_disconnected(net: Net) -> None:
    """A reset is reported by the poller even for a connection not polled for reading
    (paused): it must end the connection, not make the loop spin on it."""
    if net.is_unix:
        pytest.skip("a Unix socket has no reset to send")
    server, listener_id, addr = net.server()
    raw = net.raw_connect(addr)  # (the WebSocket handshake done, on WS)
    endpoint = accepted(server, listener_id)
    assert server.network.pause_reading(endpoint) is True
    server.sync()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()  # with SO_LINGER 0: a reset
    assert server.expect(Disconnected) == Disconnected(endpoint)
