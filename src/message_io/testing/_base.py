"""What the conformance suite asks of a transport's author, and the harness its tests use.

:class:`SuiteBase` holds the hooks (:attr:`~SuiteBase.transport`,
:meth:`~SuiteBase.listen_address`, the raw peer...) with their defaults, and the
per-test harness: nodes started and stopped for the test, raw sockets closed after
it, a private directory. The tests themselves are in :mod:`._node_tests` and
:mod:`._raw_tests`.
"""

from __future__ import annotations

import errno
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import pytest

from message_io import (
    Accepted,
    Connected,
    ConnectError,
    Endpoint,
    Message,
    NodeEvent,
    ResourceId,
    SendStatus,
    Transport,
)
from message_io.network.adapter import ConnectConfig, ListenConfig

from ._nodes import Hook, RecordingNode

__all__ = ["SuiteBase"]

_UNLIMITED_MESSAGE_SIZE = 8 * 1024 * 1024
_LARGEST_TESTED = 64 * 1024 * 1024
_FRAMING_ALLOWANCE = 64  # bytes a message's framing may add, when wire() is not given


class SuiteBase:
    """The hooks a transport's author fills in, and the harness of the tests.

    Only :attr:`transport` is required; every other hook has a default that suits a
    transport whose listen address may be ``"127.0.0.1:0"``.
    """

    transport: ClassVar[Transport]
    """The transport under test, as :func:`message_io.register_transport` returned it."""

    refused_errnos: ClassVar[tuple[int, ...]] = (errno.ECONNREFUSED, errno.ENOENT)
    """The ``errno`` values a connect to :meth:`refused_address` may fail with."""

    refuses_at_once: ClassVar[bool] = False
    """True if the transport's ``connect`` knows at once that nobody listens and raises
    (``ConnectError``), as a Unix socket can; False (the default) if the refusal comes
    later, as ``Connected(endpoint, False, error)`` (TCP: the OS answers with a reset)."""

    has_handshake: ClassVar[bool] = False
    """True if a client connection needs its node's loop to become ready (a handshake,
    as on WebSocket): where no loop runs yet, the suite connects with ``connect_sync``,
    which drives the handshake itself."""

    workdir: Path
    """A fresh, short directory for this test, deleted after it (for path addresses:
    ``sun_path`` holds 107 bytes, more than some ``tmp_path`` directories)."""

    _nodes: list[RecordingNode]
    _sockets: list[socket.socket]

    # -- hooks: addresses and configs -----------------------------------------------------

    def listen_address(self) -> object:
        """Where a listener may bind; called once per listener, so return a fresh one
        each time if addresses cannot be shared (paths). Default: ``"127.0.0.1:0"``."""
        return "127.0.0.1:0"

    def refused_address(self) -> object:
        """An address where nothing listens, so that connecting there fails at once.

        Default: the address of a listener opened on :meth:`listen_address` and removed.
        Override it if another program could take that address meanwhile (a TCP port:
        hold a socket bound to a port that never listens instead).
        """
        node = self.node("refused-address")
        listener_id, addr = node.network.listen(
            self.transport, self.listen_address(), config=self.listen_config()
        )
        assert node.network.remove(listener_id) is True
        node.sync()  # the loop has closed the listener
        return addr

    def listen_config(self, **options: Any) -> ListenConfig | None:
        """The config of every listener of the suite; ``options`` are the fields a test
        sets (``send_buffer_limit``, ``message_timeout``, ``idle_timeout``...).

        Default: ``None`` without options, else the adapter's ``listen_config`` class
        built with them. Override it to add what every listener needs (a certificate).
        """
        if not options:
            return None
        return self.transport.adapter.listen_config(**options)

    def connect_config(self, **options: Any) -> ConnectConfig | None:
        """The config of every connection of the suite, as :meth:`listen_config`."""
        if not options:
            return None
        return self.transport.adapter.connect_config(**options)

    def large_message_size(self) -> int:
        """The size of the message ``test_largest_message_intact`` sends: the transport's
        ``max_message_size``, or 8 MiB if it has no limit or one above 64 MiB."""
        limit = self.transport.max_message_size
        if limit is None or limit > _LARGEST_TESTED:
            return _UNLIMITED_MESSAGE_SIZE
        return limit

    # -- hooks: a raw peer ------------------------------------------------------------------

    def raw_connect(self, addr: Any, *, rcvbuf: int | None = None) -> socket.socket:
        """A plain blocking socket connected to the listener at ``addr``, past any
        handshake, ready for :meth:`client_wire` bytes. If ``rcvbuf`` is given, set
        ``SO_RCVBUF`` to it before connecting (a small buffer fills up fast).

        Not provided by default: the tests that need a raw peer are then skipped.
        """
        raise NotImplementedError

    def wire(self, payload: bytes) -> bytes:
        """The bytes one ``send(payload)`` on an accepted connection puts on the wire.

        Default: ``payload`` itself for a byte stream (not ``is_packet_based``); not
        provided for packet transports, whose tests that compare bytes are then skipped.
        """
        if self.transport.is_packet_based:
            raise NotImplementedError
        return payload

    def client_wire(self, payload: bytes) -> bytes:
        """The bytes a raw client sends for one message. Default: :meth:`wire`."""
        return self.wire(payload)

    def farewell_wire(self) -> bytes:
        """The bytes ``remove`` sends before closing an accepted connection (a close
        frame). Default: none."""
        return b""

    def garbage(self) -> bytes | None:
        """Bytes that break the transport's protocol, sent by a raw peer (an invalid
        length prefix, a frame a client may not send). Default: ``None``, for a byte
        stream, where nothing is invalid: the garbage test is then skipped."""
        return None

    # -- the harness ------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _message_io_harness(self) -> Iterator[None]:
        """Set up :attr:`workdir`; stop every node and close every socket afterwards."""
        self.workdir = Path(tempfile.mkdtemp(prefix="mio-"))
        self._nodes = []
        self._sockets = []
        try:
            yield
        finally:
            errors = [e for e in map(_stop, reversed(self._nodes)) if e is not None]
            for sock in self._sockets:
                sock.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if errors:
                raise errors[0]

    def node(
        self, name: str, hook: Hook | None = None, *, start: bool = True, **split_options: Any
    ) -> RecordingNode:
        """A new node (``split(**split_options)``), stopped after the test; started unless
        ``start=False``."""
        node = RecordingNode(name, hook, **split_options)
        self._nodes.append(node)
        if start:
            node.start()
        return node

    def server(
        self,
        hook: Hook | None = None,
        *,
        config: ListenConfig | None = None,
        name: str = "server",
    ) -> tuple[RecordingNode, ResourceId, Any]:
        """A running node listening on a fresh address: ``(node, listener_id, addr)``."""
        node = self.node(name, hook)
        if config is None:
            config = self.listen_config()
        address = self.listen_address()
        listener_id, addr = node.network.listen(self.transport, address, config=config)
        return node, listener_id, addr

    def echo_server(
        self, *, config: ListenConfig | None = None
    ) -> tuple[RecordingNode, ResourceId, Any]:
        """A server that sends every message back (from its loop thread); the messages
        still reach its queue."""

        def echo(node: RecordingNode, event: NodeEvent[Any]) -> None:
            if isinstance(event, Message):
                status = node.network.send(event.endpoint, event.data)
                assert status is SendStatus.SENT, status

        return self.server(echo, config=config, name="echo-server")

    def connect(self, node: RecordingNode, addr: Any, **options: Any) -> Endpoint:
        """``connect`` with :meth:`connect_config` (the outcome comes as an event)."""
        config = self.connect_config(**options)
        endpoint, _local = node.network.connect(self.transport, addr, config=config)
        return endpoint

    def refused(self, node: RecordingNode, addr: Any) -> ConnectError | None:
        """Connect ``node`` where nothing listens: the error ``connect`` raised at once
        (:attr:`refuses_at_once`), or None once it has returned an endpoint and
        ``Connected(endpoint, False)`` followed, as the transport says it does."""
        if self.refuses_at_once:
            with pytest.raises(ConnectError) as info:
                self.connect(node, addr)
            return info.value
        late = self.connect(node, addr)
        assert node.expect(Connected) == Connected(late, False)
        assert node.network.is_ready(late.resource_id) is None
        return None

    def connected(self, node: RecordingNode, addr: Any, **options: Any) -> Endpoint:
        """Connect ``node`` to ``addr`` and wait for ``Connected(endpoint, True)``."""
        endpoint = self.connect(node, addr, **options)
        event = node.wait_for(Connected, lambda e: e.endpoint == endpoint)
        assert event.established, f"connecting to {addr!r} failed: {event.error!r}"
        return endpoint

    def accepted(self, node: RecordingNode, listener_id: ResourceId) -> Endpoint:
        """Wait for the next ``Accepted`` on ``node``, from ``listener_id``."""
        event = node.expect(Accepted)
        assert event.listener_id == listener_id
        return event.endpoint

    def receive_one(self, node: RecordingNode, endpoint: Endpoint, size: int) -> bytes:
        """One message of ``size`` bytes from ``endpoint``: exactly one ``Message`` on a
        packet transport, reassembled from the stream otherwise."""
        if self.transport.is_packet_based:
            event = node.expect(Message)
            assert event.endpoint == endpoint
            assert len(event.data) == size, f"{len(event.data)} bytes, not {size}"
            return event.data
        data = bytearray()
        while len(data) < size:
            event = node.expect(Message)
            assert event.endpoint == endpoint
            data += event.data
        return bytes(data)

    def raw(self, addr: Any, *, rcvbuf: int | None = None) -> socket.socket:
        """:meth:`raw_connect`, closed after the test (skips the test if not provided)."""
        self.need_raw_peer()
        return self.keep(self.raw_connect(addr, rcvbuf=rcvbuf))

    def keep(self, sock: socket.socket) -> socket.socket:
        """Close ``sock`` after the test; return it."""
        self._sockets.append(sock)
        return sock

    def wire_size(self, payload: bytes) -> int:
        """``len(self.wire(payload))``, or the payload plus 64 bytes of framing if
        :meth:`wire` is not provided: a bound of a queued message's size."""
        try:
            return len(self.wire(payload))
        except NotImplementedError:
            return len(payload) + _FRAMING_ALLOWANCE

    # -- what a test needs ----------------------------------------------------------------

    def need_connections(self) -> None:
        """Skip the test unless the transport is connection-oriented."""
        if not self.transport.is_connection_oriented:
            _skip(
                f"{self.transport!r} is not connection-oriented: no Accepted, Disconnected "
                "or refused connect, and no promise of delivery or order"
            )

    def need_raw_peer(self) -> None:
        """Skip the test unless the author provided :meth:`raw_connect`."""
        if type(self).raw_connect is SuiteBase.raw_connect:
            _skip(f"no raw peer for {self.transport!r}: provide raw_connect() to run this test")

    def need_wire(self) -> None:
        """Skip the test unless :meth:`raw_connect` and :meth:`wire` are provided."""
        self.need_raw_peer()
        try:
            self.wire(b"")
        except NotImplementedError:
            _skip(f"no wire format for {self.transport!r}: provide wire() to run this test")


def _skip(reason: str) -> NoReturn:
    pytest.skip(reason)


def _stop(node: RecordingNode) -> BaseException | None:
    """Stop ``node``; return what its callback raised (or the failure to stop)."""
    try:
        node.stop()
    except BaseException as exc:  # noqa: BLE001 - the harness raises it after cleaning up
        return exc
    return None
