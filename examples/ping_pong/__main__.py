"""Ping-pong: one server, many clients, one code path for every transport.

Run a server and a client; the transport is ``tcp`` (framed TCP, as in the Rust
example), ``stream`` (raw TCP) or ``udp``::

    python -m examples.ping_pong server tcp 3456
    python -m examples.ping_pong client tcp 127.0.0.1:3456

    python -m examples.ping_pong server udp 3456
    python -m examples.ping_pong client udp 127.0.0.1:3456

The client sends a ping every second. Over TCP the server sees clients connect and
disconnect, and answers each one with a pong that counts that client's pings. UDP has no
connections (no ``Accepted``, no ``Disconnected``), so the server cannot track clients
and answers every ping with a plain ``pong`` (the Rust example's ``UnknownPong``), and
nothing tells a UDP client that no server is there: it keeps pinging.
``--count N`` makes the client stop after N pongs.
"""

from __future__ import annotations

import argparse
import sys

import message_io
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    Signal,
    Transport,
)
from message_io.network.adapter import format_address

TRANSPORTS = {"tcp": Transport.FRAMED_TCP, "stream": Transport.TCP, "udp": Transport.UDP}


def run_server(transport: Transport, port: int) -> None:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, f"0.0.0.0:{port}")
    print(f"server running on {transport.name} {format_address(addr)}", flush=True)
    pings: dict[Endpoint, int] = {}

    def on_event(event: message_io.NodeEvent[object]) -> None:
        match event:
            case Accepted(endpoint, _listener_id):
                pings[endpoint] = 0
                print(f"client connected: {endpoint.addr} (total: {len(pings)})", flush=True)
            case Message(endpoint, b"ping"):
                print(f"ping from {endpoint.addr}", flush=True)
                if transport.is_connection_oriented:
                    count = pings[endpoint] = pings.get(endpoint, 0) + 1
                    handler.network.send(endpoint, f"pong {count}".encode())
                else:  # UDP: no connection to count on; answer from the listener
                    handler.network.send(endpoint, b"pong")
            case Message(endpoint, data):
                print(f"unexpected {len(data)} bytes from {endpoint.addr}", flush=True)
            case Disconnected(endpoint):
                pings.pop(endpoint, None)
                print(f"client disconnected: {endpoint.addr} (total: {len(pings)})", flush=True)
            case Connected() | Drained() | Signal():
                pass

    listener.for_each(on_event)


def run_client(transport: Transport, addr: str, count: int | None) -> int:
    handler, listener = message_io.split(str)
    server, local = handler.network.connect(transport, addr)
    pongs = 0
    failed = False

    def on_event(event: message_io.NodeEvent[str]) -> None:
        nonlocal pongs, failed
        match event:
            case Connected(_, True):
                print(f"connected to {addr} from {format_address(local)}", flush=True)
                handler.signals.send("greet")
            case Connected(_, False):
                print(f"cannot connect to {addr}", flush=True)
                failed = True
                handler.stop()
            case Signal("greet"):
                handler.network.send(server, b"ping")
                handler.signals.send_with_timer("greet", 1.0)
            case Message(_, data):
                pongs += 1
                print(f"{data.decode(errors='replace')} from the server", flush=True)
                if count is not None and pongs >= count:
                    handler.stop()
            case Disconnected(_):
                print("server disconnected", flush=True)
                handler.stop()
            case Accepted() | Drained() | Signal():
                pass

    listener.for_each(on_event)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ping_pong", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server")
    server.add_argument("transport", choices=TRANSPORTS)
    server.add_argument("port", type=int)
    client = sub.add_parser("client")
    client.add_argument("transport", choices=TRANSPORTS)
    client.add_argument("addr", help="ip:port of the server")
    client.add_argument("--count", type=int, default=None, help="stop after this many pongs")
    args = parser.parse_args(argv)
    try:
        if args.role == "server":
            run_server(TRANSPORTS[args.transport], args.port)
            return 0
        return run_client(TRANSPORTS[args.transport], args.addr, args.count)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
