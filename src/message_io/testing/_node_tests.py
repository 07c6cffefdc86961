"""The tests of the suite that need nothing but nodes: any registered transport runs them.

Where message boundaries matter, a byte-stream transport (not ``is_packet_based``) is
checked on the concatenated stream instead of message by message. A transport that is
not ``is_connection_oriented`` runs the echo, the largest message and the copy of
mutable payloads; the other tests are about connections and are skipped for it.
"""

from __future__ import annotations

import array
import random
import threading
from typing import Any

import pytest

from message_io import (
    Accepted,
    Connected,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    NodeEvent,
    ResourceId,
    SendStatus,
)

from ._base import SuiteBase
from ._nodes import (
    FILL_SIZE,
    TIMEOUT,
    RecordingNode,
    Worker,
    assert_same_bytes,
    fill_queue,
    send_all,
)

__all__ = ["NodeTests"]

SENT = SendStatus.SENT
TOO_BIG = SendStatus.MAX_PACKET_SIZE_EXCEEDED

BURST = 200_000
THREADS = 8
PER_THREAD = 2000


class Sink:
    """A server hook that keeps the ``Message`` data of one node (on the loop thread) and
    sets :attr:`done` once ``count`` messages (packet transports) or ``size`` bytes (byte
    streams) have arrived. Other events go to the node's queue."""

    def __init__(self, packet_based: bool, *, count: int, size: int) -> None:
        self.packet_based = packet_based
        self.count = count
        self.size = size
        self.messages: list[bytes] = []
        self.stream = bytearray()
        self.senders: set[Endpoint] = set()
        self.done = threading.Event()

    def __call__(self, _node: RecordingNode, event: NodeEvent[Any]) -> bool:
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


def record(thread: int, index: int) -> bytes:
    """Message ``index`` of sender ``thread``: a header, a body of one letter (some
    bodies above the node's coalescing size, so they are queued by reference), and a
    newline that delimits records in a byte stream."""
    size = 20_000 if index % 250 == 7 else (index * 7 + thread * 13) % 200
    return f"{thread} {index} {size}|".encode() + bytes([97 + thread]) * size + b"\n"


class NodeTests(SuiteBase):
    """Echo, order, size, concurrency, backpressure, removal and failures, between nodes."""

    def server_side(
        self, server: RecordingNode, listener_id: ResourceId, client: RecordingNode, ep: Endpoint
    ) -> Endpoint:
        """The server's endpoint for the client's ``ep``: its ``Accepted`` one, or, on a
        connectionless transport, the sender of a ``b"hello"`` the client sends first."""
        if self.transport.is_connection_oriented:
            return self.accepted(server, listener_id)
        assert client.network.send(ep, b"hello") is SENT
        event = server.expect(Message)
        assert event.data == b"hello"
        return event.endpoint

    @pytest.mark.parametrize("clients", [1, 100])
    def test_echo(self, clients: int) -> None:
        """Each of ``clients`` connections of one node sends a byte to an echo server and
        gets it back on its own endpoint; the server sees each client once (``Accepted``,
        then ``Disconnected`` after the client's ``remove``); removing produces no event
        on the side that removed."""
        server, listener_id, addr = self.echo_server()
        client = self.node("client")

        endpoints = [self.connect(client, addr) for _ in range(clients)]
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

        if self.transport.is_connection_oriented:
            self._check_echo_server_events(server, listener_id, clients)
        else:
            senders = []
            for _ in range(clients):
                message = server.expect(Message)
                assert message.data == b"\x2a"
                senders.append(message.endpoint)
            assert len(set(senders)) == clients
        # Removed endpoints produce no event on the side that removed them.
        client.sync()
        assert client.drain_events() == []

    def _check_echo_server_events(
        self, server: RecordingNode, listener_id: ResourceId, clients: int
    ) -> None:
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

    def test_burst_arrives_in_order(self) -> None:
        """200,000 small messages sent from one thread through a small send queue (so
        the sender meets backpressure) all arrive, in order: the same messages on a
        packet transport, the same byte stream otherwise."""
        self.need_connections()
        messages = [f"msg {i}".encode() for i in range(BURST)]
        packet_based = self.transport.is_packet_based
        sink = Sink(packet_based, count=BURST, size=sum(map(len, messages)))
        server, listener_id, addr = self.server(sink)
        client = self.node("client")
        endpoint = self.connected(client, addr, send_buffer_limit=64 * 1024)
        server_ep = self.accepted(server, listener_id)

        sender = Worker(lambda: send_all(client, endpoint, messages), "burst-sender")
        sender.join()
        sink.wait()
        server.sync()

        assert sink.senders == {server_ep}
        if packet_based:
            assert len(sink.messages) == BURST
            assert sink.messages == messages
        else:
            assert_same_bytes(bytes(sink.stream), b"".join(messages))

    def test_largest_message_intact(self) -> None:
        """A message of :meth:`large_message_size` bytes (the transport's limit, or
        8 MiB without one) goes to an echo server and back intact; one byte more is
        refused by ``send`` on both sides (``MAX_PACKET_SIZE_EXCEEDED``)."""
        size = self.large_message_size()
        payload = random.Random(8).randbytes(size)
        # The echoes wait in the server's queue until the client reads them, and the
        # client may fall behind by most of the message (a loaded machine): room for all
        # of it and its framing, or an echo is refused (QUEUE_FULL) and the server stops.
        config = self.listen_config(send_buffer_limit=2 * size)
        server, listener_id, addr = self.echo_server(config=config)
        client = self.node("client")
        endpoint = self.connected(client, addr)
        server_ep = self.server_side(server, listener_id, client, endpoint)
        if not self.transport.is_connection_oriented:
            assert client.expect(Message).data == b"hello"  # echoed

        assert client.network.send(endpoint, payload) is SENT
        # One Message on packet transports, the stream reassembled otherwise; then echoed.
        assert_same_bytes(self.receive_one(server, server_ep, size), payload)
        assert_same_bytes(self.receive_one(client, endpoint, size), payload)
        if size == self.transport.max_message_size:
            too_big = payload + b"!"
            assert client.network.send(endpoint, too_big) is TOO_BIG
            assert server.network.send(server_ep, too_big) is TOO_BIG

    def test_concurrent_senders_never_interleave(self) -> None:
        """8 threads send 2,000 messages each on one connection at the same time: every
        message arrives whole (never mixed with another's bytes) and each thread's in
        its order."""
        self.need_connections()
        batches = [[record(t, i) for i in range(PER_THREAD)] for t in range(THREADS)]
        total = THREADS * PER_THREAD
        packet_based = self.transport.is_packet_based
        size = sum(len(m) for batch in batches for m in batch)
        sink = Sink(packet_based, count=total, size=size)
        _server, _listener_id, addr = self.server(sink)
        client = self.node("client")
        endpoint = self.connected(client, addr)

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

        if packet_based:
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
            thread, index, length = int(thread_text), int(index_text), int(size_text)
            assert body == bytes([97 + thread]) * length, f"record {thread}/{index} is mixed"
            seen[thread].append(index)
        for thread in range(THREADS):
            assert seen[thread] == list(range(PER_THREAD)), f"thread {thread} out of order"

    def test_backpressure_and_drained(self) -> None:
        """A peer that stops reading (``pause_reading``): ``send`` returns
        ``QUEUE_FULL`` once ``send_buffer_limit`` bytes wait, having queued at most one
        message more; when the peer reads again, everything sent arrives in order and
        ``Drained`` follows, then sending works again."""
        self.need_connections()
        limit = 256 * 1024
        config = self.listen_config(send_buffer_limit=limit)
        server, listener_id, addr = self.server(config=config)
        client = self.node("client")
        endpoint = self.connected(client, addr)
        server_ep = self.accepted(server, listener_id)
        assert client.network.pause_reading(endpoint) is True
        client.sync()

        def fill() -> list[bytes]:
            # On the loop thread: the loop cannot write the queue out between the refusal
            # and the look at it.
            sent = fill_queue(server, server_ep)
            pending = server.network.pending_bytes(server_ep)
            assert limit <= pending <= limit + self.wire_size(bytes(FILL_SIZE)), pending
            return sent

        sent = server.run_on_loop(fill)
        assert client.network.resume_reading(endpoint) is True
        if self.transport.is_packet_based:
            for payload in sent:
                assert_same_bytes(self.receive_one(client, endpoint, len(payload)), payload)
        else:
            expected = b"".join(sent)
            assert_same_bytes(self.receive_one(client, endpoint, len(expected)), expected)
        assert server.expect(Drained) == Drained(server_ep)
        assert server.network.pending_bytes(server_ep) == 0
        assert server.network.send(server_ep, b"again") is SENT
        assert self.receive_one(client, endpoint, 5) == b"again"

    @pytest.mark.parametrize("by", ["resource_id", "endpoint"])
    def test_remove(self, by: str) -> None:
        """Removing an accepted connection (by resource id or by endpoint) disconnects
        the client and nothing else; removing the listener refuses new connections while
        accepted ones carry on. A second ``remove`` returns False; no event on the side
        that removed."""
        self.need_connections()
        server, listener_id, addr = self.server()
        client = self.node("client")
        endpoint = self.connected(client, addr)
        server_ep = self.accepted(server, listener_id)
        target = server_ep.resource_id if by == "resource_id" else server_ep

        # Kicking a client: it sees Disconnected; the server sees nothing.
        assert server.network.remove(target) is True
        assert server.network.remove(target) is False
        assert server.network.is_ready(server_ep.resource_id) is None
        assert client.expect(Disconnected) == Disconnected(endpoint)
        assert client.network.is_ready(endpoint.resource_id) is None

        # Removing the listener: new connections are refused, accepted ones carry on.
        survivor = self.connected(client, addr)
        survivor_server_ep = self.accepted(server, listener_id)
        assert server.network.is_ready(listener_id) is True
        assert server.network.remove(listener_id) is True
        assert server.network.remove(listener_id) is False
        assert server.network.is_ready(listener_id) is None
        server.sync()  # the loop has closed the listening socket
        self.refused(client, addr)
        assert client.network.send(survivor, b"alive") is SENT
        assert self.receive_one(server, survivor_server_ep, 5) == b"alive"

        server.sync()
        assert server.drain_events() == []

    def test_peer_stop_is_detected(self) -> None:
        """A client node that stops: the server gets ``Disconnected`` and forgets it."""
        self.need_connections()
        server, listener_id, addr = self.server()
        client = self.node("client")
        self.connected(client, addr)
        server_ep = self.accepted(server, listener_id)

        client.stop()
        assert server.expect(Disconnected) == Disconnected(server_ep)
        assert server.network.is_ready(server_ep.resource_id) is None
        assert server.network.send(server_ep, b"x") is SendStatus.RESOURCE_NOT_FOUND

    @pytest.mark.parametrize("loop_running", [True, False], ids=["loop", "no-loop"])
    def test_connect_refused(self, loop_running: bool) -> None:
        """Connecting where nothing listens (:meth:`refused_address`): ``connect_sync``
        raises a ``ConnectError`` (not a timeout) with the OS's errno; ``connect`` gives
        ``Connected(endpoint, False, error)`` with the same error, chained to its cause."""
        self.need_connections()
        client = self.node("client", start=loop_running)
        addr = self.refused_address()
        config = self.connect_config()

        with pytest.raises(ConnectError) as info:
            client.network.connect_sync(self.transport, addr, config=config, timeout=TIMEOUT)
        assert not isinstance(info.value, ConnectTimeout)
        assert info.value.errno in self.refused_errnos

        if self.refuses_at_once:
            # connect() raises at once too, as a setup failure: no endpoint was made, so
            # no event follows (both raised before any connection existed).
            error = self.refused(client, addr)
            assert error is not None and error.errno in self.refused_errnos
            return
        endpoint = self.connect(client, addr)
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
            case Connected(_, False, ConnectError() as error):
                assert not isinstance(error, ConnectTimeout)
                assert error.errno in self.refused_errnos
                assert error.__cause__ is not None
            case _:
                raise AssertionError(f"no error in {failed!r}")
        assert client.network.is_ready(endpoint.resource_id) is None
        assert client.network.is_ready(first.endpoint.resource_id) is None
        assert client.network.send(endpoint, b"x") is SendStatus.RESOURCE_NOT_FOUND

    def test_send_status(self) -> None:
        """``send`` says ``RESOURCE_NOT_AVAILABLE`` before ``Connected`` (and sends
        nothing), ``SENT`` once connected, ``RESOURCE_NOT_FOUND`` after ``remove``."""
        self.need_connections()
        server, listener_id, addr = self.server()
        client = self.node("client", start=False)

        # No loop runs yet, so the connection is certainly still pending.
        endpoint = self.connect(client, addr)
        assert client.network.is_ready(endpoint.resource_id) is False
        assert client.network.send(endpoint, b"early") is SendStatus.RESOURCE_NOT_AVAILABLE

        client.start()
        assert client.expect(Connected) == Connected(endpoint, True)
        assert client.network.is_ready(endpoint.resource_id) is True
        assert client.network.send(endpoint, b"ok") is SENT
        server_ep = self.accepted(server, listener_id)
        assert self.receive_one(server, server_ep, 2) == b"ok"  # not b"earlyok"

        assert client.network.remove(endpoint.resource_id) is True
        assert client.network.send(endpoint, b"late") is SendStatus.RESOURCE_NOT_FOUND
        assert server.expect(Disconnected) == Disconnected(server_ep)
        assert server.network.send(server_ep, b"late") is SendStatus.RESOURCE_NOT_FOUND

    def test_kick_with_a_goodbye(self) -> None:
        """On ``Accepted``, a last message and ``remove`` (both from the callback): the
        peer gets the message, then ``Disconnected``."""
        self.need_connections()

        def kick(node: RecordingNode, event: NodeEvent[Any]) -> None:
            if isinstance(event, Accepted):
                assert node.network.send(event.endpoint, b"go away") is SENT
                assert node.network.remove(event.endpoint.resource_id) is True

        _server, _listener_id, addr = self.server(kick)
        client = self.node("client")
        endpoint = self.connected(client, addr)
        assert self.receive_one(client, endpoint, 7) == b"go away"
        assert client.expect(Disconnected) == Disconnected(endpoint)

    def test_mutable_payloads_are_copied(self) -> None:
        """``send`` keeps what the buffer held when it was called, even if it is queued
        and the buffer (``bytearray``, ``memoryview``, ``array``) changes afterwards."""
        limit = self.transport.max_message_size or 100_000
        server, listener_id, addr = self.server()
        client = self.node("client")
        endpoint = self.connected(client, addr)
        server_ep = self.server_side(server, listener_id, client, endpoint)

        small = bytearray(b"a" * 100)
        big = bytearray(b"b" * min(100_000, limit))
        view = memoryview(bytearray(b"c" * min(50_000, limit)))
        words = array.array("H", [0x6464] * 1000)  # 2000 bytes of b"d", in a 'H' view
        expected = [bytes(small), bytes(big), bytes(view), b"d" * 2000]

        def send_then_scribble() -> None:
            # On the loop thread, sends are queued until the end of the iteration.
            for data in (small, big, view, memoryview(words)):
                assert client.network.send(endpoint, data) is SENT
            small[:] = b"x" * len(small)
            big[:] = b"x" * len(big)
            view[:] = b"x" * len(view)
            words[:] = array.array("H", [0] * len(words))

        client.run_on_loop(send_then_scribble)
        if self.transport.is_packet_based:
            for data in expected:
                assert self.receive_one(server, server_ep, len(data)) == data
        else:
            joined = b"".join(expected)
            assert_same_bytes(self.receive_one(server, server_ep, len(joined)), joined)

    @pytest.mark.parametrize("loop_running", [True, False], ids=["loop", "no-loop"])
    def test_connect_sync_and_addresses(self, loop_running: bool) -> None:
        """``connect_sync`` works with and without a running loop; the endpoint's address
        is where it connected, the server's endpoint has the client's local address, and
        ``Connected`` is still delivered."""
        self.need_connections()
        server, listener_id, addr = self.server()
        client = self.node("client", start=loop_running)

        config = self.connect_config()
        endpoint, local = client.network.connect_sync(
            self.transport, addr, config=config, timeout=TIMEOUT
        )
        assert client.network.is_ready(endpoint.resource_id) is True
        assert endpoint.addr == addr  # the peer of a connection is where it connected to
        server_ep = self.accepted(server, listener_id)
        assert server_ep.addr == local  # and the server sees the client's local address
        if not loop_running:
            client.start()
        assert client.expect(Connected) == Connected(endpoint, True)  # still delivered

        assert server.network.send(server_ep, b"welcome") is SENT
        assert self.receive_one(client, endpoint, 7) == b"welcome"

    def test_connect_sync_timeout_removes_the_attempt(self) -> None:
        """A ``connect_sync`` that times out raises ``ConnectTimeout`` (a
        ``TimeoutError``) and leaves no trace: no event ever names that attempt."""
        self.need_connections()
        _server, _listener_id, addr = self.server()
        client = self.node("client", start=False)
        # With no loop running nothing can resolve the attempt, so a zero timeout expires
        # deterministically, although the address accepts connections.
        with pytest.raises(ConnectTimeout) as info:
            client.network.connect_sync(
                self.transport, addr, config=self.connect_config(), timeout=0
            )
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, ConnectError)

        client.start()
        endpoint = self.connect(client, addr)
        # The abandoned attempt produces no event: the first one is this connection's.
        assert client.expect(Connected) == Connected(endpoint, True)
        client.sync()
        assert client.drain_events() == []

    def test_events_before_the_loop_are_kept(self) -> None:
        """A listener and a connection made before the node's loop runs: once it runs,
        ``Connected`` and ``Accepted`` both come, and the connection works both ways."""
        self.need_connections()
        node = self.node("node", start=False)
        listener_id, addr = node.network.listen(
            self.transport, self.listen_address(), config=self.listen_config()
        )
        endpoint = self.connect(node, addr)
        assert node.network.is_ready(endpoint.resource_id) is False

        node.start()
        events = [node.next_event(), node.next_event()]
        assert Connected(endpoint, True) in events
        accepts = [e for e in events if isinstance(e, Accepted)]
        assert len(accepts) == 1
        assert accepts[0].listener_id == listener_id
        server_ep = accepts[0].endpoint

        assert node.network.send(endpoint, b"ping") is SENT
        assert self.receive_one(node, server_ep, 4) == b"ping"
        assert node.network.send(server_ep, b"pong") is SENT
        assert self.receive_one(node, endpoint, 4) == b"pong"

    def test_data_received_before_the_loop_is_kept(self) -> None:
        """What the server sends before the client's loop ever runs is delivered once it
        runs, after ``Connected``."""
        self.need_connections()

        def greet(node: RecordingNode, event: NodeEvent[Any]) -> None:
            if isinstance(event, Accepted):
                assert node.network.send(event.endpoint, b"hello") is SENT

        server, listener_id, addr = self.server(greet)
        client = self.node("client", start=False)
        if self.has_handshake:  # the handshake needs the client to run: connect_sync drives it
            endpoint, _local = client.network.connect_sync(
                self.transport, addr, config=self.connect_config()
            )
        else:
            endpoint = self.connect(client, addr)
        server_ep = self.accepted(server, listener_id)
        server.sync()  # the greeting is written before the client's loop ever runs

        client.start()
        assert client.expect(Connected) == Connected(endpoint, True)
        assert self.receive_one(client, endpoint, 5) == b"hello"
        assert client.network.send(endpoint, b"hi") is SENT
        assert self.receive_one(server, server_ep, 2) == b"hi"
