"""WebSocket: message_io's ``Transport.WS`` vs the ``websockets`` library, and vs FramedTcp.

Three measurements, each end in its own process as in the other benchmarks:

* **round trip** (``ws latency``): a 1-byte binary message and its echo, both processes
  pinned to CPU 0 (as the FramedTcp latency benchmark); ``warmup`` round trips, then
  ``count`` timed ones; the result is the mean µs per round trip, measured in the client.
* **100-byte messages one way** (``ws throughput``): a client sends ``count`` binary
  messages of 100 bytes to a server that counts them (unpinned: one core each); the
  result is ``count`` / (the sender's first send to the receiver's last receive).
* **bulk** (``ws bulk``): 1 GiB in 64 KiB binary messages one way, client to server, in
  GB/s, against message_io's FramedTcp measured in the same run the same way.

The client is always the sender, so its frames are masked (RFC 6455: client-to-server
frames must be) and the server unmasks them; the server's echoes are unmasked.

Variants:

* message_io WS: ``connect(Transport.WS, "ws://127.0.0.1:PORT/")`` and
  ``listen(Transport.WS, "127.0.0.1:0")`` with default configs; sending and receiving
  exactly as the FramedTcp benchmarks do (:mod:`bench_latency`, :mod:`bench_stream`): the
  echo from the server's callback, the next ping from the client's callback; *loop
  thread*: ``batch`` sends per turn of the loop, the next batch asked for with a signal
  (or by ``Drained`` after ``QUEUE_FULL``); *foreign thread*: ``for_each_async`` and
  ``send`` in a loop on the main thread, ``wait_drained`` after ``QUEUE_FULL``.
* websockets: ``websockets.asyncio.server.serve`` and ``websockets.asyncio.client.connect``
  on asyncio's default event loop, and on uvloop (if installed: ``pip install uvloop``),
  with ``compression=None`` (message_io does not negotiate permessage-deflate, and its
  default would compress every message). Round trip: the client does ``await
  ws.send(ping)`` then ``await ws.recv()``, the server ``async for message in ws: await
  ws.send(message)``. One way: the client ``await ws.send(payload)`` in a loop (it waits
  only when the write buffer is over ``write_limit``), the server ``async for`` counts.
* message_io FramedTcp: the functions of the FramedTcp benchmarks themselves, for
  reference (round trip, 100 bytes) and as the baseline of the WS bulk rows.

websockets is slow enough that its one-way samples send fewer messages
(:func:`websockets_count`); the rate is per message either way and the timed window
never includes the connection set-up.

Every run checks what it measured: the echo server counts the round trips, receivers
count messages and bytes and check every message's size.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import bench_latency
import bench_rust
import bench_stream
from bench_common import HOST, BenchmarkError, Case, Report, Row, run_async, run_one, run_pair

import message_io
from message_io import Disconnected, Message, SendStatus, Transport

__all__ = [
    "HAVE_UVLOOP",
    "SECTIONS",
    "cases",
    "method_text",
    "websockets_count",
]

HAVE_UVLOOP: Final = importlib.util.find_spec("uvloop") is not None
"""Whether the websockets variants also run on uvloop (an optional benchmark dependency)."""

_PAYLOAD: Final = b"x"
_SIZE: Final = 100
_BULK_SIZE: Final = 64 * 1024
_SENT: Final = SendStatus.SENT
_QUEUE_FULL: Final = SendStatus.QUEUE_FULL
_TIMEOUT: Final = 60.0

_RTT: Final = "ws latency"
_RATE: Final = "ws throughput"
_BULK: Final = "ws bulk"
SECTIONS: Final = (_RTT, _RATE, _BULK)
"""The ``benchmark`` column of this module's rows; each has its own method text."""


def _url(port: int) -> str:
    return f"ws://{HOST}:{port}/"


# -- websockets: round trip ------------------------------------------------------------------


def websockets_echo_server(report: Report, loop: str) -> int:
    """Echo every message of one client; return the number of echoes."""
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> int:
        echoes = 0
        done = asyncio.get_running_loop().create_future()

        async def echo(ws: ServerConnection) -> None:
            nonlocal echoes
            try:
                async for message in ws:
                    await ws.send(message)
                    echoes += 1
            finally:
                if not done.done():
                    done.set_result(None)

        async with serve(echo, HOST, 0, compression=None) as server:
            report(server.sockets[0].getsockname()[1])
            await done
        return echoes

    return int(run_async(loop, main()))


def websockets_ping_client(port: int, loop: str, warmup: int, count: int) -> float:
    """Send a 1-byte message and await its echo, ``warmup + count`` times; µs of one."""
    from websockets.asyncio.client import connect

    async def main() -> float:
        async with connect(_url(port), compression=None) as ws:
            send = ws.send
            recv = ws.recv
            t0 = 0.0
            for i in range(warmup + count):
                if i == warmup:
                    t0 = time.perf_counter()
                await send(_PAYLOAD)
                if await recv() != _PAYLOAD:
                    raise BenchmarkError("wrong echo")
            return (time.perf_counter() - t0) / count

    return float(run_async(loop, main()))


# -- websockets: one way ---------------------------------------------------------------------


def websockets_receiver(report: Report, loop: str, count: int, size: int) -> float:
    """Count ``count`` messages of ``size`` bytes from one client; the time of the last."""
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> float:
        received = 0
        messages = 0
        t_end = 0.0
        done = asyncio.get_running_loop().create_future()

        async def count_them(ws: ServerConnection) -> None:
            nonlocal received, messages, t_end
            try:
                async for message in ws:
                    messages += 1
                    received += len(message)
                    if len(message) != size:
                        raise BenchmarkError(f"a message of {len(message)} bytes, expected {size}")
                    if messages == count:
                        t_end = time.perf_counter()
                        break
            finally:
                if not done.done():
                    done.set_result(None)

        async with serve(count_them, HOST, 0, compression=None) as server:
            report(server.sockets[0].getsockname()[1])
            await done
        _check(received, messages, count, size)
        return t_end

    return float(run_async(loop, main()))


def websockets_sender(port: int, loop: str, count: int, size: int) -> float:
    """Send ``count`` messages of ``size`` bytes; the time of the first send."""
    from websockets.asyncio.client import connect

    async def main() -> float:
        payload = b"x" * size
        async with connect(_url(port), compression=None) as ws:
            send = ws.send
            t_start = time.perf_counter()
            for _ in range(count):
                await send(payload)
            await ws.wait_closed()  # the receiver closes once it has everything
        return t_start

    return float(run_async(loop, main()))


# -- message_io WS ---------------------------------------------------------------------------


class _Recorder(logging.Handler):
    """Keeps message_io's log lines (disconnect reasons...) to explain a failed run."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname}: {record.getMessage()}")


def _record_log() -> list[str]:
    """Record message_io's log in this process (failure paths only: no cost until then)."""
    recorder = _Recorder()
    logger = logging.getLogger("message_io")
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    return recorder.lines


def _failed(what: str, lines: list[str]) -> BenchmarkError:
    return BenchmarkError("; ".join([what, *lines[-5:]]))


def _check(received: int, messages: int, count: int, size: int) -> None:
    if messages != count or received != count * size:
        raise BenchmarkError(
            f"received {messages} messages, {received} bytes;"
            f" expected {count} messages of {size} bytes"
        )


def mio_echo_server(report: Report) -> int:
    """As :func:`bench_latency.mio_echo_server`, on ``Transport.WS``."""
    lines = _record_log()
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.WS, f"{HOST}:0")
    report(addr[1])
    send = handler.network.send
    echoes = 0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal echoes
        if event.__class__ is Message:  # as bench_latency's echo server
            send(event.endpoint, event.data)
            echoes += 1
        elif event.__class__ is Disconnected:
            handler.stop()

    listener.for_each(on_event)
    for line in lines:  # why the connection ended, if not by the client's close frame
        if " DEBUG: " not in line:
            print(f"echo server: {line}", file=sys.stderr)
    return echoes


def mio_ping_client(port: int, warmup: int, count: int) -> float:
    """As :func:`bench_latency.mio_ping_client`, on ``Transport.WS``."""
    lines = _record_log()
    handler, listener = message_io.split()
    server, _ = handler.network.connect(Transport.WS, _url(port))
    fail = partial(_failed, lines=lines)
    return bench_latency.ping_rounds(handler, listener, server, warmup, count, fail=fail)


def mio_receiver(report: Report, count: int, size: int) -> float:
    """As :func:`bench_stream.mio_receiver` (the fast callback), on ``Transport.WS``."""
    lines = _record_log()
    handler, listener = message_io.split()
    _, addr = handler.network.listen(Transport.WS, f"{HOST}:0")
    report(addr[1])
    received = 0
    messages = 0
    t_end = 0.0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal received, messages, t_end
        if event.__class__ is Message:
            data = event.data
            messages += 1
            received += len(data)
            if len(data) != size:
                raise BenchmarkError(f"a message of {len(data)} bytes, expected {size}")
            if messages == count:
                t_end = time.perf_counter()
                handler.stop()
        elif event.__class__ is Disconnected:
            handler.stop()  # too early: the check below fails

    listener.for_each(on_event)
    try:
        _check(received, messages, count, size)
    except BenchmarkError as exc:
        raise _failed(str(exc), lines) from None
    return t_end


def mio_loop_sender(port: int, count: int, size: int, batch: int) -> float:
    """As :func:`bench_stream.mio_loop_sender`, on ``Transport.WS``."""
    fail = partial(_failed, lines=_record_log())
    handler, listener = message_io.split()
    server, _ = handler.network.connect(Transport.WS, _url(port))
    return bench_stream.send_from_loop(
        handler, listener, server, count, size, batch=batch, fail=fail
    )


def mio_thread_sender(port: int, count: int, size: int) -> float:
    """As :func:`bench_stream.mio_thread_sender`, on ``Transport.WS``."""
    fail = partial(_failed, lines=_record_log())
    handler, listener = message_io.split()
    server, _ = handler.network.connect_sync(Transport.WS, _url(port))
    return bench_stream.send_from_thread(handler, listener, server, count, size, fail=fail)


# -- measuring -------------------------------------------------------------------------------


def _round_trip(
    server_side: Callable[..., int],
    client_side: Callable[..., float],
    args: tuple[Any, ...],
    warmup: int,
    count: int,
) -> float:
    """µs per round trip, both sides pinned to CPU 0."""
    answers, seconds = run_pair(
        server_side,
        client_side,
        server_args=args,
        client_args=(*args, warmup, count),
        pin_cpu0=True,
        timeout=_TIMEOUT,
    )
    if answers != warmup + count:
        raise BenchmarkError(f"the server answered {answers} of {warmup + count}")
    return float(seconds) * 1e6


def _one_way(
    receiver: Callable[..., float],
    sender: Callable[..., float],
    receiver_args: tuple[Any, ...],
    sender_args: tuple[Any, ...],
) -> float:
    """Seconds from the sender's first send to the receiver's last receive."""
    t_end, t_start = run_pair(
        receiver,
        sender,
        server_args=receiver_args,
        client_args=sender_args,
        timeout=_TIMEOUT,
    )
    return float(t_end - t_start)


def _mio_one_way(count: int, size: int, *, thread: bool, batch: int) -> float:
    if thread:
        return _one_way(mio_receiver, mio_thread_sender, (count, size), (count, size))
    return _one_way(mio_receiver, mio_loop_sender, (count, size), (count, size, batch))


def _websockets_one_way(loop: str, count: int, size: int) -> float:
    return _one_way(
        websockets_receiver, websockets_sender, (loop, count, size), (loop, count, size)
    )


def _framed_one_way(count: int, size: int, *, thread: bool, batch: int) -> float:
    return bench_stream.measure_mio(
        Transport.FRAMED_TCP, count, size, thread=thread, batch=batch, timeout=_TIMEOUT
    )


def _rate(count: int, measure: Callable[[], float]) -> Callable[[], float]:
    return lambda: count / measure()


def _gbps(total: int, measure: Callable[[], float]) -> Callable[[], float]:
    return lambda: total / measure() / 1e9


def websockets_count(quick: bool) -> int:
    """Messages per one-way websockets sample (message_io: ``throughput_count``)."""
    return bench_stream.throughput_count(quick) // 4


def _loops() -> tuple[str, ...]:
    return ("asyncio", "uvloop") if HAVE_UVLOOP else ("asyncio",)


# -- the cases -------------------------------------------------------------------------------

_RTT_UNIT: Final = "µs/round trip"
_RTT_TARGET: Final = 1.15  # x FramedTcp's round trip
_RATE_TARGET: Final = 1_000_000.0
_BULK_TARGET: Final = 0.8
_RUST: Final = "Rust message-io Ws, its throughput example"
_RUST_TWO: Final = "message_io WS, two processes, the Rust example's chunks"
_RUST_ONE: Final = "message_io WS, one process, as the Rust example"
_RUST_ONE_LIMIT: Final = f"{_RUST_ONE}, unsent_limit {bench_rust.UNSENT_LIMIT // 1024} KiB"


def _rtt_cases(quick: bool) -> list[Case]:
    warmup, count = bench_latency.counts(quick)
    result = [
        Case(
            Row(_RTT, f"websockets, {loop}", _RTT_UNIT, higher_is_better=False),
            partial(
                _round_trip, websockets_echo_server, websockets_ping_client, (loop,), warmup, count
            ),
        )
        for loop in _loops()
    ]
    result.append(
        Case(
            Row(
                _RTT,
                "message_io WS",
                _RTT_UNIT,
                higher_is_better=False,
                baseline="message_io FramedTcp",
                target=f"<= {_RTT_TARGET}x FramedTcp",
                target_met=lambda _median, ratio: ratio is not None and ratio <= _RTT_TARGET,
            ),
            partial(_round_trip, mio_echo_server, mio_ping_client, (), warmup, count),
        )
    )
    result.append(
        Case(
            Row(_RTT, "message_io FramedTcp", _RTT_UNIT, higher_is_better=False),
            partial(
                _round_trip,
                bench_latency.mio_echo_server,
                bench_latency.mio_ping_client,
                (Transport.FRAMED_TCP, True),
                warmup,
                count,
            ),
        )
    )
    return result


def _rate_cases(quick: bool) -> list[Case]:
    count = bench_stream.throughput_count(quick)
    ws_count = websockets_count(quick)
    unit = "msgs/s"
    result = [
        Case(
            Row(_RATE, f"websockets, {loop}", unit, higher_is_better=True),
            _rate(ws_count, partial(_websockets_one_way, loop, ws_count, _SIZE)),
        )
        for loop in _loops()
    ]
    for thread in (False, True):
        how = "foreign thread" if thread else "loop thread"
        result.append(
            Case(
                Row(
                    _RATE,
                    f"message_io WS, {how}",
                    unit,
                    higher_is_better=True,
                    baseline=f"websockets, {_loops()[-1]}",
                    target=f">= {_RATE_TARGET / 1e6:.0f}M msgs/s",
                    target_met=lambda median, _ratio: median >= _RATE_TARGET,
                ),
                _rate(count, partial(_mio_one_way, count, _SIZE, thread=thread, batch=1024)),
            )
        )
    result.append(
        Case(
            Row(_RATE, "message_io FramedTcp, loop thread", unit, higher_is_better=True),
            _rate(count, partial(_framed_one_way, count, _SIZE, thread=False, batch=1024)),
        )
    )
    return result


def _bulk_cases(quick: bool) -> list[Case]:
    total = bench_stream.bulk_bytes(quick)
    count = total // _BULK_SIZE
    unit = "GB/s"
    result: list[Case] = []
    for thread in (False, True):
        how = "foreign thread" if thread else "loop thread"
        base = f"message_io FramedTcp, {how}"
        result.append(
            Case(
                Row(_BULK, base, unit, higher_is_better=True),
                _gbps(total, partial(_framed_one_way, count, _BULK_SIZE, thread=thread, batch=64)),
            )
        )
        result.append(
            Case(
                Row(
                    _BULK,
                    f"message_io WS, {how}",
                    unit,
                    higher_is_better=True,
                    baseline=base,
                    target=f">= {_BULK_TARGET}x FramedTcp",
                    target_met=lambda _median, ratio: ratio is not None and ratio >= _BULK_TARGET,
                ),
                _gbps(total, partial(_mio_one_way, count, _BULK_SIZE, thread=thread, batch=64)),
            )
        )
    rust = bench_rust.example()
    if rust is not None:  # the Rust crate's own example, given by path (see bench_rust)
        result.extend(_rust_cases(rust))
    return result


def _rust_cases(path: str) -> list[Case]:
    """The Rust example's Ws figure, and message_io WS sending its chunks (2^30 bytes in
    65,507-byte messages) two ways: as the bulk rows above (two processes, foreign-thread
    sender), and in one process as the example does."""
    count = -(-bench_rust.TOTAL // bench_rust.CHUNK)
    unit = "GB/s"

    def row(name: str) -> Row:
        return Row(
            _BULK,
            name,
            unit,
            higher_is_better=True,
            baseline=_RUST,
            target=">= 1x the Rust crate",
            target_met=lambda _median, ratio: ratio is not None and ratio >= 1.0,
        )

    two = partial(_mio_one_way, count, bench_rust.CHUNK, thread=True, batch=64)
    return [
        Case(Row(_BULK, _RUST, unit, higher_is_better=True), partial(bench_rust.rust_ws, path)),
        Case(row(_RUST_TWO), _gbps(count * bench_rust.CHUNK, two)),
        Case(row(_RUST_ONE), partial(run_one, bench_rust.mio_one_process_ws, timeout=_TIMEOUT)),
        Case(
            row(_RUST_ONE_LIMIT),
            partial(
                run_one,
                bench_rust.mio_one_process_ws,
                bench_rust.UNSENT_LIMIT,
                timeout=_TIMEOUT,
            ),
        ),
    ]


def cases(quick: bool) -> list[Case]:
    """Every WS variant: round trip (µs), 100-byte messages (msgs/s), bulk (GB/s)."""
    return [*_rtt_cases(quick), *_rate_cases(quick), *_bulk_cases(quick)]


# -- the report ------------------------------------------------------------------------------

_METHODS: Final = {
    _RTT: """\
**WebSocket: 1-byte round trip.** As the latency benchmark: client and echo server are
two processes pinned to CPU 0; the client sends a 1-byte binary message and waits for
its echo, {warmup} times to warm up and then {count} times timed; a sample is the mean
time of one round trip, measured in the client. *message_io WS*: `connect(Transport.WS,
"ws://127.0.0.1:PORT/")` and `listen(Transport.WS, ...)` with default configs, the
client sending each ping from its callback on the previous `Message`, the server
echoing from its callback. *websockets*: version {websockets} (its `asyncio`
implementation: `websockets.asyncio.server.serve`, `websockets.asyncio.client.connect`),
with `compression=None` as message_io (no permessage-deflate), on asyncio's default
event loop and on uvloop {uvloop}; the client does `await ws.send(ping)` then `await
ws.recv()`, the server `async for message in ws: await ws.send(message)`. *message_io
FramedTcp*: the latency benchmark's own variant, for reference. Client frames are
masked (RFC 6455), server frames are not.""",
    _RATE: """\
**WebSocket: 100-byte messages one way.** As the throughput benchmark: a client process
sends binary messages of 100 bytes (masked, as client frames must be) to a server
process that counts them and checks their size (unpinned: one core each); a sample is
the number of messages divided by the time from the sender's first send to the
receiver's last receive. message_io WS sends {count} messages: *loop thread* 1024 per
turn of the loop (the next batch asked for with a signal, or by `Drained` after
`QUEUE_FULL`), *foreign thread* from the main thread while the node runs
`for_each_async` (`wait_drained` after `QUEUE_FULL`); the receiver's callback tests
`event.__class__ is Message`. websockets (as in the round trip, `compression=None`)
sends {ws_count} messages, `await ws.send(payload)` in a loop (it waits only when its
write buffer passes `write_limit`), and the server counts them with `async for message
in ws`. *message_io FramedTcp, loop thread*: the throughput benchmark's own variant,
for reference.""",
    _BULK: """\
**WebSocket: bulk throughput.** As the bulk benchmark: {size} in 64 KiB binary messages,
one way, client to server (so every frame is masked by the sender and unmasked by the
receiver), between two unpinned processes; a sample is bytes / time from first send to
last receive, in GB/s. message_io senders as for 100-byte messages (loop thread: 64
messages per turn; foreign thread); default configs (4 MiB `send_buffer_limit`, 16 MiB
`max_message_size`). The baseline of each WS row is message_io FramedTcp with the same
sender, the bulk benchmark's own variant, measured in the same run. The client masks
each 64 KiB message into a buffer of its connection's, reused once the frame is written
out, so the WS sender, on either thread, allocates no new object per message, no more
than the FramedTcp baseline, which sends one payload object over and over.{rust}""",
}


_RUST_METHOD: Final = """

*Rust message-io Ws, its throughput example*: the Rust crate's own
`examples/throughput` (built from its sources with `cargo build --release`), which
sends 1 GiB (2^30 bytes) in 65,507-byte chunks from its main thread to one node
connected to itself over Ws, and prints GB/s from the first send to the callback that
sees the last byte; a sample is one run of it, its `message-io Ws` line. Its sender
and its receiver are two threads of one process, which Rust runs on both cores at
once. *message_io WS, two processes, the Rust example's chunks*: the foreign-thread
bulk row above, sending 65,507-byte messages until 2^30 bytes have left: sender and
receiver on both cores, as in the Rust example. *message_io WS, one process, as the
Rust example*: the example itself in Python, in a process of its own: one node
connected to itself over `Transport.WS`, the main thread sending 65,507-byte messages
while the node runs `for_each_async` (`wait_drained` after `QUEUE_FULL`), timed from
the first send to the callback that has counted 2^30 bytes. Its two threads share one
interpreter, whose lock lets one of them run Python code at a time. *unsent_limit 64
KiB*: the same, both ends' configs with `unsent_limit=65536` (`TCP_NOTSENT_LOWAT`): the
kernel then keeps at most 64 KiB unsent, and the sending thread pushes its bytes onto
loopback as it writes, where with the default the node's thread does it while it reads
(see `docs/transports.md`)."""

_NO_RUST_METHOD: Final = """ The Rust crate's own throughput example was not given
(`MESSAGE_IO_RUST_THROUGHPUT`, see `benchmarks/bench_rust.py`): its row is not in this
run."""


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "(not installed)"


def method_text(name: str, quick: bool) -> str:
    """The "how it is measured" paragraph of section ``name`` (one of :data:`SECTIONS`)."""
    warmup, count = bench_latency.counts(quick)
    if name != _RTT:
        count = bench_stream.throughput_count(quick)
    total = bench_stream.bulk_bytes(quick)
    size = f"{total // 2**30} GiB" if total % 2**30 == 0 else f"{total // 2**20} MiB"
    return _METHODS[name].format(
        warmup=f"{warmup:,}",
        count=f"{count:,}",
        ws_count=f"{websockets_count(quick):,}",
        size=size,
        websockets=_version("websockets"),
        uvloop=_version("uvloop") if HAVE_UVLOOP else "(not installed: skipped)",
        rust=_RUST_METHOD if bench_rust.example() is not None else _NO_RUST_METHOD,
    )
