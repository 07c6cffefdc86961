"""The node reads FramedTcp with its compiled reader and writes TCP to the socket itself,
bypassing ``receive``, ``incomplete`` and ``write``: only where those are the built-in
ones. A subclass that overrides one of them gets it called, as the adapter contract
says."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import message_io
from message_io import Connected, Message, Transport, register_transport
from message_io.adapters.framed_tcp import FramedTcpAdapter, FramedTcpLocal, FramedTcpRemote
from message_io.adapters.tcp import TcpRemote
from message_io.network.adapter import Buffer, ReadStatus

from .conftest import TIMEOUT

_names = itertools.count()


class _Counting(FramedTcpRemote):
    """Counts the calls of the methods a subclass may override."""

    calls: list[str]

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        self.calls.append("receive")
        return super().receive(deliver)

    def incomplete(self) -> int:
        self.calls.append("incomplete")
        return super().incomplete()

    def write(self, data: Buffer) -> int:
        self.calls.append("write")
        return super().write(data)


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


def test_a_subclass_that_overrides_reading_or_writing_gets_its_methods_called(
    node: tuple[message_io.NodeHandler[Any], message_io.NodeListener[Any]],
) -> None:
    calls: list[str] = []
    remote = type("Remote", (_Counting,), {"calls": calls})
    with socket.socket() as sock:
        made = remote(sock, connecting=False, max_message_size=1)
        assert made._frame_reader() is None
        assert made._direct_socket() is None

    got = _echo_once(node, _transport(remote))

    assert got == [b"first", b"second" * 1000]
    assert {"receive", "incomplete", "write"} <= set(calls)


def test_overriding_write_alone_keeps_the_reader(
    node: tuple[message_io.NodeHandler[Any], message_io.NodeListener[Any]],
) -> None:
    calls: list[str] = []

    class Remote(FramedTcpRemote):
        def write(self, data: Buffer) -> int:
            calls.append("write")
            return super().write(data)

    with socket.socket() as sock:
        made = Remote(sock, connecting=False, max_message_size=1)
        assert made._direct_socket() is None
        assert made._frame_reader() is not None

    assert _echo_once(node, _transport(Remote)) == [b"first", b"second" * 1000]
    assert "write" in calls
