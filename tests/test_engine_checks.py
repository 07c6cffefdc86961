"""Checks whose last line lives in the engine (``_loop.py``).

Each test is marked ``xfail(strict=True)`` until that line is in: then it passes, the
strict marker makes the run fail, and the marker is to be removed.
"""

from __future__ import annotations

from typing import Any

import pytest

from message_io import NodeStoppedError

from .helpers import Node

_LOOP_CLOSES_SIGNALS = pytest.mark.xfail(
    strict=True,
    reason="needs Loop.stop() and Loop.shutdown() to call self.signals.close()",
)


@_LOOP_CLOSES_SIGNALS
@pytest.mark.parametrize("method", ["send", "send_with_priority", "send_with_timer"])
def test_a_signal_sent_after_stop_raises_node_stopped_error(node: Node, method: str) -> None:
    handler, _listener = node
    handler.stop()
    args: tuple[Any, ...] = ("late", 0.1) if method == "send_with_timer" else ("late",)
    with pytest.raises(NodeStoppedError):
        getattr(handler.signals, method)(*args)


@_LOOP_CLOSES_SIGNALS
def test_a_signal_sent_from_the_callback_after_stop_raises(node: Node) -> None:
    handler, listener = node
    raised: list[BaseException] = []

    def on_event(event: object) -> None:
        handler.stop()
        try:
            handler.signals.send("after stop")
        except NodeStoppedError as exc:
            raised.append(exc)

    handler.signals.send("first")
    listener.for_each(on_event)
    assert len(raised) == 1


@_LOOP_CLOSES_SIGNALS
def test_a_signal_sent_after_the_callback_raised_raises(node: Node) -> None:
    handler, listener = node

    def on_event(event: object) -> None:
        raise RuntimeError("boom")

    handler.signals.send("first")
    with pytest.raises(RuntimeError, match="boom"):
        listener.for_each(on_event)
    with pytest.raises(NodeStoppedError):
        handler.signals.send("late")
