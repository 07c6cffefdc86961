"""What the tests of the awaitable API share, whatever the event loop (asyncio, uvloop,
trio): waiting for an event of a kind, an echo task, blocking reads for a worker thread,
a resolver that hangs until released."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from message_io import Message, SendStatus
from message_io.awaitables import AsyncNodeHandler, AsyncNodeListener

TIMEOUT = 10.0


async def next_of(listener: AsyncNodeListener[Any], kind: type[Any]) -> Any:
    """The next event of ``kind``, skipping others."""
    while True:
        event = await listener.receive(TIMEOUT)
        assert event is not None, f"no {kind.__name__} within {TIMEOUT} s"
        if isinstance(event, kind):
            return event


async def echo_forever(handler: AsyncNodeHandler[Any], listener: AsyncNodeListener[Any]) -> None:
    async for event in listener:
        if isinstance(event, Message):
            assert await handler.network.send(event.endpoint, event.data) is SendStatus.SENT


def recv_exactly(sock: socket.socket, size: int) -> int:
    """Read ``size`` bytes (blocking; for a worker thread); return how many came."""
    got = 0
    while got < size:
        data = sock.recv(min(1 << 20, size - got))
        if not data:
            break
        got += len(data)
    return got


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    """Read until the bytes end with ``marker`` or the peer closes (blocking)."""
    sock.settimeout(TIMEOUT)
    data = bytearray()
    while not data.endswith(marker):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return bytes(data)


@contextmanager
def hung_resolver() -> Iterator[Callable[..., list[Any]]]:
    """A resolver whose lookups wait (on the node's resolver thread) until the block
    ends, then find nothing: a connect to a host name that stays pending."""
    gate = threading.Event()

    def hung(host: str, port: int, *_rest: Any) -> list[Any]:
        gate.wait(TIMEOUT)
        return []

    try:
        yield hung
    finally:
        gate.set()
