"""A message-io WebSocket echo server for Autobahn|Testsuite's ``fuzzingclient``.

Text frames are echoed as text, binary frames as binary, each as one whole message.
Backpressure is honoured: a message the node refuses (``QUEUE_FULL``) waits, in order,
until ``Drained``.

::

    python tools/autobahn/echo_server.py 127.0.0.1:9002
    python tools/autobahn/echo_server.py 127.0.0.1:9443 --tls   # wss, throwaway cert

Once listening it prints ``listening on HOST:PORT`` (and flushes), so a driver can wait
for that line. It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from collections import deque
from pathlib import Path
from types import FrameType
from typing import Any

import message_io
from message_io import (
    Accepted,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    SendStatus,
    TextMessage,
    Transport,
    WsListenConfig,
)

MAX_MESSAGE_SIZE = 2**25
# Cases 9.3.* and 9.4.* send one message in up to 65,536 fragments (64 KiB in 1-byte
# pieces): more than the default cap of 4096 fragments per message, so raised here.
MAX_FRAGMENTS = 65537
"""Autobahn 9.1.6 sends 16 MiB; websockets' compliance server allows 32 MiB too."""

SEND_BUFFER_LIMIT = 64 * 1024 * 1024
"""Room for a few whole 16 MiB echoes before backpressure kicks in."""


def _self_signed(directory: Path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (wstest does not verify it)."""
    import trustme  # noqa: PLC0415  # a test dependency, needed only for --tls

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def serve(addr: str, *, tls: bool) -> None:
    """Echo every WebSocket message on ``addr`` until a SIGTERM or SIGINT."""
    handler, listener = message_io.split()
    backlog: dict[Endpoint, deque[bytes | str]] = {}

    def stop(_signum: int, _frame: FrameType | None) -> None:
        handler.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def send(endpoint: Endpoint, data: bytes | str) -> None:
        waiting = backlog.get(endpoint)
        if waiting:
            waiting.append(data)
            return
        status = handler.network.send(endpoint, data)
        if status is SendStatus.QUEUE_FULL:
            backlog.setdefault(endpoint, deque()).append(data)
        elif status is not SendStatus.SENT:
            logging.warning("echo to %s: %s", endpoint, status.value)

    def flush(endpoint: Endpoint) -> None:
        waiting = backlog.get(endpoint)
        while waiting:
            status = handler.network.send(endpoint, waiting[0])
            if status is SendStatus.QUEUE_FULL:
                return  # another Drained follows
            waiting.popleft()
        backlog.pop(endpoint, None)

    def on_event(event: Any) -> None:
        match event:
            case TextMessage(endpoint, _data, text):
                send(endpoint, text)
            case Message(endpoint, data):
                send(endpoint, data)
            case Drained(endpoint):
                flush(endpoint)
            case Disconnected(endpoint):
                backlog.pop(endpoint, None)
            case Accepted():
                pass

    with tempfile.TemporaryDirectory(prefix="autobahn-cert-") as tmp:
        certfile, keyfile = _self_signed(Path(tmp)) if tls else (None, None)
        config = WsListenConfig(
            max_message_size=MAX_MESSAGE_SIZE,
            max_fragments=MAX_FRAGMENTS,
            send_buffer_limit=SEND_BUFFER_LIMIT,
            certfile=certfile,
            keyfile=keyfile,
        )
        _listener_id, local = handler.network.listen(Transport.WS, addr, config=config)
        shown = local if isinstance(local, str) else f"{local[0]}:{local[1]}"
        print(f"listening on {shown}", flush=True)
        listener.for_each(on_event)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", nargs="?", default="127.0.0.1:9002", help="host:port to listen on")
    parser.add_argument("--tls", action="store_true", help="speak wss with a throwaway cert")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="echo_server %(levelname)s %(message)s")
    serve(args.addr, tls=args.tls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
