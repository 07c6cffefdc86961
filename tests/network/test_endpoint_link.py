"""With the compiled engine, an endpoint made by a node finds its connection directly
(no lookup by id); these tests hold that shortcut to what the lookup by id gives, the
only way of the interpreted engine: equal endpoints send alike, another node's endpoint
finds nothing there, and an endpoint kept after its connection ended holds nothing of
it."""

from __future__ import annotations

import copy
import gc
import pickle

import pytest

import message_io
from message_io import Disconnected, Endpoint, SendStatus
from message_io.network.connection import Connection

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
