"""Signals: the node's own FIFO events, with priority, timers and cancellation.

Theory of operation
-------------------
Three queues live under one lock: *priority* and *normal* FIFOs, and a heap of *timers*
ordered by ``(deadline, sequence)``. The loop takes one signal at a time, in this order:
every priority signal, then every timer whose deadline has passed (earliest first, and in
creation order for equal deadlines), then normal signals. Timers keep their own ids, so
two timers with the same deadline are two timers (the Rust crate keys timers by deadline
and loses one). A cancelled timer is forgotten at once and its heap entry skipped when
it surfaces; the heap is rebuilt when more than half of it is cancelled, so cancelling
never leaks memory.

Deadlines use :func:`time.monotonic`; the poll timeout is rounded up, so a timer is never
delivered early. Another thread that adds work wakes the loop only when the loop could be
sleeping past it: the first signal into empty queues, or a timer earlier than every other.

Once the node stops, its loop calls :meth:`EventSender.close`: from then on a signal
could never be delivered, so sending one raises :class:`~message_io.NodeStoppedError`
instead of vanishing.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, NewType, TypeVar

from .errors import NodeStoppedError

__all__ = ["EventSender", "TimerId"]

S = TypeVar("S")

TimerId = NewType("TimerId", int)
"""Identifies a timer created by :meth:`EventSender.send_with_timer`."""

_EMPTY = object()


def _stopped() -> NodeStoppedError:
    return NodeStoppedError("the node is stopped: a signal sent now would never be delivered")


class EventSender(Generic[S]):
    """Sends signals to the node's own callback: ``handler.signals``.

    Every method is thread-safe, never blocks, and may be called from the callback.
    Signals reach the callback as ``Signal(value)`` events on the loop thread.

    Once the node is stopped (``handler.stop()``, or the loop ended because the callback
    raised) nothing can be delivered any more: :meth:`send`, :meth:`send_with_priority`
    and :meth:`send_with_timer` raise :class:`~message_io.NodeStoppedError` rather than
    drop the signal silently.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        """``wake`` interrupts the loop's poll; it is called when new work may be due."""
        self._wake = wake
        self._lock = threading.Lock()
        self._closed = False
        self._priority: deque[S] = deque()
        self._normal: deque[S] = deque()
        self._timers: list[tuple[float, int]] = []
        self._timer_values: dict[int, S] = {}
        self._ids = itertools.count(1)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the node is stopped)."""
        return self._closed

    def close(self) -> None:
        """Refuse every signal from now on; called by the node's loop when it stops.

        Signals already queued stay queued (:meth:`pending` still counts them) but are
        never delivered. Idempotent, and takes no lock, so that a ``stop()`` from a
        signal handler cannot deadlock with a ``send`` it interrupted.
        """
        self._closed = True

    def send(self, signal: S) -> None:
        """Queue ``signal`` after every signal already queued (FIFO).

        Raises:
            NodeStoppedError: the node is stopped; the signal could never be delivered.
        """
        with self._lock:
            if self._closed:
                raise _stopped()
            was_empty = not self._normal and not self._priority
            self._normal.append(signal)
        if was_empty:
            self._wake()

    def send_with_priority(self, signal: S) -> None:
        """Queue ``signal`` before every normal signal and every due timer, after the
        priority signals already queued.

        Raises:
            NodeStoppedError: the node is stopped; the signal could never be delivered.
        """
        with self._lock:
            if self._closed:
                raise _stopped()
            was_empty = not self._normal and not self._priority
            self._priority.append(signal)
        if was_empty:
            self._wake()

    def send_with_timer(self, signal: S, delay: float | timedelta) -> TimerId:
        """Deliver ``signal`` once ``delay`` has passed, never earlier.

        Args:
            signal: The value delivered as ``Signal(signal)``.
            delay: Seconds (an ``int`` or ``float``, not a ``bool``) or a
                :class:`datetime.timedelta`.

        Returns:
            A :data:`TimerId` for :meth:`cancel_timer`.

        Raises:
            TypeError: ``delay`` is neither a number nor a ``timedelta`` (a ``str``, a
                ``bool``, ``None``...).
            ValueError: ``delay`` is negative, NaN or infinite.
            NodeStoppedError: the node is stopped; the signal could never be delivered.
        """
        if isinstance(delay, timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise TypeError(
                "send_with_timer() delay must be a number of seconds or a timedelta, "
                f"not {type(delay).__name__}"
            )
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"send_with_timer() delay must be a finite number >= 0, not {delay!r}")
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._closed:
                raise _stopped()
            timer_id = next(self._ids)
            earliest = not self._timers or deadline < self._timers[0][0]
            heapq.heappush(self._timers, (deadline, timer_id))
            self._timer_values[timer_id] = signal
        if earliest:
            self._wake()
        return TimerId(timer_id)

    def cancel_timer(self, timer_id: TimerId) -> bool:
        """Cancel a timer that has not fired yet.

        Returns:
            True if the timer was pending and will now never fire; False if it already
            fired, was already cancelled, or never existed.
        """
        with self._lock:
            if self._timer_values.pop(timer_id, _EMPTY) is _EMPTY:
                return False
            if len(self._timers) > 64 and len(self._timer_values) * 2 < len(self._timers):
                self._timers = [t for t in self._timers if t[1] in self._timer_values]
                heapq.heapify(self._timers)
            return True

    def pending(self) -> int:
        """How many signals are queued or waiting on a timer."""
        with self._lock:
            return len(self._priority) + len(self._normal) + len(self._timer_values)

    # -- used by the loop ------------------------------------------------------------

    def _next_deadline(self) -> float | None:
        """0.0 if a signal is ready now, the earliest timer's deadline, or None."""
        with self._lock:
            if self._priority or self._normal:
                return 0.0
            timers = self._timers
            values = self._timer_values
            while timers and timers[0][1] not in values:
                heapq.heappop(timers)
            return timers[0][0] if timers else None

    def _pop(self, now: float) -> object:
        """The next signal to deliver at ``now``, or the ``_EMPTY`` sentinel."""
        with self._lock:
            if self._priority:
                return self._priority.popleft()
            timers = self._timers
            values = self._timer_values
            while timers and timers[0][0] <= now:
                _deadline, timer_id = heapq.heappop(timers)
                value = values.pop(timer_id, _EMPTY)
                if value is not _EMPTY:
                    return value
            if self._normal:
                return self._normal.popleft()
            return _EMPTY
