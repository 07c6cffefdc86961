"""Reading length-prefixed frames from a stream socket: the receive loop of
``FramedTcpRemote``, compiled with the engine.

Small frames: read 64 KiB at a time and cut the frames out of it. Large frames (from
32 KiB): read each one's header apart (peek, then consume exactly the header), then the
payload in one read of its exact size, so that the bytes the OS returns *are* the
message and are never copied again. The loop runs in C rather than in the interpreter:
a read of one small frame costs 0.78 µs above a plain ``recv`` so, against 1.05 µs
interpreted.

:class:`FrameReader` holds a connection's state (its decoder, whether the peer sends
large frames) for ``FramedTcpRemote``, whose ``receive`` and ``incomplete`` delegate to
it; the node calls its :meth:`~FrameReader.read` itself, compiled code calling compiled
code, for the built-in class.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from ..codec.framing import FrameDecoder
from ..codec.varint import MAX_VARINT_LEN, decode_varint
from . import sockio
from .reader import CLOSED, Reader

__all__ = [
    "DISCONNECTED",
    "LARGE",
    "LARGE_FRAME",
    "MAX_READ",
    "SMALL",
    "TRICKLING",
    "FrameReader",
    "read_frames",
]

MAX_READ: Final = 4 * 1024 * 1024
"""The largest single read of a large frame's payload, and the most bytes one call of a
reader takes (so what a connection adds to the node's unfinished messages between two
checks of its cap)."""
LARGE_FRAME: Final = 32 * 1024
"""From this size, a frame's payload is read apart, in one read of its size."""

DISCONNECTED: Final = 1
"""Flag of :func:`read_frames`' result: the peer closed (or reset) the connection."""
LARGE: Final = 2
"""Flag of :func:`read_frames`' result: the peer sends large frames."""
SMALL: Final = 4
"""Flag of :func:`read_frames`' result: its last read was small (see :data:`SMALL_READ`)."""
TRICKLING: Final = 8
"""Flag of :func:`read_frames`' result: its last read of a large payload came short, so
the next one asks for at most ``size`` bytes (a read is allocated at the size asked,
then shrunk: asking for all of a trickled payload's rest maps and unmaps a block per
read)."""
SMALL_READ: Final = 479
"""The size of a read after a small one: with its object header, a ``bytes`` of this
size is the largest that CPython's small-object allocator serves (512 bytes). A 64 KiB
read costs a ``malloc`` and a shrinking ``realloc`` per call, a fifth of a small
message's round trip; a peer that sends little is read this much at a time, and a read
that fills it goes back to the full size at once."""
SMALL_READ_ARG: Final[Any] = SMALL_READ
""":data:`SMALL_READ` as an object made once: compiled, an ``int`` passed to a call is
boxed at each call, and this one is past CPython's cached small ints (an allocation)."""

_READS: Final = 4  # reads per call at most: one connection cannot starve the others
_PEEK: Final = socket.MSG_PEEK
# The C build's socket calls (see sockio); without it, the socket's own methods.
_C_SOCKIO: Final = sockio.COMPILED
_recv: Final = sockio.recv


def read_frames(
    sock: socket.socket,
    decoder: FrameDecoder,
    frames: list[bytes],
    size: int,
    large: bool,
    *,
    small: bool = False,
    trickling: bool = False,
) -> int:
    """Read what ``sock`` has (up to four reads of ``size`` bytes, or of a large frame's
    payload, and no more than :data:`MAX_READ` bytes in all), decoding the frames into
    ``frames``.

    ``large``: the peer was sending large frames at the last call; ``small``: the last
    read of the last call was small (this one starts with :data:`SMALL_READ` bytes);
    ``trickling``: its last read of a large payload came short (see :data:`TRICKLING`).
    Returns :data:`DISCONNECTED`, :data:`LARGE`, :data:`SMALL` and :data:`TRICKLING`
    or-ed together. Raises
    ``FrameError`` (from the decoder) with the frames decoded before it already in
    ``frames``.
    """
    want = SMALL_READ if small and size > SMALL_READ else size
    budget = MAX_READ  # bytes per call at most: one call crosses the node's cap by no more
    try:
        for _read in range(_READS):
            need = decoder.need
            wanted = need - decoder.have if need >= 0 else 0
            if wanted >= LARGE_FRAME or (wanted and large):
                wanted = min(wanted, size if trickling else MAX_READ)
                data = _recv(sock, wanted) if _C_SOCKIO else sock.recv(wanted)
                trickling = len(data) < wanted
            else:
                if large and not decoder.buffered:  # the next header peeked
                    head = sock.recv(MAX_VARINT_LEN, _PEEK)
                    parsed = decode_varint(head) if head else None
                    if parsed is not None and parsed[0] >= LARGE_FRAME:
                        decoder.feed(sock.recv(parsed[1]), frames)  # just the header
                        continue
                    large = False
                    if not head:
                        return DISCONNECTED
                if _C_SOCKIO:
                    data = _recv(sock, SMALL_READ_ARG if want == SMALL_READ else want)
                else:
                    data = sock.recv(want)
            if not data:
                return DISCONNECTED | (LARGE if large else 0)
            budget -= len(data)
            decoder.feed(data, frames)
            need = decoder.need
            if need >= LARGE_FRAME and need - decoder.have >= LARGE_FRAME:
                large = True
            elif len(data) < want:
                return (
                    (LARGE if large else 0)
                    | (SMALL if len(data) < SMALL_READ else 0)
                    | (TRICKLING if trickling else 0)
                )
            want = size
            if budget <= 0:
                break  # the rest is read by the next call (the poll says it is there)
    except BlockingIOError:
        pass
    except ConnectionError:
        return DISCONNECTED | (LARGE if large else 0)
    return (LARGE if large else 0) | (TRICKLING if trickling else 0)


class FrameReader(Reader):
    """The receiving state of one length-prefixed stream: its socket, its decoder (made
    by the first read: an idle connection holds none), whether its peer sends large
    frames.

    Args:
        sock: The connected, non-blocking socket.
        max_message_size: The largest payload accepted (the decoder's limit).
        size: Bytes per read of small frames.
    """

    def __init__(self, sock: socket.socket, max_message_size: int, size: int) -> None:
        self.sock = sock
        self.max_message_size = max_message_size
        self.size = size
        self.decoder: FrameDecoder | None = None
        self.large = False
        self.small = False  # the last read was small: the next one asks for less
        self.trickling = False  # the last read of a large payload came short

    def read(self, frames: list[Any]) -> int:
        """Read what the socket has, appending the payloads to ``frames`` (see
        :func:`read_frames`); :data:`~message_io.network.reader.CLOSED` if the peer
        closed the connection, else 0.

        Raises:
            FrameError: the peer broke the framing (the frames before it are in
                ``frames``).
            OSError: the connection failed.
        """
        decoder = self.decoder
        if decoder is None:
            decoder = self.decoder = FrameDecoder(self.max_message_size)
        result = read_frames(
            self.sock,
            decoder,
            frames,
            self.size,
            self.large,
            small=self.small,
            trickling=self.trickling,
        )
        self.large = (result & LARGE) != 0
        self.small = (result & SMALL) != 0
        self.trickling = (result & TRICKLING) != 0
        return CLOSED if result & DISCONNECTED else 0

    def incomplete(self) -> int:
        """Bytes of the frame being received (header and payload so far)."""
        decoder = self.decoder
        return 0 if decoder is None else decoder.buffered
