"""Log lines that a peer can cause, rate-limited so that no peer can flood the log.

A server on the open internet logs one line per disconnected peer; a peer that reconnects
with garbage in a loop would otherwise write thousands of lines a second. A
:class:`LogThrottle` lets ``limit`` lines through per ``period`` seconds, counts the rest,
and writes one summary line ("N more ... suppressed") at the end of the period in which
it suppressed something (from a timer, so the summary comes even if the flood stops).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["LogThrottle"]

DEFAULT_LIMIT: Final = 10
"""Lines per period let through (then one summary)."""
DEFAULT_PERIOD: Final = 1.0


class LogThrottle:
    """At most ``limit`` lines per ``period`` seconds to ``logger``, then a summary.

    Args:
        logger: Where the lines go.
        what: What the lines are about, for the summary ("peer and callback lines").
        schedule: ``schedule(delay, callback)`` runs ``callback`` later (the node's timer);
            ``None`` writes the summary with the next line instead.
        limit, period: The rate.
        clock: The time source (``time.monotonic``), replaceable in tests.
    """

    __slots__ = (
        "_clock",
        "_count",
        "_level",
        "_limit",
        "_logger",
        "_period",
        "_schedule",
        "_start",
        "_suppressed",
        "_what",
        "summaries",
    )

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        schedule: Callable[[float, Callable[[], None]], object] | None = None,
        limit: int = DEFAULT_LIMIT,
        period: float = DEFAULT_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._schedule = schedule
        self._limit = limit
        self._period = period
        self._clock = clock
        self._start = -float("inf")
        self._count = 0
        self._suppressed = 0
        self._level = logging.INFO
        self.summaries = 0  # summary lines written (for tests and statistics)

    def log(self, level: int, msg: str, *args: Any, exc_info: BaseException | None = None) -> None:
        """Log ``msg % args`` at ``level`` (with ``exc_info``'s traceback, if given)
        unless over the rate; count it if so."""
        if not self._logger.isEnabledFor(level):
            return
        now = self._clock()
        if now - self._start >= self._period:
            self.flush()
            self._start = now
            self._count = 0
        if self._count < self._limit:
            self._count += 1
            self._logger.log(level, msg, *args, exc_info=exc_info)
            return
        if not self._suppressed:
            self._level = level
            if self._schedule is not None:
                self._schedule(max(0.0, self._start + self._period - now), self.flush)
        self._suppressed += 1

    def flush(self) -> None:
        """Write the summary of what was suppressed, if anything."""
        if self._suppressed:
            count, self._suppressed = self._suppressed, 0
            self.summaries += 1
            self._logger.log(
                self._level,
                "%d more %s suppressed in the last %g s",
                count,
                self._what,
                self._period,
            )
