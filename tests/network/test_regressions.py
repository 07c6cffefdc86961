"""Regression tests for defects found in review: each failed before its fix."""

from __future__ import annotations

import array
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    Connected,
    Drained,
    Endpoint,
    FramedTcpConnectConfig,
    Message,
    NodeEvent,
    NodeHandler,
    SendStatus,
    Signal,
    TcpConnectConfig,
    Transport,
)
from message_io.codec.framing import FrameDecoder, frame_header
from message_io.network.adapter import Readiness

from .test_connect_timeout import SILENT, _SilentRemote

TIMEOUT = 10.0


@pytest.fixture
def peer() -> Iterator[tuple[socket.socket, Any]]:
    """A plain listening socket on loopback, and its address."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server, server.getsockname()
    server.close()


def _read_until(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(TIMEOUT)
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def _decode(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    FrameDecoder(1 << 20).feed(data, out)
    return out


def test_send_after_drained_is_written(peer: tuple[socket.socket, Any]) -> None:
    server, addr = peer
    handler, listener = message_io.split()
    config = TcpConnectConfig(send_buffer_limit=1)
    endpoint, _ = handler.network.connect_sync(Transport.TCP, addr, config=config)
    conn, _ = server.accept()
    statuses: list[SendStatus] = []

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Signal):
            statuses.extend(handler.network.send(endpoint, m) for m in (b"a;", b"b;", b"c;"))
        elif isinstance(event, Drained):
            statuses.append(handler.network.send(endpoint, b"c;"))

    with conn, listener.for_each_async(on_event):
        handler.signals.send("go")
        assert _read_until(conn, 6) == b"a;b;c;"
    assert SendStatus.QUEUE_FULL in statuses
    assert statuses[-1] is SendStatus.SENT


def test_second_send_from_a_backlog_event_is_written(peer: tuple[socket.socket, Any]) -> None:
    server, addr = peer
    handler, listener = message_io.split()
    endpoint, _ = handler.network.connect_sync(Transport.TCP, addr)  # Connected -> backlog
    conn, _ = server.accept()

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Connected):
            handler.network.send(endpoint, b"hello;")
            handler.network.send(endpoint, b"world;")

    with conn, listener.for_each_async(on_event):
        assert _read_until(conn, 12) == b"hello;world;"


def test_empty_raw_send_leaves_nothing_queued(peer: tuple[socket.socket, Any]) -> None:
    server, addr = peer
    handler, listener = message_io.split()
    endpoint, _ = handler.network.connect_sync(Transport.TCP, addr)
    conn, _ = server.accept()
    done: queue.Queue[list[SendStatus]] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Signal):
            done.put([handler.network.send(endpoint, b"x"), handler.network.send(endpoint, b"")])

    with conn, listener.for_each_async(on_event):
        handler.signals.send("go")
        assert done.get(timeout=TIMEOUT) == [SendStatus.SENT, SendStatus.SENT]
        assert handler.network.wait_drained(endpoint, TIMEOUT)
        assert handler.network.pending_bytes(endpoint) == 0
        assert _read_until(conn, 1) == b"x"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (array.array("i", [1, 2]), array.array("i", [1, 2]).tobytes()),
        (memoryview(b"abcdef").cast("B", shape=[2, 3]), b"abcdef"),
        (memoryview(b"abcdefgh")[::2], b"aceg"),
    ],
    ids=["array", "2-d view", "strided view"],
)
def test_any_buffer_is_framed_by_its_byte_size(
    peer: tuple[socket.socket, Any], payload: Any, expected: bytes
) -> None:
    server, addr = peer
    handler, listener = message_io.split()
    endpoint, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr)
    conn, _ = server.accept()
    with conn, listener.for_each_async(lambda _event: None):
        assert handler.network.send(endpoint, payload) is SendStatus.SENT
        assert handler.network.send(endpoint, b"NEXT") is SendStatus.SENT
        wire = _read_until(conn, 1 + len(expected) + 1 + 4)
    assert _decode(wire) == [expected, b"NEXT"]


def test_read_only_view_of_a_mutable_buffer_is_copied(peer: tuple[socket.socket, Any]) -> None:
    server, addr = peer
    handler, listener = message_io.split()
    config = FramedTcpConnectConfig(send_buffer_limit=64 * 1024 * 1024)
    endpoint, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr, config=config)
    conn, _ = server.accept()
    buffer = bytearray(b"A" * (8 * 1024 * 1024))
    # Sent from the loop thread while the peer reads nothing: most of it is queued.
    result: queue.Queue[SendStatus] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Signal):
            result.put(handler.network.send(endpoint, memoryview(buffer).toreadonly()))
            buffer[:] = b"B" * len(buffer)  # the caller reuses its buffer at once

    with conn, listener.for_each_async(on_event):
        handler.signals.send("go")
        assert result.get(timeout=TIMEOUT) is SendStatus.SENT
        wire = _read_until(conn, 4 + len(buffer))
    assert wire.count(b"B") == 0


def test_no_event_after_stop_in_a_drained_callback(peer: tuple[socket.socket, Any]) -> None:
    server, addr = peer
    handler, listener = message_io.split()
    config = TcpConnectConfig(send_buffer_limit=1)
    endpoint, _ = handler.network.connect_sync(Transport.TCP, addr, config=config)
    conn, _ = server.accept()
    seen: list[str] = []

    def on_event(event: NodeEvent[Any]) -> None:
        seen.append(type(event).__name__)
        if isinstance(event, Signal) and event.value == "go":
            for message in (b"a", b"b", b"c"):
                handler.network.send(endpoint, message)
        elif isinstance(event, Drained):
            handler.signals.send("late")
            handler.stop()

    with conn:
        task = listener.for_each_async(on_event)
        handler.signals.send("go")
        assert task.wait(TIMEOUT)
    assert seen[-1] == "Drained", seen
    assert "Message" not in seen


def test_stop_during_connect_sync_without_a_loop() -> None:
    handler: NodeHandler[Any]
    handler, _listener = message_io.split()
    polled = threading.Event()
    original: Callable[..., Any] = _SilentRemote.pending

    def pending(self: _SilentRemote, readiness: Readiness) -> Any:
        polled.set()
        return original(self, readiness)

    errors: queue.Queue[BaseException] = queue.Queue()

    def connect() -> None:
        try:
            handler.network.connect_sync(SILENT, "nowhere", timeout=TIMEOUT)
        except BaseException as exc:
            errors.put(exc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_SilentRemote, "pending", pending)
        thread = threading.Thread(target=connect)
        thread.start()
        assert polled.wait(TIMEOUT)
        handler.stop()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert isinstance(errors.get(timeout=TIMEOUT), message_io.NodeStoppedError)
    with pytest.raises(message_io.NodeStoppedError):
        handler.network.listen(Transport.TCP, "127.0.0.1:0")


def test_message_events_built_fast_equal_the_dataclass() -> None:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
    endpoint, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr)
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    with listener.for_each_async(events.put):
        handler.network.send(endpoint, b"ping")
        while True:
            event = events.get(timeout=TIMEOUT)
            if isinstance(event, Message):
                break
    assert event == Message(event.endpoint, b"ping")
    assert hash(event) == hash(Message(event.endpoint, b"ping"))


def test_no_accepted_after_the_listener_is_removed_mid_batch() -> None:
    handler, listener = message_io.split()
    listener_id, addr = handler.network.listen(Transport.TCP, "127.0.0.1:0")
    assert isinstance(addr, tuple)
    clients = [socket.create_connection(addr[:2], timeout=TIMEOUT) for _ in range(5)]
    seen: list[NodeEvent[Any]] = []

    def on_event(event: NodeEvent[Any]) -> None:
        seen.append(event)
        if isinstance(event, message_io.Accepted):
            handler.network.remove(listener_id)
            handler.signals.send("sync")
        elif isinstance(event, Signal):
            handler.stop()

    try:
        # The five connections wait in the kernel, so the loop accepts them in one batch.
        task = listener.for_each_async(on_event)
        assert task.wait(TIMEOUT)
    finally:
        for client in clients:
            client.close()
    accepted = [e for e in seen if isinstance(e, message_io.Accepted)]
    assert len(accepted) == 1, seen


def test_a_burst_from_the_callback_is_written_once_it_is_large(
    peer: tuple[socket.socket, Any],
) -> None:
    """Queued bytes are written during the callback once they pass the flush threshold,
    not only when the callback returns (the queue would otherwise grow to its limit)."""
    server, addr = peer
    handler, listener = message_io.split()
    endpoint, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr)
    conn, _ = server.accept()
    message = b"m" * 100
    count = 4000  # 404,000 bytes on the wire, past the 256 KiB threshold
    pending: queue.Queue[int] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Signal):
            for _ in range(count):
                assert handler.network.send(endpoint, message) is SendStatus.SENT
            pending.put(handler.network.pending_bytes(endpoint))

    with conn, listener.for_each_async(on_event):
        handler.signals.send("go")
        queued = pending.get(timeout=TIMEOUT)
        wire = _read_until(conn, count * (1 + len(message)))
    # Only the first message went out directly; without the threshold all the rest
    # would still be queued here.
    assert queued < (count - 1) * (1 + len(message))
    assert _decode(wire) == [message] * count


def test_a_descriptor_reused_within_an_iteration_gets_no_stale_readiness() -> None:
    """The callback closes connection X while the poll's list still holds X's readiness;
    another thread's connect() reuses X's descriptor number before the loop reaches that
    entry. The new connection is polled only from the next iteration, so the stale
    readiness must not reach it (it used to, and the loop died on a descriptor the
    poller did not know)."""
    handler, listener = message_io.split()
    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
    assert isinstance(addr, tuple)
    a = socket.create_connection((str(addr[0]), int(addr[1])))
    x = socket.create_connection((str(addr[0]), int(addr[1])))
    accepted: dict[Any, Endpoint] = {}
    both_accepted = threading.Event()
    written = threading.Event()
    connect_now = threading.Event()
    connected: queue.Queue[Endpoint] = queue.Queue()
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    reused: list[int] = []

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted):
            accepted[event.endpoint.addr] = event.endpoint
            if len(accepted) == 2:
                both_accepted.set()
                assert written.wait(TIMEOUT)  # both peers' bytes wait: one poll has both
        elif isinstance(event, Message) and event.endpoint == accepted.get(a.getsockname()):
            x_endpoint = accepted[x.getsockname()]
            fd = handler._loop.connections[x_endpoint.resource_id].fd  # white box
            assert handler.network.remove(x_endpoint)  # closed now: X's fd is free
            connect_now.set()
            new = connected.get(timeout=TIMEOUT)  # connect() returned, on another thread
            reused.append(int(handler._loop.connections[new.resource_id].fd == fd))
        else:
            events.put(event)

    task = listener.for_each_async(on_event, on_error="stop")
    try:
        assert both_accepted.wait(TIMEOUT)
        a.sendall(frame_header(1) + b"a")
        x.sendall(frame_header(1) + b"x")
        written.set()
        assert connect_now.wait(TIMEOUT)
        endpoint, _local = handler.network.connect(Transport.FRAMED_TCP, addr)
        connected.put(endpoint)
        while True:  # the new connection is announced; the loop is alive
            event = events.get(timeout=TIMEOUT)
            if isinstance(event, Connected):
                assert event == Connected(endpoint, True)
                break
        assert reused == [1]  # the setup did reuse the number (Linux: lowest free fd)
        assert handler.is_running()
    finally:
        a.close()
        x.close()
        handler.stop()
        assert task.wait(TIMEOUT)
