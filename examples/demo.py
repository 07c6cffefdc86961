"""The demo: an echo server and clients on every built-in transport, in one process.

For each transport a server node echoes what it receives, and a client node connects
three clients, sends each a few messages, checks the echoes, and disconnects. It prints
what happens and exits by itself (status 0 if every echo came back).

    make demo          # or: python examples/demo.py
"""

from __future__ import annotations

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

CLIENTS = 3
MESSAGES = ["hello", "how are you?", "bye"]


def echo_server(transport: Transport) -> tuple[message_io.NodeTask, str]:
    handler, listener = message_io.split()
    _, local_addr = handler.network.listen(transport, "127.0.0.1:0")

    def on_event(event: message_io.NodeEvent[object]) -> None:
        match event:
            case Accepted(endpoint, _):
                print(f"  server: client {endpoint.addr[1]} connected")
            case Message(endpoint, data):
                handler.network.send(endpoint, data)
            case Disconnected(endpoint):
                print(f"  server: client {endpoint.addr[1]} disconnected")
            case Connected() | Drained() | Signal():
                pass

    task = listener.for_each_async(on_event, name=f"demo-{transport.name}-server")
    return task, format_address(local_addr)


def run_clients(transport: Transport, addr: str) -> bool:
    handler, listener = message_io.split()
    received: dict[Endpoint, list[bytes]] = {}
    ok = True
    for _ in range(CLIENTS):
        endpoint, _ = handler.network.connect(transport, addr)
        received[endpoint] = []

    def on_event(event: message_io.NodeEvent[object]) -> None:
        nonlocal ok
        match event:
            case Connected(endpoint, established):
                if not established:
                    print(f"  client: could not connect to {addr}")
                    ok = False
                    handler.stop()
                    return
                for text in MESSAGES:
                    handler.network.send(endpoint, text.encode())
            case Message(endpoint, data):
                received[endpoint].append(data)
                echoed = b"".join(received[endpoint])
                if len(echoed) >= sum(len(m) for m in MESSAGES):
                    expected = "".join(MESSAGES).encode()
                    good = echoed == expected
                    ok = ok and good
                    print(f"  client {endpoint.resource_id}: echo {'ok' if good else 'WRONG'}")
                    handler.network.remove(endpoint.resource_id)
                    del received[endpoint]
                    if not received:
                        handler.stop()
            case Accepted() | Disconnected() | Drained() | Signal():
                pass

    with listener.for_each_async(on_event, name=f"demo-{transport.name}-clients") as task:
        finished = task.wait(timeout=10)
    if not finished:
        print("  client: timed out")
    return ok and finished


def main() -> int:
    all_ok = True
    for transport in (Transport.FRAMED_TCP, Transport.TCP):
        server, addr = echo_server(transport)
        print(f"{transport.name}: echo server on {addr}")
        ok = run_clients(transport, addr)
        with server:  # leaving the block stops the server node and joins its thread
            pass
        print(f"{transport.name}: {'every echo came back' if ok else 'FAILED'}\n")
        all_ok = all_ok and ok
    print("demo finished:", "all transports ok" if all_ok else "some transport failed")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
