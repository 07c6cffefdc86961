"""Throughput: 1 GiB over every transport, through message-io and through plain sockets.

Give Python the path of this folder: here from the checkout's root, from anywhere else
with the path changed (``python path/to/examples/throughput``), once message-io is
installed (``pip install -e .``)::

    python examples/throughput                          # 1 GiB over each transport
    python examples/throughput --size 64MiB             # less
    python examples/throughput udp framed-tcp --size 256MiB

As in the Rust example, the data goes over loopback in chunks of 65507 bytes (the largest
UDP datagram), once through message-io and once natively, and the rate is measured from
the first send to the moment the receiver has everything, in decimal units
(1 GB/s = 10^9 bytes per second). Both ends run in this one process, as there: the
receiver on its own thread (message-io's event loop, or a thread reading a blocking
socket) and the sender on the main thread (``send_wait``, or a blocking socket).

"Native" is what a Python program without message-io would write: blocking sockets
(``sendall``/``recv_into``; for FramedTcp and Unix the same varint length prefix made by
hand, each message cut out of the stream as message-io delivers it), and for WebSocket
the ``websockets`` library's synchronous API (the Rust example uses tungstenite), without
compression on either side. The payload is random bytes.

UDP has no flow control: a sender faster than its receiver loses datagrams in the
receiver's socket buffer, so a rate of what was sent would say nothing, and sending
blindly until everything has arrived (as the Rust example does) would mostly measure
loss. Both UDP runs pace the sender the same way instead: the receiver acknowledges
every few datagrams with the number of bytes it has, and the sender keeps at most a
window of datagrams in flight (sized to the receive buffer the OS grants). A window with
no acknowledgement for 0.1 s is written off as lost and made up for by more datagrams,
so the rate is always of data that arrived; the output says how many datagrams were sent
and how many arrived. ``--size`` takes bytes or a unit (``8MiB``, ``500MB``,
``1GiB``); the transports to run may be named (default: all).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from websockets.sync.client import connect as ws_connect
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

import message_io
from message_io import (
    Accepted,
    Endpoint,
    Message,
    MessageIOError,
    SendStatus,
    Transport,
    UdpListenConfig,
)
from message_io.adapters.udp import MAX_LOCAL_PAYLOAD_LEN

CHUNK = MAX_LOCAL_PAYLOAD_LEN  # 65507, for every transport, as in the Rust example
HOST = "127.0.0.1"
RECEIVE_BUFFER = 4 * 1024 * 1024  # SO_RCVBUF asked for by the UDP receivers
ACK_EVERY = 4  # datagrams between two acknowledgements
MAX_WINDOW = 32  # datagrams in flight, at most
ACK_TIMEOUT = 0.1  # seconds without an acknowledgement before a window is written off
TRANSPORTS = {
    "framed-tcp": Transport.FRAMED_TCP,
    "tcp": Transport.TCP,
    "udp": Transport.UDP,
    "ws": Transport.WS,
    "unix": Transport.UNIX,
}
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30}
_BINARY = ((30, "GiB"), (20, "MiB"), (10, "KiB"))


class Failure(Exception):
    """A run that could not finish (a timeout, a connection lost)."""


@dataclass
class Run:
    """One measurement: seconds from the first send to the last byte received."""

    seconds: float
    sent: int = 0  # UDP: datagrams sent
    arrived: int = 0  # UDP: datagrams received

    def rate(self, size: int) -> float:
        """GB/s, decimal."""
        return size / self.seconds / 1e9


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 8MiB or 1GiB")
    size = int(float(match.group(1)) * _UNITS[match.group(2) or ""])
    if size <= 0:
        raise argparse.ArgumentTypeError("the size must be at least one byte")
    return size


def chunks(payload: bytes, size: int) -> Iterator[bytes | memoryview]:
    """``size`` bytes of ``payload``, chunk after chunk (the last one may be shorter)."""
    full, rest = divmod(size, len(payload))
    for _ in range(full):
        yield payload
    if rest:
        yield memoryview(payload)[:rest]


def udp_window() -> int:
    """Datagrams in flight that the receive buffer the OS grants can hold, with room to
    spare (Linux doubles ``SO_RCVBUF`` for its bookkeeping, and a 64 KiB datagram takes
    a little more than 64 KiB of it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        granted = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return max(ACK_EVERY, min(MAX_WINDOW, granted // (2 * 70 * 1024)))


class Pacer:
    """The sending side of the UDP pacing: how much may be sent, from the receiver's
    acknowledgements (the total bytes it has). Any thread may :meth:`ack`."""

    def __init__(self, size: int, window: int) -> None:
        self.size = size
        self.window = window * CHUNK
        self.sent = 0  # bytes
        self.datagrams = 0
        self.acked = 0  # bytes the receiver said it has
        self.written_off = 0  # bytes in flight given up as lost
        self.changed = threading.Condition()

    def ack(self, total: int) -> None:
        with self.changed:
            if total > self.acked:
                self.acked = total
                self.changed.notify()

    def next_datagram(self) -> int:
        """Wait for room in the window; the size of the next datagram, or 0 when the
        receiver has everything."""
        with self.changed:
            while True:
                if self.acked >= self.size:
                    return 0
                in_flight = self.sent - self.written_off - self.acked
                owed = self.size - (self.sent - self.written_off)
                if owed > 0 and in_flight < self.window:
                    return min(CHUNK, owed)
                if not self.changed.wait(ACK_TIMEOUT):  # write off what is in flight
                    self.written_off += max(0, in_flight)

    def sent_datagram(self, n: int) -> None:
        with self.changed:
            self.sent += n
            self.datagrams += 1

    def result(self, seconds: float, arrived: int) -> Run:
        return Run(seconds, self.datagrams, arrived)


# -- message-io ----------------------------------------------------------------------------


def listen_address(transport: Transport, folder: str) -> str:
    return os.path.join(folder, "mio.sock") if transport is Transport.UNIX else f"{HOST}:0"


@dataclass(frozen=True)
class Plan:
    """What every run sends, and how."""

    payload: bytes  # one chunk of random bytes, sent again and again
    size: int  # bytes to send
    window: int  # UDP: datagrams in flight, at most
    folder: str  # for the Unix sockets
    timeout: float  # seconds one run may take


def measure_message_io(transport: Transport, plan: Plan) -> Run:
    payload, size, timeout = plan.payload, plan.size, plan.timeout
    handler, listener = message_io.split()
    udp = transport is Transport.UDP
    config = UdpListenConfig(receive_buffer_size=RECEIVE_BUFFER) if udp else None
    _, addr = handler.network.listen(
        transport, listen_address(transport, plan.folder), config=config
    )
    accepted = threading.Event()
    done = threading.Event()
    ended = threading.Event()  # UDP: the end marker arrived
    pacer = Pacer(size, plan.window)
    client: Endpoint | None = None
    received = 0
    datagrams = 0
    t_end = 0.0
    ack_every = ACK_EVERY if udp else 0

    def on_event(event: message_io.NodeEvent[object]) -> None:
        nonlocal received, datagrams, t_end
        if isinstance(event, Message):
            if event.endpoint == client:  # UDP: the receiver's acknowledgement
                pacer.ack(int.from_bytes(event.data, "big"))
                return
            if udp and not event.data:  # the sender's end marker
                ended.set()
                return
            received += len(event.data)
            datagrams += 1
            if received >= size and not done.is_set():
                t_end = time.perf_counter()
                done.set()
            if ack_every and (datagrams % ack_every == 0 or received >= size):
                handler.network.send(event.endpoint, received.to_bytes(8, "big"))
        elif isinstance(event, Accepted):
            accepted.set()

    with listener.for_each_async(on_event, name="throughput"):
        client, _ = handler.network.connect_sync(transport, addr)
        if transport.is_connection_oriented and not accepted.wait(timeout):
            raise Failure("the listener accepted no connection")
        t_start = time.perf_counter()
        if udp:
            view = memoryview(payload)
            while n := pacer.next_datagram():
                data = payload if n == len(payload) else view[:n]
                if handler.network.send_wait(client, data, timeout) is not SendStatus.SENT:
                    raise Failure("a datagram could not be sent")
                pacer.sent_datagram(n)
            # Datagrams from one socket to another keep their order on one host: once
            # the end marker is in, everything sent before it that was not lost is too.
            handler.network.send_wait(client, b"", timeout)
            ended.wait(10 * ACK_TIMEOUT)  # unless the marker itself was lost
        else:
            for data in chunks(payload, size):
                if handler.network.send_wait(client, data, timeout) is not SendStatus.SENT:
                    raise Failure("the connection is gone")
        if not done.wait(timeout):
            raise Failure(f"{received} of {size} bytes arrived in time")
        handler.stop()
    return pacer.result(t_end - t_start, datagrams) if udp else Run(t_end - t_start)


# -- native: blocking sockets, and websockets' sync API ---------------------------------------


def varint(value: int) -> bytes:
    """The FramedTcp length prefix: unsigned LEB128."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def count_frames(sock: socket.socket, size: int) -> None:
    """Read length-prefixed messages until ``size`` bytes of payload arrived, each cut
    out of the stream as its own ``bytes``, as message-io delivers them."""
    buffer = bytearray()
    block = bytearray(1024 * 1024)
    view = memoryview(block)
    received = 0
    while received < size:
        n = sock.recv_into(view)
        if not n:
            raise Failure(f"the connection closed after {received} of {size} bytes")
        buffer += view[:n]
        pos = 0
        while True:  # every complete frame in the buffer
            length = shift = 0
            header_end = pos
            while header_end < len(buffer):
                byte = buffer[header_end]
                header_end += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            else:
                break  # the header is not all here yet
            if header_end + length > len(buffer):
                break  # nor the payload
            message = bytes(buffer[header_end : header_end + length])
            received += len(message)
            pos = header_end + length
        del buffer[:pos]


def count_stream(sock: socket.socket, size: int) -> None:
    view = memoryview(bytearray(1024 * 1024))
    received = 0
    while received < size:
        n = sock.recv_into(view)
        if not n:
            raise Failure(f"the connection closed after {received} of {size} bytes")
        received += n


def in_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``target`` on a thread; what it raised is in the list afterwards."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the measuring thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="native receiver", daemon=True)
    thread.start()
    return thread, errors


def finish(thread: threading.Thread, errors: list[BaseException], timeout: float) -> None:
    thread.join(timeout)
    if thread.is_alive():
        raise Failure("the receiver did not get everything in time")
    if errors:
        raise Failure(f"the receiver failed: {errors[0]}") from errors[0]


def measure_native_stream(transport: Transport, plan: Plan) -> Run:
    """TCP (raw), FramedTcp and Unix (varint-framed) over blocking sockets."""
    payload, size, timeout = plan.payload, plan.size, plan.timeout
    unix = transport is Transport.UNIX
    framed = transport is not Transport.TCP
    family = socket.AF_UNIX if unix else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind(os.path.join(plan.folder, "native.sock") if unix else (HOST, 0))
        server.listen(1)
        server.settimeout(timeout)
        t_end = 0.0

        def receive() -> None:
            nonlocal t_end
            conn, _ = server.accept()
            conn.settimeout(timeout)
            with conn:
                (count_frames if framed else count_stream)(conn, size)
                t_end = time.perf_counter()

        thread, errors = in_thread(receive)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(server.getsockname())
            if not unix:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as message-io
            if framed:  # each frame made once: sent again and again with no copy
                frames = {n: varint(n) + bytes(data) for n, data in _sizes(payload, size)}
            t_start = time.perf_counter()
            for data in chunks(payload, size):
                sock.sendall(frames[len(data)] if framed else data)
            finish(thread, errors, timeout)
    return Run(t_end - t_start)


def _sizes(payload: bytes, size: int) -> Iterator[tuple[int, bytes | memoryview]]:
    full, rest = divmod(size, len(payload))
    if full:
        yield len(payload), payload
    if rest:
        yield rest, memoryview(payload)[:rest]


def measure_native_udp(plan: Plan) -> Run:
    payload, size, timeout = plan.payload, plan.size, plan.timeout
    pacer = Pacer(size, plan.window)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        receiver.bind((HOST, 0))
        receiver.settimeout(0.1)  # to look at ``stop`` now and then
        sender.connect(receiver.getsockname())
        t_end = 0.0
        arrived = 0  # datagrams
        stop = threading.Event()

        def receive() -> None:
            nonlocal t_end, arrived
            received = 0
            recvfrom = receiver.recvfrom
            while True:
                try:
                    data, peer = recvfrom(65536)
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                if not data:  # the sender's end marker
                    return
                received += len(data)
                arrived += 1
                if received >= size and not t_end:
                    t_end = time.perf_counter()
                if arrived % ACK_EVERY == 0 or received >= size:
                    receiver.sendto(received.to_bytes(8, "big"), peer)

        def read_acks() -> None:  # the sender's acknowledgements, beside its sends
            sender.settimeout(0.05)
            while pacer.acked < size and not stop.is_set():
                try:
                    ack = sender.recv(64)
                except TimeoutError:
                    continue
                pacer.ack(int.from_bytes(ack, "big"))

        thread, errors = in_thread(receive)
        acks, ack_errors = in_thread(read_acks)
        view = memoryview(payload)
        t_start = time.perf_counter()
        while n := pacer.next_datagram():
            sender.send(payload if n == len(payload) else view[:n])
            pacer.sent_datagram(n)
        stop.set()
        sender.send(b"")  # the end marker (if lost, the receiver sees ``stop`` soon)
        finish(acks, ack_errors, timeout)
        finish(thread, errors, timeout)
    return pacer.result(t_end - t_start, arrived)


def measure_native_ws(plan: Plan) -> Run:
    payload, size, timeout = plan.payload, plan.size, plan.timeout
    t_end = 0.0
    failure: list[BaseException] = []
    finished = threading.Event()

    def handle(connection: ServerConnection) -> None:
        nonlocal t_end
        received = 0
        try:
            for message in connection:
                received += len(message)
                if received >= size:
                    t_end = time.perf_counter()
                    return
        except Exception as exc:  # noqa: BLE001 - reported by the measuring thread
            failure.append(exc)
        finally:
            finished.set()

    with ws_serve(handle, HOST, 0, compression=None, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, name="websockets", daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        sock = socket.create_connection((HOST, port), timeout=timeout)  # no proxy, ever
        with ws_connect(f"ws://{HOST}:{port}/", sock=sock, compression=None) as ws:
            t_start = time.perf_counter()
            for data in chunks(payload, size):
                ws.send(data)
            finished.wait(timeout)
        server.shutdown()
        thread.join(timeout)
    if failure or not t_end:
        raise Failure(f"the websockets receiver failed: {failure[0] if failure else 'timeout'}")
    return Run(t_end - t_start)


def measure_native(transport: Transport, plan: Plan) -> Run:
    if transport is Transport.UDP:
        return measure_native_udp(plan)
    if transport is Transport.WS:
        return measure_native_ws(plan)
    return measure_native_stream(transport, plan)


# -- the report ------------------------------------------------------------------------------


@contextmanager
def scratch_folder() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="throughput-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def describe_size(size: int) -> str:
    """``1.07 GB (1 GiB)``: decimal, as the rates, and binary if round."""
    binary = next(
        (f"{size >> p} {unit}" for p, unit in _BINARY if size >= 1 << p and size % (1 << p) == 0),
        None,
    )
    decimal = f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
    return f"{decimal} ({binary})" if binary else decimal


def run(transports: list[Transport], plan: Plan) -> int:
    """Measure each transport both ways, print a line for each, and a summary."""
    size = plan.size
    print(f"Sending {describe_size(size)} in chunks of {CHUNK} bytes:", flush=True)
    print(f"{'transport':<12}{'message-io':>12}{'native':>12}{'ratio':>8}", flush=True)
    failed = False
    udp: tuple[Run, Run] | None = None
    for transport in transports:
        try:
            mio = measure_message_io(transport, plan)
            native = measure_native(transport, plan)
        except (Failure, OSError, MessageIOError) as exc:
            print(f"{transport.name:<12}failed: {exc}", flush=True)
            failed = True
            continue
        a, b = mio.rate(size), native.rate(size)
        print(f"{transport.name:<12}{a:>7.2f} GB/s{b:>7.2f} GB/s{a / b:>8.0%}", flush=True)
        if transport is Transport.UDP:
            udp = (mio, native)
    print(
        "native: blocking sockets (FramedTcp and Unix framed by hand); "
        "WS: the websockets library's sync API",
        flush=True,
    )
    if udp is not None:
        mio, native = udp
        print(
            f"UDP: paced by acknowledgements, at most {plan.window} datagrams in flight; "
            f"datagrams sent/arrived: message-io {mio.sent}/{mio.arrived}, "
            f"native {native.sent}/{native.arrived} (a loss is made up for by more "
            "datagrams: the rates count what arrived)",
            flush=True,
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="throughput", description=__doc__.split("\n")[0])
    parser.add_argument(
        "transports",
        nargs="*",
        metavar="TRANSPORT",
        help=f"{', '.join(TRANSPORTS)} (default: all)",
    )
    parser.add_argument("--size", type=parse_size, default=2**30, help="bytes to send (1GiB)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds one run may take (300)"
    )
    args = parser.parse_args(argv)
    names: list[str] = args.transports or list(TRANSPORTS)
    unknown = [name for name in names if name not in TRANSPORTS]
    if unknown:
        parser.error(f"no transport {unknown[0]!r}: choose from {', '.join(TRANSPORTS)}")
    try:
        with scratch_folder() as folder:
            plan = Plan(os.urandom(CHUNK), args.size, udp_window(), folder, args.timeout)
            return run([TRANSPORTS[name] for name in dict.fromkeys(names)], plan)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
