"""File transfer: a sender streams a file to a receiver, which checks it and keeps it.

Start the receiver, then the sender, giving Python the path of this folder: here from
the checkout's root, from anywhere else with the path changed
(``python path/to/examples/file_transfer ...``), once message-io is installed
(``pip install -e .``)::

    python examples/file_transfer receiver 127.0.0.1:3005 --dir downloads
    python examples/file_transfer sender report.pdf 127.0.0.1:3005

As in the Rust example, the sender first asks (the file's name and size) and the
receiver accepts or refuses; then the file goes in chunks of 64 KiB, and last comes its
SHA-256. The receiver writes the chunks to a temporary file in ``--dir`` (the current
directory by default), checks the size and the hash, and only then gives the file its
name: the sender's name without any folder in it (a sender cannot write outside
``--dir``), and never over an existing file (``report-1.pdf`` if ``report.pdf`` is
taken). It answers with its verdict, which both sides print. A failed transfer (a size
or hash mismatch, a sender gone midway) leaves no file, and both exit with status 1.

The sender never loses data to backpressure and never blocks the event loop: it sends
a batch of chunks per turn of the loop while the connection's queue has room; when the
queue is full, ``request_drained`` asks for a ``Drained`` event and the sending goes on
from there. So the file is read as fast as the network takes it, and no faster.

Both sides show a progress bar with the rate and the time left, drawn by ``tqdm`` when
it is installed (``pip install tqdm``), else by a plain progress line;
``--plain-progress`` asks for the plain line even with ``tqdm``.

The receiver exits after one file (``--count N``: after N, ``--count 0``: never), with
status 1 if one of them failed. ``--transport`` is ``framed-tcp`` (the default, as in
the Rust example), ``ws`` (the address may be a ``ws://`` URL for the sender) or ``unix``
(the address is a socket path), the message transports: both sides must use the same::

    python examples/file_transfer receiver /tmp/files.sock --transport unix
    python examples/file_transfer sender report.pdf /tmp/files.sock --transport unix
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import itertools
import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Protocol

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
)
from message_io.network.adapter import format_address

DEFAULT_ADDR = "127.0.0.1:3005"  # the Rust example's
CHUNK_SIZE = 64 * 1024  # the Rust example's
BATCH = 64  # chunks per turn of the loop (4 MiB), so that other events get their turn

TRANSPORTS = {"framed-tcp": Transport.FRAMED_TCP, "ws": Transport.WS, "unix": Transport.UNIX}

# The messages, each a one-byte tag and its fields:
REQUEST = b"R"  # sender: the file's size (8 bytes, big-endian) and its name (UTF-8)
ANSWER = b"A"  # receiver: 1 (send it) or 0 and why not (UTF-8)
CHUNK = b"C"  # sender: the next bytes of the file
END = b"E"  # sender: the SHA-256 of everything sent (32 bytes)
VERDICT = b"V"  # receiver: 1 (kept) or 0, and what it did or found (UTF-8)
_SIZE = struct.Struct(">Q")


def human(size: float) -> str:
    """``size`` bytes in binary units, one decimal: ``4.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def peer(endpoint: Endpoint) -> str:
    """How to name a sender: its address (a Unix socket's clients have none)."""
    return format_address(endpoint.addr) or f"a local client ({endpoint.resource_id})"


# -- progress ----------------------------------------------------------------------------


class Progress(Protocol):
    """What the transfer needs of a progress bar: ``tqdm`` has these two."""

    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class PlainProgress:
    """A progress line for when ``tqdm`` is not there: bytes done, percentage, rate, ETA.

    On a terminal the line is redrawn in place a few times a second; otherwise (a log, a
    pipe) a new line is written every few seconds. ``close`` writes the final state.
    """

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else 2.0  # seconds between two lines
        self.done = 0
        self.start = self.shown = time.monotonic()
        self.width = 0  # of the last line drawn in place
        self.closed = False

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.shown >= self.interval:
            self.shown = now
            self._show(now, final=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._show(time.monotonic(), final=True)

    def _show(self, now: float, *, final: bool) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.done // self.total if self.total else 100
        text = f"{self.label}: {human(self.done)} of {human(self.total)} ({percent}%)"
        text += f", {human(rate)}/s"
        if final:
            text += f", {elapsed:.1f} s"
        elif rate > 0:
            left = round((self.total - self.done) / rate)
            text += f", ETA {left // 3600}:{left // 60 % 60:02}:{left % 60:02}"
        if self.tty:
            self.width = max(self.width, len(text))
            self.stream.write("\r" + text.ljust(self.width) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def progress_bar(label: str, total: int, *, plain: bool) -> Progress:
    """A ``tqdm`` bar if ``tqdm`` can be imported (and ``plain`` is false), else a
    :class:`PlainProgress` line; on standard error either way."""
    if not plain:
        try:
            tqdm = importlib.import_module("tqdm")  # optional: not a dependency
        except ImportError:
            pass
        else:
            bar: Progress = tqdm.tqdm(
                total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024
            )
            return bar
    return PlainProgress(label, total)


# -- receiver ----------------------------------------------------------------------------


def safe_name(name: str) -> str | None:
    """The file name to keep a file under, from the name a sender gave: its last part
    (never a folder), or None if that is no ordinary file name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", "..") or len(base.encode()) > 200:  # room for "-N" and ".part"
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in base):  # terminal control codes
        return None
    return base


def keep(part: Path, folder: Path, name: str) -> Path:
    """Give the checked temporary file ``part`` its name in ``folder``: ``name``, or
    ``stem-1.ext``, ``stem-2.ext``... if taken. Never replaces a file."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in itertools.count():
        target = folder / (name if n == 0 else f"{stem}-{n}{suffix}")
        try:
            os.link(part, target)  # fails if the name is taken, even by a racing writer
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system: check, then rename
            if target.exists():
                continue
            part.rename(target)
            return target
        part.unlink()
        return target
    raise AssertionError("unreachable")


@dataclass
class Incoming:
    """A file being received."""

    name: str
    size: int
    part: Path  # the temporary file it is written to
    file: BinaryIO
    progress: Progress
    received: int = 0
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)


def run_receiver(
    transport: Transport, addr: str, folder: Path, count: int, plain_progress: bool
) -> int:
    handler, listener = message_io.split(str)
    try:
        _, local = handler.network.listen(transport, addr)
    except MessageIOError as exc:
        handler.stop()
        print(exc, file=sys.stderr)
        return 1
    print(
        f"receiver listening on {transport.name} {format_address(local)}, "
        f"saving into {folder.resolve()}",
        flush=True,
    )
    umask = os.umask(0o077)
    os.umask(umask)
    transfers: dict[Endpoint, Incoming] = {}
    answered: set[Endpoint] = set()  # senders told their verdict, not yet gone
    finished = failed = 0

    def settle(endpoint: Endpoint, ok: bool, text: str, *, tell: bool = True) -> None:
        """End a transfer: print the verdict, tell the sender, and exit when done."""
        nonlocal finished, failed
        incoming = transfers.pop(endpoint)
        incoming.progress.close()
        finished += 1
        if ok:
            print(f"received {incoming.name}: {text}", flush=True)
        else:
            failed += 1
            print(f"failed {incoming.name} from {peer(endpoint)}: {text}", flush=True)
        if tell:
            handler.network.send(endpoint, VERDICT + (b"\x01" if ok else b"\x00") + text.encode())
            answered.add(endpoint)
        if count and finished >= count:
            # Let the last verdict reach its sender: exit when it hangs up, or in 5 s.
            if answered:
                handler.signals.send_with_timer("exit", 5.0)
            else:
                handler.stop()

    def discard(incoming: Incoming) -> None:
        incoming.file.close()
        incoming.part.unlink(missing_ok=True)

    def request(endpoint: Endpoint, body: bytes) -> None:
        def refuse(reason: str) -> None:
            print(f"refused a file from {peer(endpoint)}: {reason}", flush=True)
            handler.network.send(endpoint, ANSWER + b"\x00" + reason.encode())

        if endpoint in transfers or len(body) < _SIZE.size:
            protocol_error(endpoint, "an unexpected request")
            return
        (size,) = _SIZE.unpack_from(body)
        try:
            name = safe_name(body[_SIZE.size :].decode())
        except UnicodeDecodeError:
            name = None
        if name is None:
            refuse("not a usable file name")
            return
        try:
            fd, part = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        except OSError as exc:
            refuse(f"cannot write in {folder}: {exc.strerror}")
            return
        file = os.fdopen(fd, "wb")
        print(f"receiving {name} ({human(size)}) from {peer(endpoint)}", flush=True)
        progress = progress_bar(f"receiving {name}", size, plain=plain_progress)
        transfers[endpoint] = Incoming(name, size, Path(part), file, progress)
        handler.network.send(endpoint, ANSWER + b"\x01")

    def chunk(endpoint: Endpoint, body: bytes) -> None:
        incoming = transfers.get(endpoint)
        if incoming is None:
            protocol_error(endpoint, "a chunk of no file")
            return
        incoming.received += len(body)
        if incoming.received > incoming.size:
            discard(incoming)
            settle(endpoint, False, f"more than the {incoming.size} bytes announced")
            return
        try:
            incoming.file.write(body)
        except OSError as exc:  # the disk is full...
            discard(incoming)
            settle(endpoint, False, f"cannot write it: {exc.strerror}")
            return
        incoming.sha256.update(body)
        incoming.progress.update(len(body))

    def end(endpoint: Endpoint, digest: bytes) -> None:
        incoming = transfers.get(endpoint)
        if incoming is None:
            protocol_error(endpoint, "the end of no file")
            return
        if incoming.received != incoming.size:
            discard(incoming)
            settle(
                endpoint,
                False,
                f"size mismatch: {incoming.received} of {incoming.size} bytes arrived",
            )
        elif digest != incoming.sha256.digest():
            discard(incoming)
            settle(endpoint, False, "SHA-256 mismatch: the file arrived damaged")
        else:
            try:
                incoming.file.close()  # writes what is buffered: it may fail too
                saved = keep(incoming.part, folder, incoming.name)
                saved.chmod(0o666 & ~umask)  # as for any new file (mkstemp made it private)
            except OSError as exc:
                discard(incoming)
                settle(endpoint, False, f"cannot keep it: {exc.strerror}")
                return
            text = f"{incoming.size} bytes, SHA-256 ok, saved as {saved.resolve()}"
            settle(endpoint, True, text)

    def protocol_error(endpoint: Endpoint, what: str) -> None:
        print(f"{peer(endpoint)} sent {what}: disconnecting it", flush=True)
        handler.network.remove(endpoint)  # no Disconnected event follows
        incoming = transfers.get(endpoint)
        if incoming is not None:
            discard(incoming)
            settle(endpoint, False, f"it sent {what}", tell=False)
        gone(endpoint)

    def gone(endpoint: Endpoint) -> None:
        """A sender left: exit if it was the last one waited for."""
        answered.discard(endpoint)
        if count and finished >= count and not answered:
            handler.stop()

    handlers = {REQUEST: request, CHUNK: chunk, END: end}

    def on_event(event: message_io.NodeEvent[str]) -> None:
        match event:
            case Message(endpoint, data):
                handle = handlers.get(data[:1])
                if handle is None:
                    protocol_error(endpoint, "an unknown message")
                else:
                    handle(endpoint, data[1:])
            case Disconnected(endpoint):
                incoming = transfers.get(endpoint)
                if incoming is not None:
                    discard(incoming)
                    text = f"the sender left after {incoming.received} of {incoming.size} bytes"
                    settle(endpoint, False, text, tell=False)
                gone(endpoint)
            case Signal("exit"):
                handler.stop()
            case Accepted() | Connected() | Drained() | Signal():
                pass

    try:
        listener.for_each(on_event)
    finally:
        for incoming in transfers.values():  # Ctrl+C: leave no temporary file behind
            discard(incoming)
    return 1 if failed else 0


# -- sender ------------------------------------------------------------------------------


def run_sender(transport: Transport, path: Path, addr: str, plain_progress: bool) -> int:
    try:
        file = path.open("rb")
        size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    handler, listener = message_io.split(str)
    try:
        server, _ = handler.network.connect(transport, addr)
    except MessageIOError as exc:
        handler.stop()
        file.close()
        print(exc, file=sys.stderr)
        return 1
    sha256 = hashlib.sha256()
    progress: Progress | None = None
    sending = False  # between the receiver's yes and the end of the file
    sent = 0
    status = 1

    def pump() -> None:
        """Send the next chunks, while the queue has room; then come back on a signal
        (to let other events in) or, when the queue is full, on ``Drained``."""
        nonlocal sending, sent
        assert progress is not None
        for _ in range(BATCH):
            if handler.network.request_drained(server):
                return  # full: Drained(server) calls pump again
            data = file.read(CHUNK_SIZE)
            if not data:  # the end of the file: the hash, then wait for the verdict
                sending = False
                handler.network.send(server, END + sha256.digest())
                progress.close()
                print(f"sent {sent} bytes, SHA-256 {sha256.hexdigest()}", flush=True)
                return
            result = handler.network.send(server, CHUNK + data)
            if result is not SendStatus.SENT:  # the receiver is gone (or going)
                print(f"cannot send: {result.name}", flush=True)
                handler.stop()
                return
            sha256.update(data)
            sent += len(data)
            progress.update(len(data))
        handler.signals.send("pump")

    def on_event(event: message_io.NodeEvent[str]) -> None:
        nonlocal progress, sending, status
        match event:
            case Connected(_, True):
                print(f"sending {path.name} ({human(size)}) to {addr}", flush=True)
                handler.network.send(server, REQUEST + _SIZE.pack(size) + path.name.encode())
            case Connected(_, False, error):
                print(error or f"cannot connect to {addr}", flush=True)
                handler.stop()
            case Message(_, data) if data[:2] == ANSWER + b"\x01":
                sending = True
                progress = progress_bar(f"sending {path.name}", size, plain=plain_progress)
                pump()
            case Message(_, data) if data[:1] == ANSWER:
                print(f"the receiver refused it: {data[2:].decode(errors='replace')}", flush=True)
                handler.stop()
            case Message(_, data) if data[:1] == VERDICT:
                ok = data[1:2] == b"\x01"
                print(f"receiver: {data[2:].decode(errors='replace')}", flush=True)
                status = 0 if ok else 1
                handler.stop()
            case Message(_, data):
                print(f"the receiver sent an unknown message ({len(data)} bytes)", flush=True)
                handler.stop()
            case Signal("pump") | Drained(_) if sending:
                pump()
            case Disconnected(_):
                print("the receiver disconnected before its verdict", flush=True)
                handler.stop()
            case Accepted() | Drained() | Signal():
                pass

    try:
        listener.for_each(on_event)
    finally:
        file.close()
        if progress is not None and sending:  # stopped midway: end the bar's line
            progress.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="file_transfer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    receiver = sub.add_parser("receiver", help="receive files")
    receiver.add_argument("addr", nargs="?", default=DEFAULT_ADDR, help="where to listen")
    receiver.add_argument("--dir", type=Path, default=Path(), help="where to save the files")
    receiver.add_argument(
        "--count", type=int, default=1, help="exit after this many files (0: never)"
    )
    sender = sub.add_parser("sender", help="send a file")
    sender.add_argument("file", type=Path)
    sender.add_argument("addr", nargs="?", default=DEFAULT_ADDR, help="the receiver's address")
    for role in (receiver, sender):
        role.add_argument("--transport", choices=TRANSPORTS, default="framed-tcp")
        role.add_argument(
            "--plain-progress", action="store_true", help="a plain progress line, even with tqdm"
        )
    args = parser.parse_args(argv)
    transport = TRANSPORTS[args.transport]
    try:
        if args.role == "receiver":
            if not args.dir.is_dir():
                parser.error(f"--dir {args.dir}: no such folder")
            return run_receiver(transport, args.addr, args.dir, args.count, args.plain_progress)
        return run_sender(transport, args.file, args.addr, args.plain_progress)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
