"""UDP multicast and broadcast, inside a private network namespace.

Multicast and broadcast datagrams must never leave the machine, so every test here runs
in a namespace of its own (see :mod:`tests.netns`) that has no way out: IPv4 uses only
its loopback device; IPv6 multicast, which Linux does not deliver over loopback, uses a
veth pair whose *both* ends are inside the namespace.

"Nothing arrives" is never waited for with a sleep: after the datagram that must not
arrive, a marker is sent on a path that does deliver, and the next message must be the
marker (UDP on one host keeps the order of one sender's datagrams to one socket).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from message_io import (
    ConnectError,
    Endpoint,
    ListenError,
    Message,
    SendStatus,
    Transport,
    UdpConnectConfig,
    UdpListenConfig,
)
from message_io.adapters.udp import UdpAdapter, UdpLocal

from ..netns import Namespace, network_namespace
from .conftest import Net, harness

SENT = SendStatus.SENT
GROUP = "239.255.0.1"
OTHER_GROUP = "239.255.0.2"
GROUP6 = "ff15::1234"
LO = "127.0.0.1"


@pytest.fixture(scope="module")
def ns() -> Iterator[Namespace]:
    with network_namespace("mio-udp") as namespace:
        # Two ends of one cable, both inside: IPv6 multicast needs a non-loopback device.
        namespace.ip("link", "add", "mio0", "type", "veth", "peer", "name", "mio1")
        namespace.ip("link", "set", "mio0", "up")
        namespace.ip("link", "set", "mio1", "up")
        namespace.ip("addr", "add", "fd00:6d69:6f::1/64", "dev", "mio0", "nodad")
        yield namespace


@pytest.fixture
def udp_ns(ns: Namespace, tmp_path: Path) -> Iterator[Net]:
    with harness(Transport.UDP, tmp_path) as net, ns.entered():
        yield net


def port_of(addr: Any) -> int:
    assert isinstance(addr, tuple)
    return int(addr[1])


def memberships(ns: Namespace, group: str) -> int:
    """How many sockets of the namespace have joined ``group`` (from /proc/net)."""
    if ":" in group:
        wanted = socket.inet_pton(socket.AF_INET6, group).hex()
        total = 0
        for line in ns.read_proc("igmp6").splitlines():
            fields = line.split()
            if fields[2] == wanted:
                total += int(fields[3])
        return total
    wanted = socket.inet_aton(group)[::-1].hex().upper()  # host byte order
    total = 0
    for line in ns.read_proc("igmp").splitlines():
        fields = line.split()
        if line.startswith("\t") and fields[0] == wanted:
            total += int(fields[1])
    return total


def mc_listen(net: Net, name: str, addr: Any, interface: str | int) -> tuple[Any, Any, Any]:
    node = net.node(name)
    config = UdpListenConfig(multicast_interface=interface)
    listener_id, local = node.network.listen(Transport.UDP, addr, config=config)
    return node, listener_id, local


def test_two_listeners_on_one_host_both_receive(udp_ns: Net, ns: Namespace) -> None:
    first, first_id, local = mc_listen(udp_ns, "first", f"{GROUP}:0", LO)
    port = local[1]
    second, second_id, _local = mc_listen(udp_ns, "second", (GROUP, port), LO)
    # Same port, another group: joined, but must not get the first group's datagrams.
    other, _other_id, _local = mc_listen(udp_ns, "other", (OTHER_GROUP, port), LO)
    assert memberships(ns, GROUP) == 2

    sender = udp_ns.node("sender")
    endpoint, sender_local = sender.network.connect(
        Transport.UDP, (GROUP, port), config=UdpConnectConfig(multicast_interface=LO)
    )
    assert sender_local is not None and sender_local[0] == LO
    assert sender.network.send(endpoint, b"hello group") is SENT
    for node, listener_id in ((first, first_id), (second, second_id)):
        event = node.expect(Message)
        assert event.data == b"hello group"
        assert event.endpoint.resource_id == listener_id
        assert event.endpoint.addr == sender_local
    to_other = udp_ns.connected(sender, (OTHER_GROUP, port), multicast_interface=LO)
    assert sender.network.send(to_other, b"marker") is SENT
    assert other.expect(Message).data == b"marker"  # and not "hello group"


def test_remove_leaves_the_group(udp_ns: Net, ns: Namespace) -> None:
    staying, _staying_id, local = mc_listen(udp_ns, "staying", f"{GROUP}:0", LO)
    port = local[1]
    leaving, leaving_id, _local = mc_listen(udp_ns, "leaving", (GROUP, port), LO)
    assert memberships(ns, GROUP) == 2
    assert leaving.network.remove(leaving_id)
    leaving.sync()
    assert memberships(ns, GROUP) == 1
    sender = udp_ns.node("sender")
    endpoint = udp_ns.connected(sender, (GROUP, port), multicast_interface=LO)
    assert sender.network.send(endpoint, b"still here?") is SENT
    assert staying.expect(Message).data == b"still here?"
    leaving.sync()
    assert leaving.drain_events() == []


@pytest.mark.parametrize(("group", "interface"), [(GROUP, LO), (GROUP6, "mio0")])
def test_leave_group_while_the_socket_stays_open(
    udp_ns: Net, ns: Namespace, group: str, interface: str
) -> None:
    """The leave really runs (the Rust crate's never does): the membership is gone
    while the socket is still open, before close could drop it."""
    before = memberships(ns, group)
    info = UdpAdapter().listen((group, 0), UdpListenConfig(multicast_interface=interface))
    local = info.local
    assert isinstance(local, UdpLocal)
    try:
        assert memberships(ns, group) == before + 1
        local.leave_group()
        assert memberships(ns, group) == before
        assert local.socket.fileno() >= 0
    finally:
        local.close()


def test_ipv6_multicast(udp_ns: Net, ns: Namespace) -> None:
    first, first_id, local = mc_listen(udp_ns, "first", f"[{GROUP6}]:0", "mio0")
    port = local[1]
    second, second_id, _local = mc_listen(udp_ns, "second", (GROUP6, port), "mio0")
    assert memberships(ns, GROUP6) == 2
    sender = udp_ns.node("sender")
    endpoint = udp_ns.connected(sender, (GROUP6, port), multicast_interface="mio0")
    assert sender.network.send(endpoint, b"hello v6 group") is SENT
    for node, listener_id in ((first, first_id), (second, second_id)):
        event = node.expect(Message)
        assert event.data == b"hello v6 group"
        assert event.endpoint.resource_id == listener_id


def test_multicast_loop_off_keeps_datagrams_off_this_host(udp_ns: Net) -> None:
    # On the veth: over loopback every datagram comes back in whatever the option says.
    listener, _listener_id, local = mc_listen(udp_ns, "listener", f"[{GROUP6}]:0", "mio0")
    port = local[1]
    sender = udp_ns.node("sender")
    options: dict[str, Any] = {"multicast_interface": "mio0", "multicast_ttl": 1}
    quiet = udp_ns.connected(sender, (GROUP6, port), multicast_loop=False, **options)
    loud = udp_ns.connected(sender, (GROUP6, port), multicast_loop=True, **options)
    assert sender.network.send(quiet, b"not for this host") is SENT
    assert sender.network.send(loud, b"marker") is SENT
    assert listener.expect(Message).data == b"marker"


def test_join_without_a_route_says_what_to_set(udp_ns: Net) -> None:
    node = udp_ns.node("node")
    with pytest.raises(
        ListenError, match=r"cannot join multicast group .* set multicast_interface"
    ):
        node.network.listen(Transport.UDP, f"{GROUP}:0")
    with pytest.raises(ConnectError, match=r"no route to the group; set multicast_interface"):
        node.network.connect(Transport.UDP, f"{GROUP}:3010")


def test_broadcast_needs_the_option(udp_ns: Net) -> None:
    receiver = udp_ns.node("receiver")
    _receiver_id, local = receiver.network.listen(Transport.UDP, "0.0.0.0:0")
    port = local[1]
    sender = udp_ns.node("sender")
    with pytest.raises(ConnectError, match="broadcast=True") as info:
        sender.network.connect(Transport.UDP, ("127.255.255.255", port))
    assert info.value.errno == errno.EACCES
    allowed = udp_ns.connected(sender, ("127.255.255.255", port), broadcast=True)
    assert sender.network.send(allowed, b"broadcast") is SENT
    assert receiver.expect(Message).data == b"broadcast"
    # A listener without send_broadcasts: the OS refuses, a status says so, nothing sent.
    plain_id, _plain = sender.network.listen(Transport.UDP, f"{LO}:0")
    to_all = Endpoint.from_listener(plain_id, ("127.255.255.255", port))
    assert sender.network.send(to_all, b"refused") is SendStatus.RESOURCE_NOT_AVAILABLE
    assert sender.network.send(allowed, b"marker") is SENT
    assert receiver.expect(Message).data == b"marker"


def test_listener_sends_and_receives_broadcasts(udp_ns: Net) -> None:
    node = udp_ns.node("node")
    wildcard_id, wildcard = node.network.listen(Transport.UDP, "0.0.0.0:0")
    # Bound to one address, a socket gets no broadcasts unless asked to.
    deaf_id, deaf = node.network.listen(Transport.UDP, f"{LO}:0")
    hearing_id, hearing = node.network.listen(
        Transport.UDP, f"{LO}:0", config=UdpListenConfig(receive_broadcasts=True)
    )
    assert hearing[1] != 0
    sender_id, _sender = node.network.listen(
        Transport.UDP, f"{LO}:0", config=UdpListenConfig(send_broadcasts=True)
    )

    def send(port: int, data: bytes, host: str = "127.255.255.255") -> None:
        endpoint = Endpoint.from_listener(sender_id, (host, port))
        assert node.network.send(endpoint, data) is SENT

    send(port_of(wildcard), b"to the wildcard")
    event = node.expect(Message)
    assert (event.endpoint.resource_id, event.data) == (wildcard_id, b"to the wildcard")

    send(port_of(deaf), b"unheard")
    send(port_of(deaf), b"direct", host=LO)
    event = node.expect(Message)
    assert (event.endpoint.resource_id, event.data) == (deaf_id, b"direct")

    send(port_of(hearing), b"heard")
    event = node.expect(Message)
    assert (event.endpoint.resource_id, event.data) == (hearing_id, b"heard")
    send(port_of(hearing), b"limited broadcast", host="255.255.255.255")
    assert node.expect(Message).data == b"limited broadcast"
    # Its own address still works, and another local address is not "its network's
    # broadcast": filtered out although the socket is bound to the wildcard address.
    send(port_of(hearing), b"to 127.0.0.2", host="127.0.0.2")
    send(port_of(hearing), b"direct", host=LO)
    event = node.expect(Message)
    assert (event.endpoint.resource_id, event.data) == (hearing_id, b"direct")
