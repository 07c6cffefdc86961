"""Connection churn: a closed connection leaves nothing behind, on either side.

A client node runs :data:`CYCLES` cycles of connect, one message and its echo, remove,
one after the other, against one echo server node. Each side keeps a weak reference to
the :class:`~message_io.network.adapter.Remote` of every connection (taken on the loop
thread, from the node's connection table, when it is announced). Once every connection
is closed on both sides, and after ``gc.collect()``, every one of them must be dead, the
nodes' tables must hold no connection, and the process must have as many open file
descriptors as before the first cycle. Nothing here waits for a timer: whatever is
still alive then is held by the node, not about to be released by it.

Default configs, plus FramedTcp with a ``connect_timeout``: its deadline is a timer of
the connection too (the default FramedTcp connect has none).

UDP has no connection on the server side (the listener answers every peer from one
socket), so only its client side has remotes to check.
"""

from __future__ import annotations

import collections
import gc
import os
import queue
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pytest

import message_io
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Endpoint,
    FramedTcpConnectConfig,
    Message,
    NodeEvent,
    SendStatus,
    Transport,
)
from message_io.network.adapter import ConnectConfig, Remote

from .conftest import TIMEOUT, Node, harness

CYCLES: Final = 300
PAYLOAD: Final = b"churn"

Refs = list["weakref.ref[Remote]"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _recorder(refs: Refs, kind: type[Accepted | Connected]) -> Callable[[Node, Any], None]:
    """A hook that keeps a weak reference to the remote of every ``kind`` event's
    connection (run on the loop thread, while the connection is in the table)."""

    def hook(node: Node, event: NodeEvent[Any]) -> None:
        if isinstance(event, kind):
            connections = node.handler._loop.connections
            refs.append(weakref.ref(connections[event.endpoint.resource_id].remote))

    return hook


def _echo_recorder(refs: Refs) -> Callable[[Node, Any], bool | None]:
    record = _recorder(refs, Accepted)

    def hook(node: Node, event: NodeEvent[Any]) -> bool | None:
        if isinstance(event, Message):
            assert node.network.send(event.endpoint, event.data) is SendStatus.SENT
            return True  # echoed: not queued
        record(node, event)
        return isinstance(event, Accepted)  # only Disconnected reaches the queue

    return hook


def _cycles(transport: Transport, config: ConnectConfig | None, client: Node, addr: Any) -> None:
    """Connect, send, wait for the echo, remove: :data:`CYCLES` times, one at a time."""
    for _ in range(CYCLES):
        endpoint, _local = client.network.connect(transport, addr, config=config)
        connected = client.expect(Connected)
        assert connected.endpoint == endpoint and connected.established
        assert client.network.send(endpoint, PAYLOAD) is SendStatus.SENT
        echo = client.expect(Message)
        assert echo.endpoint == endpoint and echo.data == PAYLOAD
        assert client.network.remove(endpoint.resource_id)


def _disconnections(server: Node) -> set[Endpoint]:
    """Wait for the server's ``Disconnected`` of every cycle's connection."""
    seen: set[Endpoint] = set()
    while len(seen) < CYCLES:
        seen.add(server.expect(Disconnected).endpoint)
    return seen


def _alive(refs: Refs) -> int:
    return sum(ref() is not None for ref in refs)


def _timers(node: Node) -> str:
    """The loop's pending timers, by callback (to tell what holds a connection)."""
    try:
        names = collections.Counter(
            getattr(entry[-1].callback, "__qualname__", "?")
            for entry in node.handler._loop.timers.entries
            if not entry[-1].cancelled
        )
    except (AttributeError, TypeError, IndexError):
        return "(unknown)"
    return ", ".join(f"{count} {name}" for name, count in names.most_common()) or "none"


@pytest.mark.parametrize(
    ("transport", "config"),
    [
        (Transport.FRAMED_TCP, None),
        (Transport.FRAMED_TCP, FramedTcpConnectConfig(connect_timeout=10.0)),
        (Transport.WS, None),
        (Transport.UDP, None),
    ],
    ids=["FRAMED_TCP", "FRAMED_TCP-connect_timeout", "WS", "UDP"],
)
def test_closed_connections_are_released(
    transport: Transport, config: ConnectConfig | None, tmp_path: Path
) -> None:
    server_refs: Refs = []
    client_refs: Refs = []
    with harness(transport, tmp_path) as net:
        server, listener_id, addr = net.server(_echo_recorder(server_refs), name="echo-server")
        client = net.node("client", _recorder(client_refs, Connected))
        server_loop = server.handler._loop
        client_loop = client.handler._loop
        server.sync()
        client.sync()
        fds = _open_fds()

        _cycles(transport, config, client, addr)
        if transport.is_connection_oriented:
            assert len(_disconnections(server)) == CYCLES
        # The server closed each connection before it said Disconnected, and the client
        # was asked to close each one before these calls: two turns of each loop later,
        # nothing is left to close.
        client.sync()
        server.sync()
        gc.collect()

        assert len(client_refs) == CYCLES
        assert len(server_refs) == (CYCLES if transport.is_connection_oriented else 0)
        alive = {"client": _alive(client_refs), "server": _alive(server_refs)}
        assert alive == {"client": 0, "server": 0}, (
            f"remotes of closed connections still alive (of {CYCLES} each): {alive};"
            f" pending timers: client: {_timers(client)}; server: {_timers(server)}"
        )
        assert not client_loop.connections
        assert not server_loop.connections
        assert list(client_loop.registry.resources.values()) == []
        assert [r.id for r in server_loop.registry.resources.values()] == [listener_id]
        assert _open_fds() == fds


@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.WS])
def test_a_connection_is_freed_by_the_turn_that_closes_it(transport: Transport) -> None:
    """Not only by the next turn: a signal sent from the ``Disconnected`` callback, which
    the loop delivers later in the same turn, finds the connection's remote already
    freed, with no collection of garbage."""
    server, listener = message_io.split()
    remote: list[weakref.ref[Remote]] = []
    seen: queue.Queue[object] = queue.Queue()
    announced = threading.Event()

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted):
            connection = server._loop.connections[event.endpoint.resource_id]
            remote.append(weakref.ref(connection.remote))
            announced.set()
        elif isinstance(event, Disconnected):
            server.signals.send("look")
        elif event == message_io.Signal("look"):
            seen.put(remote[0]())

    _, addr = server.network.listen(transport, "127.0.0.1:0")
    client, client_listener = message_io.split()
    with (
        listener.for_each_async(on_event, on_error="stop"),
        client_listener.for_each_async(lambda _event: None),
    ):
        endpoint, _ = client.network.connect_sync(transport, addr, timeout=TIMEOUT)
        assert announced.wait(TIMEOUT)
        assert client.network.remove(endpoint)
        assert seen.get(timeout=TIMEOUT) is None


@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.UDP])
def test_an_idle_connection_carries_no_queue_condition_or_event(transport: Transport) -> None:
    """What an idle connection would never use is made when first needed: the send
    queue by the first message the OS does not take at once, the condition by the first
    thread that waits for a drain. (They were 2.5 KiB of every idle connection.)"""
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, "127.0.0.1:0")
    with listener.for_each_async(lambda _event: None):
        endpoint, _ = handler.network.connect_sync(transport, addr, timeout=TIMEOUT)
        connection = handler._loop.connections[endpoint.resource_id]
        assert connection.resolved is True  # a flag, not a threading.Event
        assert connection.chunks == ()
        assert connection.cond is None
        assert handler.network.send(endpoint, b"written at once") is message_io.SendStatus.SENT
        assert connection.chunks == ()  # the OS took it: nothing was queued
        assert handler.network.wait_drained(endpoint, TIMEOUT)  # a thread waits: made now
        assert connection.cond is not None
    handler.stop()
