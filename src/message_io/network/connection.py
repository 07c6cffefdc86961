"""The node's side of a connection: its life cycle and its bounded send queue.

Theory of operation
-------------------
A :class:`Connection` wraps the transport's :class:`~message_io.network.adapter.Remote`
with what every transport shares: a state that only moves along legal transitions,
a lock, and a send queue (:mod:`.resource`).

Other threads never touch a socket's reading side and never close anything. They queue
outgoing bytes under the connection's lock, and either write them at once (the first
send of a connection in each loop iteration, for latency) or arm write interest so that
the loop writes them, coalesced, when the socket is writable. They ask the loop to close
resources through :meth:`Host.request_check`.

The send queue of a stream connection is a deque of chunks; small messages are appended
to an open ``bytearray`` tail (one copy, then one ``send`` for thousands of messages),
large immutable payloads are queued by reference (no copy). So are the large frame
bodies a transport lends from its :class:`~message_io.codec.body_pool.BodyPool` (a
WebSocket client's masked payloads): once written out whole they go back to it, to be
reused for the next ones; the spare ones left after a burst are trimmed about a second
after the last one lent (see :meth:`Connection.pool_idle`). A datagram connection
queues whole packets, only while the OS pushes back. Both are bounded by
``send_buffer_limit``: past it ``send`` returns ``QUEUE_FULL`` and a ``Drained`` event
follows once the queue is empty.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..codec.body_pool import IDLE_DELAY, BodyPool
from ..codec.framing import frame_header
from ..util.timers import Timer, TimerHeap
from . import coalesce, sockio
from .adapter import (
    Buffer,
    BytesLike,
    ConnectConfig,
    Framing,
    ListenConfig,
    Remote,
    SendStatus,
)
from .dial import Dial
from .endpoint import Address, Endpoint, ResourceId
from .poller import READ, WRITE, Poller
from .resource import PENDING, READY, SendQueue

__all__ = [
    "Connection",
    "DatagramConnection",
    "Host",
    "Limits",
    "connection_class",
    "describe",
    "drop_datagram",
]

log = logging.getLogger("message_io")


# Payloads below this size are copied into the open tail buffer (coalesced); larger
# immutable ones are queued by reference.
_COALESCE_MAX: Final = 16 * 1024
# Queued bytes at which a send writes at once instead of waiting for the iteration's end.
_FLUSH_NOW: Final = 256 * 1024
# Buffers per vectored write (Linux's IOV_MAX is 1024).
_IOV_MAX: Final = 64

_SENT: Final = SendStatus.SENT
_NOT_FOUND: Final = SendStatus.RESOURCE_NOT_FOUND
_NOT_AVAILABLE: Final = SendStatus.RESOURCE_NOT_AVAILABLE
_QUEUE_FULL: Final = SendStatus.QUEUE_FULL
_TOO_BIG: Final = SendStatus.MAX_PACKET_SIZE_EXCEEDED
_HEADER: Final = Framing.HEADER
_FRAME: Final = Framing.FRAME
# The C build's socket calls (see sockio); without it, the socket's own methods.
_C_SOCKIO: Final = sockio.COMPILED
_send: Final = sockio.send
_send2: Final = sockio.send2
# The C build's append to the open tail buffer (see coalesce); without it, ``+=``.
_C_COALESCE: Final = coalesce.COMPILED
_append: Final = coalesce.append

_get_ident: Final = threading.get_ident


class Host:
    """What a connection needs of the loop it belongs to: the base of the node's
    ``Driver``. A class, not a ``Protocol``: compiled, a connection reads these fields
    in place (a protocol's are looked up by name on every send)."""

    iteration: int
    """Counts loop iterations: the first send of each goes straight to the OS."""
    driver: int | None
    """The thread driving the loop now (its ident), if any."""
    dirty: list[Connection]
    """Connections with bytes to write at the end of the iteration."""
    poller: Poller
    timers: TimerHeap
    """The node's timers (any thread may add one; the loop thread runs them)."""
    input_paused: bool
    """The node reads nothing (see ``Loop.pause_input``)."""

    def request_check(self, conn: Connection, broken: bool = False) -> None:
        """Ask the loop to look at ``conn`` soon (its write side failed if ``broken``)."""
        raise NotImplementedError


class Connection(SendQueue):
    """The node's side of one connection: its state and send queue around a Remote."""

    __slots__ = (
        "backlogged",
        "beat_timer",
        "buffers",
        "deadline_timer",
        "direct_iter",
        "dirty",
        "endpoint",
        "established",
        "fd",
        "flushed",
        "flushed_at_beat",
        "frame",
        "full_duplex",
        "header",
        "held",
        "id",
        "idle_timeout",
        "incomplete",
        "last_read",
        "listener_id",
        "local_addr",
        "loop",
        "max_size",
        "message_timeout",
        "min_rate",
        "output",
        "owner",
        "parked",
        "partial_since",
        "paused",
        "pool",
        "pool_timer",
        "progress_at",
        "published",
        "read_closed",
        "reader",
        "reading",
        "remote",
        "resolved",
        "sock",
        "stream_header",
        "tail",
        "user_paused",
        "varint",
        "watch_at",
        "watch_timer",
        "withheld",
    )

    def __init__(
        self,
        loop: Host,
        resource_id: ResourceId,
        endpoint: Endpoint,
        remote: Remote,
        *,
        limit: int,
        listener_id: ResourceId | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(limit, packets=False)  # bind() sets it from the transport
        self.loop = loop
        self.id = resource_id
        self.endpoint = endpoint
        self.listener_id = listener_id
        self.local_addr: Address | None = None  # known once a socket exists
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
        # Not read: its replies to the peer (pongs) filled the queue (Driver._take_replies).
        self.backlogged = False
        self.deadline_timer: Timer | None = None  # connect / handshake deadline
        self.beat_timer: Timer | None = None  # the transport's heartbeat
        self.watch_timer: Timer | None = None  # message_timeout / idle_timeout check
        self.pool_timer: Timer | None = None  # the body pool's idle check (pool_idle)
        self.watch_at = 0.0
        self.tail: bytearray | None = None  # the open chunk that small messages join
        # The node's registry while it holds this connection (see Registry.add_connection).
        self.owner: object = None
        self.dirty = False
        self.read_closed = False  # the peer's EOF was seen while closing
        self.direct_iter = -1
        # The outcome is known (ready, failed or closed): connect_sync waits for it on
        # the loop's sync_cond (a flag, not an Event: an Event is a lock, a condition and
        # a deque, and every connection would carry one).
        self.resolved = False
        self.established = False
        # Bytes written out of the send queue, in all (flush), and as of the last
        # heartbeat: a queue that drains is a peer that reads (see Driver._beat).
        self.flushed = 0
        self.flushed_at_beat = 0
        self.bind(remote)
        self.created()

    def created(self) -> None:
        """The end of ``__init__``, for a subclass to extend (a constructor override
        would have to repeat every parameter). A stream connection waits for its
        handshake: nothing to do."""

    def bind(self, remote: Remote) -> None:
        """Take ``remote`` as this connection's transport: its descriptor and what the
        hot paths need of it. Called once by ``__init__``, and once more when a
        connection to a host name adopts the attempt that won (under the lock)."""
        self.remote = remote
        self.fd = remote.fileno()
        cls = type(remote)
        facts = _class_facts.get(cls)
        if facts is None:
            facts = _learn(cls)
        datagrams, reports_incomplete, has_output, full_duplex, framing, buffers, pooled = facts
        # A datagram queue also counts packets (a connection to a host name learns it
        # carries datagrams here, when its attempt wins).
        self.packets = datagrams
        # What the transport declared it does (see Remote's capabilities).
        self.incomplete = remote.incomplete if reports_incomplete else None
        self.buffers = buffers
        # The built-in transports' shortcut for writing: the node writes to the socket
        # itself, where their methods would do just that.
        self.sock = remote._direct_socket()
        # The pool its framer's large bodies come from: queued by reference (never
        # copied into the tail), given back once written. Lends what the queue holds.
        pool = remote._send_pool() if pooled else None  # a call per connection spared
        if pool is not None:
            pool.enable(self.limit, _COALESCE_MAX)
        self.pool: BodyPool | None = pool
        self.max_size = remote.max_message_size
        self.output = remote.take_output if has_output else None
        self.full_duplex = full_duplex
        # Framing: a header function (fast, no copy of big payloads), a frame function,
        # or neither (bytes as given).
        self.header: Callable[[int], bytes | None] | None = None
        self.frame: Callable[[Buffer], Buffer | tuple[bytes, Buffer] | None] | None = None
        if framing is _HEADER:
            self.header = remote.header
        elif framing is _FRAME:
            self.frame = remote.frame
        # Small messages can be appended to the tail buffer as header + payload.
        self.stream_header = self.frame is None
        self.take_reader()

    def take_reader(self) -> None:
        """Ask the transport for its compiled reader: the built-in transports' shortcut
        for reading (and framing), where their methods would do just that. Asked by
        :meth:`bind`, and again (under the lock) when the connection becomes ready: a
        transport with a handshake has one only then."""
        reader = self.remote._frame_reader()
        self.reader = reader
        if reader is not None:
            header, frame = reader.framers()
            if header is not None and self.header is not None:
                self.header = header
            if frame is not None and self.frame is not None:
                self.frame = frame
        # The length-prefixed header itself (FramedTcp's, not overridden): called as the
        # compiled function it is, without a generic call.
        self.varint = self.header is frame_header

    def is_ready(self) -> bool:
        """True while it carries messages (a fresh look at :attr:`state`)."""
        return self.state is READY

    def drained(self) -> bool:
        """As :meth:`SendQueue.drained`; a connection not read while its replies filled
        the queue (``backlogged``) is read again. Holds the lock."""
        if self.backlogged:
            self.backlogged = False
            self.update_reading()
        return super().drained()

    # -- polling ---------------------------------------------------------------------

    def interest(self) -> int:
        """What to poll it for: reading unless paused, writing while armed."""
        return (READ if self.reading else 0) | (WRITE if self.write_armed else 0)

    def reading_wanted(self) -> bool:
        """Whether it is to be read: no pause holds it (the node's cap on unfinished
        messages, pause_reading, connect_sync's hold, its own replies filling its queue,
        the node's input)."""
        return not (
            self.paused
            or self.user_paused
            or self.withheld
            or self.backlogged
            or self.loop.input_paused
        )

    def update_reading(self) -> None:
        """Poll it for reading unless a pause holds it. Holds the lock.

        Before it is ready the poller waits for its handshake instead: the pauses take
        effect when it becomes ready.
        """
        reading = self.reading_wanted()
        if reading is not self.reading:
            self.reading = reading
            if self.fd >= 0 and self.state is READY:
                with contextlib.suppress(OSError):  # not registered: registration applies it
                    self.loop.poller.modify(self.fd, self.interest())

    # -- sending (any thread) --------------------------------------------------------

    def send(self, message: BytesLike | str) -> SendStatus:
        if type(message) is bytes or type(message) is bytearray:
            data: Buffer = message
        elif isinstance(message, str):
            return self._send_text(message)
        else:
            data = _as_bytes_view(message)
        # acquire() and release() rather than a with block: compiled, the with block
        # looks up and calls __enter__ and __exit__ (with three arguments) each time.
        lock = self.lock
        lock.acquire()
        try:
            return self._send_locked(data, len(data))
        finally:
            lock.release()

    def _send_locked(self, data: Buffer, size: int) -> SendStatus:
        """The rest of :meth:`send`, under the lock."""
        state = self.state
        if state is not READY:
            return _NOT_AVAILABLE if state is PENDING else _NOT_FOUND
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
                head = frame_header(size) if self.varint else header(size)
                if head is None:
                    return _NOT_AVAILABLE  # the transport refuses it (closing)
            else:
                head = b""  # a raw stream
            if _C_COALESCE:
                _append(tail, head, data)
            else:
                if head:
                    tail += head
                tail += data
            self.queued += len(head) + size
            if self.write_armed or (self.dirty and self.queued < _FLUSH_NOW):
                return _SENT  # already scheduled, and not enough to write at once
            return self.schedule()
        if not size and self.stream_header and self.header is None:
            return _SENT  # nothing to put on a raw stream
        header = self.header
        lent = False  # data is a body lent by the pool (at least _COALESCE_MAX bytes)
        if header is not None:
            head = frame_header(size) if self.varint else header(size)
            if head is None:
                return _NOT_AVAILABLE  # the transport refuses it (closing)
            if not size and not head:
                return _SENT  # no bytes at all: queue no empty chunk
        elif self.frame is not None:
            framed = self.frame(data)
            if framed is None:
                return _NOT_AVAILABLE  # the transport refuses it (closing)
            if isinstance(framed, tuple):  # (header, body): the body is not copied
                head, data = framed
                size = len(data)
                pool = self.pool
                lent = pool is not None and type(data) is bytearray and pool.lends(data)
            else:
                data = framed
                if not len(data):
                    # Nothing to write for an empty message (a raw stream); for a
                    # non-empty one, the older way to refuse it.
                    return _NOT_AVAILABLE if size else _SENT
                size = len(data)
                head = None
        else:
            head = None
        iteration = self.loop.iteration
        if not self.chunks and self.direct_iter != iteration and size < _COALESCE_MAX:
            # Fast path, the common case of a connection that keeps up: the first
            # message of the iteration goes straight to the OS, nothing is queued.
            self.direct_iter = iteration
            sock = self.sock
            try:
                if _C_SOCKIO and head and sock is not None:
                    wire: Buffer | None = None  # head + data: made only if it is needed
                    total = len(head) + size
                    try:
                        written = _send2(sock, head, data)  # one send, no head + data
                    except BlockingIOError:
                        written = 0
                else:
                    wire = head + data if head else data
                    total = len(wire)
                    if sock is None:
                        written = self.remote.write(wire)
                    else:
                        try:
                            written = _send(sock, wire) if _C_SOCKIO else sock.send(wire)
                        except BlockingIOError:
                            written = 0
            except Exception as exc:  # noqa: BLE001 - any write failure ends it
                log.debug("write to %s failed: %r", self.endpoint, exc)
                self.loop.request_check(self, broken=True)
                return _SENT
            if written >= total:
                return _SENT
            if wire is None:
                wire = head + data if head else data
            with memoryview(wire) as view:
                rest = self.tail = bytearray(view[written:])
            self.push(rest)
            self.queued = len(rest)
            self.arm_write()
            return _SENT
        if size < _COALESCE_MAX or (type(data) is not bytes and not lent and not _readonly(data)):
            tail = self.tail
            if tail is None:
                tail = self.tail = bytearray()
                self.push(tail)
            if _C_COALESCE:
                _append(tail, head or b"", data)
            else:
                if head:
                    tail += head
                tail += data
        else:
            if head:
                tail = self.tail
                if tail is None:
                    self.push(head)
                else:
                    tail += head
            self.push(data)
            self.tail = None
        self.queued += size + (len(head) if head else 0)
        if self.write_armed:
            return _SENT
        return self.schedule()

    def request_drained(self, _endpoint: Endpoint) -> bool:
        """If a send would be refused now (the queue is full), arrange a ``Drained``
        event for when it is empty and return True (any thread)."""
        if self.state is READY and not self.full():
            return False  # room (a glance without the lock: send() decides for good)
        with self.lock:
            if self.state is not READY or not self.full():
                return False
            self.want_drain = True
            return True

    def _send_text(self, text: str) -> SendStatus:
        """Send a text message (transports with ``frame_text``, e.g. WebSocket)."""
        if self.state is not READY:  # its transport may not be known yet (a host name)
            return _NOT_AVAILABLE if self.state is PENDING else _NOT_FOUND
        if not type(self.remote).text_messages:
            raise TypeError(f"{self.endpoint} takes bytes-like messages, not str")
        data = text.encode()
        if self.max_size is not None and len(data) > self.max_size:
            return _TOO_BIG
        with self.lock:
            if self.state is not READY:
                return _NOT_AVAILABLE if self.state is PENDING else _NOT_FOUND
            if self.queued >= self.limit:
                return self._refuse()
            wire = self.remote.frame_text(data)
            if not wire:
                return _NOT_AVAILABLE  # the transport refuses it (closing)
            self.queue_wire(wire)
            if self.write_armed:
                return _SENT
            return self.schedule()

    def _refuse(self) -> SendStatus:
        """Backpressure: QUEUE_FULL, counted (see :meth:`SendQueue.refuse`). Holds the
        lock."""
        return self.refuse(self.endpoint, "connection")

    def queue_wire(self, wire: Buffer) -> None:
        """Queue bytes ready for the wire after everything queued. Holds the lock."""
        if wire:
            self.push(wire)
            self.tail = None
            self.queued += len(wire)

    def queue_farewell(self, *, going_away: bool) -> None:
        """Queue the transport's goodbye (a close frame), if it has one: ``going_away``
        when the node stops, not for ``remove``. Holds the lock."""
        try:
            farewell = self.remote.farewell(going_away)
        except Exception:
            log.exception("farewell() of %s failed", self.endpoint)
            return
        if farewell:
            self.queue_wire(farewell)

    def schedule(self) -> SendStatus:
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
            self.arm_write()
        return _SENT

    def arm_write(self) -> None:
        """Ask the loop to write when the socket is writable. Holds the lock."""
        if not self.write_armed:
            self.write_armed = True
            try:
                self.loop.poller.modify(self.fd, self.interest())
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
            self.arm_write()

    def flush(self) -> None:
        """Write queued chunks until the queue is empty or the OS pushes back. Holds the lock.

        Several chunks go out in one vectored write (a frame header and its payload, or
        small messages and a large one), so no chunk is sent as a tiny packet of its own.

        Raises:
            OSError: the connection is broken.
        """
        chunks = self.chunks
        if isinstance(chunks, tuple):  # nothing was ever queued
            self.queued = 0
            self.notify()
            return
        remote = self.remote
        pool = self.pool
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
                if len(chunks[0]):
                    break  # the OS pushed back
                if chunks.popleft() is self.tail:  # an empty chunk: nothing to write
                    self.tail = None
                continue
            self.queued -= written
            self.flushed += written
            short = written < offered  # the OS pushed back: try again when writable
            while written:
                head = chunks[0]
                size = len(head)
                if written >= size:
                    chunks.popleft()
                    if head is self.tail:
                        self.tail = None
                    elif pool is not None and type(head) is bytearray:
                        pool.give(head)  # a body it lent: reused (anything else: ignored)
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
            # A sender waiting for this (refused, or in wait_empty) sends on at once:
            # the spare bodies are kept for it; else the pool keeps little. What it
            # keeps past that is checked on within IDLE_DELAY (one timer at a time).
            if (
                pool is not None
                and pool.drained(self.want_drain or self.waiters > 0)
                and self.pool_timer is None
            ):
                pool.watch()
                self.pool_timer = self.loop.timers.add(IDLE_DELAY, self.pool_idle)
            self.notify()

    def pool_idle(self) -> None:
        """The body pool's idle check, armed by :meth:`flush` (loop thread, from the
        timer): under the lock, trim the pool's spare bodies if none was lent since the
        check was armed, else arm it once more (see :meth:`BodyPool.expire`). Nothing
        once the connection is closed (``close_connection`` cancels the timer and
        clears the pool)."""
        with self.lock:
            self.pool_timer = None
            pool = self.pool
            if pool is None or self.fd < 0:
                return
            if pool.expire():
                self.pool_timer = self.loop.timers.add(IDLE_DELAY, self.pool_idle)


class DatagramConnection(Connection):
    """A connection whose every write is one whole datagram (UDP).

    One made by ``connect`` is ready as soon as it exists (``send`` works at once;
    ``Connected`` is still emitted by the loop). A datagram goes straight to the OS
    unless earlier ones wait in the queue; the queue only fills when the OS pushes back
    (a full socket buffer). A datagram the OS refuses (network unreachable, too large
    for the path...) is dropped and logged: it never ends the connection.
    """

    __slots__ = ()

    def created(self) -> None:
        """One made by ``connect`` to an address is ready at once."""
        # Accepted ones still go through pending(), and ones to a host name first dial.
        if self.listener_id is None and type(self.remote) is not Dial:
            self.move(READY)
            self.established = True
            self.resolved = True

    def _write_now(self, packet: Buffer) -> SendStatus | None:
        """Hand one datagram to the OS: its status, or None if the OS pushes back."""
        sock = self.sock
        try:
            if sock is None:
                self.remote.write(packet)
                return _SENT
            try:  # the built-in transport's write, without its frame
                if _C_SOCKIO:
                    _send(sock, packet)
                else:
                    sock.send(packet)
            except ConnectionRefusedError:
                # The error belongs to an earlier datagram (ICMP port unreachable) and
                # the kernel did not send this one; it is cleared now, so send again.
                sock.send(packet)
            return _SENT
        except BlockingIOError:
            return None
        except OSError as exc:
            return drop_datagram(self.endpoint, exc) if self.state is READY else _NOT_FOUND

    def send(self, message: BytesLike | str) -> SendStatus:
        if type(message) is bytes or type(message) is bytearray:
            data: Buffer = message
        elif isinstance(message, str):
            return self._send_text(message)
        else:
            data = _as_bytes_view(message)
        max_size = self.max_size
        if max_size is not None and len(data) > max_size:
            return _TOO_BIG
        frame = self.frame
        if frame is None and not self.chunks and self.state is READY:
            # Nothing waits: no order to keep and no lock to take (each datagram is
            # atomic; two threads' datagrams have no order between them anyway).
            status = self._write_now(data)
            if status is not None:
                return status
        with self.lock:
            if self.state is not READY:
                return _NOT_AVAILABLE if self.state is PENDING else _NOT_FOUND
            packet: Buffer = data
            if frame is not None:  # frame() runs under the lock, in send order
                framed = frame(data)
                if framed is None:
                    return _NOT_AVAILABLE  # the transport refuses it (closing)
                packet = b"".join(framed) if isinstance(framed, tuple) else framed
                if not self.chunks:
                    status = self._write_now(packet)
                    if status is not None:
                        return status
            if self.full():
                return self._refuse()  # counted, and logged as a stream's refusal is
            packet = bytes(packet)  # the caller may reuse its buffer once send returns
            self.push(packet)
            self.queued += len(packet)
            self.arm_write()
            return _SENT

    def flush(self) -> None:
        """Write queued datagrams until the queue is empty or the OS pushes back."""
        chunks = self.chunks
        if isinstance(chunks, tuple):  # nothing was ever queued
            self.queued = 0
            self.notify()
            return
        write = self.remote.write
        while chunks:
            packet = chunks[0]
            try:
                write(packet)
            except BlockingIOError:
                return
            except OSError as exc:
                drop_datagram(self.endpoint, exc)
            chunks.popleft()
            self.queued -= len(packet)
        self.queued = 0
        self.notify()


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


def connection_class(remote: Remote) -> type[Connection]:
    """The node's connection class for ``remote``: datagram transports have their own."""
    return DatagramConnection if type(remote).datagrams else Connection


# A hook whose effect needs a capability, and the declaration that enables it.
_NEEDS: Final = (
    ("header", "framing = Framing.HEADER", lambda cls: cls.framing is Framing.HEADER),
    ("incomplete", "reports_incomplete = True", lambda cls: cls.reports_incomplete),
    ("take_output", "has_output = True", lambda cls: cls.has_output),
    ("frame_text", "text_messages = True", lambda cls: cls.text_messages),
)
# What bind() reads of a remote's class, by class (see _learn). Classes are few and
# live as long as their module: kept, not weakly referenced.
_class_facts: dict[type[Remote], tuple[bool, bool, bool, bool, Framing, bool, bool]] = {}


def _learn(cls: type[Remote]) -> tuple[bool, bool, bool, bool, Framing, bool, bool]:
    """The capabilities ``cls`` declares (``datagrams``, ``reports_incomplete``,
    ``has_output``, ``full_duplex``, ``framing``) and whether it overrides
    ``buffered()`` and ``_send_pool()``; read once per class, which is checked then
    (see :func:`_check_declared`)."""
    _check_declared(cls)
    facts = (
        bool(cls.datagrams),
        bool(cls.reports_incomplete),
        bool(cls.has_output),
        bool(cls.full_duplex),
        cls.framing,
        cls.buffered is not Remote.buffered,
        cls._send_pool is not Remote._send_pool,
    )
    _class_facts[cls] = facts
    return facts


def _check_declared(cls: type[Remote]) -> None:
    """Warn, once per class, of a hook the class overrides but whose capability it does
    not declare: the node never calls it (capabilities are declared, never guessed)."""
    for hook, declaration, declared in _NEEDS:
        if getattr(cls, hook) is not getattr(Remote, hook) and not declared(cls):
            warnings.warn(
                f"{cls.__qualname__} overrides {hook}() but does not declare {declaration}: "
                "the node never calls it (see the capabilities of Remote)",
                stacklevel=5,
            )


def drop_datagram(endpoint: Endpoint, exc: OSError) -> SendStatus:
    """The OS refused one datagram: log it, drop it, and say why in a status."""
    if exc.errno == errno.EMSGSIZE:
        log.debug("datagram to %s dropped: too large for the path (%s)", endpoint, exc)
        return _TOO_BIG
    log.debug("datagram to %s dropped: %s", endpoint, describe(exc))
    return _NOT_AVAILABLE


def _readonly(data: Buffer) -> bool:
    """True if ``data`` can never change: safe to queue by reference, without a copy."""
    return isinstance(data, memoryview) and data.readonly and type(data.obj) is bytes


def as_buffer(data: BytesLike) -> Buffer:
    """``data`` as bytes a transport can write: itself if ``bytes`` or ``bytearray``, else
    a flat byte view (see :func:`_as_bytes_view`)."""
    if type(data) is bytes or type(data) is bytearray:
        return data
    return _as_bytes_view(data)


def _as_bytes_view(data: BytesLike) -> Buffer:
    """A flat view of ``data`` whose ``len()`` counts bytes (or a copy, if not contiguous).

    ``array('i')`` or a 2-D memoryview would otherwise announce their item count as the
    message size and desynchronise the peer.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.c_contiguous:
        return view.cast("B") if view.format != "B" or view.ndim != 1 else view
    return view.tobytes()


def describe(exc: BaseException | None) -> str:
    """A short reason for a log line: ``strerror (errno N)`` for an OS error."""
    if exc is None:
        return "no reason given"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    return str(exc) or type(exc).__name__
