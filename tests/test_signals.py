"""Tests of the node's signals: FIFO and priority queues, timers, cancellation, the waker."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import message_io
import message_io.events as events_module
import message_io.util.timers as timers_module
from message_io import NodeEvent, NodeListener, Signal, TimerId

from .helpers import Node, watchdog

WAIT = 5.0  # generous bound for anything that should happen "at once"


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, node: Node) -> FakeClock:
    """Replace ``monotonic`` in the signal and timer modules (only there), and the clock
    of ``node``'s timer heap, by a fake clock."""
    fake = FakeClock()
    monkeypatch.setattr(events_module, "monotonic", fake.monotonic)
    monkeypatch.setattr(timers_module, "monotonic", fake.monotonic)
    monkeypatch.setattr(node[0]._loop.timers, "clock", fake.monotonic)
    return fake


def values_until(listener: NodeListener[Any], sentinel: object, limit: int = 100) -> list[object]:
    """Pull events until ``Signal(sentinel)``; return every signal value, sentinel included."""
    values: list[object] = []
    for _ in range(limit):
        event = listener.receive(WAIT)
        assert isinstance(event, Signal), f"expected a Signal, got {event!r}"
        values.append(event.value)
        if event.value == sentinel:
            return values
    pytest.fail(f"no {sentinel!r} within {limit} events: {values!r}")


def run_async(
    listener: NodeListener[Any], callback: Callable[[NodeEvent[Any]], object]
) -> message_io.NodeTask:
    return listener.for_each_async(callback, name="signals-test-node")


# -- order -------------------------------------------------------------------------------


def test_delivery_order_priority_then_due_timers_then_normal(node: Node) -> None:
    handler, listener = node
    signals = handler.signals
    signals.send(1)
    signals.send(2)
    signals.send_with_timer("t1", 0)
    signals.send(3)
    signals.send_with_priority("p1")
    signals.send_with_timer("t2", 0.0)
    signals.send_with_priority("p2")
    assert signals.pending() == 7

    assert values_until(listener, 3, limit=7) == ["p1", "p2", "t1", "t2", 1, 2, 3]
    assert signals.pending() == 0


def test_due_timers_earliest_first_then_creation_order(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    signals = handler.signals
    signals.send("n1")
    signals.send_with_timer("late", 0.5)
    signals.send_with_timer("early-a", 0.2)
    signals.send_with_timer("early-b", 0.2)  # same deadline as early-a
    signals.send_with_priority("p")
    signals.send_with_timer("earliest", 0.1)
    signals.send_with_timer("not-due", 5.0)
    clock.advance(1.0)
    signals.send("n2")

    assert values_until(listener, "n2") == [
        "p",
        "earliest",
        "early-a",
        "early-b",
        "late",
        "n1",
        "n2",
    ]
    assert signals.pending() == 1  # "not-due"


def test_two_timers_with_the_same_deadline_both_fire(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    first = handler.signals.send_with_timer("a", 1.0)
    second = handler.signals.send_with_timer("b", 1.0)
    assert first != second
    assert handler.signals.pending() == 2

    clock.advance(1.0)
    handler.signals.send("end")
    assert values_until(listener, "end") == ["a", "b", "end"]
    assert handler.signals.pending() == 0


# -- timers on a fake clock: never early -----------------------------------------------


def test_timer_is_never_delivered_before_its_deadline_pull(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    handler.signals.send_with_timer("t", 10.0)
    assert listener.receive(0) is None

    # A normal signal makes the loop iterate and look at the timers at the fake "now".
    clock.advance(9.999)
    handler.signals.send("probe-1")
    assert values_until(listener, "probe-1") == ["probe-1"]
    assert handler.signals.pending() == 1

    clock.advance(0.001)  # exactly the deadline
    handler.signals.send("probe-2")
    assert values_until(listener, "probe-2") == ["t", "probe-2"]
    assert handler.signals.pending() == 0


def test_due_timer_is_returned_by_receive_zero(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    handler.signals.send_with_timer("t", 10.0)
    assert listener.receive(0) is None
    clock.advance(10.0)
    # receive(0) is the documented non-blocking pull ("a game loop"); a due timer is ready.
    assert listener.receive(0) == Signal("t")
    assert listener.receive(0) is None


def test_timer_is_never_delivered_early_by_a_running_loop(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    events: queue.Queue[object] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        events.put(event.value)

    handler.signals.send_with_timer("t", 10.0)
    with run_async(listener, on_event):
        # The loop sleeps on the timer; each probe wakes it at a fake "now".
        for step, probe in ((0.0, "probe-0"), (5.0, "probe-5"), (4.999, "probe-9.999")):
            clock.advance(step)
            handler.signals.send(probe)
            assert events.get(timeout=WAIT) == probe
        clock.advance(0.001)
        handler.signals.send("probe-10")
        assert events.get(timeout=WAIT) == "t"
        assert events.get(timeout=WAIT) == "probe-10"
    assert events.empty()


# -- cancellation ------------------------------------------------------------------------


def test_cancel_timer(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    signals = handler.signals
    cancelled = signals.send_with_timer("cancelled", 1.0)
    kept = signals.send_with_timer("kept", 2.0)

    assert signals.cancel_timer(cancelled) is True
    assert signals.cancel_timer(cancelled) is False  # already cancelled
    assert signals.cancel_timer(TimerId(10**9)) is False  # never existed
    assert signals.pending() == 1

    clock.advance(3.0)
    signals.send("end")
    assert values_until(listener, "end") == ["kept", "end"]
    assert signals.cancel_timer(kept) is False  # already fired
    assert signals.pending() == 0


def test_cancel_timer_with_real_clock_never_fires(node: Node) -> None:
    handler, listener = node
    doomed = handler.signals.send_with_timer("doomed", 0.01)
    handler.signals.send_with_timer("after", 0.05)
    assert handler.signals.cancel_timer(doomed) is True
    event = listener.receive(WAIT)
    assert event == Signal("after")


def test_cancelling_many_timers_does_not_leak(node: Node) -> None:
    handler, _listener = node
    signals = handler.signals
    timers = handler._loop.timers  # the node's one timer heap (white box)
    base = len(timers.entries)
    ids = [signals.send_with_timer(i, 3600.0) for i in range(10_000)]
    assert len(timers.entries) == base + 10_000
    assert all(signals.cancel_timer(timer_id) for timer_id in ids)
    assert signals.pending() == 0
    assert len(timers.entries) <= base + 600  # rebuilt as cancelled entries pile up

    # Create-and-cancel one at a time: the heap stays bounded too.
    for i in range(10_000):
        assert signals.cancel_timer(signals.send_with_timer(i, 3600.0))
        assert len(timers.entries) <= base + 600
    assert signals.pending() == 0
    assert not signals._timer_values
    assert not signals._timers


def test_cancel_with_some_timers_still_pending_keeps_them(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    signals = handler.signals
    ids = [signals.send_with_timer(i, 1.0 + i / 1000) for i in range(1000)]
    for i, timer_id in enumerate(ids):
        if i % 10:
            assert signals.cancel_timer(timer_id)
    assert signals.pending() == 100
    assert len(handler._loop.timers.entries) <= 100 + 600
    clock.advance(10.0)
    signals.send("end")
    got = values_until(listener, "end", limit=200)
    assert got == [*range(0, 1000, 10), "end"]


# -- delays ------------------------------------------------------------------------------


def test_timedelta_delay_is_accepted(node: Node, clock: FakeClock) -> None:
    handler, listener = node
    handler.signals.send_with_timer("td", timedelta(milliseconds=1500))
    clock.advance(1.499)
    handler.signals.send("probe")
    assert values_until(listener, "probe") == ["probe"]
    clock.advance(0.001)
    handler.signals.send("end")
    assert values_until(listener, "end") == ["td", "end"]


def test_timedelta_delay_with_real_clock(node: Node) -> None:
    handler, listener = node
    start = time.monotonic()
    handler.signals.send_with_timer("td", timedelta(milliseconds=20))
    assert listener.receive(WAIT) == Signal("td")
    assert time.monotonic() - start >= 0.02


@pytest.mark.parametrize(
    "delay",
    [-1, -0.001, math.nan, math.inf, -math.inf, timedelta(seconds=-1)],
    ids=["neg-int", "neg-float", "nan", "inf", "-inf", "neg-timedelta"],
)
def test_bad_delay_raises_value_error(node: Node, delay: float | timedelta) -> None:
    handler, _listener = node
    with pytest.raises(ValueError, match="delay"):
        handler.signals.send_with_timer("x", delay)
    assert handler.signals.pending() == 0


# -- the waker ---------------------------------------------------------------------------


def test_signal_from_another_thread_wakes_a_sleeping_loop(node: Node) -> None:
    handler, listener = node
    events: queue.Queue[object] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        events.put(event.value)

    with run_async(listener, on_event) as task:
        # A first round trip: after it the loop has nothing to do and sleeps forever.
        handler.signals.send("warm-up")
        assert events.get(timeout=WAIT) == "warm-up"

        sender = threading.Thread(target=handler.signals.send, args=("wake",))
        sender.start()
        sender.join(WAIT)
        assert events.get(timeout=WAIT) == "wake"
        assert task.thread.is_alive()


def test_signals_from_many_threads_all_arrive_in_per_thread_order(node: Node) -> None:
    handler, listener = node
    events: queue.Queue[object] = queue.Queue()
    threads, per_thread = 4, 250

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        events.put(event.value)

    def produce(name: int) -> None:
        for i in range(per_thread):
            if i % 3 == 0:
                handler.signals.send_with_priority((name, i, "p"))
            else:
                handler.signals.send((name, i, "n"))

    with run_async(listener, on_event):
        producers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
        for producer in producers:
            producer.start()
        for producer in producers:
            producer.join(WAIT)
        got = [events.get(timeout=WAIT) for _ in range(threads * per_thread)]
    assert len(set(got)) == threads * per_thread
    for name in range(threads):
        for kind in ("p", "n"):
            mine = [v for v in got if isinstance(v, tuple) and v[0] == name and v[2] == kind]
            assert mine == sorted(mine)


def test_earlier_timer_from_another_thread_wakes_the_loop(node: Node) -> None:
    handler, listener = node
    events: queue.Queue[tuple[object, float]] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        events.put((event.value, time.monotonic()))

    handler.signals.send_with_timer("long", 3600.0)
    with run_async(listener, on_event):
        handler.signals.send("ready")
        assert events.get(timeout=WAIT)[0] == "ready"
        # The loop now sleeps until the 3600 s timer.
        started: list[float] = []

        def add_short() -> None:
            started.append(time.monotonic())
            handler.signals.send_with_timer("short", 0.01)

        adder = threading.Thread(target=add_short)
        adder.start()
        adder.join(WAIT)
        value, when = events.get(timeout=WAIT)
        assert value == "short"
        assert when - started[0] >= 0.01  # never early
        assert handler.signals.pending() == 1  # "long" still waits
    assert events.empty()


# -- from inside the callback ------------------------------------------------------------


def test_send_with_timer_from_the_callback(node: Node) -> None:
    handler, listener = node
    seen: list[object] = []
    created: list[float] = []
    elapsed: list[float] = []

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        seen.append(event.value)
        if event.value == "start":
            created.append(time.monotonic())
            handler.signals.send_with_timer("later", 0.02)
            handler.signals.send("right-away")
        elif event.value == "later":
            elapsed.append(time.monotonic() - created[0])
            handler.stop()

    handler.signals.send("start")
    with watchdog(handler) as fired:
        listener.for_each(on_event)
    assert not fired.is_set()
    assert seen == ["start", "right-away", "later"]
    assert elapsed[0] >= 0.02


def test_stop_from_the_callback_ends_for_each_and_drops_later_signals(node: Node) -> None:
    handler, listener = node
    seen: list[object] = []

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        seen.append(event.value)
        if event.value == 2:
            handler.stop()

    for value in (1, 2, 3):
        handler.signals.send(value)
    with watchdog(handler) as fired:
        listener.for_each(on_event)
    assert not fired.is_set()
    assert seen == [1, 2]
    assert not handler.is_running()
    with pytest.raises(message_io.NodeStoppedError):
        handler.signals.send(5)  # nobody would ever receive it
    assert seen == [1, 2]


def test_signal_equality_hash_and_repr() -> None:
    assert Signal(1) == Signal(1)
    assert Signal(1) != Signal(2)
    assert hash(Signal("a")) == hash(Signal("a"))
    assert repr(Signal("a")) == "Signal('a')"
    assert Signal(1).__eq__(1) is NotImplemented
    signal = Signal([1])
    with pytest.raises(AttributeError):
        signal.value = [2]
    match Signal(("x", 1)):
        case Signal(("x", number)):
            assert number == 1
        case _:
            pytest.fail("Signal did not match positionally")


def test_a_due_timer_can_be_cancelled_until_its_signal_is_delivered(
    node: Node, clock: FakeClock
) -> None:
    """The "reply cancels the timeout" pattern: a timeout whose deadline has passed, but
    whose signal the callback has not received yet, is still cancelled by the handler
    of a signal delivered before it."""
    handler, listener = node
    timeout = handler.signals.send_with_timer("timeout", 1.0)
    clock.advance(2.0)  # due now
    handler.signals.send_with_priority("reply")  # delivered first, in the same turn
    seen: list[object] = []

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        seen.append(event.value)
        if event.value == "reply":
            seen.append(handler.signals.cancel_timer(timeout))
            seen.append(handler.signals.pending())
            handler.signals.send("end")
        elif event.value == "end":
            handler.stop()

    with watchdog(handler, WAIT):
        listener.for_each(on_event)
    assert seen == ["reply", True, 0, "end"]
