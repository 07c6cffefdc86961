"""message_io on trio: a node turned by the running trio loop, awaitable connect and
send, ``async for``.

::

    import message_io.trio as mio

    async def main() -> None:
        async with mio.open_node() as (handler, listener):   # stopped when it ends
            server, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
            await handler.network.send(server, b"hello")       # waits out backpressure
            async for event in listener:                       # every event, in order
                ...

    trio.run(main)

The handler, its network and the listener are those of ``message_io.asyncio``
(:mod:`message_io.awaitables`): the same calls, the same events, the same bounded queue.

Theory of operation. The node's poller is itself a file descriptor (epoll's), readable
whenever one of the node's sockets, or its waker, is ready. A task of the node, started
in a nursery, waits for it with ``trio.lowlevel.wait_readable``, no longer than until
the node's earliest timer; then it runs one *turn* of the node that never waits: reads,
accepts, handshakes, writes, timers and signals, exactly as ``for_each`` does, each
event put in the listener's queue (or, in ``for_each``, given to its callback). No
thread is started and no event crosses threads. Other threads may still use the
handler's synchronous calls (``send_nowait``, ``listen``, ``signals.send``...): they
wake the node through its waker, which makes the poller readable.

Cancellation is trio's: a task cancelled while it waits in ``connect`` removes the
connection, in ``send`` sends nothing, in ``async for`` or ``receive`` loses no event.
Leaving :func:`open_node`'s block (or the nursery given to :func:`split` being
cancelled) stops the node and closes everything.

Needs trio (``pip install trio``); epoll (Linux) for the poller's descriptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias, TypeVar, overload

try:
    import trio
except ImportError as exc:  # pragma: no cover - exercised without trio installed
    raise ImportError("message_io.trio needs trio: pip install trio") from exc

from .awaitables import (
    MAX_QUEUED_EVENTS,
    AsyncNetwork,
    AsyncNodeHandler,
    AsyncNodeListener,
    OuterDriver,
    split_with,
)
from .network.endpoint import ResourceId
from .network.loop import DEFAULT_MAX_INCOMPLETE_BYTES, Loop
from .network.resolver import Resolver
from .network.turner import MIN_WAIT

__all__ = [
    "MAX_QUEUED_EVENTS",
    "AsyncNetwork",
    "AsyncNodeHandler",
    "AsyncNodeListener",
    "open_node",
    "split",
]

S = TypeVar("S")

# What open_node() returns: ``async with`` gives (handler, listener).
_NodeContext: TypeAlias = AbstractAsyncContextManager[
    tuple[AsyncNodeHandler[S], AsyncNodeListener[S]]
]


class _Future:
    """What the awaitable API asks of a future (asyncio's ``done``, ``set_result``,
    ``set_exception``, ``await``), over a ``trio.Event``. The trio thread only."""

    __slots__ = ("_error", "_event", "_result")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: Any) -> None:
        self._result = result
        self._event.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._event.wait().__await__()
        if self._error is not None:
            raise self._error
        return self._result


class _Driver(OuterDriver):
    """Turns the node from a task of the trio run whose token is ``token`` (see
    :class:`OuterDriver`)."""

    def __init__(self, engine: Loop[Any], token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self.home = token
        self.current = _current_token
        self.new_future = _Future
        super().__init__(engine, None)  # turned by run(), not planned on a loop

    def check(self) -> None:
        if _current_token() is not self.token:
            raise RuntimeError("this node's coroutines run in the trio run that made it")

    def wake_soon(self) -> None:
        if not self.finished:
            self.engine.waker.wake()  # the node's task wakes from its wait (any thread)

    def call_soon_threadsafe(self, callback: Callable[[ResourceId], None], arg: ResourceId) -> None:
        try:
            self.token.run_sync_soon(callback, arg)
        except trio.RunFinishedError:
            pass  # nothing waits any more

    async def wait_timeout(self, future: Any, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            await future
            return True
        return False

    async def wait_closed(self) -> None:
        await self.closed  # a trio.Event underneath: cancelling the wait leaves it be

    async def run(self) -> None:
        """Turn the node until it stops; then close it. The node's task."""
        engine = self.engine
        turn = self.turner.run
        fd = engine.poller.fileno()
        try:
            while turn(-1, 0):
                timeout = engine.next_timeout()
                if timeout is None:
                    await trio.lowlevel.wait_readable(fd)
                elif timeout <= 0.0:
                    await trio.lowlevel.checkpoint()
                else:
                    with trio.move_on_after(max(timeout, MIN_WAIT)):
                        await trio.lowlevel.wait_readable(fd)
        finally:
            self.finish()


def _current_token() -> trio.lowlevel.TrioToken | None:
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


@overload
def split(
    nursery: trio.Nursery,
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]: ...
@overload
def split(
    nursery: trio.Nursery,
    signal_type: type[S],
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[AsyncNodeHandler[S], AsyncNodeListener[S]]: ...


def split(
    nursery: trio.Nursery,
    signal_type: type[Any] | None = None,
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]:
    """Create a node turned by a task started in ``nursery``.

    Call it from the trio run (a task or a synchronous function it calls). The node
    runs at once, on the run's thread, with no thread of its own, until
    ``handler.stop()``, ``async with handler:`` ending, or the nursery being cancelled;
    the nursery waits for it to close. :func:`open_node` makes the nursery itself.

    Args:
        nursery: Where the node's task runs.
        signal_type: As for :func:`message_io.split`.
        max_incomplete_bytes: As for :func:`message_io.split`.
        resolver: As for :func:`message_io.split`.

    Returns:
        ``(handler, listener)``.

    Raises:
        RuntimeError: not called from a trio run.
        ValueError, TypeError: as for :func:`message_io.split`.
    """
    token = trio.lowlevel.current_trio_token()

    def start(engine: Loop[Any]) -> _Driver:
        driver = _Driver(engine, token)
        nursery.start_soon(driver.run, name="message_io node")
        return driver

    return split_with(start, max_incomplete_bytes=max_incomplete_bytes, resolver=resolver)


@overload
def open_node(
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> _NodeContext[Any]: ...
@overload
def open_node(
    signal_type: type[S],
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> _NodeContext[S]: ...


def open_node(
    signal_type: type[Any] | None = None,
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> _NodeContext[Any]:
    """``async with open_node() as (handler, listener):`` a node for the block.

    The node runs in a nursery of its own, opened with the block; when the block ends
    (or raises) the node is stopped and the block waits until everything is closed. An
    exception leaving the block leaves that nursery, so it comes out in an
    ``ExceptionGroup``, as from any trio nursery (catch it with ``except*``).

    Args:
        signal_type: As for :func:`message_io.split`.
        max_incomplete_bytes: As for :func:`message_io.split`.
        resolver: As for :func:`message_io.split`.

    Raises:
        RuntimeError: not used from a trio run.
        ValueError, TypeError: as for :func:`message_io.split`.
    """
    return _open(max_incomplete_bytes, resolver)


@asynccontextmanager
async def _open(
    max_incomplete_bytes: int, resolver: Resolver | None
) -> AsyncIterator[tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]]:
    async with trio.open_nursery() as nursery:
        handler, listener = split(
            nursery, max_incomplete_bytes=max_incomplete_bytes, resolver=resolver
        )
        try:
            yield handler, listener
        finally:
            handler.stop()
