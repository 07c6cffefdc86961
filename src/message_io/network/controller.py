"""``handler.network``: connect, listen, send and remove, from any thread."""

from __future__ import annotations

import functools
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    AddressError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    ListenError,
    LoopThreadError,
    NodeStoppedError,
    connect_error,
)
from .adapter import (
    Adapter,
    BytesLike,
    ConnectConfig,
    ConnectionInfo,
    HostName,
    ListenConfig,
    SendStatus,
    format_address,
)
from .connection import Connection, DatagramConnection, Limits, connection_class
from .dial import Dial
from .endpoint import Address, Endpoint, PeerResourceId, ResourceId, ResourceType
from .listener import Listener
from .transport import Transport

if TYPE_CHECKING:
    from .loop import Loop

__all__ = ["EndpointStatistics", "NetworkController"]

log = logging.getLogger("message_io")


def _addr_text(addr: Any) -> str:
    if isinstance(addr, str):
        return addr
    return format_address(addr) if isinstance(addr, tuple) else repr(addr)


_C = TypeVar("_C", ConnectConfig, ListenConfig)


def _adapter_of(transport: Transport) -> Any:
    """``transport``'s adapter.

    Raises:
        TypeError: ``transport`` is not a :class:`Transport` (e.g. the string "TCP").
    """
    if not isinstance(transport, Transport):
        raise TypeError(
            f"transport must be a Transport (e.g. Transport.FRAMED_TCP), "
            f"not {type(transport).__name__}"
        )
    return transport.adapter


def _checked(loop: Loop[Any], transport: Transport, config: _C | None, kind: type[_C]) -> _C:
    """The config to use: the default of ``kind``, or ``config`` if it is one.

    Raises:
        NodeStoppedError: the node is stopped.
        ConfigError: ``config`` is of another class (another transport's config).
    """
    if not loop.running:
        raise NodeStoppedError("the node is stopped; create a new one with split()")
    if config is None:
        return kind()
    if not isinstance(config, kind):
        raise ConfigError(f"{transport!r} takes a {kind.__name__}, not a {type(config).__name__}")
    return config


class NetworkController:
    """Creates and removes connections and listeners, and sends messages.

    Reached as ``handler.network``. Every method is thread-safe and may be called from
    the event callback; only :meth:`connect_sync` and :meth:`wait_drained` wait, and they
    refuse to run on the loop thread, where they would deadlock.
    """

    __slots__ = ("__dict__", "_connections", "_loop")

    def __init__(self, loop: Loop[Any]) -> None:
        self._loop = loop
        self._connections = loop.connections  # the same dict for the node's life
        # ``send`` is the registry's own method, which does what :meth:`send` says: one
        # frame less per message (0.14 us), the engine's code called straight from the
        # caller's (an instance attribute takes precedence over a method). Not in a
        # subclass that overrides send(). Bound here, once: a test double replaces
        # ``handler.network.send``, the instance's attribute, not the class's method.
        if type(self).send is NetworkController.send:
            self.__dict__["send"] = loop.registry.send

    def connect(
        self, transport: Transport, addr: Any, *, config: ConnectConfig | None = None
    ) -> tuple[Endpoint, Address | None]:
        """Start connecting to ``addr``, without waiting (not even for a name lookup).

        Args:
            transport: The transport, e.g. ``Transport.FRAMED_TCP``.
            addr: ``"ip:port"``, ``"[ipv6]:port"``, ``"host:port"`` or a ``(host, port)``
                tuple; transports may accept more (URLs for WebSocket, paths for Unix
                sockets). A host name is resolved on a resolver thread (the node's
                ``resolver``), never in the calling thread nor on the loop, and its
                addresses are tried as Happy Eyeballs does (RFC 8305: IPv6 and IPv4
                interleaved, the next one started when the last has not connected within
                ``happy_eyeballs_delay``, or has failed); the first to connect wins.
            config: The transport's connect config (e.g. ``TcpConnectConfig``); defaults
                when omitted.

        Returns:
            ``(endpoint, local_addr)``: the endpoint to send to, and the local address the
            connection is bound to. For a host name the socket does not exist yet:
            ``local_addr`` is ``None`` and ``endpoint.addr`` is ``(name, port)``, as
            given (:meth:`connect_sync` returns the local address once connected).

        Events:
            ``Connected(endpoint, True)`` once it is established (after the handshake, if
            the transport has one), or ``Connected(endpoint, False, error)`` if it fails
            (the name does not resolve, every address refused...) or its
            ``connect_timeout`` passes, which covers the name lookup too. Until then
            ``send`` returns ``RESOURCE_NOT_AVAILABLE``. No event about the endpoint
            reaches the callback before this call has returned it, whatever the thread,
            so the caller may record it (``state[endpoint] = ...``) before any event.

        Raises:
            AddressError: ``addr`` cannot be parsed (a name that does not resolve is a
                ``Connected(endpoint, False, error)`` event instead).
            ConfigError: ``config`` is not the transport's connect config.
            ConnectError: the OS refused to start the connection (e.g. no route).
            NodeStoppedError: the node has been stopped.
        """
        conn, local_addr = self._connect(transport, addr, config, publish_later=True)
        if type(conn.remote) is Dial:
            # Before publishing: starting a resolver thread lets other threads run, and
            # the dial goes no further than the lookup until it is published.
            conn.remote.start()
        result = conn.endpoint, local_addr
        conn.published = True  # the last step: now the loop may poll it (and tell of it)
        return result

    def _connect(
        self,
        transport: Transport,
        addr: Any,
        config: ConnectConfig | None,
        *,
        publish_later: bool = False,
        hold_events: bool = False,
    ) -> tuple[Connection, Address | None]:
        """Open the connection; the work behind connect() and connect_sync().

        ``publish_later``: poll it only once ``conn.published`` is set. ``hold_events``:
        poll it at once, but hold its events back until ``loop.release_events(conn)``.
        """
        loop = self._loop
        adapter = _adapter_of(transport)
        config = _checked(loop, transport, config, adapter.connect_config)
        name = adapter.lookup(addr, config)
        if name is not None:
            conn = self._dial(transport, adapter, addr, config, name, hold_events=hold_events)
            if publish_later:
                conn.published = False  # the dial waits for it after the lookup
            return conn, None
        try:
            info = adapter.connect(addr, config)
        except (AddressError, ConnectError):
            raise
        except OSError as exc:
            raise ConnectError(exc.errno, exc.strerror or str(exc), _addr_text(addr)) from exc
        resource_id = loop.new_id(transport.id, ResourceType.REMOTE)
        endpoint = Endpoint(resource_id, info.peer_addr)
        kind = connection_class(info.remote)
        conn = kind(
            loop,
            resource_id,
            endpoint,
            info.remote,
            limit=config.send_buffer_limit,
            limits=Limits.of(config),
        )
        conn.local_addr = info.local_addr
        if hold_events:
            conn.parked = []
        _set_deadline(loop, conn, config)
        try:
            loop.register_connection(conn, publish_later=publish_later)
        except BaseException:
            loop.cancel_timer(conn.deadline_timer)
            info.remote.close()
            raise
        log.debug("connecting to %s as %r", _addr_text(addr), resource_id)
        return conn, info.local_addr

    def _dial(
        self,
        transport: Transport,
        adapter: Adapter,
        addr: Any,
        config: ConnectConfig,
        name: HostName,
        *,
        hold_events: bool,
    ) -> Connection:
        """A connection to a host name: a :class:`Dial` resolves it and races its
        addresses; the caller starts it (``conn.remote.start()``) once it holds the
        endpoint, so no event about it can come first."""
        loop = self._loop
        resource_id = loop.new_id(transport.id, ResourceType.REMOTE)
        endpoint = Endpoint(resource_id, (name.host, name.port))

        def connect_to(family: Any, sockaddr: tuple[Any, ...]) -> ConnectionInfo:
            return adapter.connect_to(addr, config, family, sockaddr)

        dial = Dial(name, connect_to, loop, resolver=loop.resolver)
        # A datagram host name gets datagram remotes (HostName.socket_type).
        kind = DatagramConnection if name.socket_type == socket.SOCK_DGRAM else Connection
        conn = kind(
            loop,
            resource_id,
            endpoint,
            dial,
            limit=config.send_buffer_limit,
            limits=Limits.of(config),
        )
        if hold_events:
            conn.parked = []
        dial.won = functools.partial(loop.dial_won, conn)
        dial.failed = functools.partial(loop.fail_pending, conn)
        dial.may_proceed = lambda: conn.published
        _set_deadline(loop, conn, config)
        try:
            loop.register_dial(conn)
        except BaseException:
            loop.cancel_timer(conn.deadline_timer)
            raise
        log.debug("connecting to %s as %r (resolving)", _addr_text(addr), resource_id)
        return conn

    def connect_sync(
        self,
        transport: Transport,
        addr: Any,
        *,
        config: ConnectConfig | None = None,
        timeout: float | None = 10.0,
    ) -> tuple[Endpoint, Address]:
        """Connect and wait until the connection is established.

        Works before the loop runs (it then drives this one connection itself) and while
        it runs on another thread. The ``Connected`` event is still delivered, after this
        call has returned or raised: no event about the endpoint comes first (the
        connection is not read until then).

        Args:
            transport: As for :meth:`connect`.
            addr: As for :meth:`connect`.
            config: As for :meth:`connect`.
            timeout: Seconds to wait for the outcome (``None``: as long as the OS takes).

        Returns:
            ``(endpoint, local_addr)``, as for :meth:`connect`.

        Raises:
            LoopThreadError: called from the loop thread (the event callback), where
                waiting would deadlock; use :meth:`connect` and the ``Connected`` event.
            ConnectError: the connection failed (refused, unreachable...); ``errno`` is set
                when the OS gave one.
            ConnectTimeout: no outcome within ``timeout``; the attempt is removed.
            AddressError, ConfigError, NodeStoppedError: as for :meth:`connect`.
        """
        loop = self._loop
        if loop.on_loop_thread():
            raise LoopThreadError(
                "connect_sync() called from the event loop thread would deadlock; "
                "use connect() and wait for the Connected event"
            )
        conn, _local_addr = self._connect(transport, addr, config, hold_events=True)
        try:
            return self._wait_connected(conn, addr, timeout)
        finally:
            loop.release_events(conn)  # now that the caller holds the outcome

    def _wait_connected(
        self, conn: Connection, addr: Any, timeout: float | None
    ) -> tuple[Endpoint, Address]:
        """Wait for ``conn``'s outcome; connect_sync's result."""
        loop = self._loop
        if type(conn.remote) is Dial:
            conn.remote.start()
        endpoint = conn.endpoint
        deadline = None if timeout is None else time.monotonic() + timeout
        while not conn.resolved:
            if not loop.running:
                raise NodeStoppedError("the node was stopped while connecting")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                loop.remove(endpoint.resource_id)
                raise ConnectTimeout(
                    f"cannot connect to {_addr_text(addr)}: timed out after {timeout} s"
                )
            if not loop.drive_wanted and loop.drive_lock.acquire(blocking=False):
                # Nobody drives the node: run its loop here until the outcome (events go
                # to the backlog), or until another thread asks to drive.
                try:
                    loop.drive_until_decided(conn, remaining)
                finally:
                    loop.release_drive()
            else:
                # A loop runs on another thread: it decides the outcome, or stops driving
                # (a pull-API caller between calls) and then this thread drives.
                loop.wait_decided(conn, remaining)
        if conn.established and loop.running:
            assert conn.local_addr is not None  # set with the socket that connected
            return endpoint, conn.local_addr
        failure = conn.remote.failure
        if not loop.running:
            raise NodeStoppedError("the node was stopped while connecting")
        raise connect_error(failure, _addr_text(addr))

    def listen(
        self, transport: Transport, addr: Any, *, config: ListenConfig | None = None
    ) -> tuple[ResourceId, Address]:
        """Listen on ``addr`` (``"0.0.0.0:3042"``, ``"127.0.0.1:0"``, ``"[::1]:0"``, a tuple...).

        Port 0 picks a free port: the returned address tells which.

        Returns:
            ``(listener_id, local_addr)``.

        Events:
            ``Accepted(endpoint, listener_id)`` for each new connection, once ready;
            ``Message(endpoint, data)`` for what they send. None of them reaches the
            callback before this call has returned ``listener_id``, whatever the thread.

        Raises:
            AddressError: ``addr`` cannot be parsed or resolved.
            ConfigError: ``config`` is not the transport's listen config.
            ListenError: binding or listening failed (address in use, permission...);
                ``errno`` is the OS's.
            NodeStoppedError: the node has been stopped.
        """
        loop = self._loop
        adapter = _adapter_of(transport)
        config = _checked(loop, transport, config, adapter.listen_config)
        try:
            info = adapter.listen(addr, config)
        except (AddressError, ListenError):
            raise
        except OSError as exc:
            raise ListenError(exc.errno, exc.strerror or str(exc), _addr_text(addr)) from exc
        resource_id = loop.new_id(transport.id, ResourceType.LOCAL)
        listener = Listener(
            loop,
            resource_id,
            info.local,
            config.send_buffer_limit,
            handshake_timeout=config.handshake_timeout,
            limits=Limits.of(config),
        )
        try:
            loop.register_listener(listener, publish_later=True)
        except BaseException:
            info.local.close()
            raise
        log.debug("listening on %s as %r", format_address(info.local_addr), resource_id)
        result = resource_id, info.local_addr
        listener.published = True  # the last step: now the loop may poll it
        return result

    def send(self, endpoint: Endpoint, data: BytesLike | str) -> SendStatus:
        """Send one message to ``endpoint``; never blocks, never busy-waits.

        The message is written now if the OS takes it, or queued and written by the loop,
        in order; messages sent by different threads never interleave. ``data`` may be
        any bytes-like object; a mutable one is copied if it has to be queued. A ``str``
        is sent as a text message by transports that have them (WebSocket text frames,
        received as ``TextMessage``).

        Returns:
            ``SENT`` (handed over, not a proof of delivery); ``RESOURCE_NOT_AVAILABLE``
            (still connecting); ``RESOURCE_NOT_FOUND`` (no such connection);
            ``MAX_PACKET_SIZE_EXCEEDED`` (too large for the transport; nothing sent);
            ``QUEUE_FULL`` (backpressure: nothing sent; wait for ``Drained(endpoint)`` or
            :meth:`wait_drained`, then send again).

        Raises:
            TypeError: ``endpoint`` is not an :class:`Endpoint` (e.g. the pair that
                ``connect`` returns), or ``data`` is a ``str`` and the transport carries
                bytes only.
        """
        return self._loop.registry.send(endpoint, data)

    def send_wait(
        self, endpoint: Endpoint, data: BytesLike | str, timeout: float | None = None
    ) -> SendStatus:
        """Send one message, waiting out backpressure instead of refusing it.

        For threads other than the loop's (a producer, a file sender): while the
        connection's queue is full, wait until the loop has written it out, then send.
        The loop must be running to write the queue.

        Returns:
            As :meth:`send`, except that ``QUEUE_FULL`` only comes back if ``timeout``
            seconds passed with the queue still full (nothing was sent then).

        Raises:
            LoopThreadError: called from the loop thread, where waiting would
                deadlock; use :meth:`send`, ``Drained`` and :meth:`pause_reading` there.
            TypeError: as for :meth:`send`.
        """
        loop = self._loop
        if loop.on_loop_thread():
            raise LoopThreadError(
                "send_wait() called from the event loop thread would deadlock; "
                "use send() and the Drained event"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        status: SendStatus | None = None
        while True:
            # Wait before sending while the queue is full (a send would be refused), and
            # after any refusal (a packet listener's queue counts datagrams too).
            resource = self._resource(endpoint)
            if resource is not None and (
                status is SendStatus.QUEUE_FULL or resource.queued >= resource.limit
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return SendStatus.QUEUE_FULL
                resource.wait_empty(remaining)
            status = self.send(endpoint, data)
            if status is not SendStatus.QUEUE_FULL:
                return status

    def pause_reading(self, endpoint: Endpoint) -> bool:
        """Stop reading from ``endpoint`` until :meth:`resume_reading`: end-to-end flow
        control, as asyncio's ``Transport.pause_reading``.

        The kernel then stops accepting its bytes and TCP slows the peer down, so what a
        peer makes you send (echoes, relayed data) can wait for room instead of piling
        up. Messages already read are still delivered. While paused, its
        ``message_timeout`` and ``idle_timeout`` clocks stop. Any thread.

        Returns:
            False if ``endpoint`` is not a connection of this node (UDP listener peers
            have none to pause).
        """
        return self._loop.pause_reading(endpoint.resource_id, True)

    def resume_reading(self, endpoint: Endpoint) -> bool:
        """Read from ``endpoint`` again after :meth:`pause_reading`. Any thread.

        Returns:
            False if ``endpoint`` is not a connection of this node.
        """
        return self._loop.pause_reading(endpoint.resource_id, False)

    def request_drained(self, endpoint: Endpoint) -> bool:
        """If a :meth:`send` to ``endpoint`` would now be refused with ``QUEUE_FULL``,
        arrange a ``Drained(endpoint)`` event for when its queue is empty, and return
        True; return False if there is room (or no such endpoint). Nothing is sent,
        logged or counted: a way to wait for room before sending, as the asyncio
        ``send`` does. Any thread."""
        resource = self._resource(endpoint)
        return resource is not None and resource.request_drained(endpoint)

    def local_addr(self, endpoint: Endpoint) -> Address | None:
        """The local address of a connection made by :meth:`connect`, once it has a
        socket (at once for an IP address, from ``Connected`` on for a host name); None
        before that, for other endpoints, or once it is gone. Any thread."""
        conn = self._connections.get(endpoint.resource_id)
        return conn.local_addr if conn is not None else None

    def statistics(self, endpoint: Endpoint) -> EndpointStatistics | None:
        """A snapshot of the send queue that ``endpoint``'s sends go to: its
        connection's, or for a packet listener's peer (UDP) the listener's, which all
        its peers share. None if ``endpoint`` is neither. Any thread."""
        resource = self._resource(endpoint)
        if resource is None:
            return None
        if isinstance(resource, Listener):
            reading = not self._loop.input_paused
        else:
            reading = bool(resource.reading)
        return EndpointStatistics(
            queued_bytes=resource.queued,
            refused_sends=resource.refused,
            reading=reading,
        )

    def remove(self, target: ResourceId | Endpoint) -> bool:
        """Close a connection (kick a client) or a listener, or forget a packet peer.

        ``target`` is a resource id or an endpoint:

        - a connection's id or endpoint (every ``connect``, every ``Accepted`` client):
          it leaves the node at once: ``send`` returns ``RESOURCE_NOT_FOUND`` and no
          further event mentions it (no ``Disconnected`` either). Bytes already queued
          are still written, for up to a few seconds, before it closes.
        - a listener's id, as ``listen`` returned it: the listener closes (connections
          it accepted stay).
        - a packet listener's peer (UDP: ``Message(endpoint, ...)`` from a listener), as
          ``endpoint`` or ``endpoint.resource_id``: UDP has no connection to close, so the
          peer is forgotten: datagrams still queued to it are dropped, and the listener
          stays open for every other peer. Its next datagram arrives as a ``Message``, as
          a new client's would. So ``remove(endpoint.resource_id)`` kicks a client on
          every transport and never closes a listener by accident.

        Any thread.

        Returns:
            False if no such resource exists (never did, or already gone).

        Raises:
            TypeError: ``target`` is neither a :class:`ResourceId` nor an
                :class:`Endpoint`.
        """
        if isinstance(target, Endpoint):
            resource_id = target.resource_id  # a PeerResourceId for a listener's peer
            if resource_id.is_local:
                return self._loop.forget_peer(resource_id, target.addr)
            return self._loop.remove(resource_id)
        if isinstance(target, PeerResourceId):
            return self._loop.forget_peer(target, target.peer_addr)
        if not isinstance(target, ResourceId):
            raise TypeError(
                f"remove() takes a ResourceId or an Endpoint, not {type(target).__name__}"
            )
        return self._loop.remove(target)

    def is_ready(self, resource_id: ResourceId) -> bool | None:
        """True once a connection is established (listeners are always ready), False while
        it is connecting, None if it does not exist (removed, failed, disconnected)."""
        loop = self._loop
        conn = loop.connections.get(resource_id)
        if conn is not None:
            return bool(conn.established)
        return True if resource_id in loop.listeners else None

    def _resource(self, endpoint: Endpoint) -> Connection | Listener | None:
        """The queue ``endpoint``'s sends go to: its connection, or a packet listener."""
        loop = self._loop
        resource: Connection | Listener | None = loop.connections.get(endpoint.resource_id)
        if resource is None:
            resource = loop.listeners.get(endpoint.resource_id)
        return resource

    def pending_bytes(self, endpoint: Endpoint) -> int:
        """Bytes queued for ``endpoint`` and not yet handed to the OS (0 if unknown)."""
        resource = self._resource(endpoint)
        return resource.queued if resource is not None else 0

    def wait_drained(self, endpoint: Endpoint, timeout: float | None = None) -> bool:
        """Block until everything queued for ``endpoint`` is handed to the OS.

        The way for a sending thread to resume after ``QUEUE_FULL``. The node's loop must
        be running (``for_each`` or ``for_each_async``) to write the queue out.

        Returns:
            True if the queue is empty; False on timeout or if the connection is gone.

        Raises:
            LoopThreadError: called from the loop thread; use the ``Drained`` event there.
        """
        loop = self._loop
        if loop.on_loop_thread():
            raise LoopThreadError(
                "wait_drained() called from the event loop thread would deadlock; "
                "wait for the Drained event instead"
            )
        resource = self._resource(endpoint)
        if resource is None:
            return False
        return resource.wait_empty(timeout)


@dataclass(frozen=True)
class EndpointStatistics:
    """What :meth:`NetworkController.statistics` reports about one send queue: a
    connection's, or a packet listener's (shared by all its peers).

    Attributes:
        queued_bytes: Bytes queued and not yet handed to the OS.
        refused_sends: Sends refused with ``QUEUE_FULL`` since the connection (or
            listener) opened (a second refusal before ``Drained``, which a program that
            waits for room never meets, is also logged as a WARNING, once per episode).
        reading: False while the node does not read it (``pause_reading``, or the
            node-wide cap on unfinished messages; for a listener, the node's input
            paused).
    """

    queued_bytes: int
    refused_sends: int
    reading: bool


def _set_deadline(loop: Loop[Any], conn: Connection, config: ConnectConfig) -> None:
    """Give up on ``conn`` after ``config.connect_timeout``, if it has one."""
    if config.connect_timeout is not None:
        timeout = config.connect_timeout
        reason = TimeoutError(f"connect timed out after {timeout} s")
        conn.deadline_timer = loop.add_timer(timeout, lambda: loop.fail_pending(conn, reason))
