"""Waiting on the node's ``epoll``: what the loop's poll costs, per turn.

This file is what runs without the compiled engine; a build with a C compiler puts
``epoll_wait.c`` beside it, which calls ``epoll_wait`` itself: no argument parsing
the generic way, no event buffer allocated and freed per call, no generic tuple
building. Like ``epoll.poll``, it releases the GIL even for a timeout of 0: the loop's
compiled turns never offer it otherwise. :data:`COMPILED` tells which one runs.
"""

from __future__ import annotations

import select
from time import monotonic

__all__ = ["COMPILED", "MAX_EVENTS", "passed", "wait", "wait_until"]

# Not Final: the compiled engine would fold this file's value into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""
MAX_EVENTS: int = 1024
"""Ready descriptors returned by one call at most; the rest wait for the next."""
_LONGEST = 2_147_483.0  # seconds: epoll_wait's longest finite wait (INT_MAX ms), near enough


def wait(epoll: select.epoll, timeout: float | None) -> list[tuple[int, int]]:
    """``epoll.poll(timeout)``: ``[(fd, mask)]`` of the ready descriptors, after at most
    ``timeout`` seconds (None or negative: no limit; a signal's handlers run and the
    wait goes on). Raises ``ValueError`` once ``epoll`` is closed, ``OSError``, and
    whatever a signal handler raises."""
    return epoll.poll(timeout, MAX_EVENTS)


def wait_until(epoll: select.epoll, deadline: float | None) -> list[tuple[int, int]]:
    """:func:`wait` until ``deadline``, a :func:`time.monotonic` reading (None: no
    limit; one that has passed: no wait at all). The clock is read here, so a caller
    that keeps its deadlines need not read it; raises as :func:`wait`."""
    if deadline is None:
        return epoll.poll(None, MAX_EVENTS)
    left = min(deadline - monotonic(), _LONGEST)  # epoll_wait's limit; then look again
    return epoll.poll(0.0 if left < 0 else left, MAX_EVENTS)  # NaN: poll's ValueError


def passed(deadline: float) -> bool:
    """``time.monotonic() >= deadline``: whether a deadline of the loop's timers has come.
    (The C twin reads the clock as :func:`time.monotonic` does, without making its
    float.) Raises ``TypeError`` if ``deadline`` is not a number."""
    return monotonic() >= deadline
