"""The awaitable API of a node turned by an async framework's event loop: the handler,
its network and the listener that ``message_io.asyncio`` and ``message_io.trio``
return, and :class:`OuterDriver`, what each framework's driver adds to the node.

A driver turns the node on its framework's loop (how is the framework's business) and
holds what awaits the node: the listener's bounded queue of events, the futures of
connects and of sends waiting for room. A future here is anything with asyncio's
``done()``, ``set_result()``, ``set_exception()`` and ``await``: asyncio's own, or
``message_io.trio``'s over a ``trio.Event``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Generic, TypeVar

from .errors import ConnectError, ListenerUsedError, NodeStoppedError
from .events import EventSender
from .network.adapter import BytesLike, ConnectConfig, ListenConfig, SendStatus
from .network.controller import EndpointStatistics, NetworkController
from .network.endpoint import Address, Endpoint, ResourceId
from .network.inbox import MAX_QUEUED_EVENTS, Inbox
from .network.loop import Loop
from .network.net_event import Connected, Disconnected, Drained, Message
from .network.resolver import Resolver
from .network.transport import Transport
from .network.turner import Turner
from .node import NodeEvent, OnError, error_handler, new_loop
from .util.guarded import Guarded

__all__ = [
    "MAX_QUEUED_EVENTS",
    "AsyncNetwork",
    "AsyncNodeHandler",
    "AsyncNodeListener",
    "OuterDriver",
    "split_with",
]

S = TypeVar("S")

_QUEUE_FULL: Final = SendStatus.QUEUE_FULL


class OuterDriver:
    """What awaits a node turned by an outer event loop, on that loop's thread.

    A framework's driver sets ``home`` (what ``current()`` returns on the loop's
    thread: the loop, or the run's token) and ``new_future`` (a callable that returns a
    new future of the loop) before calling this ``__init__`` from that thread, and
    provides the methods below that raise ``NotImplementedError``. Its
    turns run through :attr:`turner` (``outer``: the event loop it plans them on, or
    None if it turns the node from a task of its own with ``turner.run``). ``inbox``: the
    node's :class:`Inbox`, by default one that only completes the waiting consumer's
    future.

    Raises:
        ListenerUsedError: the node is already driven by another loop.
    """

    home: object
    current: Callable[[], object]
    new_future: Callable[[], Any]  # a new future of the loop

    def __init__(self, engine: Loop[Any], outer: Any, inbox: Inbox | None = None) -> None:
        self.engine = engine
        self.thread = threading.get_ident()
        # The turns of the node (compiled with the engine); it holds whether the node
        # is finished and what stopped it.
        self.turner = Turner(engine, outer, self.thread, self.finish)
        # The events on their way to the consumer, and the node's emit (compiled).
        self.inbox = inbox if inbox is not None else Inbox()
        self.inbox.bind(self, self.turner)
        self.connects: dict[Endpoint, Any] = {}  # futures of (Connected, local address)
        self.local_addr = NetworkController(engine).local_addr
        self.drains: dict[Endpoint, list[Any]] = {}  # futures of sends waiting for room
        self.closed: Any = self.new_future()
        if not engine.drive_lock.acquire(blocking=False):
            raise ListenerUsedError("the node is already driven by another loop")
        engine.owner = self.thread
        engine.emit = self.inbox.emit

    # -- the framework's part ------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The node is stopped and closed: no turn runs any more."""
        return self.turner.finished

    def check(self) -> None:
        """Raise ``RuntimeError`` unless called on the loop that turns the node."""
        raise NotImplementedError

    def wake_soon(self) -> None:
        """Make sure a turn runs soon (any thread)."""
        raise NotImplementedError

    def call_soon_threadsafe(self, callback: Callable[[ResourceId], None], arg: ResourceId) -> None:
        """Call ``callback(arg)`` on the loop's thread, unless the loop is gone."""
        raise NotImplementedError

    def can_wake(self) -> bool:
        """Whether the loop can still wake the tasks waiting on the node."""
        return True

    def orphaned(self) -> bool:
        """Whether the loop that turns the node has closed with the node still open
        (``asyncio.run`` returned without ``handler.stop()``): then no turn will ever
        run, so the node is closed here, at once (any thread)."""
        if self.turner.finished or self.can_wake():
            return False
        self.finish()
        return True

    async def wait_timeout(self, future: Any, timeout: float) -> bool:
        """Wait for ``future`` at most ``timeout`` seconds: True if it is done."""
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Wait until :attr:`closed` is done, without cancelling it if cancelled."""
        raise NotImplementedError

    # -- the node's input --------------------------------------------------------------

    def throttle(self) -> None:
        """Stop reading the node's sockets until the consumer has taken half of the
        queue; writes, timers and signals go on (loop thread)."""
        self.inbox.throttled = True
        self.engine.pause_input(True)

    def unthrottle(self) -> None:
        self.inbox.throttled = False
        if not self.finished:
            self.engine.pause_input(False)
            self.wake_soon()

    def finish(self) -> None:
        """The node stopped: close it, release every task waiting on it (the loop's
        thread; at once on another if the loop can no longer run a turn)."""
        turner = self.turner
        if turner.finished:
            return
        turner.finished = True
        turner.cancel()
        engine = self.engine
        engine.running = False
        try:
            engine.shutdown()
        finally:
            engine.poller.close()  # (again) the loop must not watch what failed to close
            engine.owner = None
            engine.drive_lock.release()
        if self.can_wake():  # else its futures can no longer wake anything
            self.release_waiters()

    def release_waiters(self) -> None:
        """The node is closed: release every task waiting on it (loop thread)."""
        stopped = NodeStoppedError("the node was stopped")
        for future in self.connects.values():
            if not future.done():
                future.set_exception(stopped)
        for waiters in self.drains.values():
            _wake_all(waiters)
        self.drains.clear()
        self._wake_consumer()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- events (event loop thread, inside a turn) -------------------------------------

    def settle(self, event: Any) -> None:
        """Settle what awaits ``event``: a connect's future, the sends waiting for room."""
        kind = event.__class__
        if kind is Connected:
            future = self.connects.get(event.endpoint)
            if future is not None and not future.done():
                # The local address now: the connection may be gone by the time the
                # connecting task runs.
                future.set_result((event, self.local_addr(event.endpoint)))
        elif kind is Drained or kind is Disconnected:
            waiters = self.drains.pop(event.endpoint, None)
            if waiters:
                _wake_all(waiters)

    def _wake_consumer(self) -> None:
        inbox = self.inbox
        waiter, inbox.waiter = inbox.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> OuterDriver:
        return self

    async def __anext__(self) -> Any:
        """The next event, once there is one (the loop's thread): the listener's
        ``async for`` (its ``__aiter__`` is the driver, so that each event costs one
        coroutine).

        Interpreted on purpose: a compiled coroutine throws into what it awaits with the
        three-argument ``throw()``, which Python 3.12 deprecates (a cancelled consumer
        would get a ``DeprecationWarning``); the queue and its future are compiled
        (``Inbox.next``).

        Raises:
            StopAsyncIteration: the node is stopped and every event was taken (what
                stopped it is raised first, once).
            ListenerUsedError: another task waits for events, or ``for_each`` runs.
            RuntimeError: not on the node's event loop.
        """
        if self.current() is not self.home:
            self.check()  # raises
        inbox = self.inbox
        event = inbox.next(None)
        while event is inbox.waiter:  # a future: no event yet (an event is never one)
            try:
                await event
            except BaseException:  # cancelled: this task waits no more
                if inbox.waiter is event:
                    inbox.waiter = None
                raise
            event = inbox.next(event)
        return event

    async def next_event(self, timeout: float | None) -> Any:
        """The next event; None after ``timeout`` seconds, or once the node is stopped
        and every event was taken."""
        if timeout is None:
            try:
                return await self.__anext__()
            except StopAsyncIteration:
                return None
        if self.current() is not self.home:
            self.check()  # raises
        inbox = self.inbox
        try:
            event = inbox.next(None)
        except StopAsyncIteration:
            return None
        if event is not inbox.waiter:
            return event
        try:
            if not await self.wait_timeout(event, timeout):
                return None
        finally:
            if inbox.waiter is event:
                inbox.waiter = None
        if not inbox.events:  # stopped, or another task took the event (receive(0))
            return None
        return inbox.take()

    def check_consumer(self) -> None:
        """Raise ``ListenerUsedError`` if the events have another consumer."""
        if self.inbox.callback is not None:
            raise ListenerUsedError("for_each consumes this node's events")
        if self.inbox.waiter is not None:
            raise ListenerUsedError("another task is already waiting for this node's events")

    def take_error(self) -> None:
        """Raise what stopped the node, once."""
        turner = self.turner
        error, turner.error = turner.error, None
        if error is not None:
            raise error

    # -- waiting for room (event loop thread) ------------------------------------------

    async def wait_room(self, endpoint: Endpoint) -> None:
        """Wait for ``Drained(endpoint)`` (or its end, or the node's)."""
        if self.finished:
            return
        future = self.new_future()
        self.drains.setdefault(endpoint, []).append(future)
        try:
            await future
        finally:
            waiters = self.drains.get(endpoint)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self.drains[endpoint]

    def forget(self, resource_id: ResourceId) -> None:
        """Release the sends waiting on a removed resource (any thread)."""
        if threading.get_ident() != self.thread:
            self.call_soon_threadsafe(self.forget, resource_id)
            return
        for endpoint in [e for e in self.drains if e.resource_id == resource_id]:
            _wake_all(self.drains.pop(endpoint))


def split_with(
    make: Callable[[Loop[Any]], OuterDriver],
    *,
    max_incomplete_bytes: int,
    resolver: Resolver | None,
) -> tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]:
    """A new node and its awaitable ``(handler, listener)``, turned by the driver that
    ``make(engine)`` returns once it is running; the node is closed if ``make`` raises.
    The ``split`` of ``message_io.asyncio`` and ``message_io.trio``."""
    engine: Loop[Any] = new_loop(max_incomplete_bytes=max_incomplete_bytes, resolver=resolver)
    try:
        driver = make(engine)
    except BaseException:
        engine.shutdown()
        raise
    return AsyncNodeHandler(engine, driver), AsyncNodeListener(driver)


def _wake_all(waiters: list[Any]) -> None:
    for future in list(waiters):
        if not future.done():
            future.set_result(None)


class AsyncNetwork:
    """``handler.network`` of a node on an event loop: ``await connect``, ``await
    send``, and the synchronous calls of :class:`~message_io.NetworkController`
    (listen, remove...).

    The coroutines run on the node's event loop. The synchronous calls may be made from
    any thread, as in the synchronous API.
    """

    __slots__ = ("__dict__", "_driver", "_send_unless_full", "_sync")

    def __init__(self, sync: NetworkController, driver: OuterDriver) -> None:
        self._sync = sync
        self._driver = driver
        # One engine call per message: a send, or QUEUE_FULL with a Drained arranged
        # and nothing refused (logged or counted).
        self._send_unless_full = driver.engine.registry.send_unless_full
        # As NetworkController.send: the engine's method itself, one frame less per
        # message than :meth:`send_nowait` below (which does the same), unless a
        # subclass overrides it.
        if type(self).send_nowait is AsyncNetwork.send_nowait:
            self.__dict__["send_nowait"] = sync.send

    async def connect(
        self, transport: Transport, addr: Any, *, config: ConnectConfig | None = None
    ) -> tuple[Endpoint, Address]:
        """Connect to ``addr`` and return once the connection is established.

        As :meth:`NetworkController.connect <message_io.NetworkController.connect>`
        (host names resolved off the loop, Happy Eyeballs), but waits for the outcome.
        The ``Connected`` event is still delivered to the listener.

        Returns:
            ``(endpoint, local_addr)`` of the established connection.

        Raises:
            ConnectError: it failed (``ConnectTimeout`` after ``connect_timeout``), with
                the reason; nothing is left of it.
            NodeStoppedError: the node was stopped meanwhile.
            AddressError, ConfigError: as for the synchronous ``connect``.
            asyncio.CancelledError, trio.Cancelled: the task was cancelled; the
                connection is removed.
        """
        driver = self._driver
        driver.check()
        endpoint, _local = self._sync.connect(transport, addr, config=config)
        future = driver.new_future()
        driver.connects[endpoint] = future
        try:
            event, local = await future
        except BaseException:  # cancelled, or the node stopped: nothing is left of it
            self.remove(endpoint)
            raise
        finally:
            driver.connects.pop(endpoint, None)
        if not event.established:
            raise event.error or ConnectError(None, "failed", str(addr))
        if local is None:  # the transport has no socket address to tell
            local = ""
        return endpoint, local

    async def send(self, endpoint: Endpoint, data: BytesLike | str) -> SendStatus:
        """Send one message, waiting while ``endpoint``'s queue is full.

        Never returns ``QUEUE_FULL``: it waits for the queue to drain, then sends. The
        tasks waiting on one endpoint are woken in the order they came (a send made
        meanwhile, finding room, may go first). A slow peer only delays the tasks that
        send to it. Cancelling the task while it waits sends nothing.

        Returns:
            ``SENT``, or the status that tells why it cannot be sent
            (``RESOURCE_NOT_FOUND`` once the connection is gone, ...).

        Raises:
            RuntimeError: not awaited on the node's event loop (nothing is sent; use
                ``send_nowait`` from other threads).
        """
        driver = self._driver
        if driver.current() is not driver.home:
            driver.check()  # raises: not on the node's loop (nothing is sent)
        send_unless_full = self._send_unless_full
        while True:
            # Not a plain send: a refused send is logged and counted as a loss, and
            # this one waits instead.
            status = send_unless_full(endpoint, data)
            if status is not _QUEUE_FULL:
                return status
            if driver.finished:
                return SendStatus.RESOURCE_NOT_FOUND
            await driver.wait_room(endpoint)

    def send_nowait(self, endpoint: Endpoint, data: BytesLike | str) -> SendStatus:
        """Send without waiting: the synchronous ``send``, ``QUEUE_FULL`` included. Any
        thread."""
        return self._sync.send(endpoint, data)

    def listen(
        self, transport: Transport, addr: Any, *, config: ListenConfig | None = None
    ) -> tuple[ResourceId, Address]:
        """As the synchronous ``listen``: ``(listener_id, local_addr)``. Raises
        ``NodeStoppedError`` once the node is stopped, or its event loop closed."""
        self._driver.orphaned()
        return self._sync.listen(transport, addr, config=config)

    def remove(self, target: ResourceId | Endpoint) -> bool:
        """As the synchronous ``remove``; sends waiting on a removed connection or
        listener return ``RESOURCE_NOT_FOUND`` (a forgotten UDP peer can still be sent
        to: its waiting sends go on)."""
        removed = self._sync.remove(target)
        if removed:
            resource_id = target.resource_id if isinstance(target, Endpoint) else target
            self._driver.forget(resource_id)
        return removed

    def is_ready(self, resource_id: ResourceId) -> bool | None:
        """As the synchronous ``is_ready``."""
        return self._sync.is_ready(resource_id)

    def pause_reading(self, endpoint: Endpoint) -> bool:
        """As the synchronous ``pause_reading``."""
        return self._sync.pause_reading(endpoint)

    def resume_reading(self, endpoint: Endpoint) -> bool:
        """As the synchronous ``resume_reading``."""
        return self._sync.resume_reading(endpoint)

    def pending_bytes(self, endpoint: Endpoint) -> int:
        """As the synchronous ``pending_bytes``."""
        return self._sync.pending_bytes(endpoint)

    def statistics(self, endpoint: Endpoint) -> EndpointStatistics | None:
        """As the synchronous ``statistics``."""
        return self._sync.statistics(endpoint)

    def local_addr(self, endpoint: Endpoint) -> Address | None:
        """As the synchronous ``local_addr``."""
        return self._sync.local_addr(endpoint)


class AsyncNodeHandler(Generic[S]):
    """Acts on a node on an event loop: ``network``, ``signals``, ``stop``.

    ``async with handler:`` stops the node when the block ends and waits until it is
    closed.
    """

    __slots__ = ("_driver", "_engine", "_network")

    def __init__(self, engine: Loop[S], driver: OuterDriver) -> None:
        self._engine = engine
        self._driver = driver
        self._network = AsyncNetwork(NetworkController(engine), driver)

    @property
    def network(self) -> AsyncNetwork:
        """Connections and listeners: ``await connect``, ``await send``, ``listen``..."""
        return self._network

    @property
    def signals(self) -> EventSender[S]:
        """The node's own events, delivered to the listener (timers included). Any
        thread. Once the node's event loop has closed, sending raises
        ``NodeStoppedError``."""
        self._driver.orphaned()
        return self._engine.signals

    def stop(self) -> None:
        """Stop the node: every connection and listener closes on the loop's next turn,
        ``async for`` over the listener ends once it has the events queued before, and
        coroutines waiting in ``connect`` raise ``NodeStoppedError``. Any thread; final."""
        self._engine.stop()
        self._driver.wake_soon()

    def is_running(self) -> bool:
        """True until :meth:`stop`, or until the node's event loop has closed (which
        closes the node)."""
        return self._engine.running and not self._driver.orphaned()

    async def wait_closed(self) -> None:
        """Wait until the node is stopped and everything is closed.

        Raises:
            RuntimeError: not awaited on the node's event loop (or trio run).
        """
        driver = self._driver
        driver.check()
        await driver.wait_closed()

    async def __aenter__(self) -> AsyncNodeHandler[S]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        await self.wait_closed()


class AsyncNodeListener(Generic[S]):
    """Every event of a node on an event loop, in order: ``async for event in
    listener``.

    One task at a time may wait for events. The iteration ends once the node is stopped
    and the events it queued before have been taken.
    """

    __slots__ = ("_driver",)

    def __init__(self, driver: OuterDriver) -> None:
        self._driver = driver

    def __aiter__(self) -> AsyncIterator[NodeEvent[S]]:
        return self._driver  # its __anext__ is the coroutine itself: one per event

    async def for_each(
        self, callback: Callable[[NodeEvent[S]], object], *, on_error: OnError = "log"
    ) -> None:
        """Call ``callback(event)`` for every event until the node stops; the fastest form.

        The callback is a plain function, called by the event loop as soon as the node
        has the event (as ``asyncio.Protocol.data_received`` is), with no task switch per
        event. It must not block: send with ``handler.network.send_nowait`` and handle
        ``QUEUE_FULL`` (``Drained``, ``pause_reading``), or hand slow work to a task.
        Events queued before the call are delivered first.

        Args:
            callback: Called with every event, on the event loop's thread.
            on_error: As for the synchronous :meth:`~message_io.NodeListener.for_each`
                (``"log"`` by default, ``"stop"``, or a callable).

        Raises:
            BaseException: what stopped the node (the callback's exception with
                ``on_error="stop"``).
            ListenerUsedError: another task consumes the listener.
        """
        driver = self._driver
        driver.check()
        inbox = driver.inbox
        if inbox.callback is not None or inbox.waiter is not None:
            raise ListenerUsedError("another task already consumes this node's events")
        engine = driver.engine
        # The node calls it as its emit, natively when compiled: it settles what awaits
        # an event other than a message, then calls the callback under on_error.
        guarded = Guarded(
            callback,
            error_handler(on_error, engine.peer_log),
            before=driver.settle,
            skip=Message,
        )
        events = inbox.events
        inbox.callback = guarded
        try:
            try:
                while events:
                    guarded(events.popleft())
            except BaseException:
                driver.engine.stop()  # as when the callback raises inside a turn
                driver.wake_soon()
                raise
            if inbox.throttled:
                driver.unthrottle()
            engine.emit = guarded
            await driver.wait_closed()
            driver.take_error()
        finally:
            engine.emit = inbox.emit
            inbox.callback = None

    async def receive(self, timeout: float | None = None) -> NodeEvent[S] | None:
        """The next event, or None if ``timeout`` seconds pass first or the node is
        stopped (``handler.is_running()`` tells which). Cancelling the wait loses no
        event.

        Raises:
            ListenerUsedError: another task is already waiting for events.
        """
        event: NodeEvent[S] | None = await self._driver.next_event(timeout)
        return event
