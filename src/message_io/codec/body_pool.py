"""Buffers reused for the large frame bodies a transport makes per message: a WebSocket
client's masked payloads.

Why
---
A client masks every frame it sends (RFC 6455 5.3), so it copies every payload once.
Made into a new object per message, a large copy is allocated by the sending thread and
freed by whichever thread writes it out, usually the loop's. With glibc, each time the
send queue drains, the freed copies pile up at the top of the sender's heap and are
given back to the OS (the heap is trimmed), so the next copies fault their pages in
again: a sender on another thread than the loop's ran at a third of FramedTcp's rate,
64 KiB at a time. Reusing the bodies written out avoids the allocation, the trim and the
faults, and writes into memory that is still cached.

How
---
The connection enables the pool (:meth:`BodyPool.enable`) when it binds its transport.
The framer takes a buffer (:meth:`BodyPool.take`) and fills it (``mask_into``); the
connection queues it by reference, never copies or exposes it, and gives it back
(:meth:`BodyPool.give`) once it is written out whole. A pool only reuses what it lent and
got back: any other object given back is left alone. Everything happens under the
connection's lock.

Bounds: the bodies lent count at most ``limit`` bytes (the connection's send buffer
limit; past it the framer makes new objects), so the pool holds about that much at most:
what the send queue held at its fullest. The spare bodies are kept while bodies are lent
between two drains of the queue, or while a sender waits for it to drain (a refused
send, ``wait_drained``, ``send_wait``): a burst of large messages, however often the
loop catches up with it, reuses the same buffers. A queue that drains with no body lent
since it last drained, and nobody waiting, keeps at most one spare of up to
:data:`IDLE_KEEP` bytes.

A connection may go silent right after a burst (small messages and pings mostly go out
without queueing, so without a drain): the spare bodies must not stay with it for good.
So when a drain keeps more than that allowance (:meth:`BodyPool.drained` returns True),
the connection arms one timer of :data:`IDLE_DELAY` seconds, unless one is pending; when
it fires (:meth:`BodyPool.expire`), a pool that lent nothing since it was armed
(:meth:`BodyPool.watch`) keeps the allowance only, and one that lent is watched one more
period. So spare bodies outlive the last message lent by one to two periods, never more;
they all go when the connection closes. A busy connection arms at most one timer per
period, never one per message.
"""

from __future__ import annotations

from typing import Final

__all__ = ["IDLE_DELAY", "IDLE_KEEP", "BodyPool"]

IDLE_KEEP: Final = 256 * 1024
"""The most spare bytes a pool keeps once idle: its queue drained with no body lent
since it last drained and no sender waiting, or no body lent for :data:`IDLE_DELAY`."""

IDLE_DELAY: Final = 1.0
"""Seconds between a drain that keeps more than :data:`IDLE_KEEP` and the check that
trims the spare bodies if none was lent meanwhile (see :meth:`BodyPool.expire`)."""


class BodyPool:
    """The frame bodies one connection lends its framer and gets back once written.

    Disabled (lends nothing) until :meth:`enable`: a framer used without a connection
    that gives bodies back never lends one.
    """

    __slots__ = ("_lent", "_spare", "least", "lent_bytes", "limit", "recent", "used")

    def __init__(self) -> None:
        self._lent: dict[int, bytearray] = {}  # by id(): the bodies out, held alive
        self._spare: list[bytearray] = []  # bodies written out, for the next ones
        self.lent_bytes = 0  # their size when lent (at least what they hold now)
        self.limit = 0  # lend while fewer bytes than this are out
        self.least = 0  # the smallest body lent
        self.used = False  # a body was lent since the queue last drained
        self.recent = False  # a body was lent since the idle check was armed (watch)

    def enable(self, limit: int, least: int) -> None:
        """Lend bodies of ``least`` bytes or more while fewer than ``limit`` bytes are
        out (the connection's send buffer limit): the connection queues such bodies by
        reference and gives them back. Holds the connection's lock."""
        self.limit = limit
        self.least = max(least, 1)

    def take(self, size: int) -> bytearray | None:
        """A buffer for a body of ``size`` bytes, lent until given back (its contents
        and size are the caller's to set), or None: too small to lend, or too many bytes
        out (the caller makes a new object). Holds the connection's lock."""
        if size < self.least or self.lent_bytes >= self.limit:
            return None  # (disabled: least is 0 and so is limit)
        spare = self._spare
        body = spare.pop() if spare else bytearray()
        self.used = True
        self.recent = True
        self._lent[id(body)] = body
        self.lent_bytes += size
        return body

    def lends(self, body: object) -> bool:
        """Whether ``body`` is out, lent by this pool."""
        return self._lent.get(id(body)) is body

    def give(self, body: object) -> None:
        """``body`` was written out: keep it for the next :meth:`take` if this pool lent
        it; anything else is left alone. Holds the connection's lock."""
        lent = self._lent
        key = id(body)
        mine = lent.get(key)
        if mine is None or mine is not body:
            return
        del lent[key]
        self._spare.append(mine)
        # A body partly written was cut from the front: it counts less than it did.
        self.lent_bytes = self.lent_bytes - len(mine) if lent else 0

    def drained(self, busy: bool) -> bool:
        """The send queue is empty. If bodies were lent since it last drained, or if
        ``busy`` (a sender waits for this, and will send on at once), every spare body
        is kept for the next ones; else at most one small one. Holds the connection's
        lock (any thread: the one that wrote the queue out).

        Returns:
            True if the pool keeps more than the idle allowance (one spare of up to
            :data:`IDLE_KEEP` bytes): the caller arms the idle check (:meth:`watch`,
            then :meth:`expire` in :data:`IDLE_DELAY` seconds) unless one is pending.
        """
        if busy or self.used:
            self.used = False
            return self._excess()
        self._trim()
        return False

    def watch(self) -> None:
        """The idle check is armed: :meth:`expire` will tell whether a body was lent
        after this call. Holds the connection's lock (any thread)."""
        self.recent = False

    def expire(self) -> bool:
        """The idle check is due (loop thread, from the timer armed after :meth:`watch`).
        If no body was lent since, keep at most the idle allowance (one spare of up to
        :data:`IDLE_KEEP` bytes) and return False: the check is done. Else keep every
        spare body, watch again and return True: the caller arms the check once more.
        Holds the connection's lock."""
        if self.recent:
            self.recent = False
            return True
        self._trim()
        return False

    def _excess(self) -> bool:
        """Whether the spare bodies exceed the idle allowance."""
        spare = self._spare
        return len(spare) > 1 or (len(spare) == 1 and spare[0].__alloc__() > IDLE_KEEP)

    def _trim(self) -> None:
        """Keep at most the idle allowance: the last spare body, if it is small."""
        if self._excess():
            spare = self._spare
            last = spare[-1]
            spare.clear()
            if last.__alloc__() <= IDLE_KEEP:
                spare.append(last)

    def clear(self) -> None:
        """Let go of every body, lent or spare: the connection closed (its queue is
        gone) or stopped lending. Holds the connection's lock."""
        self._lent.clear()
        self._spare.clear()
        self.lent_bytes = 0

    def spare(self) -> int:
        """How many written-out bodies wait to be reused (for tests and statistics)."""
        return len(self._spare)
