"""``Transport.UDP`` on loopback: the behaviour suite's cases for a datagram transport
(echo, order, the largest payload, the oversize status), plus what is UDP's own:
endpoints shared by a listener, ICMP errors that must not end anything, addresses of
both families, the socket options of the configs."""

from __future__ import annotations

import functools
import pickle
import select
import socket
import threading
from typing import Any

import pytest

from message_io import (
    AddressError,
    Connected,
    Endpoint,
    Message,
    NodeEvent,
    PeerResourceId,
    ResourceId,
    ResourceType,
    SendStatus,
    Transport,
    UdpConnectConfig,
    UdpListenConfig,
    split,
)
from message_io.adapters.udp import (
    MAX_INTERNET_PAYLOAD_LEN,
    MAX_LOCAL_PAYLOAD_LEN,
    MAX_LOCAL_PAYLOAD_LEN_V6,
    UdpAdapter,
)

from .conftest import TIMEOUT, Net, Node, Worker

SENT = SendStatus.SENT
TOO_BIG = SendStatus.MAX_PACKET_SIZE_EXCEEDED


def raw_udp(net: Net, family: int = socket.AF_INET) -> socket.socket:
    """A plain blocking UDP socket on loopback (closed at teardown)."""
    sock = net._keep(socket.socket(family, socket.SOCK_DGRAM))
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def test_limits_are_the_protocol_limits() -> None:
    assert MAX_LOCAL_PAYLOAD_LEN == 65507
    assert MAX_LOCAL_PAYLOAD_LEN_V6 == 65527
    assert MAX_INTERNET_PAYLOAD_LEN == 1472
    assert Transport.UDP.max_message_size == MAX_LOCAL_PAYLOAD_LEN
    assert Transport.UDP.is_packet_based
    assert not Transport.UDP.is_connection_oriented


@pytest.mark.parametrize("clients", [1, 100])
def test_echo(udp: Net, clients: int) -> None:
    server, listener_id, addr = udp.echo_server()
    client = udp.node("client")

    opened = [client.network.connect(Transport.UDP, addr) for _ in range(clients)]
    endpoints = [endpoint for endpoint, _local in opened]
    local_addrs = {local for _endpoint, local in opened}
    assert len(set(endpoints)) == clients
    assert len(local_addrs) == clients
    for endpoint in endpoints:
        # Ready at once: UDP has no handshake to wait for.
        assert client.network.is_ready(endpoint.resource_id) is True
        assert client.network.send(endpoint, b"\x2a") is SENT
    # Each endpoint's Connected comes before its own reply; the replies of early
    # connections may come before the Connected of later ones.
    connected: set[Endpoint] = set()
    replied: list[Endpoint] = []
    for _ in range(2 * clients):
        event = client.next_event()
        if isinstance(event, Connected):
            assert event.established
            connected.add(event.endpoint)
        else:
            assert isinstance(event, Message), event
            assert event.data == b"\x2a"
            assert event.endpoint in connected
            replied.append(event.endpoint)
    assert sorted(replied, key=str) == sorted(endpoints, key=str)
    for endpoint in endpoints:
        assert client.network.remove(endpoint.resource_id) is True

    # The server saw one Message per client, all on the listener's id, each from the
    # client's own address; no Accepted, no Disconnected.
    senders: list[Any] = []
    for _ in range(clients):
        event = server.expect(Message)
        assert event.endpoint.resource_id == listener_id
        assert event.data == b"\x2a"
        senders.append(event.endpoint.addr)
    assert set(senders) == local_addrs
    server.sync()
    client.sync()
    assert server.drain_events() == []
    assert client.drain_events() == []


def test_ipv6_peer_with_the_default_source(udp: Net) -> None:
    server, listener_id, addr = udp.server(name="v6-server")
    assert server.network.remove(listener_id)
    listener_id, addr = server.network.listen(Transport.UDP, "[::1]:0")
    client = udp.node("client")
    endpoint = udp.connected(client, addr)
    assert client.network.send(endpoint, b"over ipv6") is SENT
    event = server.expect(Message)
    assert event.data == b"over ipv6"
    assert event.endpoint.resource_id == listener_id
    assert event.endpoint.addr[0] == "::1"
    # The reply goes from the listening socket to the sender's address.
    assert server.network.send(event.endpoint, b"back") is SENT
    assert client.expect(Message).data == b"back"


DATAGRAMS = 2000
WINDOW = 100  # datagrams in flight: loopback drops what overflows the receive buffer


def test_datagrams_arrive_in_order(udp: Net) -> None:
    received: list[bytes] = []
    progress = threading.Condition()

    def sink(_node: Node, event: NodeEvent[Any]) -> bool:
        if not isinstance(event, Message):
            return False
        with progress:
            received.append(event.data)
            progress.notify_all()
        return True

    _server, _listener_id, addr = udp.server(sink)
    client = udp.node("client")
    endpoint = udp.connected(client, addr)
    messages = [f"Integration test message: {i}".encode() for i in range(DATAGRAMS)]

    def send() -> None:
        for index, data in enumerate(messages):
            in_flight_ok = functools.partial(lambda sent: len(received) > sent - WINDOW, index)
            with progress:
                ok = progress.wait_for(in_flight_ok, TIMEOUT)
            assert ok, f"only {len(received)} datagrams arrived of {index} sent"
            assert client.network.send(endpoint, data) is SENT

    Worker(send, "udp-sender").join()
    with progress:
        assert progress.wait_for(lambda: len(received) >= DATAGRAMS, TIMEOUT)
    assert received == messages


@pytest.mark.parametrize(
    ("host", "largest"), [("127.0.0.1", MAX_LOCAL_PAYLOAD_LEN), ("::1", MAX_LOCAL_PAYLOAD_LEN_V6)]
)
def test_largest_payload_and_oversize(udp: Net, host: str, largest: int) -> None:
    server = udp.node("server")
    _listener_id, addr = server.network.listen(Transport.UDP, (host, 0))
    client = udp.node("client")
    endpoint = udp.connected(client, addr)
    payload = bytes(range(256)) * (largest // 256) + b"z" * (largest % 256)
    assert len(payload) == largest

    assert client.network.send(endpoint, payload) is SENT
    event = server.expect(Message)
    assert event.data == payload  # one datagram, never truncated
    peer = event.endpoint

    # One byte more: refused, and nothing at all is sent.
    assert client.network.send(endpoint, payload + b"!") is TOO_BIG
    assert server.network.send(peer, payload + b"!") is TOO_BIG
    assert client.network.send(endpoint, b"marker") is SENT
    assert server.expect(Message).data == b"marker"
    # The listener sends the largest payload too.
    assert server.network.send(peer, payload) is SENT
    assert client.expect(Message).data == payload


def test_empty_datagram_is_a_message(udp: Net) -> None:
    server, _listener_id, addr = udp.echo_server()
    client = udp.node("client")
    endpoint = udp.connected(client, addr)
    assert client.network.send(endpoint, b"") is SENT
    assert server.expect(Message).data == b""
    assert client.expect(Message).data == b""


def test_send_from_a_listener_to_any_address(udp: Net) -> None:
    server, listener_id, _addr = udp.server()
    peer = raw_udp(udp)
    for target in (peer.getsockname(), f"127.0.0.1:{peer.getsockname()[1]}"):
        endpoint = Endpoint.from_listener(listener_id, target)
        assert server.network.send(endpoint, b"hello") is SENT
        data, _source = peer.recvfrom(100)
        assert data == b"hello"
    # Removed: no longer a resource.
    assert server.network.remove(listener_id)
    assert server.network.send(endpoint, b"late") is SendStatus.RESOURCE_NOT_FOUND


def test_a_listener_refuses_to_resolve_a_name_on_send(udp: Net) -> None:
    """Sending from a listener to ``"name:port"`` would run a name lookup in the sending
    thread (the loop's, from a callback) on every datagram: it is refused instead."""
    server, listener_id, _addr = udp.server()
    for name in ("localhost:9", ("localhost", 9)):
        to_name = Endpoint.from_listener(listener_id, name)
        with pytest.raises(AddressError, match="must be an IP address, not the host name"):
            server.network.send(to_name, b"x")
    peer = raw_udp(udp)
    to_ip = Endpoint.from_listener(listener_id, f"127.0.0.1:{peer.getsockname()[1]}")
    assert server.network.send(to_ip, b"fine") is SENT
    assert peer.recv(100) == b"fine"


def test_port_unreachable_ends_nothing(udp: Net) -> None:
    """A peer that is not listening makes the kernel answer with an ICMP error, which
    surfaces on the next receive (or send). Neither the connection nor the listener may
    end, and both must carry on once a peer appears."""
    probe = raw_udp(udp)
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on `port` now
    server, listener_id, addr = udp.server()
    client = udp.node("client")
    endpoint = udp.connected(client, ("127.0.0.1", port))
    to_nobody = Endpoint.from_listener(listener_id, ("127.0.0.1", port))
    for _ in range(3):  # each send after the first meets the previous one's ICMP error
        assert client.network.send(endpoint, b"anyone?") is SENT
        assert server.network.send(to_nobody, b"anyone?") is SENT
    client.sync()
    server.sync()
    assert client.network.is_ready(endpoint.resource_id) is True

    # A peer appears on that port: the very next datagrams arrive.
    peer = udp._keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    peer.bind(("127.0.0.1", port))
    peer.settimeout(TIMEOUT)
    # The error of the last datagram above may still be pending on both sockets.
    assert client.network.send(endpoint, b"from the connection") is SENT
    assert server.network.send(to_nobody, b"from the listener") is SENT
    assert {peer.recv(100), peer.recv(100)} == {b"from the connection", b"from the listener"}
    # And the listener still receives.
    sender = raw_udp(udp)
    sender.sendto(b"still there", addr)
    assert server.expect(Message).data == b"still there"
    assert client.drain_events() == []


def test_remove_gives_no_event(udp: Net) -> None:
    _server, _listener_id, addr = udp.server()
    client = udp.node("client")
    endpoint = udp.connected(client, addr)
    assert client.network.remove(endpoint.resource_id) is True
    assert client.network.send(endpoint, b"x") is SendStatus.RESOURCE_NOT_FOUND
    assert client.network.is_ready(endpoint.resource_id) is None
    assert client.network.remove(endpoint.resource_id) is False
    client.sync()
    assert client.drain_events() == []


def test_removing_a_peer_never_closes_the_listener(udp: Net) -> None:
    """A listener's peers share its resource id: remove() of a peer's endpoint, or of
    ``endpoint.resource_id`` (the recipe to kick a client), forgets that peer only;
    the id listen() returned closes the listener."""
    server, listener_id, addr = udp.server()
    alice, bob = raw_udp(udp), raw_udp(udp)
    alice.sendto(b"hi", addr)
    from_alice = server.expect(Message).endpoint
    assert from_alice.resource_id == listener_id  # the same id, as in the Rust crate
    assert isinstance(from_alice.resource_id, PeerResourceId)
    assert from_alice.resource_id.peer_addr == alice.getsockname()

    assert server.network.remove(from_alice.resource_id) is True
    assert server.network.remove(from_alice) is True
    assert server.network.is_ready(listener_id) is True
    bob.sendto(b"still open", addr)
    event = server.expect(Message)
    assert event.data == b"still open"
    assert server.network.send(event.endpoint, b"yes") is SENT
    assert bob.recv(100) == b"yes"

    assert server.network.remove(listener_id) is True  # the listener's own id
    assert server.network.is_ready(listener_id) is None
    assert server.network.send(event.endpoint, b"late") is SendStatus.RESOURCE_NOT_FOUND
    assert server.network.remove(from_alice) is False  # no such listener any more


def test_peer_resource_id_is_the_listener_id() -> None:
    listener_id = ResourceId.new(Transport.UDP.id, ResourceType.LOCAL, 3)
    peer_id = Endpoint(listener_id, ("127.0.0.1", 9)).resource_id
    assert peer_id == listener_id and hash(peer_id) == hash(listener_id)
    assert repr(peer_id) == repr(listener_id)
    assert pickle.loads(pickle.dumps(peer_id)).peer_addr == ("127.0.0.1", 9)
    remote_id = ResourceId.new(Transport.UDP.id, ResourceType.REMOTE, 3)
    assert type(Endpoint(remote_id, ("127.0.0.1", 9)).resource_id) is ResourceId


def test_connect_sync_and_before_the_loop(udp: Net) -> None:
    server, _listener_id, addr = udp.echo_server()
    client = udp.node("client", start=False)
    endpoint, local = client.network.connect_sync(Transport.UDP, addr)
    assert client.network.send(endpoint, b"queued before the loop") is SENT
    client.start()
    assert client.expect(Connected).endpoint == endpoint
    assert client.expect(Message).data == b"queued before the loop"
    assert server.expect(Message).endpoint.addr == local


def test_source_address(udp: Net) -> None:
    server, _listener_id, addr = udp.server()
    client = udp.node("client")
    probe = raw_udp(udp)
    free_port = probe.getsockname()[1]
    probe.close()
    config = UdpConnectConfig(source_address=("127.0.0.1", free_port))
    endpoint, local = client.network.connect(Transport.UDP, addr, config=config)
    assert local == ("127.0.0.1", free_port)
    assert client.network.send(endpoint, b"x") is SENT
    assert server.expect(Message).endpoint.addr == ("127.0.0.1", free_port)
    # A source of the wrong family is a clear error, not a dark EINVAL.
    v4_source = UdpConnectConfig(source_address="127.0.0.1:0")
    with pytest.raises(AddressError, match="has no IPv6 address"):
        client.network.connect(Transport.UDP, "[::1]:9", config=v4_source)


def _option(sock: socket.socket, name: str) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, getattr(socket, name))


def test_config_options_reach_the_socket() -> None:
    adapter = UdpAdapter()
    listen = adapter.listen(
        "127.0.0.1:0",
        UdpListenConfig(
            reuse_address=True,
            reuse_port=True,
            send_broadcasts=True,
            receive_buffer_size=300_000,
            send_buffer_size=200_000,
            multicast_ttl=3,
            multicast_loop=False,
        ),
    )
    sock = listen.local.socket  # type: ignore[attr-defined]
    try:
        assert _option(sock, "SO_REUSEADDR") == 1
        assert _option(sock, "SO_REUSEPORT") == 1
        assert _option(sock, "SO_BROADCAST") == 1
        assert _option(sock, "SO_RCVBUF") >= 300_000  # Linux doubles it
        assert _option(sock, "SO_SNDBUF") >= 200_000
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 3
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
    finally:
        listen.local.close()

    connect = adapter.connect(listen.local_addr, UdpConnectConfig(broadcast=True))
    sock = connect.remote.socket  # type: ignore[attr-defined]
    try:
        assert _option(sock, "SO_BROADCAST") == 1
        assert _option(sock, "SO_REUSEADDR") == 0
        assert connect.remote.max_message_size == MAX_LOCAL_PAYLOAD_LEN
    finally:
        connect.remote.close()
    plain = adapter.connect(listen.local_addr, UdpConnectConfig())
    try:
        assert _option(plain.remote.socket, "SO_BROADCAST") == 0  # type: ignore[attr-defined]
    finally:
        plain.remote.close()


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="multicast_ttl"):
        UdpListenConfig(multicast_ttl=256)
    with pytest.raises(ValueError, match="receive_buffer_size"):
        UdpConnectConfig(receive_buffer_size=0)
    with pytest.raises(ValueError, match="send_buffer_limit"):
        UdpConnectConfig(send_buffer_limit=0)


def test_write_after_an_icmp_error_still_sends() -> None:
    """At the adapter level, with no loop reading the error away first: the send that
    meets a pending ECONNREFUSED (about an earlier datagram) is sent all the same."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    info = UdpAdapter().connect(("127.0.0.1", port), UdpConnectConfig())
    remote = info.remote
    poller = select.poll()
    poller.register(remote.fileno(), select.POLLERR)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        remote.write(b"to nobody")
        assert poller.poll(TIMEOUT * 1000), "the ICMP error never came"  # now pending
        peer.bind(("127.0.0.1", port))
        peer.settimeout(TIMEOUT)
        assert remote.write(b"after the error") == len(b"after the error")
        assert peer.recv(100) == b"after the error"
    finally:
        peer.close()
        remote.close()


def _loopback(host: str, port: int, family: int = 0, kind: int = 0, *_rest: Any) -> list[Any]:
    """A resolver that answers every name at once with the loopback address."""
    return [(socket.AF_INET, kind, 0, "", ("127.0.0.1", port))]


def test_a_connection_to_a_host_name_bounds_its_queue_in_datagrams_too() -> None:
    """A UDP connection made to a host name learns it carries datagrams when its
    attempt wins: its send queue then counts packets as well as bytes, so that a flood of
    empty datagrams under OS backpressure is bounded like on a connection to an address
    (white box: the queue's accounting)."""
    handler, _listener = split(resolver=_loopback)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        port = peer.getsockname()[1]
        by_name, _ = handler.network.connect_sync(Transport.UDP, ("peer.test", port))
        by_address, _ = handler.network.connect_sync(Transport.UDP, ("127.0.0.1", port))
        connections = handler._loop.connections
        assert connections[by_name.resource_id].packets is True
        assert connections[by_address.resource_id].packets is True
    handler.stop()
