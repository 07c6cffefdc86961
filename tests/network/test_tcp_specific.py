"""What only the IP transports do: FRAMED_TCP's wire format and its defence against bad
peers, IPv6, and ``connect_sync`` before any loop runs."""

from __future__ import annotations

import socket

import pytest

from message_io import (
    Connected,
    Disconnected,
    FramedTcpListenConfig,
    Message,
    SendStatus,
    Transport,
)
from message_io.codec.framing import frame_header

from .conftest import TIMEOUT, Net, accepted, receive_one, recv_exactly

SENT = SendStatus.SENT


# -- FRAMED_TCP: bad peers ---------------------------------------------------------------


def test_garbage_disconnects_only_that_peer(framed: Net) -> None:
    server, listener_id, addr = framed.echo_server()
    good = framed.node("good")
    endpoint = framed.connected(good, addr)
    good_server_ep = accepted(server, listener_id)

    raw = framed.raw_connect(addr)
    bad_ep = accepted(server, listener_id)
    raw.sendall(b"\xff" * 11)  # a varint that never ends: not a frame header
    assert server.expect(Disconnected) == Disconnected(bad_ep)
    assert raw.recv(1) == b""  # the server closed it
    assert server.network.is_ready(bad_ep.resource_id) is None

    assert good.network.send(endpoint, b"still here") is SENT
    assert server.expect(Message) == Message(good_server_ep, b"still here")
    assert good.expect(Message) == Message(endpoint, b"still here")


@pytest.mark.parametrize("announced", [1025, 2**40], ids=["just-over", "huge"])
def test_oversized_frame_disconnects_only_that_peer(framed: Net, announced: int) -> None:
    config = FramedTcpListenConfig(max_message_size=1024)
    server, listener_id, addr = framed.echo_server(config=config)
    good = framed.node("good")
    endpoint = framed.connected(good, addr)
    good_server_ep = accepted(server, listener_id)

    raw = framed.raw_connect(addr)
    bad_ep = accepted(server, listener_id)
    raw.sendall(frame_header(announced) + b"x" * 10)
    assert server.expect(Disconnected) == Disconnected(bad_ep)
    assert raw.recv(1) == b""

    # A message of exactly the limit still goes both ways; one byte more is refused.
    biggest = bytes(range(256)) * 4
    assert good.network.send(endpoint, biggest) is SENT
    assert server.expect(Message) == Message(good_server_ep, biggest)
    assert good.expect(Message) == Message(endpoint, biggest)
    too_big = biggest + b"!"
    assert server.network.send(good_server_ep, too_big) is SendStatus.MAX_PACKET_SIZE_EXCEEDED


def test_max_message_size_applies_to_sending(framed: Net) -> None:
    _server, _listener_id, addr = framed.server()
    client = framed.node("client")
    endpoint = framed.connected(client, addr, max_message_size=16)
    assert client.network.send(endpoint, b"x" * 17) is SendStatus.MAX_PACKET_SIZE_EXCEEDED
    assert client.network.send(endpoint, b"x" * 16) is SENT


def test_eof_inside_a_frame_delivers_nothing(framed: Net) -> None:
    server, listener_id, addr = framed.server()
    raw = framed.raw_connect(addr)
    endpoint = accepted(server, listener_id)

    raw.sendall(b"\x02ok" + b"\x05he")  # one whole frame, then 2 of 5 payload bytes
    raw.shutdown(socket.SHUT_WR)
    assert server.expect(Message) == Message(endpoint, b"ok")
    assert server.expect(Disconnected) == Disconnected(endpoint)  # no b"he"


# -- FRAMED_TCP: the wire format -------------------------------------------------------------


def test_zero_length_message(framed: Net) -> None:
    server, listener_id, addr = framed.echo_server()
    client = framed.node("client")
    endpoint = framed.connected(client, addr)
    server_ep = accepted(server, listener_id)

    assert client.network.send(endpoint, b"") is SENT
    assert server.expect(Message) == Message(server_ep, b"")
    assert client.expect(Message) == Message(endpoint, b"")


def test_byte_compatibility(framed: Net) -> None:
    server, listener_id, addr = framed.server()
    raw = framed.raw_connect(addr)
    endpoint = accepted(server, listener_id)

    raw.sendall(b"\x05hello" + b"\x00")
    assert server.expect(Message) == Message(endpoint, b"hello")
    assert server.expect(Message) == Message(endpoint, b"")

    assert server.network.send(endpoint, b"hi") is SENT
    assert recv_exactly(raw, 3) == b"\x02hi"
    # A two-byte header: 300 is 0xac 0x02 in LEB128.
    assert server.network.send(endpoint, b"y" * 300) is SENT
    assert recv_exactly(raw, 302) == b"\xac\x02" + b"y" * 300


def test_frame_split_into_single_bytes(framed: Net) -> None:
    server, listener_id, addr = framed.server()
    raw = framed.raw_connect(addr)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    endpoint = accepted(server, listener_id)

    payload = bytes(range(200))
    for byte in frame_header(len(payload)) + payload:
        raw.sendall(bytes([byte]))
    raw.sendall(frame_header(3) + b"end")
    assert server.expect(Message) == Message(endpoint, payload)
    assert server.expect(Message) == Message(endpoint, b"end")


# -- IPv6 ---------------------------------------------------------------------------------


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv6_echo(ip_net: Net) -> None:
    if not _ipv6_loopback_available():
        pytest.skip("cannot bind a socket to ::1 (IPv6 loopback disabled on this machine)")
    node = ip_net.node("server")
    echo_listener, addr = node.network.listen(ip_net.transport, "[::1]:0")
    assert addr[0] == "::1"
    client = ip_net.node("client")
    endpoint = ip_net.connected(client, addr)
    assert endpoint.addr[0] == "::1"
    server_ep = accepted(node, echo_listener)
    assert server_ep.addr[0] == "::1"

    assert client.network.send(endpoint, b"v6") is SENT
    assert receive_one(ip_net, node, server_ep, 2) == b"v6"
    assert node.network.send(server_ep, b"v6 back") is SENT
    assert receive_one(ip_net, client, endpoint, 7) == b"v6 back"


# -- connect_sync before the loop --------------------------------------------------------


def test_connect_sync_before_any_loop(ip_net: Net) -> None:
    server, listener_id, addr = ip_net.server()
    client = ip_net.node("client", start=False)

    endpoint, local = client.network.connect_sync(ip_net.transport, addr, timeout=TIMEOUT)
    assert local[0] == "127.0.0.1"
    assert client.network.is_ready(endpoint.resource_id) is True
    # Ready before the loop runs: a send goes out at once.
    assert client.network.send(endpoint, b"early") is SENT
    server_ep = accepted(server, listener_id)
    assert receive_one(ip_net, server, server_ep, 5) == b"early"

    client.start()
    assert client.expect(Connected) == Connected(endpoint, True)  # still delivered
    assert server.network.send(server_ep, b"reply") is SENT
    assert receive_one(ip_net, client, endpoint, 5) == b"reply"


def test_transport_facts() -> None:
    assert Transport.TCP.is_connection_oriented
    assert not Transport.TCP.is_packet_based
    assert Transport.TCP.max_message_size is None
    assert Transport.FRAMED_TCP.is_packet_based
    assert Transport.FRAMED_TCP.max_message_size == 16 * 1024 * 1024
    assert Transport.from_id(0) is Transport.TCP
    assert Transport.from_id(1) is Transport.FRAMED_TCP
