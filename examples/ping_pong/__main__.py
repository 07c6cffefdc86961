"""Ping-pong: one server, many clients, one code path for every transport.

Run a server and a client; the transport is ``tcp`` (framed TCP, as in the Rust
example), ``stream`` (raw TCP), ``udp``, ``ws`` or ``wss`` (WebSocket, plain or TLS).
Give Python the path of this folder; the commands below are run from the checkout's
root, and work from any other directory with the path changed
(``python path/to/examples/ping_pong ...``), once message-io is installed
(``pip install -e .``)::

    python examples/ping_pong server tcp 3456
    python examples/ping_pong client tcp 127.0.0.1:3456

    python examples/ping_pong server udp 3456
    python examples/ping_pong client udp 127.0.0.1:3456

    python examples/ping_pong server ws 3456
    python examples/ping_pong client ws ws://127.0.0.1:3456/   # or 127.0.0.1:3456

``wss`` needs a certificate for the server and, for a self-signed one, the client must
trust it::

    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout key.pem -out cert.pem
    python examples/ping_pong server wss 3456 --cert cert.pem --key key.pem
    python examples/ping_pong client wss wss://localhost:3456/ --ca cert.pem

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
    SendStatus,
    Signal,
    Transport,
    WsConnectConfig,
    WsListenConfig,
)
from message_io.network.adapter import format_address

TRANSPORTS = {
    "tcp": Transport.FRAMED_TCP,
    "stream": Transport.TCP,
    "udp": Transport.UDP,
    "ws": Transport.WS,
    "wss": Transport.WS,
}


def run_server(
    transport: Transport, port: int, config: message_io.network.adapter.ListenConfig | None
) -> None:
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, f"0.0.0.0:{port}", config=config)
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
                    status = handler.network.send(endpoint, f"pong {count}".encode())
                else:  # UDP: no connection to count on; answer from the listener
                    status = handler.network.send(endpoint, b"pong")
                if status is not SendStatus.SENT:  # e.g. QUEUE_FULL: it reads no pongs
                    print(f"pong to {endpoint.addr} not sent: {status.name}", flush=True)
            case Message(endpoint, data):
                print(f"unexpected {len(data)} bytes from {endpoint.addr}", flush=True)
            case Disconnected(endpoint):
                pings.pop(endpoint, None)
                print(f"client disconnected: {endpoint.addr} (total: {len(pings)})", flush=True)
            case Connected() | Drained() | Signal():
                pass

    listener.for_each(on_event)


def run_client(
    transport: Transport,
    addr: str,
    count: int | None,
    config: message_io.network.adapter.ConnectConfig | None,
) -> int:
    handler, listener = message_io.split(str)
    server, _ = handler.network.connect(transport, addr, config=config)
    pongs = 0
    failed = False

    def on_event(event: message_io.NodeEvent[str]) -> None:
        nonlocal pongs, failed
        match event:
            case Connected(_, True):
                # For a host name the socket (and its address) exists only from now on.
                local = handler.network.local_addr(server)
                origin = f" from {format_address(local)}" if local is not None else ""
                print(f"connected to {addr}{origin}", flush=True)
                handler.signals.send("greet")
            case Connected(_, False):
                print(f"cannot connect to {addr}", flush=True)
                failed = True
                handler.stop()
            case Signal("greet"):
                status = handler.network.send(server, b"ping")
                if status is not SendStatus.SENT:  # QUEUE_FULL: the server reads nothing
                    print(f"ping not sent: {status.name}", flush=True)
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
    server.add_argument("--cert", help="wss: the server's PEM certificate (chain)")
    server.add_argument("--key", help="wss: its private key, if not in the --cert file")
    client = sub.add_parser("client")
    client.add_argument("transport", choices=TRANSPORTS)
    client.add_argument("addr", help="ip:port of the server (or a ws:// / wss:// URL)")
    client.add_argument("--count", type=int, default=None, help="stop after this many pongs")
    client.add_argument("--ca", help="wss: trust this PEM certificate (a self-signed one)")
    args = parser.parse_args(argv)
    transport = TRANSPORTS[args.transport]
    try:
        if args.role == "server":
            listen_config = None
            if args.transport == "wss":
                if args.cert is None:
                    parser.error("wss needs --cert (and --key if the key is separate)")
                listen_config = WsListenConfig(certfile=args.cert, keyfile=args.key)
            run_server(transport, args.port, listen_config)
            return 0
        connect_config = None
        addr = args.addr
        if args.transport == "wss":
            connect_config = WsConnectConfig(ca_file=args.ca)
            if "://" not in addr:
                addr = f"wss://{addr}/"
        return run_client(transport, addr, args.count, connect_config)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
