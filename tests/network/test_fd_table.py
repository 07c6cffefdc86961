"""The descriptor table: the handler of each polled descriptor, indexed by descriptor."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import message_io
from message_io import Transport
from message_io.network import fd_table

from .minimal_adapter import MinimalAdapter, MinimalRemote


def test_put_grows_the_table_and_get_finds_each_handler() -> None:
    table: list[Any] = []
    fd_table.put(table, 5, "five")
    assert len(table) == 6
    fd_table.put(table, 0, "zero")
    fd_table.put(table, 1000, "thousand")
    assert fd_table.get(table, 5) == "five"
    assert fd_table.get(table, 0) == "zero"
    assert fd_table.get(table, 1000) == "thousand"
    assert [fd_table.get(table, fd) for fd in (1, 6, 999, 1001, 10**9)] == [None] * 5
    assert sum(slot is not None for slot in table) == 3


def test_growth_doubles_so_that_rising_descriptors_copy_little() -> None:
    table: list[Any] = []
    lengths = set()
    for fd in range(10_000):
        fd_table.put(table, fd, fd)
        lengths.add(len(table))
    assert len(lengths) <= 16  # log2(10,000) + 1 growths, not one per descriptor
    assert all(fd_table.get(table, fd) == fd for fd in range(10_000))


def test_take_removes_and_returns_the_handler_once() -> None:
    table: list[Any] = []
    fd_table.put(table, 3, "three")
    assert fd_table.take(table, 3) == "three"
    assert fd_table.take(table, 3) is None
    assert fd_table.get(table, 3) is None
    # Nothing to take: beyond the table, or not a descriptor.
    assert fd_table.take(table, 50) is None
    assert fd_table.take(table, -1) is None
    assert fd_table.get(table, -1) is None
    assert table == [None] * 4


def test_a_negative_descriptor_is_refused_and_changes_nothing() -> None:
    table: list[Any] = []
    fd_table.put(table, 2, "two")
    with pytest.raises(ValueError, match="negative"):
        fd_table.put(table, -1, "closed")
    assert table == [None, None, "two"]


class _ClosedRemote(MinimalRemote):
    """A remote whose socket is already closed: its ``fileno()`` is -1."""

    def fileno(self) -> int:
        self.sock.close()
        return self.sock.fileno()


class _ClosedAdapter(MinimalAdapter):
    remote_class = _ClosedRemote


CLOSED_SOCKET: Transport = getattr(
    Transport, "CLOSED_SOCKET", None
) or message_io.register_transport("CLOSED_SOCKET", _ClosedAdapter())


def test_a_remote_with_a_closed_socket_is_refused_and_the_node_goes_on(
    tmp_path: Path,
) -> None:
    """A custom transport's remote whose ``fileno()`` is -1: ``connect`` raises, and the
    node's own wake-up (the table's last slot, right after the node is made) still
    works: a signal sent from another thread arrives."""
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    handler, listener = message_io.split(str)
    try:
        with pytest.raises(ValueError, match="negative"):
            handler.network.connect(CLOSED_SOCKET, path)
        threading.Thread(target=handler.signals.send, args=("from a thread",)).start()
        event = listener.receive(10)
        assert isinstance(event, message_io.Signal) and event.value == "from a thread"
    finally:
        handler.stop()
        server.close()


def test_a_node_polls_a_high_descriptor() -> None:
    """A connection whose descriptor is far above the others still reaches its handler
    (the table grows to it)."""
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(300)]  # push descriptors up
    try:
        assert min(spare) < 300 < max(spare)  # the node's descriptors come after these
        handler, listener = message_io.split(str)
        _id, addr = handler.network.listen(message_io.Transport.FRAMED_TCP, "127.0.0.1:0")
        endpoint, _ = handler.network.connect_sync(message_io.Transport.FRAMED_TCP, addr)
        got: list[bytes] = []

        def on_event(event: message_io.NodeEvent[str]) -> None:
            if isinstance(event, message_io.Signal):  # the deadline: fail, not hang
                handler.stop()
            elif isinstance(event, message_io.Message):
                if event.endpoint == endpoint:
                    got.append(event.data)
                    handler.stop()
                else:
                    handler.network.send(event.endpoint, event.data)

        handler.network.send(endpoint, b"far")
        handler.signals.send_with_timer("deadline", 10)
        listener.for_each(on_event)
        assert got == [b"far"]
    finally:
        for fd in spare:
            os.close(fd)
