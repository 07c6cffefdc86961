"""The loop of a node: who drives it, one iteration, the requests of other threads, the end.

Theory of operation
-------------------
A node owns one :class:`Loop`. Whoever *drives* it holds ``drive_lock``: the thread in
``for_each``, the background thread of ``for_each_async``, a ``receive`` call of the pull
API, ``connect_sync`` resolving its own connection before any loop runs, or an asyncio
event loop turn by turn. Only the driver polls, reads, accepts, fires timers and delivers
events, so the user's callback always runs on one thread, one event at a time.

One iteration (:meth:`Loop.iterate`):

1. compute the poll timeout: 0 if signals are ready, else the earliest timer (internal
   deadlines and the user's timed signals share one heap), or forever;
2. poll; for each ready descriptor call its handler (:mod:`.driver`);
3. write out the connections that the callback sent to (*dirty* connections), so that
   all messages sent during one iteration leave in as few system calls as possible;
4. run due timers and deliver ready signals (a bounded number per iteration, so a
   signal storm cannot starve the network), then flush again.

Other threads ask for what only the driver may do (close a resource, look at a
connection whose write failed) through a queue and the waker; a thread that finds
nobody driving handles its request itself, under the lock.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, TypeVar

from ..events import NOTHING, EventSender, Signal
from ..util.count import Count
from ..util.timers import Timer
from . import epoll_wait, fd_table
from .acceptor import Acceptor
from .adapter import format_address
from .connection import Connection
from .dial import Dial
from .endpoint import Address, ResourceId, ResourceType
from .input_guard import DEFAULT_MAX_INCOMPLETE_BYTES
from .listener import Listener
from .poller import signal_wakeup
from .resolver import Resolver
from .resource import CLOSED, CLOSING, PENDING, READY

__all__ = ["DEFAULT_MAX_INCOMPLETE_BYTES", "Loop"]

log = logging.getLogger("message_io")

S = TypeVar("S")

# Signals delivered per iteration before the network is polled again.
_SIGNALS_PER_ITERATION: Final = 1024
# The poll timeout while events wait for connect_sync() to return (see release_events).
_HOLD_POLL: Final = 0.001
# The longest finite wait epoll_wait takes (INT_MAX ms, near enough): a longer timeout
# (a timer or a receive() days away) polls this long, and the turn after looks again.
_LONGEST_POLL: Final = 2_147_483.0

_get_ident: Final = threading.get_ident
# A static: compiled, time.monotonic() looks up the module and then its attribute.
_monotonic: Final = time.monotonic
_NOTHING: Final = NOTHING
_Signal: Final[Any] = Signal
# The C build's wait on an epoll (see epoll_wait); without it, the poller's own poll.
_C_WAIT: Final = epoll_wait.COMPILED
_wait: Final = epoll_wait.wait
_wait_until: Final = epoll_wait.wait_until
_passed: Final = epoll_wait.passed


def _poll_nothing(_timeout: float | None) -> list[tuple[int, int]]:
    """The poll of a loop whose descriptors an outer event loop watches."""
    return []


class Loop(Acceptor, Generic[S]):
    """The engine behind NodeHandler, NetworkController and NodeListener."""

    __slots__ = (
        "_epoll",
        "_poll",
        "_releases",
        "backlog",
        "drive_lock",
        "drive_wanted",
        "owner",
        "resolver",
        "signals",
    )

    def __init__(
        self,
        *,
        max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        super().__init__(max_incomplete_bytes=max_incomplete_bytes)
        self.resolver = resolver  # host names of connect(), on a resolver thread
        self.signals: EventSender[S] = EventSender(self.wake, self.timers)
        self.ready_signals: Count = self.signals.ready_count  # read in place per turn
        fd_table.put(self.handlers, self.waker.fileno(), self._on_wake)
        self._poll = self.poller.fast_poll
        # With the C build, the epoll is waited on directly (see epoll_wait).
        self._epoll = self.poller.epoll if _C_WAIT else None
        self.drive_lock = threading.Lock()
        self.drive_wanted = 0  # threads blocked in acquire_drive() (under sync_cond)
        # The thread an outer event loop drives the node from, turn by turn (asyncio):
        # blocking calls refuse to run there even between turns.
        self.owner: int | None = None
        self.backlog: deque[Any] = deque()
        self.emit = self.backlog.append
        self._releases: deque[Connection] = deque()  # see release_events

    def on_loop_thread(self) -> bool:
        """True on the thread that runs the loop (where waiting for it would deadlock)."""
        ident = _get_ident()
        return ident in (self.driver, self.owner)

    def new_id(self, adapter_id: int, resource_type: ResourceType) -> ResourceId:
        """A fresh resource id (see :meth:`Registry.new_id`). Any thread."""
        return self.registry.new_id(adapter_id, resource_type)

    def add_timer(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the loop thread after ``delay`` seconds. Any thread."""
        return self.timers.add(delay, callback)

    def cancel_timer(self, timer: Timer | None) -> None:
        """Cancel ``timer`` (None: nothing) and release its callback at once. Any thread."""
        self.timers.cancel(timer)

    @contextlib.contextmanager
    def _signal_wakeup(self) -> Iterator[None]:
        """On the main thread, make a signal (Ctrl+C) interrupt the poll."""
        if self.shut:
            yield
            return
        with signal_wakeup(self.poller) as wakeup:
            if wakeup is None:
                yield
                return
            fd, drain = wakeup
            fd_table.put(self.handlers, fd, drain)
            try:
                yield
            finally:
                fd_table.take(self.handlers, fd)

    # -- any thread ------------------------------------------------------------------

    def remove(self, resource_id: ResourceId) -> bool:
        """Take a resource out of the node; the loop closes it. False if unknown."""
        resource = self.registry.take(resource_id)
        if isinstance(resource, Connection):
            conn = resource
            with conn.lock:
                was_ready = conn.state is READY
                conn.move(CLOSING if was_ready else CLOSED)
                if was_ready:
                    conn.queue_farewell(going_away=False)
                conn.notify()
            if type(conn.remote) is Dial:
                conn.remote.cancel()  # its resolver job, if not yet run, is skipped
            log.debug("removing %s (%d bytes still queued)", conn.endpoint, conn.queued)
            self.decided(conn)
            self._request(conn, False)
            return True
        if resource is not None:
            log.debug("removing listener %r", resource_id)
            resource.move(CLOSED)
            self._request(resource, False)
            return True
        return False

    def pause_input(self, paused: bool) -> None:
        """Stop (or resume) reading and accepting on every connection and listener of
        the node, while writes, timers and signals go on: for a consumer of events that
        fell behind (the asyncio listener's bounded queue). Loop thread."""
        if paused is self.input_paused:
            return
        self.input_paused = paused
        for conn in self.registry.snapshot():
            with conn.lock:
                conn.update_reading()
        for listener in list(self.listeners.values()):
            with listener.lock:
                if listener.fd >= 0 and listener.state is READY:
                    with contextlib.suppress(OSError):  # not registered yet
                        self.poller.modify(listener.fd, listener.interest())

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
            if conn.state is not READY and conn.state is not PENDING:
                return False
            conn.user_paused = paused
            conn.update_reading()
            if not paused:
                self.guard.restart_clocks(conn, time.monotonic())  # it was not read
        return True

    def _request(self, resource: Connection | Listener, broken: bool) -> None:
        if self.driver == _get_ident():
            self._handle_request(resource, broken)
            return
        if self.shut:
            return
        self.requests.append((resource, broken))
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
        self.registry.refuse()
        self._wake_sync_waiters()  # a connect_sync waiting for an outcome raises now
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
        self._wake_sync_waiters()  # a connect_sync may drive now

    # -- driving (the thread holding drive_lock) --------------------------------------

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
        """One pull: the next event, or ``NOTHING`` after ``timeout``/stop. Holds ``drive_lock``."""
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
        return backlog.popleft() if backlog and self.running else _NOTHING

    def iterate(self, max_timeout: float | None) -> None:
        """One turn of the loop (see the theory of operation)."""
        if (self.registrations or self._releases) and not self._begin_iteration():
            return
        epoll = self._epoll
        if epoll is None:
            ready = self._poll(self._poll_timeout(max_timeout))
        elif max_timeout is None:
            ready = _wait_until(epoll, self._poll_deadline())  # the C build reads the clock
        else:
            ready = _wait(epoll, self._poll_timeout(max_timeout))
        self.iteration += 1
        handlers = self.handlers
        for fd, flags in ready:
            handler = handlers[fd] if fd < len(handlers) else None  # fd_table.get, inline
            if handler is not None:
                if isinstance(handler, Connection):
                    self._on_ready_connection(handler, flags)
                else:
                    handler(flags)
                if not self.running:
                    return
        # The last handler holds its connection: one closed by it must not outlive it
        # for the rest of the turn (the callbacks below may look at what is freed).
        handler = None
        self._end_iteration()

    def on_ready(self, fd: int, flags: int) -> None:
        """One turn of the loop for the descriptor ``fd`` that an outer event loop found
        ready (``flags``: as the poller's), instead of a poll: see :meth:`attach`."""
        if (self.registrations or self._releases) and not self._begin_iteration():
            return
        self.iteration += 1
        handler = fd_table.get(self.handlers, fd)
        if handler is not None:
            if isinstance(handler, Connection):
                self._on_ready_connection(handler, flags)
            else:
                handler(flags)
            if not self.running:
                return
            handler = None  # as in iterate
        self._end_iteration()

    def attach(self, outer: Any, dispatch: Callable[[int, int], None]) -> None:
        """Let the event loop ``outer`` (asyncio's API) watch the node's descriptors
        itself, calling ``dispatch(fd, flags)`` on its thread, the caller's, which then
        runs :meth:`on_ready`; :meth:`iterate` then polls nothing (its turns run the
        timers, signals, writes and requests). See :meth:`Poller.attach`."""
        self.poller.attach(outer, dispatch, self.waker.wake)
        self._poll = _poll_nothing
        self._epoll = None

    def _begin_iteration(self) -> bool:
        """The start of a turn, when connections were published or events held for
        ``connect_sync``: poll the former, deliver the latter. False if the turn ends
        here: the node stopped, or a pull (receive) has its events and must not sleep
        in the poll."""
        if self.registrations:
            self.register_published()
        if self._releases:
            self._release_held()
            if not self.running or self.backlog:
                return False
        return True

    def _end_iteration(self) -> None:
        """The end of a turn: write what was sent, fire due timers, deliver signals."""
        if self.dirty:
            self.flush_dirty()
            if not self.running:
                return
        timers = self.timers
        entries = timers.entries
        # With the real clock, whether the first timer is due is asked in C: most turns
        # of a node with timers (a WebSocket heartbeat each) have none due, and reading
        # time.monotonic() for them cost a twentieth of a WebSocket round trip.
        if entries and (timers.clock is not _monotonic or _passed(entries[0][0])):
            timers.run_due(self.keep_going)
            if not self.running:
                return
        if self.ready_signals.value:
            self._deliver_signals()
            if self.dirty and self.running:
                self.flush_dirty()

    def next_timeout(self) -> float | None:
        """Seconds until the loop has work that no descriptor will announce (a timer, a
        signal, a pending write or request): 0 for at once, None for none. For an outer
        event loop that drives the node turn by turn with ``iterate(0)``."""
        return self._poll_timeout(None)

    def _poll_timeout(self, max_timeout: float | None) -> float | None:
        if self.requests or self.dirty or self.registrations:
            # Sends made by callbacks late in the last iteration (after its final flush,
            # e.g. on Drained) are written in the next one, which must not sleep.
            return 0.0
        if self.ready_signals.value:
            return 0.0
        if self.holding:  # connect_sync() is about to release events: look soon
            max_timeout = _HOLD_POLL if max_timeout is None else min(max_timeout, _HOLD_POLL)
        timers = self.timers.entries  # read in place: a call here costs 1% of a round trip
        if timers:
            timeout = max(0.0, timers[0][0] - _monotonic())
            max_timeout = timeout if max_timeout is None else min(timeout, max_timeout)
        if max_timeout is not None and max_timeout > _LONGEST_POLL:
            return _LONGEST_POLL
        return max_timeout

    def _poll_deadline(self) -> float | None:
        """``_poll_timeout(None)`` as a ``time.monotonic()`` deadline (0.0: at once), for
        the C build's wait, which reads the clock itself: a turn with a timer pending
        (a WebSocket heartbeat) then makes no clock reading nor float of its own here.
        As there, the heap's deadlines are taken for ``time.monotonic()`` readings."""
        if self.requests or self.dirty or self.registrations or self.ready_signals.value:
            return 0.0  # as _poll_timeout
        timers = self.timers.entries
        if self.holding:
            hold = _monotonic() + _HOLD_POLL
            return min(timers[0][0], hold) if timers else hold
        return timers[0][0] if timers else None

    def _deliver_signals(self) -> None:
        take = self.signals.take
        emit = self.emit
        for _signal in range(_SIGNALS_PER_ITERATION):
            if not self.running:
                return
            value = take()
            if value is _NOTHING:
                return
            emit(_Signal(value))

    def _on_wake(self, _flags: int) -> None:
        self.waker.drain()
        self.poller.settle()  # attached: what other threads registered meanwhile
        self._handle_requests()

    def _release_held(self) -> None:
        releases = self._releases
        while releases:
            self.release(releases.popleft())

    def _handle_requests(self) -> None:
        self._release_held()
        requests = self.requests
        # Those queued now: one that queues another (a failed re-arm) waits its turn.
        for _request in range(len(requests)):
            resource, broken = requests.popleft()
            self._handle_request(resource, broken)

    def _handle_request(self, resource: Connection | Listener, broken: bool) -> None:
        if isinstance(resource, Listener):
            self.close_listener(resource)
        elif resource.state is CLOSING:
            self.linger(resource)
        elif resource.state is CLOSED:
            self.close_connection(resource)
        elif broken:
            self.lost(resource)
        else:
            with resource.lock:
                if resource.state is READY and (resource.chunks or resource.want_drain):
                    resource.write_armed = False
                    resource.arm_write()

    # -- connections ---------------------------------------------------------------------

    def release_events(self, conn: Connection) -> None:
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

    # -- connect_sync: driving until one outcome, or waiting for it -----------------

    def acquire_drive(self, timeout: float | None = None) -> bool:
        """Take ``drive_lock`` to drive the loop, waiting until it is free, or at most
        ``timeout`` seconds (None: no limit; 0: no wait); False if it did not come.

        A ``connect_sync`` that holds it (driving the loop until its own outcome) is
        asked to hand it over: it returns at once and waits instead. A thread in
        ``receive()`` holds it until that call returns.
        """
        if self.drive_lock.acquire(blocking=False):
            return True
        with self.sync_cond:
            self.drive_wanted += 1
        try:
            self.waker.wake()
            if timeout is None:
                return self.drive_lock.acquire()
            return self.drive_lock.acquire(timeout=max(timeout, 0.0))
        finally:
            with self.sync_cond:
                self.drive_wanted -= 1
                self.sync_cond.notify_all()  # interrupted (Ctrl+C): waiters look again

    def _wake_sync_waiters(self) -> None:
        """Make the threads in :meth:`wait_decided` look again (any thread)."""
        if self.sync_waiters:
            with self.sync_cond:
                self.sync_cond.notify_all()

    def drive_until_decided(self, conn: Connection, timeout: float | None) -> None:
        """Run the loop until ``conn``'s outcome is known (caller holds ``drive_lock``).

        ``connect_sync``'s turn when nobody else drives the node: every event goes to the
        backlog, delivered once a loop runs. Returns early when ``timeout`` passes, the
        node stops, or another thread asks to drive (:meth:`acquire_drive`).
        """
        self.driver = _get_ident()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._signal_wakeup():  # Ctrl+C interrupts the wait at once
                while self.running and not conn.resolved and not self.drive_wanted:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self.iterate(remaining)
        finally:
            self.driver = None

    def wait_decided(self, conn: Connection, timeout: float | None) -> None:
        """Wait until ``conn``'s outcome is known, the node stops, or nobody drives the
        node any more (then the caller drives it: :meth:`drive_until_decided`); at most
        ``timeout`` seconds. Not on the loop thread."""
        with self.sync_cond:
            self.sync_waiters += 1
            try:
                self.sync_cond.wait_for(
                    lambda: (
                        conn.resolved
                        or not self.running
                        or not (self.drive_lock.locked() or self.drive_wanted)
                    ),
                    timeout,
                )
            finally:
                self.sync_waiters -= 1

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close every resource (one last non-blocking write of queued data). Idempotent."""
        if self.shut:
            return
        self.shut = True
        self.running = False
        self.signals.close()
        dialing, resources = self.registry.clear()
        # One removed while it dialed waits in the requests.
        dialing += [
            r for r, _ in self.requests if isinstance(r, Connection) and type(r.remote) is Dial
        ]
        for conn in dialing:
            self.close_connection(conn)
        self.requests.clear()
        for resource in resources:
            if isinstance(resource, Listener):
                self.close_listener(resource)
                continue
            with resource.lock:
                if resource.state is READY:
                    resource.queue_farewell(going_away=True)
                if (resource.state is READY or resource.state is CLOSING) and resource.chunks:
                    try:
                        resource.flush()
                    except Exception:  # noqa: BLE001 - closing anyway
                        pass
            self.close_connection(resource)
        self.timers.clear()
        self.peer_log.flush()  # its summary timer is gone: the count of what it held back
        self.handlers.clear()  # what they refer to (connections, attempts) is closed
        self.poller.close()
        self.waker.close()
