"""The node's send queues for datagram transports, where the OS pushes back.

UDP on loopback never says "would block", so these tests use the Unix-datagram
transport of :mod:`.unix_dgram_adapter`, whose sends fail with ``EAGAIN`` while the
receiver's queue is full: each datagram must then wait in order, the queue must stay
bounded (``QUEUE_FULL``), and ``Drained`` must follow once it is written.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from message_io import Drained, Endpoint, Message, SendStatus
from message_io.network.adapter import ConnectConfig, ListenConfig

from .conftest import TIMEOUT, Net, Worker, harness
from .unix_dgram_adapter import UNIX_DGRAM

SENT = SendStatus.SENT
QUEUE_FULL = SendStatus.QUEUE_FULL
LIMIT = 16 * 1024
SIZE = 1000


@pytest.fixture
def dgram(tmp_path: Path) -> Iterator[Net]:
    with harness(UNIX_DGRAM, tmp_path) as net:
        yield net


def raw_dgram(net: Net, path: str) -> socket.socket:
    sock = net._keep(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    sock.bind(path)
    sock.settimeout(TIMEOUT)
    return sock


def fill(send: Callable[[bytes], SendStatus]) -> list[bytes]:
    """Send numbered datagrams until the queue is full; return those accepted."""
    sent: list[bytes] = []
    for index in range(100_000):
        data = index.to_bytes(4, "big") * (SIZE // 4)
        status = send(data)
        if status is QUEUE_FULL:
            return sent
        assert status is SENT, status
        sent.append(data)
    raise AssertionError("the queue never filled")


def test_connection_queue_is_bounded_ordered_and_drains(dgram: Net) -> None:
    path = str(dgram._dir / "peer.sock")
    peer = raw_dgram(dgram, path)  # does not read yet: the kernel queue fills
    client = dgram.node("client")
    config = ConnectConfig(send_buffer_limit=LIMIT)
    endpoint, _local = client.network.connect(UNIX_DGRAM, path, config=config)

    sent = fill(lambda data: client.network.send(endpoint, data))
    queued = client.network.pending_bytes(endpoint)
    assert LIMIT - SIZE <= queued <= LIMIT + SIZE  # bounded by the limit
    assert len(sent) > queued // SIZE  # some went to the OS before it pushed back

    received = [peer.recv(SIZE * 2) for _ in sent]
    assert received == sent  # every datagram, in order, none duplicated
    client.wait_for(Drained, lambda e: e.endpoint == endpoint)
    assert client.network.pending_bytes(endpoint) == 0
    assert client.network.send(endpoint, b"after") is SENT
    assert peer.recv(100) == b"after"


def test_a_full_connection_queue_counts_refusals_and_logs_sending_on_regardless(
    dgram: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """As on a stream: every refusal is counted in ``statistics``; the first of an
    episode is not logged, the second is, once."""
    path = str(dgram._dir / "peer.sock")
    raw_dgram(dgram, path)  # never reads: the queue stays full
    client = dgram.node("client")
    endpoint, _local = client.network.connect(
        UNIX_DGRAM, path, config=ConnectConfig(send_buffer_limit=LIMIT)
    )
    with caplog.at_level(logging.WARNING, logger="message_io"):
        fill(lambda data: client.network.send(endpoint, data))
        assert not [r for r in caplog.records if "refused" in r.getMessage()]
        statuses = [client.network.send(endpoint, b"x" * SIZE) for _ in range(3)]
    assert statuses == [QUEUE_FULL] * 3
    stats = client.network.statistics(endpoint)
    assert stats is not None and stats.refused_sends == 4
    lines = [r.getMessage() for r in caplog.records if "refused again" in r.getMessage()]
    assert len(lines) == 1 and str(endpoint) in lines[0]


def test_listener_queue_is_bounded_ordered_and_drains(dgram: Net) -> None:
    server = dgram.node("server")
    listener_id, _addr = server.network.listen(
        UNIX_DGRAM, str(dgram._dir / "server.sock"), config=ListenConfig(send_buffer_limit=LIMIT)
    )
    path = str(dgram._dir / "peer.sock")
    peer = raw_dgram(dgram, path)
    endpoint = Endpoint.from_listener(listener_id, path)

    sent = fill(lambda data: server.network.send(endpoint, data))
    assert server.network.pending_bytes(endpoint) > 0
    waiter_result: list[bool] = []
    waiter = Worker(
        lambda: waiter_result.append(server.network.wait_drained(endpoint, TIMEOUT)), "waiter"
    )
    received = [peer.recv(SIZE * 2) for _ in sent]
    assert received == sent
    server.wait_for(Drained, lambda e: e.endpoint == endpoint)
    waiter.join()
    assert waiter_result == [True]
    assert server.network.pending_bytes(endpoint) == 0


def test_a_full_listener_queue_counts_refusals_and_logs_once_per_episode(
    dgram: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """A packet listener's queue, shared by its peers, refuses as a connection's does:
    every refusal counted in ``statistics`` (asked of any of its peers), the second of
    an episode logged once, and a new episode once it drained."""
    server = dgram.node("server")
    listener_id, _addr = server.network.listen(
        UNIX_DGRAM, str(dgram._dir / "server.sock"), config=ListenConfig(send_buffer_limit=LIMIT)
    )
    path = str(dgram._dir / "peer.sock")
    peer = raw_dgram(dgram, path)  # does not read yet: the kernel queue fills
    endpoint = Endpoint.from_listener(listener_id, path)
    other = Endpoint.from_listener(listener_id, str(dgram._dir / "other.sock"))

    def refusal_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "refused again" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="message_io"):
        sent = fill(lambda data: server.network.send(endpoint, data))
        assert refusal_lines() == []  # the first refusal of an episode is not logged
        statuses = [server.network.send(endpoint, b"x" * SIZE) for _ in range(3)]
        assert statuses == [QUEUE_FULL] * 3
        lines = refusal_lines()
        assert len(lines) == 1 and str(endpoint) in lines[0] and "listener" in lines[0]
        stats = server.network.statistics(other)  # the queue every peer shares
        assert stats is not None and stats.refused_sends == 4 and stats.reading
        assert stats.queued_bytes == server.network.pending_bytes(endpoint) > 0

        assert [peer.recv(SIZE * 2) for _ in sent] == sent
        server.wait_for(Drained, lambda e: e.endpoint == endpoint)
        # Drained ends the episode: a new one logs its second refusal again.
        sent = fill(lambda data: server.network.send(endpoint, data))
        assert server.network.send(endpoint, b"x") is QUEUE_FULL
        assert len(refusal_lines()) == 2
    stats = server.network.statistics(endpoint)
    assert stats is not None and stats.refused_sends == 6
    assert [peer.recv(SIZE * 2) for _ in sent] == sent


def test_refused_datagram_is_dropped_and_the_listener_stays(dgram: Net) -> None:
    server = dgram.node("server")
    listener_id, addr = server.network.listen(UNIX_DGRAM, str(dgram._dir / "server.sock"))
    nobody = Endpoint.from_listener(listener_id, str(dgram._dir / "nobody.sock"))
    # The OS refuses (no such socket): nothing sent, a status that says so, no crash.
    assert server.network.send(nobody, b"x") is SendStatus.RESOURCE_NOT_AVAILABLE
    peer = raw_dgram(dgram, str(dgram._dir / "peer.sock"))
    peer.sendto(b"ping", addr)
    event = server.expect(Message)
    assert event.data == b"ping"
    assert event.endpoint.resource_id == listener_id
    assert server.network.send(event.endpoint, b"pong") is SENT
    assert peer.recv(100) == b"pong"


def test_send_wait_on_a_packet_listener_waits_for_its_queue(dgram: Net) -> None:
    """A listener's queue is full: send_wait waits for it to drain (no spinning on
    QUEUE_FULL), then sends; with the peer never reading it times out with QUEUE_FULL."""
    server = dgram.node("server")
    listener_id, _addr = server.network.listen(
        UNIX_DGRAM, str(dgram._dir / "server.sock"), config=ListenConfig(send_buffer_limit=LIMIT)
    )
    path = str(dgram._dir / "peer.sock")
    peer = raw_dgram(dgram, path)
    endpoint = Endpoint.from_listener(listener_id, path)
    sent = fill(lambda data: server.network.send(endpoint, data))
    cpu = time.thread_time()
    assert server.network.send_wait(endpoint, b"late", timeout=0.2) is QUEUE_FULL
    assert time.thread_time() - cpu < 0.1  # it waited; a retry loop burns the 0.2 s
    result: list[SendStatus] = []
    sender = Worker(lambda: result.append(server.network.send_wait(endpoint, b"after")), "sender")
    received = [peer.recv(SIZE * 2) for _ in range(len(sent) + 1)]
    sender.join()
    assert result == [SENT]
    assert received == [*sent, b"after"]


def test_removing_a_peer_drops_only_its_queued_datagrams(dgram: Net) -> None:
    """remove(endpoint.resource_id) on a packet listener's peer forgets that peer: its
    queued datagrams are dropped, another peer's are still written, in order, and the
    listener stays open."""
    server = dgram.node("server")
    listener_id, addr = server.network.listen(
        UNIX_DGRAM, str(dgram._dir / "server.sock"), config=ListenConfig(send_buffer_limit=LIMIT)
    )
    kicked_path = str(dgram._dir / "kicked.sock")
    kicked_peer = raw_dgram(dgram, kicked_path)
    other_peer = raw_dgram(dgram, str(dgram._dir / "other.sock"))
    kicked = Endpoint.from_listener(listener_id, kicked_path)
    other = Endpoint.from_listener(listener_id, str(dgram._dir / "other.sock"))

    sent = fill(lambda data: server.network.send(kicked, data))
    assert server.network.pending_bytes(kicked) > 0

    assert server.network.remove(kicked.resource_id) is True
    assert server.network.pending_bytes(kicked) == 0  # the queued ones are gone
    assert server.network.is_ready(listener_id) is True
    assert server.network.send(other, b"still here") is SENT
    assert other_peer.recv(100) == b"still here"
    other_peer.sendto(b"ping", addr)
    assert server.expect(Message).data == b"ping"
    # The kicked peer gets what the OS had taken before it pushed back, never the rest.
    kicked_peer.setblocking(False)
    received: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            received.append(kicked_peer.recv(SIZE * 2))
    assert 0 < len(received) < len(sent)
    assert received == sent[: len(received)]


def test_a_queued_datagram_to_a_bad_address_is_dropped_and_the_loop_goes_on(
    dgram: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """An address the transport refuses only when the queue is written (the datagram
    waited behind others) drops that datagram, with a warning; the node carries on."""
    server = dgram.node("server")
    listener_id, addr = server.network.listen(
        UNIX_DGRAM, str(dgram._dir / "server.sock"), config=ListenConfig(send_buffer_limit=LIMIT)
    )
    path = str(dgram._dir / "peer.sock")
    peer = raw_dgram(dgram, path)
    endpoint = Endpoint.from_listener(listener_id, path)
    sent = fill(lambda data: server.network.send(endpoint, data))
    bad = Endpoint.from_listener(listener_id, ("not", "a path"))  # sendto: TypeError
    while server.network.send(bad, b"bad") is QUEUE_FULL:
        peer.recv(SIZE * 2)  # make room in the node's queue, one datagram at a time
        sent.pop(0)
    # Queued behind the others (a direct send would have raised the TypeError here).
    received = [peer.recv(SIZE * 2) for _ in sent]
    assert received == sent
    server.wait_for(Drained, lambda e: e.endpoint == endpoint)
    assert "queued datagram to" in caplog.text and "dropped" in caplog.text
    peer.sendto(b"still there", addr)
    assert server.wait_for(Message).data == b"still there"  # (after a Drained for `bad`)


def test_request_drained_waits_for_room_without_a_refusal(dgram: Net) -> None:
    """request_drained() says when a send would be refused, and asks for Drained then,
    without sending, logging or counting anything."""
    path = str(dgram._dir / "peer.sock")
    peer = raw_dgram(dgram, path)
    client = dgram.node("client")
    config = ConnectConfig(send_buffer_limit=LIMIT)
    endpoint, _local = client.network.connect(UNIX_DGRAM, path, config=config)
    sent = 0
    while not client.network.request_drained(endpoint):
        assert client.network.send(endpoint, b"d" * SIZE) is SENT
        sent += 1
    stats = client.network.statistics(endpoint)
    assert stats is not None and stats.refused_sends == 0
    for _ in range(sent):
        peer.recv(SIZE * 2)
    client.wait_for(Drained, lambda e: e.endpoint == endpoint)
    assert client.network.request_drained(endpoint) is False  # room again
