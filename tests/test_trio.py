"""``message_io.trio``: a node turned by the running trio loop.

Backpressure, plus what is trio's own: no thread, cancellation, the node's nursery,
sends from other threads, and a program where ``trio.serve_tcp`` and a message_io
listener share one run. The core cases (echo with 1 and 100 clients, order, the largest
message, disconnects, remove, a failed connect) run on asyncio, uvloop and trio alike
in ``test_awaitable_core.py``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("trio")
import trio
import trio.testing

import message_io
import message_io.trio as mio
from message_io import (
    Accepted,
    Drained,
    FramedTcpListenConfig,
    Message,
    NodeStoppedError,
    SendStatus,
    Signal,
    Transport,
)

from .awaiting import TIMEOUT, hung_resolver, next_of, recv_exactly, recv_until
from .helpers import ROOT, run_python

LOCAL = "127.0.0.1:0"
_FULL = SendStatus.QUEUE_FULL


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` in a new trio run, with a bound on the whole test."""

    async def bounded() -> None:
        with trio.fail_after(TIMEOUT * 2):
            await main()

    trio.run(bounded)


def test_send_waits_out_backpressure_and_a_slow_peer_blocks_no_one_else() -> None:
    limit = 64 * 1024
    chunk = b"y" * 16 * 1024
    count = 2000  # 32 MB: far more than the kernel and the queue hold

    async def main() -> None:
        async with mio.open_node() as (handler, listener), trio.open_nursery() as nursery:
            _id, addr = handler.network.listen(
                Transport.FRAMED_TCP, LOCAL, config=FramedTcpListenConfig(send_buffer_limit=limit)
            )
            assert isinstance(addr, tuple)
            with socket.create_connection(addr) as slow, socket.create_connection(addr) as fast:
                peers = {}
                for _ in range(2):
                    endpoint = (await next_of(listener, Accepted)).endpoint
                    peers[endpoint.addr] = endpoint
                slow_ep, fast_ep = peers[slow.getsockname()], peers[fast.getsockname()]
                flooded = trio.Event()

                async def flood() -> None:
                    for _ in range(count):
                        assert await handler.network.send(slow_ep, chunk) is SendStatus.SENT
                    flooded.set()

                nursery.start_soon(flood)
                await trio.testing.wait_all_tasks_blocked()
                assert handler.network.pending_bytes(slow_ep) >= limit  # it has to wait
                assert not flooded.is_set()
                # The slow peer holds up only its own sends.
                assert await handler.network.send(fast_ep, b"quick") is SendStatus.SENT
                fast.settimeout(TIMEOUT)
                assert fast.recv(100)[-5:] == b"quick"
                # The slow peer reads: every byte arrives, nothing was dropped.
                expected = count * (3 + len(chunk))  # a 3-byte varint prefix each
                slow.settimeout(TIMEOUT)
                got = await trio.to_thread.run_sync(recv_exactly, slow, expected)
                assert got == expected
                await flooded.wait()
                assert await next_of(listener, Drained) == Drained(slow_ep)
                stats = handler.network.statistics(slow_ep)
                assert stats is not None and stats.refused_sends == 0

    run(main)


def test_cancelled_sends_connects_and_reads_lose_and_leave_nothing() -> None:
    async def main() -> None:
        with hung_resolver() as hung:
            async with mio.open_node(str, resolver=hung) as (handler, listener):
                _id, addr = handler.network.listen(
                    Transport.FRAMED_TCP,
                    LOCAL,
                    config=FramedTcpListenConfig(send_buffer_limit=1024),
                )
                assert isinstance(addr, tuple)
                with socket.socket() as peer:
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
                    peer.connect(addr)
                    endpoint = (await next_of(listener, Accepted)).endpoint
                    # Fill the node's queue and the kernel's buffers (the peer reads
                    # nothing): flood until a refusal is not followed by Drained and
                    # the queue is still full (the kernel may have taken part of it).
                    while True:
                        while (
                            status := handler.network.send_nowait(endpoint, b"z" * 1024)
                        ) is not _FULL:
                            assert status is SendStatus.SENT
                        with trio.move_on_after(0.5) as quiet:
                            await next_of(listener, Drained)
                        if quiet.cancelled_caught:
                            stats = handler.network.statistics(endpoint)
                            assert stats is not None  # still connected
                            if stats.queued_bytes >= 1024:
                                break
                    # A send waiting for room, cancelled: it never goes out.
                    with trio.move_on_after(0.05) as waited:
                        await handler.network.send(endpoint, b"late")
                    assert waited.cancelled_caught
                    reading = trio.to_thread.run_sync(recv_until, peer, b"END")
                    async with trio.open_nursery() as nursery:
                        received: list[bytes] = []

                        async def read() -> None:
                            received.append(await reading)

                        nursery.start_soon(read)
                        assert await handler.network.send(endpoint, b"END") is SendStatus.SENT
                    assert received[0].endswith(b"END") and b"late" not in received[0]

                # A connect waiting for its name, cancelled: nothing is left of it.
                with trio.move_on_after(0.05) as waited:
                    await handler.network.connect(Transport.FRAMED_TCP, "slow.test:1")
                assert waited.cancelled_caught
                for resource_id in range(1, 4):  # (0: the peer accepted above)
                    rid = message_io.ResourceId.new(
                        Transport.FRAMED_TCP.id, message_io.ResourceType.REMOTE, resource_id
                    )
                    assert handler.network.is_ready(rid) is None

                # A task waiting for events, cancelled: the next event is not lost.
                while await listener.receive(0) is not None:
                    pass
                with trio.move_on_after(0.05):
                    await listener.receive()
                handler.signals.send("after")
                assert (await next_of(listener, Signal)).value == "after"

    run(main)


def test_stop_ends_the_iteration_and_connects_waiting() -> None:
    async def main() -> None:
        with hung_resolver() as hung:
            outcome: list[BaseException] = []
            async with mio.open_node(str, resolver=hung) as (handler, listener):

                async def connecting() -> None:
                    try:
                        await handler.network.connect(Transport.FRAMED_TCP, "slow.test:1")
                    except NodeStoppedError as exc:
                        outcome.append(exc)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(connecting)
                    await trio.testing.wait_all_tasks_blocked()
                    handler.signals.send("before stop")
                    events = []
                    async for event in listener:
                        events.append(event)
                        handler.stop()
                assert events == [Signal("before stop")]
                assert len(outcome) == 1
                assert not handler.is_running()
                with pytest.raises(NodeStoppedError):
                    handler.signals.send("late")

    run(main)


def test_no_thread_is_started_and_other_threads_may_send() -> None:
    async def main() -> None:
        before = set(threading.enumerate())
        async with mio.open_node() as (server, server_events), mio.open_node() as (client, _):
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)
            endpoint, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
            await client.network.send(endpoint, b"x")
            assert (await next_of(server_events, Message)).data == b"x"
            assert set(threading.enumerate()) - before == set()

            def elsewhere() -> list[SendStatus]:
                return [client.network.send_nowait(endpoint, b"%d" % i) for i in range(50)]

            statuses = await trio.to_thread.run_sync(elsewhere)
            assert set(statuses) == {SendStatus.SENT}
            received = [(await next_of(server_events, Message)).data for _ in range(50)]
            assert received == [b"%d" % i for i in range(50)]

    run(main)


def test_timers_for_each_and_receive_with_a_timeout() -> None:
    async def main() -> None:
        async with mio.open_node(str) as (handler, listener):
            assert await listener.receive(0.01) is None
            handler.signals.send_with_timer("tick", 0.01)
            assert await next_of(listener, Signal) == Signal("tick")
            seen: list[Any] = []

            def on_event(event: Any) -> None:
                seen.append(event)
                if len(seen) == 2:
                    handler.stop()

            handler.signals.send("a")
            handler.signals.send("b")
            await listener.for_each(on_event)
            assert seen == [Signal("a"), Signal("b")]

    run(main)


def test_unconsumed_events_are_bounded() -> None:
    async def main() -> None:
        async with mio.open_node(int) as (handler, listener):
            for index in range(mio.MAX_QUEUED_EVENTS + 100):
                handler.signals.send(index)
            first = await next_of(listener, Signal)
            assert first.value == 0
            got = [first.value] + [(await next_of(listener, Signal)).value for _ in range(10)]
            assert got == list(range(11))

    run(main)


def test_a_trio_server_and_a_message_io_listener_share_a_run() -> None:
    """A trio TCP service and a message_io node in one run: the node's client talks to
    the trio service, which relays every line to the node's FramedTcp listener."""

    async def main() -> None:
        async with mio.open_node() as (handler, listener), trio.open_nursery() as nursery:
            _id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
            assert isinstance(addr, tuple)

            async def relay(stream: trio.SocketStream) -> None:
                async with await trio.open_tcp_stream(*addr) as target:
                    async for data in stream:
                        await target.send_all(bytes([len(data)]) + data)  # a 1-byte varint

            listeners = await nursery.start(trio.serve_tcp, relay, 0)
            port = listeners[0].socket.getsockname()[1]
            endpoint, _ = await handler.network.connect(Transport.TCP, ("127.0.0.1", port))
            assert await handler.network.send(endpoint, b"hello") is SendStatus.SENT
            message = await next_of(listener, Message)
            assert message.data == b"hello" and message.endpoint != endpoint
            nursery.cancel_scope.cancel()

    run(main)


def test_split_runs_the_node_in_the_given_nursery_and_needs_a_run() -> None:
    with pytest.raises(RuntimeError):
        mio.split(None)  # type: ignore[call-overload]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            handler, listener = mio.split(nursery, str)
            handler.signals.send("hi")
            assert await next_of(listener, Signal) == Signal("hi")
            nursery.cancel_scope.cancel()  # the node closes with its nursery
        assert not handler.is_running()
        async for _event in listener:  # ended: nothing left
            raise AssertionError("an event after the node closed")

    run(main)


def test_the_docs_example_runs_as_written() -> None:
    text = (ROOT / "docs" / "trio.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[0]
    result = run_python("-c", code, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echoed: hello\n"


def test_split_on_a_closed_nursery_raises_and_leaves_nothing_open() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            pass
        before = open_fds()
        with pytest.raises(RuntimeError):
            mio.split(nursery)
        assert open_fds() == before  # the node's epoll and waker were closed

    run(main)


def test_wait_closed_refuses_another_trio_run() -> None:
    async def main() -> None:
        async with mio.open_node() as (handler, _listener):
            raised: list[BaseException] = []

            def other_run() -> None:
                async def wait() -> None:
                    try:
                        await handler.wait_closed()
                    except RuntimeError as exc:
                        raised.append(exc)

                trio.run(wait)

            await trio.to_thread.run_sync(other_run)
            assert len(raised) == 1
            assert "trio run that made it" in str(raised[0])
            assert handler.is_running()

    run(main)


def test_an_exception_leaving_open_node_comes_out_in_an_exception_group() -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        async with mio.open_node() as (handler, _listener):
            assert handler.is_running()
            raise Boom

    with pytest.raises(BaseException) as caught:
        trio.run(main)
    # As from any trio nursery (docs/trio.md): the block's exception, alone in a group.
    assert type(caught.value).__name__ == "ExceptionGroup"
    assert [type(e) for e in getattr(caught.value, "exceptions", ())] == [Boom]
