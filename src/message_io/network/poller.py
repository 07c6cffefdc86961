"""The poller, the waker and the signal wakeup: the only blocking calls of the loop live here.

On Linux the poller is ``select.epoll`` used directly: it returns ``(fd, mask)`` pairs
with no per-event Python objects, which matters at millions of events a second. Elsewhere
it falls back to the best :mod:`selectors` selector. Polling is level-triggered: a
resource that still has data after a bounded read is reported again, which keeps the
loop fair between a busy peer and the others.

Driven by an outer event loop (``message_io.asyncio``), the poller hands its
descriptors to that loop instead (:meth:`Poller.attach`): each one is watched by the
outer loop itself (``add_reader``/``add_writer``), so a ready socket costs the outer
loop's one poll, not a second one of the node's own.

The waker is an ``eventfd`` (or a socket pair) that other threads write to so that
``stop()``, a new signal, an earlier timer or a close request is seen at once, instead of
after a sampling timeout (the Rust crate samples every 50 ms).

:func:`signal_wakeup` makes a signal (Ctrl+C) interrupt the poll.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import select
import selectors
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = ["HANGUP", "READ", "WRITE", "Poller", "Waker", "signal_wakeup"]

# Interest and readiness bits, epoll's own so that the hot path needs no conversion:
# READ and WRITE are what handlers test; HUP/ERR count as both (the next read or write
# reports the error).
# (The selectors fallback uses the same values.) Final: compiled, C statics.
_EPOLL: Final = hasattr(select, "epoll")
_IN: Final = (select.EPOLLIN | select.EPOLLRDHUP) if _EPOLL else 0x2001
_OUT: Final = select.EPOLLOUT if _EPOLL else 0x004
_ERR: Final = (select.EPOLLHUP | select.EPOLLERR) if _EPOLL else 0x018

READ: Final = _IN | _ERR
"""Readiness mask bits that mean "readable" (also used as the interest to read)."""
WRITE: Final = _OUT | _ERR
"""Readiness mask bits that mean "writable" (also used as the interest to write)."""
log = logging.getLogger("message_io")

HANGUP: Final = select.EPOLLHUP if hasattr(select, "epoll") else 0x010
"""The readiness bit of a connection closed both ways (a reset): reported even when
nothing is polled for."""


class Poller:
    """Registers file descriptors for READ/WRITE interest and waits for readiness.

    ``register``/``modify``/``unregister`` may be called from any thread (the kernel
    serialises them; attached to an outer loop, the poller does); ``poll`` only from
    the loop thread. Attached, a descriptor unregistered on another thread must stay
    open until the loop's thread has called :meth:`settle` (the node closes its
    descriptors on the loop's thread, where unregistering applies at once).
    """

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._selector: selectors.BaseSelector | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
        else:  # pragma: no cover - exercised on non-Linux platforms only
            self._selector = selectors.DefaultSelector()
        # What is registered, fd -> interest: what attach() hands over.
        self._interests: dict[int, int] = {}
        # Attached to an outer event loop (see attach): the loop, its thread, what it
        # calls with (fd, flags), how another thread makes it look at changes.
        self._outer: Any = None
        self._outer_thread = 0
        self._dispatch: Callable[[int, int], None] | None = None
        self._wake: Callable[[], None] | None = None
        self._lock = threading.Lock()  # _interests and _changed, attached
        # fds whose interest the outer loop lacks -> whether they were unregistered
        # meanwhile (a number registered again may be another socket: watched afresh)
        self._changed: dict[int, bool] = {}
        self._applied: dict[int, int] = {}  # fd -> what the outer loop watches
        # Set by the outer loop's turn of the node: its thread's changes wait for the
        # settle() at the end of the turn, so that a connection accepted (polled for
        # writing, then for reading) costs the outer loop one change, not three.
        # Unregistering never waits: the descriptor may be closed next.
        self.deferring = False

    @property
    def epoll(self) -> select.epoll | None:
        """The OS poller where it is an ``epoll``, for :func:`epoll_wait.wait`."""
        return self._epoll

    @property
    def fast_poll(self) -> Callable[[float | None], list[tuple[int, int]]]:
        """``poll`` without the wrapper where the OS poller already speaks our masks."""
        return self._epoll.poll if self._epoll is not None else self.poll

    def register(self, fd: int, interest: int) -> None:
        if self._outer is not None:
            self._change(fd, interest, errno.EEXIST)
            return
        # Recorded before the system call (which lets other threads run): once the
        # loop can see the descriptor ready, put() finds it registered.
        interests = self._interests
        previous = interests.get(fd)
        interests[fd] = interest
        try:
            if self._epoll is not None:
                self._epoll.register(fd, interest & ~_ERR)
            else:  # pragma: no cover
                assert self._selector is not None
                self._selector.register(fd, self._sel_events(interest))
        except BaseException:
            if previous is None:
                interests.pop(fd, None)
            else:
                interests[fd] = previous
            raise

    def modify(self, fd: int, interest: int) -> None:
        if self._outer is not None:
            self._change(fd, interest, errno.ENOENT)
            return
        if self._epoll is not None:
            self._epoll.modify(fd, interest & ~_ERR)
        else:  # pragma: no cover
            assert self._selector is not None
            events = self._sel_events(interest)
            if events:
                self._selector.modify(fd, events)
        self._interests[fd] = interest

    def put(self, fd: int, interest: int) -> None:
        """Poll ``fd`` for ``interest``: :meth:`modify` if it is registered (or being
        registered by another thread), else :meth:`register`; one system call either
        way."""
        if fd in self._interests:
            self.modify(fd, interest)
        else:
            self.register(fd, interest)

    def unregister(self, fd: int) -> None:
        if self._outer is not None:
            self._change(fd, -1, 0)
            return
        self._interests.pop(fd, None)
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:  # pragma: no cover
                assert self._selector is not None
                self._selector.unregister(fd)
        except (OSError, KeyError, ValueError):
            pass  # already closed or never registered: nothing to undo

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (None: forever); return ``[(fd, mask)]``.

        Test ``mask & READ`` and ``mask & WRITE``.

        The timeout is rounded up to the poller's resolution, so a timer is never early.
        """
        if self._epoll is not None:
            return self._epoll.poll(-1 if timeout is None else timeout)
        assert self._selector is not None  # pragma: no cover
        return [  # pragma: no cover
            (key.fd, self._flags(ev)) for key, ev in self._selector.select(timeout)
        ]

    def fileno(self) -> int:
        """The poller's own descriptor, readable whenever a registered one is ready
        (not attached to an outer loop).

        Raises:
            OSError: the OS poller has no descriptor (a selector without one).
        """
        if self._epoll is not None:
            return self._epoll.fileno()
        fileno = getattr(self._selector, "fileno", None)  # pragma: no cover - kqueue
        if fileno is None:  # pragma: no cover
            raise OSError("this platform's poller cannot be waited on from outside")
        return int(fileno())  # pragma: no cover

    # -- an outer event loop -------------------------------------------------------------

    def attach(
        self, outer: Any, dispatch: Callable[[int, int], None], wake: Callable[[], None]
    ) -> None:
        """Hand every descriptor, now and from now on, to the event loop ``outer`` (one
        with asyncio's ``add_reader``/``add_writer``/``remove_reader``/``remove_writer``):
        it calls ``dispatch(fd, flags)`` on its thread (the caller's) when ``fd`` is
        ready, ``flags`` a readiness mask as :meth:`poll` returns (``READ`` or
        ``WRITE``, one per call). Registrations made on another thread take effect
        once ``wake()`` has made the loop's thread call :meth:`settle`.

        The node's epoll is no longer used: :meth:`poll` would find nothing. A reset
        connection polled for nothing (reading paused, nothing to write) is found by the
        next read or write, not at once (``HANGUP`` is epoll's own).
        """
        with self._lock:
            self._outer = outer
            self._outer_thread = threading.get_ident()
            self._dispatch = dispatch
            self._wake = wake
            for fd in self._interests:
                if self._epoll is not None:
                    with contextlib.suppress(OSError):
                        self._epoll.unregister(fd)
                else:  # pragma: no cover
                    assert self._selector is not None
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.unregister(fd)
                self._changed[fd] = False
        self.settle()

    def _change(self, fd: int, interest: int, missing: int) -> None:
        """Record a registration (``interest`` -1: none); the outer loop watches it from
        the next :meth:`settle`, at once on its own thread. ``missing``: the error of
        ``modify`` for an unknown ``fd``; ``register`` of a known one replaces it (its
        descriptor was closed, and the number reused)."""
        with self._lock:
            interests = self._interests
            if interest < 0:
                if interests.pop(fd, None) is None:
                    return
                self._changed[fd] = True
            else:
                if missing == errno.ENOENT and fd not in interests:
                    raise FileNotFoundError(missing, os.strerror(missing))
                interests[fd] = interest
                self._changed[fd] = self._changed.get(fd, False)
        if threading.get_ident() == self._outer_thread:
            if interest < 0 or not self.deferring:
                self.settle()
        else:
            wake = self._wake
            assert wake is not None
            wake()

    def settle(self) -> None:
        """Make the outer loop watch what is registered now. Its thread only."""
        if not self._changed:
            return
        outer = self._outer
        with self._lock:
            if outer is None:  # closed meanwhile: nothing is watched any more
                self._changed.clear()
                return
            changed = [
                (fd, self._interests.get(fd, -1), removed) for fd, removed in self._changed.items()
            ]
            self._changed.clear()
        applied = self._applied
        for fd, interest, removed in changed:
            want = (interest & _IN) | (interest & _OUT) if interest >= 0 else 0
            have = applied.get(fd, 0)
            if removed and have:
                # Unregistered since: the number may now be another socket, which the
                # loop must watch afresh (its record of the old one is stale).
                with contextlib.suppress(Exception):
                    self._watch(outer, fd, 0, have)
                applied.pop(fd, None)
                have = 0
            if want == have:
                continue
            try:
                self._watch(outer, fd, want, have)
            except Exception:  # noqa: BLE001 - the number was closed, maybe reused
                # The loop forgets it altogether, then watches it afresh.
                with contextlib.suppress(Exception):
                    self._watch(outer, fd, 0, _IN | _OUT)
                applied.pop(fd, None)
                try:
                    self._watch(outer, fd, want, 0)
                except Exception as exc:  # noqa: BLE001 - reported, not raised (a turn)
                    with contextlib.suppress(Exception):
                        self._watch(outer, fd, 0, _IN | _OUT)
                    if self._interests.get(fd, -1) >= 0:  # still wanted: never polled
                        log.warning("the event loop cannot watch descriptor %d: %r", fd, exc)
                    continue
            if want:
                applied[fd] = want
            else:
                applied.pop(fd, None)

    def _watch(self, outer: Any, fd: int, want: int, have: int) -> None:
        if want & _IN and not have & _IN:
            outer.add_reader(fd, self._dispatch, fd, _IN)
        elif have & _IN and not want & _IN:
            outer.remove_reader(fd)
        if want & _OUT and not have & _OUT:
            outer.add_writer(fd, self._dispatch, fd, _OUT)
        elif have & _OUT and not want & _OUT:
            outer.remove_writer(fd)

    def close(self) -> None:
        outer = self._outer
        if outer is not None:
            with self._lock:
                self._outer = None  # from now on, registrations fail as epoll's would
                self._changed.clear()
            applied, self._applied = self._applied, {}
            if not outer.is_closed():
                for fd, have in applied.items():
                    with contextlib.suppress(Exception):
                        self._watch(outer, fd, 0, have)
        if self._epoll is not None:
            self._epoll.close()
        elif self._selector is not None:  # pragma: no cover
            self._selector.close()

    @staticmethod
    def _flags(events: int) -> int:  # pragma: no cover
        return (_IN if events & selectors.EVENT_READ else 0) | (
            _OUT if events & selectors.EVENT_WRITE else 0
        )

    @staticmethod
    def _sel_events(interest: int) -> int:  # pragma: no cover
        return (selectors.EVENT_READ if interest & READ else 0) | (
            selectors.EVENT_WRITE if interest & WRITE else 0
        )


class Waker:
    """A file descriptor that becomes readable when ``wake()`` is called from any thread."""

    def __init__(self) -> None:
        self._rsock: socket.socket | None = None
        self._wsock: socket.socket | None = None
        self._file: io.FileIO | None = None
        if hasattr(os, "eventfd"):
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            # Owned by a file object, as the socket pair is by its sockets: a node
            # dropped without stop() still closes it when collected (with a
            # ResourceWarning), instead of leaking one descriptor per node.
            self._file = io.FileIO(self._fd, "r+", closefd=True)
            self._write_fd = self._fd
        else:  # pragma: no cover
            self._rsock, self._wsock = socket.socketpair()
            self._rsock.setblocking(False)
            self._wsock.setblocking(False)
            self._fd = self._rsock.fileno()
            self._write_fd = self._wsock.fileno()
        self._closed = False
        self._lock = threading.Lock()  # so that a late wake() never writes to a reused fd

    def fileno(self) -> int:
        return self._fd

    def wake(self) -> None:
        """Make the waker readable. Cheap, thread-safe, never blocks."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._write_fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass  # already signalled: the counter or the pipe is full

    def drain(self) -> None:
        """Reset the waker after it woke the loop."""
        try:
            os.read(self._fd, 4096)
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._file is not None:
                self._file.close()
            elif self._rsock is not None and self._wsock is not None:  # pragma: no cover
                self._rsock.close()
                self._wsock.close()


@contextlib.contextmanager
def signal_wakeup(poller: Poller) -> Iterator[tuple[int, Callable[[int], None]] | None]:
    """On the main thread, make a signal (Ctrl+C) interrupt ``poller``'s poll.

    Python runs signal handlers between bytecodes; a signal that lands just before the
    poll starts would otherwise wait for the next event. ``signal.set_wakeup_fd`` makes
    the C-level handler write to a socket that the poller watches.

    Yields:
        ``(fd, drain)``: the descriptor now registered with ``poller`` and the handler
        to call when it is ready; or None off the main thread (nothing registered).
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter
        rsock.close()
        wsock.close()
        yield None
        return

    def drain(_flags: int) -> None:
        with contextlib.suppress(OSError):
            rsock.recv(4096)

    fd = rsock.fileno()
    poller.register(fd, READ)
    try:
        yield fd, drain
    finally:
        signal.set_wakeup_fd(previous)
        poller.unregister(fd)
        rsock.close()
        wsock.close()
