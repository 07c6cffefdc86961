"""Nodes that record their events, and the small waiting helpers of the suite.

A :class:`RecordingNode` runs its loop in a background thread (``for_each_async``) and
puts every event in a queue; the test thread waits on that queue with a timeout, never
with ``sleep``. Everything here uses the public API of :mod:`message_io` only.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import message_io
from message_io import Endpoint, NodeEvent, NodeHandler, NodeListener, NodeTask, Signal

__all__ = [
    "TIMEOUT",
    "Hook",
    "RecordingNode",
    "Worker",
    "assert_same_bytes",
    "kernel_send_capacity",
    "recv_exactly",
    "send_all",
]

TIMEOUT: Final = 10.0
"""Seconds any single wait of the suite may take before the test fails: generous, so a
loaded machine does not fail a correct transport."""

E = TypeVar("E")
T = TypeVar("T")

Hook: TypeAlias = "Callable[[RecordingNode, NodeEvent[Any]], bool | None]"
"""Runs on the loop thread for every event; returning True keeps it out of the queue."""


class _Call:
    """A function to run on a node's loop thread (sent as a signal)."""

    __slots__ = ("fn", "result")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.result: queue.Queue[tuple[bool, object]] = queue.Queue()


class RecordingNode:
    """A node whose events land in :attr:`events`, with helpers to wait for them.

    Args:
        name: A name for messages and the loop thread.
        hook: Called on the loop thread with every event before it is queued (to answer
            at once, like an echo server); an event it returns True for is not queued.
        **split_options: Passed to :func:`message_io.split`.
    """

    def __init__(self, name: str, hook: Hook | None = None, **split_options: Any) -> None:
        self.name = name
        handler: NodeHandler[Any]
        listener: NodeListener[Any]
        handler, listener = message_io.split(**split_options)
        self.handler = handler
        self.listener = listener
        self.events: queue.Queue[NodeEvent[Any]] = queue.Queue()
        self.task: NodeTask | None = None
        self._hook = hook

    @property
    def network(self) -> message_io.NetworkController:
        """The node's network controller."""
        return self.handler.network

    def _on_event(self, event: NodeEvent[Any]) -> None:
        if isinstance(event, Signal) and isinstance(event.value, _Call):
            call = event.value
            try:
                call.result.put((True, call.fn()))
            except BaseException as exc:  # noqa: BLE001 - raised again by run_on_loop
                call.result.put((False, exc))
            return
        if self._hook is not None and self._hook(self, event):
            return
        self.events.put(event)

    def start(self) -> None:
        """Run the loop in a background thread."""
        assert self.task is None, "started twice"
        self.task = self.listener.for_each_async(
            self._on_event, on_error="stop", name=f"node-{self.name}"
        )

    def stop(self) -> None:
        """Stop the node and join its thread; re-raises what the hook raised."""
        self.handler.stop()
        if self.task is not None:
            assert self.task.wait(TIMEOUT), f"node {self.name} did not stop"

    def run_on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and return its result (the loop must run).

        Raises:
            AssertionError: the loop did not run it within :data:`TIMEOUT`.
            Exception: what ``fn`` raised.
        """
        call = _Call(fn)
        self.handler.signals.send(call)
        try:
            ok, value = call.result.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"node {self.name}: the loop did not run the call") from None
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def sync(self) -> None:
        """Return once the loop has handled everything requested before this call
        (removals, closes): two full turns of the loop."""
        self.run_on_loop(lambda: None)
        self.run_on_loop(lambda: None)

    def next_event(self, timeout: float = TIMEOUT) -> NodeEvent[Any]:
        """The next event; fails if none comes within ``timeout`` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node {self.name}: no event within {timeout} s") from None

    def expect(self, kind: type[E], timeout: float = TIMEOUT) -> E:
        """The next event, which must be a ``kind``."""
        event = self.next_event(timeout)
        assert isinstance(event, kind), f"node {self.name}: expected {kind.__name__}, got {event}"
        return event

    def wait_for(self, kind: type[E], predicate: Callable[[E], bool] = lambda _e: True) -> E:
        """Skip events until a ``kind`` matching ``predicate``."""
        while True:
            event = self.next_event()
            if isinstance(event, kind) and predicate(event):
                return event

    def drain_events(self) -> list[NodeEvent[Any]]:
        """Every event queued right now."""
        out: list[NodeEvent[Any]] = []
        while not self.events.empty():  # the test thread is the only consumer
            out.append(self.events.get_nowait())
        return out


class Worker:
    """A daemon thread whose exception is re-raised by :meth:`join`."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self._target = target
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # noqa: BLE001 - raised again by join
            self._error = exc

    def join(self, timeout: float = 3 * TIMEOUT) -> None:
        """Wait for the thread; fail if it is still running, re-raise what it raised."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"thread {self.thread.name} did not finish"
        if self._error is not None:
            raise self._error


def send_all(node: RecordingNode, endpoint: Endpoint, messages: list[bytes]) -> int:
    """Send ``messages`` in order from the calling thread, honouring backpressure: on
    ``QUEUE_FULL`` wait until the queue is drained and send the same message again.

    Returns:
        How many times the queue was full.
    """
    send = node.network.send
    full = 0
    for data in messages:
        status = send(endpoint, data)
        while status is message_io.SendStatus.QUEUE_FULL:
            full += 1
            assert node.network.wait_drained(endpoint, TIMEOUT), "the queue did not drain"
            status = send(endpoint, data)
        assert status is message_io.SendStatus.SENT, status
    return full


FILL_SIZE: Final = 64 * 1024
"""The size of each message :func:`fill_queue` sends."""


def fill_queue(node: RecordingNode, endpoint: Endpoint) -> list[bytes]:
    """Send :data:`FILL_SIZE`-byte messages to ``endpoint`` until ``QUEUE_FULL``; return
    those sent, each ``SENT``. To find the queue still full afterwards, call it on the
    loop thread (:meth:`RecordingNode.run_on_loop`): from another, the loop may write
    part of the queue out meanwhile (the kernel often has room left when it fills)."""
    sent: list[bytes] = []
    for k in range(4096):  # 256 MiB: far more than the kernel's buffers plus the queue
        payload = k.to_bytes(4, "big") * (FILL_SIZE // 4)
        status = node.network.send(endpoint, payload)
        if status is message_io.SendStatus.QUEUE_FULL:
            return sent
        assert status is message_io.SendStatus.SENT, status
        sent.append(payload)
    raise AssertionError("the send queue never filled up")


def assert_same_bytes(got: bytes, expected: bytes) -> None:
    """``got == expected``, reporting the first difference instead of a huge diff."""
    if got == expected:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"{len(got)} bytes received, {len(expected)} expected; first difference at offset "
        f"{first}: got {got[first : first + 16]!r}, expected {expected[first : first + 16]!r}"
    )


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes from a blocking socket (fails on EOF or timeout)."""
    chunks = bytearray()
    while len(chunks) < size:
        data = sock.recv(min(size - len(chunks), 1 << 20))
        assert data, f"EOF after {len(chunks)} of {size} bytes"
        chunks += data
    return bytes(chunks)


def kernel_send_capacity() -> int:
    """An upper bound of what the kernel may buffer for one unread local connection
    (its send buffer, which Linux autotunes up to ``tcp_wmem``'s maximum, or at most
    ``wmem_max`` when set explicitly), so that a send queue larger than this can never
    be drained into the kernel while the peer reads nothing."""
    names = ("ipv4/tcp_wmem", "core/wmem_max", "core/wmem_default")
    return max(4 * 1024 * 1024, *map(_sysctl_last_int, names))


def _sysctl_last_int(name: str) -> int:
    try:
        return int(Path(f"/proc/sys/net/{name}").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 32 * 1024 * 1024  # no /proc: assume generously
