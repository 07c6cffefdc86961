"""Signals: the node's own FIFO events, with priority, timers and cancellation.

Theory of operation
-------------------
Three queues live under one lock: *priority*, *due* and *normal* FIFOs. A timer signal
waits in the node's one timer heap (:class:`~message_io.util.timers.TimerHeap`),
ordered by ``(deadline, sequence)``; when its deadline passes the loop moves it to the
*due* queue. The loop takes one signal at a time, in this order: every priority signal,
then every due timer (earliest first, and in creation order for equal deadlines), then
normal signals. Timers keep their own ids, so two timers with the same deadline are two
timers (the Rust crate keys timers by deadline and loses one). A cancelled timer is
forgotten at once; the heap drops its entry when it surfaces or when the heap is rebuilt,
so cancelling never leaks memory.

Deadlines use :func:`time.monotonic`; the poll timeout is rounded up, so a timer is never
delivered early. Another thread that adds work wakes the loop only when the loop could be
sleeping past it: the first signal into empty queues, or a timer earlier than every other.

Once the node stops, its loop calls :meth:`EventSender.close`: from then on a signal
could never be delivered, so sending one raises :class:`~message_io.NodeStoppedError`
instead of vanishing.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from time import monotonic
from typing import Final, Generic, NewType, TypeVar

from .errors import NodeStoppedError
from .util.count import Count
from .util.timers import Timer, TimerHeap

__all__ = ["NOTHING", "EventSender", "Signal", "TimerId"]

S = TypeVar("S")

TimerId = NewType("TimerId", int)
"""Identifies a timer created by :meth:`EventSender.send_with_timer`."""

NOTHING: Final = object()
"""What :meth:`EventSender.take` returns when no signal is ready (internal API)."""


class Signal(Generic[S]):
    """A signal sent with ``handler.signals``, delivered to the callback as an event.

    ``match event: case Signal(value): ...`` unpacks it. Immutable, hashable if its value
    is, and equal to another ``Signal`` with an equal value.
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

    def __init__(self, wake: Callable[[], None], timers: TimerHeap | None = None) -> None:
        """``wake`` interrupts the loop's poll; it is called when new work may be due.
        ``timers`` is the node's timer heap (a heap of its own if None)."""
        self._wake = wake
        self._timer_heap = TimerHeap(wake) if timers is None else timers
        self._lock = threading.Lock()
        self._closed = False
        self._priority: deque[S] = deque()
        self._due: deque[int] = deque()  # ids of due timers, in deadline order
        self._normal: deque[S] = deque()
        self._timers: dict[int, Timer] = {}
        self._timer_values: dict[int, S] = {}
        self._ids = itertools.count(1)
        self.ready_count = Count()
        """Signals ready to deliver now (internal API: the loop's cheap check)."""

    @property
    def ready(self) -> int:
        """Signals ready to deliver now (internal API)."""
        return self.ready_count.value

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
            was_empty = not self.ready_count.value
            self._normal.append(signal)
            self.ready_count.value += 1
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
            was_empty = not self.ready_count.value
            self._priority.append(signal)
            self.ready_count.value += 1
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
        deadline = monotonic() + seconds
        with self._lock:
            if self._closed:
                raise _stopped()
            timer_id = next(self._ids)
            self._timer_values[timer_id] = signal
            self._timers[timer_id] = self._timer_heap.add_at(
                deadline, functools.partial(self._fire, timer_id)
            )
        return TimerId(timer_id)

    def cancel_timer(self, timer_id: TimerId) -> bool:
        """Cancel a timer whose signal has not been delivered yet (its deadline may have
        passed: until the callback receives it, it can still be cancelled).

        Returns:
            True if the timer was pending and will now never fire; False if it already
            fired, was already cancelled, or never existed.
        """
        with self._lock:
            if self._timer_values.pop(timer_id, NOTHING) is NOTHING:
                return False
            timer = self._timers.pop(timer_id, None)
            if timer is not None:
                self._timer_heap.cancel(timer)
            else:  # due already: its id waits in the due queue, and is skipped there
                self.ready_count.value -= 1
            return True

    def pending(self) -> int:
        """How many signals are queued or waiting on a timer."""
        with self._lock:
            return len(self._priority) + len(self._normal) + len(self._timer_values)

    # -- used by the loop (internal API) -----------------------------------------------

    def _fire(self, timer_id: int) -> None:
        """A timer's deadline passed: its signal is due (loop thread). The value stays
        with the id until it is delivered, so that a cancel still works until then."""
        with self._lock:
            self._timers.pop(timer_id, None)
            if timer_id in self._timer_values:
                self._due.append(timer_id)
                self.ready_count.value += 1

    def take(self) -> object:
        """The next signal to deliver, or :data:`NOTHING` (loop thread)."""
        with self._lock:
            if self._priority:
                self.ready_count.value -= 1
                return self._priority.popleft()
            due = self._due
            while due:
                value = self._timer_values.pop(due.popleft(), NOTHING)
                if value is not NOTHING:  # else cancelled once due: already uncounted
                    self.ready_count.value -= 1
                    return value
            if self._normal:
                self.ready_count.value -= 1
                return self._normal.popleft()
            return NOTHING
