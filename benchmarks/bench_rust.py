"""The Rust crate message-io's own WebSocket throughput, beside message_io's, in one run.

The Rust crate ships an example, ``examples/throughput``, that sends 1 GiB over
loopback in chunks of 65,507 bytes (``udp::MAX_LOCAL_PAYLOAD_LEN``), once per transport:
one node listens and connects to itself, the main thread sends with
``handler.network().send`` until the node's callback has counted 1 GiB received, and
prints that as GB/s (10^9 bytes/s), the time taken from the first send to the callback
that sees the last byte.

That binary is not built here: it needs the crate's sources and their dependencies,
which a machine without crates.io does not have. Given its path in
``MESSAGE_IO_RUST_THROUGHPUT`` (built with ``cargo build --release --example
throughput`` from the crate's sources), the WS bulk section gets more rows:

* *Rust message-io Ws, its throughput example*: a sample is one run of the binary, its
  ``message-io Ws`` line read (the binary also measures its other transports; only the
  WS figure is taken);
* *message_io WS, one process, as the Rust example*: the same shape in Python, one
  ``message_io`` node connected to itself over ``Transport.WS``, the main thread sending
  65,507-byte messages while the node runs ``for_each_async`` (``wait_drained`` after
  ``QUEUE_FULL``) until its callback has counted 1 GiB, timed the same way;
* the same with ``unsent_limit`` (``TCP_NOTSENT_LOWAT``) at :data:`UNSENT_LIMIT` on both
  ends' configs, the option made for a sender and a receiver in one process.

Without the variable, neither row is run.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from typing import Any, Final

from bench_common import HOST, BenchmarkError

import message_io
from message_io import Accepted, Message, SendStatus, Transport, WsConnectConfig, WsListenConfig

__all__ = ["CHUNK", "ENV", "TOTAL", "UNSENT_LIMIT", "example", "mio_one_process_ws", "rust_ws"]

ENV: Final = "MESSAGE_IO_RUST_THROUGHPUT"
CHUNK: Final = 65_507  # the example's chunk: udp::MAX_LOCAL_PAYLOAD_LEN
TOTAL: Final = 1024 * 1024 * 1024  # the example's EXPECTED_BYTES
UNSENT_LIMIT: Final = 64 * 1024  # the unsent_limit of the tuned one-process row
_TIMEOUT: Final = 120.0
_WS_LINE: Final = re.compile(r"^message-io Ws:\s+Throughput:\s+([0-9.]+)\s+GB/s\s*$", re.M)


def example() -> str | None:
    """The Rust example's binary given in :data:`ENV`, or None (those rows are skipped)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{ENV}={path}: not an executable file")
    return path


def rust_ws(path: str) -> float:
    """One run of the Rust example: its message-io Ws throughput, GB/s."""
    result = subprocess.run([path], capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    found = _WS_LINE.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise BenchmarkError(
            f"{path} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return float(found.group(1))


def mio_one_process_ws(unsent_limit: int | None = None) -> float:
    """The Rust example's shape with message_io: GB/s (10^9 bytes/s). ``unsent_limit``:
    that option of both ends' configs (default: the default, none)."""
    handler, listener = message_io.split()
    network = handler.network
    listen_config = WsListenConfig(unsent_limit=unsent_limit)
    connect_config = WsConnectConfig(unsent_limit=unsent_limit)
    _, addr = network.listen(Transport.WS, f"{HOST}:0", config=listen_config)
    server, _ = network.connect_sync(Transport.WS, f"ws://{HOST}:{addr[1]}/", config=connect_config)
    accepted = threading.Event()
    done = threading.Event()
    received = 0
    t_end = 0.0

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal received, t_end
        if event.__class__ is Message:
            received += len(event.data)
            if received >= TOTAL and not done.is_set():
                t_end = time.perf_counter()
                done.set()
                handler.stop()
        elif event.__class__ is Accepted:
            accepted.set()

    send = network.send
    full, sent = SendStatus.QUEUE_FULL, SendStatus.SENT
    message = b"\xff" * CHUNK
    with listener.for_each_async(on_event) as task:
        if not accepted.wait(_TIMEOUT):
            raise BenchmarkError("the node did not accept its own connection")
        t_start = time.perf_counter()
        for _ in range(-(-TOTAL // CHUNK)):
            status = send(server, message)
            while status is full:
                if not network.wait_drained(server, _TIMEOUT):
                    raise BenchmarkError("wait_drained failed")
                status = send(server, message)
            if status is not sent:
                raise BenchmarkError(f"send returned {status}")
        if not done.wait(_TIMEOUT):
            raise BenchmarkError(f"received {received:,} bytes of {TOTAL:,}")
        task.wait(_TIMEOUT)
    return TOTAL / (t_end - t_start) / 1e9
