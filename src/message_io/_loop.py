"""The event loop of a node: one poller, one thread at a time, every event.

Theory of operation
-------------------
A node owns one :class:`Loop`. Whoever *drives* it holds ``drive_lock``: the thread in
``for_each``, the background thread of ``for_each_async``, a ``receive`` call of the pull
API, or ``connect_sync`` resolving its own connection before any loop runs. Only the
driver polls, reads, accepts, fires timers and delivers events, so the user's callback
always runs on one thread, one event at a time.

One iteration:

1. compute the poll timeout: 0 if signals are ready, else the earliest of the next timer,
   the next internal deadline (connect timeouts, close lingers), or forever;
2. poll; for each ready fd call its handler (connection, listener, or the waker);
3. write out the connections that the callback sent to (*dirty* connections), so that all
   messages sent during one iteration leave in as few system calls as possible;
4. run due internal deadlines and deliver ready signals (a bounded number per
   iteration, so a signal storm cannot starve the network), then flush again.

Other threads never touch a socket's reading side and never close anything. They queue
outgoing bytes under the connection's lock, and either write them at once (the first
send of a connection in each loop iteration, for latency) or arm write interest so that
the loop writes them, coalesced, when the socket is writable. They ask the loop to close
resources through a queue and the waker.

The send queue of a connection is a deque of chunks; small messages are appended to an
open ``bytearray`` tail (one copy, then one ``send`` for thousands of messages), large
immutable payloads are queued by reference (no copy). It is bounded by
``send_buffer_limit``: past it ``send`` returns ``QUEUE_FULL`` and a ``Drained`` event
follows once the queue is empty.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import itertools
import logging
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ._throttle import LogThrottle
from .errors import FrameError, NodeStoppedError, connect_error
from .events import _EMPTY, EventSender
from .network._poll import HANGUP, READ, WRITE, Poller, Waker
from .network.adapter import (
    Buffer,
    ConnectConfig,
    ConnectionInfo,
    ListenConfig,
    Local,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
    SendStatus,
    format_address,
)
from .network.dial import Dial, pending_status
from .network.endpoint import Address, Endpoint, ResourceId, ResourceType
from .network.net_event import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Message,
    TextMessage,
)
from .network.resolver import Resolver

__all__ = ["Limits", "Loop", "Signal"]

log = logging.getLogger("message_io")

S = TypeVar("S")

_PENDING: Final = 0
_READY: Final = 1
_CLOSING: Final = 2  # removed by the user; writing out what was queued, then closed
_CLOSED: Final = 3

# Payloads below this size are copied into the open tail buffer (coalesced); larger
# immutable ones are queued by reference.
_COALESCE_MAX: Final = 16 * 1024
# Queued bytes at which a send writes at once instead of waiting for the iteration's end.
_FLUSH_NOW: Final = 256 * 1024
# Buffers per vectored write (Linux's IOV_MAX is 1024).
_IOV_MAX: Final = 64
# How long a removed connection may take to write what was queued before it is closed.
CLOSE_LINGER: Final = 5.0
DEFAULT_MAX_INCOMPLETE_BYTES: Final = 64 * 1024 * 1024
"""Default node-wide cap on the bytes held in unfinished incoming messages (64 MiB)."""
# Past the cap, a connection left holding more than this after a read is paused. A client
# of small whole messages holds less (a read ends at most inside one of its messages).
_PAUSE_FLOOR: Final = 16 * 1024
# Cancelled timers tolerated in the heap before it may be compacted.
_COMPACT_MIN: Final = 256
# Signals delivered per iteration before the network is polled again.
_SIGNALS_PER_ITERATION: Final = 1024
# The poll timeout while events wait for connect_sync() to return (see release_events).
_HOLD_POLL: Final = 0.001

_SENT: Final = SendStatus.SENT
_NOT_FOUND: Final = SendStatus.RESOURCE_NOT_FOUND
_NOT_AVAILABLE: Final = SendStatus.RESOURCE_NOT_AVAILABLE
_QUEUE_FULL: Final = SendStatus.QUEUE_FULL
_TOO_BIG: Final = SendStatus.MAX_PACKET_SIZE_EXCEEDED

# accept() errors that mean "the process is short of resources", not "this peer is bad".
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_PAUSE: Final = 0.1

_get_ident = threading.get_ident
_new = object.__new__
_set_endpoint = Message.__dict__["endpoint"].__set__
_set_data = Message.__dict__["data"].__set__


class Signal(Generic[S]):
    """A signal sent with ``handler.signals``, delivered to the callback.

    (Defined here; exported from :mod:`message_io` and :mod:`message_io.node`.)
    """

    __slots__ = ("value",)
    __match_args__ = ("value",)

    value: S

    def __init__(self, value: S) -> None:
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Signal is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signal):
            return NotImplemented
        return bool(self.value == other.value)

    def __hash__(self) -> int:
        return hash(("Signal", self.value))

    def __repr__(self) -> str:
        return f"Signal({self.value!r})"


class _Connection:
    """The node's side of one connection: state, lock and send queue around a Remote."""

    __slots__ = (
        "beat_timer",
        "chunks",
        "cond",
        "deadline_timer",
        "direct_iter",
        "dirty",
        "endpoint",
        "established",
        "fd",
        "frame",
        "full_duplex",
        "header",
        "held",
        "id",
        "idle_timeout",
        "incomplete",
        "last_read",
        "limit",
        "listener_id",
        "local_addr",
        "lock",
        "loop",
        "max_size",
        "message_timeout",
        "min_rate",
        "output",
        "parked",
        "partial_since",
        "paused",
        "progress_at",
        "published",
        "queued",
        "read_closed",
        "reading",
        "refused",
        "remote",
        "resolved",
        "state",
        "stream_header",
        "tail",
        "user_paused",
        "waiters",
        "want_drain",
        "warned",
        "watch_at",
        "watch_timer",
        "withheld",
        "write_armed",
    )

    def __init__(
        self,
        loop: Loop[Any],
        resource_id: ResourceId,
        endpoint: Endpoint,
        remote: Remote,
        *,
        limit: int,
        listener_id: ResourceId | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.loop = loop
        self.id = resource_id
        self.endpoint = endpoint
        self.listener_id = listener_id
        self.local_addr: Address | None = None  # known once a socket exists
        self.limit = limit
        limits = limits or _NO_LIMITS
        self.message_timeout = limits.message_timeout
        self.min_rate = limits.min_message_rate
        self.idle_timeout = limits.idle_timeout
        self.held = 0  # bytes of an unfinished incoming message, after the last read
        self.partial_since = 0.0  # when that message began (0: none)
        self.progress_at = 0.0  # when it last grew
        self.last_read = 0.0  # when bytes last arrived (kept only with idle_timeout)
        self.paused = False  # not read: the node's cap on incomplete messages is reached
        self.user_paused = False  # not read: pause_reading() (end-to-end flow control)
        self.published = True  # its creator holds its endpoint (see register_connection)
        # Events held back while connect_sync() has not returned (see Loop.release_events).
        self.parked: list[Any] | None = None
        self.withheld = False  # not read while its events are parked
        self.reading = True  # neither pause holds: the fd is polled for reading
        self.refused = 0  # sends refused with QUEUE_FULL (statistics)
        self.warned = False  # the QUEUE_FULL of this backpressure episode was logged
        self.deadline_timer: _Timer | None = None  # connect / handshake deadline
        self.beat_timer: _Timer | None = None  # the transport's heartbeat
        self.watch_timer: _Timer | None = None  # message_timeout / idle_timeout check
        self.watch_at = 0.0
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.state = _PENDING
        self.chunks: deque[Buffer] = deque()
        self.tail: bytearray | None = None
        self.queued = 0
        self.dirty = False
        self.read_closed = False  # the peer's EOF was seen while closing
        self.waiters = 0  # threads in wait_drained(); notify only if there are some
        self.write_armed = False
        self.want_drain = False
        self.direct_iter = -1
        self.resolved = threading.Event()
        self.established = False
        self.bind(remote)

    def bind(self, remote: Remote) -> None:
        """Take ``remote`` as this connection's transport: its descriptor and what the
        hot paths need of it. Called once by ``__init__``, and once more when a
        connection to a host name adopts the attempt that won (under the lock)."""
        self.remote = remote
        self.fd = remote.fileno()
        cls = type(remote)
        # Incomplete incoming messages (see Loop._account): only for transports that
        # have messages (Remote.incomplete overridden) and a limit in time.
        has_messages = cls.incomplete is not Remote.incomplete
        self.incomplete = remote.incomplete if has_messages else None
        self.max_size = remote.max_message_size
        # Output of the transport's own (pongs, close replies), if it ever has any.
        has_output = cls.take_output is not Remote.take_output
        self.output = remote.take_output if has_output else None
        self.full_duplex = cls.full_duplex
        # Framing: a header function (fast, no copy of big payloads) or a frame function.
        self.header: Callable[[int], bytes | None] | None = None
        self.frame: Callable[[Buffer], Buffer | tuple[bytes, Buffer]] | None = None
        if cls.header is not Remote.header:
            self.header = remote.header
        elif cls.frame is not Remote.frame:
            self.frame = remote.frame
        # Small messages can be appended to the tail buffer as header + payload.
        self.stream_header = self.frame is None

    # -- sending (any thread) --------------------------------------------------------

    def send(self, data: Buffer | str) -> SendStatus:
        if data.__class__ is not bytes and data.__class__ is not bytearray:
            if isinstance(data, str):
                return self._send_text(data)
            data = _as_bytes_view(data)
        size = len(data)
        with self.lock:
            state = self.state
            if state != _READY:
                return _NOT_AVAILABLE if state == _PENDING else _NOT_FOUND
            # Read under the lock: a connection to a host name gets its transport (and
            # its limit) when an attempt wins, before it is READY.
            max_size = self.max_size
            if max_size is not None and size > max_size:
                return _TOO_BIG
            if self.queued >= self.limit:
                return self._refuse()
            tail = self.tail
            if tail is not None and self.stream_header and size < _COALESCE_MAX:
                # Fast path of a burst: small messages appended to the open tail buffer,
                # which already waits to be written (so no direct write to consider).
                header = self.header
                if header is not None:
                    head = header(size)
                    if head is None:
                        return _NOT_AVAILABLE  # the transport refuses it (closing)
                    if head:
                        tail += head
                        self.queued += len(head)
                tail += data
                self.queued += size
                if self.write_armed or (self.dirty and self.queued < _FLUSH_NOW):
                    return _SENT  # already scheduled, and not enough to write at once
                return self._schedule()
            if not size and self.stream_header and self.header is None:
                return _SENT  # nothing to put on a raw stream
            header = self.header
            if header is not None:
                head = header(size)
                if head is None:
                    return _NOT_AVAILABLE  # the transport refuses it (closing)
            elif self.frame is not None:
                framed = self.frame(data)
                if isinstance(framed, tuple):  # (header, body): the body is not copied
                    head, data = framed
                    size = len(data)
                else:
                    data = framed
                    size = len(data)
                    if not size:
                        return _NOT_AVAILABLE  # the transport refuses it (closing)
                    head = None
            else:
                head = None
            iteration = self.loop.iteration
            if not self.chunks and self.direct_iter != iteration and size < _COALESCE_MAX:
                # Fast path, the common case of a connection that keeps up: the first
                # message of the iteration goes straight to the OS, nothing is queued.
                self.direct_iter = iteration
                wire = head + data if head else data
                try:
                    written = self.remote.write(wire)
                except Exception as exc:  # noqa: BLE001 - any write failure ends it
                    log.debug("write to %s failed: %r", self.endpoint, exc)
                    self.loop.request_check(self, broken=True)
                    return _SENT
                if written >= len(wire):
                    return _SENT
                with memoryview(wire) as view:
                    rest = self.tail = bytearray(view[written:])
                self.chunks.append(rest)
                self.queued = len(rest)
                self._arm_write()
                return _SENT
            if size < _COALESCE_MAX or (data.__class__ is not bytes and not _readonly(data)):
                tail = self.tail
                if tail is None:
                    tail = self.tail = bytearray()
                    self.chunks.append(tail)
                if head:
                    tail += head
                tail += data
            else:
                if head:
                    tail = self.tail
                    if tail is None:
                        self.chunks.append(head)
                    else:
                        tail += head
                self.chunks.append(data)
                self.tail = None
            self.queued += size + (len(head) if head else 0)
            if self.write_armed:
                return _SENT
            return self._schedule()

    def request_drained(self, _endpoint: Endpoint) -> bool:
        """If a send would be refused now (the queue is full), arrange a ``Drained``
        event for when it is empty and return True (any thread)."""
        if self.state == _READY and not self._full():
            return False  # room (a glance without the lock: send() decides for good)
        with self.lock:
            if self.state != _READY or not self._full():
                return False
            self.want_drain = True
            return True

    def _full(self) -> bool:
        return self.queued >= self.limit

    def _send_text(self, text: str) -> SendStatus:
        """Send a text message (transports with ``frame_text``, e.g. WebSocket)."""
        if self.state != _READY:  # its transport may not be known yet (a host name)
            return _NOT_AVAILABLE if self.state == _PENDING else _NOT_FOUND
        if type(self.remote).frame_text is Remote.frame_text:
            raise TypeError(f"{self.endpoint} takes bytes-like messages, not str")
        data = text.encode()
        if self.max_size is not None and len(data) > self.max_size:
            return _TOO_BIG
        with self.lock:
            if self.state != _READY:
                return _NOT_AVAILABLE if self.state == _PENDING else _NOT_FOUND
            if self.queued >= self.limit:
                return self._refuse()
            wire = self.remote.frame_text(data)
            if not wire:
                return _NOT_AVAILABLE  # the transport refuses it (closing)
            self.queue_wire(wire)
            if self.write_armed:
                return _SENT
            return self._schedule()

    def _refuse(self) -> SendStatus:
        """Backpressure: say QUEUE_FULL, count it, log it once per episode. Holds the lock."""
        self.want_drain = True
        self.refused += 1
        if not self.warned:
            self.warned = True
            log.warning(
                "send to %s refused: %d bytes wait for the peer (send_buffer_limit=%d); "
                "the message was not queued: send it again after Drained, or use "
                "send_wait() or pause_reading() (logged once until it drains)",
                self.endpoint,
                self.queued,
                self.limit,
            )
        return _QUEUE_FULL

    def queue_wire(self, wire: Buffer) -> None:
        """Queue bytes ready for the wire after everything queued. Holds the lock."""
        if wire:
            self.chunks.append(wire)
            self.tail = None
            self.queued += len(wire)

    def _schedule(self) -> SendStatus:
        """Decide when queued bytes are written. Holds the lock.

        The first send of a connection in each loop iteration is written at once
        (latency); the next ones are coalesced: written at the end of the iteration by
        the loop, or when the socket is writable if sent from another thread.
        """
        loop = self.loop
        iteration = loop.iteration
        if self.direct_iter != iteration or self.queued >= _FLUSH_NOW:
            self.direct_iter = iteration
            self._flush_or_arm()
        elif loop.driver == _get_ident():
            if not self.dirty:
                self.dirty = True
                loop.dirty.append(self)
        else:
            self._arm_write()
        return _SENT

    def _arm_write(self) -> None:
        """Ask the loop to write when the socket is writable. Holds the lock."""
        if not self.write_armed:
            self.write_armed = True
            try:
                self.loop.poller.modify(self.fd, _poll_interest(self))
            except OSError:
                if self.published:  # else its registration will poll it for writing
                    self.loop.request_check(self)

    def _flush_or_arm(self) -> None:
        """Write what the OS takes now; arm write interest for the rest. Holds the lock."""
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - any write failure ends this connection
            log.debug("write to %s failed: %r", self.endpoint, exc)
            self.loop.request_check(self, broken=True)
            return
        if self.chunks or self.want_drain:
            self._arm_write()

    def flush(self) -> None:
        """Write queued chunks until the queue is empty or the OS pushes back. Holds the lock.

        Several chunks go out in one vectored write (a frame header and its payload, or
        small messages and a large one), so no chunk is sent as a tiny packet of its own.

        Raises:
            OSError: the connection is broken.
        """
        chunks = self.chunks
        remote = self.remote
        while chunks:
            if len(chunks) > 1:
                buffers = list(itertools.islice(chunks, _IOV_MAX))
                offered = sum(map(len, buffers))
                written = remote.write_many(buffers)
                del buffers
            else:
                offered = len(chunks[0])
                written = remote.write(chunks[0])
            if written <= 0:
                break
            self.queued -= written
            short = written < offered  # the OS pushed back: try again when writable
            while written:
                head = chunks[0]
                size = len(head)
                if written >= size:
                    chunks.popleft()
                    if head is self.tail:
                        self.tail = None
                    written -= size
                else:
                    if isinstance(head, bytearray):
                        del head[:written]  # O(1) at the front of a bytearray
                    else:
                        chunks[0] = memoryview(head)[written:]
                    break
            if short:
                break
        if not chunks:
            self.queued = 0
            _notify(self)


class _DatagramConnection(_Connection):
    """A connection whose every write is one whole datagram (UDP).

    One made by ``connect`` is ready as soon as it exists (``send`` works at once;
    ``Connected`` is still emitted by the loop). A datagram goes straight to the OS
    unless earlier ones wait in the queue; the queue only fills when the OS pushes back
    (a full socket buffer). A datagram the OS refuses (network unreachable, too large
    for the path...) is dropped and logged: it never ends the connection.
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Accepted ones still go through pending(), and ones to a host name first dial.
        if self.listener_id is None and not isinstance(self.remote, Dial):
            self.state = _READY
            self.established = True
            self.resolved.set()

    def _full(self) -> bool:
        return self.queued + len(self.chunks) >= self.limit

    def _write_now(self, packet: Buffer) -> SendStatus | None:
        """Hand one datagram to the OS: its status, or None if the OS pushes back."""
        try:
            self.remote.write(packet)
            return _SENT
        except BlockingIOError:
            return None
        except OSError as exc:
            return _refused(self.endpoint, exc) if self.state == _READY else _NOT_FOUND

    def send(self, data: Buffer | str) -> SendStatus:
        if data.__class__ is not bytes and data.__class__ is not bytearray:
            if isinstance(data, str):
                return self._send_text(data)
            data = _as_bytes_view(data)
        max_size = self.max_size
        if max_size is not None and len(data) > max_size:
            return _TOO_BIG
        frame = self.frame
        if frame is None and not self.chunks and self.state == _READY:
            # Nothing waits: no order to keep and no lock to take (each datagram is
            # atomic; two threads' datagrams have no order between them anyway).
            status = self._write_now(data)
            if status is not None:
                return status
        with self.lock:
            if self.state != _READY:
                return _NOT_AVAILABLE if self.state == _PENDING else _NOT_FOUND
            packet: Buffer = data
            if frame is not None:  # frame() runs under the lock, in send order
                framed = frame(data)
                packet = b"".join(framed) if isinstance(framed, tuple) else framed
                if not self.chunks:
                    status = self._write_now(packet)
                    if status is not None:
                        return status
            if self._full():
                self.want_drain = True
                return _QUEUE_FULL
            packet = bytes(packet)  # the caller may reuse its buffer once send returns
            self.chunks.append(packet)
            self.queued += len(packet)
            self._arm_write()
            return _SENT

    def flush(self) -> None:
        """Write queued datagrams until the queue is empty or the OS pushes back."""
        chunks = self.chunks
        write = self.remote.write
        while chunks:
            packet = chunks[0]
            try:
                write(packet)
            except BlockingIOError:
                return
            except OSError as exc:
                _refused(self.endpoint, exc)
            chunks.popleft()
            self.queued -= len(packet)
        self.queued = 0
        _notify(self)


@dataclass(frozen=True)
class Limits:
    """The time limits on one connection's input (from its connect or listen config)."""

    message_timeout: float | None = None
    min_message_rate: float | None = None
    idle_timeout: float | None = None

    @classmethod
    def of(cls, config: ConnectConfig | ListenConfig) -> Limits:
        """The limits a connect or listen config sets."""
        return cls(config.message_timeout, config.min_message_rate, config.idle_timeout)


_NO_LIMITS: Final = Limits()


def connection_class(remote: Remote) -> type[_Connection]:
    """The node's connection class for ``remote``: datagram transports have their own."""
    return _DatagramConnection if type(remote).datagrams else _Connection


def _refused(endpoint: Endpoint, exc: OSError) -> SendStatus:
    """The OS refused one datagram: log it, drop it, and say why in a status."""
    if exc.errno == errno.EMSGSIZE:
        log.debug("datagram to %s dropped: too large for the path (%s)", endpoint, exc)
        return _TOO_BIG
    log.debug("datagram to %s dropped: %s", endpoint, _describe(exc))
    return _NOT_AVAILABLE


def _readiness(mask: int) -> Readiness:
    return Readiness((1 if mask & READ else 0) | (2 if mask & WRITE else 0))


def _interest(readiness: Readiness) -> int:
    return (READ if readiness & Readiness.READ else 0) | (
        WRITE if readiness & Readiness.WRITE else 0
    )


def _notify(resource: _Connection | _Listener) -> None:
    """Wake threads in wait_drained(), if any (holds the lock)."""
    if resource.waiters:
        resource.cond.notify_all()


def _poll_interest(conn: _Connection) -> int:
    """What to poll ``conn`` for: reading unless paused, writing while armed."""
    return (READ if conn.reading else 0) | (WRITE if conn.write_armed else 0)


def _update_reading(conn: _Connection) -> None:
    """Poll ``conn`` for reading unless a pause holds it. Holds the lock.

    Before it is ready the poller waits for its handshake instead: the pauses take
    effect when it becomes ready (``Loop._after_pending``).
    """
    reading = _reading_wanted(conn)
    if reading is not conn.reading:
        conn.reading = reading
        if conn.fd >= 0 and conn.state == _READY:
            with contextlib.suppress(OSError):  # not registered yet: registration applies it
                conn.loop.poller.modify(conn.fd, _poll_interest(conn))


def _reading_wanted(conn: _Connection) -> bool:
    """Whether ``conn`` is to be read: no pause holds it (the node's cap on unfinished
    messages, pause_reading, connect_sync's hold, the node's input)."""
    return not (conn.paused or conn.user_paused or conn.withheld or conn.loop.input_paused)


def _listener_interest(listener: _Listener) -> int:
    """What to poll ``listener`` for: accepting (or receiving) unless the node's input is
    paused, writing while datagrams wait."""
    return (0 if listener.loop.input_paused else READ) | (WRITE if listener.write_armed else 0)


def _discard(_data: bytes | str) -> None:
    pass


def _readonly(data: Buffer) -> bool:
    """True if ``data`` can never change: safe to queue by reference, without a copy."""
    return isinstance(data, memoryview) and data.readonly and type(data.obj) is bytes


def _as_bytes_view(data: Buffer) -> Buffer:
    """A flat view of ``data`` whose ``len()`` counts bytes (or a copy, if not contiguous).

    ``array('i')`` or a 2-D memoryview would otherwise announce their item count as the
    message size and desynchronise the peer.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.c_contiguous:
        return view.cast("B") if view.format != "B" or view.ndim != 1 else view
    return view.tobytes()


class _Listener:
    """The node's side of one listener. Packet listeners (UDP) also send: datagrams go
    straight to the OS, and wait in a bounded queue only when the OS pushes back."""

    __slots__ = (
        "accepted",
        "chunks",
        "cond",
        "datagrams",
        "endpoint_cache",
        "exhausted_since",
        "failures",
        "fd",
        "handshake_timeout",
        "id",
        "limit",
        "limits",
        "local",
        "lock",
        "loop",
        "on_datagram",
        "on_remote",
        "published",
        "queued",
        "state",
        "waiters",
        "want_drain",
        "write_armed",
    )

    def __init__(
        self,
        loop: Loop[Any],
        resource_id: ResourceId,
        local: Local,
        limit: int,
        *,
        handshake_timeout: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.limits = limits or _NO_LIMITS
        self.exhausted_since = 0.0  # accept() short of fds/memory since then (0: not)
        self.failures = 0  # accept() failures in this episode
        self.id = resource_id
        self.local = local
        self.limit = limit
        self.fd = local.fileno()
        self.published = True  # its creator holds its id (see Loop.register_listener)
        self.state = _READY
        self.endpoint_cache: dict[Address, Endpoint] = {}
        # What one accept() call found, through callbacks made once, not per event.
        self.accepted: list[tuple[Remote, Address]] = []
        self.datagrams: list[tuple[Address, bytes]] = []
        self.on_remote = lambda remote, addr: self.accepted.append((remote, addr))
        self.on_datagram = lambda addr, data: self.datagrams.append((addr, data))
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.waiters = 0  # threads in wait_drained()
        self.chunks: deque[tuple[Endpoint, bytes]] = deque()
        self.queued = 0
        self.want_drain: set[Endpoint] = set()
        self.write_armed = False

    def send_to(self, endpoint: Endpoint, data: Buffer) -> SendStatus:
        """Send one datagram from this listener to ``endpoint.addr`` (any thread)."""
        if not self.chunks:  # nothing waits: no order to keep, no lock to take
            try:
                return self.local.send_to(endpoint.addr, data)
            except BlockingIOError:
                pass
            except OSError as exc:
                return _refused(endpoint, exc) if self.state == _READY else _NOT_FOUND
        with self.lock:
            if self.state != _READY:
                return _NOT_FOUND
            if self._full():
                self.want_drain.add(endpoint)
                return _QUEUE_FULL
            packet = bytes(data)
            self.chunks.append((endpoint, packet))
            self.queued += len(packet)
            if not self.write_armed:
                self.write_armed = True
                try:
                    self.loop.poller.modify(self.fd, _listener_interest(self))
                except OSError:  # closed meanwhile
                    pass
            return _SENT

    def request_drained(self, endpoint: Endpoint) -> bool:
        """As :meth:`_Connection.request_drained`, for a send to ``endpoint``."""
        with self.lock:
            if self.state != _READY or not self._full():
                return False
            self.want_drain.add(endpoint)
            return True

    def _full(self) -> bool:
        """A send would be refused (datagrams count as bytes and one each). Holds the
        lock."""
        return self.queued + len(self.chunks) >= self.limit

    def forget(self, addr: Address) -> int:
        """Drop the datagrams queued to ``addr`` (any thread); return how many."""
        with self.lock:
            kept: deque[tuple[Endpoint, bytes]] = deque()
            dropped = 0
            for endpoint, packet in self.chunks:
                if endpoint.addr == addr:
                    dropped += 1
                    self.queued -= len(packet)
                else:
                    kept.append((endpoint, packet))
            self.chunks = kept
            self.want_drain = {ep for ep in self.want_drain if ep.addr != addr}
            if not kept:
                _notify(self)
            return dropped

    def flush(self) -> list[Endpoint]:
        """Write queued datagrams until done or the OS pushes back (loop thread).

        Returns the endpoints to tell ``Drained`` once the queue is empty.
        """
        with self.lock:
            chunks = self.chunks
            send_to = self.local.send_to
            while chunks:
                endpoint, packet = chunks[0]
                try:
                    status = send_to(endpoint.addr, packet)
                except BlockingIOError:
                    return []
                except OSError as exc:
                    status = _refused(endpoint, exc)
                except (ValueError, TypeError) as exc:  # an address the transport refuses
                    log.warning("queued datagram to %s dropped: %s", endpoint, exc)
                    status = _NOT_AVAILABLE
                if status is not _SENT:
                    log.debug("queued datagram to %s dropped: %s", endpoint, status.name)
                chunks.popleft()
                self.queued -= len(packet)
            self.queued = 0
            self.write_armed = False
            _notify(self)
            if self.state == _READY:
                self.loop.poller.modify(self.fd, _listener_interest(self))
            drained = list(self.want_drain)
            self.want_drain.clear()
            return drained


class _Timer:
    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False


class Loop(Generic[S]):
    """The engine behind NodeHandler, NetworkController and NodeListener."""

    # Slots: the hot paths read these attributes on every event, and CPython 3.11 keeps
    # a plain instance's attributes inline (fast) only up to 30 of them.
    __slots__ = (
        "_cancelled",
        "_counters",
        "_poll",
        "_registrations",
        "_releases",
        "_requests",
        "_timer_lock",
        "_timer_seq",
        "_timers",
        "backlog",
        "connections",
        "dirty",
        "drive_lock",
        "driver",
        "emit",
        "handlers",
        "holding",
        "incomplete_bytes",
        "input_paused",
        "iteration",
        "listeners",
        "max_incomplete_bytes",
        "owner",
        "paused",
        "peer_log",
        "poller",
        "registry_lock",
        "resolver",
        "resources",
        "running",
        "shut",
        "signals",
        "waker",
    )

    def __init__(
        self,
        *,
        max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.max_incomplete_bytes = max_incomplete_bytes
        self.resolver = resolver  # host names of connect(), on a resolver thread
        self.incomplete_bytes = 0  # held in unfinished incoming messages, all connections
        self.paused: list[_Connection] = []  # not read until incomplete_bytes falls
        # Lines a peer can cause, one budget for all: disconnections with their reason,
        # peers dropped during their handshake, accept errors, callback exceptions.
        self.peer_log = LogThrottle(log, "per-peer lines", schedule=self.add_timer)
        self.poller = Poller()
        self.waker = Waker()
        self.signals: EventSender[S] = EventSender(self.wake)
        self.poller.register(self.waker.fileno(), READ)
        self._poll = self.poller.fast_poll
        self.handlers: dict[int, Callable[[int], None]] = {self.waker.fileno(): self._on_wake}
        self.resources: dict[int, _Connection | _Listener] = {}  # by fd, until closed
        self.connections: dict[int, _Connection] = {}
        self.listeners: dict[int, _Listener] = {}
        self.registry_lock = threading.RLock()
        self.drive_lock = threading.Lock()
        self.driver: int | None = None  # thread ident of whoever drives the loop now
        # The thread an outer event loop drives the node from, turn by turn (asyncio):
        # blocking calls refuse to run there even between turns.
        self.owner: int | None = None
        self.running = True
        self.shut = False
        self.iteration = 0
        self.dirty: list[_Connection] = []
        self.backlog: deque[Any] = deque()
        self.emit: Callable[[Any], object] = self.backlog.append
        self._requests: deque[tuple[_Connection | _Listener, bool]] = deque()
        self._releases: deque[_Connection] = deque()  # see release_events
        self.holding = 0  # connections whose events wait for connect_sync() to return
        self.input_paused = False  # see pause_input
        # Resources the driver is to poll once their creators hold their ids.
        self._registrations: deque[_Connection | _Listener] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_seq = itertools.count()
        self._timer_lock = threading.Lock()
        self._cancelled = 0  # cancelled timers still in the heap
        self._counters: dict[tuple[int, ResourceType], itertools.count[int]] = {}

    # -- any thread --------------------------------------------------------------------

    def wake(self) -> None:
        """Interrupt the poll, unless called by the driver itself (it will look anyway)."""
        if self.driver != _get_ident():
            self.waker.wake()

    def on_loop_thread(self) -> bool:
        """True on the thread that runs the loop (where waiting for it would deadlock)."""
        ident = _get_ident()
        return ident in (self.driver, self.owner)

    def new_id(self, adapter_id: int, resource_type: ResourceType) -> ResourceId:
        key = (adapter_id, resource_type)
        with self.registry_lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = itertools.count()
            return ResourceId._make(adapter_id, resource_type, next(counter))

    def add_timer(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Run ``callback`` on the loop thread after ``delay`` seconds (internal use)."""
        return self.add_timer_at(time.monotonic() + delay, callback)

    def add_timer_at(self, deadline: float, callback: Callable[[], None]) -> _Timer:
        """Run ``callback`` on the loop thread at ``deadline`` (``time.monotonic()``)."""
        timer = _Timer(deadline, callback)
        with self._timer_lock:
            earliest = not self._timers or timer.deadline < self._timers[0][0]
            heapq.heappush(self._timers, (timer.deadline, next(self._timer_seq), timer))
        if earliest:
            self.wake()
        return timer

    def cancel_timer(self, timer: _Timer | None) -> None:
        """Cancel ``timer`` and release its callback (and all it refers to) at once.

        The heap entry stays until its deadline, or until cancelled entries make up half
        of the heap: then the heap is rebuilt without them, so a churn of connections
        (each with its heartbeat and deadlines) never leaves memory behind.
        """
        if timer is None or timer.cancelled:
            return
        timer.cancelled = True
        timer.callback = None
        with self._timer_lock:
            self._cancelled += 1
            if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(self._timers):
                self._timers = [entry for entry in self._timers if not entry[2].cancelled]
                heapq.heapify(self._timers)
                self._cancelled = 0

    def register_connection(self, conn: _Connection, *, publish_later: bool = False) -> None:
        """Add ``conn`` to the node and poll it.

        With ``publish_later`` (``connect()`` from a thread other than the loop's), the
        driver polls it only once ``conn.published`` is set, which ``connect()`` does as
        the last thing before it returns: no event about the endpoint can reach the
        callback before its creator holds it.
        """
        with self.registry_lock:
            if not self.running:
                raise NodeStoppedError("the node is stopped")
            self.connections[conn.id] = conn
            self.resources[conn.fd] = conn
            if conn.state == _READY:
                # Ready already (UDP); the first poll (the socket is writable) says Connected.
                self.handlers[conn.fd] = functools.partial(self._on_datagram_start, conn)
            else:
                self.handlers[conn.fd] = functools.partial(self._on_connection, conn)
            driver = self.driver
            if not publish_later or driver is None or driver == _get_ident():
                self.poller.register(conn.fd, READ | WRITE)
                return
            conn.published = False
            self._registrations.append(conn)
        self.waker.wake()

    def register_dial(self, conn: _Connection) -> None:
        """Add ``conn``, a connection to a host name (its remote a :class:`Dial`), to
        the node. Nothing is polled yet: its creator calls ``dial.start()`` once it
        holds the endpoint, and the attempts are polled through :meth:`watch`."""
        with self.registry_lock:
            if not self.running:
                raise NodeStoppedError("the node is stopped")
            self.connections[conn.id] = conn

    def watch(self, fd: int, interest: Readiness, handler: Callable[[Readiness], None]) -> None:
        """Poll ``fd`` (one attempt of a dial) and call ``handler`` when it is ready."""
        self.handlers[fd] = lambda flags: handler(_readiness(flags))
        self.poller.register(fd, _interest(interest))

    def unwatch(self, fd: int) -> None:
        """Stop polling ``fd`` (an attempt that lost, or failed)."""
        if self.handlers.pop(fd, None) is not None and not self.shut:
            with contextlib.suppress(OSError, ValueError):
                self.poller.unregister(fd)

    def dial_won(self, conn: _Connection, info: ConnectionInfo, status: PendingStatus) -> None:
        """A dial's attempt connected: it becomes ``conn``'s remote (loop thread).

        Its descriptor is already polled (:meth:`watch`); it gets the connection's
        handler, and the connection goes on from where the attempt's ``pending`` left
        it: ready (``Connected``) or in its handshake.
        """
        remote = info.remote
        if connection_class(remote) is not type(conn):
            self.unwatch(remote.fileno())
            remote.close()
            kind = "a datagram" if type(remote).datagrams else "a stream"
            self.fail_pending(
                conn, TypeError(f"the transport gave {kind} remote for {conn.endpoint}")
            )
            return
        with conn.lock:
            if conn.state != _PENDING:  # cannot happen: closing the dial closes attempts
                self.unwatch(remote.fileno())
                remote.close()
                return
            conn.bind(remote)
            conn.local_addr = info.local_addr
            with self.registry_lock:
                self.resources[conn.fd] = conn
                self.handlers[conn.fd] = functools.partial(self._on_connection, conn)
        self._after_pending(conn, status)

    def register_listener(self, listener: _Listener, *, publish_later: bool = False) -> None:
        """Add ``listener`` to the node and poll it; with ``publish_later``, only once
        ``listener.published`` is set (as :meth:`register_connection`), so that no
        ``Accepted`` or ``Message`` names its id before ``listen()`` has returned it."""
        with self.registry_lock:
            if not self.running:
                raise NodeStoppedError("the node is stopped")
            self.listeners[listener.id] = listener
            self.resources[listener.fd] = listener
            self.handlers[listener.fd] = functools.partial(self._on_listener, listener)
            driver = self.driver
            if not publish_later or driver is None or driver == _get_ident():
                self.poller.register(listener.fd, _listener_interest(listener))
                return
            listener.published = False
            self._registrations.append(listener)
        self.waker.wake()

    def remove(self, resource_id: ResourceId) -> bool:
        """Take a resource out of the node; the loop closes it. False if unknown."""
        with self.registry_lock:
            conn = self.connections.pop(resource_id, None)
            listener = self.listeners.pop(resource_id, None) if conn is None else None
        if conn is not None:
            with conn.lock:
                was_ready = conn.state == _READY
                conn.state = _CLOSING if was_ready else _CLOSED
                if was_ready:
                    try:
                        farewell = conn.remote.farewell(False)
                    except Exception:
                        log.exception("farewell() of %s failed", conn.endpoint)
                        farewell = None
                    if farewell:
                        conn.queue_wire(farewell)
                _notify(conn)
            if isinstance(conn.remote, Dial):
                conn.remote.cancel()  # its resolver job, if not yet run, is skipped
            log.debug("removing %s (%d bytes still queued)", conn.endpoint, conn.queued)
            conn.resolved.set()
            self._request(conn, False)
            return True
        if listener is not None:
            log.debug("removing listener %r", resource_id)
            listener.state = _CLOSED
            self._request(listener, False)
            return True
        return False

    def pause_input(self, paused: bool) -> None:
        """Stop (or resume) reading and accepting on every connection and listener of
        the node, while writes, timers and signals go on: for a consumer of events that
        fell behind (the asyncio listener's bounded queue). Loop thread."""
        if paused is self.input_paused:
            return
        self.input_paused = paused
        for conn in list(self.connections.values()):
            with conn.lock:
                _update_reading(conn)
        for listener in list(self.listeners.values()):
            with listener.lock:
                if listener.fd >= 0 and listener.state == _READY:
                    with contextlib.suppress(OSError):  # not registered yet
                        self.poller.modify(listener.fd, _listener_interest(listener))

    def forget_peer(self, listener_id: ResourceId, addr: Address) -> bool:
        """Forget one peer of a packet listener: drop the datagrams queued to it.

        False if there is no such listener. The listener stays open.
        """
        listener = self.listeners.get(listener_id)
        if listener is None:
            return False
        dropped = listener.forget(addr)
        log.debug(
            "forgetting peer %s of listener %r (%d queued datagrams dropped)",
            format_address(addr),
            listener_id,
            dropped,
        )
        return True

    def pause_reading(self, resource_id: ResourceId, paused: bool) -> bool:
        """Stop (or resume) reading a connection; False if there is no such connection."""
        conn = self.connections.get(resource_id)
        if conn is None:
            return False
        with conn.lock:
            if conn.state not in (_READY, _PENDING):
                return False
            conn.user_paused = paused
            _update_reading(conn)
            if not paused:
                # Its message and idle clocks restart: it was not read meanwhile.
                conn.progress_at = conn.last_read = time.monotonic()
        return True

    def request_check(self, conn: _Connection, broken: bool = False) -> None:
        """Ask the loop to look at ``conn`` (its write side failed).

        Called with the connection's lock held, so it never handles the request inline:
        the next loop iteration does (a pending request makes the poll return at once).
        """
        self._requests.append((conn, broken))
        self.waker.wake()

    def _request(self, resource: _Connection | _Listener, broken: bool) -> None:
        if self.driver == _get_ident():
            self._handle_request(resource, broken)
            return
        if self.shut:
            return
        self._requests.append((resource, broken))
        if self.drive_lock.acquire(blocking=False):
            # Nobody drives the loop: handle it here, nothing can race with us.
            try:
                self._handle_requests()
            finally:
                self.release_drive()
        else:
            self.waker.wake()

    def stop(self) -> None:
        """Make the driver return and close everything; terminal."""
        if self.running:
            log.debug("stopping the node")
        self.running = False
        self.signals.close()
        if self.driver == _get_ident():
            return
        if self.drive_lock.acquire(blocking=False):
            try:
                self.shutdown()
            finally:
                self.drive_lock.release()
        else:
            # A loop is running (it sees the flag once woken), or a short-lived holder
            # (connect_sync, a pull) is about to release_drive(), which shuts down.
            self.waker.wake()

    def release_drive(self) -> None:
        """Release ``drive_lock``; if the node was stopped meanwhile, shut it down.

        ``stop()`` cannot shut down while someone holds the lock; checking again after
        releasing closes the gap: either we see the stop, or its own acquire succeeds.
        """
        self.drive_lock.release()
        if not self.running and not self.shut and self.drive_lock.acquire(blocking=False):
            try:
                self.shutdown()
            finally:
                self.drive_lock.release()

    # -- driving (the thread holding drive_lock) --------------------------------------

    @contextlib.contextmanager
    def _signal_wakeup(self) -> Iterator[None]:
        """On the main thread, make a signal (Ctrl+C) interrupt the poll.

        Python runs signal handlers between bytecodes; a signal that lands just before the
        poll starts would otherwise wait for the next event. ``signal.set_wakeup_fd``
        makes the C-level handler write to a socket that the poller watches.
        """
        if self.shut or threading.current_thread() is not threading.main_thread():
            yield
            return
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter
            rsock.close()
            wsock.close()
            yield
            return
        fd = rsock.fileno()

        def drain(_flags: int) -> None:
            try:
                rsock.recv(4096)
            except OSError:
                pass

        self.handlers[fd] = drain
        self.poller.register(fd, READ)
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous)
            self.handlers.pop(fd, None)
            if not self.shut:
                self.poller.unregister(fd)
            rsock.close()
            wsock.close()

    def run(self, emit: Callable[[Any], object]) -> None:
        """Deliver every event to ``emit`` until stopped. Holds ``drive_lock``."""
        with self._signal_wakeup():
            self._run(emit)

    def _run(self, emit: Callable[[Any], object]) -> None:
        self.driver = _get_ident()
        self.emit = emit
        try:
            backlog = self.backlog
            while backlog and self.running:
                emit(backlog.popleft())
            while self.running:
                self.iterate(None)
        except BaseException:
            self.running = False
            raise
        finally:
            self.driver = None
            self.emit = self.backlog.append
            self.shutdown()

    def run_until_event(self, timeout: float | None) -> Any:
        """One pull: the next event, or ``_EMPTY`` after ``timeout``/stop. Holds ``drive_lock``."""
        backlog = self.backlog
        if backlog and self.running:
            return backlog.popleft()
        if timeout is not None and timeout <= 0:
            return self._pull(0.0)
        with self._signal_wakeup():  # only a call that may wait needs Ctrl+C to wake it
            return self._pull(timeout)

    def _pull(self, timeout: float | None) -> Any:
        backlog = self.backlog
        self.driver = _get_ident()
        self.emit = backlog.append
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self.running and not backlog:
                remaining = None
                if deadline is not None:
                    remaining = max(0.0, deadline - time.monotonic())
                self.iterate(remaining)  # at least once, so receive(0) sees what is ready
                if remaining is not None and remaining <= 0:
                    break
        except BaseException:
            self.running = False
            raise
        finally:
            self.driver = None
            if not self.running:
                self.shutdown()
        return backlog.popleft() if backlog and self.running else _EMPTY

    def iterate(self, max_timeout: float | None) -> None:
        """One turn of the loop (see the theory of operation)."""
        if self._registrations:
            self._register_published()
        if self._releases:
            self._release_held()
            if not self.running:
                return
        timeout = self._poll_timeout(max_timeout)
        ready = self._poll(timeout)
        self.iteration += 1
        handlers = self.handlers
        for fd, flags in ready:
            handler = handlers.get(fd)
            if handler is not None:
                handler(flags)
                if not self.running:
                    return
        if self.dirty:
            self._flush_dirty()
            if not self.running:
                return
        if self._timers:
            self._run_timers()
            if not self.running:
                return
        signals = self.signals
        if signals._priority or signals._normal or signals._timers:
            self._deliver_signals()
            if self.dirty and self.running:
                self._flush_dirty()

    def next_timeout(self) -> float | None:
        """Seconds until the loop has work that no descriptor will announce (a timer, a
        signal, a pending write or request): 0 for at once, None for none. For an outer
        event loop that drives the node turn by turn with ``iterate(0)``."""
        return self._poll_timeout(None)

    def _poll_timeout(self, max_timeout: float | None) -> float | None:
        if self._requests or self.dirty or self._registrations:
            # Sends made by callbacks late in the last iteration (after its final flush,
            # e.g. on Drained) are written in the next one, which must not sleep.
            return 0.0
        signals = self.signals
        if signals._priority or signals._normal:
            return 0.0
        if self.holding:  # connect_sync() is about to release events: look soon
            max_timeout = _HOLD_POLL if max_timeout is None else min(max_timeout, _HOLD_POLL)
        if not (self._timers or signals._timers):
            return max_timeout
        deadline = signals._next_deadline() if signals._timers else None
        if self._timers:
            first = self._timers[0][0]
            if deadline is None or first < deadline:
                deadline = first
        if deadline is None:
            return max_timeout
        timeout = max(0.0, deadline - time.monotonic())
        return timeout if max_timeout is None else min(timeout, max_timeout)

    def _run_timers(self) -> None:
        now = time.monotonic()
        if self._timers[0][0] > now:  # the common case, without the lock: none is due
            return
        while True:
            with self._timer_lock:
                if not self._timers or self._timers[0][0] > now:
                    return
                _deadline, _seq, timer = heapq.heappop(self._timers)
                if timer.cancelled:
                    self._cancelled -= 1
                    continue
            callback = timer.callback
            timer.cancelled = True  # done: a late cancel_timer() is a no-op
            timer.callback = None
            if callback is not None:
                callback()
                if not self.running:
                    return

    def _deliver_signals(self) -> None:
        pop = self.signals._pop
        emit = self.emit
        now = time.monotonic()
        for _ in range(_SIGNALS_PER_ITERATION):
            if not self.running:
                return
            value = pop(now)
            if value is _EMPTY:
                return
            emit(Signal(value))

    def _flush_dirty(self) -> None:
        dirty = self.dirty
        self.dirty = []
        for conn in dirty:
            with conn.lock:
                conn.dirty = False
                if conn.state != _READY or conn.write_armed or not conn.chunks:
                    continue
                broken = False
                try:
                    conn.flush()
                except Exception as exc:  # noqa: BLE001
                    log.debug("write to %s failed: %r", conn.endpoint, exc)
                    broken = True
                if not broken and conn.chunks:
                    conn._arm_write()
                drained = not broken and not conn.chunks and conn.want_drain
                if drained:
                    conn.want_drain = False
                    conn.warned = False
            if not self.running:
                return
            if broken:
                self._lost(conn)
            elif drained:
                self.emit(Drained(conn.endpoint))

    def _on_wake(self, _flags: int) -> None:
        self.waker.drain()
        self._handle_requests()

    def _register_published(self) -> None:
        """Poll the connections whose creators now hold their endpoints (see
        ``register_connection``); the others wait (the poll does not sleep meanwhile:
        their creators are about to return)."""
        waiting: deque[_Connection | _Listener] = deque()
        registrations = self._registrations
        while registrations:
            resource = registrations.popleft()
            if not resource.published:
                waiting.append(resource)
                continue
            with resource.lock:
                if resource.fd < 0:  # closed meanwhile
                    continue
                if isinstance(resource, _Listener):
                    self.poller.register(resource.fd, _listener_interest(resource))
                else:
                    self.poller.register(resource.fd, READ | WRITE if resource.reading else WRITE)
        registrations.extend(waiting)

    def _release_held(self) -> None:
        releases = self._releases
        while releases:
            self._release(releases.popleft())

    def _handle_requests(self) -> None:
        self._release_held()
        requests = self._requests
        # Those queued now: one that queues another (a failed re-arm) waits its turn.
        for _ in range(len(requests)):
            resource, broken = requests.popleft()
            self._handle_request(resource, broken)

    def _handle_request(self, resource: _Connection | _Listener, broken: bool) -> None:
        if isinstance(resource, _Listener):
            self._close_listener(resource)
        elif resource.state == _CLOSING:
            self._linger(resource)
        elif resource.state == _CLOSED:
            self._close_connection(resource)
        elif broken:
            self._lost(resource)
        else:
            with resource.lock:
                if resource.state == _READY and (resource.chunks or resource.want_drain):
                    resource.write_armed = False
                    resource._arm_write()

    # -- connections ---------------------------------------------------------------------

    def _on_connection(self, conn: _Connection, flags: int) -> None:
        state = conn.state
        if state == _READY:
            if flags & HANGUP and not conn.reading and not conn.remote.datagrams:
                # Reset while not read (paused): epoll reports it whatever the interest,
                # and nothing would read the error away: the loop would spin on it.
                self._lost(conn)
                return
            if flags & WRITE:
                self._on_writable(conn)
            if flags & READ and conn.state == _READY:
                self._on_readable(conn)
        elif state == _PENDING:
            self._on_pending(conn, flags)
        elif state == _CLOSING:
            self._on_closing(conn, flags)

    def _on_datagram_start(self, conn: _Connection, flags: int) -> None:
        """First poll of a datagram connection: announce it, then handle it as usual."""
        with conn.lock:
            if conn.state == _READY and conn.fd >= 0:
                self.handlers[conn.fd] = functools.partial(self._on_ready_connection, conn)
                announce = True
                if not conn.write_armed:
                    self.poller.modify(conn.fd, READ)
                    flags &= ~WRITE
            else:
                announce = False
        if announce:
            if self._announce(conn, Connected(conn.endpoint, True)):
                return  # read once connect_sync() has returned
            if conn.state != _READY or not self.running:
                return
        self._on_connection(conn, flags)

    def _on_ready_connection(self, conn: _Connection, flags: int) -> None:
        """The handler once a connection is ready: straight to reading, the hot case."""
        if flags & WRITE or conn.state != _READY:
            self._on_connection(conn, flags)
        else:
            self._on_readable(conn)

    def _on_readable(self, conn: _Connection) -> None:
        if not conn.reading:  # paused earlier in this iteration, after the poll said readable
            return
        batch: list[bytes | str] = []  # str: a text message
        remote = conn.remote
        try:
            if conn.full_duplex:
                status = remote.receive(batch.append)
                if conn.output is not None:
                    with conn.lock:
                        self._take_output(conn)
            else:
                with conn.lock:
                    status = remote.receive(batch.append)
                    if conn.output is not None:
                        self._take_output(conn)
        except (OSError, FrameError) as exc:
            self.peer_log.log(logging.INFO, "disconnecting %s: %s", conn.endpoint, _describe(exc))
            status = ReadStatus.DISCONNECTED
        except Exception:
            log.exception("receive() of %s failed; disconnecting it", conn.endpoint)
            status = ReadStatus.DISCONNECTED
        if conn.idle_timeout is not None:
            conn.last_read = time.monotonic()
        incomplete = conn.incomplete
        if incomplete is not None and status is ReadStatus.OK:
            # Once per read, not per message: what is left of an unfinished message.
            held = incomplete()
            if held or conn.held:
                self._account(conn, held, bool(batch))
        if batch:
            emit = self.emit
            endpoint = conn.endpoint
            for data in batch:
                # A text message (WebSocket text frame). A class test, not isinstance():
                # a third of the cost, on the path of every binary message.
                if data.__class__ is str:
                    emit(TextMessage(endpoint, data.encode(), data))
                else:
                    # Message(endpoint, data), without the frozen dataclass's __init__:
                    # half the cost, and this runs once per message received.
                    message = _new(Message)
                    _set_endpoint(message, endpoint)
                    _set_data(message, data)
                    emit(message)
                if conn.state != _READY or not self.running:
                    return
        if status is ReadStatus.DISCONNECTED:
            self._lost(conn)

    def _take_output(self, conn: _Connection) -> None:
        """Queue what the transport wants to send by itself. Holds the lock."""
        assert conn.output is not None
        wire = conn.output()
        if wire and conn.state == _READY:
            conn.queue_wire(wire)
            if not conn.write_armed:
                conn._schedule()
        elif wire and conn.state == _CLOSING:
            conn.queue_wire(wire)

    def _heartbeat(self, conn: _Connection, interval: float) -> None:
        """Call the transport's heartbeat every ``interval`` seconds while ready.

        The timer is the connection's ``beat_timer``: cancelled when it closes, so a
        closed connection is freed at once, not when its next beat would have come.
        (A partial, not a closure that re-arms itself: that would be a reference cycle
        holding the connection until the garbage collector runs.)
        """
        conn.beat_timer = self.add_timer(interval, functools.partial(self._beat, conn, interval))

    def _beat(self, conn: _Connection, interval: float) -> None:
        conn.beat_timer = None
        if conn.state != _READY or not self.running:
            return
        broken: BaseException | None = None
        with conn.lock:
            try:
                conn.remote.heartbeat()
                if conn.output is not None:
                    self._take_output(conn)
            except Exception as exc:  # noqa: BLE001 - any failure ends this connection
                broken = exc
        if broken is not None:
            self.peer_log.log(
                logging.INFO, "disconnecting %s: %s", conn.endpoint, _describe(broken)
            )
            self._lost(conn)
        elif conn.state == _READY:
            self._heartbeat(conn, interval)

    # -- incomplete messages and idle connections -----------------------------------

    # Theory of operation
    # -------------------
    # After each read, a connection whose transport has messages says how many bytes of
    # an unfinished one it holds (Remote.incomplete). The node keeps, per connection,
    # when that message began and when it last grew, and node-wide the sum held.
    #
    # * Time: a watch timer per connection (one at a time, rescheduled lazily when it
    #   fires) disconnects a peer whose message made no progress for message_timeout
    #   seconds, or whose message, older than message_timeout, arrives on average
    #   slower than min_message_rate bytes/s (a trickle cannot keep it alive; as
    #   Kestrel's MinRequestBodyDataRate). The same timer enforces idle_timeout.
    # * Memory: past max_incomplete_bytes, a connection that reads and is left holding
    #   more than _PAUSE_FLOOR bytes is paused (not read: TCP's flow control pushes back
    #   on its peer) until the sum falls under 3/4 of the cap. A client of small whole
    #   messages never holds that much, so it is served throughout. A paused connection's
    #   message_timeout clock runs: the stalled holders go after one message_timeout,
    #   which frees their memory and lets the others be read again.

    def _account(self, conn: _Connection, held: int, completed: bool) -> None:
        """Record what ``conn`` holds after a read (``completed``: it ended messages)."""
        self.incomplete_bytes += held - conn.held
        previous = conn.held
        conn.held = held
        if held < previous:
            self._resume_if_under()
        if not held:
            conn.partial_since = 0.0
            return
        now = time.monotonic()
        if completed or not previous:
            conn.partial_since = now  # a new message began in this read
        conn.progress_at = now
        timeout = conn.message_timeout
        if timeout is not None and (conn.watch_timer is None or conn.watch_at > now + timeout):
            self._watch(conn, now + timeout)
        if self.incomplete_bytes > self.max_incomplete_bytes and held > _PAUSE_FLOOR:
            if not self.paused:
                self._pause_holders()  # the cap was just crossed
            elif not conn.paused:
                self._pause(conn)

    def _watch(self, conn: _Connection, deadline: float) -> None:
        """(Re)arm ``conn``'s watch timer for ``deadline``."""
        self.cancel_timer(conn.watch_timer)
        conn.watch_at = deadline
        conn.watch_timer = self.add_timer_at(deadline, lambda: self._check_watch(conn))

    def start_watch(self, conn: _Connection) -> None:
        """A connection became ready: start its idle_timeout clock, if it has one."""
        if conn.idle_timeout is not None:
            conn.last_read = time.monotonic()
            self._watch(conn, conn.last_read + conn.idle_timeout)

    def _check_watch(self, conn: _Connection) -> None:
        """The watch timer fired: disconnect ``conn`` if a limit passed, else re-arm.

        A paused connection is judged like the others: its clock runs while it is not
        read, so the stalled peers that hold the node over its cap are gone after one
        ``message_timeout``, and their memory with them; the rest are read again then.
        (A peer cannot be told apart, while not read, from one that stalled.) Only the
        rate rule waits until it is read again.
        """
        conn.watch_timer = None
        if conn.state != _READY or not self.running:
            return
        now = time.monotonic()
        if conn.user_paused:  # the application holds it: its peer is not to blame
            conn.progress_at = conn.last_read = now
        deadline = None
        reason = None
        idle = conn.idle_timeout
        timeout = conn.message_timeout
        if idle is not None:
            if now - conn.last_read >= idle:
                reason = f"nothing received for {idle:g} s (idle_timeout)"
            deadline = conn.last_read + idle
        if reason is None and conn.held and timeout is not None:
            if now - conn.progress_at >= timeout:
                reason = (
                    f"a message stalled for {timeout:g} s with {conn.held} bytes received "
                    "(message_timeout)"
                )
            stall_at = conn.progress_at + timeout
            rate = conn.min_rate
            if reason is None and rate is not None and not conn.paused:
                age = now - conn.partial_since
                if age >= timeout and conn.held < rate * age:
                    reason = (
                        f"a message arrived at {conn.held / age:.0f} B/s for {age:.1f} s, "
                        f"below min_message_rate={rate:g} B/s"
                    )
                rate_at = conn.partial_since + max(timeout, conn.held / rate) + 1e-3
                stall_at = min(stall_at, rate_at)
            deadline = stall_at if deadline is None else min(deadline, stall_at)
        if reason is not None:
            self.peer_log.log(logging.INFO, "disconnecting %s: %s", conn.endpoint, reason)
            self._lost(conn)
        elif deadline is not None:
            self._watch(conn, max(deadline, now + 1e-3))

    def _unpause(self, conn: _Connection, now: float) -> None:
        with conn.lock:
            if not conn.paused or conn.fd < 0:
                return
            conn.paused = False
            # The rate is measured again from now: it was not read meanwhile.
            conn.partial_since = now
            _update_reading(conn)

    def _pause_holders(self) -> None:
        """The cap was crossed: pause every connection holding more than the floor."""
        log.warning(
            "incomplete messages hold %d bytes, over max_incomplete_bytes=%d: not reading "
            "the connections that hold more than %d bytes of one until it falls to %d",
            self.incomplete_bytes,
            self.max_incomplete_bytes,
            _PAUSE_FLOOR,
            self.max_incomplete_bytes * 3 // 4,
        )
        with self.registry_lock:
            holders = [conn for conn in self.connections.values() if conn.held > _PAUSE_FLOOR]
        for conn in holders:
            self._pause(conn)

    def _pause(self, conn: _Connection) -> None:
        """Stop reading ``conn`` until the node's incomplete bytes fall under the cap."""
        with conn.lock:
            if conn.fd < 0 or conn.state != _READY:
                return
            conn.paused = True
            _update_reading(conn)
        self.paused.append(conn)
        log.debug("not reading %s: it holds %d bytes of a message", conn.endpoint, conn.held)

    def _released(self, conn: _Connection) -> None:
        """``conn`` closed: give back what it held; resume paused ones if under the cap."""
        if conn.held:
            self.incomplete_bytes -= conn.held
            conn.held = 0
        if conn.paused:
            conn.paused = False
            with contextlib.suppress(ValueError):
                self.paused.remove(conn)
        self._resume_if_under()

    def _resume_if_under(self) -> None:
        """Read the paused connections again once the total is under 3/4 of the cap."""
        if self.paused and self.incomplete_bytes <= self.max_incomplete_bytes * 3 // 4:
            self._resume_paused()

    def _resume_paused(self) -> None:
        paused, self.paused = self.paused, []
        now = time.monotonic()
        for conn in paused:
            self._unpause(conn, now)
        log.warning(
            "incomplete messages hold %d bytes now: reading the %d paused connections again",
            self.incomplete_bytes,
            len(paused),
        )

    def _on_writable(self, conn: _Connection) -> None:
        broken = False
        drained = False
        with conn.lock:
            if conn.state != _READY:
                return
            try:
                if not conn.remote.ready_to_write():
                    broken = True
                else:
                    conn.flush()
            except Exception as exc:  # noqa: BLE001
                log.debug("write to %s failed: %r", conn.endpoint, exc)
                broken = True
            if not broken and not conn.chunks:
                conn.write_armed = False
                self.poller.modify(conn.fd, _poll_interest(conn))
                conn.direct_iter = -1
                drained = conn.want_drain
                conn.want_drain = False
                conn.warned = False
        if broken:
            self._lost(conn)
        elif drained:
            self.emit(Drained(conn.endpoint))

    def _on_pending(self, conn: _Connection, flags: int) -> None:
        self._after_pending(conn, pending_status(conn.remote, _readiness(flags), conn.endpoint))

    def _after_pending(self, conn: _Connection, status: PendingStatus) -> None:
        """Act on what ``pending()`` said: wait more, announce the connection, or fail."""
        if status is PendingStatus.INCOMPLETE:
            if conn.fd >= 0:
                self.poller.modify(conn.fd, _interest(conn.remote.pending_interest()))
            return
        if status is PendingStatus.READY:
            with conn.lock:
                if conn.state != _PENDING:
                    return
                conn.state = _READY
                conn.established = True
                # Read unless paused meanwhile (pause_reading while it connected, or
                # the node's input is paused).
                conn.reading = _reading_wanted(conn)
                self.poller.modify(conn.fd, _poll_interest(conn))
                self.handlers[conn.fd] = functools.partial(self._on_ready_connection, conn)
            conn.resolved.set()
            self.cancel_timer(conn.deadline_timer)
            conn.deadline_timer = None
            remote = conn.remote
            if remote.heartbeat_interval is not None:
                self._heartbeat(conn, remote.heartbeat_interval)
            self.start_watch(conn)
            if conn.listener_id is None:
                log.debug("connected to %s", conn.endpoint)
                if self._announce(conn, Connected(conn.endpoint, True)):
                    return  # read once connect_sync() has returned: nothing comes first
            else:
                log.debug("accepted %s on listener %r", conn.endpoint, conn.listener_id)
                self.emit(Accepted(conn.endpoint, conn.listener_id))
            if conn.state == _READY and self.running and remote.buffered():
                self._on_readable(conn)
            return
        self._fail_pending(conn)

    def _announce(self, conn: _Connection, event: Any) -> bool:
        """Emit ``event`` about ``conn``, or hold it back if its creator (connect_sync)
        has not returned yet, and then stop reading a ready connection until it has.
        True if held (driver only)."""
        parked = conn.parked
        if parked is None:
            self.emit(event)
            return False
        if not parked:
            self.holding += 1
        parked.append(event)
        if conn.state == _READY:
            with conn.lock:
                conn.withheld = True
                _update_reading(conn)
        return True

    def release_events(self, conn: _Connection) -> None:
        """``connect_sync()`` is returning (or raising): deliver the events held back for
        ``conn``, in order, before any later one, and read it again. Any thread.

        It does not wake the loop: a wake is a system call, which lets the loop thread
        take the interpreter and deliver the events before the caller has the result in
        hand. While events are held the loop polls at least every millisecond instead
        (see :meth:`_poll_timeout`), so it finds the release once the caller has moved on.
        """
        self._releases.append(conn)
        if self.drive_lock.acquire(blocking=False):
            try:  # nobody drives the loop: the events go to the backlog now
                self._handle_requests()
            finally:
                self.release_drive()

    def _release(self, conn: _Connection) -> None:
        parked, conn.parked = conn.parked, None
        if not parked:
            return
        self.holding -= 1
        for event in parked:
            if not self.running:
                return
            self.emit(event)
        if conn.state != _READY:
            return
        with conn.lock:
            withheld = conn.withheld
            conn.withheld = False
            _update_reading(conn)
        if withheld and conn.reading and self.running and conn.remote.buffered():
            self._on_readable(conn)

    def fail_pending(self, conn: _Connection, reason: BaseException | None) -> None:
        """Give up on a pending connection (connect timeout)."""
        if conn.state != _PENDING:
            return
        if reason is not None:
            conn.remote.failure = reason
        self._fail_pending(conn)

    def _fail_pending(self, conn: _Connection) -> None:
        with self.registry_lock:
            self.connections.pop(conn.id, None)
        with conn.lock:
            if conn.state != _PENDING:
                return
            conn.state = _CLOSED
        self._close_connection(conn)
        conn.resolved.set()
        failure = conn.remote.failure
        if conn.listener_id is None:
            log.debug("connection to %s failed: %s", conn.endpoint, _describe(failure))
            error = connect_error(failure, format_address(conn.endpoint.addr))
            self._announce(conn, Connected(conn.endpoint, False, error))
        else:
            self.peer_log.log(
                logging.INFO,
                "dropped %s before it was ready: %s",
                conn.endpoint,
                _describe(failure),
            )

    def _lost(self, conn: _Connection) -> None:
        """The peer went away (or the connection broke): remove it, say Disconnected."""
        with self.registry_lock:
            self.connections.pop(conn.id, None)
        with conn.lock:
            state = conn.state
            conn.state = _CLOSED
            if state == _READY and conn.chunks:
                # One last non-blocking write: a close reply the transport just queued.
                with contextlib.suppress(Exception):
                    conn.flush()
            _notify(conn)
        self._close_connection(conn)
        if state == _READY:
            log.debug("%s disconnected", conn.endpoint)
            self._announce(conn, Disconnected(conn.endpoint))

    def _linger(self, conn: _Connection) -> None:
        """A removed connection: write what was queued, then close (bounded in time)."""
        with conn.lock:
            if not conn.chunks:
                conn.state = _CLOSED
        if conn.state == _CLOSED:
            self._close_connection(conn)
            return
        try:
            self.poller.modify(conn.fd, WRITE if conn.read_closed else READ | WRITE)
        except OSError:
            pass
        self.cancel_timer(conn.deadline_timer)
        conn.deadline_timer = self.add_timer(CLOSE_LINGER, lambda: self._close_connection(conn))

    def _on_closing(self, conn: _Connection, flags: int) -> None:
        done = False
        if flags & READ:
            try:  # the user removed it: discard what arrives
                eof = conn.remote.receive(_discard) is ReadStatus.DISCONNECTED
            except Exception:  # noqa: BLE001
                eof = True
            if eof:
                # The peer stopped sending (it may still read): stop polling for reading,
                # since EOF stays readable, and go on writing; a write error ends it.
                with conn.lock:
                    conn.read_closed = True
                    if conn.fd >= 0:
                        self.poller.modify(conn.fd, WRITE)
        if flags & WRITE and not done:
            with conn.lock:
                try:
                    conn.flush()
                    done = not conn.chunks
                except Exception:  # noqa: BLE001
                    done = True
        if done:
            self._close_connection(conn)

    def _close_connection(self, conn: _Connection) -> None:
        remote = conn.remote
        if isinstance(remote, Dial):  # still dialing: no descriptor of its own
            with conn.lock:
                conn.state = _CLOSED
                _notify(conn)
            remote.close()
            self.cancel_timer(conn.deadline_timer)
            conn.deadline_timer = None
            conn.resolved.set()
            return
        with conn.lock:
            if conn.fd < 0:
                return
            fd = conn.fd
            conn.fd = -1
            conn.state = _CLOSED
            conn.chunks.clear()
            conn.tail = None
            conn.queued = 0
            _notify(conn)
        # Free everything at once: its timers hold it (and its protocol state) alive.
        for timer in (conn.deadline_timer, conn.beat_timer, conn.watch_timer):
            self.cancel_timer(timer)
        conn.deadline_timer = conn.beat_timer = conn.watch_timer = None
        self._released(conn)
        self.poller.unregister(fd)
        self.handlers.pop(fd, None)
        self.resources.pop(fd, None)
        try:
            conn.remote.close()
        except Exception:
            log.exception("close() of %s failed", conn.endpoint)
        conn.resolved.set()

    # -- listeners ---------------------------------------------------------------------

    def _on_listener(self, listener: _Listener, flags: int) -> None:
        if listener.state != _READY:
            return
        if flags & WRITE:
            for endpoint in listener.flush():
                self.emit(Drained(endpoint))
                if listener.state != _READY or not self.running:
                    return
            if not flags & READ:
                return
        try:
            listener.local.accept(listener.on_remote, listener.on_datagram)
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRNOS:
                self._exhausted(listener, exc)
            else:
                self.peer_log.log(
                    logging.WARNING, "listener %r: accept failed: %s", listener.id, _describe(exc)
                )
        except Exception:
            log.exception("accept() of listener %r failed", listener.id)
        else:
            if listener.exhausted_since:
                log.warning(
                    "listener %r: accepting again after %.1f s short of resources "
                    "(%d failed attempts)",
                    listener.id,
                    time.monotonic() - listener.exhausted_since,
                    listener.failures,
                )
                listener.exhausted_since = 0.0
                listener.failures = 0
        accepted = listener.accepted
        if accepted:
            listener.accepted = []
        datagrams = listener.datagrams
        if datagrams:
            listener.datagrams = []
        for index, (remote, addr) in enumerate(accepted):
            if listener.state != _READY or not self.running:
                # The callback removed the listener (or stopped the node) while handling
                # an earlier Accepted of this batch: the rest are closed, not announced.
                for late, _addr in accepted[index:]:
                    late.close()
                return
            resource_id = self.new_id(listener.id.adapter_id, ResourceType.REMOTE)
            endpoint = Endpoint(resource_id, addr)
            conn = connection_class(remote)(
                self,
                resource_id,
                endpoint,
                remote,
                limit=listener.limit,
                listener_id=listener.id,
                limits=listener.limits,
            )
            try:
                self.register_connection(conn)
            except (OSError, NodeStoppedError) as exc:
                log.warning("could not register accepted %s: %s", conn.endpoint, exc)
                remote.close()
                continue
            self._on_pending(conn, WRITE)
            if conn.state == _PENDING and listener.handshake_timeout is not None:
                self._handshake_deadline(conn, listener.handshake_timeout)
        if datagrams:
            emit = self.emit
            cache = listener.endpoint_cache
            for addr, data in datagrams:
                peer = cache.get(addr)
                if peer is None:
                    if len(cache) > 4096:
                        cache.clear()
                    peer = cache[addr] = Endpoint(listener.id, addr)
                message = _new(Message)  # Message(peer, data), the fast way
                _set_endpoint(message, peer)
                _set_data(message, data)
                emit(message)
                if listener.state != _READY or not self.running:
                    return

    def _handshake_deadline(self, conn: _Connection, timeout: float) -> None:
        reason = TimeoutError(f"handshake not done within {timeout} s")
        conn.deadline_timer = self.add_timer(timeout, lambda: self.fail_pending(conn, reason))

    def _exhausted(self, listener: _Listener, exc: OSError) -> None:
        """accept() is short of fds or memory: one line per episode, then pause."""
        listener.failures += 1
        if not listener.exhausted_since:
            listener.exhausted_since = time.monotonic()
            log.warning(
                "listener %r: accept failed: %s; pausing accepts for %g s at a time until it "
                "recovers (no more lines until then)",
                listener.id,
                _describe(exc),
                _ACCEPT_PAUSE,
            )
        else:
            log.debug("listener %r: accept failed again: %s", listener.id, _describe(exc))
        self._pause_listener(listener)

    def _pause_listener(self, listener: _Listener) -> None:
        """Out of file descriptors or memory: stop accepting for a moment.

        The pending connection stays readable, so a level-triggered loop would otherwise
        retry (and log) at full speed until the shortage ends.
        """
        fd = listener.fd
        self.poller.modify(fd, 0)

        def resume() -> None:
            if listener.fd == fd and listener.state == _READY:
                self.poller.modify(fd, _listener_interest(listener))

        self.add_timer(_ACCEPT_PAUSE, resume)

    def _close_listener(self, listener: _Listener) -> None:
        if listener.fd < 0:
            return
        fd = listener.fd
        with listener.lock:
            listener.fd = -1
            listener.state = _CLOSED
            listener.chunks.clear()
            listener.queued = 0
            _notify(listener)
        self.poller.unregister(fd)
        self.handlers.pop(fd, None)
        self.resources.pop(fd, None)
        try:
            listener.local.close()
        except Exception:
            log.exception("close() of listener %r failed", listener.id)

    # -- connect_sync without a running loop ------------------------------------------

    def drive_pending(self, conn: _Connection, timeout: float) -> None:
        """Advance one pending connection by polling only its fd (caller holds drive_lock).

        Used by ``connect_sync`` before any loop runs; the ``Connected`` event it produces
        goes to the backlog and is delivered when the loop starts.
        """
        if conn.state != _PENDING:
            return
        if isinstance(conn.remote, Dial):
            # Its name resolves on another thread and its attempts are polled by the
            # node's poller: run the whole loop for a while (events go to the backlog).
            self.driver = _get_ident()
            try:
                self.iterate(timeout)
            finally:
                self.driver = None
            return
        if conn.fd < 0:
            return
        poll = select.poll()
        poll.register(conn.fd, select.POLLIN | select.POLLOUT)
        ready = poll.poll(max(1, int(timeout * 1000) + 1))
        if not ready:
            return
        flags = 0
        for _fd, mask in ready:
            if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                flags |= READ
            if mask & (select.POLLOUT | select.POLLHUP | select.POLLERR):
                flags |= WRITE
        self._on_pending(conn, flags)

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close every resource (one last non-blocking write of queued data). Idempotent."""
        with self.registry_lock:
            if self.shut:
                return
            self.shut = True
            self.running = False
            self.signals.close()
            # Connections still dialing have no descriptor among the resources; one
            # removed meanwhile waits in the requests.
            dialing = [c for c in self.connections.values() if isinstance(c.remote, Dial)]
            dialing += [
                r
                for r, _ in self._requests
                if isinstance(r, _Connection) and isinstance(r.remote, Dial)
            ]
            self.connections.clear()
            self.listeners.clear()
            resources = list(self.resources.values())
        for conn in dialing:
            self._close_connection(conn)
        self._requests.clear()
        for resource in resources:
            if isinstance(resource, _Listener):
                self._close_listener(resource)
                continue
            with resource.lock:
                if resource.state == _READY:
                    try:
                        farewell = resource.remote.farewell(True)
                    except Exception:
                        log.exception("farewell() of %s failed", resource.endpoint)
                        farewell = None
                    if farewell:
                        resource.queue_wire(farewell)
                if resource.state in (_READY, _CLOSING) and resource.chunks:
                    try:
                        resource.flush()
                    except Exception:  # noqa: BLE001 - closing anyway
                        pass
            self._close_connection(resource)
        with self._timer_lock:
            self._timers.clear()
            self._cancelled = 0
        self.handlers.clear()  # what they refer to (connections, attempts) is closed
        self.poller.close()
        self.waker.close()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason given"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    return str(exc) or type(exc).__name__
