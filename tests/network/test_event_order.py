"""No event about an endpoint reaches the callback before the call that made it returned.

The tutorial's pattern, ``endpoint, _ = connect(...); state[endpoint] = ...`` on one
thread and ``state[event.endpoint]`` in the callback, must not miss because of the node.
The tests record the endpoint right after the call returns; the interpreter's forced
switch between threads (every 5 ms of running, more often in effect under a slow
allocator) could still hand the loop thread the interpreter in that instant, after the
call has returned, which the node cannot prevent. So they run with the forced switch
off (``no_preemption``): threads trade the interpreter only when one blocks, and what
is checked is the node's own order.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import message_io
from message_io import Accepted, Connected, Message, NodeEvent, Transport

TIMEOUT = 30.0


@pytest.fixture
def no_preemption() -> Iterator[None]:
    """No forced switch between threads for the test (see the module's docstring)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _free_ports() -> Iterator[int]:
    """Loopback ports free for TCP and UDP, below the kernel's ephemeral range: a port the
    test names before anything listens on it must not be handed meanwhile to a socket
    that the knocking itself binds (each knock's source port is ephemeral)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(max(1024, low - 10_000), low):
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue  # taken (or lingering): the next one
        yield port


def _loopback(host: str, port: int, family: int = 0, kind: int = 0, *_rest: Any) -> list[Any]:
    """A resolver that answers every name at once with the loopback address."""
    return [(socket.AF_INET, kind, 0, "", ("127.0.0.1", port))]


@pytest.mark.parametrize(
    ("call", "by_name"),
    [("connect", False), ("connect", True), ("connect_sync", False), ("connect_sync", True)],
    ids=["connect-address", "connect-name", "connect_sync-address", "connect_sync-name"],
)
@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.UDP], ids=str)
@pytest.mark.usefixtures("no_preemption")
def test_connect_from_a_foreign_thread_never_reports_early(
    transport: Transport, call: str, by_name: bool
) -> None:
    server, server_listener = message_io.split()
    client, client_listener = message_io.split(resolver=_loopback)
    _, addr = server.network.listen(transport, "127.0.0.1:0")
    assert isinstance(addr, tuple)
    if by_name:  # resolved on a resolver thread, which answers at once
        addr = ("peer.test", addr[1])
    known: set[message_io.Endpoint] = set()
    early: list[NodeEvent[Any]] = []
    connected = 0
    all_done = threading.Event()
    count = 1000

    def on_client_event(event: NodeEvent[Any]) -> None:
        nonlocal connected
        if isinstance(event, Connected):
            if event.endpoint not in known:  # the creator does not hold it yet
                early.append(event)
            connected += 1
            client.network.remove(event.endpoint.resource_id)
            if connected == count:
                all_done.set()

    with (
        server_listener.for_each_async(lambda _event: None, on_error="stop"),
        client_listener.for_each_async(on_client_event, on_error="stop"),
    ):
        for _ in range(count):
            endpoint, _local = getattr(client.network, call)(transport, addr)
            known.add(endpoint)
        assert all_done.wait(TIMEOUT), f"{connected} of {count} connects resolved"
    assert early == []


@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.UDP], ids=str)
@pytest.mark.usefixtures("no_preemption")
def test_listen_from_a_foreign_thread_never_reports_early(transport: Transport) -> None:
    """Peers already knock at the port when listen() binds it: no Accepted or Message
    may name the listener before listen() has returned its id."""
    node, node_listener = message_io.split()
    known: set[message_io.ResourceId] = set()
    early: list[NodeEvent[Any]] = []
    heard: dict[int, threading.Event] = {}  # by listener id: it got a peer this round
    stop = threading.Event()
    rounds = 200

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted | Message):
            listener_id = event.listener_id if isinstance(event, Accepted) else None
            if listener_id is None:
                listener_id = event.endpoint.resource_id
            if listener_id not in known:
                early.append(event)
            heard.setdefault(int(listener_id), threading.Event()).set()

    def knock(port: int) -> None:
        """Connect (or send a datagram) to ``port`` over and over until told to stop."""
        kind = socket.SOCK_DGRAM if transport is Transport.UDP else socket.SOCK_STREAM
        while not stop.is_set():
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    if kind == socket.SOCK_DGRAM:
                        sock.sendto(b"knock", ("127.0.0.1", port))
                    else:
                        sock.connect(("127.0.0.1", port))
                except OSError:
                    pass  # not listening yet

    ports = _free_ports()
    with node_listener.for_each_async(on_event, on_error="stop"):
        for _ in range(rounds):
            port = next(ports)
            stop.clear()
            knocker = threading.Thread(target=knock, args=(port,), daemon=True)
            knocker.start()
            try:
                listener_id, _addr = node.network.listen(transport, ("127.0.0.1", port))
                known.add(listener_id)
                reached = heard.setdefault(int(listener_id), threading.Event())
                assert reached.wait(TIMEOUT), "no peer reached this round's listener"
            finally:
                stop.set()
                knocker.join(TIMEOUT)
            node.network.remove(listener_id)
    assert early == []
