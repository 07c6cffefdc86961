"""With the compiled engine, an endpoint made by a node finds its connection, or the
packet listener its peer sent to, directly (no lookup by id); these tests hold that
shortcut to what the lookup by id gives, the only way of the interpreted engine: equal
endpoints send alike, another node's endpoint finds nothing there, and an endpoint kept
after its connection or listener ended sends nothing."""

from __future__ import annotations

import copy
import gc
import pickle
import socket
import threading
from typing import Any

import pytest

import message_io
from message_io import Disconnected, Endpoint, Message, SendStatus
from message_io.network.connection import Connection
from message_io.network.listener import Listener
from message_io.testing import TIMEOUT

from .conftest import Net, accepted, receive_one

SENT = SendStatus.SENT
NOT_FOUND = SendStatus.RESOURCE_NOT_FOUND


def _holds_a_connection(endpoint: Endpoint) -> bool:
    return any(isinstance(referent, Connection) for referent in gc.get_referents(endpoint))


def test_an_equal_endpoint_sends_as_the_one_the_node_made(framed: Net) -> None:
    server, listener_id, addr = framed.server()
    client = framed.node("client")
    endpoint = framed.connected(client, addr)
    server_ep = accepted(server, listener_id)
    assert _holds_a_connection(endpoint) is message_io.COMPILED  # linked
    equals = [
        Endpoint(endpoint.resource_id, endpoint.addr),
        pickle.loads(pickle.dumps(endpoint)),
        copy.copy(endpoint),
        copy.deepcopy(endpoint),
    ]
    for number, equal in enumerate(equals):
        assert equal == endpoint
        assert equal is not endpoint
        assert not _holds_a_connection(equal)
        payload = b"copy %d" % number
        assert client.network.send(equal, payload) is SENT
        assert receive_one(framed, server, server_ep, len(payload)) == payload


def test_another_node_finds_nothing_with_an_endpoint_it_did_not_make(framed: Net) -> None:
    server, listener_id, addr = framed.server()
    client = framed.node("client")
    endpoint = framed.connected(client, addr)
    server_ep = accepted(server, listener_id)
    other = framed.node("other")  # no connection at all
    assert other.network.send(endpoint, b"stray") is NOT_FOUND
    assert other.network.is_ready(endpoint.resource_id) is None
    assert client.network.send(endpoint, b"own") is SENT
    assert receive_one(framed, server, server_ep, 3) == b"own"  # not b"stray"


@pytest.mark.parametrize("how", ["removed", "lost", "stopped"])
def test_an_endpoint_kept_after_its_connection_ended_holds_none_of_it(
    framed: Net, how: str
) -> None:
    server, listener_id, addr = framed.server()
    client = framed.node("client")
    endpoint = framed.connected(client, addr)
    server_ep = accepted(server, listener_id)
    assert _holds_a_connection(endpoint) is message_io.COMPILED  # linked
    assert _holds_a_connection(server_ep) is message_io.COMPILED
    if how == "removed":
        assert client.network.remove(endpoint) is True
    elif how == "lost":
        assert server.network.remove(server_ep) is True
        assert client.expect(Disconnected) == Disconnected(endpoint)
        client.sync()
    else:
        client.stop()
    assert client.network.send(endpoint, b"late") is NOT_FOUND
    assert not _holds_a_connection(endpoint)
    if how == "removed":  # the server lost it
        assert server.expect(Disconnected) == Disconnected(server_ep)
        server.sync()
        assert not _holds_a_connection(server_ep)


def _holds_a_listener(endpoint: Endpoint) -> bool:
    return any(isinstance(referent, Listener) for referent in gc.get_referents(endpoint))


def _peer(udp: Net, hook: Any = None) -> tuple[Net, Any, Any, Endpoint, socket.socket]:
    """A UDP server node (with ``hook``) and a plain socket that sent it a datagram:
    ``(udp, server, listener_id, peer_endpoint, sock)``, the endpoint as the server's
    Message gave it; the socket is connected to the server."""
    server, listener_id, addr = udp.server(hook)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    udp.sockets.append(sock)
    sock.connect(addr)
    sock.send(b"hello")
    message = server.expect(Message)
    assert message.data == b"hello"
    return udp, server, listener_id, message.endpoint, sock


def test_a_listener_s_peer_sends_as_an_equal_endpoint(udp: Net) -> None:
    _, server, listener_id, peer, sock = _peer(udp)
    assert _holds_a_listener(peer) is message_io.COMPILED  # linked
    equals = [
        Endpoint.from_listener(listener_id, peer.addr),
        pickle.loads(pickle.dumps(peer)),
        copy.copy(peer),
    ]
    for number, endpoint in enumerate([peer, *equals]):
        payload = b"datagram %d" % number
        assert server.network.send(endpoint, payload) is SENT
        assert sock.recv(100) == payload
    for equal in equals:
        assert not _holds_a_listener(equal)
    with pytest.raises(TypeError):
        server.network.send(peer, "text")
    other = udp.node("other")  # no listener at all
    assert other.network.send(peer, b"stray") is NOT_FOUND


@pytest.mark.parametrize("how", ["removed", "stopped"])
def test_a_listener_s_peer_finds_nothing_once_the_listener_is_gone(udp: Net, how: str) -> None:
    _, server, listener_id, peer, _sock = _peer(udp)
    if how == "removed":
        assert server.network.remove(listener_id) is True
        server.sync()
    else:
        server.stop()
    assert server.network.send(peer, b"late") is NOT_FOUND
    assert server.network.send(Endpoint.from_listener(listener_id, peer.addr), b"late") is (
        NOT_FOUND
    )
    # The kept endpoint holds neither the closed listener nor, through it, the node.
    assert not _holds_a_listener(peer)


def test_a_removed_listener_sends_nothing_before_the_loop_closes_it(udp: Net) -> None:
    """remove() takes the listener out at once; the loop closes its socket later. Until
    then its socket is open, and a linked peer endpoint must not reach it."""
    gate = threading.Event()
    blocked = threading.Event()

    def hold(_node: Any, event: Any) -> None:
        if isinstance(event, Message) and event.data == b"block":
            blocked.set()
            gate.wait(TIMEOUT)

    _, server, listener_id, peer, sock = _peer(udp, hold)
    sock.send(b"block")
    assert blocked.wait(TIMEOUT)
    try:
        assert server.network.remove(listener_id) is True
        assert server.network.send(peer, b"late") is NOT_FOUND
    finally:
        gate.set()
    server.sync()
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):  # a loopback datagram arrives within sendto()
        sock.recv(100)
