"""What a peer can hold is bounded in time and memory: incomplete messages, idle peers.

Raw sockets play the hostile peers; the server is a real node with short timeouts, so
every wait here is on an event with a deadline, never a sleep.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    Disconnected,
    FramedTcpListenConfig,
    Message,
    NodeEvent,
    NodeHandler,
    Transport,
)
from message_io.codec.framing import encode_frame, frame_header
from message_io.network.connection import Connection
from message_io.network.input_guard import InputGuard

TIMEOUT = 10.0
LOCAL = "127.0.0.1:0"


class Server:
    """A FramedTcp echo node in the background; its events land in a queue."""

    def __init__(self, config: FramedTcpListenConfig, **node_options: Any) -> None:
        self.handler: NodeHandler[Any]
        self.handler, listener = message_io.split(**node_options)
        self.events: queue.Queue[NodeEvent[Any]] = queue.Queue()
        self.listener_id, addr = self.handler.network.listen(
            Transport.FRAMED_TCP, LOCAL, config=config
        )
        self.addr: tuple[str, int] = (str(addr[0]), int(addr[1]))
        self.peak = 0  # the most incomplete_bytes ever seen after a read
        self.holding = threading.Event()  # set once a read left an unfinished message
        self.handler._loop.guard.on_hold = self._on_hold
        self.task = listener.for_each_async(self._on_event, on_error="stop")

    def _on_hold(self, guard: InputGuard, _conn: Connection) -> None:
        self.peak = max(self.peak, guard.incomplete_bytes)
        self.holding.set()

    def _on_event(self, event: NodeEvent[Any]) -> None:
        if isinstance(event, Message):
            self.handler.network.send(event.endpoint, event.data)
        self.events.put(event)

    def next(self, kind: type[Any], timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, kind):
                return event

    def close(self) -> None:
        self.handler.stop()
        assert self.task.wait(TIMEOUT)


@contextlib.contextmanager
def server(config: FramedTcpListenConfig, **node_options: Any) -> Iterator[Server]:
    node = Server(config, **node_options)
    try:
        yield node
    finally:
        node.close()


def connect(node: Server) -> tuple[socket.socket, Accepted]:
    peer = socket.create_connection(node.addr, timeout=TIMEOUT)
    return peer, node.next(Accepted)


def assert_closed_by_server(peer: socket.socket) -> None:
    """The server closed ``peer``: reading gives EOF (or a reset) within the timeout."""
    peer.settimeout(TIMEOUT)
    try:
        while peer.recv(65536):
            pass
    except ConnectionResetError:
        pass


# -- in time ------------------------------------------------------------------------------


def test_a_stalled_message_is_cut_after_message_timeout() -> None:
    config = FramedTcpListenConfig(message_timeout=0.3, min_message_rate=None)
    with server(config) as node:
        peer, accepted = connect(node)
        with peer:
            started = time.monotonic()
            peer.sendall(frame_header(1000) + b"x" * 10)  # 10 of 1000 bytes, then silence
            gone = node.next(Disconnected)
            elapsed = time.monotonic() - started
            assert gone.endpoint == accepted.endpoint
            assert 0.3 <= elapsed < 5
            assert_closed_by_server(peer)
        assert node.handler._loop.guard.incomplete_bytes == 0


def test_an_idle_connection_between_messages_is_not_cut_by_message_timeout() -> None:
    """message_timeout is about messages that have begun: silence between them is fine."""
    config = FramedTcpListenConfig(message_timeout=0.2, min_message_rate=None)
    with server(config) as node:
        quiet, _ = connect(node)
        stalled, stalled_accepted = connect(node)
        with quiet, stalled:
            quiet.sendall(encode_frame(b"whole"))
            assert quiet.recv(100) == encode_frame(b"whole")
            stalled.sendall(frame_header(100) + b"x")
            # The stalled one goes after 0.2 s; the quiet one, silent as long, stays.
            assert node.next(Disconnected).endpoint == stalled_accepted.endpoint
            quiet.sendall(encode_frame(b"still here"))
            assert quiet.recv(100) == encode_frame(b"still here")


def _trickle(peer: socket.socket, chunks: list[bytes], every: float, stop: threading.Event) -> None:
    """Send ``chunks`` one by one, ``every`` seconds apart (the pace of a slow peer)."""
    with contextlib.suppress(OSError):
        for chunk in chunks:
            peer.sendall(chunk)
            if stop.wait(every):
                return


def test_a_trickle_cannot_keep_a_message_alive_but_a_slow_steady_peer_can() -> None:
    """Bytes every 50 ms are progress, so only the rate rule can end a trickle: at
    20 B/s it is cut once the message is older than message_timeout; at 4 kB/s, over
    three times message_timeout, the message arrives whole."""
    config = FramedTcpListenConfig(message_timeout=0.5, min_message_rate=1000)
    stop = threading.Event()
    with server(config) as node:
        trickler, trickler_accepted = connect(node)
        steady, steady_accepted = connect(node)
        payload = bytes(range(256)) * 24  # 6144 bytes: 1.5 s at 200 B per 50 ms
        steady_chunks = [frame_header(len(payload))] + [
            payload[i : i + 200] for i in range(0, len(payload), 200)
        ]
        threads = [
            threading.Thread(
                target=_trickle, args=(trickler, [frame_header(10_000)] + [b"t"] * 400, 0.05, stop)
            ),
            threading.Thread(target=_trickle, args=(steady, steady_chunks, 0.05, stop)),
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            gone = node.next(Disconnected)
            assert gone.endpoint == trickler_accepted.endpoint
            assert time.monotonic() - started >= 0.5
            message = node.next(Message)
            assert message.endpoint == steady_accepted.endpoint
            assert message.data == payload
            assert time.monotonic() - started > 1.0  # it took longer than message_timeout
        finally:
            stop.set()
            for thread in threads:
                thread.join(TIMEOUT)
            trickler.close()
            steady.close()


def test_a_message_of_a_connection_the_application_paused_is_not_judged_by_its_rate() -> None:
    """pause_reading() stops the clocks of the message under way, the rate's too: a
    peer held by the application for longer than message_timeout is not cut for a
    message that arrives slowly, since it is not read."""
    config = FramedTcpListenConfig(message_timeout=0.3, min_message_rate=1000)
    with server(config) as node:
        peer, accepted = connect(node)
        with peer:
            payload = bytes(range(256)) * 40  # 10,240 bytes
            peer.sendall(frame_header(len(payload)) + payload[:100])
            assert node.holding.wait(TIMEOUT)  # read: 100 bytes of it held
            assert node.handler.network.pause_reading(accepted.endpoint)
            # Three times message_timeout: at 100 bytes it is far under 1000 B/s.
            with pytest.raises(queue.Empty):
                node.next(Disconnected, timeout=1.0)
            assert node.handler.network.resume_reading(accepted.endpoint)
            peer.sendall(payload[100:])
            message = node.next(Message)
            assert message.endpoint == accepted.endpoint
            assert message.data == payload


def test_message_timeout_none_keeps_no_watch() -> None:
    config = FramedTcpListenConfig(message_timeout=None)
    with server(config) as node:
        peer, accepted = connect(node)
        with peer:
            peer.sendall(frame_header(1000) + b"x" * 10)
            assert node.holding.wait(TIMEOUT)
            conn = node.handler._loop.connections[accepted.endpoint.resource_id]
            assert conn.held == 10 + len(frame_header(1000))
            assert conn.watch_timer is None


def test_idle_timeout_cuts_a_silent_peer_and_bytes_keep_it() -> None:
    config = FramedTcpListenConfig(idle_timeout=0.4)
    stop = threading.Event()
    with server(config) as node:
        started = time.monotonic()  # before the server accepts: its clock starts later
        silent, silent_accepted = connect(node)
        chatty, _ = connect(node)
        thread = threading.Thread(
            target=_trickle, args=(chatty, [encode_frame(b"hi")] * 200, 0.05, stop)
        )
        thread.start()
        try:
            gone = node.next(Disconnected)
            assert gone.endpoint == silent_accepted.endpoint
            assert time.monotonic() - started >= 0.4
            assert_closed_by_server(silent)
            # The chatty one, which sends a message every 50 ms, is still served.
            assert node.next(Message).endpoint != silent_accepted.endpoint
        finally:
            stop.set()
            thread.join(TIMEOUT)
            silent.close()
            chatty.close()


def test_idle_timeout_on_a_client_connection() -> None:
    handler, listener = message_io.split()
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        addr = raw_server.getsockname()
        config = message_io.FramedTcpConnectConfig(idle_timeout=0.3)
        with listener.for_each_async(events.put, on_error="stop"):
            started = time.monotonic()  # the clock starts once connected, after this
            endpoint, _ = handler.network.connect_sync(
                Transport.FRAMED_TCP, addr, config=config, timeout=TIMEOUT
            )
            peer, _ = raw_server.accept()
            with peer:
                while True:
                    event = events.get(timeout=TIMEOUT)
                    if isinstance(event, Disconnected):
                        break
                assert event.endpoint == endpoint
                assert time.monotonic() - started >= 0.3


# -- in memory ----------------------------------------------------------------------------


def _stall(addr: tuple[str, int], announce: int, send: int, done: threading.Event) -> None:
    """A hostile peer: announce ``announce`` bytes, send ``send`` of them, go silent."""
    with contextlib.suppress(OSError), socket.create_connection(addr, timeout=TIMEOUT) as peer:
        peer.sendall(frame_header(announce))
        block = b"s" * 65536
        sent = 0
        while sent < send:
            sent += peer.send(block[: send - sent])
        done.wait(TIMEOUT)  # silent; the server closes us


def test_stalled_peers_cannot_hold_more_than_the_node_cap() -> None:
    """20 peers each announce 16 MiB - 1 and try to send 15 MiB (300 MiB in all) against
    a node capped at 8 MiB: memory held stays near the cap, a client of small messages
    gets every echo meanwhile, and the stalled peers are gone once message_timeout
    passes."""
    cap = 8 * 1024 * 1024
    config = FramedTcpListenConfig(message_timeout=1.0, min_message_rate=None)
    done = threading.Event()
    with server(config, max_incomplete_bytes=cap) as node:
        good = socket.create_connection(node.addr, timeout=TIMEOUT)
        good_endpoint = node.next(Accepted).endpoint
        attackers = [
            threading.Thread(
                target=_stall, args=(node.addr, 16 * 1024 * 1024 - 1, 15 * 1024 * 1024, done)
            )
            for _ in range(20)
        ]
        try:
            for thread in attackers:
                thread.start()
            # The good client is served throughout, one small echo at a time.
            worst = 0.0
            for index in range(200):
                data = index.to_bytes(2, "big") * 50
                sent_at = time.monotonic()
                good.sendall(encode_frame(data))
                reply = b""
                while len(reply) < len(data) + 1:
                    reply += good.recv(1024)
                worst = max(worst, time.monotonic() - sent_at)
                assert reply == encode_frame(data)
            guard = node.handler._loop.guard
            # Every stalled peer is disconnected once its message_timeout passes.
            gone = 0
            while gone < 20:
                event = node.next(Disconnected)
                assert event.endpoint != good_endpoint
                gone += 1
            assert guard.incomplete_bytes == 0
            assert not guard.paused
            # Past the cap, a connection is paused after the read that made it hold more
            # than 16 KiB: only that one read of each (at most 1 MiB here) goes past it.
            assert node.peak <= cap + 20 * 2 * 1024 * 1024, node.peak
            assert worst < 2.0, worst
        finally:
            done.set()
            for thread in attackers:
                thread.join(TIMEOUT)
            good.close()


def test_max_incomplete_bytes_is_validated() -> None:
    with pytest.raises(ValueError, match="max_incomplete_bytes"):
        message_io.split(max_incomplete_bytes=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("message_timeout", 0), ("min_message_rate", -1.0), ("idle_timeout", 0.0)],
)
def test_time_limits_are_validated(field: str, value: float) -> None:
    options: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        FramedTcpListenConfig(**options)
    with pytest.raises(ValueError, match=field):
        message_io.FramedTcpConnectConfig(**options)


# -- logs ---------------------------------------------------------------------------------


def test_small_holders_over_the_cap_are_read_on_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connections holding at most 16 KiB each are never paused (a client of small
    messages holds that much), so many of them can hold more than the cap: the node
    says so, once, rather than nothing."""
    cap = 64 * 1024
    config = FramedTcpListenConfig(message_timeout=None)
    over = threading.Event()
    with (
        caplog.at_level(logging.WARNING, logger="message_io"),
        server(config, max_incomplete_bytes=cap) as node,
    ):

        def on_hold(guard: InputGuard, _conn: Connection) -> None:
            if guard.incomplete_bytes > cap:
                over.set()

        node.handler._loop.guard.on_hold = on_hold
        peers = [socket.create_connection(node.addr, timeout=TIMEOUT) for _ in range(10)]
        try:
            for peer in peers:
                peer.sendall(frame_header(100_000) + b"h" * 10_000)  # 10,000 held each
            assert over.wait(TIMEOUT)
            node.handler.signals.send("sync")  # the loop has logged what it had to
            node.next(message_io.Signal)
        finally:
            for peer in peers:
                peer.close()
    said = [r.getMessage() for r in caplog.records if "over max_incomplete_bytes" in r.getMessage()]
    assert len(said) == 1
    assert "at most 16384 bytes each" in said[0]


def test_a_flood_of_bad_peers_logs_ten_lines_and_a_summary() -> None:
    """50 peers sending an invalid varint: each is disconnected, but the log gets at most
    10 lines a second and then one "N more ... suppressed" line."""
    records: list[logging.LogRecord] = []
    summary = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            if "suppressed" in record.getMessage():
                summary.set()

    logger = logging.getLogger("message_io")
    collect = Collect(logging.INFO)
    previous = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        with server(FramedTcpListenConfig()) as node:
            for _ in range(50):
                with socket.create_connection(node.addr, timeout=TIMEOUT) as peer:
                    peer.sendall(b"\xff" * 11)  # a varint longer than 10 bytes
                    assert_closed_by_server(peer)
            assert summary.wait(TIMEOUT)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(previous)
    lines = [r.getMessage() for r in records if "disconnecting" in r.getMessage()]
    summaries = [r.getMessage() for r in records if "suppressed" in r.getMessage()]
    assert 1 <= len(lines) <= 20  # 10 a second (the 50 may straddle a second)
    suppressed = sum(int(line.split()[0]) for line in summaries)
    assert len(lines) + suppressed == 50
