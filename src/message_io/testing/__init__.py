"""A conformance suite for transports: run the library's behaviour tests on your adapter.

The suite needs pytest (``pip install 'message-io[testing]'``); ``import message_io``
never imports this package. Subclass :class:`TransportSuite` in a test module and pytest collects
its tests, run against your transport::

    import itertools
    import socket
    from message_io import register_transport
    from message_io.testing import TransportSuite

    MY = register_transport("MY", MyAdapter())
    names = itertools.count()

    class TestMyTransport(TransportSuite):
        transport = MY

        def listen_address(self) -> object:  # a fresh address per listener
            return str(self.workdir / f"{next(names)}.sock")

        # Optional: a raw peer, for the tests of bad input, slow readers and resets.
        def raw_connect(self, addr, *, rcvbuf=None) -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(10)
            sock.connect(addr)
            return sock

        def wire(self, payload: bytes) -> bytes:  # one message, as written on the socket
            return my_header(len(payload)) + payload

        def garbage(self) -> bytes:  # bytes no peer may send
            return b"\\xff" * 11

What the suite proves (each test's docstring says more):

* echo with 1 and with 100 clients, each answered on its own endpoint;
* a burst of 200,000 messages arrives complete and in order, through backpressure;
* the largest message (``max_message_size``, or 8 MiB for an unlimited transport)
  arrives intact, and one byte more is refused;
* 8 threads sending on one connection at once never interleave messages;
* backpressure: a peer that stops reading makes ``send`` return ``QUEUE_FULL``;
  ``Drained`` follows once it reads again, with nothing lost or reordered;
* ``remove`` by resource id and by endpoint; a stopped peer is ``Disconnected``;
  a refused connect is ``Connected(endpoint, False, error)`` (or raises at once, for a
  transport that says so in ``refuses_at_once``) and ``connect_sync`` raises;
* ``connect_sync``, send statuses, events and data that arrive before the loop runs;
* with a raw peer: garbage disconnects only that peer, the wire format both ways,
  queued bytes written after ``remove``, ``message_timeout`` and ``idle_timeout``,
  ``send_wait``, ``pause_reading``, and a reset of a paused connection.

The suite reads what the transport says about itself: on a byte stream (not
``is_packet_based``, like ``Transport.TCP``) it compares the bytes received, not the
messages; a transport that is not ``is_connection_oriented`` (like ``Transport.UDP``)
runs the echo, the largest message and the copy of mutable payloads, and skips the
tests about connections. A skipped test always says why.

The building blocks are public too: :class:`RecordingNode` (a node in a background
thread whose events land in a queue), :class:`Worker`, and a few waiting helpers. All
waits are on events with a timeout (:data:`TIMEOUT` seconds), never ``sleep``.
"""

from __future__ import annotations

from ._base import SuiteBase
from ._nodes import (
    TIMEOUT,
    Hook,
    RecordingNode,
    Worker,
    assert_same_bytes,
    kernel_send_capacity,
    recv_exactly,
    send_all,
)
from ._suite import TransportSuite

__all__ = [
    "TIMEOUT",
    "Hook",
    "RecordingNode",
    "SuiteBase",
    "TransportSuite",
    "Worker",
    "assert_same_bytes",
    "kernel_send_capacity",
    "recv_exactly",
    "send_all",
]
