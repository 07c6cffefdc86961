"""One-way streams: many small messages (throughput) and 64 KiB messages (bulk).

A sender connects to a receiver and sends ``count`` messages of ``size`` bytes; the
receiver counts them and notes the time of the last one. The result is measured from
the sender's first send to the receiver's last receive (``perf_counter`` is the same
clock in both processes). The processes are not pinned: each end has its own core.

The receiver checks what arrived: ``count * size`` bytes in all, and, on message
transports, exactly ``count`` messages of ``size`` bytes. Anything else fails the run.

Senders:

* plain: a blocking socket, one ``sendall`` per message: framed by hand with its varint
  header and Nagle's algorithm on for the small-message stream (the kernel coalesces the
  writes: 3x faster than with ``TCP_NODELAY``), raw 64 KiB chunks with ``TCP_NODELAY`` for
  bulk (else the tail of each write that does not fill a segment waits for an ACK).
* message_io, loop thread: ``send`` from the callback, ``batch`` messages per turn of the
  loop; the next batch is requested with a signal, or, when ``send`` returns
  ``QUEUE_FULL``, by the ``Drained`` event that follows.
* message_io, foreign thread: the node runs ``for_each_async``; the main thread calls
  ``send`` in a loop, and on ``QUEUE_FULL`` waits with ``wait_drained`` and sends again.
* pyzmq (small messages only, if installed): a ``PUSH`` socket that ``connect``s and
  ``send``s in a loop, once ``poll`` says the connection is up (``IMMEDIATE``: no
  message is queued before). Its own framing; the baseline of the ZeroMQ users.

Receivers:

* plain: ``recv_into`` a reused 64 KiB buffer; for framed streams every frame is cut out
  as its own object (as message_io delivers them), for bulk the bytes are only counted.
* message_io: counts ``Message`` events and their bytes in the callback.
* pyzmq: a ``PULL`` socket that ``bind``s and ``recv``s the messages one by one (each
  its own ``bytes``), counting them and their bytes.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from bench_common import HOST, BenchmarkError, Case, Report, Row, configs, run_pair

import message_io
from message_io import (
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    SendStatus,
    Signal,
    Transport,
)

__all__ = [
    "HAVE_PYZMQ",
    "bulk_bytes",
    "bulk_cases",
    "measure_mio",
    "measure_plain",
    "measure_zmq",
    "pyzmq_version",
    "throughput_cases",
    "throughput_count",
]

HAVE_PYZMQ: Final = importlib.util.find_spec("zmq") is not None
"""Whether the throughput benchmark has its pyzmq row (an optional benchmark dependency)."""
_ZMQ_TIMEOUT_MS: Final = 30_000  # the longest any pyzmq call may wait

_RECV_BUFFER = 64 * 1024
_SENT = SendStatus.SENT
_QUEUE_FULL = SendStatus.QUEUE_FULL


def _check(received: int, count: int, size: int, messages: int | None) -> None:
    if received != count * size:
        raise BenchmarkError(f"received {received} bytes, expected {count * size}")
    if messages is not None and messages != count:
        raise BenchmarkError(f"received {messages} messages, expected {count}")


# -- plain sockets ---------------------------------------------------------------------------


def plain_receiver(report: Report, count: int, size: int, framed: bool) -> float:
    with socket.create_server((HOST, 0)) as lsock:
        report(lsock.getsockname()[1])
        sock, _ = lsock.accept()
    buf = bytearray(_RECV_BUFFER)
    view = memoryview(buf)
    recv_into = sock.recv_into
    expected = count * size
    received = 0
    messages = 0
    with sock:
        if not framed:
            while received < expected:
                n = recv_into(view)
                if not n:
                    break
                received += n
        else:
            have = 0  # bytes of an incomplete frame kept at the start of buf
            while received < expected:
                n = recv_into(view[have:])
                if not n:
                    break
                end = have + n
                pos = 0
                while pos < end:
                    header = buf[pos]
                    if header >= 0x80:
                        raise BenchmarkError("the benchmark frames only carry 1-byte headers")
                    stop = pos + 1 + header
                    if stop > end:
                        break
                    payload = buf[pos + 1 : stop]
                    messages += 1
                    received += len(payload)
                    pos = stop
                have = end - pos
                if have:
                    buf[:have] = buf[pos:end]
        t_end = time.perf_counter()
    _check(received, count, size, messages if framed else None)
    return t_end


def plain_sender(port: int, count: int, size: int, framed: bool, nodelay: bool = True) -> float:
    if framed and size >= 0x80:
        raise BenchmarkError("the benchmark frames only carry 1-byte headers")
    message = (bytes((size,)) if framed else b"") + b"x" * size
    with socket.create_connection((HOST, port)) as sock:
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sendall = sock.sendall
        t_start = time.perf_counter()
        for _ in range(count):
            sendall(message)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # until the receiver closes: it has everything
            pass
    return t_start


def measure_plain(count: int, size: int, framed: bool, nodelay: bool, timeout: float) -> float:
    """Seconds from the first send to the last receive, plain sockets."""
    t_end, t_start = run_pair(
        plain_receiver,
        plain_sender,
        server_args=(count, size, framed),
        client_args=(count, size, framed, nodelay),
        timeout=timeout,
    )
    return float(t_end - t_start)


# -- message_io ------------------------------------------------------------------------------


def mio_receiver(
    report: Report, transport: Transport, count: int, size: int, use_match: bool = False
) -> float:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, f"{HOST}:0")
    report(addr[1])
    packet_based = transport is Transport.FRAMED_TCP
    expected = count * size
    received = 0
    messages = 0
    t_end = 0.0

    def finish() -> None:
        nonlocal t_end
        t_end = time.perf_counter()
        handler.stop()

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        # The hot path of a fast consumer: one class test, one attribute. (A `match` with
        # a positional class pattern costs ~0.2 µs more per event on CPython 3.11.)
        nonlocal received, messages
        if event.__class__ is Message:
            data = event.data
            messages += 1
            received += len(data)
            if packet_based and len(data) != size:
                raise BenchmarkError(f"a message of {len(data)} bytes, expected {size}")
            if received >= expected:
                finish()
        elif event.__class__ is Disconnected:
            handler.stop()  # too early: the check below fails

    def on_event_match(event: message_io.NodeEvent[Any]) -> None:
        nonlocal received, messages
        match event:
            case Message(_, data):
                messages += 1
                received += len(data)
                if packet_based and len(data) != size:
                    raise BenchmarkError(f"a message of {len(data)} bytes, expected {size}")
                if received >= expected:
                    finish()
            case Disconnected():
                handler.stop()

    listener.for_each(on_event_match if use_match else on_event)
    _check(received, count, size, messages if packet_based else None)
    return t_end


def mio_loop_sender(port: int, transport: Transport, count: int, size: int, batch: int) -> float:
    """Send from the loop thread, ``batch`` messages per turn of the loop."""
    handler, listener = message_io.split()
    server, _ = handler.network.connect(transport, f"{HOST}:{port}")
    return send_from_loop(handler, listener, server, count, size, batch=batch)


def send_from_loop(
    handler: message_io.NodeHandler[Any],
    listener: message_io.NodeListener[Any],
    server: Endpoint,
    count: int,
    size: int,
    *,
    batch: int,
    fail: Callable[[str], Exception] = BenchmarkError,
) -> float:
    """Once connected, send ``count`` messages of ``size`` bytes from the loop thread,
    ``batch`` per turn; return when the first was sent. Shared with the WebSocket
    benchmark; ``fail`` builds the exception to raise."""
    send = handler.network.send
    more = handler.signals.send
    payload = b"x" * size
    sent = 0
    t_start = 0.0

    def pump() -> None:
        nonlocal sent
        stop = min(count, sent + batch)
        while sent < stop:
            status = send(server, payload)
            if status is not _SENT:
                if status is _QUEUE_FULL:
                    return  # Drained(server) follows and calls pump again
                raise fail(f"send returned {status}")
            sent += 1
        if sent < count:
            more(None)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal t_start
        match event:
            case Signal() | Drained():
                pump()
            case Connected(_, established):
                if not established:
                    raise fail("could not connect")
                t_start = time.perf_counter()
                pump()
            case Disconnected():  # the receiver has everything and closed
                handler.stop()
            case Message():
                raise fail("the receiver does not answer")

    listener.for_each(on_event)
    if sent != count:
        raise fail(f"sent {sent} of {count}")
    return t_start


def mio_thread_sender(port: int, transport: Transport, count: int, size: int) -> float:
    """Send from the main thread while the node runs on its own thread."""
    handler, listener = message_io.split()
    connect_config, _ = configs(transport)
    server, _ = handler.network.connect_sync(transport, f"{HOST}:{port}", config=connect_config)
    return send_from_thread(handler, listener, server, count, size)


def send_from_thread(
    handler: message_io.NodeHandler[Any],
    listener: message_io.NodeListener[Any],
    server: Endpoint,
    count: int,
    size: int,
    *,
    fail: Callable[[str], Exception] = BenchmarkError,
) -> float:
    """Send ``count`` messages of ``size`` bytes to the connected ``server`` from this
    thread while the node runs on its own; return when the first was sent."""
    gone = threading.Event()

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        match event:
            case Disconnected():  # the receiver has everything and closed
                gone.set()
                handler.stop()
            case Message():
                raise fail("the receiver does not answer")

    network = handler.network
    send = network.send
    payload = b"x" * size
    with listener.for_each_async(on_event) as task:
        t_start = time.perf_counter()
        for _ in range(count):
            status = send(server, payload)
            while status is _QUEUE_FULL:
                if not network.wait_drained(server, 30.0):
                    raise fail("wait_drained failed")
                status = send(server, payload)
            if status is not _SENT:
                raise fail(f"send returned {status}")
        task.wait(60.0)
    if not gone.is_set():
        raise fail("the receiver did not close")
    return t_start


def measure_mio(
    transport: Transport,
    count: int,
    size: int,
    *,
    thread: bool,
    batch: int,
    timeout: float,
    use_match: bool = False,
) -> float:
    """Seconds from the first send to the last receive, message_io on both ends."""
    client_args: tuple[Any, ...] = (
        (transport, count, size) if thread else (transport, count, size, batch)
    )
    t_end, t_start = run_pair(
        mio_receiver,
        mio_thread_sender if thread else mio_loop_sender,
        server_args=(transport, count, size, use_match),
        client_args=client_args,
        timeout=timeout,
    )
    return float(t_end - t_start)


# -- pyzmq -----------------------------------------------------------------------------------


def zmq_receiver(report: Report, count: int, size: int) -> float:
    """A PULL socket: receive ``count`` messages of ``size`` bytes; the time of the last."""
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.PULL)
    received = 0
    messages = 0
    try:
        sock.setsockopt(zmq.RCVTIMEO, _ZMQ_TIMEOUT_MS)
        sock.bind(f"tcp://{HOST}:*")
        report(int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1]))
        recv = sock.recv
        try:
            for _ in range(count):
                data = recv()
                messages += 1
                received += len(data)
                if len(data) != size:
                    raise BenchmarkError(f"a message of {len(data)} bytes, expected {size}")
        except zmq.Again:
            raise BenchmarkError(f"no message for {_ZMQ_TIMEOUT_MS / 1000:g} s") from None
        t_end = time.perf_counter()
    finally:
        sock.close(linger=0)
        context.term()
    _check(received, count, size, messages)
    return t_end


def zmq_sender(port: int, count: int, size: int) -> float:
    """A PUSH socket: send ``count`` messages of ``size`` bytes; the time of the first."""
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    try:
        sock.setsockopt(zmq.SNDTIMEO, _ZMQ_TIMEOUT_MS)
        sock.setsockopt(zmq.LINGER, _ZMQ_TIMEOUT_MS)  # close: deliver what is queued
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no peer until connected: poll waits for it
        sock.connect(f"tcp://{HOST}:{port}")
        if not sock.poll(_ZMQ_TIMEOUT_MS, zmq.POLLOUT):
            raise BenchmarkError("the PUSH socket did not connect")
        send = sock.send
        payload = b"x" * size
        t_start = time.perf_counter()
        try:
            for _ in range(count):
                send(payload)
        except zmq.Again:
            raise BenchmarkError(f"a send waited {_ZMQ_TIMEOUT_MS / 1000:g} s") from None
    finally:
        sock.close()
        context.term()
    return t_start


def measure_zmq(count: int, size: int, timeout: float) -> float:
    """Seconds from the first send to the last receive, pyzmq PUSH to PULL."""
    t_end, t_start = run_pair(
        zmq_receiver,
        zmq_sender,
        server_args=(count, size),
        client_args=(count, size),
        timeout=timeout,
    )
    return float(t_end - t_start)


def pyzmq_version() -> str:
    """``pyzmq X (libzmq Y)``, or that it is not installed."""
    if not HAVE_PYZMQ:
        return "pyzmq (not installed: skipped)"
    import zmq

    return f"pyzmq {zmq.pyzmq_version()} (libzmq {zmq.zmq_version()})"


# -- the cases -------------------------------------------------------------------------------

_TRANSPORTS = ((Transport.FRAMED_TCP, "FramedTcp"), (Transport.TCP, "Tcp"))


def _rate(count: int, measure: Callable[[], float]) -> Callable[[], float]:
    return lambda: count / measure()


def throughput_count(quick: bool) -> int:
    """Messages per throughput sample."""
    return 300_000 if quick else 2_000_000


def bulk_bytes(quick: bool) -> int:
    """Bytes per bulk sample."""
    return (256 if quick else 1024) * 1024 * 1024


def throughput_cases(quick: bool) -> list[Case]:
    """100-byte messages one way; each sample is messages per second."""
    count = throughput_count(quick)
    size = 100
    timeout = 60.0
    baseline = "plain sockets, 1 sendall/msg"
    unit = "msgs/s"
    cases = [
        Case(
            Row("throughput", baseline, unit, higher_is_better=True),
            # Nagle on: the kernel coalesces the small writes (3x faster than with nodelay)
            _rate(count, partial(measure_plain, count, size, True, False, timeout)),
        )
    ]
    if HAVE_PYZMQ:
        cases.append(
            Case(
                Row("throughput", "pyzmq PUSH/PULL", unit, higher_is_better=True),
                _rate(count, partial(measure_zmq, count, size, timeout)),
            )
        )
    for transport, label in _TRANSPORTS:
        for thread in (False, True):
            how = "foreign thread" if thread else "loop thread"
            cases.append(
                Case(
                    Row(
                        "throughput",
                        f"message_io {label}, {how}",
                        unit,
                        higher_is_better=True,
                        baseline=baseline,
                        target=">= 3M msgs/s" if transport is Transport.FRAMED_TCP else "",
                        target_met=(lambda median, _ratio: median >= 3e6)
                        if transport is Transport.FRAMED_TCP
                        else None,
                    ),
                    _rate(
                        count,
                        partial(
                            measure_mio,
                            transport,
                            count,
                            size,
                            thread=thread,
                            batch=1024,
                            timeout=timeout,
                        ),
                    ),
                )
            )
    cases.append(
        Case(
            Row(
                "throughput",
                "message_io FramedTcp, loop thread, match callback",
                unit,
                higher_is_better=True,
                baseline=baseline,
            ),
            _rate(
                count,
                partial(
                    measure_mio,
                    Transport.FRAMED_TCP,
                    count,
                    size,
                    thread=False,
                    batch=1024,
                    timeout=timeout,
                    use_match=True,
                ),
            ),
        )
    )
    return cases


def bulk_cases(quick: bool) -> list[Case]:
    """64 KiB messages one way, 1 GiB (256 MiB with --quick); each sample is GB/s."""
    size = 64 * 1024
    total = bulk_bytes(quick)
    count = total // size
    timeout = 60.0
    baseline = "plain sockets, sendall/recv_into"
    unit = "GB/s"

    def gbps(measure: Callable[[], float]) -> Callable[[], float]:
        return lambda: total / measure() / 1e9

    cases = [
        Case(
            Row("bulk", baseline, unit, higher_is_better=True),
            # TCP_NODELAY: else the tail of each 64 KiB write that does not fill a whole
            # segment waits for an ACK (1.5x slower)
            gbps(partial(measure_plain, count, size, False, True, timeout)),
        )
    ]
    for transport, label in _TRANSPORTS:
        for thread in (False, True):
            how = "foreign thread" if thread else "loop thread"
            cases.append(
                Case(
                    Row(
                        "bulk",
                        f"message_io {label}, {how}",
                        unit,
                        higher_is_better=True,
                        baseline=baseline,
                        target=">= 0.85x plain",
                        target_met=lambda _median, ratio: ratio is not None and ratio >= 0.85,
                    ),
                    gbps(
                        partial(
                            measure_mio,
                            transport,
                            count,
                            size,
                            thread=thread,
                            batch=64,
                            timeout=timeout,
                        )
                    ),
                )
            )
    return cases
