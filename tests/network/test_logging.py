"""The log tells a user what the node did: debug lines, one per step, never a payload;
warnings only for what the program should change."""

from __future__ import annotations

import logging
import queue
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    FramedTcpConnectConfig,
    NodeEvent,
    SendStatus,
    Signal,
    TcpConnectConfig,
    Transport,
    WsConnectConfig,
)

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


_SMALL_QUEUE = {
    Transport.TCP: TcpConnectConfig(send_buffer_limit=1),
    Transport.FRAMED_TCP: FramedTcpConnectConfig(send_buffer_limit=1),
    Transport.WS: WsConnectConfig(send_buffer_limit=1),
}


@pytest.mark.parametrize("transport", list(_SMALL_QUEUE), ids=lambda t: t.name)
def test_a_refusal_waited_out_is_not_logged_and_sending_on_regardless_is(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    """Backpressure as the tutorial handles it (stop at ``QUEUE_FULL``, send again on
    ``Drained``) logs nothing, episode after episode; a program that sends on into the
    full queue is told, once per episode."""
    caplog.set_level(logging.WARNING, logger="message_io")
    server, server_listener = message_io.split()
    client, client_listener = message_io.split(str)
    _, addr = server.network.listen(transport, "127.0.0.1:0")
    url = f"ws://{addr[0]}:{addr[1]}/" if transport is Transport.WS else addr
    episodes: list[list[SendStatus]] = []
    ignored: list[SendStatus] = []
    done: queue.Queue[str] = queue.Queue()
    connection: list[Endpoint] = []  # set once connected

    def send_until_refused() -> None:
        statuses: list[SendStatus] = []
        while len(statuses) < 100:  # bounded: the queue holds 1 byte
            statuses.append(client.network.send(connection[0], b"m"))
            if statuses[-1] is SendStatus.QUEUE_FULL:
                break
        episodes.append(statuses)

    def on_event(event: NodeEvent[str]) -> None:
        match event:
            case Signal("polite"):
                send_until_refused()
            case Drained() if len(episodes) < 3:
                send_until_refused()  # the next episode
            case Drained() if len(episodes) == 3:
                episodes.append([])  # once
                done.put("polite")
            case Signal("regardless"):
                ignored.extend(client.network.send(connection[0], b"m") for _ in range(5))
                done.put("regardless")

    with (
        server_listener.for_each_async(lambda _event: None, on_error="stop"),
        client_listener.for_each_async(on_event, on_error="stop"),
    ):
        endpoint, _ = client.network.connect_sync(
            transport, url, config=_SMALL_QUEUE[transport], timeout=TIMEOUT
        )
        connection.append(endpoint)
        client.signals.send("polite")
        assert done.get(timeout=TIMEOUT) == "polite"
        for statuses in episodes[:3]:
            assert statuses[-1] is SendStatus.QUEUE_FULL
            assert statuses.count(SendStatus.QUEUE_FULL) == 1
        assert not [r for r in caplog.records if "refused" in r.getMessage()]

        client.signals.send("regardless")
        assert done.get(timeout=TIMEOUT) == "regardless"
        assert ignored.count(SendStatus.QUEUE_FULL) >= 2
        warnings = [r for r in caplog.records if "refused again" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        server.stop()
        client.stop()
