"""Multicast discovery: every instance hears the names of the others, with no server.

Run it in two terminals (the group defaults to 239.255.0.1:3010), giving Python the path
of this folder: here from the checkout's root, from anywhere else with the path changed
(``python path/to/examples/multicast alice``), once message-io is installed
(``pip install -e .``)::

    python examples/multicast alice
    python examples/multicast bob              # alice hears bob, bob hears alice

Each instance connects (UDP) to the multicast group and listens on it, which joins it,
with address and port reuse so that every instance on one host receives; on
``Connected`` it sends its name to the group. It prints each sender it hears (``alice hears
bob``), ignoring its own name, and sends its name again whenever it hears a sender that
is new to it, so that instances started earlier answer the newcomers (the Rust example
announces once, so an instance never hears those started before it). The datagram is
just the name, as in the Rust example.

On a machine with no default route (a container, a namespace with only loopback) the OS
cannot pick an interface for the group: name one with ``--interface``, by IPv4 address or
interface name (``--interface 127.0.0.1`` keeps the traffic on this host). It runs until
Ctrl+C; ``--count N`` exits after hearing N senders.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

import message_io
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    MessageIOError,
    SendStatus,
    Signal,
    Transport,
    UdpConnectConfig,
    UdpListenConfig,
)

DEFAULT_GROUP = "239.255.0.1:3010"


def multicast_group(text: str) -> str:
    """Check that ``text`` is ``ip:port`` (``[ipv6]:port``) with a multicast ip."""
    host, sep, port = text.rpartition(":")
    try:
        ip = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        valid = bool(sep) and 0 < int(port) < 65536 and ip.is_multicast
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a multicast group:port, e.g. {DEFAULT_GROUP}"
        )
    return text


def run(name: str, group: str, interface: str | int | None, count: int | None) -> int:
    handler, listener = message_io.split()
    try:
        config = UdpConnectConfig(multicast_interface=interface, multicast_loop=True)
        group_endpoint, _ = handler.network.connect(Transport.UDP, group, config=config)
        # Join now, before the loop runs: this instance announces itself on Connected, when
        # it is already in the group, so it cannot miss the answers of the others.
        handler.network.listen(
            Transport.UDP, group, config=UdpListenConfig(multicast_interface=interface)
        )
    except MessageIOError as exc:
        handler.stop()
        print(f"{name}: {exc}", file=sys.stderr)
        if interface is None:
            print("(no default route? give --interface ADDRESS, e.g. 127.0.0.1)", file=sys.stderr)
        return 1
    heard: set[Endpoint] = set()  # the senders heard, by address

    def announce() -> None:
        status = handler.network.send(group_endpoint, name.encode())
        if status is not SendStatus.SENT:
            print(f"{name} could not send its name: {status.name}", file=sys.stderr, flush=True)

    def on_event(event: message_io.NodeEvent[object]) -> None:
        match event:
            case Connected(_, True):  # at once: UDP has no handshake
                print(f"{name} joined {group}", flush=True)
                announce()
            case Connected(_, False):
                print(f"{name} cannot send to {group}", file=sys.stderr, flush=True)
                handler.stop()
            case Message(sender, data):
                other = data.decode(errors="replace")
                if other == name or sender in heard:
                    return
                heard.add(sender)
                print(f"{name} hears {other}", flush=True)
                announce()  # the newcomer may have started after our announcement
                if count is not None and len(heard) >= count:
                    handler.stop()
            case Accepted() | Disconnected() | Drained() | Signal():
                pass  # UDP has no connections to accept or lose

    listener.for_each(on_event)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multicast", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the name this instance announces")
    parser.add_argument(
        "group",
        nargs="?",
        default=DEFAULT_GROUP,
        type=multicast_group,
        help=f"multicast group:port (default {DEFAULT_GROUP})",
    )
    parser.add_argument(
        "--interface",
        metavar="ADDRESS",
        default=None,
        help="the interface for the group, by IPv4 address or name (e.g. 127.0.0.1, eth0)",
    )
    parser.add_argument(
        "--count", type=int, default=None, help="exit after hearing this many senders"
    )
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("the name must not be empty")
    interface: str | int | None = args.interface
    if isinstance(interface, str) and interface.isdigit():
        interface = int(interface)  # an interface index
    try:
        return run(args.name, args.group, interface, args.count)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
