"""An echo server and its clients as an asyncio program, with no thread.

Run a server, then clients in other terminals::

    python examples/asyncio_echo.py server 127.0.0.1:3042
    python examples/asyncio_echo.py client 127.0.0.1:3042 --count 3

or both in one process, as a quick check::

    python examples/asyncio_echo.py both --clients 10

The server serves every client from one ``async for`` loop; each client is a task of
its own that connects (``await connect``), sends (``await send``, which waits when the
server reads slowly instead of dropping) and waits for its echoes. The node shares the
event loop with everything else in the program: here a plain asyncio timer task.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import message_io.asyncio as mio
from message_io import Accepted, ConnectError, Disconnected, Endpoint, Message, Transport

TRANSPORT = Transport.FRAMED_TCP  # or Transport.WS, Transport.UDP: nothing else changes


async def serve(handler: mio.AsyncNodeHandler[None], listener: mio.AsyncNodeListener[None]) -> None:
    """Echo every message to its sender until the node stops."""
    async for event in listener:
        match event:
            case Accepted(endpoint, _):
                print(f"server: {endpoint.addr} connected", flush=True)
            case Message(endpoint, data):
                await handler.network.send(endpoint, data)
            case Disconnected(endpoint):
                print(f"server: {endpoint.addr} left", flush=True)


async def client(addr: str, name: str, count: int) -> int:
    """Send ``count`` messages and wait for each echo; return how many came back."""
    handler, listener = mio.split()
    async with handler:
        try:
            server, _ = await handler.network.connect(TRANSPORT, addr)
        except ConnectError as exc:
            print(f"{name}: {exc}", flush=True)
            return 0
        echoed = 0
        for index in range(count):
            await handler.network.send(server, f"{name} #{index}".encode())
            event = await _next_message(listener, server)
            if event is None:
                break
            echoed += 1
            print(f"{name}: echo {event.data.decode()!r}", flush=True)
        return echoed


async def _next_message(listener: mio.AsyncNodeListener[None], server: Endpoint) -> Message | None:
    async for event in listener:
        if isinstance(event, Message) and event.endpoint == server:
            return event
        if isinstance(event, Disconnected):
            print("the server went away", flush=True)
            return None
    return None


async def ticker(stop: asyncio.Event) -> None:
    """Other work on the same event loop, to show the node does not hold it."""
    while not stop.is_set():
        await asyncio.sleep(0.5)
        print("tick", flush=True)


async def run_server(addr: str) -> None:
    handler, listener = mio.split()
    async with handler:
        _listener_id, local = handler.network.listen(TRANSPORT, addr)
        print(f"server: listening on {local[0]}:{local[1]}", flush=True)
        await serve(handler, listener)


async def run_both(clients: int, count: int) -> int:
    handler, listener = mio.split()
    async with handler:
        _listener_id, local = handler.network.listen(TRANSPORT, "127.0.0.1:0")
        host, port = local[0], local[1]
        serving = asyncio.ensure_future(serve(handler, listener))
        stop = asyncio.Event()
        ticking = asyncio.ensure_future(ticker(stop))
        results = await asyncio.gather(
            *(client(f"{host}:{port}", f"client-{n}", count) for n in range(clients))
        )
        stop.set()
        await ticking
        handler.stop()
        await serving
    total = sum(results)
    print(f"{total} of {clients * count} echoes came back", flush=True)
    return 0 if total == clients * count else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncio_echo", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["server", "client", "both"])
    parser.add_argument("addr", nargs="?", default="127.0.0.1:3042", help="host:port")
    parser.add_argument("--count", type=int, default=3, help="messages per client")
    parser.add_argument("--clients", type=int, default=3, help="clients, in 'both' mode")
    args = parser.parse_args(argv)
    try:
        if args.mode == "server":
            asyncio.run(run_server(args.addr))
            return 0
        if args.mode == "client":
            echoed = asyncio.run(client(args.addr, "client", args.count))
            return 0 if echoed == args.count else 1
        return asyncio.run(run_both(args.clients, args.count))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
