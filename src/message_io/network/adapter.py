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
* Host names. An adapter whose addresses hold a host name says so in
  :meth:`Adapter.lookup` (parse only, no resolving); the node then resolves the name on
  a resolver thread, never on the loop or in the caller's thread, and races the
  addresses it gets (Happy Eyeballs, RFC 8305) through :meth:`Adapter.connect_to`.
* Thread safety. ``frame`` and ``write`` are called under the connection's lock, so
  two threads never interleave bytes. If the transport cannot read and write at the same
  time from two threads (a TLS session, for example), set ``full_duplex = False`` and
  ``receive`` runs under the same lock.
* Errors. An ``OSError`` (or :class:`~message_io.errors.FrameError`) raised by
  ``receive``, ``pending`` or ``write`` disconnects that one resource and is logged once;
  other resources carry on. Anything else is a bug in the adapter and is logged with its
  traceback, and also only disconnects that resource.

What a transport can do is declared, never guessed: the capabilities of a
:class:`Remote` are class attributes (:attr:`Remote.framing`, ``reports_incomplete``,
``has_output``, ``text_messages``, ``full_duplex``, ``datagrams``), and every optional
hook's default changes nothing.

The annotated skeleton in :mod:`message_io.adapters.template` is a good place to start;
``docs/adapters.md`` walks through :mod:`message_io.adapters.unix`, a complete transport
written with this contract alone; :mod:`message_io.testing` is the conformance suite to
run on yours.
"""

from __future__ import annotations

import enum
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .address import (
    HostName,
    check_ip_address,
    format_address,
    host_name,
    parse_host_port,
    resolve_address,
)
from .config import (
    DEFAULT_MESSAGE_TIMEOUT,
    DEFAULT_MIN_MESSAGE_RATE,
    DEFAULT_SEND_BUFFER_LIMIT,
    ConnectConfig,
    ListenConfig,
    check_fields,
)
from .endpoint import Address
from .send_status import SendStatus

if TYPE_CHECKING:
    from ..codec.body_pool import BodyPool
    from .datagrams import DatagramSource
    from .reader import Reader

__all__ = [
    "DEFAULT_MESSAGE_TIMEOUT",
    "DEFAULT_MIN_MESSAGE_RATE",
    "DEFAULT_SEND_BUFFER_LIMIT",
    "Adapter",
    "Buffer",
    "BytesLike",
    "ConnectConfig",
    "ConnectionInfo",
    "Framing",
    "HostName",
    "ListenConfig",
    "ListeningInfo",
    "Local",
    "PendingStatus",
    "ReadStatus",
    "Readiness",
    "Remote",
    "SendStatus",
    "check_fields",
    "check_ip_address",
    "format_address",
    "host_name",
    "parse_host_port",
    "resolve_address",
]

# Configs (config.py) and address helpers (address.py) are part of this contract too: a
# transport author finds everything here.

Buffer = bytes | bytearray | memoryview
"""The bytes a transport is given to write: ``send`` turns any :class:`BytesLike` into
one of these (a flat byte view of other buffers)."""


class BytesLike(Protocol):
    """Any object of the buffer protocol that ``send`` accepts: ``bytes``, ``bytearray``,
    ``memoryview``, ``array.array``, ``mmap``, a NumPy array... (``collections.abc.Buffer``
    from Python 3.12 on)."""

    def __buffer__(self, flags: int, /) -> memoryview: ...


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


# -- config checks ------------------------------------------------------------------------
#
# Each config class is compiled once, from its resolved annotations, into one _FieldCheck
# per field (a _Spec for the type, the range its name implies, a default known to pass);
# building a config then runs the checks, which only look at the values.


class Framing(enum.Enum):
    """How ``send`` turns a message into bytes for :meth:`Remote.write`: a capability a
    transport declares in :attr:`Remote.framing`."""

    NONE = "none"
    """Bytes as given: a raw byte stream (TCP), or one datagram per message (UDP).
    Neither :meth:`Remote.frame` nor :meth:`Remote.header` is called."""
    FRAME = "frame"
    """:meth:`Remote.frame` makes each message's bytes (the default)."""
    HEADER = "header"
    """Each message goes out as :meth:`Remote.header` ``(size)`` followed by the payload
    itself: no call per message beyond the header, and no copy of large payloads."""


class _Shortcuts:
    """What makes a built-in transport's class take the node's shortcuts
    (:meth:`Remote._direct_socket`, :meth:`Remote._frame_reader`,
    :meth:`Local._datagram_source`): ``_built_in`` is True only for a class whose own
    body says ``_built_in = True``, never for a subclass, which may override the
    methods a shortcut stands for."""

    _built_in: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_built_in" not in cls.__dict__:
            cls._built_in = False  # not inherited: a subclass is not built in


class Remote(_Shortcuts, ABC):
    """One connection of a transport. Created by :meth:`Adapter.connect` or by a
    :class:`Local` when it accepts.

    **Required**: :meth:`fileno`, :meth:`receive`, :meth:`write`, :meth:`close`.

    **Capabilities**, declared as class attributes (the node never guesses them from
    which methods a class overrides; the defaults suit a plain byte stream):

    * ``framing`` (:class:`Framing`, default ``FRAME``): which of :meth:`frame` or
      :meth:`header` makes a message's bytes, or ``NONE`` for neither.
    * ``reports_incomplete`` (default False): :meth:`incomplete` is called after each
      read, and the node bounds unfinished messages in time and memory.
    * ``has_output`` (default False): :meth:`take_output` is called after each
      :meth:`receive` and :meth:`heartbeat` (the transport answers by itself: pongs).
    * ``text_messages`` (default False): ``send`` takes a ``str`` (:meth:`frame_text`)
      and :meth:`receive` may deliver one; without it ``send(str)`` raises ``TypeError``.
    * ``full_duplex`` (default True): :meth:`receive` may run on the loop thread while
      :meth:`write` runs on another. Set it False for a transport whose state serves
      both directions (TLS): then both run under the connection's lock.
    * ``datagrams`` (default False): every :meth:`write` carries exactly one whole
      message (UDP). False for byte streams, where the node coalesces messages and
      writes may be partial.

    **Optional hooks**, each with a default that does nothing a transport would notice,
    so overriding one with its documented default never changes behaviour:
    :meth:`pending` and :meth:`pending_interest` (a handshake; loop thread),
    :meth:`frame` / :meth:`header` / :meth:`frame_text` (framing; the sending thread,
    under the lock), :meth:`write_many` and :meth:`ready_to_write` (writing; under the
    lock), :meth:`take_output`, :meth:`buffered`, :meth:`incomplete`, :meth:`heartbeat`
    (loop thread) and :meth:`farewell` (under the lock, from ``remove`` or ``stop``).

    Attributes:
        max_message_size: The largest message ``send`` accepts for this connection, or
            ``None`` for no limit. Larger ones get ``MAX_PACKET_SIZE_EXCEEDED``.
    """

    framing: ClassVar[Framing] = Framing.FRAME
    reports_incomplete: ClassVar[bool] = False
    has_output: ClassVar[bool] = False
    text_messages: ClassVar[bool] = False
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

        ``deliver`` is the ``append`` method of a list the node owns (``deliver.__self__``):
        a transport that decodes many messages at once may append them to that list
        directly, which saves a call per message.

        Returns:
            ``ReadStatus.DISCONNECTED`` when the peer closed or the connection broke.

        Raises:
            OSError or FrameError: the node disconnects this connection and logs it.
        """

    def frame(self, data: Buffer) -> Buffer | tuple[bytes, Buffer] | None:
        """Turn one message into the bytes to write (add a length prefix, a frame header).

        Called when :attr:`framing` is ``FRAME`` (the default), under the connection
        lock, in send order, from the thread that sends. The result is queued until
        written; it may be ``data`` itself, or a ``(header, body)`` pair that is queued as
        two chunks (no copy joins them: worth it for large messages whose body is new
        bytes anyway, such as a masked payload). Return ``None`` to refuse the message
        (the connection is closing): ``send`` then returns ``RESOURCE_NOT_AVAILABLE``. An
        empty result for an empty message is sent as nothing; an empty result for a
        non-empty one also refuses it. The default returns ``data`` unchanged (a raw
        stream).
        """
        return data

    def header(self, size: int) -> bytes | None:
        """The bytes to put before a payload of ``size``: the framing of a transport
        whose :attr:`framing` is ``HEADER``, which has every binary message queued as
        ``header(size) + data``, without a call to :meth:`frame` (no copy of large
        payloads). Called under the connection lock, in send order. Return ``None`` to
        refuse the message (the connection is closing): ``send`` then returns
        ``RESOURCE_NOT_AVAILABLE``. The default returns no header (``b""``).
        """
        return b""

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
        from binary (WebSocket) and say so in :attr:`text_messages`:
        ``send(endpoint, "a str")`` calls it under the lock.
        :meth:`receive` delivers a received text message as a ``str`` (the node makes
        it a ``TextMessage``). The default refuses.

        Raises:
            TypeError: the transport carries bytes only.
        """
        raise TypeError(f"{type(self).__name__} sends bytes; encode the str first")

    def take_output(self) -> Buffer | None:
        """Bytes the transport itself wants to send (a pong, a close reply), or None.

        Called when :attr:`has_output` is True, under the lock after :meth:`receive` and
        :meth:`heartbeat`; the node
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

        Called when :attr:`reports_incomplete` is True, on the loop thread after each
        :meth:`receive` that read something, so keep it cheap (a field or two). The
        node uses it to bound incomplete messages in time (``message_timeout``,
        ``min_message_rate``) and, across all connections, in memory (the node's
        ``max_incomplete_bytes``): a peer that stalls or trickles inside a message is
        disconnected, and past the node-wide cap the connections holding the most are
        not read until memory is freed.
        """
        return 0

    def _frame_reader(self) -> Reader | None:
        """Internal API, for the built-in transports: a compiled reader that the node
        calls in place of :meth:`receive` and :meth:`incomplete` (and whose framers, if
        it has them, in place of :meth:`header` or :meth:`frame`). Asked when the
        connection is made and again when it becomes ready. Default: None (the node
        calls the methods)."""
        return None

    def _send_pool(self) -> BodyPool | None:
        """Internal API, for the built-in transports: the pool whose buffers
        :meth:`frame` may return as bodies (see :mod:`message_io.codec.body_pool`), for
        the node to enable, queue such bodies by reference and give them back once
        written. Asked with :meth:`_direct_socket`. Default: None (bodies are never
        reused)."""
        return None

    def _direct_socket(self) -> socket.socket | None:
        """Internal API, for the built-in stream transports: the socket that
        :meth:`write` sends to as it is (``send``, 0 when it would block), for the node
        to call its ``send`` without calling :meth:`write`. Asked once, when the
        connection is made. Default: None (the node calls :meth:`write`)."""
        return None

    def heartbeat(self) -> None:
        """Called under the lock every :attr:`heartbeat_interval` seconds once ready: send
        a keepalive (collected with :meth:`take_output`) or check the peer's liveness.
        The node skips a beat while the connection is not read (paused) or while its
        send queue drains (the peer reads, and a keepalive would wait behind that data).

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


class Local(_Shortcuts, ABC):
    """One listener of a transport, created by :meth:`Adapter.listen`.

    **Required**: :meth:`fileno`, :meth:`accept`, :meth:`close`. **Optional**:
    :meth:`send_to` (packet transports; any thread; the default refuses).
    """

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

    def _datagram_source(self) -> DatagramSource | None:
        """Internal API, for the built-in packet transport: a compiled object whose
        ``read`` and ``send_to`` the node calls in place of :meth:`accept` and
        :meth:`send_to`. Asked once, when the listener is made. Default: None (the node
        calls the methods)."""
        return None

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

    **Required**: :meth:`connect` and :meth:`listen`. **Optional**: :meth:`lookup` and
    :meth:`connect_to` (host names resolved off the loop; both or neither).

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

    def lookup(self, addr: Any, config: Any) -> HostName | None:
        """The host name ``addr`` holds, if ``connect`` must resolve one first.

        Called by ``connect`` in the caller's thread: parse ``addr``, never resolve it
        (:func:`host_name` does this for ``"host:port"`` and ``(host, port)``). For a
        :class:`HostName`, the node resolves it on a resolver thread and calls
        :meth:`connect_to` on the loop thread with the addresses found, several at a
        time if they are slow to answer (Happy Eyeballs), keeping the first that
        connects; :meth:`connect` is then not called. Return None (the default) for an
        address that needs no name lookup (an IP address, a path): :meth:`connect` is
        called at once, in the caller's thread.

        Raises:
            AddressError: ``addr`` cannot be parsed.
        """
        return None

    def connect_to(
        self, addr: Any, config: Any, family: socket.AddressFamily, sockaddr: tuple[Any, ...]
    ) -> ConnectionInfo:
        """Start a non-blocking connection to ``addr`` at ``sockaddr``, one of the
        addresses its host name (from :meth:`lookup`) resolved to.

        Called on the loop thread, for each address the node tries. The node polls the
        new remote and calls :meth:`Remote.pending` when it is first ready: a
        ``DISCONNECTED`` there loses this address (the next one is tried), anything
        else wins the race (the other attempts are closed) and the connection goes on
        as one from :meth:`connect` would. So the remote's descriptor must not be ready
        before its connection is made or has failed (true of a non-blocking
        ``connect()``). Only needed by adapters that return a :class:`HostName`.

        Raises:
            OSError: the OS refused to start this attempt (the next address is tried).
        """
        raise NotImplementedError(f"{type(self).__name__} has no connect_to()")

    @abstractmethod
    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        """Bind and listen on ``addr``; return the listener and its real local address.

        Raises:
            AddressError: ``addr`` cannot be parsed or resolved.
            OSError: binding or listening failed.
        """
