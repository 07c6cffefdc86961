"""The node: ``split()`` gives a handler that acts and a listener that delivers events.

::

    handler, listener = message_io.split()
    handler.network.listen(Transport.FRAMED_TCP, "0.0.0.0:3042")
    listener.for_each(on_event)          # every event, on this thread, until stop()

The handler (:class:`NodeHandler`) is thread-safe: share it, call it from the callback or
from other threads. The listener (:class:`NodeListener`) runs the node's one event loop,
in one of three ways: :meth:`~NodeListener.for_each` (this thread),
:meth:`~NodeListener.for_each_async` (a background thread, returns a :class:`NodeTask`),
or the pull API :meth:`~NodeListener.receive` / iteration, for programs with their own
main loop. Nothing that happens before the loop starts is lost: connections and listeners
made earlier are polled when it starts, and their events delivered then.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, Literal, TypeVar, overload

from . import _compiled
from .errors import ListenerUsedError, LoopThreadError
from .events import NOTHING, EventSender, Signal
from .network.controller import NetworkController
from .network.loop import DEFAULT_MAX_INCOMPLETE_BYTES, Loop
from .network.net_event import NetEvent
from .network.resolver import Resolver
from .util.guarded import Guarded
from .util.throttle import LogThrottle

__all__ = [
    "DEFAULT_MAX_INCOMPLETE_BYTES",
    "ErrorHandler",
    "NodeEvent",
    "NodeHandler",
    "NodeListener",
    "NodeTask",
    "OnError",
    "Signal",
    "split",
]

log = logging.getLogger("message_io")

S = TypeVar("S")

NodeEvent = NetEvent | Signal[S]
"""What the callback receives: a network event or a ``Signal``."""

ErrorHandler = Callable[[Any, Exception], object]
"""``handler(event, exc)``: called on the loop thread when the callback raised ``exc``
while handling ``event``. If it raises in turn, the node stops with that exception."""

OnError = Literal["log", "stop"] | ErrorHandler
"""What the loop does when the callback raises an ``Exception``; see
:meth:`NodeListener.for_each`."""


def error_handler(on_error: OnError, throttle: LogThrottle) -> ErrorHandler | None:
    """What handles an exception of the event callback under ``on_error``: None for
    ``"stop"`` (it propagates and stops the node)."""
    if on_error == "stop":
        return None
    if on_error == "log":

        def report(event: Any, exc: Exception) -> None:
            throttle.log(
                logging.ERROR,
                "the event callback raised on %r; the node goes on with the next event",
                event,
                exc_info=exc,
            )

        return report
    if callable(on_error):
        return on_error
    raise ValueError(f"on_error must be 'log', 'stop' or a callable, not {on_error!r}")


def guarded_callback(
    callback: Callable[[Any], object], on_error: OnError, throttle: LogThrottle
) -> Callable[[Any], object]:
    """``callback``, with exceptions handled by ``on_error`` instead of stopping the loop."""
    handle = error_handler(on_error, throttle)
    if handle is None:
        return callback
    if _compiled.ACTIVE:
        return Guarded(callback, handle)  # compiled: no Python frame of its own

    def guarded(event: Any) -> None:  # interpreted, a closure is the faster
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001 - the policy decides
            handle(event, exc)

    return guarded


def _stopped_by(exc: BaseException) -> None:
    """Log, at once, the exception that stops a node (it may never be retrieved)."""
    if isinstance(exc, Exception):
        log.error("the node stopped: the event callback raised", exc_info=exc)


class NodeHandler(Generic[S]):
    """Acts on the node: ``network`` (connect, listen, send, remove), ``signals``, ``stop``.

    Thread-safe; every method may be called from any thread, including the callback.
    """

    __slots__ = ("_loop", "_network")

    def __init__(self, loop: Loop[S]) -> None:
        self._loop = loop
        self._network = NetworkController(loop)

    @property
    def network(self) -> NetworkController:
        """Connections and listeners: ``connect``, ``listen``, ``send``, ``remove``..."""
        return self._network

    @property
    def signals(self) -> EventSender[S]:
        """The node's own events: ``send``, ``send_with_priority``, ``send_with_timer``..."""
        return self._loop.signals

    def stop(self) -> None:
        """Stop the node: the loop returns promptly and closes every connection and
        listener (writing out, without waiting, what the OS takes of queued data).

        Final: the node cannot be restarted. The callback is not called again once the
        event being handled returns. Safe to call twice, from any thread, before the loop
        starts (then it closes everything at once) or after it ended.
        """
        self._loop.stop()

    def is_running(self) -> bool:
        """True until :meth:`stop` is called (or the loop ends because the callback raised)."""
        return self._loop.running


class NodeTask:
    """The background thread of :meth:`NodeListener.for_each_async`.

    Use it as a context manager to stop the node and wait for it on exit::

        with listener.for_each_async(on_event):
            ...                        # the node runs in the background
        # here the node is stopped and its thread joined
    """

    __slots__ = ("_done", "_error", "_loop", "_thread")

    def __init__(self, loop: Loop[Any], thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self._error: BaseException | None = None
        # Set by the thread once the node is closed. Waited on instead of join():
        # CPython (3.11, 3.12) marks a thread stopped when a join() of it is interrupted
        # (Ctrl+C), and every later join() then returns at once.
        self._done = threading.Event()

    @property
    def thread(self) -> threading.Thread:
        """The thread running the loop."""
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the node stops.

        Returns:
            True once the loop has ended, False if ``timeout`` passed first.

        Raises:
            BaseException: whatever the callback raised (which stopped the node).
            LoopThreadError: called from the loop's own thread.
            KeyboardInterrupt: Ctrl+C while waiting; the node is stopped and joined first.
        """
        if threading.current_thread() is self._thread:
            raise LoopThreadError("NodeTask.wait() called from the node's own thread")
        done = self._done
        try:
            if timeout is None:
                while not done.wait(0.25):  # short waits keep Ctrl+C responsive
                    pass
            elif not done.wait(timeout):
                return False
        except KeyboardInterrupt:
            self._loop.stop()
            while not done.wait(0.25):
                pass
            self._thread.join()
            raise
        self._thread.join()  # it has closed the node: it is returning
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return True

    def __enter__(self) -> NodeTask:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.stop()
        if threading.current_thread() is not self._thread:
            self.wait()


class NodeListener(Generic[S]):
    """Runs the node's event loop and delivers every event, network and signal.

    Only one loop may consume a listener at a time.
    """

    __slots__ = ("_loop", "_used")

    def __init__(self, loop: Loop[S]) -> None:
        self._loop = loop
        self._used = False

    def for_each(
        self, callback: Callable[[NodeEvent[S]], object], *, on_error: OnError = "log"
    ) -> None:
        """Run the loop in this thread, calling ``callback(event)`` for every event, until
        ``handler.stop()``.

        The callback runs on this thread, one event at a time; it may use the handler
        freely (send, connect, remove, signals, stop). On return every resource is closed.

        Args:
            callback: Called with every event.
            on_error: What an ``Exception`` raised by the callback does:

                * ``"log"`` (default): it is logged at ERROR with its traceback (at most
                  10 such lines a second, then a count), and the next event is delivered.
                  A bug triggered by one peer's message must not take every other peer
                  down: asyncio's loop, Twisted, Tornado and websockets' servers do the
                  same.
                * ``"stop"``: the node stops and the exception is raised from
                  ``for_each`` (or ``NodeTask.wait()``), the Rust crate's behaviour; best
                  while developing and in tests.
                * a callable ``on_error(event, exc)``: your own policy, e.g. log and
                  ``handler.network.remove(event.endpoint.resource_id)`` to drop the peer
                  that caused it; if it raises, the node stops with that exception.

                ``KeyboardInterrupt``, ``SystemExit`` and other ``BaseException``
                subclasses always stop the node. A node that stops because of an exception logs it
                at ERROR with the traceback at once.

        Raises:
            BaseException: what stopped the node: the callback's exception with
                ``on_error="stop"``, or Ctrl+C (``KeyboardInterrupt``); the node is
                stopped and closed first.
            ListenerUsedError: the listener is already running.
            ValueError: ``on_error`` is not one of the above.
        """
        loop = self._loop
        guarded = guarded_callback(callback, on_error, loop.peer_log)
        self._claim()
        loop.acquire_drive()
        try:
            loop.run(guarded)
        except BaseException as exc:
            _stopped_by(exc)
            raise
        finally:
            loop.release_drive()

    def for_each_async(
        self,
        callback: Callable[[NodeEvent[S]], object],
        *,
        on_error: OnError = "log",
        name: str = "message-io-node",
    ) -> NodeTask:
        """Run the loop in a new background thread named ``name``; return at once.

        Args:
            callback: As for :meth:`for_each`.
            on_error: As for :meth:`for_each`.
            name: The thread's name.

        Returns:
            A :class:`NodeTask` to wait for the node (and get the exception that stopped
            it, which is also logged at ERROR at once, whether or not anyone waits).

        Raises:
            ListenerUsedError: the listener is already running.
            ValueError: ``on_error`` is not valid.
        """
        loop = self._loop
        guarded = guarded_callback(callback, on_error, loop.peer_log)
        self._claim()
        started = threading.Event()
        task: NodeTask

        def run() -> None:
            loop.acquire_drive()
            started.set()
            try:
                loop.run(guarded)
            except BaseException as exc:  # noqa: BLE001 - handed to wait()
                _stopped_by(exc)
                task._error = exc
            finally:
                try:
                    loop.release_drive()
                finally:
                    task._done.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        task = NodeTask(loop, thread)
        thread.start()
        started.wait()
        return task

    def receive(self, timeout: float | None = None) -> NodeEvent[S] | None:
        """Pull the next event, running the loop in this thread until one is there.

        For programs with their own main loop (a game loop): ``receive(0)`` never blocks.
        Between calls nothing runs; sockets and timers wait for the next call.

        Another thread in ``receive`` has the loop until its call returns: this one
        waits for it, within ``timeout`` (``receive(0)`` then returns None at once).

        Returns:
            The next event, or None if ``timeout`` seconds passed or the node is stopped
            (``handler.is_running()`` tells which).

        Raises:
            ListenerUsedError: ``for_each`` or ``for_each_async`` consumes the listener.
        """
        if self._used:
            raise ListenerUsedError("this listener is consumed by for_each/for_each_async")
        loop = self._loop
        if timeout is None:
            loop.acquire_drive()
        else:
            deadline = time.monotonic() + timeout
            if not loop.acquire_drive(timeout):
                return None
            timeout = max(0.0, deadline - time.monotonic())
        try:
            event = loop.run_until_event(timeout)
        finally:
            loop.release_drive()
        return None if event is NOTHING else event

    def try_receive(self) -> NodeEvent[S] | None:
        """The next event if one is ready now, else None; never blocks."""
        return self.receive(0)

    def __iter__(self) -> Iterator[NodeEvent[S]]:
        """Iterate over events (pull API) until the node is stopped."""
        while True:
            event = self.receive()
            if event is None:
                if not self._loop.running:
                    return
                continue
            yield event

    def _claim(self) -> None:
        if self._used:
            raise ListenerUsedError("a NodeListener can run only one loop")
        self._used = True


@overload
def split(
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[NodeHandler[Any], NodeListener[Any]]: ...
@overload
def split(
    signal_type: type[S],
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[NodeHandler[S], NodeListener[S]]: ...


def split(
    signal_type: type[Any] | None = None,
    *,
    max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    resolver: Resolver | None = None,
) -> tuple[NodeHandler[Any], NodeListener[Any]]:
    """Create a node: a handler to act, and a listener to receive events.

    Args:
        signal_type: Only for type checkers: ``split(str)`` types the node's signals as
            ``str``, so ``handler.signals.send(1)`` is flagged and ``Signal.value`` is a
            ``str``. Not checked at run time.
        max_incomplete_bytes: The most memory, in bytes, that unfinished incoming
            messages may hold across all connections of the node (default 64 MiB).
            Past it, connections left holding more than 16 KiB of an unfinished message
            are not read (TCP's flow control slows their peers) until the total falls
            under three quarters of the cap; clients of small messages are served
            throughout. Each connection's ``message_timeout`` still applies.
        resolver: What resolves the host names given to ``connect``: a function with
            the signature and results of :func:`socket.getaddrinfo` (the default),
            called as ``resolver(host, port, 0, socket_type)`` on a resolver thread,
            never on the loop thread. It may block; its exceptions
            (``socket.gaierror``) become ``Connected(endpoint, False, error)``. The
            resolver threads (8 at most) serve every node of the process, and a call
            that hangs keeps its thread after its connect has timed out: a resolver of
            yours should give up within a bound of its own, or eight hung calls make
            every node's lookups wait.

    Raises:
        ValueError: ``max_incomplete_bytes`` is not a positive int.
        TypeError: ``resolver`` is not callable.

    Returns:
        ``(handler, listener)``. Nothing runs yet: connections and listeners made now are
        served once the listener's loop starts, and their events are not lost.
    """
    loop: Loop[Any] = new_loop(max_incomplete_bytes=max_incomplete_bytes, resolver=resolver)
    return NodeHandler(loop), NodeListener(loop)


def new_loop(*, max_incomplete_bytes: int, resolver: Resolver | None) -> Loop[Any]:
    """The engine of a new node, its arguments checked (for :func:`split` and the
    asyncio ``split``).

    Raises:
        ValueError: ``max_incomplete_bytes`` is not a positive int.
        TypeError: ``resolver`` is not callable.
    """
    if (
        not isinstance(max_incomplete_bytes, int)
        or isinstance(max_incomplete_bytes, bool)
        or max_incomplete_bytes < 1
    ):
        raise ValueError(
            f"max_incomplete_bytes must be a positive int, not {max_incomplete_bytes!r}"
        )
    if resolver is not None and not callable(resolver):
        raise TypeError(f"resolver must be callable like socket.getaddrinfo, not {resolver!r}")
    return Loop(max_incomplete_bytes=max_incomplete_bytes, resolver=resolver or socket.getaddrinfo)
