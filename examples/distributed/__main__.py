"""Distributed: a discovery server introduces participants, which then talk directly.

Run a discovery server and a few participants, each in its own terminal, giving Python
the path of this folder: here from the checkout's root, from anywhere else with the path
changed (``python path/to/examples/distributed ...``), once message-io is installed
(``pip install -e .``)::

    python examples/distributed discovery-server 127.0.0.1:5000
    python examples/distributed participant alice 127.0.0.1:5000
    python examples/distributed participant bob 127.0.0.1:5000
    python examples/distributed participant carol 127.0.0.1:5000

The server listens on FramedTcp and keeps who is there. A participant listens on UDP (on
the address its connection to the server comes from, with a port the OS picks), then
registers with the server: its name and that UDP address. The server answers with the
participants already there (or refuses a name that is taken), and tells everyone of
each participant that joins, and of each that leaves (its connection ends). One node
does both at once: a client of the server, and a UDP peer of the others.

The participants talk to each other directly over UDP (the Rust example's latest
version opens FramedTcp connections for this; its 0.3 versions used UDP), greeting as
the Rust one does: a newcomer greets those on the list it got, and those already there
greet it when they hear it joined, so every pair exchanges two greetings, one datagram
each. Each greeting is printed (``bob says: welcome to the network!``). UDP may lose a
datagram, though not a few greetings on one host: nothing here resends.

A participant runs until Ctrl+C, or with ``--count N`` until it has greeted N others and
heard N greetings (status 0), or until the server is gone (status 1). The server runs
until Ctrl+C. The messages are JSON objects with a ``type``; anything else from a peer
disconnects it (the server) or is ignored (a participant).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Mapping

import message_io
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    MessageIOError,
    ResourceId,
    SendStatus,
    Signal,
    Transport,
)
from message_io.network.adapter import format_address

DEFAULT_SERVER = "127.0.0.1:5000"  # the Rust example's
MAX_NAME = 64


def encode(message: Mapping[str, object]) -> bytes:
    return json.dumps(message).encode()


def decode(data: bytes) -> dict[str, object] | None:
    """A JSON object with a ``type``, or None for anything else."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return None
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value
    return None


def valid_name(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and name.isprintable() and name.strip() == name


def valid_udp_address(addr: str) -> bool:
    """``ip:port`` or ``[ipv6]:port``: an address to send to, never a host name (which
    the loop would have to look up for each datagram)."""
    host, sep, port = addr.rpartition(":")
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return bool(sep) and port.isdigit() and 0 < int(port) < 65536
    except ValueError:
        return False


# -- the discovery server ----------------------------------------------------------------


def run_server(addr: str) -> int:
    handler, listener = message_io.split()
    try:
        _, local = handler.network.listen(Transport.FRAMED_TCP, addr)
    except MessageIOError as exc:
        handler.stop()
        print(exc, file=sys.stderr)
        return 1
    print(f"discovery server running on FRAMED_TCP {format_address(local)}", flush=True)
    participants: dict[Endpoint, tuple[str, str]] = {}  # connection -> (name, UDP address)

    def tell_everyone(message: dict[str, object], but: Endpoint) -> None:
        data = encode(message)
        for endpoint in participants:
            if endpoint != but:
                send(endpoint, data)

    def send(endpoint: Endpoint, data: bytes) -> None:
        status = handler.network.send(endpoint, data)
        if status is not SendStatus.SENT:  # QUEUE_FULL: it reads nothing; or just gone
            print(f"could not tell {format_address(endpoint.addr)}: {status.name}", flush=True)

    def register(endpoint: Endpoint, name: str, udp_addr: str) -> None:
        if any(known == name for known, _ in participants.values()):
            print(f"refused {name} from {format_address(endpoint.addr)}: name taken", flush=True)
            send(endpoint, encode({"type": "refused", "reason": f"the name {name} is taken"}))
            return
        others = [{"name": n, "addr": a} for n, a in participants.values()]
        send(endpoint, encode({"type": "participants", "participants": others}))
        tell_everyone({"type": "joined", "name": name, "addr": udp_addr}, but=endpoint)
        participants[endpoint] = (name, udp_addr)
        print(f"{name} registered, UDP {udp_addr} (total: {len(participants)})", flush=True)

    def leave(endpoint: Endpoint) -> None:
        entry = participants.pop(endpoint, None)
        if entry is not None:
            print(f"{entry[0]} left (total: {len(participants)})", flush=True)
            tell_everyone({"type": "left", "name": entry[0]}, but=endpoint)

    def on_event(event: message_io.NodeEvent[object]) -> None:
        match event:
            case Message(endpoint, data):
                match decode(data):
                    case {"type": "register", "name": str(name), "addr": str(udp_addr)} if (
                        endpoint not in participants
                        and valid_name(name)
                        and valid_udp_address(udp_addr)
                    ):
                        register(endpoint, name, udp_addr)
                    case _:
                        print(f"{format_address(endpoint.addr)} sent nonsense: dropped", flush=True)
                        handler.network.remove(endpoint)
                        leave(endpoint)
            case Disconnected(endpoint):
                leave(endpoint)
            case Accepted() | Connected() | Drained() | Signal():
                pass

    listener.for_each(on_event)
    return 0


# -- a participant -----------------------------------------------------------------------


def run_participant(name: str, server_addr: str, count: int | None) -> int:
    handler, listener = message_io.split()
    try:
        server, _ = handler.network.connect(Transport.FRAMED_TCP, server_addr)
    except MessageIOError as exc:
        handler.stop()
        print(exc, file=sys.stderr)
        return 1
    udp: ResourceId | None = None  # the UDP listener, from Connected on
    greeted: set[str] = set()  # participants this one greeted
    heard: set[str] = set()  # participants that greeted this one
    failed = False

    def done() -> None:
        if count is not None and len(greeted) >= count and len(heard) >= count:
            handler.stop()

    def fail(why: str) -> None:
        nonlocal failed
        print(why, flush=True)
        failed = True
        handler.stop()

    def greet(other: str, addr: str, text: str) -> None:
        if other == name or not valid_udp_address(addr) or udp is None:
            return
        # From the listening socket: the greeting's source is the address others know.
        greeting = encode({"type": "greeting", "name": name, "text": text})
        sent = handler.network.send(Endpoint.from_listener(udp, addr), greeting)
        if sent is not SendStatus.SENT:
            print(f"could not greet {other}: {sent.name}", flush=True)
            return
        greeted.add(other)
        done()

    def from_server(message: dict[str, object] | None) -> None:
        match message:
            case {"type": "participants", "participants": list(others)}:
                names = [
                    other["name"]
                    for other in others
                    if isinstance(other, dict) and isinstance(other.get("name"), str)
                ]
                print(f"already here: {', '.join(names) or 'nobody'}", flush=True)
                for other in others:
                    match other:
                        case {"name": str(other_name), "addr": str(addr)}:
                            greet(other_name, addr, "I see you in the participant list")
            case {"type": "joined", "name": str(other_name), "addr": str(addr)}:
                print(f"{other_name} joined, UDP {addr}", flush=True)
                greet(other_name, addr, "welcome to the network!")
            case {"type": "left", "name": str(other_name)}:
                print(f"{other_name} left", flush=True)
            case {"type": "refused", "reason": str(reason)}:
                fail(f"the discovery server refused {name}: {reason}")
            case _:
                print("the discovery server sent nonsense: ignored", flush=True)

    def on_event(event: message_io.NodeEvent[object]) -> None:
        nonlocal udp
        match event:
            case Connected(_, True):
                # Greetings go to the address this host has towards the server.
                local = handler.network.local_addr(server)
                assert isinstance(local, tuple)
                try:
                    udp, udp_local = handler.network.listen(Transport.UDP, (local[0], 0))
                except MessageIOError as exc:
                    fail(str(exc))
                    return
                udp_addr = format_address(udp_local)
                register = {"type": "register", "name": name, "addr": udp_addr}
                handler.network.send(server, encode(register))
                print(
                    f"{name} registers with {server_addr}, greetings on UDP {udp_addr}", flush=True
                )
            case Connected(_, False, error):
                fail(str(error or f"cannot connect to {server_addr}"))
            case Message(endpoint, data) if endpoint == server:
                from_server(decode(data))
            case Message(_, data):
                match decode(data):
                    case {"type": "greeting", "name": str(other), "text": str(text)} if (
                        valid_name(other) and text.isprintable()
                    ):
                        print(f"{other} says: {text}", flush=True)
                        heard.add(other)
                        done()
                    case _:
                        print(f"ignored a datagram of {len(data)} bytes", flush=True)
            case Disconnected(_):
                fail("the discovery server is gone")
            case Accepted() | Drained() | Signal():
                pass

    listener.for_each(on_event)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distributed", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("discovery-server", help="introduce the participants")
    server.add_argument("addr", nargs="?", default=DEFAULT_SERVER, help="where to listen")
    participant = sub.add_parser("participant", help="join and greet the others")
    participant.add_argument("name", help="the name this participant registers")
    participant.add_argument(
        "server", nargs="?", default=DEFAULT_SERVER, help="the discovery server's address"
    )
    participant.add_argument(
        "--count",
        type=int,
        default=None,
        help="exit after greeting this many others and hearing this many greetings",
    )
    args = parser.parse_args(argv)
    try:
        if args.role == "discovery-server":
            return run_server(args.addr)
        if not valid_name(args.name):
            parser.error(f"a name is 1 to {MAX_NAME} printable characters, no outer spaces")
        return run_participant(args.name, args.server, args.count)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
