"""The tests of the suite that talk to a listener through a raw socket.

They need the author's raw peer (:meth:`SuiteBase.raw_connect`), and most of them its
wire format (:meth:`SuiteBase.wire`, :meth:`SuiteBase.client_wire`), to write exact
bytes, stop reading, half-close or break a connection as no node would; without those
hooks they are skipped, with the reason. All of them are about connections.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

import pytest

from message_io import (
    Accepted,
    Disconnected,
    Drained,
    Endpoint,
    EndpointStatistics,
    LoopThreadError,
    Message,
    SendStatus,
)

from ._base import SuiteBase
from ._nodes import (
    TIMEOUT,
    Worker,
    assert_same_bytes,
    fill_queue,
    kernel_send_capacity,
    recv_exactly,
)

__all__ = ["RawPeerTests"]

SENT = SendStatus.SENT
QUEUE_FULL = SendStatus.QUEUE_FULL


def read_until_closed(sock: socket.socket) -> None:
    """Read and drop what ``sock`` receives (a close frame, say) until EOF or a reset."""
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass


class RawPeerTests(SuiteBase):
    """Bad input, slow readers, half-closes and resets, from a raw socket."""

    def test_garbage_disconnects_only_that_peer(self) -> None:
        """A raw peer that writes :meth:`garbage` is disconnected (``Disconnected``, its
        socket closed) and forgotten; a peer connected before it is still served."""
        self.need_connections()
        junk = self.garbage()
        if junk is None:
            if not self.transport.is_packet_based:
                pytest.skip(f"{self.transport!r} is a byte stream: no input is invalid")
            pytest.skip(f"no garbage for {self.transport!r}: provide garbage() to run this test")
        self.need_raw_peer()
        server, listener_id, addr = self.echo_server()
        good = self.node("good")
        endpoint = self.connected(good, addr)
        good_server_ep = self.accepted(server, listener_id)

        raw = self.raw(addr)
        bad_ep = self.accepted(server, listener_id)
        raw.sendall(junk)
        assert server.expect(Disconnected) == Disconnected(bad_ep)
        read_until_closed(raw)  # the server closed it
        assert server.network.is_ready(bad_ep.resource_id) is None

        assert good.network.send(endpoint, b"still here") is SENT
        assert self.receive_one(server, good_server_ep, 10) == b"still here"
        assert self.receive_one(good, endpoint, 10) == b"still here"

    def test_raw_socket_bytes_match_the_wire_format(self) -> None:
        """What a raw peer sends as :meth:`client_wire` arrives as the message, what the
        server sends arrives as :meth:`wire`, and the peer's half-close disconnects."""
        self.need_connections()
        self.need_wire()
        server, listener_id, addr = self.server()
        raw = self.raw(addr)
        endpoint = self.accepted(server, listener_id)

        raw.sendall(self.client_wire(b"from raw"))
        assert self.receive_one(server, endpoint, 8) == b"from raw"
        assert server.network.send(endpoint, b"to raw") is SENT
        assert recv_exactly(raw, len(self.wire(b"to raw"))) == self.wire(b"to raw")

        raw.shutdown(socket.SHUT_WR)
        assert server.expect(Disconnected) == Disconnected(endpoint)

    def test_peer_that_stops_reading(self) -> None:
        """A raw peer that reads nothing: ``send`` returns ``QUEUE_FULL`` with at most
        ``send_buffer_limit`` plus one message queued; once the peer reads, it gets every
        byte sent, in order, ``Drained`` follows and the queue is empty."""
        self.need_connections()
        self.need_wire()
        limit = 1024 * 1024
        server, listener_id, addr = self.server(config=self.listen_config(send_buffer_limit=limit))
        raw = self.raw(addr, rcvbuf=16 * 1024)  # connects, then reads nothing
        endpoint = self.accepted(server, listener_id)

        size = 64 * 1024
        sent: list[bytes] = []
        queue_full = False
        for k in range(4096):  # 256 MiB: far more than the kernel's buffers plus the queue
            payload = k.to_bytes(4, "big") * (size // 4)
            status = server.network.send(endpoint, payload)
            if status is QUEUE_FULL:
                queue_full = True
                break
            assert status is SENT, status
            sent.append(payload)
            pending = server.network.pending_bytes(endpoint)
            assert pending <= limit + len(self.wire(payload)), f"{pending} bytes queued"
        assert queue_full, "the send queue never filled up"

        # The peer reads again: everything sent arrives, in order, and Drained follows.
        expected = b"".join(self.wire(p) for p in sent)
        assert_same_bytes(recv_exactly(raw, len(expected)), expected)
        assert server.expect(Drained) == Drained(endpoint)
        assert server.network.pending_bytes(endpoint) == 0
        assert server.network.wait_drained(endpoint, TIMEOUT) is True

        assert server.network.send(endpoint, b"again") is SENT
        assert recv_exactly(raw, len(self.wire(b"again"))) == self.wire(b"again")

    def test_removed_connection_writes_its_queue(self) -> None:
        """Bytes queued before ``remove`` are still written (then :meth:`farewell_wire`)
        before the connection closes, with no event on the server."""
        self.need_connections()
        self.need_wire()
        server, listener_id, addr = self.server()
        raw = self.raw(addr, rcvbuf=16 * 1024)
        endpoint = self.accepted(server, listener_id)
        payloads = [bytes([i % 251]) * 50_000 for i in range(40)]  # 2 MB: more than one write

        def send_and_remove() -> None:
            for data in payloads:
                assert server.network.send(endpoint, data) is SENT
            assert server.network.remove(endpoint.resource_id) is True

        server.run_on_loop(send_and_remove)  # the peer reads nothing yet: bytes stay queued
        expected = b"".join(self.wire(p) for p in payloads) + self.farewell_wire()
        assert_same_bytes(recv_exactly(raw, len(expected)), expected)
        assert raw.recv(1) == b""  # then closed
        server.sync()
        assert server.drain_events() == []

    def test_wait_drained_released_when_the_peer_goes_away(self) -> None:
        """A thread in ``wait_drained`` on a queue that cannot drain is released (False)
        when the peer closes; the server gets ``Disconnected``."""
        self.need_connections()
        self.need_raw_peer()
        # A queue the kernel cannot swallow while the peer reads nothing, so that it can
        # never drain: the waiter below is released by the disconnection, not by a Drained.
        limit = 2 * kernel_send_capacity() + 1024 * 1024
        server, listener_id, addr = self.server(config=self.listen_config(send_buffer_limit=limit))
        raw = self.raw(addr, rcvbuf=16 * 1024)
        endpoint = self.accepted(server, listener_id)
        payload = b"z" * 64 * 1024
        for _ in range(4096):
            status = server.network.send(endpoint, payload)
            if status is QUEUE_FULL:
                break
            assert status is SENT, status
        else:
            raise AssertionError("the send queue never filled up")

        results: list[bool] = []
        waiter = Worker(
            lambda: results.append(server.network.wait_drained(endpoint, 3 * TIMEOUT)), "waiter"
        )
        raw.close()  # with unread data: the connection breaks
        assert server.expect(Disconnected) == Disconnected(endpoint)
        waiter.join()
        assert results == [False]
        assert server.network.send(endpoint, payload) is SendStatus.RESOURCE_NOT_FOUND

    def test_a_peer_stalling_inside_a_message_is_disconnected(self) -> None:
        """``message_timeout``: a peer that sends part of a message, then nothing, is
        disconnected; another peer is served (packet transports only: the adapter reports
        unfinished messages with ``Remote.incomplete()``)."""
        self.need_connections()
        if not self.transport.is_packet_based:
            pytest.skip("a raw byte stream has no messages, so nothing is ever incomplete")
        self.need_wire()
        config = self.listen_config(message_timeout=0.3, min_message_rate=None)
        server, _listener_id, addr = self.server(config=config)
        stalled = self.raw(addr)
        accepted = server.expect(Accepted)
        healthy = self.raw(addr)
        other = server.expect(Accepted)
        wire = self.client_wire(b"m" * 1000)
        stalled.sendall(wire[:-10])  # all but the last 10 bytes, then silence
        gone = server.wait_for(Disconnected)
        assert gone.endpoint == accepted.endpoint
        healthy.sendall(self.client_wire(b"whole"))
        message = server.wait_for(Message)
        assert (message.endpoint, message.data) == (other.endpoint, b"whole")

    def test_idle_timeout_disconnects_a_silent_peer(self) -> None:
        """``idle_timeout``: a peer that sends nothing is disconnected, and its socket
        closed."""
        self.need_connections()
        self.need_raw_peer()
        config = self.listen_config(idle_timeout=0.3)
        server, _listener_id, addr = self.server(config=config)
        silent = self.raw(addr)
        accepted = server.expect(Accepted)
        gone = server.wait_for(Disconnected)
        assert gone.endpoint == accepted.endpoint
        silent.settimeout(TIMEOUT)
        read_until_closed(silent)  # a close frame may come first, then EOF

    def test_backpressure_sent_into_regardless_is_logged_once_per_episode_and_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The first ``QUEUE_FULL`` of an episode is not logged (a program that waits for
        room meets no other); the second is, once (naming the endpoint), however many
        follow; every refusal is counted in ``statistics``; after ``Drained``, a new
        episode is logged again from its second refusal."""
        self.need_connections()
        self.need_wire()
        limit = 256 * 1024
        server, listener_id, addr = self.server(config=self.listen_config(send_buffer_limit=limit))
        raw = self.raw(addr, rcvbuf=16 * 1024)
        endpoint = self.accepted(server, listener_id)

        def refused_lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]

        def one_episode() -> tuple[list[bytes], int, list[SendStatus], EndpointStatistics | None]:
            # On the loop thread: the loop cannot write the queue out while this runs, so
            # it stays full from the first refusal to the last. From another thread the
            # loop may write part of it out in between (the kernel often has room left
            # when the queue fills) and a send meant to be refused would be queued.
            sent = fill_queue(server, endpoint)
            after_first = len(refused_lines())
            # Nine more refusals in the same episode: one line, at the first of them.
            statuses = [server.network.send(endpoint, b"x" * 1024) for _ in range(9)]
            return sent, after_first, statuses, server.network.statistics(endpoint)

        with caplog.at_level(logging.WARNING, logger="message_io"):
            sent, after_first, statuses, stats = server.run_on_loop(one_episode)
            assert after_first == 0
            assert statuses == [QUEUE_FULL] * 9
            assert stats is not None and stats.refused_sends == 10 and stats.reading
            assert stats.queued_bytes >= limit
            lines = refused_lines()
            assert len(lines) == 1 and str(endpoint) in lines[0]
            expected = b"".join(self.wire(p) for p in sent)
            assert_same_bytes(recv_exactly(raw, len(expected)), expected)
            assert server.expect(Drained) == Drained(endpoint)

            def second_episode() -> tuple[int, SendStatus]:
                fill_queue(server, endpoint)  # a new episode, waited out: no line
                after_first = len(refused_lines())
                return after_first, server.network.send(endpoint, b"x")

            after_first, status = server.run_on_loop(second_episode)
            assert after_first == 1 and status is QUEUE_FULL
            assert len(refused_lines()) == 2  # sent into regardless: one more line

    def test_send_wait_waits_out_backpressure_instead_of_dropping(self) -> None:
        """``send_wait`` from another thread waits while the queue is full and sends
        everything, in order, to a slow reader; from the loop thread it raises
        ``LoopThreadError``."""
        self.need_connections()
        self.need_wire()
        limit = 128 * 1024
        server, listener_id, addr = self.server(config=self.listen_config(send_buffer_limit=limit))
        raw = self.raw(addr, rcvbuf=16 * 1024)
        endpoint = self.accepted(server, listener_id)
        payloads = [k.to_bytes(4, "big") * (16 * 1024) for k in range(64)]  # 4 MiB in all
        statuses: list[SendStatus] = []
        sender = threading.Thread(
            target=lambda: statuses.extend(server.network.send_wait(endpoint, p) for p in payloads)
        )
        sender.start()
        expected = b"".join(self.wire(p) for p in payloads)
        assert_same_bytes(recv_exactly(raw, len(expected)), expected)  # read slowly, all there
        sender.join(TIMEOUT)
        assert statuses == [SENT] * len(payloads)
        with pytest.raises(LoopThreadError):
            server.run_on_loop(lambda: server.network.send_wait(endpoint, b"x"))

    def test_send_wait_times_out_with_queue_full(self) -> None:
        """``send_wait`` with a timeout returns ``QUEUE_FULL`` when the queue cannot
        drain in time."""
        self.need_connections()
        self.need_raw_peer()
        config = self.listen_config(send_buffer_limit=64 * 1024)
        server, listener_id, addr = self.server(config=config)
        self.raw(addr, rcvbuf=16 * 1024)  # reads nothing
        endpoint = self.accepted(server, listener_id)
        # Fill the queue until the kernel's buffers are full too and it cannot drain.
        for _ in range(1000):
            fill_queue(server, endpoint)
            if not server.network.wait_drained(endpoint, 0.1):
                break
        else:
            raise AssertionError("the queue always drained")
        assert server.network.send_wait(endpoint, b"late", timeout=0.2) is QUEUE_FULL

    def test_pause_reading_holds_a_peer_back_and_resume_delivers(self) -> None:
        """Nothing from a paused peer is delivered; after ``resume_reading`` it is.
        Pausing an unknown endpoint returns False."""
        self.need_connections()
        self.need_wire()
        server, listener_id, addr = self.server()
        raw = self.raw(addr)
        endpoint = self.accepted(server, listener_id)
        assert server.network.pause_reading(endpoint) is True
        stats = server.network.statistics(endpoint)
        assert stats is not None and not stats.reading
        raw.sendall(self.client_wire(b"held"))
        server.sync()  # two loop turns: a readable peer would have been read by now
        assert not any(isinstance(e, Message) for e in server.drain_events())
        assert server.network.resume_reading(endpoint) is True
        message = server.wait_for(Message)
        assert message.endpoint == endpoint
        assert message.data == b"held" or b"held".startswith(message.data)  # a stream
        unknown = Endpoint.from_listener(listener_id, ("127.0.0.1", 9))
        assert server.network.pause_reading(unknown) is False

    def test_a_paused_connection_whose_peer_resets_is_disconnected(self) -> None:
        """A reset is reported by the poller even for a connection not polled for reading
        (paused): it must end the connection, not make the loop spin on it (raw peers
        over TCP only: other sockets have no reset to send)."""
        self.need_connections()
        self.need_raw_peer()
        server, listener_id, addr = self.server()
        raw = self.raw(addr)
        if raw.family not in (socket.AF_INET, socket.AF_INET6):
            pytest.skip(f"{raw.family.name} sockets have no reset to send")
        endpoint = self.accepted(server, listener_id)
        assert server.network.pause_reading(endpoint) is True
        server.sync()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # with SO_LINGER 0: a reset
        assert server.expect(Disconnected) == Disconnected(endpoint)
