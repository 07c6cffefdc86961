"""The behaviour suite's core cases through the awaitable API, the same test on each
event loop: asyncio's, uvloop's and trio's (``message_io.asyncio``, ``message_io.trio``).

Echo with 1 and 100 clients on FramedTcp, WebSocket and UDP; order under a burst and
the largest message; disconnects and remove; a failed connect. What belongs to one
framework (cancellation, its nursery or tasks, sharing its loop) is in
``test_asyncio.py`` and ``test_trio.py``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from message_io import (
    Accepted,
    Connected,
    ConnectError,
    Disconnected,
    Endpoint,
    FramedTcpConnectConfig,
    FramedTcpListenConfig,
    Message,
    SendStatus,
    Transport,
)
from message_io.awaitables import AsyncNodeHandler, AsyncNodeListener

from .awaiting import TIMEOUT, echo_forever, next_of

LOCAL = "127.0.0.1:0"
Node = tuple[AsyncNodeHandler[Any], AsyncNodeListener[Any]]


class Loop:
    """One kind of event loop: how to run a test on it, make a node, run a task."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "uvloop":
            pytest.importorskip("uvloop")
        elif kind == "trio":
            pytest.importorskip("trio")

    def run(self, main: Callable[[], Awaitable[None]]) -> None:
        """Run ``main`` to completion on a new loop of this kind, bounded in time."""
        if self.kind == "trio":
            import trio

            async def bounded() -> None:
                with trio.fail_after(TIMEOUT * 2):
                    await main()

            trio.run(bounded)
            return
        import asyncio

        event_loop: asyncio.AbstractEventLoop
        if self.kind == "uvloop":
            import uvloop

            event_loop = uvloop.new_event_loop()
        else:
            event_loop = asyncio.new_event_loop()
        try:
            event_loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT * 2))
        finally:
            event_loop.close()

    @asynccontextmanager
    async def node(self, **options: Any) -> AsyncIterator[Node]:
        """A node on the running loop, stopped and closed when the block ends."""
        if self.kind == "trio":
            import message_io.trio as mio_trio

            async with mio_trio.open_node(**options) as pair:
                yield pair
            return
        import message_io.asyncio as mio

        handler, listener = mio.split(**options)
        async with handler:
            yield handler, listener

    @asynccontextmanager
    async def task(self, coroutine: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
        """Run ``coroutine`` beside the block; cancel it when the block ends."""
        if self.kind == "trio":
            import trio

            async with trio.open_nursery() as nursery:

                async def wrapped() -> None:
                    await coroutine

                nursery.start_soon(wrapped)
                yield
                nursery.cancel_scope.cancel()
            return
        import asyncio

        running = asyncio.ensure_future(coroutine)
        try:
            yield
        finally:
            running.cancel()
            try:
                await running
            except asyncio.CancelledError:
                pass


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def loop(request: pytest.FixtureRequest) -> Loop:
    return Loop(request.param)


@pytest.mark.parametrize("clients", [1, 100])
@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.WS, Transport.UDP], ids=str)
def test_echo(loop: Loop, clients: int, transport: Transport) -> None:
    async def main() -> None:
        async with loop.node() as (server, server_events), loop.node() as (client, events):
            _id, addr = server.network.listen(transport, LOCAL)
            async with loop.task(echo_forever(server, server_events)):
                endpoints = [
                    (await client.network.connect(transport, addr))[0] for _ in range(clients)
                ]
                for index, endpoint in enumerate(endpoints):
                    assert await client.network.send(endpoint, b"%d" % index) is SendStatus.SENT
                replies: dict[Endpoint, bytes] = {}
                while len(replies) < clients:
                    event = await next_of(events, Message)
                    replies[event.endpoint] = event.data
                assert replies == {ep: b"%d" % i for i, ep in enumerate(endpoints)}

    loop.run(main)


def test_order_under_a_burst_and_the_largest_message(loop: Loop) -> None:
    limit = 1 << 20

    async def main() -> None:
        async with loop.node() as (server, server_events), loop.node() as (client, _):
            config = FramedTcpListenConfig(max_message_size=limit)
            _id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL, config=config)
            endpoint, _ = await client.network.connect(
                Transport.FRAMED_TCP, addr, config=FramedTcpConnectConfig(max_message_size=limit)
            )
            sent = [i.to_bytes(4, "big") for i in range(5000)] + [b"x" * limit]
            for data in sent:
                assert await client.network.send(endpoint, data) is SendStatus.SENT
            too_big = await client.network.send(endpoint, b"x" * (limit + 1))
            assert too_big is SendStatus.MAX_PACKET_SIZE_EXCEEDED
            received = [(await next_of(server_events, Message)).data for _ in sent]
            assert received == sent

    loop.run(main)


def test_disconnect_and_remove(loop: Loop) -> None:
    async def main() -> None:
        async with loop.node() as (server, server_events):
            listener_id, addr = server.network.listen(Transport.FRAMED_TCP, LOCAL)
            async with loop.node() as (client, client_events):
                first, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
                accepted = await next_of(server_events, Accepted)
                assert accepted.listener_id == listener_id
                # The server kicks it: the client sees Disconnected.
                assert server.network.remove(accepted.endpoint.resource_id) is True
                assert await next_of(client_events, Disconnected) == Disconnected(first)
                second, _ = await client.network.connect(Transport.FRAMED_TCP, addr)
                accepted = await next_of(server_events, Accepted)
            # The client node is closed: the server sees its peer go.
            assert client.network.is_ready(second.resource_id) is None
            gone = await next_of(server_events, Disconnected)
            assert gone == Disconnected(accepted.endpoint)

    loop.run(main)


def test_a_failed_connect_raises_with_the_reason(loop: Loop) -> None:
    async def main() -> None:
        async with loop.node(resolver=lambda *_args: []) as (handler, listener):
            with socket.socket() as bound:  # bound, not listening: refused
                bound.bind(("127.0.0.1", 0))
                with pytest.raises(ConnectError) as info:
                    await handler.network.connect(Transport.FRAMED_TCP, bound.getsockname())
            assert isinstance(info.value.__cause__, ConnectionRefusedError)
            event = await next_of(listener, Connected)  # still delivered
            assert not event.established
            with pytest.raises(ConnectError, match="no IPv4 or IPv6 address"):
                await handler.network.connect(Transport.FRAMED_TCP, "nowhere.test:80")

    loop.run(main)
