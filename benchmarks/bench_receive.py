"""Receive only: how fast a receiver takes 100-byte length-prefixed messages.

A plain-socket sender writes ``count`` FramedTcp frames (a 1-byte varint header and 100
bytes) in 64 KiB ``sendall`` batches, far faster than any receiver here takes them, so
the receiver is the bottleneck. The receiver reports its own rate: messages per second
from its first message to its last. Receivers, each cutting every frame out as its own
``bytes`` object and counting it:

* message_io FramedTcp: a node, ``Message`` events counted in the ``for_each`` callback;
* an asyncio ``Protocol`` with a length-prefix parser (``data_received`` appends to a
  ``bytearray`` and cuts the frames out of it), on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from bench_common import HOST, BenchmarkError, Case, Report, Row, run_async, run_pair

import message_io
from message_io import Disconnected, Message, Transport
from message_io.codec import encode_frame

NAME: Final = "receive"
SIZE: Final = 100
UNIT: Final = "msgs/s"
BASELINE: Final = "uvloop Protocol, length-prefix parser"
_BATCH: Final = 64 * 1024 // (SIZE + 1)  # frames per sendall


def count_of(quick: bool) -> int:
    return 300_000 if quick else 2_000_000


def batched_sender(port: int, count: int) -> int:
    """Send ``count`` frames in large batches; wait until the receiver closes."""
    frame = encode_frame(b"x" * SIZE)
    batch = frame * _BATCH
    full, rest = divmod(count, _BATCH)
    with socket.create_connection((HOST, port)) as sock:
        for _ in range(full):
            sock.sendall(batch)
        sock.sendall(frame * rest)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return count


def _rate(messages: int, count: int, first: float, last: float) -> float:
    if messages != count:
        raise BenchmarkError(f"received {messages:,} messages of {count:,}")
    return (count - 1) / (last - first)


def mio_receiver(report: Report, count: int) -> float:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{HOST}:0")
    report(addr[1])
    messages = 0
    first = last = 0.0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal messages, first, last
        if event.__class__ is Message:
            data = event.data
            if len(data) != SIZE:
                raise BenchmarkError(f"a message of {len(data)} bytes")
            messages += 1
            if messages == 1:
                first = time.perf_counter()
            elif messages == count:
                last = time.perf_counter()
                handler.stop()
        elif event.__class__ is Disconnected:
            handler.stop()

    listener.for_each(on_event)
    return _rate(messages, count, first, last)


def asyncio_receiver(report: Report, count: int, loop_name: str) -> float:
    async def main() -> float:
        done = asyncio.get_running_loop().create_future()
        messages = 0
        first = last = 0.0

        class Receiver(asyncio.Protocol):
            def __init__(self) -> None:
                self.buffer = bytearray()

            def data_received(self, data: bytes) -> None:
                nonlocal messages, first, last
                buffer = self.buffer
                buffer += data
                pos = 0
                n = len(buffer)
                while pos < n:
                    size = buffer[pos]
                    if size >= 0x80:
                        raise BenchmarkError("this parser reads 1-byte headers only")
                    end = pos + 1 + size
                    if end > n:
                        break
                    message = bytes(buffer[pos + 1 : end])
                    if len(message) != SIZE:
                        raise BenchmarkError(f"a message of {len(message)} bytes")
                    messages += 1
                    if messages == 1:
                        first = time.perf_counter()
                    pos = end
                del buffer[:pos]
                if messages == count and not done.done():
                    last = time.perf_counter()
                    done.set_result(None)

            def eof_received(self) -> bool | None:
                if not done.done():
                    done.set_result(None)
                return None

        server = await asyncio.get_running_loop().create_server(Receiver, HOST, 0)
        report(server.sockets[0].getsockname()[1])
        await asyncio.wait_for(done, 120)
        server.close()
        return _rate(messages, count, first, last)

    return float(run_async(loop_name, main()))


def _sample(receiver: Callable[..., float], args: tuple[Any, ...], count: int) -> float:
    rate, sent = run_pair(
        receiver, batched_sender, server_args=(count, *args), client_args=(count,), timeout=120
    )
    if sent != count:
        raise BenchmarkError(f"the sender sent {sent} of {count}")
    return float(rate)


def cases(quick: bool) -> list[Case]:
    count = count_of(quick)
    return [
        Case(
            Row(NAME, "asyncio Protocol, length-prefix parser", UNIT, higher_is_better=True),
            partial(_sample, asyncio_receiver, ("asyncio",), count),
        ),
        Case(
            Row(NAME, BASELINE, UNIT, higher_is_better=True),
            partial(_sample, asyncio_receiver, ("uvloop",), count),
        ),
        Case(
            Row(
                NAME,
                "message_io FramedTcp",
                UNIT,
                higher_is_better=True,
                baseline=BASELINE,
                target=">= 1x uvloop",
                target_met=lambda _median, ratio: ratio is not None and ratio >= 1.0,
            ),
            partial(_sample, mio_receiver, (), count),
        ),
    ]


_METHOD: Final = """\
**Receive only.** A plain-socket sender writes {count} FramedTcp frames of {size} bytes
(a 1-byte varint header each) in 64 KiB `sendall` batches, faster than any receiver
here takes them, so the receiver sets the pace. Each receiver cuts every frame out as
its own `bytes` object, checks its size and counts it; the row is its own rate, from its
first message to its last. Receivers: a message_io node (`Message` events counted in
the `for_each` callback) and an asyncio `Protocol` that appends each `data_received`
chunk to a `bytearray` and cuts the frames out of it, on asyncio and on uvloop. The
target: at least uvloop's rate."""


def method_text(quick: bool) -> str:
    return _METHOD.format(count=f"{count_of(quick):,}", size=SIZE)
