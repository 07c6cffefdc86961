"""The debug log tells a user what the node did, one line per step, never a payload."""

from __future__ import annotations

import logging
import queue
from typing import Any

import pytest

import message_io
from message_io import Accepted, Connected, Disconnected, NodeEvent, Transport

TIMEOUT = 10.0


def test_debug_lines_follow_a_connection_through_its_life(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="message_io")
    server, server_listener = message_io.split()
    client, client_listener = message_io.split()
    server_events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    client_events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    _, addr = server.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
    with (
        server_listener.for_each_async(server_events.put, on_error="stop"),
        client_listener.for_each_async(client_events.put, on_error="stop"),
    ):
        endpoint, _ = client.network.connect(Transport.FRAMED_TCP, addr)
        assert isinstance(client_events.get(timeout=TIMEOUT), Connected)
        assert isinstance(server_events.get(timeout=TIMEOUT), Accepted)
        client.network.send(endpoint, b"secret payload")
        server_events.get(timeout=TIMEOUT)
        client.network.remove(endpoint.resource_id)
        assert isinstance(server_events.get(timeout=TIMEOUT), Disconnected)
        server.stop()
        client.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    for expected in ("connecting to", "connected to", "accepted", "removing", "disconnected"):
        assert expected in text, f"no {expected!r} line in:\n{text}"
    assert "stopping the node" in text
    assert "secret payload" not in text
