"""The driver: readiness in, adapter calls, events out.

Theory of operation
-------------------
The poller says which descriptors are ready; :attr:`Driver.handlers` maps each one to
the bound method that serves it, chosen by what the resource is and where it is in its
life (a connection still in its handshake, a ready one, one closing, a listener, an
attempt of a dial). A handler calls the transport (``pending``, ``receive``, ``write``
through the send queue, ``accept``) and turns what it says into events:
``Connected``, ``Accepted``, ``Message``, ``Drained``, ``Disconnected``. Events go to
:attr:`Driver.emit`: the user's callback while a loop runs, else a backlog.

A ready connection's handler goes straight to reading: the hot path of every message
received is ``poll -> _on_ready_connection -> _on_readable -> Remote.receive -> emit``.

Listeners are served by :class:`~message_io.network.acceptor.Acceptor`, built on this
class.

The end of a connection is one of three: :meth:`Driver.lost` (the peer left or the
connection broke: ``Disconnected``), :meth:`Driver.linger` (removed by the user: write
what was queued, bounded in time) and :meth:`Driver.fail_pending` (never became ready:
``Connected(ep, False)`` for a connect). Each ends in :meth:`Driver.close_connection`,
which frees everything at once.

Everything here runs on the thread that drives the loop, except the ``register_*``
methods, which any thread may call.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..errors import FrameError, connect_error
from ..util.guarded import Guarded
from ..util.throttle import LogThrottle
from ..util.timers import TimerHeap
from . import fd_table, new_message
from .adapter import ConnectionInfo, PendingStatus, Readiness, ReadStatus, format_address
from .connection import Connection, Host, connection_class, describe
from .dial import Dial, pending_status
from .input_guard import DEFAULT_MAX_INCOMPLETE_BYTES, InputGuard
from .listener import Listener
from .net_event import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Message,
    MessageDraft,
    TextMessage,
)
from .poller import HANGUP, READ, WRITE, Poller, Waker
from .reader import CLOSED as _READ_CLOSED
from .reader import OUTPUT as _OUTPUT
from .reader import TEXT as _TEXT
from .registry import Registry
from .resource import CLOSED, CLOSING, PENDING, READY

__all__ = ["CLOSE_LINGER", "Driver"]

log = logging.getLogger("message_io")

# what one connection's flush did (Driver._flush_one)
_KEPT: Final = 0
_BROKEN: Final = 1
_DRAINED: Final = 2

# How long a removed connection may take to write what was queued before it is closed.
CLOSE_LINGER: Final = 5.0

_get_ident: Final = threading.get_ident
# Final: compiled, C statics, not looked up in the module's dictionary per message.
_DRAFT: Final[Any] = MessageDraft
_MESSAGE: Final = Message
# The C build's Message maker (see new_message); without it, the draft above.
_C_MESSAGE: Final = new_message.COMPILED
_new_message: Final[Any] = new_message.new_message
_GUARDED: Final = Guarded
# The enum's members as statics: ``ReadStatus.OK`` is a lookup through the metaclass's
# ``__getattr__`` (70 ns) on every read.
_OK: Final = ReadStatus.OK
_DISCONNECTED: Final = ReadStatus.DISCONNECTED
_INCOMPLETE: Final = PendingStatus.INCOMPLETE
_PENDING_READY: Final = PendingStatus.READY


# Readiness(n) for n in 0..3, made once: a Flag's constructor runs Python code each call.
_READINESS: Final = tuple(Readiness(n) for n in range(4))


def _readiness(mask: int) -> Readiness:
    return _READINESS[(1 if mask & READ else 0) | (2 if mask & WRITE else 0)]


def _interest(readiness: Readiness) -> int:
    # The four values by identity first: a Flag's & and its members' lookups run Python.
    for mask in range(4):
        if _READINESS[mask] is readiness:
            return (READ if mask & 1 else 0) | (WRITE if mask & 2 else 0)
    return (READ if readiness & Readiness.READ else 0) | (
        WRITE if readiness & Readiness.WRITE else 0
    )


def _discard(_data: bytes | str) -> None:
    pass


class Driver(Host):
    """Serves ready descriptors and turns what the transports say into events.

    Attributes (internal API, read on the hot paths):
        emit: Where events go.
        running: False once the node stops: handlers return at once.
        iteration: Counts poll rounds (a connection writes its first send of each at once).
        dirty: Connections to flush at the end of this round.
        driver: The ident of the thread driving the loop now, if any.
        handlers: The handler of each polled descriptor.
        holding: Connections whose events wait for ``connect_sync`` to return.
        input_paused: Nothing is read (see ``Loop.pause_input``).
    """

    # Slots: the hot paths read these attributes on every event, and CPython 3.11 keeps
    # a plain instance's attributes inline (fast) only up to 30 of them.
    __slots__ = (
        "connections",
        "dirty",
        "driver",
        "emit",
        "guard",
        "handlers",
        "holding",
        "input_paused",
        "iteration",
        "keep_going",
        "listeners",
        "peer_log",
        "poller",
        "registrations",
        "registry",
        "requests",
        "running",
        "shut",
        "sync_cond",
        "sync_waiters",
        "timers",
        "waker",
    )

    def __init__(self, *, max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES) -> None:
        self.poller = Poller()
        self.waker = Waker()
        self.poller.register(self.waker.fileno(), READ)
        self.timers = TimerHeap(self.wake)
        # Lines a peer can cause, one budget for all: disconnections with their reason,
        # peers dropped during their handshake, accept errors, callback exceptions.
        self.peer_log = LogThrottle(log, "peer and callback lines", schedule=self.timers.add)
        self.registry = Registry()
        self.connections = self.registry.connections  # the same dicts, for lookups
        self.listeners = self.registry.listeners
        # Bound once: compiled, self.still_running makes a new bound method each time,
        # and the loop hands it to the timers on every turn that has one.
        self.keep_going: Callable[[], bool] = self.still_running
        self.guard = InputGuard(
            max_incomplete_bytes=max_incomplete_bytes,
            registry=self.registry,
            timers=self.timers,
            peer_log=self.peer_log,
            lost=self.lost,
            running=self.keep_going,
        )
        # fd -> its handler, called with the readiness flags; or a ready connection,
        # whose handler is _on_ready_connection, called natively (no partial). Indexed
        # by descriptor (see fd_table); None where nothing is polled.
        self.handlers: list[Callable[[int], None] | Connection | None] = []
        self.emit: Callable[[Any], object] = _discard
        self.running = True
        self.shut = False
        self.driver: int | None = None
        self.iteration = 0
        self.dirty: list[Connection] = []
        self.holding = 0
        self.input_paused = False
        # Resources the driver is to poll once their creators hold their ids.
        # With the handler of each: it is installed when the descriptor is polled, never
        # before (a descriptor number reused in this iteration could otherwise receive
        # the readiness that the poll reported for the closed one).
        self.registrations: deque[tuple[Connection | Listener, Callable[[int], None]]] = deque()
        # connect_sync() callers waiting for an outcome (see decided).
        self.sync_cond = threading.Condition()
        self.sync_waiters = 0
        # What other threads ask of the driver: (resource, broken), see request_check.
        self.requests: deque[tuple[Connection | Listener, bool]] = deque()

    def still_running(self) -> bool:
        """False once the node stops: for a callback that must stop early then."""
        return self.running

    def wake(self) -> None:
        """Interrupt the poll, unless called by the driver itself (it will look anyway)."""
        if self.driver != _get_ident():
            self.waker.wake()

    def decided(self, conn: Connection) -> None:
        """``conn``'s outcome is known (ready, failed or closed): wake ``connect_sync``."""
        conn.resolved = True
        if self.sync_waiters:
            with self.sync_cond:
                self.sync_cond.notify_all()

    def request_check(self, conn: Connection, broken: bool = False) -> None:
        """Ask the loop to look at ``conn`` (its write side failed if ``broken``). Any thread.

        Called with the connection's lock held, so it never handles the request inline:
        the next loop iteration does (a pending request makes the poll return at once).
        """
        self.requests.append((conn, broken))
        self.waker.wake()

    # -- adding resources (any thread) ----------------------------------------------

    def register_connection(
        self, conn: Connection, *, publish_later: bool = False, poll: bool = True
    ) -> None:
        """Add ``conn`` to the node and poll it.

        With ``publish_later`` (``connect()`` from a thread other than the loop's), the
        driver polls it only once ``conn.published`` is set, which ``connect()`` does as
        the last thing before it returns: no event about the endpoint can reach the
        callback before its creator holds it.

        Without ``poll`` (an accepted connection, whose handshake the caller starts at
        once with :meth:`on_pending`), it is not polled yet: :meth:`on_pending` polls it
        for what it waits for next, in one system call rather than two.
        """
        # Ready already (UDP): the first poll (the socket is writable) says Connected.
        start = self._on_datagram_start if conn.state is READY else self._on_connection
        handler = functools.partial(start, conn)
        with self.registry.lock:
            self.registry.add_connection(conn)
            driver = self.driver
            if not publish_later or driver is None or driver == _get_ident():
                handlers = self.handlers
                fd = conn.fd
                if 0 <= fd < len(handlers):  # fd_table.put, inline: no call per connection
                    handlers[fd] = handler
                else:
                    fd_table.put(handlers, fd, handler)
                if poll:
                    try:
                        self.poller.register(conn.fd, READ | WRITE)
                    except BaseException:
                        # Not polled: not added either (the caller closes it).
                        fd_table.take(handlers, fd)
                        self.registry.forget(conn)
                        self.registry.closed(fd)
                        raise
                return
            conn.published = False
            self.registrations.append((conn, handler))
        self.waker.wake()

    def register_dial(self, conn: Connection) -> None:
        """Add ``conn``, a connection to a host name (its remote a :class:`Dial`), to
        the node. Nothing is polled yet: its creator calls ``dial.start()`` once it
        holds the endpoint, and the attempts are polled through :meth:`watch`."""
        with self.registry.lock:
            self.registry.add_connection(conn)

    def register_published(self) -> None:
        """Poll the connections whose creators now hold their endpoints (see
        ``register_connection``); the others wait (the poll does not sleep meanwhile:
        their creators are about to return)."""
        waiting: deque[tuple[Connection | Listener, Callable[[int], None]]] = deque()
        registrations = self.registrations
        while registrations:
            resource, handler = entry = registrations.popleft()
            if not resource.published:
                waiting.append(entry)
                continue
            with resource.lock:
                if resource.fd >= 0:  # not closed meanwhile
                    fd_table.put(self.handlers, resource.fd, handler)
                    if isinstance(resource, Listener):
                        self.poller.register(resource.fd, resource.interest())
                    else:
                        self.poller.register(
                            resource.fd, READ | WRITE if resource.reading else WRITE
                        )
        registrations.extend(waiting)

    # -- dials ---------------------------------------------------------------------------

    def watch(self, fd: int, interest: Readiness, handler: Callable[[Readiness], None]) -> None:
        """Poll ``fd`` (one attempt of a dial) and call ``handler`` when it is ready."""
        fd_table.put(self.handlers, fd, lambda flags: handler(_readiness(flags)))
        self.poller.register(fd, _interest(interest))

    def unwatch(self, fd: int) -> None:
        """Stop polling ``fd`` (an attempt that lost, or failed)."""
        if fd_table.take(self.handlers, fd) is not None and not self.shut:
            with contextlib.suppress(OSError, ValueError):
                self.poller.unregister(fd)

    def dial_won(self, conn: Connection, info: ConnectionInfo, status: PendingStatus) -> None:
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
            if conn.state is not PENDING:  # cannot happen: closing the dial closes attempts
                self.unwatch(remote.fileno())
                remote.close()
                return
            conn.bind(remote)
            conn.local_addr = info.local_addr
            with self.registry.lock:
                self.registry.resources[conn.fd] = conn
                fd_table.put(self.handlers, conn.fd, functools.partial(self._on_connection, conn))
        self._after_pending(conn, status)

    # -- writing -----------------------------------------------------------------------

    def flush_dirty(self) -> None:
        dirty = self.dirty
        self.dirty = []
        for conn in dirty:
            outcome = self._flush_one(conn)
            if not self.running:
                return
            if outcome == _BROKEN:
                self.lost(conn)
            elif outcome == _DRAINED:
                self.emit(Drained(conn.endpoint))

    def _flush_one(self, conn: Connection) -> int:
        """Write what ``conn`` queued since the last turn: ``_BROKEN`` if the write
        failed, ``_DRAINED`` if its queue emptied with a ``Drained`` owed, else
        ``_KEPT`` (the rest waits for writability)."""
        with conn.lock:
            conn.dirty = False
            if conn.state is not READY or conn.write_armed or not conn.chunks:
                return _KEPT
            try:
                conn.flush()
            except Exception as exc:  # noqa: BLE001
                log.debug("write to %s failed: %r", conn.endpoint, exc)
                return _BROKEN
            if conn.chunks:
                conn.arm_write()
                return _KEPT
            return _DRAINED if conn.drained() else _KEPT

    # -- connections -------------------------------------------------------------------

    def _on_connection(self, conn: Connection, flags: int) -> None:
        state = conn.state
        if state is READY:
            if flags & HANGUP and not conn.reading and not conn.remote.datagrams:
                # Reset while not read (paused): epoll reports it whatever the interest,
                # and nothing would read the error away: the loop would spin on it.
                self.lost(conn)
                return
            if flags & WRITE:
                self._on_writable(conn)
            if flags & READ and conn.state is READY:
                self._on_readable(conn)
        elif state is PENDING:
            self.on_pending(conn, flags)
        elif state is CLOSING:
            self._on_closing(conn, flags)

    def _on_datagram_start(self, conn: Connection, flags: int) -> None:
        """First poll of a datagram connection: announce it, then handle it as usual."""
        with conn.lock:
            if conn.state is READY and conn.fd >= 0:
                # see Loop.iterate, _on_ready_connection; its slot exists (it has a handler)
                self.handlers[conn.fd] = conn
                announce = True
                if not conn.write_armed:
                    self.poller.modify(conn.fd, READ)
                    flags &= ~WRITE
            else:
                announce = False
        if announce:
            if self._announce(conn, Connected(conn.endpoint, True)):
                return  # read once connect_sync() has returned
            if conn.state is not READY or not self.running:
                return
        self._on_connection(conn, flags)

    def _on_ready_connection(self, conn: Connection, flags: int) -> None:
        """The handler once a connection is ready: straight to reading, the hot case."""
        if flags & WRITE or conn.state is not READY:
            self._on_connection(conn, flags)
        else:
            self._on_readable(conn)

    def _on_readable(self, conn: Connection) -> None:
        if not conn.reading:  # paused earlier in this iteration, after the poll said readable
            return
        batch: list[bytes | str] = []  # str: a text message
        text = _TEXT  # non-zero: the batch may hold text messages, test each item
        reader = conn.reader
        try:
            if reader is not None:
                # A built-in transport: its compiled reader, called directly.
                if conn.full_duplex:
                    result = reader.read(batch)
                else:
                    with conn.lock:
                        result = reader.read(batch)
                        if result & _OUTPUT:
                            self._take_replies(conn)
                status = _DISCONNECTED if result & _READ_CLOSED else _OK
                text = result & _TEXT
            elif conn.full_duplex:
                status = conn.remote.receive(batch.append)
                if conn.output is not None:
                    with conn.lock:
                        self._take_replies(conn)
            else:
                with conn.lock:
                    status = conn.remote.receive(batch.append)
                    if conn.output is not None:
                        self._take_replies(conn)
        except (OSError, FrameError) as exc:
            self.peer_log.log(logging.INFO, "disconnecting %s: %s", conn.endpoint, describe(exc))
            status = _DISCONNECTED
        except Exception:
            log.exception("receive() of %s failed; disconnecting it", conn.endpoint)
            status = _DISCONNECTED
        if conn.idle_timeout is not None:
            conn.last_read = time.monotonic()
        if status is _OK:
            # Once per read, not per message: what is left of an unfinished message.
            if reader is not None:
                held = reader.incomplete()
            else:
                incomplete = conn.incomplete
                held = incomplete() if incomplete is not None else 0
            if held or conn.held:
                self.guard.account(conn, held, bool(batch))
        if batch:
            emit = self.emit
            # The compiled guard of a for_each callback is called as the native method it
            # is, without the generic call's argument parsing on every message.
            guarded = emit if type(emit) is _GUARDED else None
            make = _new_message if _C_MESSAGE else None
            endpoint = conn.endpoint
            for data in batch:
                # A text message (WebSocket text frame), only where the reader says
                # there may be one. A class test, not isinstance(): a third of the cost.
                if text and type(data) is str:
                    emit(TextMessage(endpoint, data.encode(), data))
                else:
                    # Message(endpoint, data), made directly or from a draft (see
                    # MessageDraft): this runs once per message received.
                    if make is not None:
                        message = make(endpoint, data)
                    else:
                        message = _DRAFT()
                        message.endpoint = endpoint
                        message.data = data
                        message.__class__ = _MESSAGE
                    if guarded is not None:
                        guarded.__call__(message)
                    else:
                        emit(message)
                if conn.state is not READY or not self.running:
                    return
        if status is _DISCONNECTED:
            self.lost(conn)

    def _take_output(self, conn: Connection) -> None:
        """Queue what the transport wants to send by itself. Holds the lock."""
        assert conn.output is not None
        wire = conn.output()
        if wire and conn.state is READY:
            conn.queue_wire(wire)
            if not conn.write_armed:
                conn.schedule()
        elif wire and conn.state is CLOSING:
            conn.queue_wire(wire)

    def _take_replies(self, conn: Connection) -> None:
        """Queue what the transport answers to what it read (pongs, a close reply), as
        :meth:`_take_output`; if the queue then holds its limit or more, the peer is
        read no more until the queue has emptied (``Connection.drained``): a peer that
        sends pings and never reads the pongs would otherwise grow the queue without
        bound. Holds the lock."""
        self._take_output(conn)
        if conn.queued >= conn.limit and not conn.backlogged and conn.state is READY:
            conn.backlogged = True
            conn.update_reading()

    def _heartbeat(self, conn: Connection, interval: float) -> None:
        """Call the transport's heartbeat every ``interval`` seconds while ready.

        The timer is the connection's ``beat_timer``: cancelled when it closes, so a
        closed connection is freed at once, not when its next beat would have come.
        (A partial, not a closure that re-arms itself: that would be a reference cycle
        holding the connection until the garbage collector runs.)
        """
        conn.beat_timer = self.timers.add(interval, functools.partial(self._beat, conn, interval))

    def _beat(self, conn: Connection, interval: float) -> None:
        """One heartbeat of ``conn``: the transport's keepalive and liveness check,
        unless the peer cannot be judged this time. It cannot while the connection is
        not read (paused: its answer would wait unread), nor while its send queue
        drains (the peer reads what was sent, so it lives, and a ping queued behind
        that data reaches it only later): then the beat is skipped, and the next one
        judges the whole time since the last ping. One not read because its own
        replies filled the queue (``backlogged``) is judged unless the queue drains:
        a peer that floods pings and reads nothing is found out."""
        conn.beat_timer = None
        if conn.state is not READY or not self.running:
            return
        flushed = conn.flushed
        if flushed != conn.flushed_at_beat or (not conn.reading and not conn.backlogged):
            conn.flushed_at_beat = flushed
            self._heartbeat(conn, interval)
            return
        broken: BaseException | None = None
        with conn.lock:
            try:
                conn.remote.heartbeat()
                if conn.output is not None:
                    self._take_output(conn)
            except Exception as exc:  # noqa: BLE001 - any failure ends this connection
                broken = exc
            conn.flushed_at_beat = conn.flushed  # its own ping is no sign of the peer
        if broken is not None:
            self.peer_log.log(logging.INFO, "disconnecting %s: %s", conn.endpoint, describe(broken))
            self.lost(conn)
        elif conn.state is READY:
            self._heartbeat(conn, interval)

    def _on_writable(self, conn: Connection) -> None:
        broken = False
        drained = False
        with conn.lock:
            if conn.state is not READY:
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
                self.poller.modify(conn.fd, conn.interest())
                conn.direct_iter = -1
                drained = conn.drained()
        if broken:
            self.lost(conn)
        elif drained:
            self.emit(Drained(conn.endpoint))

    def on_pending(self, conn: Connection, flags: int) -> None:
        self._after_pending(conn, pending_status(conn.remote, _readiness(flags), conn.endpoint))

    def _after_pending(self, conn: Connection, status: PendingStatus) -> None:
        """Act on what ``pending()`` said: wait more, announce the connection, or fail."""
        if status is _INCOMPLETE:
            if conn.fd >= 0:
                self.poller.put(conn.fd, _interest(conn.remote.pending_interest()))
            return
        if status is _PENDING_READY:
            with conn.lock:
                if conn.state is not PENDING:
                    return
                # Read unless paused meanwhile (pause_reading while it connected, or
                # the node's input is paused). Polled first: if the poller refuses it,
                # it is still pending, and fails as such.
                conn.reading = conn.reading_wanted()
                self.poller.put(conn.fd, conn.interest())
                conn.move(READY)
                conn.established = True
                if conn.reader is None:
                    conn.take_reader()  # a transport with a handshake has one only now
                # see Loop.iterate, _on_ready_connection; its slot exists (it has a handler)
                self.handlers[conn.fd] = conn
            self.decided(conn)
            self.timers.cancel(conn.deadline_timer)
            conn.deadline_timer = None
            remote = conn.remote
            if remote.heartbeat_interval is not None:
                self._heartbeat(conn, remote.heartbeat_interval)
            self.guard.start_watch(conn)
            debug = log.isEnabledFor(logging.DEBUG)  # one call, not debug()'s two
            if conn.listener_id is None:
                if debug:
                    log.debug("connected to %s", conn.endpoint)
                if self._announce(conn, Connected(conn.endpoint, True)):
                    return  # read once connect_sync() has returned: nothing comes first
            else:
                if debug:
                    log.debug("accepted %s on listener %r", conn.endpoint, conn.listener_id)
                self.emit(Accepted(conn.endpoint, conn.listener_id))
            if conn.is_ready() and self.running and conn.buffers and remote.buffered():
                self._on_readable(conn)
            return
        self._fail_pending(conn)

    # -- events held for connect_sync -------------------------------------------------

    def _announce(self, conn: Connection, event: Any) -> bool:
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
        if conn.state is READY:
            with conn.lock:
                conn.withheld = True
                conn.update_reading()
        return True

    def release(self, conn: Connection) -> None:
        parked, conn.parked = conn.parked, None
        if not parked:
            return
        self.holding -= 1
        for event in parked:
            if not self.running:
                return
            self.emit(event)
        if conn.state is not READY:
            return
        with conn.lock:
            withheld = conn.withheld
            conn.withheld = False
            conn.update_reading()
        if withheld and conn.reading and self.running and conn.buffers and conn.remote.buffered():
            self._on_readable(conn)

    # -- the end of a connection ----------------------------------------------------

    def fail_pending(self, conn: Connection, reason: BaseException | None) -> None:
        """Give up on a pending connection (connect timeout)."""
        if conn.state is not PENDING:
            return
        if reason is not None:
            conn.remote.failure = reason
        self._fail_pending(conn)

    def _fail_pending(self, conn: Connection) -> None:
        self.registry.forget(conn)
        with conn.lock:
            if conn.state is not PENDING:
                return
            conn.move(CLOSED)
        self.close_connection(conn)
        self.decided(conn)
        failure = conn.remote.failure
        if conn.listener_id is None:
            log.debug("connection to %s failed: %s", conn.endpoint, describe(failure))
            error = connect_error(failure, format_address(conn.endpoint.addr))
            self._announce(conn, Connected(conn.endpoint, False, error))
        else:
            self.peer_log.log(
                logging.INFO,
                "dropped %s before it was ready: %s",
                conn.endpoint,
                describe(failure),
            )

    def lost(self, conn: Connection) -> None:
        """The peer went away (or the connection broke): remove it, say Disconnected."""
        self.registry.forget(conn)
        with conn.lock:
            state = conn.state
            conn.move(CLOSED)
            if state is READY and conn.chunks:
                # One last non-blocking write: a close reply the transport just queued.
                with contextlib.suppress(Exception):
                    conn.flush()
            conn.notify()
        self.close_connection(conn)
        if state is READY:
            log.debug("%s disconnected", conn.endpoint)
            self._announce(conn, Disconnected(conn.endpoint))

    def linger(self, conn: Connection) -> None:
        """A removed connection: write what was queued, then close (bounded in time)."""
        with conn.lock:
            if not conn.chunks:
                conn.move(CLOSED)
        if conn.state is CLOSED:
            self.close_connection(conn)
            return
        try:
            self.poller.modify(conn.fd, WRITE if conn.read_closed else READ | WRITE)
        except OSError:
            pass
        self.timers.cancel(conn.deadline_timer)
        conn.deadline_timer = self.timers.add(CLOSE_LINGER, lambda: self.close_connection(conn))

    def _on_closing(self, conn: Connection, flags: int) -> None:
        done = False
        if flags & READ:
            try:  # the user removed it: discard what arrives
                eof = conn.remote.receive(_discard) is _DISCONNECTED
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
            self.close_connection(conn)

    def close_connection(self, conn: Connection) -> None:
        remote = conn.remote
        if type(remote) is Dial:  # still dialing: no descriptor of its own
            with conn.lock:
                conn.move(CLOSED)
                conn.notify()
            remote.close()
            self.timers.cancel(conn.deadline_timer)
            conn.deadline_timer = None
            self.decided(conn)
            return
        with conn.lock:
            if conn.fd < 0:
                return
            fd = conn.fd
            conn.fd = -1
            conn.move(CLOSED)
            conn.chunks = ()  # frees what was queued
            conn.tail = None
            conn.queued = 0
            if conn.pool is not None:
                conn.pool.clear()  # and the bodies lent or kept for it
            conn.notify()
        # Free everything at once: its timers hold it (and its protocol state) alive.
        for timer in (conn.deadline_timer, conn.beat_timer, conn.watch_timer, conn.pool_timer):
            if timer is not None:  # most are: no call for them
                self.timers.cancel(timer)
        conn.deadline_timer = conn.beat_timer = conn.watch_timer = conn.pool_timer = None
        self.guard.released(conn)
        self.poller.unregister(fd)
        handlers = self.handlers
        if fd < len(handlers):  # fd_table.take, inline (fd >= 0)
            handlers[fd] = None
        self.registry.closed(fd)
        try:
            conn.remote.close()
        except Exception:
            log.exception("close() of %s failed", conn.endpoint)
        self.decided(conn)

    # -- connect_sync without a running loop ------------------------------------------
