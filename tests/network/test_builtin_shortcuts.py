"""The node reads FramedTcp and UDP with their compiled readers, writes TCP and UDP to
the socket itself, and reads and sends a UDP listener's datagrams with its compiled
source, bypassing ``receive``, ``incomplete``, ``write``, ``accept`` and ``send_to``:
only where those are the built-in ones. A subclass that overrides one of them gets it
called, as the adapter contract says."""

from __future__ import annotations

import dataclasses
import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import message_io
from message_io import Connected, Message, Transport, register_transport
from message_io.adapters.framed_tcp import FramedTcpAdapter, FramedTcpLocal, FramedTcpRemote
from message_io.adapters.tcp import TcpRemote
from message_io.adapters.udp import UdpAdapter, UdpLocal, UdpRemote
from message_io.codec.framing import frame_header
from message_io.errors import FrameTooLarge
from message_io.network.adapter import (
    Buffer,
    ConnectionInfo,
    ListeningInfo,
    ReadStatus,
    SendStatus,
)

from .conftest import TIMEOUT

_names = itertools.count()


class _Counting(FramedTcpRemote):
    """Records the calls of the methods a subclass may override (and what ``write`` got)."""

    calls: list[str]
    written: list[bytes]

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        self.calls.append("receive")
        return super().receive(deliver)

    def incomplete(self) -> int:
        self.calls.append("incomplete")
        return super().incomplete()

    def write(self, data: Buffer) -> int:
        self.calls.append("write")
        self.written.append(bytes(data))
        return super().write(data)

    def header(self, size: int) -> bytes:
        self.calls.append("header")
        return frame_header(size)


def _transport(remote: type[FramedTcpRemote]) -> Transport:
    class Local(FramedTcpLocal):
        def make_remote(self, sock: socket.socket) -> FramedTcpRemote:
            return remote(sock, connecting=False, max_message_size=1 << 20)

    class Adapter(FramedTcpAdapter):
        def make_remote(self, sock: socket.socket, config: Any) -> FramedTcpRemote:
            return remote(sock, connecting=True, max_message_size=1 << 20)

        def make_local(self, sock: socket.socket, config: Any) -> FramedTcpLocal:
            return Local(sock, config)

    return register_transport(f"SHORTCUTS_{next(_names)}", Adapter())


@pytest.fixture
def node() -> Iterator[tuple[message_io.NodeHandler[Any], message_io.NodeListener[Any]]]:
    handler, listener = message_io.split()
    yield handler, listener
    handler.stop()


def _echo_once(
    node: tuple[message_io.NodeHandler[Any], message_io.NodeListener[Any]], transport: Transport
) -> list[bytes]:
    """Connect to our own listener, send two messages, return what the listener got."""
    handler, listener = node
    _, addr = handler.network.listen(transport, "127.0.0.1:0")
    client, _ = handler.network.connect(transport, addr)
    got: list[bytes] = []
    while len(got) < 2:
        event = listener.receive(TIMEOUT)
        assert event is not None, f"timed out with {got}"
        if isinstance(event, Connected):
            assert event.established
            handler.network.send(client, b"first")
            handler.network.send(client, b"second" * 1000)
        elif isinstance(event, Message):
            got.append(event.data)
    return got


def test_the_built_in_remotes_take_the_shortcuts() -> None:
    a, b = socket.socketpair()
    with a, b:
        framed = FramedTcpRemote(a, connecting=False, max_message_size=100)
        assert framed._frame_reader() is not None
        assert framed._direct_socket() is a
        assert TcpRemote(b, connecting=False)._direct_socket() is b


def test_a_subclass_gets_its_methods_called(
    node: tuple[message_io.NodeHandler[Any], message_io.NodeListener[Any]],
) -> None:
    calls: list[str] = []
    written: list[bytes] = []
    remote = type("Remote", (_Counting,), {"calls": calls, "written": written})
    with socket.socket() as sock:
        made = remote(sock, connecting=False, max_message_size=1)
        assert made._frame_reader() is None
        assert made._direct_socket() is None

    got = _echo_once(node, _transport(remote))

    assert got == [b"first", b"second" * 1000]
    assert {"receive", "incomplete", "write", "header"} <= set(calls)
    # The first message is the one the node writes at once: through write() too.
    assert any(b"first" in data for data in written)


def test_a_subclass_that_replaces_its_socket_or_limit_is_read_from_them() -> None:
    """A subclass may wrap its socket or change its limit after ``__init__``:
    ``receive`` reads the socket and applies the limit the remote has then."""
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    with first, first_peer, second, second_peer:
        for sock in (first, second):
            sock.setblocking(False)
        remote = type("Remote", (FramedTcpRemote,), {})(
            first, connecting=False, max_message_size=100
        )
        remote.socket = second
        remote.max_message_size = 3
        second_peer.sendall(b"\x02ok")
        got: list[bytes] = []
        assert remote.receive(got.append) is ReadStatus.OK
        assert got == [b"ok"]
        second_peer.sendall(b"\x05toolong")
        with pytest.raises(FrameTooLarge):
            remote.receive(got.append)


# -- UDP -------------------------------------------------------------------------------


class _CountingUdpRemote(UdpRemote):
    calls: list[str]

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        self.calls.append("receive")
        return super().receive(deliver)

    def write(self, data: Buffer) -> int:
        self.calls.append("write")
        return super().write(data)


class _CountingUdpLocal(UdpLocal):
    calls: list[str]

    def accept(
        self,
        accept_remote: Callable[[Any, Any], object],
        deliver: Callable[[Any, bytes], object],
    ) -> None:
        self.calls.append("accept")
        super().accept(accept_remote, deliver)

    def send_to(self, addr: Any, data: Buffer) -> SendStatus:
        self.calls.append("send_to")
        return super().send_to(addr, data)


def test_the_built_in_udp_classes_take_the_shortcuts() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        remote = UdpRemote(a)
        assert remote._frame_reader() is not None
        assert remote._direct_socket() is a
        assert UdpLocal(b)._datagram_source() is not None
        # A listener that filters broadcasts by destination reads with recvmsg: its own
        # accept() is called.
        filtered = UdpLocal(b, accept_destinations=frozenset({b"\x7f\x00\x00\x01"}))
        assert filtered._datagram_source() is None


def test_udp_subclasses_get_their_methods_called(
    node: tuple[message_io.NodeHandler[Any], message_io.NodeListener[Any]],
) -> None:
    calls: list[str] = []
    remote_cls = type("Remote", (_CountingUdpRemote,), {"calls": calls})
    local_cls = type("Local", (_CountingUdpLocal,), {"calls": calls})

    class Adapter(UdpAdapter):
        def connect_to(self, *args: Any, **kwargs: Any) -> ConnectionInfo:
            info = super().connect_to(*args, **kwargs)
            made = info.remote
            assert isinstance(made, UdpRemote)
            return dataclasses.replace(info, remote=remote_cls(made.socket))

        def listen(self, addr: Any, config: Any) -> ListeningInfo:
            info = super().listen(addr, config)
            made = info.local
            assert isinstance(made, UdpLocal)
            return dataclasses.replace(info, local=local_cls(made.socket))

    transport = register_transport(f"SHORTCUTS_{next(_names)}", Adapter())
    with socket.socket() as sock:
        assert remote_cls(sock)._frame_reader() is None
        assert remote_cls(sock)._direct_socket() is None
        assert local_cls(sock)._datagram_source() is None

    handler, listener = node
    _, addr = handler.network.listen(transport, "127.0.0.1:0")
    client, _ = handler.network.connect(transport, addr)
    handler.network.send(client, b"ping")
    answered = False
    while True:
        event = listener.receive(TIMEOUT)
        assert event is not None, f"timed out; calls: {calls}"
        if isinstance(event, Message) and event.endpoint != client:
            assert event.data == b"ping"
            handler.network.send(event.endpoint, b"pong")  # from the listener
            answered = True
        elif isinstance(event, Message):
            assert answered and event.data == b"pong"
            break
    assert {"receive", "write", "accept", "send_to"} <= set(calls)
