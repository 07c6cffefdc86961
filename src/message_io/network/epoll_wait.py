"""Waiting on the node's ``epoll``: what the loop's poll costs, per turn.

This file is what runs without the compiled engine; a build with a C compiler puts
``epoll_wait.c`` beside it, which calls ``epoll_wait`` itself: no argument parsing
the generic way, no event buffer allocated and freed per call, no generic tuple
building. Like ``epoll.poll``, it releases the GIL even for a timeout of 0: the loop's
compiled turns never offer it otherwise. :data:`COMPILED` tells which one runs.
"""

from __future__ import annotations

import select

__all__ = ["COMPILED", "MAX_EVENTS", "wait"]

# Not Final: the compiled engine would fold this file's value into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""
MAX_EVENTS: int = 1024
"""Ready descriptors returned by one call at most; the rest wait for the next."""


def wait(epoll: select.epoll, timeout: float | None) -> list[tuple[int, int]]:
    """``epoll.poll(timeout)``: ``[(fd, mask)]`` of the ready descriptors, after at most
    ``timeout`` seconds (None or negative: no limit; a signal's handlers run and the
    wait goes on). Raises ``ValueError`` once ``epoll`` is closed, ``OSError``, and
    whatever a signal handler raises."""
    return epoll.poll(timeout, MAX_EVENTS)
