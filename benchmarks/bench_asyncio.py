"""1-byte round trip with ``message_io.asyncio`` (and ``message_io.trio``) against
``for_each`` and the event loops' own forms.

As the latency benchmark: client and echo server are two processes pinned to CPU 0, a
1-byte FramedTcp message and its echo, timed in the client.

* *message_io for_each*: both ends run the synchronous node (the latency benchmark's),
  their callbacks dispatching with class tests; *match callback*: the same with
  ``match event: case Message(...)``.
* *message_io.asyncio*: both ends are asyncio programs with a node on the running loop;
  the server echoes with ``await send`` inside ``async for``, the client sends the next
  ping the same way on each echo.
* *asyncio Protocol*: both ends are ``asyncio.Protocol`` subclasses speaking the same
  wire format (a 1-byte varint length prefix), the server echoing in ``data_received``:
  the fastest asyncio code can be, with no task switch per message.
* *asyncio streams*: the same echo written with ``asyncio.start_server`` and
  ``open_connection`` (``readexactly``, ``write``, ``drain``): asyncio's own coroutine
  form, one task switch per message as ``async for`` has.
* The same asyncio programs on uvloop, where installed.
* *message_io.trio*: the message_io programs in a trio run, against *trio streams*
  (``serve_tcp``, ``open_tcp_stream``), where trio is installed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, cast

import bench_latency
from bench_common import HOST, BenchmarkError, Case, Report, Row

import message_io.asyncio as mio
from message_io import Connected, Disconnected, Message, SendStatus, Transport
from message_io.awaitables import AsyncNodeHandler, AsyncNodeListener

__all__ = ["NAME", "cases", "method_text"]

NAME: Final = "asyncio"
HAVE_UVLOOP: Final = importlib.util.find_spec("uvloop") is not None
HAVE_TRIO: Final = importlib.util.find_spec("trio") is not None
_UNIT: Final = "µs/round trip"
_PAYLOAD: Final = b"x"
_FRAME: Final = b"\x01x"  # the 1-byte payload with its varint length prefix
_SENT: Final = SendStatus.SENT


def _run(loop: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` on a new event loop of kind ``loop`` (``trio``: a trio run)."""
    if loop == "trio":
        import trio  # optional: only the processes that use it import it

        return trio.run(main)
    event_loop: asyncio.AbstractEventLoop
    if loop == "uvloop":
        import uvloop  # optional: only the processes that use it import it

        event_loop = uvloop.new_event_loop()
    else:
        event_loop = asyncio.new_event_loop()
    try:
        return event_loop.run_until_complete(main())
    finally:
        event_loop.close()


@asynccontextmanager
async def _node(loop: str) -> AsyncIterator[tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]]:
    """A node on the running loop (``message_io.trio``'s on trio), stopped and closed at
    the end of the block."""
    if loop == "trio":
        import message_io.trio as mio_trio

        async with mio_trio.open_node() as (handler, listener):
            yield handler, listener
        return
    handler, listener = mio.split()
    async with handler:
        yield handler, listener


# -- message_io.asyncio ----------------------------------------------------------------------


def mio_async_server(report: Report, loop: str) -> int:
    async def main() -> int:
        async with _node(loop) as (handler, listener):
            _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{HOST}:0")
            report(addr[1])
            echoes = 0
            send = handler.network.send
            async for event in listener:
                if event.__class__ is Message:
                    await send(event.endpoint, event.data)
                    echoes += 1
                elif event.__class__ is Disconnected:
                    handler.stop()
            return echoes

    return int(_run(loop, main))


def mio_async_client(port: int, loop: str, warmup: int, count: int) -> float:
    async def main() -> float:
        async with _node(loop) as (handler, listener):
            server, _ = await handler.network.connect(Transport.FRAMED_TCP, f"{HOST}:{port}")
            send = handler.network.send
            rounds = bench_latency.Rounds(warmup, count)
            await send(server, _PAYLOAD)
            async for event in listener:
                if event.__class__ is Message:
                    if rounds.echo():
                        break
                    await send(server, _PAYLOAD)
                elif event.__class__ is Connected:
                    continue
                else:
                    raise BenchmarkError(f"unexpected {event!r}")
            return rounds.seconds()

    return float(_run(loop, main))


def mio_callback_server(report: Report, loop: str) -> int:
    async def main() -> int:
        async with _node(loop) as (handler, listener):
            _, addr = handler.network.listen(Transport.FRAMED_TCP, f"{HOST}:0")
            report(addr[1])
            echoes = 0
            send = handler.network.send_nowait

            def on_event(event: Any) -> None:
                nonlocal echoes
                if event.__class__ is Message:
                    if send(event.endpoint, event.data) is not _SENT:
                        raise BenchmarkError("echo refused")
                    echoes += 1
                elif event.__class__ is Disconnected:
                    handler.stop()

            await listener.for_each(on_event, on_error="stop")
            return echoes

    return int(_run(loop, main))


def mio_callback_client(port: int, loop: str, warmup: int, count: int) -> float:
    async def main() -> float:
        async with _node(loop) as (handler, listener):
            server, _ = await handler.network.connect(Transport.FRAMED_TCP, f"{HOST}:{port}")
            send = handler.network.send_nowait
            rounds = bench_latency.Rounds(warmup, count)

            def on_event(event: Any) -> None:
                if event.__class__ is Message:
                    if rounds.echo():
                        handler.stop()
                        return
                    send(server, _PAYLOAD)
                elif event.__class__ is not Connected:
                    raise BenchmarkError(f"unexpected {event!r}")

            send(server, _PAYLOAD)
            await listener.for_each(on_event, on_error="stop")
            return rounds.seconds()

    return float(_run(loop, main))


# -- trio streams ----------------------------------------------------------------------------


def trio_streams_server(report: Report, loop: str) -> int:
    import trio

    async def main() -> int:
        echoes = 0

        async def echo(stream: trio.SocketStream) -> None:
            nonlocal echoes
            buffer = bytearray()
            async for data in stream:
                buffer += data
                while len(buffer) >= 2 and len(buffer) >= 1 + buffer[0]:
                    size = buffer[0]
                    await stream.send_all(bytes(buffer[: 1 + size]))
                    del buffer[: 1 + size]
                    echoes += 1
            nursery.cancel_scope.cancel()  # one client: its end is the server's

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host=HOST))
            report(listeners[0].socket.getsockname()[1])
        return echoes

    return int(_run(loop, main))


def trio_streams_client(port: int, loop: str, warmup: int, count: int) -> float:
    import trio

    async def main() -> float:
        rounds = bench_latency.Rounds(warmup, count)
        async with await trio.open_tcp_stream(HOST, port) as stream:
            while True:
                await stream.send_all(_FRAME)
                got = 0
                while got < len(_FRAME):
                    got += len(await stream.receive_some(len(_FRAME) - got))
                if rounds.echo():
                    break
        return rounds.seconds()

    return float(_run(loop, main))


# -- asyncio Protocol ------------------------------------------------------------------------


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[int]) -> None:
        self.done = done
        self.buffer = bytearray()
        self.echoes = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2 and len(buffer) >= 1 + buffer[0]:
            size = buffer[0]
            frame = bytes(buffer[: 1 + size])
            del buffer[: 1 + size]
            assert self.transport is not None
            self.transport.write(frame)
            self.echoes += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.echoes)


def protocol_server(report: Report, loop: str) -> int:
    async def main() -> int:
        event_loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = event_loop.create_future()
        server = await event_loop.create_server(lambda: _EchoProtocol(done), HOST, 0)
        report(server.sockets[0].getsockname()[1])
        echoes = await done
        server.close()
        return echoes

    return int(_run(loop, main))


class _PingProtocol(asyncio.Protocol):
    def __init__(self, warmup: int, count: int, done: asyncio.Future[float]) -> None:
        self.rounds = bench_latency.Rounds(warmup, count)
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(_FRAME)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            del buffer[:2]
            if self.rounds.echo():
                self.done.set_result(self.rounds.seconds())
                assert self.transport is not None
                self.transport.close()
                return
            assert self.transport is not None
            self.transport.write(_FRAME)


def protocol_client(port: int, loop: str, warmup: int, count: int) -> float:
    async def main() -> float:
        event_loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = event_loop.create_future()
        _transport, _protocol = await event_loop.create_connection(
            lambda: _PingProtocol(warmup, count, done), HOST, port
        )
        return await done

    return float(_run(loop, main))


# -- asyncio streams -------------------------------------------------------------------------


def streams_server(report: Report, loop: str) -> int:
    async def main() -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            echoes = 0
            try:
                while True:
                    head = await reader.readexactly(1)
                    writer.write(head + await reader.readexactly(head[0]))
                    await writer.drain()
                    echoes += 1
            except asyncio.IncompleteReadError:
                writer.close()
            done.set_result(echoes)

        server = await asyncio.start_server(echo, HOST, 0)
        report(server.sockets[0].getsockname()[1])
        echoes = await done
        server.close()
        return echoes

    return int(_run(loop, main))


def streams_client(port: int, loop: str, warmup: int, count: int) -> float:
    async def main() -> float:
        reader, writer = await asyncio.open_connection(HOST, port)
        rounds = bench_latency.Rounds(warmup, count)
        while True:
            writer.write(_FRAME)
            await writer.drain()
            await reader.readexactly(len(_FRAME))
            if rounds.echo():
                break
        writer.close()
        await writer.wait_closed()
        return rounds.seconds()

    return float(_run(loop, main))


# -- the cases -------------------------------------------------------------------------------


def _measure(*args: Any, also: list[Row] | None = None, **options: Any) -> float:
    """The latency benchmark's measure; the sample also goes to the rows ``also``."""
    sample = bench_latency.measure(*args, **options)
    for row in also or ():
        row.samples.append(sample)
    return sample


def _within(limit: float, *, strict: bool = False) -> Callable[[float, float | None], bool]:
    if strict:
        return lambda _median, ratio: ratio is not None and ratio < limit
    return lambda _median, ratio: ratio is not None and ratio <= limit


def cases(quick: bool) -> list[Case]:
    """for_each, message_io.asyncio and asyncio Protocol round trips (µs)."""
    warmup, count = bench_latency.counts(quick)
    measure = partial(_measure, warmup=warmup, count=count)
    for_each = "message_io for_each, FramedTcp"
    # The same samples as the for_each row, as a ratio to the fastest event loop's
    # Protocol (uvloop's, or asyncio's without it).
    fastest = "uvloop" if HAVE_UVLOOP else "asyncio"
    versus_loop = Row(
        NAME,
        f"message_io for_each, vs {fastest} Protocol",
        _UNIT,
        higher_is_better=False,
        baseline=f"{fastest} Protocol, length-prefixed",
        target=f"<= 1x {fastest}",
        target_met=_within(1.0),
    )
    # The same round trips with callbacks that dispatch with `match` (the documented
    # style) instead of class tests: what CPython's pattern matching adds.
    with_match = Row(
        NAME,
        f"message_io for_each, match callback, vs {fastest} Protocol",
        _UNIT,
        higher_is_better=False,
        baseline=f"{fastest} Protocol, length-prefixed",
    )
    result = [
        Case(
            Row(NAME, for_each, _UNIT, higher_is_better=False),
            partial(
                measure,
                bench_latency.mio_echo_server,
                bench_latency.mio_ping_client,
                (Transport.FRAMED_TCP, True),
                also=[versus_loop],
            ),
            extra_rows=(versus_loop,),
        ),
        Case(
            with_match,
            partial(
                measure,
                bench_latency.mio_match_echo_server,
                bench_latency.mio_match_ping_client,
                (Transport.FRAMED_TCP, True),
            ),
        ),
    ]
    for loop in ("asyncio", "uvloop") if HAVE_UVLOOP else ("asyncio",):
        protocol = f"{loop} Protocol, length-prefixed"
        result.append(
            Case(
                Row(NAME, protocol, _UNIT, higher_is_better=False),
                partial(measure, protocol_server, protocol_client, (loop,)),
            )
        )
        streams = f"{loop} streams, length-prefixed"
        result.append(
            Case(
                Row(NAME, streams, _UNIT, higher_is_better=False),
                partial(measure, streams_server, streams_client, (loop,)),
            )
        )
        versus_streams = Row(
            NAME,
            f"message_io.asyncio on {loop}, vs its streams",
            _UNIT,
            higher_is_better=False,
            baseline=streams,
        )
        versus_protocol = Row(
            NAME,
            f"message_io.asyncio on {loop}, vs its Protocol",
            _UNIT,
            higher_is_better=False,
            baseline=protocol,
            target="< 1x" if loop == "asyncio" else "",
            target_met=_within(1.0, strict=True) if loop == "asyncio" else None,
        )
        result.append(
            Case(
                Row(
                    NAME,
                    f"message_io.asyncio for_each on {loop}, FramedTcp",
                    _UNIT,
                    higher_is_better=False,
                    baseline=protocol,
                    target="< 1x its Protocol" if loop == "asyncio" else "",
                    target_met=_within(1.0, strict=True) if loop == "asyncio" else None,
                ),
                partial(measure, mio_callback_server, mio_callback_client, (loop,)),
            )
        )
        result.append(
            Case(
                Row(
                    NAME,
                    f"message_io.asyncio on {loop}, FramedTcp",
                    _UNIT,
                    higher_is_better=False,
                    baseline=for_each,
                    target="<= 1.15x for_each" if loop == "asyncio" else "",
                    target_met=_within(1.15) if loop == "asyncio" else None,
                ),
                partial(
                    measure,
                    mio_async_server,
                    mio_async_client,
                    (loop,),
                    also=[versus_protocol, versus_streams],
                ),
                extra_rows=(versus_protocol, versus_streams),
            )
        )
    if HAVE_TRIO:
        streams = "trio streams, length-prefixed"
        result.append(
            Case(
                Row(NAME, streams, _UNIT, higher_is_better=False),
                partial(measure, trio_streams_server, trio_streams_client, ("trio",)),
            )
        )
        result.append(
            Case(
                Row(
                    NAME,
                    "message_io.trio for_each on trio, FramedTcp",
                    _UNIT,
                    higher_is_better=False,
                    baseline=for_each,
                ),
                partial(measure, mio_callback_server, mio_callback_client, ("trio",)),
            )
        )
        result.append(
            Case(
                Row(
                    NAME,
                    "message_io.trio on trio, FramedTcp",
                    _UNIT,
                    higher_is_better=False,
                    baseline=streams,
                ),
                partial(measure, mio_async_server, mio_async_client, ("trio",)),
            )
        )
    return result


_METHOD: Final = """\
**asyncio: 1-byte round trip.** As the latency benchmark: client and echo server are two
processes pinned to CPU 0, a 1-byte FramedTcp message and its echo, {warmup} times to warm
up and then {count} times timed; a sample is the mean round trip, measured in the client.
*message_io for_each*: the latency benchmark's synchronous node at both ends, its
callbacks dispatching with `event.__class__ is Message`; *match callback*: the same with
the documented `match event: case Message(endpoint, data):` (on the client
`case Message(_, data):`), whose positional class pattern costs CPython 3.11 about
0.2 µs more per event.
*message_io.asyncio*: both ends are asyncio programs with a node on the running loop
(`message_io.asyncio.split()`), the server echoing with `await handler.network.send`
inside `async for event in listener`, the client sending each ping the same way on the
previous echo. *message_io.asyncio for_each*: the same programs with
`await listener.for_each(callback)`, the callback echoing (or pinging) with
`send_nowait`, called by the event loop with no task switch per event. *Protocol*: both
ends are `asyncio.Protocol` subclasses speaking the same bytes (a 1-byte varint length
prefix), the server echoing from `data_received` and the client pinging from it:
asyncio's fastest form, with no task switch per message. *streams*: asyncio's own
coroutine form, the counterpart of `async for`: the server awaits `readexactly` for the
prefix and the payload, then writes the echo and awaits `drain`; the client writes, awaits
`drain` and `readexactly`. The *vs its Protocol* and *vs its streams* rows repeat the
message_io.asyncio samples against those baselines on the same loop. uvloop: {uvloop}.
*message_io.trio*: the same message_io programs in a trio run
(`message_io.trio.open_node()`), for `async for` and `for_each`; *trio streams*: trio's
own form, `trio.serve_tcp` and `open_tcp_stream`, the server cutting the frames out of
`receive_some` and echoing each with `send_all`, the client sending with `send_all` and
reading the echo with `receive_some`. trio: {trio}."""


def method_text(quick: bool) -> str:
    warmup, count = bench_latency.counts(quick)
    version = "not installed: skipped"
    if HAVE_UVLOOP:
        version = importlib.metadata.version("uvloop")
    trio = importlib.metadata.version("trio") if HAVE_TRIO else "not installed: skipped"
    return _METHOD.format(warmup=f"{warmup:,}", count=f"{count:,}", uvloop=version, trio=trio)
