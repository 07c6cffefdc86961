"""The UDP receive loops (DatagramReader, DatagramSource), on real sockets: every
datagram waiting is read in order, at most 64 per readiness event, whether the build
reads them in batches (recvmmsg) or one at a time."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from message_io.network.datagrams import DATAGRAMS_PER_EVENT, DatagramReader, DatagramSource

from ..helpers import udp_to_a_closed_port


class _Peer:
    """The adapter side of a reader: records the errors it is told of."""

    def __init__(self) -> None:
        self.errors: list[OSError] = []

    def _recv_failed(self, exc: OSError) -> None:
        self.errors.append(exc)


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def _sender(to: socket.socket) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.connect(to.getsockname())
    return sock


@pytest.mark.parametrize("count", [1, 2, 16, 17, 63, 64, 65, 100])
def test_a_connected_socket_reads_all_in_order_64_per_event(
    receiver: socket.socket, count: int
) -> None:
    with _sender(receiver) as sender:
        receiver.connect(sender.getsockname())
        sent = [b"", *(f"datagram {i}".encode() for i in range(1, count))]
        for data in sent:
            sender.send(data)
        peer = _Peer()
        reader = DatagramReader(peer, receiver)
        frames: list[Any] = []
        assert reader.read(frames) == 0
        assert frames == sent[:DATAGRAMS_PER_EVENT]
        reader.read(frames)
        assert frames == sent
        reader.read(frames)  # none waits: nothing more, no error
        assert frames == sent
        assert peer.errors == []


@pytest.mark.parametrize("count", [1, 16, 64, 70])
def test_a_listening_socket_reads_each_sender_in_order(receiver: socket.socket, count: int) -> None:
    with _sender(receiver) as one, _sender(receiver) as two:
        senders = (one, two)
        expected = []
        for i in range(count):
            sender = senders[i % 3 == 2]
            data = f"{i}".encode()
            sender.send(data)
            expected.append((sender.getsockname(), data))
        local = _Peer()
        source = DatagramSource(local, receiver, 65507)
        datagrams: list[tuple[Any, bytes]] = []
        source.read(datagrams)
        assert datagrams == expected[:DATAGRAMS_PER_EVENT]
        source.read(datagrams)
        assert datagrams == expected
        source.read(datagrams)
        assert datagrams == expected
        assert local.errors == []


def test_a_refused_datagram_is_told_to_the_adapter_and_reading_goes_on() -> None:
    sock = udp_to_a_closed_port()
    try:
        sock.send(b"anyone?")
        peer = _Peer()
        frames: list[Any] = []
        DatagramReader(peer, sock).read(frames)
        assert frames == []
        assert [type(exc) for exc in peer.errors] == [ConnectionRefusedError]
    finally:
        sock.close()
