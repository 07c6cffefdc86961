"""The node's one timer heap: connect and handshake deadlines, heartbeats, input watches,
close lingers, and the user's ``send_with_timer`` signals.

Theory of operation
-------------------
A timer is a deadline (:func:`time.monotonic`) and a callback. Timers live in a binary
heap ordered by ``(deadline, sequence)``, so two timers due at the same instant run in
the order they were made. Any thread may add or cancel one (under the heap's lock); only
the loop thread runs them, outside the lock, so a callback may add or cancel timers.

Cancelling drops the callback at once, and with it whatever it refers to (a connection
and its protocol state). The earliest entry is always a live timer, which the loop plans
its poll around: a cancelled entry goes at once when it is the earliest, or when the
timers before it have run. When cancelled entries make up half of the heap (past a
floor), the heap is rebuilt without them: a churn of connections, each with a few
timers, never leaves memory behind.

Adding a timer earlier than every other one calls ``wake``: the loop may be asleep in a
poll that would otherwise outlast it. Times are read through the heap's ``clock``: the
module's ``monotonic`` when the heap was made, so a test may replace either with a fake
clock (an attribute of the heap, read on every turn of the loop, costs a tenth of a
module global's lookup in the compiled engine).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from time import monotonic
from typing import Final

__all__ = ["Timer", "TimerHeap"]

# Cancelled timers tolerated in the heap before it may be compacted.
_COMPACT_MIN: Final = 256


class Timer:
    """One scheduled callback; :meth:`TimerHeap.cancel` it to drop it."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False


class TimerHeap:
    """Timers of one node, run by its loop thread.

    Attributes:
        entries: The heap itself, ``[(deadline, sequence, timer)]``: internal API, read
            by the loop's hot path to learn cheaply whether any timer exists
            (``if heap.entries``) and for tests; never modified outside this class.
        clock: What deadlines are read from (``time.monotonic``; a test's fake clock).
    """

    __slots__ = ("_cancelled", "_lock", "_seq", "_wake", "clock", "entries")

    def __init__(self, wake: Callable[[], None]) -> None:
        """``wake`` interrupts the loop's poll; called when a new timer is the earliest."""
        self._wake = wake
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._cancelled = 0  # cancelled timers still in the heap
        self.entries: list[tuple[float, int, Timer]] = []
        self.clock: Callable[[], float] = monotonic

    def add(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the loop thread after ``delay`` seconds. Any thread."""
        return self.add_at(self.clock() + delay, callback)

    def add_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the loop thread at ``deadline`` (``time.monotonic()``).
        Any thread."""
        timer = Timer(deadline, callback)
        with self._lock:
            entries = self.entries
            earliest = not entries or deadline < entries[0][0]
            heapq.heappush(entries, (deadline, next(self._seq), timer))
        if earliest:
            self._wake()
        return timer

    def cancel(self, timer: Timer | None) -> bool:
        """Cancel ``timer`` (None is allowed) and release its callback at once. Any thread.

        Returns:
            True if it was pending; False if it already ran or was cancelled.
        """
        if timer is None or timer.cancelled:
            return False
        timer.cancelled = True
        timer.callback = None
        with self._lock:
            self._cancelled += 1
            self._drop_cancelled_top()
            entries = self.entries
            if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(entries):
                self.entries = [entry for entry in entries if not entry[2].cancelled]
                heapq.heapify(self.entries)
                self._cancelled = 0
        return True

    def _drop_cancelled_top(self) -> None:
        """Pop the cancelled entries at the top of the heap (holds the lock). Left there,
        the loop would plan its poll around one and look at the clock on every turn until
        its deadline (a connect deadline, cancelled on ``Connected``, stays ten seconds)."""
        entries = self.entries
        while entries and entries[0][2].cancelled:
            heapq.heappop(entries)
            self._cancelled -= 1

    def next_deadline(self) -> float | None:
        """The earliest deadline in the heap (a cancelled one may surface early), or None."""
        entries = self.entries
        return entries[0][0] if entries else None

    def run_due(self, keep_going: Callable[[], bool]) -> None:
        """Run every timer due now, earliest first (loop thread).

        Stops early once ``keep_going()`` is False after a callback (the node stopped).
        """
        entries = self.entries
        now = self.clock()
        if not entries or entries[0][0] > now:  # the common case, without the lock
            return
        while True:
            with self._lock:
                entries = self.entries
                if not entries or entries[0][0] > now:
                    return
                _deadline, _seq, timer = heapq.heappop(entries)
                skip = timer.cancelled
                if skip:  # cancelled by another thread as it was popped
                    self._cancelled -= 1
                self._drop_cancelled_top()
            if skip:
                continue
            callback = timer.callback
            timer.cancelled = True  # done: a late cancel() is a no-op
            timer.callback = None
            if callback is not None:
                callback()
                if not keep_going():
                    return

    def clear(self) -> None:
        """Forget every timer (the node is shutting down)."""
        with self._lock:
            for _deadline, _seq, timer in self.entries:
                timer.cancelled = True
                timer.callback = None
            self.entries = []
            self._cancelled = 0
