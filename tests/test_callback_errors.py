"""A bug in the event callback is never silent, and by default not fatal."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import pytest

import message_io
from message_io import NodeEvent, Signal

from .helpers import Node, watchdog

WAIT = 10.0


class Boom(Exception):
    pass


def test_by_default_the_exception_is_logged_and_the_next_events_delivered(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    handler, listener = node
    seen: queue.Queue[Any] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        if event.value == "bad":
            raise Boom("bug on one event")
        seen.put(event.value)

    for value in ("a", "bad", "b", "bad", "c"):
        handler.signals.send(value)
    with caplog.at_level(logging.ERROR, logger="message_io"):
        task = listener.for_each_async(on_event)
        assert [seen.get(timeout=WAIT) for _ in range(3)] == ["a", "b", "c"]
        assert handler.is_running()
        handler.stop()
        assert task.wait(WAIT) is True  # nothing re-raised: the node was stopped by us
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    for record in errors:
        assert "Signal('bad')" in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is Boom


def test_a_custom_policy_gets_the_event_and_the_exception(node: Node) -> None:
    handler, listener = node
    failures: list[tuple[Any, Exception]] = []
    done = threading.Event()

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        if event.value == "last":
            done.set()
            return
        raise Boom(str(event.value))

    handler.signals.send(1)
    handler.signals.send("last")
    with listener.for_each_async(on_event, on_error=lambda e, x: failures.append((e, x))):
        assert done.wait(WAIT)
    assert [(event, str(exc)) for event, exc in failures] == [(Signal(1), "1")]


def test_a_policy_that_raises_stops_the_node_with_its_exception(node: Node) -> None:
    handler, listener = node

    def policy(_event: Any, exc: Exception) -> None:
        raise RuntimeError("give up") from exc

    def on_event(_event: NodeEvent[Any]) -> None:
        raise Boom("first")

    handler.signals.send("x")
    with watchdog(handler), pytest.raises(RuntimeError, match="give up"):
        listener.for_each(on_event, on_error=policy)
    assert not handler.is_running()


def test_stop_policy_logs_at_error_at_once_without_wait(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """Like threading.excepthook: a background node that dies says so right away, even
    if nobody ever calls wait()."""
    handler, listener = node
    logged = threading.Event()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.ERROR and record.exc_info:
                logged.set()

    catcher = Catch()
    logging.getLogger("message_io").addHandler(catcher)
    try:
        handler.signals.send("x")
        task = listener.for_each_async(_raise, on_error="stop")
        assert logged.wait(WAIT)  # before any wait()
        task.thread.join(WAIT)
        assert not handler.is_running()
        with pytest.raises(Boom):
            task.wait(0)
    finally:
        logging.getLogger("message_io").removeHandler(catcher)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None and errors[0].exc_info[0] is Boom


def _raise(_event: NodeEvent[Any]) -> None:
    raise Boom("stop me")


def test_stop_policy_in_for_each_logs_and_reraises(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    handler, listener = node
    handler.signals.send("x")
    with caplog.at_level(logging.ERROR, logger="message_io"), pytest.raises(Boom):
        listener.for_each(_raise, on_error="stop")
    assert any(r.exc_info and r.exc_info[0] is Boom for r in caplog.records)


def test_keyboard_interrupt_always_stops(node: Node) -> None:
    handler, listener = node

    def on_event(_event: NodeEvent[Any]) -> None:
        raise KeyboardInterrupt

    handler.signals.send("x")
    with watchdog(handler), pytest.raises(KeyboardInterrupt):
        listener.for_each(on_event)  # the default policy handles Exception only
    assert not handler.is_running()


def test_an_unknown_policy_is_refused(node: Node) -> None:
    _handler, listener = node
    with pytest.raises(ValueError, match="on_error"):
        listener.for_each(_raise, on_error="ignore")  # type: ignore[arg-type]
    # The listener was not consumed by the refused call.
    assert listener.try_receive() is None


def test_a_flood_of_callback_errors_is_rate_limited(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    handler, listener = node
    done = threading.Event()

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        if event.value == "end":
            done.set()
            return
        raise Boom("again")

    for index in range(500):
        handler.signals.send(index)
    handler.signals.send("end")
    with caplog.at_level(logging.ERROR, logger="message_io"), listener.for_each_async(on_event):
        assert done.wait(WAIT)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    tracebacks = [r for r in errors if r.exc_info]
    assert 1 <= len(tracebacks) <= 20  # 10 a second; the run may straddle a second
    assert len(errors) <= len(tracebacks) + 2
    handler.stop()


def test_callback_errors_held_back_are_counted_when_the_node_stops(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    handler, listener = node

    def on_event(event: NodeEvent[Any]) -> None:
        assert isinstance(event, Signal)
        if event.value == "end":
            handler.stop()  # at once: the summary's timer never fires
            return
        raise Boom("again")

    for index in range(50):
        handler.signals.send(index)
    handler.signals.send("end")
    with caplog.at_level(logging.ERROR, logger="message_io"):
        listener.for_each(on_event)
    tracebacks = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    held_back = [
        int(r.getMessage().split(" ", 1)[0])
        for r in caplog.records
        if "more peer and callback lines suppressed" in r.getMessage()
    ]
    assert held_back, "no count of the errors held back"
    assert len(tracebacks) + sum(held_back) == 50


def test_split_still_types_signals() -> None:
    handler, listener = message_io.split(str, max_incomplete_bytes=1 << 20)
    assert handler._loop.guard.max_incomplete_bytes == 1 << 20
    handler.signals.send("typed")
    assert listener.try_receive() == Signal("typed")
    handler.stop()
