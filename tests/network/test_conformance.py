"""The conformance suite (:mod:`message_io.testing`) on the built-in IP transports.

TCP, FramedTcp and WebSocket get a raw peer (a TCP socket, upgraded by hand for
WebSocket) and their wire formats, so every test of the suite runs on them. UDP is
connectionless: the suite runs its echo, largest message and payload copy tests, and
skips the rest. ``Transport.UNIX`` runs the suite in ``test_unix.py``.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from websockets.frames import Close, Frame, Opcode

from message_io import Transport
from message_io.codec.framing import frame_header
from message_io.testing import TransportSuite

from .conftest import raw_stream, ws_upgrade


class _IpSuite(TransportSuite):
    """The hooks every transport over TCP shares (not collected: no ``Test`` prefix)."""

    def refused_address(self) -> object:
        # A bound socket that never listens: the kernel refuses connections to its port,
        # and nobody else can take the port while we hold it.
        sock = self.keep(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.bind(("127.0.0.1", 0))
        address: tuple[str, int] = sock.getsockname()
        return address

    def raw_connect(self, addr: Any, *, rcvbuf: int | None = None) -> socket.socket:
        return raw_stream(addr, rcvbuf=rcvbuf)


class TestTcp(_IpSuite):
    """A byte stream: the suite compares streams, and has no garbage to send."""

    transport: ClassVar[Transport] = Transport.TCP


class TestFramedTcp(_IpSuite):
    transport: ClassVar[Transport] = Transport.FRAMED_TCP

    def wire(self, payload: bytes) -> bytes:
        return frame_header(len(payload)) + payload

    def garbage(self) -> bytes:
        return b"\xff" * 11  # a varint that never ends: not a frame header


class TestWs(_IpSuite):
    transport: ClassVar[Transport] = Transport.WS
    has_handshake: ClassVar[bool] = True

    def raw_connect(self, addr: Any, *, rcvbuf: int | None = None) -> socket.socket:
        sock = super().raw_connect(addr, rcvbuf=rcvbuf)
        try:
            ws_upgrade(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def wire(self, payload: bytes) -> bytes:
        return Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])

    def client_wire(self, payload: bytes) -> bytes:
        return Frame(Opcode.BINARY, payload).serialize(mask=True, extensions=[])  # clients mask

    def farewell_wire(self) -> bytes:
        close = Close(1000, "").serialize()
        return Frame(Opcode.CLOSE, close).serialize(mask=False, extensions=[])

    def garbage(self) -> bytes:
        return self.wire(b"unmasked")  # a client must mask its frames: a protocol error


class TestUdp(TransportSuite):
    """Connectionless: the suite runs what applies to datagrams."""

    transport: ClassVar[Transport] = Transport.UDP
