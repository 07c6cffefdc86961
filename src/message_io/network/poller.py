"""The poller, the waker and the signal wakeup: the only blocking calls of the loop live here.

On Linux the poller is ``select.epoll`` used directly: it returns ``(fd, mask)`` pairs
with no per-event Python objects, which matters at millions of events a second. Elsewhere
it falls back to the best :mod:`selectors` selector. Polling is level-triggered: a
resource that still has data after a bounded read is reported again, which keeps the
loop fair between a busy peer and the others.

The waker is an ``eventfd`` (or a socket pair) that other threads write to so that
``stop()``, a new signal, an earlier timer or a close request is seen at once, instead of
after a sampling timeout (the Rust crate samples every 50 ms).

:func:`signal_wakeup` makes a signal (Ctrl+C) interrupt the poll.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Final

__all__ = ["HANGUP", "READ", "WRITE", "Poller", "Waker", "signal_wakeup"]

# Interest and readiness bits, epoll's own so that the hot path needs no conversion:
# READ and WRITE are what handlers test; HUP/ERR count as both (the next read or write
# reports the error).
if hasattr(select, "epoll"):
    _IN = select.EPOLLIN | select.EPOLLRDHUP
    _OUT = select.EPOLLOUT
    _ERR = select.EPOLLHUP | select.EPOLLERR
else:  # pragma: no cover - the same values, for the selectors fallback
    _IN, _OUT, _ERR = 0x2001, 0x004, 0x018

READ: Final = _IN | _ERR
"""Readiness mask bits that mean "readable" (also used as the interest to read)."""
WRITE: Final = _OUT | _ERR
"""Readiness mask bits that mean "writable" (also used as the interest to write)."""
HANGUP: Final = select.EPOLLHUP if hasattr(select, "epoll") else 0x010
"""The readiness bit of a connection closed both ways (a reset): reported even when
nothing is polled for."""


class Poller:
    """Registers file descriptors for READ/WRITE interest and waits for readiness.

    ``register``/``modify``/``unregister`` may be called from any thread (the kernel
    serialises them); ``poll`` only from the loop thread.
    """

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._selector: selectors.BaseSelector | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
        else:  # pragma: no cover - exercised on non-Linux platforms only
            self._selector = selectors.DefaultSelector()

    @property
    def fast_poll(self) -> Callable[[float | None], list[tuple[int, int]]]:
        """``poll`` without the wrapper where the OS poller already speaks our masks."""
        return self._epoll.poll if self._epoll is not None else self.poll

    def register(self, fd: int, interest: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, interest & ~_ERR)
        else:  # pragma: no cover
            assert self._selector is not None
            self._selector.register(fd, self._sel_events(interest))

    def modify(self, fd: int, interest: int) -> None:
        if self._epoll is not None:
            self._epoll.modify(fd, interest & ~_ERR)
        else:  # pragma: no cover
            assert self._selector is not None
            events = self._sel_events(interest)
            if events:
                self._selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
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
        """The poller's own descriptor, readable whenever a registered one is ready: an
        outer event loop (asyncio's ``add_reader``) can wait on the whole node with it.

        Raises:
            OSError: the OS poller has no descriptor (a selector without one).
        """
        if self._epoll is not None:
            return self._epoll.fileno()
        fileno = getattr(self._selector, "fileno", None)  # pragma: no cover - kqueue
        if fileno is None:  # pragma: no cover
            raise OSError("this platform's poller cannot be waited on from outside")
        return int(fileno())  # pragma: no cover

    def close(self) -> None:
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
        if hasattr(os, "eventfd"):
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
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
            if self._rsock is not None and self._wsock is not None:  # pragma: no cover
                self._rsock.close()
                self._wsock.close()
            else:
                os.close(self._fd)


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
