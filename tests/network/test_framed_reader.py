"""``FrameReader`` (``network/framed_reader.py``): after a small read it asks the socket
for :data:`SMALL_READ` bytes, and goes back to its full size as soon as a read fills
that; no frame is lost or cut across the switch. (Compiled, the reader takes only a real
socket: the sizes asked for are not observed here, only what comes out.)"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator

import pytest

from message_io.codec.varint import encode_varint
from message_io.network.framed_reader import MAX_READ, SMALL_READ, FrameReader

from .conftest import TIMEOUT


def _frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


@pytest.fixture
def ends() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        yield a, b


def _send(peer: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread: more than the socket's buffer holds."""
    thread = threading.Thread(target=peer.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


def _read_all(reader: FrameReader, sock: socket.socket, count: int) -> list[bytes]:
    """Call ``read`` as the node would, whenever ``sock`` is readable, until ``count``
    frames came."""
    frames: list[bytes] = []
    while len(frames) < count:
        assert select.select([sock], [], [], TIMEOUT)[0], f"{len(frames)} of {count}"
        assert reader.read(frames) == 0
    return frames


def test_small_reads_then_a_burst(ends: tuple[socket.socket, socket.socket]) -> None:
    sock, peer = ends
    reader = FrameReader(sock, 1 << 20, 65536)
    peer.sendall(_frame(b"x"))
    assert _read_all(reader, sock, 1) == [b"x"]
    assert reader.small  # the next read asks for SMALL_READ bytes

    # More than SMALL_READ at once: the first read fills it, the next ones take the rest.
    burst = [bytes([n % 256]) * (n % 300) for n in range(2000)]
    sender = _send(peer, b"".join(_frame(payload) for payload in burst))
    assert _read_all(reader, sock, len(burst)) == burst
    sender.join(TIMEOUT)

    # One message larger than a small read, arriving alone.
    big = b"y" * (SMALL_READ * 4 + 7)
    peer.sendall(_frame(b"z"))
    assert _read_all(reader, sock, 1) == [b"z"]
    assert reader.small
    sender = _send(peer, _frame(big))
    assert _read_all(reader, sock, 1) == [big]
    sender.join(TIMEOUT)


def test_a_message_larger_than_both_read_sizes_after_a_small_read(
    ends: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = ends
    reader = FrameReader(sock, 1 << 20, 1024)
    peer.sendall(_frame(b"a"))
    _read_all(reader, sock, 1)
    assert reader.small
    payload = bytes(range(256)) * 20  # read in pieces of 479, then 1024 bytes
    peer.sendall(_frame(payload))
    assert _read_all(reader, sock, 1) == [payload]


class _Recording(socket.socket):
    """A socket that records the size of every ``recv`` (the reader's C socket calls
    fall back to the method for a subclass)."""

    def __init__(self, fileno: int) -> None:
        super().__init__(fileno=fileno)
        self.asked: list[int] = []

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not flags:
            self.asked.append(size)
        return super().recv(size, flags)


def test_a_trickled_large_payload_is_read_a_usual_read_at_a_time(
    ends: tuple[socket.socket, socket.socket],
) -> None:
    # Each read is allocated at the size it asks: after a short read of a large
    # payload, asking for all of its rest (up to 4 MiB) again would map and shrink a
    # block per byte the peer sends.
    sock, peer = ends
    with _Recording(sock.detach()) as recording:
        recording.setblocking(False)
        reader = FrameReader(recording, 4 << 20, 65536)
        payload = bytes(range(256)) * 8192  # 2 MiB
        wire = _frame(payload)
        head = len(wire) - len(payload)
        peer.sendall(wire[: head + 1])
        frames: list[bytes] = []
        for at in range(head + 1, head + 40):
            assert select.select([recording], [], [], TIMEOUT)[0]
            assert reader.read(frames) == 0
            peer.sendall(wire[at : at + 1])
        assert select.select([recording], [], [], TIMEOUT)[0]
        assert reader.read(frames) == 0
        assert frames == []
        assert max(recording.asked[-30:]) <= 65536
        sender = _send(peer, wire[head + 40 :])
        assert _read_all(reader, recording, 1) == [payload]
        sender.join(TIMEOUT)
        # Reads that fill up go back to asking for all of the rest.
        assert max(recording.asked) > 65536


def test_one_call_reads_at_most_max_read_bytes() -> None:
    """A call of the reader takes at most MAX_READ bytes (plus one usual read), however
    much the socket holds: what one connection adds to the node's unfinished messages
    between two checks of the node's cap is bounded by it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        peer = socket.create_connection(server.getsockname(), timeout=TIMEOUT)
        accepted, _ = server.accept()
    with peer, _Recording(accepted.detach()) as recording:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        recording.setblocking(False)
        reader = FrameReader(recording, 32 << 20, 65536)
        payload = bytes(range(256)) * (64 << 10)  # 16 MiB
        sender = _send(peer, _frame(payload))
        deadline = time.monotonic() + TIMEOUT
        buffered = 0
        while buffered < MAX_READ + (1 << 20) and time.monotonic() < deadline:
            buffered = struct.unpack("i", fcntl.ioctl(recording, termios.FIONREAD, b"\0" * 4))[0]
        assert buffered >= MAX_READ + (1 << 20), f"only {buffered} bytes buffered"
        frames: list[bytes] = []
        assert reader.read(frames) == 0
        assert sum(recording.asked) <= MAX_READ + 65536
        assert _read_all(reader, recording, 1) == [payload]
        sender.join(TIMEOUT)
