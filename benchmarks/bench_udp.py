"""UDP: 1-byte round trips, and the send rate of 100-byte datagrams, vs plain sockets.

Round trip: both processes are pinned to CPU 0, as for the TCP latency benchmark. The
client sends a 1-byte datagram and waits for its echo, ``warmup`` times and then
``count`` times timed; the result is the mean time of one round trip, in µs, measured in
the client. The server knows how many datagrams to echo and stops after the last one.

* message_io: the client ``connect``s (a connected UDP socket) and sends the next ping
  from its callback on each ``Message``; the server ``listen``s and echoes from its
  callback, which answers from the listening socket (``sendto``).
* plain (the baseline): blocking sockets connected on both ends, ``send`` + ``recv``; the
  server ``connect``s to the client's address after the first datagram.
* plain, recvfrom/sendto server: the server stays unconnected and answers with ``sendto``
  to the address ``recvfrom`` gave, as a server answering any peer from one socket (and
  message_io's listener) must.

Send rate: a sender sends ``count`` datagrams of 100 bytes to a receiver in another
process; the sender is pinned to CPU 0 and the receiver to CPU 1 (unpinned, the samples
spread wider). UDP has no flow control: on loopback the sender never waits (the
kernel puts each datagram in the receiver's socket buffer during ``send``), and the
kernel drops what does not fit in that buffer (asked at :data:`RECEIVE_BUFFER` bytes on
both receivers). So the result is the *sender's* rate, ``count`` divided by the time
from its first send to the return of its last one, and the receiver's count of what
arrived is reported beside it. After the last datagram the sender sends an end marker,
again every :data:`_RETRY` seconds until the receiver acknowledges it (the marker itself
may be dropped while the buffer is full).

* plain: a connected blocking socket, ``send(data)`` in a loop; the receiver does
  ``recvfrom`` in a loop (one new bytes object per datagram, as message_io delivers them).
* plain, socket polled for reading: the same, with the sending socket registered with an
  epoll for ``EPOLLIN`` first, as an event loop keeps every socket it reads (message_io's
  connected socket among them). Each datagram sent then costs the kernel a wake-up call
  on the socket's wait queue when its buffer is freed, which an unpolled socket skips.
* message_io, loop thread: ``send`` from the callback, ``batch`` datagrams per turn of the
  loop, the next batch asked for with a signal (or, after ``QUEUE_FULL``, by ``Drained``).
* message_io, foreign thread: the node runs ``for_each_async``; the main thread calls
  ``send`` in a loop, and on ``QUEUE_FULL`` waits with ``wait_drained`` and sends again.
* message_io receivers listen with ``UdpListenConfig(receive_buffer_size=RECEIVE_BUFFER)``
  and count ``Message`` events in the callback.

Every receiver checks that each data datagram has 100 bytes; the count that arrived may
be anything up to ``count`` (more fails the run).
"""

from __future__ import annotations

import asyncio
import importlib.util
import select
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import bench_latency
from bench_common import HOST, BenchmarkError, Case, Report, Row, run_async, run_pair

import message_io
from message_io import (
    Connected,
    Drained,
    Message,
    SendStatus,
    Signal,
    Transport,
    UdpListenConfig,
)

__all__ = [
    "LATENCY_BASELINE",
    "RATE_BASELINE",
    "RECEIVE_BUFFER",
    "cases",
    "latency_counts",
    "rate_count",
]

RECEIVE_BUFFER: Final = 4 * 1024 * 1024
"""``SO_RCVBUF`` asked for by the send-rate receivers (capped by ``net.core.rmem_max``)."""

_PAYLOAD: Final = b"x"
_SIZE: Final = 100  # bytes per datagram of the send-rate benchmark
_END: Final = b"end"  # the sender is done (its size tells it from the data)
_ACK: Final = b"ack"  # the receiver saw _END
_RETRY: Final = 0.01  # seconds before the sender sends _END again
_TRIES: Final = 1000  # _END sent at most this often (10 s), then the run fails
_RECV_SIZE: Final = 65536
_SENT: Final = SendStatus.SENT
_QUEUE_FULL: Final = SendStatus.QUEUE_FULL


# -- round trip: plain sockets --------------------------------------------------------------


def plain_echo_server(report: Report, total: int, connected: bool) -> int:
    """Echo ``total`` datagrams. ``connected``: ``connect`` to the first peer, then ``recv``
    + ``send``; else ``recvfrom`` + ``sendto`` (a server answering any peer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        report(sock.getsockname()[1])
        if connected:
            data, addr = sock.recvfrom(_RECV_SIZE)
            sock.connect(addr)
            sock.send(data)
            recv = sock.recv
            send = sock.send
            for _ in range(total - 1):
                send(recv(_RECV_SIZE))
        else:
            recvfrom = sock.recvfrom
            sendto = sock.sendto
            for _ in range(total):
                data, addr = recvfrom(_RECV_SIZE)
                sendto(data, addr)
    return total


def plain_ping_client(port: int, warmup: int, count: int) -> float:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOST, port))
        send = sock.send
        recv = sock.recv
        t0 = 0.0
        for i in range(warmup + count):
            if i == warmup:
                t0 = time.perf_counter()
            send(_PAYLOAD)
            if recv(_RECV_SIZE) != _PAYLOAD:
                raise BenchmarkError("wrong echo")
        return (time.perf_counter() - t0) / count


# -- round trip: asyncio and uvloop DatagramProtocol ------------------------------------------


def asyncio_echo_server(report: Report, total: int, loop_name: str) -> int:
    """Echo ``total`` datagrams from a ``DatagramProtocol`` (``sendto`` the sender)."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        echoes = 0

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: Any = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                nonlocal echoes
                self.transport.sendto(data, addr)
                echoes += 1
                if echoes == total and not done.done():
                    done.set_result(None)

        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(HOST, 0))
        report(transport.get_extra_info("sockname")[1])
        await asyncio.wait_for(done, 60)
        transport.close()
        return echoes

    return int(run_async(loop_name, main()))


def asyncio_ping_client(port: int, warmup: int, count: int, loop_name: str) -> float:
    """Ping from ``datagram_received`` (a connected endpoint), as message_io's client."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        total = warmup + count
        rounds = 0
        t0 = 0.0

        class Ping(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: Any = transport
                transport.sendto(_PAYLOAD)  # type: ignore[attr-defined]

            def datagram_received(self, data: bytes, addr: Any) -> None:
                nonlocal rounds, t0
                if data != _PAYLOAD:
                    done.set_exception(BenchmarkError("wrong echo"))
                    return
                rounds += 1
                if rounds == warmup:
                    t0 = time.perf_counter()
                if rounds == total:
                    done.set_result((time.perf_counter() - t0) / count)
                    return
                self.transport.sendto(_PAYLOAD)

        transport, _ = await loop.create_datagram_endpoint(Ping, remote_addr=(HOST, port))
        try:
            return float(await asyncio.wait_for(done, 60))
        finally:
            transport.close()

    return float(run_async(loop_name, main()))


# -- round trip: message_io -----------------------------------------------------------------


def mio_echo_server(report: Report, total: int) -> int:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.UDP, f"{HOST}:0")
    report(addr[1])
    send = handler.network.send
    echoes = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal echoes
        if event.__class__ is Message:  # as bench_latency's echo server
            send(event.endpoint, event.data)
            echoes += 1
            if echoes == total:
                handler.stop()

    listener.for_each(on_event)
    return echoes


def mio_ping_client(port: int, warmup: int, count: int) -> float:
    """As :func:`bench_latency.mio_ping_client`, on ``Transport.UDP``."""
    handler, listener = message_io.split()
    server, _ = handler.network.connect(Transport.UDP, f"{HOST}:{port}")
    return bench_latency.ping_rounds(handler, listener, server, warmup, count)


# -- send rate: plain sockets ---------------------------------------------------------------


def plain_receiver(report: Report, size: int) -> int:
    """Count datagrams of ``size`` bytes until ``_END``; acknowledge it; return the count."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((HOST, 0))
        report(sock.getsockname()[1])
        recvfrom = sock.recvfrom
        received = 0
        while True:
            data, addr = recvfrom(_RECV_SIZE)
            if len(data) == size:
                received += 1
            elif data == _END:
                sock.sendto(_ACK, addr)
                return received
            else:
                raise BenchmarkError(f"a datagram of {len(data)} bytes, expected {size}")


def plain_sender(port: int, count: int, size: int, polled: bool = False) -> tuple[float, float]:
    """``send`` ``count`` datagrams; return the time of the first send and after the last.

    ``polled``: the socket is registered with an epoll for reading first, as an event
    loop keeps every socket it reads (nothing is ever read from the epoll here).
    """
    payload = b"x" * size
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, select.epoll() as poller:
        sock.connect((HOST, port))
        if polled:
            poller.register(sock, select.EPOLLIN)
        send = sock.send
        t_start = time.perf_counter()
        for _ in range(count):
            send(payload)
        t_end = time.perf_counter()
        sock.settimeout(_RETRY)
        for _ in range(_TRIES):
            sock.send(_END)
            try:
                if sock.recv(_RECV_SIZE) == _ACK:
                    break
            except TimeoutError:
                continue
        else:
            raise BenchmarkError("the receiver never acknowledged the end")
    return t_start, t_end


# -- send rate: message_io ------------------------------------------------------------------


def mio_receiver(report: Report, size: int) -> int:
    """Count ``Message`` events of ``size`` bytes until ``_END``; acknowledge it."""
    handler, listener = message_io.split()
    config = UdpListenConfig(receive_buffer_size=RECEIVE_BUFFER)
    _, addr = handler.network.listen(Transport.UDP, f"{HOST}:0", config=config)
    report(addr[1])
    received = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        # The hot path of a fast consumer: one class test, one attribute (as bench_stream).
        nonlocal received
        if event.__class__ is Message:
            data = event.data
            if len(data) == size:
                received += 1
            elif data == _END:
                handler.network.send(event.endpoint, _ACK)
                handler.stop()
            else:
                raise BenchmarkError(f"a datagram of {len(data)} bytes, expected {size}")

    listener.for_each(on_event)
    return received


def mio_loop_sender(port: int, count: int, size: int, batch: int) -> tuple[float, float]:
    """Send from the loop thread, ``batch`` datagrams per turn of the loop."""
    handler, listener = message_io.split()
    network = handler.network
    server, _ = network.connect(Transport.UDP, f"{HOST}:{port}")
    send = network.send
    signals = handler.signals
    more = signals.send
    payload = b"x" * size
    sent = 0
    tries = 0
    t_start = t_end = 0.0

    def finish() -> None:
        """The sender is done once the node handed its last datagram to the OS."""
        nonlocal t_end
        if network.pending_bytes(server):
            more("drain")  # never on loopback, where the OS takes every datagram at once
            return
        t_end = time.perf_counter()
        end()

    def end() -> None:
        nonlocal tries
        tries += 1
        if tries > _TRIES:
            raise BenchmarkError("the receiver never acknowledged the end")
        send(server, _END)
        signals.send_with_timer("end", _RETRY)

    def pump() -> None:
        nonlocal sent
        stop = min(count, sent + batch)
        while sent < stop:
            status = send(server, payload)
            if status is not _SENT:
                if status is _QUEUE_FULL:
                    return  # Drained(server) follows and calls pump again
                raise BenchmarkError(f"send returned {status}")
            sent += 1
        if sent < count:
            more(None)
        else:
            finish()

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal t_start
        match event:
            case Signal("end"):
                end()
            case Signal("drain"):
                finish()
            case Signal() | Drained():
                pump()
            case Message(_, data):
                if data != _ACK:
                    raise BenchmarkError(f"unexpected answer {data!r}")
                handler.stop()
            case Connected(_, established):
                if not established:
                    raise BenchmarkError("could not connect")
                t_start = time.perf_counter()
                pump()

    listener.for_each(on_event)
    if sent != count:
        raise BenchmarkError(f"sent {sent} of {count}")
    return t_start, t_end


def mio_thread_sender(port: int, count: int, size: int) -> tuple[float, float]:
    """Send from the main thread while the node runs on its own thread."""
    handler, listener = message_io.split()
    network = handler.network
    server, _ = network.connect(Transport.UDP, f"{HOST}:{port}")
    acked = threading.Event()

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        if event.__class__ is Message:
            if event.data != _ACK:
                raise BenchmarkError(f"unexpected answer {event.data!r}")
            acked.set()

    send = network.send
    payload = b"x" * size
    with listener.for_each_async(on_event) as task:
        t_start = time.perf_counter()
        for _ in range(count):
            status = send(server, payload)
            while status is _QUEUE_FULL:
                if not network.wait_drained(server, 30.0):
                    raise BenchmarkError("wait_drained failed")
                status = send(server, payload)
            if status is not _SENT:
                raise BenchmarkError(f"send returned {status}")
        if not network.wait_drained(server, 30.0):  # all handed to the OS
            raise BenchmarkError("wait_drained failed")
        t_end = time.perf_counter()
        for _ in range(_TRIES):
            send(server, _END)
            if acked.wait(_RETRY):
                break
        else:
            raise BenchmarkError("the receiver never acknowledged the end")
        handler.stop()
        task.wait(60.0)
    return t_start, t_end


# -- the cases ------------------------------------------------------------------------------


def _measure_latency(
    server_side: Callable[..., int],
    client_side: Callable[..., float],
    server_args: tuple[Any, ...],
    *,
    warmup: int,
    count: int,
    client_args: tuple[Any, ...] = (),
    also: Row | None = None,
) -> float:
    """µs per round trip; also appended to ``also`` (the same sample, another ratio)."""
    total = warmup + count
    answers, seconds = run_pair(
        server_side,
        client_side,
        server_args=(total, *server_args),
        client_args=(warmup, count, *client_args),
        pin_cpu0=True,
    )
    if answers != total:
        raise BenchmarkError(f"the server answered {answers} of {total}")
    if also is not None:
        also.samples.append(float(seconds) * 1e6)
    return float(seconds) * 1e6


def _measure_rate(
    receiver: Callable[..., int],
    sender: Callable[..., tuple[float, float]],
    sender_args: tuple[Any, ...],
    *,
    count: int,
    arrived: Row,
) -> float:
    """The sender's datagrams/s; the percentage that arrived goes to ``arrived``."""
    received, (t_start, t_end) = run_pair(
        receiver,
        sender,
        server_args=(_SIZE,),
        client_args=(count, _SIZE, *sender_args),
        pin_apart=True,
        timeout=60.0,
    )
    if not 0 <= received <= count:
        raise BenchmarkError(f"the receiver counted {received} datagrams of {count} sent")
    arrived.samples.append(100.0 * received / count)
    return count / float(t_end - t_start)


def latency_counts(quick: bool) -> tuple[int, int]:
    """``(warmup, timed)`` round trips per sample."""
    return (500, 5_000) if quick else (1_000, 15_000)


def rate_count(quick: bool) -> int:
    """Datagrams per send-rate sample."""
    return 100_000 if quick else 500_000


def _ratio_at_most(limit: float) -> Callable[[float, float | None], bool]:
    return lambda _median, ratio: ratio is not None and ratio <= limit


def _ratio_at_least(limit: float) -> Callable[[float, float | None], bool]:
    return lambda _median, ratio: ratio is not None and ratio >= limit


LATENCY_BASELINE: Final = "plain sockets, 1-byte round trip"
_HAVE_UVLOOP: Final = importlib.util.find_spec("uvloop") is not None
_LOOP_BASELINE: Final = "uvloop DatagramProtocol, 1-byte round trip"
RATE_BASELINE: Final = "plain sockets, send 100 B"


def cases(quick: bool) -> list[Case]:
    """Round trips (µs each), and send rates (datagrams/s of the sender) with the share
    of the datagrams that arrived."""
    warmup, count = latency_counts(quick)
    unit = "µs/round trip"
    latency = partial(_measure_latency, warmup=warmup, count=count)
    # The same samples as the message_io row, as a ratio to uvloop's (or asyncio's).
    vs_loop = Row(
        "udp",
        "message_io Udp, 1-byte round trip, vs the event loop's DatagramProtocol",
        unit,
        higher_is_better=False,
        baseline=_LOOP_BASELINE if _HAVE_UVLOOP else "asyncio DatagramProtocol, 1-byte round trip",
        target="<= 1x uvloop",
        target_met=_ratio_at_most(1.0),
    )
    result = [
        Case(
            Row("udp", LATENCY_BASELINE, unit, higher_is_better=False),
            partial(latency, plain_echo_server, plain_ping_client, (True,)),
        ),
        Case(
            Row(
                "udp",
                "plain sockets, 1-byte round trip, recvfrom/sendto server",
                unit,
                higher_is_better=False,
                baseline=LATENCY_BASELINE,
            ),
            partial(latency, plain_echo_server, plain_ping_client, (False,)),
        ),
        Case(
            Row(
                "udp",
                "message_io Udp, 1-byte round trip",
                unit,
                higher_is_better=False,
                baseline=LATENCY_BASELINE,
                target="<= 1.3x plain",
                target_met=_ratio_at_most(1.3),
            ),
            partial(latency, mio_echo_server, mio_ping_client, (), also=vs_loop),
            extra_rows=(vs_loop,),
        ),
    ]
    result.extend(
        Case(
            Row(
                "udp",
                f"{loop_name} DatagramProtocol, 1-byte round trip",
                unit,
                higher_is_better=False,
                baseline=LATENCY_BASELINE,
            ),
            partial(
                latency,
                asyncio_echo_server,
                asyncio_ping_client,
                (loop_name,),
                client_args=(loop_name,),
            ),
        )
        for loop_name in (("asyncio", "uvloop") if _HAVE_UVLOOP else ("asyncio",))
    )
    n = rate_count(quick)
    senders: tuple[tuple[str, Callable[..., int], Callable[..., Any], tuple[Any, ...]], ...] = (
        (RATE_BASELINE, plain_receiver, plain_sender, ()),
        (f"{RATE_BASELINE}, socket polled for reading", plain_receiver, plain_sender, (True,)),
        ("message_io Udp, send 100 B, loop thread", mio_receiver, mio_loop_sender, (1024,)),
        ("message_io Udp, send 100 B, foreign thread", mio_receiver, mio_thread_sender, ()),
    )
    for name, receiver, sender, sender_args in senders:
        base = name == RATE_BASELINE
        plain = name.startswith(RATE_BASELINE)
        arrived = Row("udp", f"{name}: arrived", "% of sent", higher_is_better=True)
        row = Row(
            "udp",
            name,
            "datagrams/s",
            higher_is_better=True,
            baseline=None if base else RATE_BASELINE,
            target="" if plain else ">= 0.9x plain",
            target_met=None if plain else _ratio_at_least(0.9),
        )
        measure = partial(_measure_rate, receiver, sender, sender_args, count=n, arrived=arrived)
        result.append(Case(row, measure, extra_rows=(arrived,)))
    return result
