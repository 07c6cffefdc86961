"""``Transport.UNIX``: the conformance suite, then what is the Unix transport's own.

Its own: path and abstract addresses and how they are reported, the socket file's mode,
stale socket files, the file's removal when the listener closes, a full backlog, its
configs. The last two tests use ``UNIX_PROBE`` (:mod:`.unix_probe`), the same transport
with its connections instrumented, to watch how the node drives a connection.
"""

from __future__ import annotations

import errno
import itertools
import os
import pickle
import shutil
import socket
import stat
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import message_io
from message_io import (
    Accepted,
    AddressError,
    Connected,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    Endpoint,
    ListenError,
    Message,
    NodeEvent,
    ResourceId,
    SendStatus,
    Transport,
    UnixConnectConfig,
    UnixListenConfig,
)
from message_io.adapters import unix
from message_io.codec.framing import frame_header
from message_io.testing import TransportSuite, assert_same_bytes

from .conftest import TIMEOUT, Net, Node, accepted, kernel_send_capacity, raw_stream, recv_exactly
from .unix_probe import accepted_remote

SENT = SendStatus.SENT
UNIX = Transport.UNIX
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="abstract names are Linux's")

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


@pytest.fixture
def node() -> Iterator[Node]:
    """A running node, stopped after the test (this module's: not the one of
    ``tests/conftest.py``)."""
    each = Node("unix")
    each.start()
    yield each
    each.stop()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A directory short enough for socket paths (``sun_path`` holds 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mio-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stale_socket_file(path: Path) -> None:
    """Leave a socket file at ``path`` that nobody listens on (a process that died)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays
    assert stat.S_ISSOCK(path.stat().st_mode)


def both_ends(node: Node, endpoint: Endpoint, listener_id: ResourceId) -> Endpoint:
    """Wait for both ends of a connection made within ``node`` (in either order):
    ``Connected(endpoint, True)`` and an ``Accepted`` from ``listener_id``, whose
    endpoint is returned."""
    events = [node.next_event(), node.next_event()]
    assert Connected(endpoint, True) in events, events
    accepts = [e for e in events if isinstance(e, Accepted)]
    assert len(accepts) == 1 and accepts[0].listener_id == listener_id, events
    return accepts[0].endpoint


# -- the transport and its configs ---------------------------------------------------------


def test_transport_facts() -> None:
    assert (UNIX.id, UNIX.name) == (4, "UNIX")
    assert Transport.from_id(4) is UNIX
    assert repr(UNIX) == "Transport.UNIX"
    assert pickle.loads(pickle.dumps(UNIX)) is UNIX
    assert UNIX.is_connection_oriented
    assert UNIX.is_packet_based
    assert UNIX.max_message_size == 16 * 1024 * 1024
    assert UNIX.adapter.connect_config is UnixConnectConfig is unix.UnixConnectConfig
    assert UNIX.adapter.listen_config is UnixListenConfig is unix.UnixListenConfig
    assert message_io.adapters.UnixListenConfig is UnixListenConfig


def test_config_checks() -> None:
    config = UnixListenConfig()
    assert (config.mode, config.unlink_stale, config.backlog) == (None, True, 1024)
    assert UnixConnectConfig().max_message_size == 16 * 1024 * 1024
    with pytest.raises(ValueError, match=r"mode must be in \[0, 0o7777\]"):
        UnixListenConfig(mode=0o10000)
    with pytest.raises(ValueError, match="backlog"):
        UnixListenConfig(backlog=-1)
    with pytest.raises(ValueError, match="max_message_size"):
        UnixConnectConfig(max_message_size=-1)
    with pytest.raises(TypeError, match=r"UnixListenConfig\.mode"):
        UnixListenConfig(mode="0o600")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"UnixListenConfig\.unlink_stale"):
        UnixListenConfig(unlink_stale=1)  # type: ignore[arg-type]


# -- addresses -------------------------------------------------------------------------------


def test_pathlike_addresses_are_reported_as_str(node: Node, sockdir: Path) -> None:
    path = sockdir / "api.sock"
    listener_id, addr = node.network.listen(UNIX, path)
    assert addr == str(path)
    endpoint, local = node.network.connect_sync(UNIX, path, timeout=TIMEOUT)
    assert endpoint.addr == str(path)
    assert local == ""  # the client binds no name
    server_ep = both_ends(node, endpoint, listener_id)
    assert server_ep.addr == ""
    assert node.network.send(endpoint, b"over a path") is SENT
    assert node.expect(Message) == Message(server_ep, b"over a path")


@linux_only
def test_abstract_names(node: Node) -> None:
    name = f"\0message-io-test-{uuid.uuid4().hex}"
    listener_id, addr = node.network.listen(UNIX, name)
    assert addr == name  # reported with its leading NUL
    endpoint = node.network.connect(UNIX, name)[0]
    assert endpoint.addr == name
    server_ep = both_ends(node, endpoint, listener_id)
    assert node.network.send(server_ep, b"no file") is SENT
    assert node.expect(Message) == Message(endpoint, b"no file")
    # Taken while it listens; free again once it is closed.
    with pytest.raises(ListenError) as info:
        node.network.listen(UNIX, name)
    assert info.value.errno == errno.EADDRINUSE
    assert node.network.remove(listener_id) is True
    node.sync()
    node.network.listen(UNIX, name)


@pytest.mark.parametrize(
    ("addr", "match"),
    [
        ("", "empty path"),
        (42, "expected a path, not int"),
        (("127.0.0.1", 80), "expected a path, not tuple"),
        ("/tmp/" + "x" * 103, "a path of 108 bytes, over 107"),
        ("/tmp/a\0b", "a NUL byte in a path"),
        ("\0" + "x" * 108, "an abstract name of 109 bytes, over 108"),
    ],
    ids=["empty", "int", "tuple", "long-path", "nul", "long-abstract"],
)
def test_bad_addresses(node: Node, addr: Any, match: str) -> None:
    with pytest.raises(AddressError, match=match):
        node.network.listen(UNIX, addr)
    with pytest.raises(AddressError, match=match):
        node.network.connect(UNIX, addr)


def test_the_longest_path_fits(node: Node, sockdir: Path) -> None:
    path = str(sockdir) + "/" + "p" * (107 - len(str(sockdir)) - 1)
    assert len(os.fsencode(path)) == 107
    _listener_id, addr = node.network.listen(UNIX, path)
    endpoint, _local = node.network.connect_sync(UNIX, addr, timeout=TIMEOUT)
    assert endpoint.addr == path


# -- the socket file ---------------------------------------------------------------------------


def _umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    pytest.skip("no Umask line in /proc/self/status")


def test_the_socket_file_has_the_umask_mode_or_the_configured_one(
    node: Node, sockdir: Path
) -> None:
    default, private = sockdir / "default.sock", sockdir / "private.sock"
    node.network.listen(UNIX, default)
    assert stat.S_IMODE(default.stat().st_mode) == 0o777 & ~_umask()
    node.network.listen(UNIX, private, config=UnixListenConfig(mode=0o600))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    node.network.connect_sync(UNIX, private, timeout=TIMEOUT)  # its owner may connect


@pytest.mark.skipif(os.geteuid() == 0, reason="root connects whatever the mode")
def test_a_socket_file_without_write_permission_refuses(node: Node, sockdir: Path) -> None:
    config = UnixListenConfig(mode=0o500)  # not even its owner may write: nobody connects
    _lid, addr = node.network.listen(UNIX, sockdir / "closed.sock", config=config)
    endpoint, _local = node.network.connect(UNIX, addr)
    event = node.expect(Connected)
    assert event.endpoint == endpoint and not event.established
    assert event.error is not None and event.error.errno == errno.EACCES


@linux_only
def test_mode_is_refused_for_an_abstract_name(node: Node) -> None:
    with pytest.raises(ValueError, match="abstract name"):
        node.network.listen(UNIX, "\0message-io-mode", config=UnixListenConfig(mode=0o600))


def test_a_stale_socket_file_is_replaced(node: Node, sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    stale_socket_file(path)
    listener_id, addr = node.network.listen(UNIX, path)
    endpoint, _local = node.network.connect_sync(UNIX, addr, timeout=TIMEOUT)
    assert both_ends(node, endpoint, listener_id).resource_id.is_remote
    assert node.network.send(endpoint, b"fresh") is SENT


def test_a_stale_socket_file_is_kept_without_unlink_stale(node: Node, sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    stale_socket_file(path)
    with pytest.raises(ListenError) as info:
        node.network.listen(UNIX, path, config=UnixListenConfig(unlink_stale=False))
    assert info.value.errno == errno.EADDRINUSE
    assert stat.S_ISSOCK(path.stat().st_mode)


def test_a_live_socket_is_never_replaced(node: Node, sockdir: Path) -> None:
    path = sockdir / "live.sock"
    listener_id, addr = node.network.listen(UNIX, path)
    with pytest.raises(ListenError) as info:
        node.network.listen(UNIX, path)
    assert info.value.errno == errno.EADDRINUSE
    # The live listener saw the probe connect and go, and still serves.
    probe = accepted(node, listener_id)
    assert node.expect(Disconnected) == Disconnected(probe)
    endpoint, _local = node.network.connect_sync(UNIX, addr, timeout=TIMEOUT)
    assert node.network.send(endpoint, b"still mine") is SENT
    assert node.wait_for(Message).data == b"still mine"


def test_a_path_that_is_not_a_socket_is_never_removed(node: Node, sockdir: Path) -> None:
    path = sockdir / "data.txt"
    path.write_text("precious")
    with pytest.raises(ListenError) as info:
        node.network.listen(UNIX, path)
    assert info.value.errno == errno.EEXIST
    assert path.read_text() == "precious"


def test_closing_the_listener_removes_its_socket_file(sockdir: Path) -> None:
    node = Node("closing")
    node.start()
    removed, stopped = sockdir / "removed.sock", sockdir / "stopped.sock"
    listener_id, _addr = node.network.listen(UNIX, removed)
    node.network.listen(UNIX, stopped)
    assert node.network.remove(listener_id) is True
    node.sync()
    assert not removed.exists()
    assert stopped.exists()
    node.stop()  # closes every listener
    assert not stopped.exists()


def test_a_replaced_socket_file_is_left_to_its_new_owner(node: Node, sockdir: Path) -> None:
    path = sockdir / "taken-over.sock"
    first, _ = node.network.listen(UNIX, path)
    path.unlink()  # someone removes it, and another listener binds the path
    second, addr = node.network.listen(UNIX, path)
    assert node.network.remove(first) is True
    node.sync()
    assert stat.S_ISSOCK(path.stat().st_mode)
    endpoint, _local = node.network.connect_sync(UNIX, addr, timeout=TIMEOUT)
    assert both_ends(node, endpoint, second).resource_id.is_remote
    assert node.network.send(endpoint, b"to the new owner") is SENT


# -- connecting --------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="EAGAIN for a full backlog is Linux's")
def test_a_full_backlog_fails_the_connect_at_once(node: Node, sockdir: Path) -> None:
    """Nothing accepts (the listening node's loop never runs) and the backlog is 0: the
    first connection waits in the queue, the third finds it full (EAGAIN) and fails."""
    idle = Node("idle")  # never started: its listener accepts nothing
    try:
        _lid, addr = idle.network.listen(
            UNIX, sockdir / "busy.sock", config=UnixListenConfig(backlog=0)
        )
        endpoints = [node.network.connect(UNIX, addr)[0] for _ in range(3)]
        outcomes = {}
        for _ in endpoints:
            event = node.expect(Connected)
            outcomes[event.endpoint] = event
        assert outcomes[endpoints[0]].established
        failed = outcomes[endpoints[2]]
        assert not failed.established
        assert failed.error is not None and failed.error.errno == errno.EAGAIN
    finally:
        idle.handler.stop()


def test_max_message_size_applies_to_sending(node: Node, sockdir: Path) -> None:
    _lid, addr = node.network.listen(UNIX, sockdir / "small.sock")
    config = UnixConnectConfig(max_message_size=16)
    endpoint, _local = node.network.connect_sync(UNIX, addr, config=config, timeout=TIMEOUT)
    assert node.network.send(endpoint, b"x" * 17) is SendStatus.MAX_PACKET_SIZE_EXCEEDED
    assert node.network.send(endpoint, b"x" * 16) is SENT


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
