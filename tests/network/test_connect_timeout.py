"""``connect_timeout``: a handshake that never finishes gives ``Connected(ep, False)``.

A stub transport whose handshake never completes (a socket pair whose other end never
answers) makes the outcome deterministic on any machine.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import message_io
from message_io import Connected, NodeEvent, Transport
from message_io.network.adapter import (
    Adapter,
    Buffer,
    ConnectConfig,
    ConnectionInfo,
    ListeningInfo,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
)

TIMEOUT = 10.0
T = TypeVar("T")


class _SilentRemote(Remote):
    """A connection whose handshake waits for an answer that never comes."""

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self, readiness: Readiness) -> PendingStatus:
        return PendingStatus.INCOMPLETE

    def pending_interest(self) -> Readiness:
        return Readiness.READ  # the answer would be readable; it never comes

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        raise AssertionError("never ready, so never read")

    def write(self, data: Buffer) -> int:
        raise AssertionError("never ready, so never written")

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        self.peer.close()


class _SilentAdapter(Adapter):
    def __init__(self) -> None:
        self.remotes: list[_SilentRemote] = []
        self.connecting = threading.Event()  # set by each connect

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        remote = _SilentRemote()
        self.remotes.append(remote)
        self.connecting.set()
        return ConnectionInfo(remote, "local", str(addr))

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        raise OSError("this stub cannot listen")


_ADAPTER = _SilentAdapter()
SILENT: Transport = getattr(Transport, "SILENT", None) or message_io.register_transport(
    "SILENT", _ADAPTER
)


def test_connect_timeout_gives_connected_false_and_closes() -> None:
    handler, listener = message_io.split()
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    config = ConnectConfig(connect_timeout=0.05)
    endpoint, _ = handler.network.connect(SILENT, "nowhere", config=config)
    with listener.for_each_async(events.put):
        event = events.get(timeout=TIMEOUT)
        assert event == Connected(endpoint, False)
        assert handler.network.is_ready(endpoint.resource_id) is None
        assert handler.network.send(endpoint, b"x") is message_io.SendStatus.RESOURCE_NOT_FOUND
    assert SILENT.adapter is _ADAPTER
    assert _ADAPTER.remotes[-1].closed


def test_connect_sync_times_out_while_the_loop_runs() -> None:
    handler, listener = message_io.split()
    with listener.for_each_async(lambda _event: None):
        with pytest.raises(message_io.ConnectTimeout) as info:
            handler.network.connect_sync(SILENT, "nowhere", timeout=0.05)
        assert "nowhere" in str(info.value)
        assert isinstance(info.value, TimeoutError)
        remote = _ADAPTER.remotes[-1]
        handler.signals.send("sync")  # one more loop turn handles the close request
    assert remote.closed


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.FRAMED_TCP, Transport.WS])
def test_tcp_based_connects_time_out_after_10_s_by_default(transport: Transport) -> None:
    """The kernel retries an unanswered SYN for minutes: 10 s is the default bound."""
    assert transport.adapter.connect_config().connect_timeout == 10.0


def test_a_dropped_syn_gives_up_at_the_connect_timeout() -> None:
    """A listener whose accept queue is full drops new SYNs (Linux): the connect hangs
    until connect_timeout, then Connected(endpoint, False)."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        addr = full.getsockname()
        fillers = []
        try:
            # Fill the accept queue (backlog 0 admits one, sometimes two, connections).
            for _ in range(4):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(addr)
                fillers.append(sock)
            handler, listener = message_io.split()
            events: queue.Queue[NodeEvent[Any]] = queue.Queue()
            config = message_io.FramedTcpConnectConfig(connect_timeout=0.3)
            with listener.for_each_async(events.put, on_error="stop"):
                endpoint, _ = handler.network.connect(Transport.FRAMED_TCP, addr, config=config)
                event = events.get(timeout=TIMEOUT)
            assert event == Connected(endpoint, False)
            assert isinstance(event, Connected)
            assert isinstance(event.error, message_io.ConnectTimeout)
            assert "timed out after 0.3 s" in str(event.error)
        finally:
            for sock in fillers:
                sock.close()


def test_a_loop_started_while_connect_sync_drives_takes_over() -> None:
    """connect_sync() drives the node itself when nobody does, but hands the loop over at
    once to a for_each that starts meanwhile, and waits for its outcome instead."""
    handler, listener = message_io.split()
    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def connect() -> None:
        try:
            handler.network.connect_sync(SILENT, "nowhere", timeout=60.0)
        except BaseException as exc:
            outcome.put(exc)
        else:
            outcome.put(None)

    made = len(_ADAPTER.remotes)
    _ADAPTER.connecting.clear()
    thread = threading.Thread(target=connect)
    thread.start()
    assert _ADAPTER.connecting.wait(TIMEOUT)  # connect_sync is under way, driving the node
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    with listener.for_each_async(events.put):
        handler.signals.send("loop")
        assert events.get(timeout=TIMEOUT) == message_io.Signal("loop")  # not after 60 s
        assert len(_ADAPTER.remotes) == made + 1  # one connect, still pending
        handler.stop()
        assert isinstance(outcome.get(timeout=TIMEOUT), message_io.NodeStoppedError)
    thread.join(TIMEOUT)
    assert _ADAPTER.remotes[-1].closed


def test_connect_sync_returns_while_another_thread_pulls_events() -> None:
    """A thread blocked in receive() drives the node: connect_sync() in another thread
    waits for the outcome that loop decides (no polling in slices), and the Connected
    event comes after connect_sync has returned."""
    server, server_listener = message_io.split()
    client, client_listener = message_io.split()
    with server_listener.for_each_async(lambda _event: None):
        _listener_id, addr = server.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
        pulled: queue.Queue[object] = queue.Queue()
        puller = threading.Thread(target=lambda: pulled.put(client_listener.receive(60.0)))
        puller.start()
        endpoint, _local = client.network.connect_sync(Transport.FRAMED_TCP, addr, timeout=TIMEOUT)
        assert pulled.get(timeout=TIMEOUT) == Connected(endpoint, True)
        puller.join(TIMEOUT)
        client.stop()
        server.stop()


def test_stop_wakes_a_connect_sync_waiting_on_a_busy_loop() -> None:
    """While the callback is busy (the loop cannot shut down yet), stop() from another
    thread makes a waiting connect_sync() raise at once, not when the loop gets round
    to it."""
    handler, listener = message_io.split()
    busy = threading.Event()
    release = threading.Event()

    def on_event(event: NodeEvent[Any]) -> None:
        if event == message_io.Signal("block"):
            busy.set()
            release.wait(3 * TIMEOUT)  # longer than the test waits for the outcome

    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def connect() -> None:
        try:
            handler.network.connect_sync(SILENT, "nowhere", timeout=None)
        except BaseException as exc:  # handed to the test
            outcome.put(exc)
        else:
            outcome.put(None)

    waiting = threading.Event()

    class Announcing(threading.Condition):
        """The loop's condition for connect_sync waiters, saying when one waits."""

        def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
            waiting.set()  # the lock is held: a notify cannot slip in before the wait
            return super().wait_for(predicate, timeout)

    handler._loop.sync_cond = Announcing()  # white box: to stop while it waits
    task = listener.for_each_async(on_event)
    try:
        handler.signals.send("block")
        assert busy.wait(TIMEOUT)
        thread = threading.Thread(target=connect)
        thread.start()
        assert waiting.wait(TIMEOUT)
        handler.stop()
        assert isinstance(outcome.get(timeout=TIMEOUT), message_io.NodeStoppedError)
        assert not release.is_set()  # the callback was still busy all along
    finally:
        release.set()
        assert task.wait(TIMEOUT)
    thread.join(TIMEOUT)


@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.WS], ids=str)
def test_connect_sync_to_a_listener_of_the_same_node_before_any_loop(
    transport: Transport,
) -> None:
    """With no loop running, connect_sync() drives the whole node, so the node's own
    listener accepts and answers the handshake (WebSocket's used to go unanswered: the
    caller spun on its own socket until the timeout)."""
    handler, listener = message_io.split()
    _listener_id, addr = handler.network.listen(transport, "127.0.0.1:0")
    endpoint, _local = handler.network.connect_sync(transport, addr, timeout=TIMEOUT)
    assert handler.network.is_ready(endpoint.resource_id) is True
    events = [listener.receive(TIMEOUT) for _ in range(2)]
    assert Connected(endpoint, True) in events
    assert any(isinstance(event, message_io.Accepted) for event in events)
    handler.stop()
