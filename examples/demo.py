"""The demo: an echo server and clients on every built-in transport, in one process
(FramedTcp, TCP, UDP, WebSocket, and WebSocket over TLS with a throwaway certificate).

For each transport a server node echoes what it receives, and a client node connects
three clients, sends each a few messages, checks the echoes, and disconnects. It prints
what happens and exits by itself (status 0 if every echo came back).

    make demo          # or: python examples/demo.py

``python examples/demo.py`` is written for the checkout's root; from any other directory
give the path of this file (``python path/to/examples/demo.py``), once message-io is
installed (``pip install -e .``). It writes nothing but a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

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

CLIENTS = 3


def say(line: str) -> None:
    """Print one line in one write: server and client threads print at the same time."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


MESSAGES = ["hello", "how are you?", "bye"]


def _test_certificates(folder: Path) -> tuple[Path, Path] | None:
    """A throwaway CA and a certificate for localhost, for the wss run (needs trustme)."""
    try:
        import trustme  # noqa: PLC0415 - optional: a test dependency
    except ImportError:
        return None
    ca = trustme.CA()
    cert = folder / "server.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return cert, ca_file


def echo_server(transport: Transport, config: Any = None) -> tuple[message_io.NodeTask, str]:
    handler, listener = message_io.split()
    _, local_addr = handler.network.listen(transport, "127.0.0.1:0", config=config)

    def on_event(event: message_io.NodeEvent[object]) -> None:
        match event:
            case Accepted(endpoint, _):
                say(f"  server: client {endpoint.addr[1]} connected")
            case Message(endpoint, data):
                status = handler.network.send(endpoint, data)
                if status is not SendStatus.SENT:  # a client too slow to read its echoes
                    say(f"  server: echo to {endpoint.addr[1]} not sent: {status.name}")
            case Disconnected(endpoint):
                say(f"  server: client {endpoint.addr[1]} disconnected")
            case Connected() | Drained() | Signal():
                pass

    task = listener.for_each_async(on_event, name=f"demo-{transport.name}-server")
    return task, format_address(local_addr)


def run_clients(transport: Transport, addr: str, config: Any = None) -> bool:
    handler, listener = message_io.split()
    received: dict[Endpoint, list[bytes]] = {}
    ok = True
    for _ in range(CLIENTS):
        endpoint, _ = handler.network.connect(transport, addr, config=config)
        received[endpoint] = []

    def on_event(event: message_io.NodeEvent[object]) -> None:
        nonlocal ok
        match event:
            case Connected(endpoint, established):
                if not established:
                    say(f"  client: could not connect to {addr}")
                    ok = False
                    handler.stop()
                    return
                for text in MESSAGES:
                    status = handler.network.send(endpoint, text.encode())
                    if status is not SendStatus.SENT:
                        say(f"  client: could not send: {status.name}")
                        ok = False
            case Message(endpoint, data):
                received[endpoint].append(data)
                echoed = b"".join(received[endpoint])
                if len(echoed) >= sum(len(m) for m in MESSAGES):
                    expected = "".join(MESSAGES).encode()
                    good = echoed == expected
                    ok = ok and good
                    say(f"  client {endpoint.resource_id}: echo {'ok' if good else 'WRONG'}")
                    handler.network.remove(endpoint.resource_id)
                    del received[endpoint]
                    if not received:
                        handler.stop()
            case Accepted() | Disconnected() | Drained() | Signal():
                pass

    with listener.for_each_async(on_event, name=f"demo-{transport.name}-clients") as task:
        finished = task.wait(timeout=10)
    if not finished:
        say("  client: timed out")
    return ok and finished


def main() -> int:
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tls = _test_certificates(Path(tmp))
        runs: list[tuple[str, Transport, Any, Any, str]] = [
            ("FRAMED_TCP", Transport.FRAMED_TCP, None, None, "{}"),
            ("TCP", Transport.TCP, None, None, "{}"),
            ("UDP", Transport.UDP, None, None, "{}"),
            ("WS", Transport.WS, None, None, "ws://{}/demo"),
        ]
        if tls is not None:
            cert, ca = tls
            server_tls = WsListenConfig(certfile=str(cert))
            client_tls = WsConnectConfig(ca_file=str(ca))
            runs.append(("WSS", Transport.WS, server_tls, client_tls, "wss://localhost:{port}/"))
        else:
            say("WSS: skipped (the demo makes its certificate with trustme: pip install trustme)")
        for name, transport, listen_config, connect_config, url in runs:
            server, addr = echo_server(transport, listen_config)
            say(f"{name}: echo server on {addr}")
            target = url.format(addr, port=addr.rsplit(":", 1)[1])
            ok = run_clients(transport, target, connect_config)
            with server:  # leaving the block stops the server node and joins its thread
                pass
            say(f"{name}: {'every echo came back' if ok else 'FAILED'}\n")
            all_ok = all_ok and ok
    say("demo finished: " + ("all transports ok" if all_ok else "some transport failed"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
