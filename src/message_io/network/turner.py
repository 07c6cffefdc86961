"""Turning a node from an outer event loop's callbacks (``message_io.asyncio``): one
non-blocking iteration of the node, then the next turn planned, compiled with the
engine.

The outer loop (asyncio's or uvloop's) watches the node's descriptors itself
(:meth:`Loop.attach`) and calls :meth:`Turner.ready` when one of them is ready; it
calls :meth:`Turner.turn` when a turn was asked for with ``call_soon``, or when the
node's earliest timer is due (``call_at``). Compiled, a turn adds no Python frame between the outer
loop and the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .loop import Loop

__all__ = ["MIN_WAIT", "Turner"]

MIN_WAIT: Final = 0.001
"""The shortest wait for the node's next timer, in seconds. uvloop rounds a shorter
delay down to "at once", and the turn would spin until the deadline; the node's timers
are never early, so a turn a little late is right."""


class Turner:
    """Runs the turns of ``engine`` on the outer event loop ``aloop``, from the thread
    ``thread`` (the loop's); ``finish`` is called, on that thread, once the node has
    stopped (from a turn, or at once if the loop can no longer run one). A loop that
    turns the node from a task of its own (trio) gives no ``aloop`` and calls only
    :meth:`run`."""

    def __init__(
        self, engine: Loop[Any], aloop: Any, thread: int, finish: Callable[[], None]
    ) -> None:
        self.engine = engine
        self.aloop = aloop
        self.thread = thread
        self.finish = finish
        self.error: BaseException | None = None  # what stopped the node, not yet raised
        self.finished = False
        self.soon: Any = None  # the turn asked for with call_soon, not run yet
        self.timer: Any = None  # the turn planned with call_at for the node's timers
        self.timer_at = 0.0

    def turn(self) -> None:
        """One non-blocking turn of the node; then plan the next one."""
        self.soon = None
        self.ready(-1, 0)

    def ready(self, fd: int, flags: int) -> None:
        """A turn for the node's descriptor ``fd``, which the event loop found ready
        (``flags``: the poller's mask), or (``fd`` -1) a turn that polls nothing
        (:meth:`Loop.attach`); then plan the next one."""
        if self.run(fd, flags):
            self.plan()

    def run(self, fd: int, flags: int) -> bool:
        """One turn of the node that never waits (as :meth:`ready`, without planning the
        next): False once the node is stopped, ``finish`` then called. What stopped it
        is kept in :attr:`error` for the consumer; ``KeyboardInterrupt`` and
        ``SystemExit`` are raised at once."""
        engine = self.engine
        if self.finished:
            return False
        if engine.running:
            engine.driver = self.thread
            poller = engine.poller
            poller.deferring = True  # one change per descriptor per turn (see Poller)
            try:
                if fd < 0:
                    engine.iterate(0.0)
                else:
                    engine.on_ready(fd, flags)
            except (KeyboardInterrupt, SystemExit) as exc:
                engine.running = False
                self.error = exc
                self.finish()
                raise  # as asyncio does with its own callbacks
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                engine.running = False
                self.error = exc
            finally:
                engine.driver = None
                poller.deferring = False
                poller.settle()
        if not engine.running:
            self.finish()
            return False
        return True

    def plan(self) -> None:
        """Ask the event loop for the next turn the node needs without a readable fd."""
        timeout = self.engine.next_timeout()
        if timeout is None:
            timer = self.timer
            if timer is not None:  # what it was for is gone (a deadline met, cancelled)
                self.timer = None
                timer.cancel()
            return
        if timeout <= 0.0:
            if self.soon is None:
                self.soon = self.aloop.call_soon(self.turn)
            return
        at = self.aloop.time() + max(timeout, MIN_WAIT)
        timer = self.timer
        if timer is not None and not timer.cancelled() and self.timer_at <= at:
            return  # an earlier (or the same) turn is already planned
        if timer is not None:
            timer.cancel()
        self.timer_at = at
        self.timer = self.aloop.call_at(at, self.on_timer)

    def on_timer(self) -> None:
        self.timer = None
        self.turn()

    def turn_soon(self) -> None:
        """Ask for a turn in the loop's next round, unless one is asked for already or
        the node is finished (the loop's thread)."""
        if self.soon is None and not self.finished:
            self.soon = self.aloop.call_soon(self.turn)

    def cancel(self) -> None:
        """Cancel the turns asked for (the node is finished)."""
        for handle in (self.soon, self.timer):
            if handle is not None:
                handle.cancel()
