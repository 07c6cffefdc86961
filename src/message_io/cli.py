"""``python -m message_io`` (or ``message-io``): listen on or connect to any transport.

A tool to poke at a server, in the spirit of ``python -m websockets URI``::

    message-io listen framed-tcp 127.0.0.1:3042 --echo
    message-io connect framed-tcp 127.0.0.1:3042
    message-io connect ws ws://127.0.0.1:8080/chat --text

``listen`` prints each message it receives on standard output, prefixed with the
sender's address; ``--echo`` also sends it back. ``connect`` sends each line of standard
input as one message (without its newline) and prints each message it receives; at the
end of the input it waits for its messages to leave, then exits (``--wait SECONDS``: after
printing what arrives that long). Messages are shown as
text when they are printable UTF-8, else as ``hex:`` and their bytes. What happens to
connections (listening, connected, a peer joining or leaving) goes to standard error,
so standard output carries data only.

Exit status: 0 at the end of the input (once it has all left) or once the peer has left
(a connection-oriented transport: UDP has no connection to end); 1 when the address
cannot be listened on or connected to, or when some input could not be sent (refused,
or not read by the peer within ``--drain`` seconds of the end of the input); 2 for a
usage error; 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import Any, Final, TextIO

from . import __version__
from .errors import ConnectError, MessageIOError
from .network.address import format_address
from .network.endpoint import Endpoint
from .network.net_event import Accepted, Connected, Disconnected, Message, TextMessage
from .network.transport import Transport
from .node import NodeEvent, Signal, split

__all__ = ["main", "show"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it

_END: Final = object()  # the signal that ends --wait


def show(data: bytes | str) -> str:
    """How a message is printed: its text if it is printable UTF-8 (a trailing newline
    aside), else ``hex:`` and its bytes; ``(empty)`` for an empty one."""
    if not data:
        return "(empty)"
    if isinstance(data, bytes):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return "hex: " + data.hex(" ")
    else:
        text = data
    body = text[:-1] if text.endswith("\n") else text
    if body.replace("\t", " ").isprintable():
        return body
    return "hex: " + text.encode().hex(" ")


def _name(transport: Transport) -> str:
    """A transport's name as the command line spells it: ``framed-tcp``."""
    return transport.name.lower().replace("_", "-")


def _transport(name: str) -> Transport:
    key = name.upper().replace("-", "_")
    for transport in Transport.all():
        if transport.name == key or transport.name.replace("_", "") == key:
            return transport
    names = ", ".join(_name(t) for t in Transport.all())
    raise argparse.ArgumentTypeError(f"unknown transport {name!r} (one of: {names})")


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(_name(t) for t in Transport.all())
    parser = argparse.ArgumentParser(
        prog="message-io",
        description="Listen on or connect to any message-io transport, from the shell.",
        epilog=(
            f"Transports: {names}. Addresses: 127.0.0.1:3042, [::1]:3042, "
            "ws://host:port/path, a socket path for unix. Data goes to standard output, "
            "what happens to connections to standard error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"message-io {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listen = commands.add_parser(
        "listen",
        help="listen and print what arrives",
        description="Listen on ADDR and print every message received, with its sender.",
    )
    listen.add_argument("transport", type=_transport, metavar="TRANSPORT")
    listen.add_argument("addr", metavar="ADDR", help="where to listen (port 0: any free)")
    listen.add_argument("--echo", action="store_true", help="send every message back")

    connect = commands.add_parser(
        "connect",
        help="connect; send stdin lines, print what arrives",
        description=(
            "Connect to ADDR, send each line of standard input as one message, and print "
            "every message received. Ends at the end of the input or when the peer leaves."
        ),
    )
    connect.add_argument("transport", type=_transport, metavar="TRANSPORT")
    connect.add_argument("addr", metavar="ADDR", help="where to connect")
    connect.add_argument(
        "--text", action="store_true", help="send lines as text messages (WebSocket text frames)"
    )
    connect.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the end of the input, go on printing what arrives this long (default: 0)",
    )
    connect.add_argument(
        "--drain",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="at the end of the input, how long the peer may take to read what is queued "
        "(default: 10); past it, status 1",
    )
    connect.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to try to connect (default: 10)",
    )
    return parser


def _say(err: TextIO, text: str) -> None:
    print(f"message-io: {text}", file=err, flush=True)


def _reason(exc: BaseException, what: str) -> str:
    """``what`` failed because of ``exc``, in one line, without saying ``what`` twice
    (the library's errors already name the address)."""
    text = str(exc)
    return text if text.startswith(what) else f"{what}: {text}"


def _address(addr: Any) -> str:
    """An address as printed: ``host:port`` for an IP address, else as it is (a path)."""
    return format_address(addr) if isinstance(addr, tuple) else str(addr)


def _peer(endpoint: Endpoint) -> str:
    return _address(endpoint.addr) or "(unnamed)"


def _listen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handler, listener = split()
    network = handler.network
    try:
        _listener_id, local = network.listen(args.transport, args.addr)
    except (OSError, MessageIOError, ValueError) as exc:
        handler.stop()
        _say(err, _reason(exc, f"cannot listen on {args.addr}"))
        return EXIT_FAILED
    _say(err, f"listening on {_name(args.transport)} {_address(local)}")

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Message):
            print(f"{_peer(event.endpoint)} {show(event.data)}", file=out, flush=True)
            if args.echo:
                reply = event.text if isinstance(event, TextMessage) else event.data
                status = network.send(event.endpoint, reply)
                if status.name != "SENT":
                    _say(err, f"echo to {_peer(event.endpoint)} not sent: {status.name}")
        elif isinstance(event, Accepted):
            _say(err, f"{_peer(event.endpoint)} connected")
        elif isinstance(event, Disconnected):
            _say(err, f"{_peer(event.endpoint)} left")

    listener.for_each(on_event)  # until Ctrl+C
    return EXIT_OK


def _connect(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    handler, listener = split()
    network = handler.network
    try:
        endpoint, local = network.connect_sync(args.transport, args.addr, timeout=args.timeout)
    except (OSError, MessageIOError, ValueError) as exc:
        handler.stop()
        _say(err, _reason(exc, f"cannot connect to {args.addr}"))
        return EXIT_FAILED
    _say(err, f"connected to {_peer(endpoint)} (from {_address(local) or 'an unnamed socket'})")

    failed: list[str] = []  # why the input was not all sent, if it was not

    def send_lines() -> None:
        # Bytes, not text: a line that is not UTF-8 is sent as it is (or, with --text,
        # refused with a clear message).
        lines = getattr(stdin, "buffer", None) or (line.encode() for line in stdin)
        try:
            for line in lines:
                raw = line[:-1] if line.endswith(b"\n") else line
                data: bytes | str = raw.decode() if args.text else raw
                status = network.send_wait(endpoint, data)
                if status.name != "SENT":
                    failed.append(f"a message of {len(raw)} bytes was not sent: {status.name}")
                    break
            else:
                if not network.wait_drained(endpoint, args.drain):  # the last ones
                    left = network.pending_bytes(endpoint)
                    failed.append(
                        f"{left} bytes not sent: the peer did not read them in {args.drain:g} s"
                        if left
                        else "the connection closed before all the input was sent"
                    )
                if not failed and args.wait > 0:  # answers may come: stop at the timer
                    handler.signals.send_with_timer(_END, args.wait)
                    return
        except UnicodeDecodeError as exc:
            failed.append(f"--text needs UTF-8 lines: {exc}")
        except TypeError as exc:  # str on a transport without text messages
            failed.append(f"{exc} (--text is for transports with text messages: ws)")
        except MessageIOError:
            pass  # the node stopped meanwhile (the peer left, or Ctrl+C)
        except Exception as exc:  # noqa: BLE001 - said, and the tool ends instead of hanging
            failed.append(f"{type(exc).__name__}: {exc}")
        handler.stop()

    def on_event(event: NodeEvent[Any]) -> None:
        if isinstance(event, Message):
            print(show(event.data), file=out, flush=True)
        elif isinstance(event, Disconnected):
            _say(err, "the peer left")
            handler.stop()
        elif isinstance(event, Signal) and event.value is _END:
            handler.stop()
        elif isinstance(event, Connected):
            pass  # connect_sync already said so

    reader = threading.Thread(target=send_lines, name="message-io-stdin", daemon=True)
    reader.start()
    listener.for_each(on_event)
    for reason in failed:
        _say(err, reason)
    return EXIT_FAILED if failed else EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` by default); return the exit status.

    Raises:
        SystemExit: for ``--help``, ``--version`` and usage errors (status 2), as
            :mod:`argparse` does.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        if args.command == "listen":
            return _listen(args, out, err)
        return _connect(args, out, err, stdin or sys.stdin)
    except KeyboardInterrupt:
        _say(err, "interrupted")
        return EXIT_INTERRUPTED
    except ConnectError as exc:  # pragma: no cover - reported above; a last resort
        _say(err, str(exc))
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
