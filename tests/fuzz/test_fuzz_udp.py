"""Fuzz target for the UDP listener's input path (``UdpLocal.accept``).

Datagrams of any content and size, from empty to the largest payload of the family
(65507 bytes over IPv4, 65527 over IPv6), are sent from two loopback sockets, with the
listener read at drawn points in between (as the node reads it when readable).

Properties: ``accept`` raises nothing and never offers a connection; every datagram is
delivered exactly once, byte for byte and as ``bytes``, with its sender's address, in the
order each sender sent them.
"""

from __future__ import annotations

import select
import socket
from typing import Any, Final

from hypothesis import strategies as st

from message_io import UdpListenConfig
from message_io.adapters.udp import (
    MAX_LOCAL_PAYLOAD_LEN,
    MAX_LOCAL_PAYLOAD_LEN_V6,
    UdpAdapter,
    UdpLocal,
)
from message_io.network.adapter import Remote

from .campaign import fuzz_target
from .mutate import pattern

TIMEOUT: Final = 5.0
_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
_OVERHEAD: Final = 2048  # what the kernel charges a datagram beyond its payload, at most


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


FAMILIES: Final = [socket.AF_INET, *([socket.AF_INET6] if _ipv6_loopback() else [])]


def _largest(family: int) -> int:
    return MAX_LOCAL_PAYLOAD_LEN_V6 if family == socket.AF_INET6 else MAX_LOCAL_PAYLOAD_LEN


def _datagram(family: int, choice: tuple[int, Any]) -> bytes:
    kind, value = choice
    if kind == 0:
        return bytes(value)
    size, seed = value
    return pattern(min(size, _largest(family)), seed)


# A datagram: small with drawn bytes, or of a size around the interesting ones (the
# Ethernet-safe payload, 16 bits, the family's largest) with patterned bytes.
_sizes = st.one_of(
    st.sampled_from([0, 1, 1472, 1473, 65507, 65508, 65527]),
    st.integers(min_value=0, max_value=65527),
)
_datagrams = st.one_of(
    st.tuples(st.just(0), st.binary(max_size=64)),
    st.tuples(st.just(1), st.tuples(_sizes, st.integers(0, 255))),
)
# (which sender, the datagram, read the listener after it?)
_sends = st.lists(st.tuples(st.integers(0, 1), _datagrams, st.booleans()), max_size=24)


def _no_connection(remote: Remote, addr: Any) -> None:
    raise AssertionError(f"a UDP listener offered a connection from {addr!r}")


class Receiver:
    """A UDP listener, read like the node reads it, and what it delivered."""

    def __init__(self, family: int) -> None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        config = UdpListenConfig(receive_buffer_size=_RECEIVE_BUFFER)
        info = UdpAdapter().listen((host, 0), config)
        assert isinstance(info.local, UdpLocal)
        self.local = info.local
        self.addr = info.local_addr
        sock = self.local.socket
        # What the kernel may queue before it drops: half the buffer it granted.
        self.room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        self.got: list[tuple[Any, bytes]] = []

    def _deliver(self, addr: Any, data: bytes) -> None:
        assert type(data) is bytes
        self.got.append((addr, data))

    def read(self, count: int) -> None:
        """Call accept() when readable until ``count`` datagrams in all have come."""
        fd = self.local.fileno()
        while len(self.got) < count:
            assert select.select([fd], [], [], TIMEOUT)[0], (
                f"{count - len(self.got)} of {count} datagrams never came"
            )
            self.local.accept(_no_connection, self._deliver)
        assert len(self.got) == count, "more datagrams delivered than sent"
        assert not select.select([fd], [], [], 0)[0], "readable with nothing left to read"

    def close(self) -> None:
        self.local.close()


@fuzz_target(short=40, family=st.sampled_from(FAMILIES), sends=_sends)
def test_udp_listener_accept(family: int, sends: list[tuple[int, tuple[int, Any], bool]]) -> None:
    receiver = Receiver(family)
    senders: list[socket.socket] = []
    try:
        host = receiver.addr[0]
        for _ in range(2):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            senders.append(sock)
            sock.bind((host, 0))
        sent: list[tuple[int, bytes]] = []
        queued = 0
        for who, choice, read_now in sends:
            data = _datagram(family, choice)
            if queued + len(data) + _OVERHEAD > receiver.room:
                receiver.read(len(sent))  # make room: the kernel would drop the datagram
                queued = 0
            assert senders[who].sendto(data, receiver.addr) == len(data)
            sent.append((who, data))
            queued += len(data) + _OVERHEAD
            if read_now:
                receiver.read(len(sent))
                queued = 0
        receiver.read(len(sent))
        names = [sock.getsockname() for sock in senders]
        for who in (0, 1):
            mine = [data for w, data in sent if w == who]
            theirs = [data for addr, data in receiver.got if addr == names[who]]
            assert theirs == mine
        assert all(addr in names for addr, _data in receiver.got)
    finally:
        for sock in senders:
            sock.close()
        receiver.close()
