"""The public contract for writing a transport (an *adapter*).

A transport is three small classes:

* an :class:`Adapter`, stateless, that opens connections (:meth:`Adapter.connect`) and
  listeners (:meth:`Adapter.listen`) and says what kind of transport it is;
* a :class:`Remote`, one connection: it reads and decodes messages, frames outgoing
  messages and writes bytes, and may run a handshake before it is ready;
* a :class:`Local`, one listener: it accepts connections (or, for packet transports,
  receives datagrams) and may send datagrams to any address.

Register the adapter once with :func:`message_io.register_transport` and the new
transport works with every call of the node: ``connect``, ``listen``, ``send``, ``remove``,
the events, the send queue with its memory bound, backpressure and connect timeouts.

What the node does for you, so an adapter need not:

* Polling. Each resource exposes :meth:`fileno`; the node polls it (level-triggered)
  and calls :meth:`Remote.pending`, :meth:`Remote.receive` or :meth:`Local.accept`
  on the loop thread when it is ready. None of them may block.
* The send queue. ``send()`` frames the message with :meth:`Remote.frame` and queues the
  bytes per connection; the loop writes them with :meth:`Remote.write` when the resource
  is writable, coalescing many small messages into few system calls. The queue is
  bounded (``send_buffer_limit``) and reports backpressure to the user.
* Thread safety. ``frame`` and ``write`` are called under the connection's lock, so
  two threads never interleave bytes. If the transport cannot read and write at the same
  time from two threads (a TLS session, for example), set ``full_duplex = False`` and
  ``receive`` runs under the same lock.
* Errors. An ``OSError`` (or :class:`~message_io.errors.FrameError`) raised by
  ``receive``, ``pending`` or ``write`` disconnects that one resource and is logged once;
  other resources carry on. Anything else is a bug in the adapter and is logged with its
  traceback, and also only disconnects that resource.

The annotated skeleton in :mod:`message_io.adapters.template` is a good place to start,
and ``docs/adapters.md`` walks through a complete Unix-domain-socket transport.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import AddressError
from .endpoint import Address

__all__ = [
    "DEFAULT_MESSAGE_TIMEOUT",
    "DEFAULT_MIN_MESSAGE_RATE",
    "DEFAULT_SEND_BUFFER_LIMIT",
    "Adapter",
    "Buffer",
    "ConnectConfig",
    "ConnectionInfo",
    "ListenConfig",
    "ListeningInfo",
    "Local",
    "PendingStatus",
    "ReadStatus",
    "Readiness",
    "Remote",
    "SendStatus",
    "format_address",
    "resolve_address",
]

Buffer = bytes | bytearray | memoryview
"""Any bytes-like object accepted by ``send``."""

DEFAULT_SEND_BUFFER_LIMIT = 4 * 1024 * 1024
"""Default cap, in bytes, of the data queued for one connection and not yet written."""

DEFAULT_MESSAGE_TIMEOUT = 30.0
"""Default ``message_timeout``: seconds a message may go without progress (30 s, as
libzmq's handshake interval and well under nginx's 60 s ``client_body_timeout``)."""

DEFAULT_MIN_MESSAGE_RATE = 240.0
"""Default ``min_message_rate``, in bytes per second: Kestrel's ``MinRequestBodyDataRate``."""


def _check_limits(config: ConnectConfig | ListenConfig) -> None:
    for name in ("message_timeout", "idle_timeout"):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0 or None, not {value!r}")
    rate = config.min_message_rate
    if rate is not None and not rate > 0:
        raise ValueError(f"min_message_rate must be > 0 or None, not {rate!r}")


class SendStatus(enum.Enum):
    """The outcome of ``NetworkController.send``."""

    SENT = "sent"
    """The message was handed to the transport: written to the OS, or queued to be written
    by the loop in order. It is not a proof of delivery."""
    MAX_PACKET_SIZE_EXCEEDED = "max_packet_size_exceeded"
    """The message is larger than the transport (or its config) allows; nothing was sent."""
    RESOURCE_NOT_FOUND = "resource_not_found"
    """No such connection: never existed, removed, disconnected or failed."""
    RESOURCE_NOT_AVAILABLE = "resource_not_available"
    """The connection exists but cannot take the message now: it is not ready yet
    (connect or handshake pending), or, on datagram transports, the OS refused this one
    datagram (network unreachable, broadcast not allowed...; logged at debug level).
    Nothing was sent."""
    QUEUE_FULL = "queue_full"
    """Backpressure: the connection already holds ``send_buffer_limit`` bytes that the peer
    has not taken. Nothing was queued. Send again after the ``Drained(endpoint)`` event,
    or after ``NetworkController.wait_drained(endpoint)`` returns True."""


class ReadStatus(enum.Enum):
    """What :meth:`Remote.receive` found."""

    OK = "ok"
    """Read what was available (maybe nothing); call again when readable."""
    DISCONNECTED = "disconnected"
    """The peer closed the connection or it failed; the node removes it."""


class PendingStatus(enum.Enum):
    """The state of a connection's handshake, returned by :meth:`Remote.pending`."""

    READY = "ready"
    INCOMPLETE = "incomplete"
    DISCONNECTED = "disconnected"


class Readiness(enum.Flag):
    """Which way a resource is ready: passed to :meth:`Remote.pending`."""

    READ = 1
    WRITE = 2


@dataclass(frozen=True, kw_only=True)
class ConnectConfig:
    """Options every transport's connect config has. Transport configs subclass it.

    Attributes:
        connect_timeout: Seconds to wait for the connection (and its handshake) before
            giving up with ``Connected(endpoint, False)``. ``None`` leaves it to the OS.
        send_buffer_limit: Bytes that may wait in this connection's send queue; past it
            ``send`` returns ``SendStatus.QUEUE_FULL``. A message is always accepted
            into an empty queue, whatever its size.
        message_timeout: Seconds an incoming message that has begun may go without a new
            byte before the peer is disconnected (``Disconnected``). ``None``: no limit
            (and no ``min_message_rate`` either). Only for transports with messages
            (FramedTcp, WebSocket, adapters that implement ``Remote.incomplete``).
        min_message_rate: Bytes per second an incoming message must average once it is
            older than ``message_timeout``; a slower one (a peer trickling a byte now and
            then) is disconnected. ``None``: no minimum rate.
        idle_timeout: Seconds without receiving anything before the peer is
            disconnected. ``None`` (default): no limit; TCP keepalive or the transport's
            pings still notice dead peers.
    """

    connect_timeout: float | None = None
    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT
    min_message_rate: float | None = DEFAULT_MIN_MESSAGE_RATE
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.connect_timeout is not None and not self.connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0, not {self.connect_timeout!r}")
        if self.send_buffer_limit < 1:
            raise ValueError(f"send_buffer_limit must be >= 1, not {self.send_buffer_limit!r}")
        _check_limits(self)


@dataclass(frozen=True, kw_only=True)
class ListenConfig:
    """Options every transport's listen config has. Transport configs subclass it.

    Attributes:
        send_buffer_limit: As in :class:`ConnectConfig`, for each accepted connection.
        handshake_timeout: Seconds an accepted connection may take to become ready
            (its handshake) before it is dropped; ``None``: no limit. Bytes trickled by
            the peer do not extend it.
        message_timeout, min_message_rate, idle_timeout: As in :class:`ConnectConfig`,
            for each accepted connection.
    """

    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    handshake_timeout: float | None = None
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT
    min_message_rate: float | None = DEFAULT_MIN_MESSAGE_RATE
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.send_buffer_limit < 1:
            raise ValueError(f"send_buffer_limit must be >= 1, not {self.send_buffer_limit!r}")
        if self.handshake_timeout is not None and not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0, not {self.handshake_timeout!r}")
        _check_limits(self)


class Remote(ABC):
    """One connection of a transport. Created by :meth:`Adapter.connect` or by a
    :class:`Local` when it accepts.

    Class attributes:
        full_duplex: True if :meth:`receive` may run on the loop thread while
            :meth:`write` runs on another thread. Set it False for a transport whose
            state is shared by both directions (TLS); then both run under one lock.
        datagrams: True if every :meth:`write` must carry exactly one whole message
            (UDP). False for byte streams, where the node coalesces messages and writes
            may be partial.

    Attributes:
        max_message_size: The largest message ``send`` accepts for this connection, or
            ``None`` for no limit. Larger ones get ``MAX_PACKET_SIZE_EXCEEDED``.
    """

    full_duplex: ClassVar[bool] = True
    datagrams: ClassVar[bool] = False
    max_message_size: int | None = None
    heartbeat_interval: float | None = None
    """If set, the node calls :meth:`heartbeat` this often (seconds) once ready."""
    failure: BaseException | None = None
    """Why the connection failed, if it did: set it before returning DISCONNECTED from
    :meth:`pending` and it is logged and raised by ``connect_sync``."""

    @abstractmethod
    def fileno(self) -> int:
        """The file descriptor the node polls for this connection."""

    def pending(self, readiness: Readiness) -> PendingStatus:
        """Advance the connect/handshake state machine; called until it is not INCOMPLETE.

        Called on the loop thread each time the resource is readable or writable while
        the connection is not yet ready. Return READY once the connection can carry
        messages (the node then emits ``Connected(ep, True)`` or ``Accepted``),
        DISCONNECTED if it failed. The default says READY at once.
        """
        return PendingStatus.READY

    def pending_interest(self) -> Readiness:
        """What to wait for after :meth:`pending` returned INCOMPLETE (default both ways).

        A handshake that waits for the peer's answer should return ``Readiness.READ``,
        so that the loop does not spin on a socket that is always writable.
        """
        return Readiness.READ | Readiness.WRITE

    @abstractmethod
    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        """Read what is available and call ``deliver(message)`` for each whole message
        (``bytes``; a ``str`` for a text message, see :meth:`frame_text`).

        Called on the loop thread when readable. It must not block. It need not read until
        the OS says "would block": polling is level-triggered, so it is called again while
        data remains; reading a bounded amount per call keeps the loop fair.

        Returns:
            ``ReadStatus.DISCONNECTED`` when the peer closed or the connection broke.

        Raises:
            OSError or FrameError: the node disconnects this connection and logs it.
        """

    def frame(self, data: Buffer) -> Buffer | tuple[bytes, Buffer]:
        """Turn one message into the bytes to write (add a length prefix, a frame header).

        Called under the connection lock, in send order, from the thread that sends. The
        result is queued until written; it may be ``data`` itself, or a ``(header, body)``
        pair that is queued as two chunks (no copy joins them: worth it for large
        messages whose body is new bytes anyway, such as a masked payload). Return an empty
        buffer to refuse the message (the connection is closing): ``send`` then returns
        ``RESOURCE_NOT_AVAILABLE``. The default returns ``data`` unchanged (a raw stream).
        """
        return data

    def header(self, size: int) -> bytes | None:
        """Optional fast path for framing: the bytes to put before a payload of ``size``.

        A transport that overrides it has every binary message queued as
        ``header(size) + data``, without a call to :meth:`frame`, which avoids a copy of
        large payloads. Only override it where every message is framed that way (the
        base method is never called). Return ``None`` to refuse the message (the
        connection is closing): ``send`` then returns ``RESOURCE_NOT_AVAILABLE``.
        """
        return None

    @abstractmethod
    def write(self, data: Buffer) -> int:
        """Write bytes without blocking; return how many the OS took (0 if none).

        ``data`` is a bytes-like object (``bytes``, ``bytearray`` or ``memoryview``); it is
        only valid during the call.

        Called under the connection lock. For stream transports a partial write is fine:
        the node keeps the rest.

        For ``datagrams`` transports ``data`` is one whole message: send it as one
        datagram, or raise ``BlockingIOError`` if the OS cannot take it now (the node
        queues it and calls again when the resource is writable). Any other ``OSError``
        drops that one datagram (``send`` returns ``MAX_PACKET_SIZE_EXCEEDED`` for
        ``EMSGSIZE``, else ``RESOURCE_NOT_AVAILABLE``) and the connection stays.

        Raises:
            OSError: for stream transports, a fatal error: the node disconnects this
                connection.
        """

    def write_many(self, buffers: list[Buffer]) -> int:
        """Write several buffers in order, without blocking, like ``writev``; return how
        many bytes the OS took in all. Called under the lock for stream transports when
        more than one chunk is queued. The default writes only the first buffer; override
        it (``socket.sendmsg``) to save system calls and tiny packets."""
        return self.write(buffers[0])

    def ready_to_write(self) -> bool:
        """Called under the lock when the connection is writable, before queued data is
        written. Return False if the connection is no longer usable (the node then emits
        ``Disconnected``). Transports with their own output state flush it here."""
        return True

    def frame_text(self, data: bytes) -> Buffer:
        """Frame a text message given as its UTF-8 bytes, for transports that tell text
        from binary (WebSocket): ``send(endpoint, "a str")`` calls it under the lock.
        :meth:`receive` delivers a received text message as a ``str`` (the node makes
        it a ``TextMessage``). The default refuses.

        Raises:
            TypeError: the transport carries bytes only.
        """
        raise TypeError(f"{type(self).__name__} sends bytes; encode the str first")

    def take_output(self) -> Buffer | None:
        """Bytes the transport itself wants to send (a pong, a close reply), or None.

        Called under the lock after :meth:`receive` and :meth:`heartbeat`; the node
        queues them after what is already queued. Default: nothing.
        """
        return None

    def buffered(self) -> bool:
        """True if input was already read from the OS and awaits :meth:`receive` (bytes
        that came with the handshake, decrypted TLS data): readiness will not announce
        it, so the node calls :meth:`receive` at once. Asked when the connection becomes
        ready. Default: False."""
        return False

    def incomplete(self) -> int:
        """Bytes of an incoming message that has begun and not ended: a frame whose header
        announced more than has arrived, the fragments of an unfinished message, a header
        cut short. 0 between messages (the default: a raw stream has no messages).

        Called on the loop thread after each :meth:`receive` that read something, so keep
        it cheap (a field or two). The node uses it to bound incomplete messages in time
        (``message_timeout``, ``min_message_rate``) and, across all connections, in memory
        (the node's ``max_incomplete_bytes``): a peer that stalls or trickles inside a
        message is disconnected, and past the node-wide cap the connections holding the
        most are not read until memory is freed.
        """
        return 0

    def heartbeat(self) -> None:
        """Called under the lock every :attr:`heartbeat_interval` seconds once ready: send
        a keepalive (collected with :meth:`take_output`) or check the peer's liveness.

        Raises:
            OSError: the peer is gone (e.g. ``TimeoutError``); the node disconnects it.
        """
        return

    def farewell(self, going_away: bool) -> bytes | None:
        """Bytes to send before a graceful close, such as a close frame: ``going_away``
        is False for ``remove``, True when the node stops. Called once under the lock.
        Default: nothing."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the OS resources. Called once, on the loop thread or by ``stop``."""


class Local(ABC):
    """One listener of a transport, created by :meth:`Adapter.listen`."""

    @abstractmethod
    def fileno(self) -> int:
        """The file descriptor the node polls for this listener."""

    @abstractmethod
    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        """Accept what is waiting, without blocking.

        Called on the loop thread when readable. Connection-oriented transports call
        ``accept_remote(remote, peer_addr)`` for each new connection (which then goes
        through :meth:`Remote.pending` before the node emits ``Accepted``); packet
        transports call ``deliver(peer_addr, message)`` for each datagram, which becomes
        ``Message(Endpoint(listener_id, peer_addr), message)``.

        Raises:
            OSError: logged; the listener stays open unless the error is fatal.
        """

    def send_to(self, addr: Address, data: Buffer) -> SendStatus:
        """Send one message from this listener to ``addr`` (packet transports only).

        Called from any thread, possibly from several at once. Return ``SENT``, or
        ``MAX_PACKET_SIZE_EXCEEDED`` for a message too large to send.

        Raises:
            BlockingIOError: the OS cannot take the datagram now; the node queues it (in
                order, bounded by ``send_buffer_limit``) and calls again when writable.
            OSError: the OS refused this datagram; the node drops it and ``send``
                returns ``RESOURCE_NOT_AVAILABLE`` (``MAX_PACKET_SIZE_EXCEEDED`` for
                ``EMSGSIZE``).
            TypeError: the transport cannot send from a listener (the default).
        """
        raise TypeError(f"{type(self).__name__} cannot send from a listener")

    @abstractmethod
    def close(self) -> None:
        """Release the OS resources."""


@dataclass(frozen=True)
class ConnectionInfo:
    """What :meth:`Adapter.connect` returns: the new connection and both addresses."""

    remote: Remote
    local_addr: Address
    peer_addr: Address


@dataclass(frozen=True)
class ListeningInfo:
    """What :meth:`Adapter.listen` returns: the new listener and its real address."""

    local: Local
    local_addr: Address


class Adapter(ABC):
    """A transport: a factory of connections and listeners, plus facts about itself.

    Class attributes:
        connection_oriented: True if connections have a life (``Accepted``,
            ``Disconnected``); False for datagram transports.
        packet_based: True if one send is one ``Message`` at the receiver.
        max_message_size: The default largest message, or ``None`` for no limit.
        connect_config: The config class ``connect`` accepts (a :class:`ConnectConfig`).
        listen_config: The config class ``listen`` accepts (a :class:`ListenConfig`).
    """

    connection_oriented: ClassVar[bool] = True
    packet_based: ClassVar[bool] = True
    max_message_size: ClassVar[int | None] = None
    connect_config: ClassVar[type[ConnectConfig]] = ConnectConfig
    listen_config: ClassVar[type[ListenConfig]] = ListenConfig

    @abstractmethod
    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        """Start a non-blocking connection to ``addr`` and return at once.

        ``addr`` is whatever the user passed (parse it; :func:`resolve_address` helps for
        IP transports). ``config`` is an instance of :attr:`connect_config`. The outcome
        is decided later by :meth:`Remote.pending`.

        Raises:
            AddressError: ``addr`` cannot be parsed or resolved.
            OSError: the OS refused to start the connection.
        """

    @abstractmethod
    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        """Bind and listen on ``addr``; return the listener and its real local address.

        Raises:
            AddressError: ``addr`` cannot be parsed or resolved.
            OSError: binding or listening failed.
        """


def _split_host_port(addr: str) -> tuple[str, int]:
    text = addr.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise AddressError(f"invalid address {addr!r}: expected '[ipv6]:port'")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise AddressError(f"invalid address {addr!r}: expected 'host:port'")
    try:
        port_number = int(port)
    except ValueError:
        raise AddressError(f"invalid port in address {addr!r}") from None
    return host, port_number


def resolve_address(
    addr: Any, *, type_: socket.SocketKind = socket.SOCK_STREAM, passive: bool = False
) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """Parse and resolve an IP address into ``[(family, sockaddr), ...]``, best first.

    Accepts ``"ip:port"``, ``"[ipv6]:port"``, ``"host:port"``, a ``(host, port)`` tuple and
    a 4-tuple IPv6 socket address. Host names are resolved with ``getaddrinfo`` in the
    calling thread. ``passive`` resolves for binding (an empty host means every
    interface).

    Raises:
        AddressError: the address cannot be parsed, the port is out of range, or the
            name does not resolve. The message names the address.
    """
    if isinstance(addr, str):
        host, port = _split_host_port(addr)
    elif isinstance(addr, tuple) and len(addr) in (2, 4) and isinstance(addr[0], str):
        host, port = addr[0], addr[1]
        if not isinstance(port, int) or isinstance(port, bool):
            raise AddressError(f"invalid port in address {addr!r}")
    else:
        raise AddressError(f"invalid address {addr!r}: expected 'host:port' or (host, port)")
    if not 0 <= port <= 65535:
        raise AddressError(f"invalid address {addr!r}: port out of range 0-65535")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0]) if host else None
    except ValueError:
        ip = None
    if ip is not None and "%" not in host:
        # A literal: no resolver round trip, and no surprise from /etc/hosts.
        if ip.version == 4:
            return [(socket.AF_INET, (host, port))]
        if isinstance(addr, tuple) and len(addr) == 4:
            return [(socket.AF_INET6, (host, port, addr[2], addr[3]))]
        return [(socket.AF_INET6, (host, port, 0, 0))]
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(host or None, port, 0, type_, 0, flags)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressError(f"cannot resolve address {addr!r}: {exc}") from exc
    seen: list[tuple[socket.AddressFamily, tuple[Any, ...]]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in seen:
            seen.append((family, tuple(sockaddr)))
    if not seen:
        raise AddressError(f"cannot resolve address {addr!r}: no IPv4 or IPv6 address")
    return seen


def format_address(addr: Address) -> str:
    """``"ip:port"`` or ``"[ipv6]:port"`` for a socket address; strings pass through."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
