"""Fixtures of the transport tests: one harness per transport.

A :class:`Net` makes nodes (:class:`message_io.testing.RecordingNode`: their loop runs
in a thread and every event lands in a queue), raw sockets to poke at a listener and
addresses to listen on, and cleans all of it up. The behaviour suite every transport
passes is :mod:`message_io.testing`, run in ``test_conformance.py`` and ``test_unix.py``;
the fixtures here serve the tests of each transport's own features.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.frames import Frame, Opcode

import message_io
from message_io import (
    Accepted,
    Connected,
    Endpoint,
    Message,
    NodeEvent,
    ResourceId,
    Transport,
)
from message_io.codec.framing import frame_header
from message_io.network.adapter import ConnectConfig, ListenConfig
from message_io.testing import (
    TIMEOUT,
    Hook,
    RecordingNode,
    Worker,
    kernel_send_capacity,
    recv_exactly,
)

from .unix_probe import UNIX_PROBE

__all__ = [
    "TIMEOUT",
    "Net",
    "Node",
    "Worker",
    "accepted",
    "harness",
    "kernel_send_capacity",
    "raw_stream",
    "receive_one",
    "recv_exactly",
    "ws_upgrade",
]

Node = RecordingNode
"""A node whose events land in a queue (the name the tests use)."""


class Net:
    """Everything a behaviour test needs for one transport."""

    def __init__(self, transport: Transport, tmp_path: Path) -> None:
        self.transport = transport
        self.packet_based = transport.is_packet_based
        self.nodes: list[Node] = []
        self.sockets: list[socket.socket] = []
        self._paths = 0
        # sun_path holds 107 bytes: pytest's tmp_path can be longer than that.
        if len(str(tmp_path)) < 80:
            self._dir = tmp_path
            self._own_dir = False
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="mio-"))
            self._own_dir = True

    @property
    def is_unix(self) -> bool:
        return self.transport in (Transport.UNIX, UNIX_PROBE)

    # -- addresses ---------------------------------------------------------------------

    def listen_addr(self) -> str:
        """A fresh address to listen on."""
        if self.is_unix:
            self._paths += 1
            return str(self._dir / f"s{self._paths}.sock")
        return "127.0.0.1:0"

    def unused_addr(self) -> Any:
        """An address where nothing listens, so connecting is refused."""
        if self.is_unix:
            self._paths += 1
            return str(self._dir / f"nobody{self._paths}.sock")
        # A bound socket that never listens: the kernel refuses connections to its port,
        # and nobody else can take the port while we hold it.
        sock = self._keep(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()

    # -- configs ---------------------------------------------------------------------

    def connect_config(self, **options: Any) -> ConnectConfig:
        return self.transport.adapter.connect_config(**options)

    def listen_config(self, **options: Any) -> ListenConfig:
        return self.transport.adapter.listen_config(**options)

    # -- nodes ---------------------------------------------------------------------------

    def node(
        self, name: str, hook: Hook | None = None, *, start: bool = True, **split_options: Any
    ) -> Node:
        """A new node (``split(**split_options)``), stopped at teardown; started unless
        ``start=False``."""
        node = Node(name, hook, **split_options)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def server(
        self,
        hook: Hook | None = None,
        *,
        config: ListenConfig | None = None,
        name: str = "server",
    ) -> tuple[Node, ResourceId, Any]:
        """A running node listening on a fresh address: ``(node, listener_id, addr)``."""
        node = self.node(name, hook)
        listener_id, addr = node.network.listen(self.transport, self.listen_addr(), config=config)
        return node, listener_id, addr

    def echo_server(self, *, config: ListenConfig | None = None) -> tuple[Node, ResourceId, Any]:
        """A server that sends every message back (from its loop thread); the messages
        still reach its queue."""

        def echo(node: Node, event: NodeEvent[Any]) -> None:
            if isinstance(event, Message):
                status = node.network.send(event.endpoint, event.data)
                assert status is message_io.SendStatus.SENT, status

        return self.server(echo, config=config, name="echo-server")

    def connected(self, node: Node, addr: Any, **options: Any) -> Endpoint:
        """Connect ``node`` to ``addr`` and wait for ``Connected(endpoint, True)``."""
        config = self.connect_config(**options) if options else None
        endpoint, _local = node.network.connect(self.transport, addr, config=config)
        event = node.wait_for(Connected, lambda e: e.endpoint == endpoint)
        assert event.established, f"connecting to {addr!r} failed"
        return endpoint

    # -- raw sockets -----------------------------------------------------------------

    def _keep(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        return sock

    def raw_connect(
        self, addr: Any, *, rcvbuf: int | None = None, bind: Any = None
    ) -> socket.socket:
        """A plain blocking socket connected to ``addr`` (closed at teardown), with a
        receive buffer of ``rcvbuf`` bytes and bound to ``bind`` first, if given."""
        sock = self._keep(raw_stream(addr, rcvbuf=rcvbuf, bind=bind))
        if self.transport is Transport.WS:
            ws_upgrade(sock)
        return sock

    def wire(self, payload: bytes) -> bytes:
        """The bytes one ``send(payload)`` on an accepted connection puts on the wire."""
        if self.transport is Transport.WS:
            return Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
        return frame_header(len(payload)) + payload if self.packet_based else payload

    # -- cleanup -----------------------------------------------------------------------

    def close(self) -> None:
        errors = [e for e in map(_stop, reversed(self.nodes)) if e is not None]
        for sock in self.sockets:
            sock.close()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        if errors:
            raise errors[0]


def raw_stream(addr: Any, *, rcvbuf: int | None = None, bind: Any = None) -> socket.socket:
    """A plain blocking stream socket connected to ``addr`` (a Unix socket for a ``str``
    path, TCP for a ``(host, port)``), with a receive buffer of ``rcvbuf`` bytes and
    bound to ``bind`` first, if given. The caller closes it."""
    if isinstance(addr, str):
        family = socket.AF_UNIX
    else:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if bind is not None:
            sock.bind(bind)
        sock.settimeout(TIMEOUT)
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def ws_upgrade(sock: socket.socket) -> None:
    """The opening handshake of a WebSocket client, by hand on a blocking socket."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /raw HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = bytearray()
    while not response.endswith(b"\r\n\r\n"):  # byte by byte: frames may follow
        byte = sock.recv(1)
        assert byte, f"EOF during the handshake after {bytes(response)!r}"
        response += byte
    assert response.startswith(b"HTTP/1.1 101 "), bytes(response)


def _stop(node: Node) -> BaseException | None:
    """Stop ``node``; return what its callback raised (or the failure to stop)."""
    try:
        node.stop()
    except BaseException as exc:
        return exc
    return None


def collect_stream(node: Node, endpoint: Endpoint, size: int) -> bytes:
    """Concatenate the ``Message`` data from ``endpoint`` until ``size`` bytes arrived
    (reassembly for ``Transport.TCP``); other events are not expected meanwhile."""
    data = bytearray()
    while len(data) < size:
        event = node.expect(Message)
        assert event.endpoint == endpoint
        data += event.data
    return bytes(data)


def receive_one(net: Net, node: Node, endpoint: Endpoint, size: int) -> bytes:
    """One message of ``size`` bytes from ``endpoint``: exactly one ``Message`` on packet
    transports, reassembled from the stream on ``TCP``."""
    if net.packet_based:
        event = node.expect(Message)
        assert event.endpoint == endpoint
        assert len(event.data) == size
        return event.data
    return collect_stream(node, endpoint, size)


def accepted(node: Node, listener_id: ResourceId) -> Endpoint:
    """Wait for the next ``Accepted`` on ``node``, from ``listener_id``."""
    event = node.expect(Accepted)
    assert event.listener_id == listener_id
    return event.endpoint


@contextlib.contextmanager
def harness(transport: Transport, tmp_path: Path) -> Iterator[Net]:
    """A :class:`Net` for ``transport``, closed (nodes stopped, sockets closed) on exit."""
    net = Net(transport, tmp_path)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def framed(tmp_path: Path) -> Iterator[Net]:
    """The harness for ``FRAMED_TCP`` only."""
    with harness(Transport.FRAMED_TCP, tmp_path) as net:
        yield net


@pytest.fixture
def unix_net(tmp_path: Path) -> Iterator[Net]:
    """The harness for ``UNIX_PROBE``: ``UNIX`` with instrumented connections."""
    with harness(UNIX_PROBE, tmp_path) as net:
        yield net


@pytest.fixture(params=[Transport.TCP, Transport.FRAMED_TCP], ids=lambda t: str(t.name))
def ip_net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    """The harness for the two IP transports."""
    with harness(request.param, tmp_path) as net:
        yield net


@pytest.fixture
def udp(tmp_path: Path) -> Iterator[Net]:
    """The harness for ``UDP``."""
    with harness(Transport.UDP, tmp_path) as net:
        yield net


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Net]:
    """The harness for ``WS``."""
    with harness(Transport.WS, tmp_path) as net:
        yield net


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected sockets (``socket.socketpair()``), closed after the test."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()
