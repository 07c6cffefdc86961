"""Bounds on what peers send: unfinished messages in time and memory, and idle peers.

Theory of operation
-------------------
After each read, a connection whose transport has messages says how many bytes of
an unfinished one it holds (``Remote.incomplete``). The node keeps, per connection,
when that message began and when it last grew, and node-wide the sum held.

* Time: a watch timer per connection (one at a time, rescheduled lazily when it
  fires) disconnects a peer whose message made no progress for message_timeout
  seconds, or whose message, older than message_timeout, arrives on average
  slower than min_message_rate bytes/s (a trickle cannot keep it alive; as
  Kestrel's MinRequestBodyDataRate). The same timer enforces idle_timeout.
* Memory: past max_incomplete_bytes, a connection that reads and is left holding
  more than _PAUSE_FLOOR bytes is paused (not read: TCP's flow control pushes back
  on its peer) until the sum falls under 3/4 of the cap. A client of small whole
  messages never holds that much, so it is served throughout. A paused connection's
  message_timeout clock runs: the stalled holders go after one message_timeout,
  which frees their memory and lets the others be read again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from ..util.throttle import LogThrottle
from ..util.timers import TimerHeap
from .connection import Connection
from .registry import Registry
from .resource import READY

__all__ = ["DEFAULT_MAX_INCOMPLETE_BYTES", "InputGuard"]

log = logging.getLogger("message_io")

DEFAULT_MAX_INCOMPLETE_BYTES: Final = 64 * 1024 * 1024
"""Default node-wide cap on the bytes held in unfinished incoming messages (64 MiB)."""
# Past the cap, a connection left holding more than this after a read is paused. A client
# of small whole messages holds less (a read ends at most inside one of its messages).
_PAUSE_FLOOR: Final = 16 * 1024


class InputGuard:
    """Enforces ``message_timeout``, ``min_message_rate``, ``idle_timeout`` and the node's
    ``max_incomplete_bytes`` on every connection (loop thread)."""

    __slots__ = (
        "incomplete_bytes",
        "lost",
        "max_incomplete_bytes",
        "on_hold",
        "paused",
        "peer_log",
        "registry",
        "running",
        "timers",
        "warned",
    )

    def __init__(
        self,
        *,
        max_incomplete_bytes: int,
        registry: Registry,
        timers: TimerHeap,
        peer_log: LogThrottle,
        lost: Callable[[Connection], None],
        running: Callable[[], bool],
    ) -> None:
        """``lost`` disconnects a peer (says ``Disconnected``); ``running`` tells whether
        the node still runs."""
        self.max_incomplete_bytes = max_incomplete_bytes
        self.incomplete_bytes = 0  # held in unfinished incoming messages, all connections
        self.paused: list[Connection] = []  # not read until incomplete_bytes falls
        # The cap was crossed and said so (reset under three quarters of it).
        self.warned = False
        self.registry = registry
        self.timers = timers
        self.peer_log = peer_log
        self.lost = lost
        self.running = running
        # Called after each read that leaves ``conn`` holding part of a message
        # (diagnostics and tests: what a slow or hostile peer makes the node hold).
        self.on_hold: Callable[[InputGuard, Connection], None] | None = None

    def account(self, conn: Connection, held: int, completed: bool) -> None:
        """Record what ``conn`` holds after a read (``completed``: it ended messages)."""
        self.incomplete_bytes += held - conn.held
        previous = conn.held
        conn.held = held
        if held < previous:
            self._resume_if_under()
        if not held:
            conn.partial_since = 0.0
            return
        if self.on_hold is not None:
            self.on_hold(self, conn)
        now = time.monotonic()
        if completed or not previous:
            conn.partial_since = now  # a new message began in this read
        conn.progress_at = now
        timeout = conn.message_timeout
        if timeout is not None and (conn.watch_timer is None or conn.watch_at > now + timeout):
            self.watch(conn, now + timeout)
        if self.incomplete_bytes > self.max_incomplete_bytes:
            if held > _PAUSE_FLOOR:
                if not self.paused:
                    self._pause_holders()  # the cap was just crossed
                elif not conn.paused:
                    self._pause(conn)
            elif not self.warned:
                self._warn_small_holders()

    def watch(self, conn: Connection, deadline: float) -> None:
        """(Re)arm ``conn``'s watch timer for ``deadline``."""
        self.timers.cancel(conn.watch_timer)
        conn.watch_at = deadline
        conn.watch_timer = self.timers.add_at(deadline, lambda: self._check(conn))

    def restart_clocks(self, conn: Connection, now: float) -> None:
        """``conn`` was not read until ``now`` (the application paused it): its message,
        idle and rate clocks start again from ``now``."""
        conn.progress_at = conn.last_read = now
        if conn.held:
            conn.partial_since = now

    def start_watch(self, conn: Connection) -> None:
        """A connection became ready: start its idle_timeout clock, if it has one."""
        if conn.idle_timeout is not None:
            conn.last_read = time.monotonic()
            self.watch(conn, conn.last_read + conn.idle_timeout)

    def _check(self, conn: Connection) -> None:
        """The watch timer fired: disconnect ``conn`` if a limit passed, else re-arm.

        A paused connection is judged like the others: its clock runs while it is not
        read, so the stalled peers that hold the node over its cap are gone after one
        ``message_timeout``, and their memory with them; the rest are read again then.
        (A peer cannot be told apart, while not read, from one that stalled.) Only the
        rate rule waits until it is read again.
        """
        conn.watch_timer = None
        if conn.state is not READY or not self.running():
            return
        now = time.monotonic()
        if conn.user_paused:  # the application holds it: its peer is not to blame
            self.restart_clocks(conn, now)
        deadline = None
        reason = None
        idle = conn.idle_timeout
        timeout = conn.message_timeout
        if idle is not None:
            if now - conn.last_read >= idle:
                reason = f"nothing received for {idle:g} s (idle_timeout)"
            deadline = conn.last_read + idle
        if reason is None and conn.held and timeout is not None:
            if now - conn.progress_at >= timeout:
                reason = (
                    f"a message stalled for {timeout:g} s with {conn.held} bytes received "
                    "(message_timeout)"
                )
            stall_at = conn.progress_at + timeout
            rate = conn.min_rate
            if reason is None and rate is not None and not conn.paused and not conn.user_paused:
                age = now - conn.partial_since
                if age >= timeout and conn.held < rate * age:
                    reason = (
                        f"a message arrived at {conn.held / age:.0f} B/s for {age:.1f} s, "
                        f"below min_message_rate={rate:g} B/s"
                    )
                rate_at = conn.partial_since + max(timeout, conn.held / rate) + 1e-3
                stall_at = min(stall_at, rate_at)
            deadline = stall_at if deadline is None else min(deadline, stall_at)
        if reason is not None:
            self.peer_log.log(logging.INFO, "disconnecting %s: %s", conn.endpoint, reason)
            self.lost(conn)
        elif deadline is not None:
            self.watch(conn, max(deadline, now + 1e-3))

    def _unpause(self, conn: Connection, now: float) -> None:
        with conn.lock:
            if not conn.paused or conn.fd < 0:
                return
            conn.paused = False
            # The rate is measured again from now: it was not read meanwhile.
            conn.partial_since = now
            conn.update_reading()

    def _pause_holders(self) -> None:
        """The cap was crossed: pause every connection holding more than the floor."""
        self.warned = True
        log.warning(
            "incomplete messages hold %d bytes, over max_incomplete_bytes=%d: not reading "
            "the connections that hold more than %d bytes of one until it falls to %d",
            self.incomplete_bytes,
            self.max_incomplete_bytes,
            _PAUSE_FLOOR,
            self.max_incomplete_bytes * 3 // 4,
        )
        holders = [conn for conn in self.registry.snapshot() if conn.held > _PAUSE_FLOOR]
        for conn in holders:
            self._pause(conn)

    def _pause(self, conn: Connection) -> None:
        """Stop reading ``conn`` until the node's incomplete bytes fall under the cap."""
        with conn.lock:
            if conn.fd < 0 or conn.state is not READY:
                return
            conn.paused = True
            conn.update_reading()
        self.paused.append(conn)
        log.debug("not reading %s: it holds %d bytes of a message", conn.endpoint, conn.held)

    def released(self, conn: Connection) -> None:
        """``conn`` closed: give back what it held; resume paused ones if under the cap."""
        if conn.held:
            self.incomplete_bytes -= conn.held
            conn.held = 0
        if conn.paused:
            conn.paused = False
            with contextlib.suppress(ValueError):
                self.paused.remove(conn)
        self._resume_if_under()

    def _resume_if_under(self) -> None:
        """Read the paused connections again once the total is under 3/4 of the cap."""
        if (self.paused or self.warned) and (
            self.incomplete_bytes <= self.max_incomplete_bytes * 3 // 4
        ):
            self.warned = False
            if self.paused:
                self._resume_paused()

    def _warn_small_holders(self) -> None:
        """The cap was crossed by connections that each hold no more than the floor:
        none is paused (a client of small messages holds that much), but it is said."""
        self.warned = True
        log.warning(
            "incomplete messages hold %d bytes, over max_incomplete_bytes=%d, in "
            "connections holding at most %d bytes each: they are read on, and cut by "
            "message_timeout if they stall",
            self.incomplete_bytes,
            self.max_incomplete_bytes,
            _PAUSE_FLOOR,
        )

    def _resume_paused(self) -> None:
        paused, self.paused = self.paused, []
        now = time.monotonic()
        for conn in paused:
            self._unpause(conn, now)
        log.warning(
            "incomplete messages hold %d bytes now: reading the %d paused connections again",
            self.incomplete_bytes,
            len(paused),
        )
