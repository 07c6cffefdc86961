"""Fixtures of the transport behaviour suite: one harness per transport.

``net`` is parametrized over ``TCP``, ``FRAMED_TCP``, ``WS`` and ``UNIX``. It
makes nodes that run with ``for_each_async`` and push every event into a queue, raw
sockets to poke at a listener, addresses to listen on, and cleans all of it up.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import pytest
from websockets.frames import Close, Frame, Opcode

import message_io
from message_io import (
    Accepted,
    Connected,
    Endpoint,
    Message,
    NodeEvent,
    NodeHandler,
    NodeListener,
    NodeTask,
    ResourceId,
    Signal,
    Transport,
)
from message_io.codec.framing import frame_header
from message_io.network.adapter import ConnectConfig, ListenConfig

from .unix_probe import UNIX_PROBE

TIMEOUT: Final = 10.0
"""Seconds any single wait may take before the test fails."""

TRANSPORTS: Final = (Transport.TCP, Transport.FRAMED_TCP, Transport.WS, Transport.UNIX)

E = TypeVar("E")
T = TypeVar("T")

Hook: TypeAlias = "Callable[[Node, NodeEvent[Any]], bool | None]"
"""Runs on the loop thread for every event; returning True keeps it out of the queue."""


class _Call:
    """A function to run on a node's loop thread (sent as a signal)."""

    __slots__ = ("fn", "result")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.result: queue.Queue[tuple[bool, object]] = queue.Queue()


class Node:
    """A node whose events land in :attr:`events`, with helpers to wait for them."""

    def __init__(self, name: str, hook: Hook | None, **split_options: Any) -> None:
        self.name = name
        handler: NodeHandler[Any]
        listener: NodeListener[Any]
        handler, listener = message_io.split(**split_options)
        self.handler = handler
        self.listener = listener
        self.events: queue.Queue[NodeEvent[Any]] = queue.Queue()
        self.task: NodeTask | None = None
        self._hook = hook

    @property
    def network(self) -> message_io.NetworkController:
        return self.handler.network

    def _on_event(self, event: NodeEvent[Any]) -> None:
        if isinstance(event, Signal) and isinstance(event.value, _Call):
            call = event.value
            try:
                call.result.put((True, call.fn()))
            except BaseException as exc:
                call.result.put((False, exc))
            return
        if self._hook is not None and self._hook(self, event):
            return
        self.events.put(event)

    def start(self) -> None:
        """Run the loop in a background thread."""
        assert self.task is None, "started twice"
        self.task = self.listener.for_each_async(
            self._on_event, on_error="stop", name=f"node-{self.name}"
        )

    def stop(self) -> None:
        """Stop the node and join its thread; re-raises what the callback raised."""
        self.handler.stop()
        if self.task is not None:
            assert self.task.wait(TIMEOUT), f"node {self.name} did not stop"

    def run_on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and return its result (the loop must run)."""
        call = _Call(fn)
        self.handler.signals.send(call)
        try:
            ok, value = call.result.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"node {self.name}: the loop did not run the call") from None
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def sync(self) -> None:
        """Return once the loop has handled everything requested before this call
        (removals, closes): two full turns of the loop."""
        self.run_on_loop(lambda: None)
        self.run_on_loop(lambda: None)

    def next_event(self, timeout: float = TIMEOUT) -> NodeEvent[Any]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node {self.name}: no event within {timeout} s") from None

    def expect(self, kind: type[E], timeout: float = TIMEOUT) -> E:
        """The next event, which must be a ``kind``."""
        event = self.next_event(timeout)
        assert isinstance(event, kind), f"node {self.name}: expected {kind.__name__}, got {event}"
        return event

    def wait_for(self, kind: type[E], predicate: Callable[[E], bool] = lambda _e: True) -> E:
        """Skip events until a ``kind`` matching ``predicate``."""
        while True:
            event = self.next_event()
            if isinstance(event, kind) and predicate(event):
                return event

    def drain_events(self) -> list[NodeEvent[Any]]:
        """Every event queued right now."""
        out: list[NodeEvent[Any]] = []
        while not self.events.empty():  # the test thread is the only consumer
            out.append(self.events.get_nowait())
        return out


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
        if self.is_unix:
            family = socket.AF_UNIX
        else:
            family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = self._keep(socket.socket(family, socket.SOCK_STREAM))
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if bind is not None:
            sock.bind(bind)
        sock.settimeout(TIMEOUT)
        sock.connect(addr)
        if self.transport is Transport.WS:
            _ws_upgrade(sock)
        return sock

    def wire(self, payload: bytes) -> bytes:
        """The bytes one ``send(payload)`` on an accepted connection puts on the wire."""
        if self.transport is Transport.WS:
            return Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
        return frame_header(len(payload)) + payload if self.packet_based else payload

    def client_wire(self, payload: bytes) -> bytes:
        """The bytes a client sends for one message (WebSocket clients mask them)."""
        if self.transport is Transport.WS:
            return Frame(Opcode.BINARY, payload).serialize(mask=True, extensions=[])
        return self.wire(payload)

    def farewell_wire(self) -> bytes:
        """What ``remove`` sends before closing an accepted connection."""
        if self.transport is Transport.WS:
            close = Close(1000, "").serialize()
            return Frame(Opcode.CLOSE, close).serialize(mask=False, extensions=[])
        return b""

    @property
    def has_handshake(self) -> bool:
        """True if a client's handshake needs its node's loop (or ``connect_sync``)."""
        return self.transport is Transport.WS

    # -- cleanup -----------------------------------------------------------------------

    def close(self) -> None:
        errors = [e for e in map(_stop, reversed(self.nodes)) if e is not None]
        for sock in self.sockets:
            sock.close()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        if errors:
            raise errors[0]


def _ws_upgrade(sock: socket.socket) -> None:
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


def kernel_send_capacity() -> int:
    """An upper bound of what the kernel may buffer for one unread local connection
    (its send buffer, which Linux autotunes up to ``tcp_wmem``'s maximum, or at most
    ``wmem_max`` when set explicitly), so that a send queue larger than this can never
    be drained into the kernel while the peer reads nothing."""
    names = ("ipv4/tcp_wmem", "core/wmem_max", "core/wmem_default")
    return max(4 * 1024 * 1024, *map(_sysctl_last_int, names))


def _sysctl_last_int(name: str) -> int:
    try:
        return int(Path(f"/proc/sys/net/{name}").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 32 * 1024 * 1024  # no /proc: assume generously


def _stop(node: Node) -> BaseException | None:
    """Stop ``node``; return what its callback raised (or the failure to stop)."""
    try:
        node.stop()
    except BaseException as exc:
        return exc
    return None


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes from a blocking socket (fails on EOF or timeout)."""
    chunks = bytearray()
    while len(chunks) < size:
        data = sock.recv(min(size - len(chunks), 1 << 20))
        assert data, f"EOF after {len(chunks)} of {size} bytes"
        chunks += data
    return bytes(chunks)


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


class Worker:
    """A daemon thread whose exception is re-raised by :meth:`join`."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self._target = target
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:
            self._error = exc

    def join(self, timeout: float = 3 * TIMEOUT) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"thread {self.thread.name} did not finish"
        if self._error is not None:
            raise self._error


@contextlib.contextmanager
def harness(transport: Transport, tmp_path: Path) -> Iterator[Net]:
    """A :class:`Net` for ``transport``, closed (nodes stopped, sockets closed) on exit."""
    net = Net(transport, tmp_path)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(params=TRANSPORTS, ids=lambda t: str(t.name))
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    with harness(request.param, tmp_path) as each:
        yield each


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
