"""Tests of the node: for_each, for_each_async, the pull API, stop, errors and Ctrl+C."""

from __future__ import annotations

import _thread
import contextlib
import datetime
import errno
import gc
import os
import platform
import queue
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    Address,
    Connected,
    Endpoint,
    ListenerUsedError,
    LoopThreadError,
    Message,
    NodeEvent,
    NodeHandler,
    NodeListener,
    NodeStoppedError,
    NodeTask,
    SendStatus,
    Signal,
    Transport,
)

from .helpers import Node, watchdog

WAIT = 5.0  # generous bound for anything that should happen "at once"
LOCAL = "127.0.0.1:0"


class Boom(Exception):
    """Raised by test callbacks."""


@contextlib.contextmanager
def stopped_on_exit(handler: NodeHandler[Any], task: NodeTask) -> Iterator[NodeTask]:
    """Stop the node and join its thread on exit, without re-raising the callback's error."""
    try:
        yield task
    finally:
        handler.stop()
        task.thread.join(WAIT)
        assert not task.thread.is_alive()


def host_port(addr: Address) -> tuple[str, int]:
    assert isinstance(addr, tuple)
    return str(addr[0]), int(addr[1])


def assert_port_closed(addr: Address) -> None:
    """Nothing listens on ``addr`` any more: a connect is refused, a bind succeeds."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(host_port(addr), timeout=WAIT).close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(host_port(addr))
        sock.listen()


def assert_eof(peer: socket.socket) -> None:
    peer.settimeout(WAIT)
    assert peer.recv(16) == b""


def echo_round_trip_events(
    handler: NodeHandler[Any],
) -> tuple[Endpoint, list[tuple[str, int]], threading.Event]:
    """Listen and connect on ``handler``; return (client endpoint, log, done) for a callback
    made by :func:`echo_callback`."""
    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    client, _local = handler.network.connect(Transport.FRAMED_TCP, addr)
    handler.signals.send("hello")
    return client, [], threading.Event()


def echo_callback(
    handler: NodeHandler[Any], client: Endpoint, log: list[tuple[str, int]], done: threading.Event
) -> Callable[[NodeEvent[Any]], None]:
    """A callback that logs (kind, thread ident) of every event and stops once the client
    got its message echoed and the signal arrived."""
    kinds: set[str] = set()

    def on_event(event: NodeEvent[Any]) -> None:
        ident = threading.get_ident()
        match event:
            case Connected(endpoint, True):
                log.append(("connected", ident))
                assert handler.network.send(endpoint, b"ping") is SendStatus.SENT
            case Accepted(_endpoint, _listener_id):
                log.append(("accepted", ident))
            case Message(endpoint, data) if endpoint != client:
                log.append(("server-message", ident))
                handler.network.send(endpoint, data)
            case Message(endpoint, data):
                assert data == b"ping"
                log.append(("client-message", ident))
            case Signal(value):
                assert value == "hello"
                log.append(("signal", ident))
            case _:
                log.append((type(event).__name__, ident))
        kinds.add(log[-1][0])
        if kinds >= {"connected", "accepted", "server-message", "client-message", "signal"}:
            done.set()
            handler.stop()

    return on_event


# -- which thread ------------------------------------------------------------------------


def test_for_each_runs_every_event_in_the_calling_thread(node: Node) -> None:
    handler, listener = node
    client, log, done = echo_round_trip_events(handler)
    with watchdog(handler) as fired:
        listener.for_each(echo_callback(handler, client, log, done))
    assert not fired.is_set()
    assert done.is_set()
    assert {ident for _kind, ident in log} == {threading.get_ident()}
    assert not handler.is_running()


def test_for_each_async_runs_in_a_named_thread(node: Node) -> None:
    handler, listener = node
    client, log, done = echo_round_trip_events(handler)
    task = listener.for_each_async(echo_callback(handler, client, log, done), name="my-node")
    with stopped_on_exit(handler, task):
        assert task.thread.name == "my-node"
        assert task.thread.daemon
        assert done.wait(WAIT)
        assert task.wait(WAIT) is True
    assert {ident for _kind, ident in log} == {task.thread.ident}
    assert task.thread.ident != threading.get_ident()


def test_node_task_wait_false_before_stop_true_after(node: Node) -> None:
    handler, listener = node
    task = listener.for_each_async(lambda _event: None)
    with stopped_on_exit(handler, task):
        assert task.wait(0.05) is False
        assert task.wait(0) is False
        assert task.thread.is_alive()
        handler.stop()
        assert task.wait(WAIT) is True
        assert not task.thread.is_alive()
        assert task.wait() is True  # again, and with no timeout


def test_node_task_wait_from_the_loop_thread_raises(node: Node) -> None:
    handler, listener = node
    errors: queue.Queue[BaseException | None] = queue.Queue()
    tasks: list[NodeTask] = []
    ready = threading.Event()

    def on_event(event: NodeEvent[Any]) -> None:
        ready.wait(WAIT)
        try:
            tasks[0].wait(0)
        except LoopThreadError as exc:
            errors.put(exc)
        else:
            errors.put(None)

    handler.signals.send("go")
    task = listener.for_each_async(on_event)
    tasks.append(task)
    ready.set()
    with stopped_on_exit(handler, task):
        assert isinstance(errors.get(timeout=WAIT), LoopThreadError)


def test_node_task_as_context_manager_stops_and_joins(node: Node) -> None:
    handler, listener = node
    seen: queue.Queue[object] = queue.Queue()
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    with listener.for_each_async(seen.put) as task:
        handler.signals.send("ping")
        assert seen.get(timeout=WAIT) == Signal("ping")
        assert task.thread.is_alive()
        assert handler.is_running()
    assert not task.thread.is_alive()
    assert not handler.is_running()
    assert_port_closed(addr)


# -- the callback raises -----------------------------------------------------------------


def test_exception_in_for_each_callback_stops_closes_and_reraises(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    calls: list[NodeEvent[Any]] = []

    def on_event(event: NodeEvent[Any]) -> None:
        calls.append(event)
        if isinstance(event, Accepted):
            raise Boom("from the callback")

    with socket.create_connection(host_port(addr), timeout=WAIT) as peer:
        handler.signals.send("not-delivered")  # would come after the Accepted event
        with watchdog(handler) as fired, pytest.raises(Boom, match="from the callback"):
            listener.for_each(on_event, on_error="stop")
        assert not fired.is_set()
        assert [type(event) for event in calls] == [Accepted]
        assert not handler.is_running()
        assert_eof(peer)
    assert_port_closed(addr)
    with pytest.raises(NodeStoppedError):
        handler.network.listen(Transport.TCP, LOCAL)


def test_exception_in_for_each_async_callback_is_reraised_by_wait(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted):
            raise Boom("async boom")

    with socket.create_connection(host_port(addr), timeout=WAIT) as peer:
        task = listener.for_each_async(on_event, on_error="stop")
        with stopped_on_exit(handler, task):
            with pytest.raises(Boom, match="async boom"):
                task.wait(WAIT)
            assert task.wait(0) is True  # the error is raised once
            assert not handler.is_running()
            assert_eof(peer)
    assert_port_closed(addr)


def test_exception_in_callback_raised_from_context_manager_exit(node: Node) -> None:
    handler, listener = node

    def on_event(event: NodeEvent[Any]) -> None:
        raise Boom(repr(event))

    with (
        pytest.raises(Boom, match="Signal"),
        listener.for_each_async(on_event, on_error="stop") as task,
    ):
        handler.signals.send("x")
        task.thread.join(WAIT)
    assert not task.thread.is_alive()
    assert not handler.is_running()


# -- stop --------------------------------------------------------------------------------


def test_stop_from_another_thread_returns_for_each_quickly(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    running = threading.Event()
    stopped_at: list[float] = []

    def stopper() -> None:
        if running.wait(WAIT):
            stopped_at.append(time.monotonic())
            handler.stop()

    def on_event(event: NodeEvent[Any]) -> None:
        if event == Signal("running"):
            running.set()  # then the loop sleeps: no timer, nothing pending

    handler.signals.send("running")
    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        with watchdog(handler) as fired:
            listener.for_each(on_event)
        returned_at = time.monotonic()
    finally:
        thread.join(WAIT)
    assert not fired.is_set()
    assert stopped_at
    assert returned_at - stopped_at[0] < 1.0
    assert not handler.is_running()
    assert_port_closed(addr)


def test_stop_before_for_each(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    calls: list[NodeEvent[Any]] = []
    handler.signals.send("never")
    assert handler.is_running()
    handler.stop()
    handler.stop()  # twice is fine
    assert not handler.is_running()
    assert_port_closed(addr)  # stop closes at once when no loop runs

    start = time.monotonic()
    with watchdog(handler):
        listener.for_each(calls.append)
    assert time.monotonic() - start < 1.0
    assert calls == []
    handler.stop()  # after the loop ended, too


def test_after_stop_connect_and_listen_raise_node_stopped(node: Node) -> None:
    handler, _listener = node
    handler.stop()
    assert not handler.is_running()
    with pytest.raises(NodeStoppedError):
        handler.network.listen(Transport.TCP, LOCAL)
    with pytest.raises(NodeStoppedError):
        handler.network.connect(Transport.FRAMED_TCP, "127.0.0.1:9")
    with pytest.raises(NodeStoppedError):
        handler.network.connect_sync(Transport.TCP, "127.0.0.1:9", timeout=1)
    with pytest.raises(NodeStoppedError):
        handler.signals.send("ignored")  # it would never be delivered


def test_stop_while_running_async_then_calls_raise(node: Node) -> None:
    handler, listener = node
    task = listener.for_each_async(lambda _event: None)
    with stopped_on_exit(handler, task):
        handler.stop()
        handler.stop()
        assert task.wait(WAIT) is True
        assert not handler.is_running()
        with pytest.raises(NodeStoppedError):
            handler.network.listen(Transport.TCP, LOCAL)
        with pytest.raises(NodeStoppedError):
            handler.network.connect(Transport.TCP, "127.0.0.1:9")


def test_nodes_dropped_without_stop_close_their_descriptors_when_collected() -> None:
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings():
        # Each unclosed socket and waker says so as it is collected: expected here.
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(20):
            handler, listener = message_io.split()
            handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
            del handler, listener
        gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before


# -- blocking calls from the loop thread -------------------------------------------------


def test_blocking_calls_from_the_callback_raise_loop_thread_error(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    endpoint, _local = handler.network.connect(Transport.TCP, addr)
    raised: dict[str, BaseException | None] = {}

    def on_event(event: NodeEvent[Any]) -> None:
        if event != Signal("go"):
            return
        try:
            handler.network.connect_sync(Transport.TCP, addr, timeout=1)
        except LoopThreadError as exc:
            raised["connect_sync"] = exc
        else:
            raised["connect_sync"] = None
        try:
            handler.network.wait_drained(endpoint, timeout=1)
        except LoopThreadError as exc:
            raised["wait_drained"] = exc
        else:
            raised["wait_drained"] = None
        handler.stop()

    handler.signals.send("go")
    with watchdog(handler) as fired:
        listener.for_each(on_event)
    assert not fired.is_set()
    assert isinstance(raised["connect_sync"], LoopThreadError)
    assert "connect_sync" in str(raised["connect_sync"])
    assert isinstance(raised["wait_drained"], LoopThreadError)
    assert "wait_drained" in str(raised["wait_drained"])


# -- Ctrl+C ------------------------------------------------------------------------------

# Syscall numbers of epoll_wait / epoll_pwait / epoll_pwait2, for /proc/<tid>/syscall.
_EPOLL_SYSCALLS = {"x86_64": {"232", "281", "441"}, "aarch64": {"22", "441"}}


def _in_epoll_wait(native_id: int) -> bool | None:
    """Whether the thread sleeps in epoll_wait now; None if /proc cannot tell."""
    base = f"/proc/self/task/{native_id}/"
    try:
        with open(base + "wchan") as wchan:
            if "epoll" in wchan.read():
                return True
        with open(base + "syscall") as syscall:
            number = syscall.read().split(" ", 1)[0]
    except OSError:
        return None
    numbers = _EPOLL_SYSCALLS.get(platform.machine())
    return None if numbers is None else number in numbers


def _wait_until_asleep_in_poll(native_id: int) -> None:
    """Spin until the thread sleeps in epoll_wait (bounded by WAIT; best effort)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        asleep = _in_epoll_wait(native_id)
        if asleep is None or asleep:
            return


@contextlib.contextmanager
def interrupt_when_idle(
    listener_ready: threading.Event, interrupt: Callable[[], object]
) -> Iterator[list[float]]:
    """Run ``interrupt()`` from a helper thread once the loop, on the main thread, has
    shown it runs (``listener_ready``) and is asleep in its poll with nothing to do."""
    assert threading.current_thread() is threading.main_thread(), "needs the main thread"
    main_native_id = threading.main_thread().native_id
    assert main_native_id is not None
    sent_at: list[float] = []

    def interrupter() -> None:
        if listener_ready.wait(WAIT):
            _wait_until_asleep_in_poll(main_native_id)
            sent_at.append(time.monotonic())
            interrupt()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupter, name="interrupter")
    thread.start()
    try:
        yield sent_at
    finally:
        thread.join(WAIT)
        signal.signal(signal.SIGINT, previous)


def _send_sigint_to_main_thread() -> None:
    main_ident = threading.main_thread().ident
    assert main_ident is not None
    signal.pthread_kill(main_ident, signal.SIGINT)


INTERRUPTS: dict[str, Callable[[], object]] = {
    # A real SIGINT, sent to the main thread while the loop sleeps in epoll_wait.
    "sigint": _send_sigint_to_main_thread,
    # A SIGINT that reaches the main thread just before the loop enters epoll_wait only
    # *trips* the Python handler (the C-level handler runs) and never interrupts the wait.
    # _thread.interrupt_main() trips the handler exactly that way, without a real signal:
    # a deterministic stand-in for that race.
    "tripped": _thread.interrupt_main,
}


def _drive(listener: NodeListener[Any], driver: str, on_event: Callable[[Any], None]) -> None:
    if driver == "for_each":
        listener.for_each(on_event)
    else:
        for event in listener:  # the pull API: blocks in receive()
            on_event(event)


@pytest.mark.parametrize("how", sorted(INTERRUPTS))
@pytest.mark.parametrize("driver", ["for_each", "pull"])
def test_keyboard_interrupt_stops_the_node_and_closes(node: Node, driver: str, how: str) -> None:
    """Ctrl+C while the node waits on the main thread: KeyboardInterrupt comes out
    promptly, and nothing is left running (README: "Ctrl+C returns promptly")."""
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    running = threading.Event()
    seen: list[object] = []

    def on_event(event: NodeEvent[Any]) -> None:
        seen.append(event)
        if event == Signal("running"):
            running.set()  # then the loop sleeps: no timer, nothing pending

    handler.signals.send("running")
    with interrupt_when_idle(running, INTERRUPTS[how]) as sent_at:
        with watchdog(handler, seconds=2.0) as fired, pytest.raises(KeyboardInterrupt):
            _drive(listener, driver, on_event)
        returned_at = time.monotonic()
    assert not fired.is_set(), "Ctrl+C was only seen after the watchdog woke the loop"
    assert seen == [Signal("running")]
    assert sent_at
    assert returned_at - sent_at[0] < WAIT
    assert not handler.is_running()
    assert_port_closed(addr)


def _wait_until_in_condition_wait(ident: int) -> None:
    """Spin until the thread ``ident`` runs ``threading.Condition.wait`` (bounded by
    WAIT): a signal then interrupts that wait, whatever it does at the C level."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(ident)
        if frame is not None and frame.f_code is threading.Condition.wait.__code__:
            return


def test_keyboard_interrupt_in_task_wait_returns_once_the_node_is_closed(node: Node) -> None:
    """Ctrl+C in ``NodeTask.wait()``: the node is stopped and closed before
    KeyboardInterrupt comes out (a join interrupted by it is not enough on CPython
    3.11/3.12, which then takes the thread for stopped)."""
    handler, listener = node
    fds_at_start = len(os.listdir("/proc/self/fd"))
    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    accepted = threading.Semaphore(0)
    count = 100

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Accepted):
            accepted.release()

    task = listener.for_each_async(on_event)
    for _ in range(count):
        handler.network.connect(Transport.FRAMED_TCP, addr)
    for _ in range(count):
        assert accepted.acquire(timeout=WAIT)
    main_ident = threading.main_thread().ident
    assert main_ident is not None and threading.current_thread() is threading.main_thread()
    waiting = threading.Event()

    def interrupter() -> None:
        if waiting.wait(WAIT):
            _wait_until_in_condition_wait(main_ident)
            signal.pthread_kill(main_ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupter, name="interrupter")
    thread.start()
    try:
        waiting.set()
        with pytest.raises(KeyboardInterrupt):
            task.wait()
        # At once: every connection and the listener are closed, the loop has ended.
        assert len(os.listdir("/proc/self/fd")) <= fds_at_start
        assert not handler.is_running()
        assert_port_closed(addr)
        assert task.wait(0)  # done: nothing more to raise
    finally:
        thread.join(WAIT)
        signal.signal(signal.SIGINT, previous)


# -- one consumer ------------------------------------------------------------------------


def test_a_listener_runs_one_loop_only(node: Node) -> None:
    handler, listener = node
    handler.stop()
    listener.for_each(lambda _event: None)
    with pytest.raises(ListenerUsedError):
        listener.for_each(lambda _event: None)
    with pytest.raises(ListenerUsedError):
        listener.for_each_async(lambda _event: None)
    with pytest.raises(ListenerUsedError):
        listener.receive(0)


def test_receive_while_for_each_async_runs_raises(node: Node) -> None:
    handler, listener = node
    task = listener.for_each_async(lambda _event: None)
    with stopped_on_exit(handler, task):
        with pytest.raises(ListenerUsedError):
            listener.receive(0)
        with pytest.raises(ListenerUsedError):
            listener.try_receive()
        with pytest.raises(ListenerUsedError):
            next(iter(listener))
        with pytest.raises(ListenerUsedError):
            listener.for_each(lambda _event: None)
        with pytest.raises(ListenerUsedError):
            listener.for_each_async(lambda _event: None)
        assert task.thread.is_alive()


# -- the pull API ------------------------------------------------------------------------


def test_receive_returns_none_on_timeout(node: Node) -> None:
    handler, listener = node
    start = time.monotonic()
    assert listener.receive(0.05) is None
    assert time.monotonic() - start >= 0.05
    assert handler.is_running()
    handler.signals.send("now")
    assert listener.receive(WAIT) == Signal("now")
    assert listener.receive(0.01) is None


def test_receive_with_a_timeout_of_weeks_polls_and_returns_what_comes(node: Node) -> None:
    # Longer than epoll_wait's longest finite wait (about 24.8 days): the poll is capped
    # and the turn after looks again, instead of the poll refusing the timeout.
    handler, listener = node
    _, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
    with socket.create_connection(host_port(addr), timeout=WAIT):
        event = listener.receive(30 * 86400.0)  # the listener is readable: no wait
        assert isinstance(event, Accepted)
    assert handler.is_running()


def test_a_timer_weeks_away_keeps_the_node_running(node: Node) -> None:
    handler, listener = node
    handler.signals.send_with_timer("monthly", datetime.timedelta(days=30))
    seen: queue.Queue[NodeEvent[Any]] = queue.Queue()
    task = listener.for_each_async(seen.put)
    with stopped_on_exit(handler, task):
        handler.signals.send("now")
        assert seen.get(timeout=WAIT) == Signal("now")
        # The next poll waits for the timer 30 days away; a stop must still end it.
        handler.stop()
        assert task.wait(WAIT)  # re-raises what ended the node, if anything did
    assert seen.empty()


def test_receive_with_a_timeout_gives_up_while_another_thread_receives(node: Node) -> None:
    handler, listener = node
    got: queue.Queue[NodeEvent[Any] | None] = queue.Queue()
    first = threading.Thread(target=lambda: got.put(listener.receive()), name="first")
    first.start()
    try:
        assert first.native_id is not None
        _wait_until_asleep_in_poll(first.native_id)  # it has the loop
        answers: list[object] = []

        def second() -> None:
            answers.append(listener.receive(0))  # never blocks
            answers.append(listener.receive(0.05))  # None once 0.05 s have passed
            answers.append(listener.try_receive())

        other = threading.Thread(target=second, name="second")
        start = time.monotonic()
        other.start()
        other.join(WAIT)
        assert not other.is_alive(), "receive() with a timeout blocked past it"
        assert answers == [None, None, None]
        assert time.monotonic() - start >= 0.05
        handler.signals.send("for the first")
        assert got.get(timeout=WAIT) == Signal("for the first")
    finally:
        handler.stop()
        first.join(WAIT)
    assert not first.is_alive()


def test_try_receive_returns_a_ready_signal(node: Node) -> None:
    handler, listener = node
    assert listener.try_receive() is None
    handler.signals.send("ready")
    # The signal is queued and ready: the documented non-blocking pull must return it.
    assert listener.try_receive() == Signal("ready")
    assert listener.try_receive() is None


def test_iteration_yields_events_and_ends_after_stop_from_another_thread(node: Node) -> None:
    handler, listener = node
    for value in range(3):
        handler.signals.send(value)
    seen: list[NodeEvent[Any]] = []
    stopper = threading.Thread(target=handler.stop)
    with watchdog(handler) as fired:
        for event in listener:
            seen.append(event)
            if event == Signal(2):
                stopper.start()  # stop while this thread pulls (maybe blocked in receive)
    stopper.join(WAIT)
    assert not fired.is_set()
    assert seen == [Signal(0), Signal(1), Signal(2)]
    assert not handler.is_running()
    assert listener.receive(0) is None


def test_iteration_ends_right_after_stop_in_the_loop_body(node: Node) -> None:
    handler, listener = node
    for value in range(5):
        handler.signals.send(value)
    seen: list[NodeEvent[Any]] = []
    with watchdog(handler) as fired:
        for event in listener:
            seen.append(event)
            if event == Signal(1):
                handler.stop()
    assert not fired.is_set()
    # stop() is final: like for_each, nothing is delivered after the event that stopped it.
    assert seen == [Signal(0), Signal(1)]


def test_pull_api_network_round_trip(node: Node) -> None:
    handler, listener = node
    listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    client, _local = handler.network.connect(Transport.FRAMED_TCP, addr)
    got: dict[str, Any] = {}
    deadline = time.monotonic() + WAIT
    while "echo" not in got and time.monotonic() < deadline:
        event = listener.receive(WAIT)
        match event:
            case Connected(endpoint, True):
                assert endpoint == client
                handler.network.send(client, b"pull")
            case Accepted(endpoint, accepted_by):
                assert accepted_by == listener_id
                got["server"] = endpoint
            case Message(endpoint, data) if endpoint != client:
                handler.network.send(endpoint, data)
            case Message(endpoint, data):
                got["echo"] = data
            case _:
                pytest.fail(f"unexpected {event!r}")
    assert got["echo"] == b"pull"
    assert got["server"].resource_id.is_remote


# -- nothing is lost before the loop starts ----------------------------------------------


def test_events_before_the_loop_starts_are_not_lost(node: Node) -> None:
    handler, listener = node
    listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    client, _local = handler.network.connect(Transport.FRAMED_TCP, addr)
    synced, _local2 = handler.network.connect_sync(Transport.FRAMED_TCP, addr, timeout=WAIT)
    assert handler.network.is_ready(synced.resource_id) is True
    handler.signals.send("early")
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()

    with listener.for_each_async(events.put):
        got = [events.get(timeout=WAIT) for _ in range(5)]
    assert events.empty()
    connected = [event for event in got if isinstance(event, Connected)]
    accepted = [event for event in got if isinstance(event, Accepted)]
    assert sorted(connected, key=lambda e: e.endpoint.resource_id) == [
        Connected(client, True),
        Connected(synced, True),
    ]
    assert len(accepted) == 2
    assert all(event.listener_id == listener_id for event in accepted)
    assert Signal("early") in got


def test_peer_connecting_before_the_loop_starts_is_accepted(node: Node) -> None:
    handler, listener = node
    listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    with socket.create_connection(host_port(addr), timeout=WAIT) as peer:
        peer.sendall(b"early bytes")
        with listener.for_each_async(events.put):
            accepted = events.get(timeout=WAIT)
            assert isinstance(accepted, Accepted)
            assert accepted.listener_id == listener_id
            received = b""
            while len(received) < len(b"early bytes"):
                message = events.get(timeout=WAIT)
                assert isinstance(message, Message)
                assert message.endpoint == accepted.endpoint
                received += message.data
            assert received == b"early bytes"


def test_connect_refused_before_loop_reports_connected_false(node: Node) -> None:
    handler, listener = node
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # bound, not listening: connects are refused
        endpoint, _local = handler.network.connect(Transport.TCP, f"127.0.0.1:{port}")
        events: queue.Queue[NodeEvent[Any]] = queue.Queue()
        with listener.for_each_async(events.put):
            assert events.get(timeout=WAIT) == Connected(endpoint, False)
        assert handler.network.is_ready(endpoint.resource_id) is None


def test_connect_sync_refused_raises_connect_error(node: Node) -> None:
    handler, _listener = node
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(message_io.ConnectError) as info:
            handler.network.connect_sync(Transport.TCP, f"127.0.0.1:{port}", timeout=WAIT)
    assert info.value.errno == errno.ECONNREFUSED
    assert info.value.strerror == os.strerror(errno.ECONNREFUSED)
    assert f"127.0.0.1:{port}" in str(info.value)
