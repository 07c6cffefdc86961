"""``message_io.asyncio``: a node driven by the running event loop, on asyncio and uvloop.

Backpressure, plus what is asyncio's own: no thread, cancellation, ``async with``,
TaskGroup and timeouts, sends from a thread pool, and a program where an
``asyncio.start_server`` service and a message_io listener share one loop. The core
cases (echo with 1 and 100 clients, order, the largest message, disconnects, remove, a
failed connect) run on asyncio, uvloop and trio alike in ``test_awaitable_core.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import select
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeAlias

import pytest

import message_io
import message_io.asyncio as mio
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    FramedTcpListenConfig,
    Message,
    NodeStoppedError,
    SendStatus,
    Signal,
    Transport,
)

from .awaiting import TIMEOUT, echo_forever, hung_resolver, next_of, recv_exactly, recv_until

LOCAL = "127.0.0.1:0"

Run: TypeAlias = Callable[[Callable[[], Awaitable[None]]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Run]:
    """Run a coroutine function to completion on a new loop of the given kind, with a
    bound on the whole test."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop

    def runner(main: Callable[[], Awaitable[None]]) -> None:
        loop = factory()
        try:
            loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT * 2))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    yield runner


def test_the_issue_example_runs(run: Run) -> None:
    """The program the API was designed for, as written for users."""

    async def main() -> None:
        handler, listener = mio.split()
        _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
        server, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
        await handler.network.send(server, b"hello")
        echoes = 0
        async for event in listener:
            match event:
                case Message(endpoint, data):
                    if endpoint == server:
                        echoes += 1
                        handler.stop()
                    else:
                        await handler.network.send(endpoint, data)
                case Disconnected(_):
                    break
        assert echoes == 1
        await handler.wait_closed()

    run(main)


def test_send_waits_out_backpressure_and_a_slow_peer_blocks_no_one_else(run: Run) -> None:
    limit = 64 * 1024
    chunk = b"y" * 16 * 1024

    async def main() -> None:
        handler, listener = mio.split()
        async with handler:
            _id, addr = handler.network.listen(
                Transport.FRAMED_TCP, LOCAL, config=FramedTcpListenConfig(send_buffer_limit=limit)
            )
            assert isinstance(addr, tuple)
            slow = socket.create_connection(addr)  # reads nothing for now
            fast = socket.create_connection(addr)
            try:
                peers = {}
                for _ in range(2):
                    endpoint = (await next_of(listener, Accepted)).endpoint
                    peers[endpoint.addr] = endpoint
                slow_ep, fast_ep = peers[slow.getsockname()], peers[fast.getsockname()]
                count = 2000  # 32 MB: far more than the kernel and the queue hold

                async def flood() -> None:
                    for _ in range(count):
                        status = await handler.network.send(slow_ep, chunk)
                        assert status is SendStatus.SENT

                flooding = asyncio.ensure_future(flood())
                while handler.network.pending_bytes(slow_ep) < limit:
                    await asyncio.sleep(0)  # let the flood run until it has to wait
                assert not flooding.done()
                # The slow peer holds up only its own sends.
                assert await handler.network.send(fast_ep, b"quick") is SendStatus.SENT
                fast.settimeout(TIMEOUT)
                assert fast.recv(100)[-5:] == b"quick"
                # The slow peer reads: every byte arrives, nothing was dropped.
                expected = count * (3 + len(chunk))  # a 3-byte varint prefix each
                loop = asyncio.get_running_loop()
                slow.settimeout(TIMEOUT)
                got = await loop.run_in_executor(None, recv_exactly, slow, expected)
                assert got == expected
                await asyncio.wait_for(flooding, TIMEOUT)
                assert await next_of(listener, Drained) == Drained(slow_ep)
                # Waiting is the way of this send: no refusal was logged or counted.
                stats = handler.network.statistics(slow_ep)
                assert stats is not None and stats.refused_sends == 0
            finally:
                slow.close()
                fast.close()

    run(main)


def test_cancelled_sends_and_reads_lose_and_leave_nothing(run: Run) -> None:
    async def main() -> None:
        handler, listener = mio.split(str)
        async with handler:
            _id, addr = handler.network.listen(
                Transport.FRAMED_TCP, LOCAL, config=FramedTcpListenConfig(send_buffer_limit=1024)
            )
            assert isinstance(addr, tuple)
            peer = socket.socket()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
            peer.connect(addr)
            try:
                endpoint = (await next_of(listener, Accepted)).endpoint
                # Fill the node's queue and the kernel's buffers (the peer reads nothing):
                # flood until a refusal is not followed by Drained for half a second and
                # the queue is still full (the kernel may have taken part of it).
                while True:
                    while (
                        status := handler.network.send_nowait(endpoint, b"z" * 1024)
                    ) is not _FULL:
                        assert status is SendStatus.SENT
                    if await maybe_next(listener, Drained, 0.5) is None:
                        stats = handler.network.statistics(endpoint)
                        assert stats is not None  # still connected
                        if stats.queued_bytes >= 1024:
                            break
                blocked = asyncio.ensure_future(handler.network.send(endpoint, b"late"))
                for _ in range(3):
                    await asyncio.sleep(0)
                assert not blocked.done()
                blocked.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await blocked

                # Everything queued reaches the peer; the cancelled message never does.
                loop = asyncio.get_running_loop()
                reading = loop.run_in_executor(None, recv_until, peer, b"END")
                assert await handler.network.send(endpoint, b"END") is SendStatus.SENT
                received = await reading
                assert received.endswith(b"END") and b"late" not in received

                # A task waiting for events is cancelled: the next event is not lost.
                while await listener.receive(0) is not None:
                    pass  # (Drained events of the flood)
                reader = asyncio.ensure_future(listener.receive())
                await asyncio.sleep(0)
                reader.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await reader
                handler.signals.send("after")
                event = await next_of(listener, Signal)
                assert event.value == "after"
            finally:
                peer.close()

    run(main)


_FULL = SendStatus.QUEUE_FULL


async def maybe_next(listener: mio.AsyncNodeListener[Any], kind: type[Any], timeout: float) -> Any:
    """The next event of ``kind`` within ``timeout`` seconds, or None."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (remaining := deadline - loop.time()) > 0:
        event = await listener.receive(remaining)
        if event is None or isinstance(event, kind):
            return event
    return None


def test_cancelled_connect_removes_the_connection(run: Run) -> None:
    async def main() -> None:
        with hung_resolver() as hung:
            handler, _listener = mio.split(resolver=hung)
            async with handler:
                connecting = asyncio.ensure_future(
                    handler.network.connect(Transport.FRAMED_TCP, "slow.test:1")
                )
                await asyncio.sleep(0)
                connecting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await connecting
                # Nothing is left of it: no resource id is ready.
                for resource_id in range(4):
                    rid = message_io.ResourceId.new(
                        Transport.FRAMED_TCP.id, message_io.ResourceType.REMOTE, resource_id
                    )
                    assert handler.network.is_ready(rid) is None

    run(main)


def test_stop_ends_the_iteration_and_connects_waiting(run: Run) -> None:
    async def main() -> None:
        with hung_resolver() as hung:
            handler, listener = mio.split(str, resolver=hung)
            connecting = asyncio.ensure_future(
                handler.network.connect(Transport.FRAMED_TCP, "slow.test:1")
            )
            handler.signals.send("before stop")
            events = []
            async for event in listener:
                events.append(event)
                handler.stop()
            assert events == [Signal("before stop")]
            with pytest.raises(NodeStoppedError):
                await connecting
            assert not handler.is_running()
            with pytest.raises(NodeStoppedError):
                handler.signals.send("late")

    run(main)


def test_no_thread_is_started(run: Run) -> None:
    async def main() -> None:
        before = set(threading.enumerate())  # (threads of earlier tests may end meanwhile)
        server, server_events = mio.split()
        client, _client_events = mio.split()
        async with server, client:
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            await client.network.send(endpoint, b"x")
            assert (await next_of(server_events, Message)).data == b"x"
            assert set(threading.enumerate()) - before == set()

    run(main)


def test_sends_from_a_thread_pool(run: Run) -> None:
    async def main() -> None:
        server, server_events = mio.split()
        client, _client_events = mio.split()
        async with server, client:
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            loop = asyncio.get_running_loop()
            statuses = await asyncio.gather(
                *(
                    loop.run_in_executor(None, client.network.send_nowait, endpoint, b"%d" % i)
                    for i in range(50)
                )
            )
            assert set(statuses) == {SendStatus.SENT}
            received = {(await next_of(server_events, Message)).data for _ in range(50)}
            assert received == {b"%d" % i for i in range(50)}

    run(main)


def test_listen_pause_and_sends_past_the_socket_buffer_from_other_threads(run: Run) -> None:
    """What other threads register or change (a listener, a pause, write interest once
    the socket is full) reaches the event loop that watches the node's sockets."""
    chunk = b"z" * 64 * 1024
    count = 256  # 16 MiB: more than the kernel buffers hold, so most of it waits for room

    async def main() -> None:
        handler, listener = mio.split()
        async with handler:
            loop = asyncio.get_running_loop()
            config = FramedTcpListenConfig(send_buffer_limit=64 << 20)
            _id, addr = await loop.run_in_executor(
                None,
                functools.partial(handler.network.listen, config=config),
                Transport.FRAMED_TCP,
                LOCAL,
            )
            assert isinstance(addr, tuple)
            with socket.socket() as peer:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
                peer.connect(addr)
                peer.settimeout(TIMEOUT)
                endpoint = (await next_of(listener, Accepted)).endpoint
                assert await loop.run_in_executor(None, handler.network.pause_reading, endpoint)
                peer.sendall(b"\x01a")
                assert await listener.receive(0.05) is None  # paused: not read
                assert await loop.run_in_executor(None, handler.network.resume_reading, endpoint)
                assert (await next_of(listener, Message)).data == b"a"

                def flood() -> tuple[set[SendStatus], int]:
                    statuses = {handler.network.send_nowait(endpoint, chunk) for _ in range(count)}
                    # The peer reads nothing yet: what the kernel did not take is queued.
                    return statuses, handler.network.pending_bytes(endpoint)

                statuses, pending = await loop.run_in_executor(None, flood)
                assert statuses == {SendStatus.SENT}
                assert pending > 0  # it has to wait for room: write interest, from a thread
                expected = count * (3 + len(chunk))
                got = await loop.run_in_executor(None, recv_exactly, peer, expected)
                assert got == expected

    run(main)


def test_send_to_what_is_not_an_endpoint_or_is_gone(run: Run) -> None:
    async def main() -> None:
        handler, _listener = mio.split()
        async with handler:
            with pytest.raises(TypeError, match="Endpoint"):
                await handler.network.send("127.0.0.1:1", b"x")  # type: ignore[arg-type]
            _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
            endpoint, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
            assert handler.network.remove(endpoint)
            status = await handler.network.send(endpoint, b"x")
            assert status is SendStatus.RESOURCE_NOT_FOUND

    run(main)


def test_timers_and_receive_with_a_timeout(run: Run) -> None:
    async def main() -> None:
        handler, listener = mio.split(str)
        async with handler:
            assert await listener.receive(0.01) is None  # nothing happens: a timeout
            handler.signals.send_with_timer("tick", 0.02)
            handler.signals.send_with_priority("first")
            assert await listener.receive(TIMEOUT) == Signal("first")
            assert await listener.receive(TIMEOUT) == Signal("tick")

    run(main)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup and asyncio.timeout are 3.11+")
def test_inside_a_task_group_and_a_timeout(run: Run) -> None:
    async def main() -> None:
        server, server_events = mio.split()
        client, client_events = mio.split()
        async with server, client, asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)
            echo = group.create_task(echo_forever(server, server_events))
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            async with asyncio.timeout(TIMEOUT):  # type: ignore[attr-defined]
                await client.network.send(endpoint, b"ping")
                assert (await next_of(client_events, Message)).data == b"ping"
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):  # type: ignore[attr-defined]
                    async for _event in client_events:
                        pass
            echo.cancel()

    run(main)


def test_an_asyncio_server_and_a_message_io_listener_share_a_loop(run: Run) -> None:
    """A plain asyncio service and a message_io node talk to each other in one loop."""

    async def main() -> None:
        async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(100):
                writer.write(data.upper())
                await writer.drain()
            writer.close()

        service = await asyncio.start_server(upper, "127.0.0.1", 0)
        service_addr = service.sockets[0].getsockname()
        handler, listener = mio.split()
        async with service, handler:
            # message_io (raw TCP) is the client of the asyncio service...
            endpoint, _ = await handler.network.connect(Transport.TCP, service_addr)
            await handler.network.send(endpoint, b"shout")
            assert (await next_of(listener, Message)).data == b"SHOUT"
            # ...and an asyncio client talks to a message_io TCP listener.
            _id, addr = handler.network.listen(Transport.TCP, LOCAL)
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(b"hello node")
            await writer.drain()
            event = await next_of(listener, Message)
            assert event.data == b"hello node"
            await handler.network.send(event.endpoint, b"hello asyncio")
            assert await reader.readexactly(13) == b"hello asyncio"
            writer.close()

    run(main)


def test_the_coroutines_refuse_another_event_loop_and_do_nothing(run: Run) -> None:
    async def main() -> None:
        handler, listener = mio.split()
        async with handler:
            _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
            endpoint, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
            await next_of(listener, Accepted)

            async def misuse() -> None:
                with pytest.raises(RuntimeError, match="event loop that made it"):
                    await handler.network.send(endpoint, b"stray")
                with pytest.raises(RuntimeError, match="event loop that made it"):
                    await handler.network.connect(Transport.FRAMED_TCP, addr)
                with pytest.raises(RuntimeError, match="event loop that made it"):
                    await listener.receive(0)
                with pytest.raises(RuntimeError, match="event loop that made it"):
                    await handler.wait_closed()

            await asyncio.get_running_loop().run_in_executor(None, asyncio.run, misuse())
            assert await handler.network.send(endpoint, b"mine") is SendStatus.SENT
            message = await next_of(listener, Message)
            assert message.data == b"mine"  # the stray send sent nothing

    run(main)


def test_a_node_left_open_when_its_loop_closes_is_closed_at_the_next_call(run: Run) -> None:
    kept: dict[str, Any] = {}

    async def main() -> None:
        handler, _listener = mio.split()
        _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
        assert handler.is_running()
        kept.update(handler=handler, addr=addr)  # the loop closes with the node open

    run(main)
    handler = kept["handler"]
    assert not handler.is_running()  # no turn can run any more: closed, not running
    with pytest.raises(NodeStoppedError):
        handler.signals.send("never delivered")
    with pytest.raises(NodeStoppedError):
        handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(kept["addr"], timeout=TIMEOUT).close()


def test_split_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        mio.split()


def test_for_each_calls_back_on_the_loop_and_stops_with_the_node(run: Run) -> None:
    async def main() -> None:
        server, server_events = mio.split()
        client, client_events = mio.split(str)
        async with server, client:
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)

            def echo(event: Any) -> None:
                if isinstance(event, Message):
                    assert server.network.send_nowait(event.endpoint, event.data) is SendStatus.SENT

            serving = asyncio.ensure_future(server_events.for_each(echo))
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            client.signals.send("queued before for_each")  # delivered first
            seen: list[Any] = []
            thread = threading.get_ident()

            def on_event(event: Any) -> None:
                assert threading.get_ident() == thread  # the event loop's own thread
                seen.append(event)
                if isinstance(event, Signal):
                    client.network.send_nowait(endpoint, b"via callback")
                elif isinstance(event, Message):
                    client.stop()

            await client_events.for_each(on_event)
            assert seen[0] == Connected(endpoint, True)
            assert seen[1] == Signal("queued before for_each")
            assert isinstance(seen[2], Message) and seen[2].data == b"via callback"
            with pytest.raises(message_io.ListenerUsedError):
                await server_events.receive(0)  # for_each consumes the listener
            server.stop()
            await serving

    run(main)


def test_for_each_raises_what_stopped_the_node(run: Run) -> None:
    async def main() -> None:
        handler, listener = mio.split(str)

        def fail(event: Any) -> None:
            raise ValueError(f"cannot handle {event!r}")

        handler.signals.send("boom")
        with pytest.raises(ValueError, match="cannot handle"):
            await listener.for_each(fail, on_error="stop")
        assert not handler.is_running()

    run(main)


def test_unconsumed_events_are_bounded_and_the_peer_is_slowed_down(run: Run) -> None:
    """While nobody takes events, the node stops reading past a bounded queue, so TCP
    pushes back on the peer; once consumed, every message arrives, in order."""
    frame = b"\x64" + b"m" * 100  # a FramedTcp message of 100 bytes

    async def main() -> None:
        handler, listener = mio.split()
        async with handler:
            _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
            assert isinstance(addr, tuple)
            peer = socket.create_connection(addr)
            peer.setblocking(False)
            try:
                assert isinstance(await listener.receive(TIMEOUT), Accepted)
                loop = asyncio.get_running_loop()
                sent = 0
                blocked = False
                unsent = b""  # what a partial send left: the stream must stay whole
                while not blocked:  # flood until the kernel refuses for a second
                    try:
                        data = unsent or frame * 64
                        written = peer.send(data)
                        sent += written
                        unsent = data[written:]
                    except BlockingIOError:
                        writable = await loop.run_in_executor(
                            None, lambda: select.select([], [peer], [], 1.0)[1]
                        )
                        blocked = not writable
                    await asyncio.sleep(0)  # let the node take what it will
                assert sent // len(frame) > mio.MAX_QUEUED_EVENTS  # it did push back
                complete = sent // len(frame)
                for _ in range(complete):
                    event = await listener.receive(TIMEOUT)
                    assert isinstance(event, Message) and event.data == frame[1:]
            finally:
                peer.close()

    run(main)


def test_an_echo_server_behind_its_queue_keeps_writing_and_echoes_everything(run: Run) -> None:
    """The echo loop waits in `await send` while more than MAX_QUEUED_EVENTS events are
    queued: the node must still write (and so drain) while it reads nothing more."""
    count = 20_000
    frame = b"\x64" + b"e" * 100

    async def main() -> None:
        server, server_events = mio.split()
        async with server:
            _id, addr = server.network.listen(
                Transport.FRAMED_TCP,
                LOCAL,
                config=FramedTcpListenConfig(send_buffer_limit=64 * 1024),
            )
            echo = asyncio.ensure_future(echo_forever(server, server_events))
            assert isinstance(addr, tuple)
            loop = asyncio.get_running_loop()
            peer = socket.create_connection(addr)
            try:
                # Send everything before reading any echo: the echoes back up.
                await loop.run_in_executor(None, peer.sendall, frame * count)
                peer.settimeout(TIMEOUT)
                received = await loop.run_in_executor(None, recv_exactly, peer, len(frame) * count)
                assert received == len(frame) * count
                assert (
                    len(server_events._driver.inbox.events) <= mio.MAX_QUEUED_EVENTS + 64
                )  # white box
            finally:
                peer.close()
                echo.cancel()

    run(main)


def test_stop_while_the_queue_is_full_closes_the_node(run: Run) -> None:
    async def main() -> None:
        handler, listener = mio.split(str)
        for index in range(mio.MAX_QUEUED_EVENTS + 100):
            handler.signals.send(str(index))
        assert await listener.receive(TIMEOUT) == Signal("0")  # the queue filled meanwhile
        handler.stop()
        await asyncio.wait_for(handler.wait_closed(), TIMEOUT)
        assert not handler.is_running()

    run(main)


def test_for_each_stops_the_node_when_a_queued_event_raises(run: Run) -> None:
    async def main() -> None:
        handler, listener = mio.split(str)
        handler.signals.send("queued")
        while not listener._driver.inbox.events:  # white box: a turn has queued it
            await asyncio.sleep(0)

        def fail(event: Any) -> None:
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            await listener.for_each(fail, on_error="stop")
        await asyncio.wait_for(handler.wait_closed(), TIMEOUT)
        assert not handler.is_running()

    run(main)


def test_a_node_outliving_its_event_loop_closes_on_stop() -> None:
    """The loop ended without stopping the node: stop() from outside still closes it
    (its sockets and its poller), without touching the closed loop."""

    async def main() -> tuple[mio.AsyncNodeHandler[Any], Any]:
        handler, _listener = mio.split()
        _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
        return handler, addr

    handler, addr = asyncio.run(main())
    handler.stop()  # the first call after the loop closed
    assert not handler.is_running()
    assert handler._engine.shut  # white box: everything is closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(addr, timeout=TIMEOUT).close()


def test_for_each_settles_what_other_tasks_await_and_logs_errors(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """While ``for_each`` consumes the events, a connect awaited by another task still
    completes on ``Connected`` (settled before the callback sees it), and with the
    default ``on_error="log"`` an exception of the callback is logged and the next
    event still comes."""

    async def main() -> None:
        handler, listener = mio.split()
        async with handler:
            _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
            got: list[bytes] = []

            def on_event(event: Any) -> None:
                if isinstance(event, Message):
                    got.append(event.data)
                    if len(got) == 1:
                        raise ValueError("the first message")
                    handler.stop()

            consuming = asyncio.ensure_future(listener.for_each(on_event))
            await asyncio.sleep(0)  # one step: the task now consumes the events
            endpoint, _ = await asyncio.wait_for(
                handler.network.connect(Transport.FRAMED_TCP, addr), TIMEOUT
            )
            assert await handler.network.send(endpoint, b"one") is SendStatus.SENT
            assert await handler.network.send(endpoint, b"two") is SendStatus.SENT
            await asyncio.wait_for(consuming, TIMEOUT)
            assert got == [b"one", b"two"]

    run(main)
    assert "the first message" in caplog.text


_WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_the_task_waiting_for_an_event_keeps_its_context(run: Run) -> None:
    """The consumer of ``async for`` is run at once when its event comes, inside the
    node's turn: still in its own context (its ContextVars), every event in order."""

    async def main() -> None:
        server, server_events = mio.split()
        client, _client_events = mio.split()
        async with server, client:
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)

            async def consume() -> list[tuple[bytes, str]]:
                _WHO.set("consumer")
                seen: list[tuple[bytes, str]] = []
                async for event in server_events:
                    if isinstance(event, Message):
                        seen.append((event.data, _WHO.get()))
                        if len(seen) == 100:
                            break
                return seen

            consuming = asyncio.ensure_future(consume())
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            for index in range(100):
                assert await client.network.send(endpoint, b"%d" % index) is SendStatus.SENT
            seen = await asyncio.wait_for(consuming, TIMEOUT)
            assert seen == [(b"%d" % index, "consumer") for index in range(100)]
            assert _WHO.get() == "nobody"

    run(main)


def test_wake_runs_the_waiting_task_at_once_outside_a_task_only(run: Run) -> None:
    """White box: the inbox's ``wake`` (called for each event while the consumer waits)
    runs the task awaiting the future before it returns when called from a loop
    callback, as a turn is; from inside a task, it completes the future and the task
    runs later, never inside the other; a done callback that raises goes to the loop's
    exception handler, and the node runs on."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler, listener = mio.split()
        driver = listener._driver  # white box
        async with handler:
            resumed: list[str] = []

            async def wait(future: asyncio.Future[None], name: str) -> None:
                _WHO.set(name)
                await future
                resumed.append(_WHO.get())

            # From a loop callback: the task has run when wake returns.
            first = driver.new_future()
            waiting = asyncio.ensure_future(wait(first, "first"))
            await asyncio.sleep(0)  # the task now awaits the future
            seen: list[list[str]] = []

            def as_a_turn() -> None:
                driver.inbox.wake(first)
                seen.append(list(resumed))

            loop.call_soon(as_a_turn)
            await asyncio.wait_for(waiting, TIMEOUT)
            assert seen == [["first"]]

            # From inside a task: not yet when wake returns.
            second = driver.new_future()
            waiting = asyncio.ensure_future(wait(second, "second"))
            await asyncio.sleep(0)
            driver.inbox.wake(second)
            assert second.done() and resumed == ["first"]
            await asyncio.wait_for(waiting, TIMEOUT)
            assert resumed == ["first", "second"]

            # A callback that raises is reported, not raised into the node's turn.
            reported: list[dict[str, Any]] = []
            loop.set_exception_handler(lambda _loop, context: reported.append(context))
            third = driver.new_future()

            def fails(_future: object) -> None:
                raise ValueError("a failing callback")

            third.add_done_callback(fails)
            called = loop.create_future()

            def wake_third() -> None:
                driver.inbox.wake(third)
                called.set_result(None)

            loop.call_soon(wake_third)
            await asyncio.wait_for(called, TIMEOUT)
            assert [type(context["exception"]) for context in reported] == [ValueError]
            assert handler.is_running()

    run(main)


def test_the_current_task_as_the_inbox_asks_for_it(run: Run) -> None:
    """The inbox's ``current_task`` (a C call on every Python) answers as asyncio's:
    the running task inside one, None in a plain loop callback."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert mio._current_task(loop) is asyncio.current_task(loop) is not None
        answers = loop.create_future()
        loop.call_soon(
            lambda: answers.set_result((mio._current_task(loop), asyncio.current_task(loop)))
        )
        assert await asyncio.wait_for(answers, TIMEOUT) == (None, None)

    run(main)


def test_a_send_never_awaited_is_reported(run: Run) -> None:
    """``send`` is a coroutine as asyncio defines it: one never awaited sends nothing
    and Python warns about it (a forgotten ``await`` does not pass silently)."""

    async def main() -> None:
        handler, listener = mio.split()
        async with handler:
            _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
            endpoint, _ = await handler.network.connect(Transport.FRAMED_TCP, addr)
            forgotten = handler.network.send(endpoint, b"never")
            assert asyncio.iscoroutine(forgotten)
            with pytest.warns(RuntimeWarning, match="never awaited"):
                del forgotten
                gc.collect()
            assert await handler.network.send(endpoint, b"after") is SendStatus.SENT
            assert (await next_of(listener, Message)).data == b"after"

    run(main)


def test_a_consumer_that_raises_ends_its_task_only(run: Run) -> None:
    """A task run at once by its event that raises ends with that exception: it does not
    reach the node's turn, the node runs on, and another task takes the next events."""

    async def main() -> None:
        server, server_events = mio.split()
        client, _client_events = mio.split()
        async with server, client:
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)

            async def fail_on_a_message() -> None:
                async for event in server_events:
                    if isinstance(event, Message):
                        raise ValueError(event.data)

            failing = asyncio.ensure_future(fail_on_a_message())
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            assert await client.network.send(endpoint, b"first") is SendStatus.SENT
            with pytest.raises(ValueError, match="first"):
                await asyncio.wait_for(failing, TIMEOUT)
            assert server.is_running()
            assert await client.network.send(endpoint, b"second") is SendStatus.SENT
            assert (await next_of(server_events, Message)).data == b"second"

    run(main)
