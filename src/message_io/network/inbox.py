"""The events of a node turned by an outer event loop, on their way to the consumer:
a bounded queue, the future of the task waiting for the next one, and the node's
``emit`` that fills them, compiled with the engine.

On asyncio (and uvloop) the task waiting for an event is run at once, inside the turn
that has the event, as ``for_each`` calls its callback: the inbox completes the task's
future and runs the task's done callback itself, in the task's context, instead of
leaving it to the loop's next round (one more poll and one more round per event).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .net_event import Message
from .turner import Turner

__all__ = ["MAX_QUEUED_EVENTS", "Inbox"]

MAX_QUEUED_EVENTS: Final = 4096
"""Events the listener may hold unconsumed before the node stops reading its sockets."""


class Inbox:
    """The listener's side of a node on an outer event loop (its thread only).

    ``aloop`` is the asyncio event loop whose waiting task :meth:`wake` may run at once
    (with ``current_task``, asyncio's), or None: the waiter's future is then only
    completed. With ``future_type`` (``asyncio.Future``), :meth:`new_future` makes the
    loop's futures natively. :meth:`bind` ties it to its driver before use."""

    def __init__(
        self,
        aloop: Any = None,
        current_task: Callable[[Any], object] | None = None,
        future_type: Callable[..., Any] | None = None,
    ) -> None:
        self.events: deque[Any] = deque()
        self.waiter: Any = None  # the consumer's future, if it waits
        # for_each's callback: called with each event inside the turn, instead of queueing
        self.callback: Callable[[Any], object] | None = None
        self.throttled = False  # the queue is full: the node's input is paused
        self.aloop = aloop
        self.current_task = current_task
        self.future_type = future_type
        self.driver: Any = None
        self.turner: Turner | None = None

    def bind(self, driver: Any, turner: Turner) -> None:
        """Tie the inbox to ``driver`` (an ``OuterDriver``, which turns the node with
        ``turner``): it calls the driver's ``settle(event)`` first with every event but a
        ``Message`` (it completes what other tasks await: a connect, room to send), its
        ``throttle()`` when the queue reaches :data:`MAX_QUEUED_EVENTS` and its
        ``unthrottle()`` once half of it is taken; it checks the consumer with the
        driver's ``check_consumer()`` and takes what stopped the node with its
        ``take_error()``, and makes
        futures with its ``new_future()`` unless it has a ``future_type``."""
        self.driver = driver
        self.turner = turner

    def new_future(self) -> Any:
        """A new future of the loop: ``future_type(loop=aloop)`` (called natively, with
        no keyword dictionary built per call as ``functools.partial`` builds), or the
        driver's."""
        future_type = self.future_type
        if future_type is None:
            return self.driver.new_future()
        return future_type(loop=self.aloop)

    def next(self, waited: Any) -> Any:
        """Take the first queued event; if there is none, return a new future instead,
        which becomes :attr:`waiter` and which :meth:`wake` completes once there is one
        (the consumer awaits it and asks again, with it as ``waited``:
        ``OuterDriver.__anext__``). ``waited``: the future the consumer awaited before
        asking, if any; it waits no more.

        Compiled code here awaits nothing: mypyc throws into the awaited object with the
        three-argument ``throw()``, which Python 3.12 deprecates, so a cancelled consumer
        would get a ``DeprecationWarning``.

        Raises:
            StopAsyncIteration: the node is stopped and every event was taken (what
                stopped it is raised first, once).
            ListenerUsedError: another task waits for events, or ``for_each`` runs.
        """
        if waited is not None and self.waiter is waited:
            self.waiter = None
        if self.events:
            return self.take()
        if self.callback is not None or self.waiter is not None:
            self.driver.check_consumer()  # raises
        turner = self.turner
        if turner is None or turner.finished:
            self.driver.take_error()
            raise StopAsyncIteration
        waiter = self.waiter = self.new_future()
        return waiter

    def take(self) -> Any:
        """Take the first queued event (there is one); once half of a full queue is
        taken, the driver's ``unthrottle()`` resumes the node's input."""
        events = self.events
        event = events.popleft()
        if self.throttled and len(events) <= MAX_QUEUED_EVENTS // 2:
            self.driver.unthrottle()
        return event

    def emit(self, event: Any) -> None:
        """The node's emit: queue ``event`` for the consumer, after settling what awaits
        it, and wake the consumer if it waits. (While ``for_each`` runs, the node's emit
        is its ``Guarded`` callback, which settles events itself.)"""
        if type(event) is not Message:
            self.driver.settle(event)
        callback = self.callback
        if callback is not None:
            callback(event)
            return
        events = self.events
        events.append(event)
        if len(events) >= MAX_QUEUED_EVENTS and not self.throttled:
            self.driver.throttle()  # at once: the rest of this turn reads nothing more
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.wake(waiter)

    def wake(self, waiter: Any) -> None:
        """Complete the consumer's future ``waiter``; on asyncio, also run the task
        waiting on it, before returning.

        The task is run only when no task is running (so never a task inside another)
        and the future has one done callback: the awaiting task's (or ``wait_for``'s).
        Else the future is completed as usual and its callbacks run in the loop's next
        round. A callback that raises goes to the loop's exception handler."""
        if waiter.done():
            return
        aloop = self.aloop
        current_task = self.current_task
        if aloop is None or current_task is None:
            waiter.set_result(None)
            return
        callbacks = waiter._callbacks  # [(callback, context)], as every asyncio Future
        if not callbacks or len(callbacks) != 1 or current_task(aloop) is not None:
            waiter.set_result(None)
            return
        entry = callbacks[0]  # indexed: unpacking an Any tuple would iterate it
        callback = entry[0]
        context = entry[1]
        waiter.remove_done_callback(callback)
        waiter.set_result(None)
        try:
            context.run(callback, waiter)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - as the loop does with its callbacks
            aloop.call_exception_handler(
                {"message": "Exception in callback", "exception": exc, "future": waiter}
            )
