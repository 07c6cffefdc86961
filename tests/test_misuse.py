"""Misuse after stop() and of send()'s arguments: clear errors, nothing vanishes."""

from __future__ import annotations

from typing import Any

import pytest

from message_io import Endpoint, NetworkController, NodeStoppedError, SendStatus, Transport
from message_io.network.adapter import BytesLike

from .helpers import Node

LOCAL = "127.0.0.1:0"


@pytest.mark.parametrize("method", ["send", "send_with_priority", "send_with_timer"])
def test_a_signal_sent_after_stop_raises_node_stopped_error(node: Node, method: str) -> None:
    handler, _listener = node
    handler.stop()
    args: tuple[Any, ...] = ("late", 0.1) if method == "send_with_timer" else ("late",)
    with pytest.raises(NodeStoppedError):
        getattr(handler.signals, method)(*args)


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


def test_a_signal_sent_after_the_callback_raised_raises(node: Node) -> None:
    handler, listener = node

    def on_event(event: object) -> None:
        raise RuntimeError("boom")

    handler.signals.send("first")
    with pytest.raises(RuntimeError, match="boom"):
        listener.for_each(on_event, on_error="stop")
    with pytest.raises(NodeStoppedError):
        handler.signals.send("late")


def test_send_to_the_tuple_connect_returns_is_a_type_error_naming_the_argument(
    node: Node,
) -> None:
    handler, _listener = node
    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    pair = handler.network.connect(Transport.FRAMED_TCP, addr)  # (endpoint, local_addr)
    with pytest.raises(TypeError) as info:
        handler.network.send(pair, b"x")  # type: ignore[arg-type]
    assert str(info.value) == "send() endpoint must be an Endpoint, not tuple"
    # The traceback shows the TypeError alone: no AttributeError chained to it.
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_send_through_the_class_method_does_the_same(node: Node) -> None:
    """``NetworkController.send`` called on the class (the documented method) sends as
    ``handler.network.send`` does."""
    handler, _listener = node
    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    server, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr)
    assert NetworkController.send(handler.network, server, b"x") is SendStatus.SENT
    with pytest.raises(TypeError, match=r"send\(\) endpoint must be an Endpoint, not int"):
        NetworkController.send(handler.network, 3, b"x")  # type: ignore[arg-type]


def test_a_controller_subclass_that_overrides_send_gets_it_called(node: Node) -> None:
    """``handler.network.send`` is the engine's method only where ``send`` is the
    class's own."""
    handler, _listener = node
    seen: list[bytes] = []

    class Recording(NetworkController):
        def send(self, endpoint: Endpoint, data: BytesLike | str) -> SendStatus:
            seen.append(bytes(data) if not isinstance(data, str) else data.encode())
            return super().send(endpoint, data)

    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    server, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr)
    recording = Recording(handler.network._loop)
    assert recording.send(server, b"x") is SendStatus.SENT
    assert seen == [b"x"]


@pytest.mark.parametrize("endpoint", [None, "127.0.0.1:80", 3])
def test_send_to_something_not_an_endpoint_is_a_type_error(node: Node, endpoint: Any) -> None:
    handler, _listener = node
    with pytest.raises(TypeError, match=r"send\(\) endpoint must be an Endpoint"):
        handler.network.send(endpoint, b"x")


def test_a_transport_given_as_a_string_is_a_type_error_naming_it(node: Node) -> None:
    handler, _listener = node
    with pytest.raises(TypeError, match="transport must be a Transport"):
        handler.network.connect("FRAMED_TCP", "127.0.0.1:9")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="transport must be a Transport"):
        handler.network.listen("TCP", LOCAL)  # type: ignore[arg-type]


def test_remove_names_a_wrong_argument(node: Node) -> None:
    handler, _listener = node
    with pytest.raises(TypeError, match=r"remove\(\) takes a ResourceId or an Endpoint, not str"):
        handler.network.remove("[1.R.0]")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not tuple"):
        handler.network.remove((1, 2))  # type: ignore[arg-type]
