"""What every resource of the node shares: its life cycle and its bounded send queue.

A connection or listener moves through :class:`State` only along :data:`TRANSITIONS`
(:meth:`SendQueue.move` refuses any other move, so a bug shows at once instead of as a
resource that is closed twice or read after it closed).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from typing import Any, Final, cast

from .lock import Lock
from .send_status import SendStatus

__all__ = ["CLOSED", "CLOSING", "PENDING", "READY", "TRANSITIONS", "SendQueue", "State"]

log = logging.getLogger("message_io")

_QUEUE_FULL: Final = SendStatus.QUEUE_FULL


class State(enum.Enum):
    """Where a connection (or a listener) is in its life."""

    PENDING = "pending"
    """Connecting, or in its handshake: ``send`` says ``RESOURCE_NOT_AVAILABLE``."""
    READY = "ready"
    """Carries messages (``Connected`` or ``Accepted`` was emitted)."""
    CLOSING = "closing"
    """Removed by the user: writing out what was queued, then closed."""
    CLOSED = "closed"
    """Gone: ``send`` says ``RESOURCE_NOT_FOUND``."""

    # Each member is one object, equal only to itself: its identity is a hash that
    # costs no Python call (Enum's own hashes the name, in Python, at every move()).
    __hash__ = object.__hash__


PENDING: Final = State.PENDING
READY: Final = State.READY
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED

TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    PENDING: frozenset({READY, CLOSED}),  # handshake done, or failed / removed / timed out
    READY: frozenset({CLOSING, CLOSED}),  # removed (linger), or lost / stopped
    CLOSING: frozenset({CLOSED}),  # its queue written out, or its linger ran out
    CLOSED: frozenset({CLOSED}),  # closing twice is harmless
}
"""Every legal move of :attr:`Connection.state`; anything else is a bug and raises."""


class SendQueue:
    """What every sending resource shares: a lock, a bounded queue, its waiters.

    Used by stream connections (chunks of bytes), datagram connections (whole packets)
    and packet listeners (``(endpoint, packet)`` pairs). ``queued`` counts bytes; a
    queue of ``packets`` also counts each packet as one byte, so that a flood of empty
    datagrams is bounded too.
    """

    __slots__ = (
        "chunks",
        "cond",
        "episode_refusals",
        "limit",
        "lock",
        "packets",
        "queued",
        "refused",
        "state",
        "waiters",
        "want_drain",
        "write_armed",
    )

    chunks: deque[Any] | tuple[()]

    def __init__(self, limit: int, *, packets: bool) -> None:
        self.limit = limit
        self.packets = packets
        self.lock = Lock()  # threading.Lock, or its compiled twin: see lock.py
        # Made by the first wait_empty(): most connections never have a thread waiting.
        self.cond: threading.Condition | None = None
        self.waiters = 0  # threads in wait_drained(); notify only if there are some
        self.chunks = ()  # a deque from the first push(): an idle connection needs none
        self.queued = 0
        self.state = PENDING
        self.want_drain = False  # a send was refused: say Drained once empty
        self.write_armed = False  # polled for writing
        self.refused = 0  # sends refused with QUEUE_FULL (statistics)
        # QUEUE_FULLs of this backpressure episode (until Drained), counted to 2: a second
        # one means the program sends on as if the first had been queued: that is logged.
        self.episode_refusals = 0

    def push(self, chunk: Any) -> None:
        """Queue ``chunk`` after the others. Holds the lock."""
        chunks = self.chunks
        if isinstance(chunks, tuple):
            chunks = self.chunks = deque()
        chunks.append(chunk)

    def move(self, state: State) -> None:
        """Move to ``state`` along :data:`TRANSITIONS`. Holds the lock (or owns ``self``).

        Raises:
            RuntimeError: not a legal move (a bug in the engine).
        """
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self!r}: illegal move from {self.state.name} to {state.name}")
        self.state = state

    def full(self) -> bool:
        """A send would be refused now. Holds the lock (or is a glance)."""
        if self.packets:
            return self.queued + len(self.chunks) >= self.limit
        return self.queued >= self.limit

    def refuse(self, endpoint: object, holder: str) -> SendStatus:
        """Backpressure: say QUEUE_FULL to a send to ``endpoint`` and count it. Holds
        the lock. ``holder`` names the queue in the log: ``"connection"``, ``"listener"``.

        The first refusal of an episode (until the queue drains) is not logged: a
        program that waits for room (``Drained``, ``wait_drained``) and sends again
        never sends twice into a full queue. A second refusal before the queue drains
        means it goes on sending as if the first message had been queued: that is
        logged, once per episode."""
        self.want_drain = True
        self.refused += 1
        refusals = self.episode_refusals
        if refusals < 2:
            self.episode_refusals = refusals + 1
            if refusals == 1:
                log.warning(
                    "send to %s refused again: %d bytes wait in this %s's queue "
                    "(send_buffer_limit=%d); refused messages are not queued (%d so far "
                    "on this %s): send again after Drained, or use send_wait() "
                    "or pause_reading() (logged once until it drains)",
                    endpoint,
                    self.queued,
                    holder,
                    self.limit,
                    self.refused,
                    holder,
                )
        return _QUEUE_FULL

    def drained(self) -> bool:
        """The queue has emptied: the backpressure episode (see :meth:`refuse`) ends.
        True if a refused send is owed a ``Drained``. Holds the lock."""
        owed = self.want_drain
        self.want_drain = False
        self.episode_refusals = 0
        return owed

    def notify(self) -> None:
        """Wake the threads waiting for the queue to empty, if any. Holds the lock."""
        if self.waiters and self.cond is not None:
            self.cond.notify_all()

    def wait_empty(self, timeout: float | None) -> bool:
        """Wait until the queue is empty; False on timeout or once it closes. Any thread
        but the loop's."""
        with self.lock:
            cond = self.cond
            if cond is None:
                # threading.Condition takes any lock with acquire() and release().
                cond = self.cond = threading.Condition(cast(Any, self.lock))
        with cond:
            self.waiters += 1
            try:
                cond.wait_for(lambda: not self.chunks or self.state is not READY, timeout)
            finally:
                self.waiters -= 1
            return self.state is READY and not self.chunks
