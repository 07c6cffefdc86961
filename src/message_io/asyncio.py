"""message_io on a running asyncio event loop: awaitable connect and send, ``async for``.

::

    import message_io.asyncio as mio

    async def main() -> None:
        handler, listener = mio.split()               # bound to the running loop
        async with handler:                           # stops the node on exit
            server, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
            await handler.network.send(server, b"hello")   # waits out backpressure
            async for event in listener:              # every event, in order
                ...

Theory of operation. :func:`split` hands the node's sockets to the running loop: the
loop watches each of them itself (``loop.add_reader``/``add_writer``), as it watches
its own transports' sockets, and the node's waker with them. When one is ready, or when
the node's earliest timer or signal is due (``call_at``), the event loop runs one *turn*
of the node on its own thread (``network/turner.py``, compiled with the engine): the
ready socket is read, accepted or handshaken, then writes, timers and signals, exactly as
``for_each`` does, with each event appended to the listener's queue (or, in
``for_each``, given to its callback). A task waiting in ``async for`` is run at once,
inside the turn (``network/inbox.py``), not in a later round of the loop. No thread is
started, no event crosses threads and no second poll runs. The queue is bounded: past
4,096 events not yet consumed, the node stops reading and accepting (TCP slows the peers
down) until the consumer has taken half of them; writes, timers and signals go on
meanwhile, so a consumer waiting in ``await send`` still gets its room. A connection
reset while not read (paused) is found when it is read again.

Other threads may still use the handler's synchronous calls (``send_nowait``,
``listen``, ``signals.send``...): they wake the node through its waker, and the next
turn, on the event loop's thread, takes up what they asked for (a new socket to watch,
write interest for a full one).

The loop runs with uvloop as with asyncio's own loops (any loop with ``add_reader``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import BuiltinFunctionType
from typing import Any, Final, TypeVar, overload

from .awaitables import (
    MAX_QUEUED_EVENTS,
    AsyncNetwork,
    AsyncNodeHandler,
    AsyncNodeListener,
    OuterDriver,
    split_with,
)
from .network.endpoint import ResourceId
from .network.inbox import Inbox
from .network.loop import DEFAULT_MAX_INCOMPLETE_BYTES, Loop
from .network.resolver import Resolver

__all__ = ["MAX_QUEUED_EVENTS", "AsyncNetwork", "AsyncNodeHandler", "AsyncNodeListener", "split"]

S = TypeVar("S")

# The running loop or None, without raising: what a check per event can afford.
_running_loop: Final = asyncio._get_running_loop


def _c_current_task() -> Callable[[Any], object]:
    """``asyncio.current_task``, called once per event: before 3.12 it is a Python
    function that reads the C module's dictionary of running tasks, so that dictionary's
    own ``get`` is the same answer without a Python frame."""
    if isinstance(asyncio.current_task, BuiltinFunctionType):
        return asyncio.current_task
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    return tasks.get if isinstance(tasks, dict) else asyncio.current_task


_current_task: Final = _c_current_task()


class _Driver(OuterDriver):
    """Turns the node on the asyncio event loop ``aloop`` (see :class:`OuterDriver`)."""

    def __init__(self, engine: Loop[Any], aloop: asyncio.AbstractEventLoop) -> None:
        self.aloop = aloop
        self.home = aloop
        self.current = _running_loop
        # The task waiting in ``async for`` runs at once, inside the turn of its event.
        native = type(aloop.create_future()) is asyncio.Future  # asyncio's, uvloop's
        inbox = Inbox(aloop, _current_task, asyncio.Future if native else None)
        self.new_future = inbox.new_future if native else aloop.create_future
        super().__init__(engine, aloop, inbox)
        engine.attach(aloop, self.turner.ready)  # the loop watches the node's sockets
        self.turner.turn_soon()  # what was set up before split() returned

    def check(self) -> None:
        if _running_loop() is not self.aloop:
            raise RuntimeError("this node's coroutines run on the event loop that made it")

    def wake_soon(self) -> None:
        if self.aloop.is_closed():
            self.finish()  # no turn will ever run: close the node here
            return
        if threading.get_ident() == self.thread:
            self.turner.turn_soon()
        else:
            self.engine.waker.wake()

    def call_soon_threadsafe(self, callback: Callable[[ResourceId], None], arg: ResourceId) -> None:
        if not self.aloop.is_closed():  # else nothing waits any more
            self.aloop.call_soon_threadsafe(callback, arg)

    def can_wake(self) -> bool:
        return not self.aloop.is_closed()

    async def wait_timeout(self, future: Any, timeout: float) -> bool:
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)


@overload
def split(
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]: ...
@overload
def split(
    signal_type: type[S],
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[AsyncNodeHandler[S], AsyncNodeListener[S]]: ...


def split(
    signal_type: type[Any] | None = None,
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]:
    """Create a node driven by the running asyncio event loop.

    Call it from a coroutine. The node runs at once, on the loop's thread, with no thread
    of its own; stop it with ``handler.stop()`` or ``async with handler:``.

    Args:
        signal_type: As for :func:`message_io.split`.
        max_incomplete_bytes: As for :func:`message_io.split`.
        resolver: As for :func:`message_io.split`.

    Returns:
        ``(handler, listener)``.

    Raises:
        RuntimeError: no event loop is running in this thread.
        ValueError, TypeError: as for :func:`message_io.split`.
    """
    aloop = asyncio.get_running_loop()
    return split_with(
        lambda engine: _Driver(engine, aloop),
        max_incomplete_bytes=max_incomplete_bytes,
        resolver=resolver,
    )
