"""``Transport.UNIX``: the conformance suite, and what the node does with a connection,
watched through ``UNIX_PROBE`` (:mod:`.unix_probe`), the same transport with its
connections instrumented.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import threading
from typing import Any, ClassVar

import pytest

from message_io import (
    Connected,
    ConnectError,
    ConnectTimeout,
    NodeEvent,
    SendStatus,
    Transport,
)
from message_io.codec.framing import frame_header
from message_io.testing import TransportSuite, assert_same_bytes

from .conftest import TIMEOUT, Net, Node, accepted, kernel_send_capacity, raw_stream, recv_exactly
from .unix_probe import accepted_remote

SENT = SendStatus.SENT
UNIX = Transport.UNIX

_names = itertools.count()


class TestUnix(TransportSuite):
    """The conformance suite, with a raw peer and the framed wire format."""

    transport: ClassVar[Transport] = UNIX

    def listen_address(self) -> object:
        return str(self.workdir / f"s{next(_names)}.sock")

    def raw_connect(self, addr: Any, *, rcvbuf: int | None = None) -> socket.socket:
        return raw_stream(addr, rcvbuf=rcvbuf)

    def wire(self, payload: bytes) -> bytes:
        return frame_header(len(payload)) + payload

    def garbage(self) -> bytes:
        return b"\xff" * 11  # a varint that never ends: not a frame header


# -- the node's side of the adapter contract, probed with the instrumented transport -----


def test_lingering_removed_connection_stops_reading_at_eof(unix_net: Net) -> None:
    """A removed connection that is still writing its queue, whose peer half-closes:
    ``receive`` reports DISCONNECTED, and the node must not poll it for reading again
    (EOF stays readable: a level-triggered loop would spin until the queue is written or
    the linger time ends)."""
    capacity = kernel_send_capacity()
    config = unix_net.listen_config(send_buffer_limit=4 * capacity)
    server, listener_id, addr = unix_net.server(config=config)
    peer_path = unix_net.listen_addr()
    raw = unix_net.raw_connect(addr, bind=peer_path)
    endpoint = accepted(server, listener_id)
    assert endpoint.addr == peer_path
    remote = accepted_remote(peer_path)

    payload = b"q" * 64 * 1024
    count = 2 * capacity // len(payload) + 1  # more than the kernel can hold
    for _ in range(count):
        assert server.network.send(endpoint, payload) is SENT
    assert server.network.remove(endpoint.resource_id) is True
    raw.shutdown(socket.SHUT_WR)  # EOF for the server, which still has bytes to write

    assert remote.eof.wait(TIMEOUT), "the node never read the EOF"
    server.sync()  # two more turns of the loop, with the EOF still readable
    assert remote.receives_after_eof == 0, (
        f"receive() called {remote.receives_after_eof} times after it returned DISCONNECTED"
    )
    # A half-closed peer may still read: everything queued arrives, in order, then EOF.
    expected = unix_net.wire(payload) * count
    assert_same_bytes(recv_exactly(raw, len(expected)), expected)
    assert raw.recv(1) == b""


class _PathAfterTwoTurns(os.PathLike[str]):
    """A Unix socket path whose ``repr`` (which ``connect`` computes for its log line,
    after the connection is registered with the loop) lets the loop turn twice, so it
    has polled and failed the connection before ``connect_sync`` looks: the loop wins
    the race."""

    def __init__(self, path: str, node: Node) -> None:
        self.path = path
        self.node = node

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        self.node.sync()
        return f"_PathAfterTwoTurns({self.path!r})"


def test_connect_sync_keeps_the_os_error_when_the_loop_fails_first(unix_net: Net) -> None:
    returned = threading.Event()
    seen_after_return: list[bool] = []

    def on_outcome(_node: Node, event: NodeEvent[Any]) -> None:
        if isinstance(event, Connected):
            seen_after_return.append(returned.is_set())

    client = unix_net.node("client", on_outcome)
    path = _PathAfterTwoTurns(unix_net.unused_addr(), client)
    try:
        with pytest.raises(ConnectError) as info:
            client.network.connect_sync(unix_net.transport, path, timeout=TIMEOUT)
    finally:
        returned.set()
    assert not isinstance(info.value, ConnectTimeout)
    assert info.value.errno == errno.ENOENT, f"the OS error was lost: {info.value!r}"
    # The loop failed it first, but its event waited for connect_sync to raise.
    event = client.expect(Connected)
    assert not event.established
    assert event.error is not None and event.error.errno == errno.ENOENT
    assert seen_after_return == [True]
