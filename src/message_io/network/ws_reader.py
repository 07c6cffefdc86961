"""Reading an open, plain (``ws``, not TLS) WebSocket connection: the receive path of
``WsRemote``, compiled with the engine.

The common read is a few small binary frames, cut out of the bytes read by the
connection's :class:`~message_io.codec.ws_frames.FrameInput` without the protocol's
parser. :class:`WsReader` runs that read in C, from the ``recv`` to the node's list of
messages, and hands back to the remote's interpreted code only what needs the protocol:
a read after which the protocol was given bytes (control frames, fragments, a header
cut short, anything after a close or an error), a text message (to be checked as
UTF-8), or the end of the stream. So it never changes what the connection does, only how
fast its common case runs.

Large frames are read as ``FramedTcpRemote`` reads them (see
:mod:`.framed_reader`): once the peer sends a frame of 32 KiB or more, each header is
peeked, read apart, then the payload in one read of its exact size, so that the bytes
the OS returns are the payload: taken as they are (a client), or unmasked once (a
server), never sliced out of a read nor joined from pieces.

It also frames the binary messages sent on the connection (a header for the server
side, a masked frame for the client side), from the protocol state that the input
tracks, under the connection's lock as the remote's ``header`` and ``frame`` are.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from ..codec.ws_frames import FIN_BINARY, MAX_HEADER, FrameInput, Masker, frame_header
from . import sockio
from .endpoint import _COMPILED
from .framed_reader import LARGE_FRAME, MAX_READ, SMALL_READ, SMALL_READ_ARG
from .reader import CLOSED, OUTPUT, TEXT, Reader

__all__ = ["WsReader"]

log = logging.getLogger("message_io")

_READS: Final = 4  # reads per call at most: one connection cannot starve the others
_PEEK: Final = socket.MSG_PEEK
# The C build's socket calls (see sockio); without it, the socket's own methods.
_C_SOCKIO: Final = sockio.COMPILED
_recv: Final = sockio.recv


class WsReader(Reader):
    """The receiving (and framing) state of one open ``ws`` connection.

    Args:
        remote: The ``WsRemote``: its ``_settle``, ``_receive_eof`` and
            ``_held_outside`` take what needs the protocol.
        sock: The connected, non-blocking socket.
        source: The remote's input, the protocol ``OPEN`` when it was made.
        masker: The client side's masker; None on the server side.
        size: Bytes per read.
    """

    def __init__(
        self,
        remote: Any,
        sock: socket.socket,
        source: FrameInput,
        masker: Masker | None,
        size: int,
    ) -> None:
        self.remote = remote
        self.sock = sock
        self.source = source
        self.masker = masker
        self.size = size
        # Bytes held where the fast path does not look: the protocol's parser buffer and
        # the fragments of an unfinished message (the remote's), as of the last time the
        # remote took a read. Neither changes unless the protocol is given bytes.
        self.outside = 0
        self.small = False  # the last read was small: the next one asks for less
        self.large = False  # the peer sends large frames: read their headers apart
        self.trickling = False  # the last read of a large payload came short

    def read(self, frames: list[Any]) -> int:
        source = self.source
        sock = self.sock
        size = self.size
        want = SMALL_READ if self.small and size > SMALL_READ else size
        self.small = False
        large = self.large
        ended = False
        budget = MAX_READ  # bytes per call at most, as FrameReader's
        try:
            for _read in range(_READS):
                left = source.left
                if left >= LARGE_FRAME or (left and large):
                    # The rest of a large payload, exactly: these bytes are the payload.
                    # After a short read (a peer slower than the node), at most a usual
                    # read: each read is allocated at the size asked, then shrunk.
                    want = min(left, size if self.trickling else MAX_READ)
                    data = _recv(sock, want) if _C_SOCKIO else sock.recv(want)
                    self.trickling = len(data) < want
                else:
                    if large:  # the next header peeked: a large frame's is read apart
                        head = sock.recv(MAX_HEADER, _PEEK)
                        header = source.large_header(head, LARGE_FRAME) if head else 0
                        if header:
                            source.feed(sock.recv(header))  # just the header
                            continue
                        large = False
                        if not head:
                            ended = True
                            break
                    if _C_SOCKIO:
                        data = _recv(sock, SMALL_READ_ARG if want == SMALL_READ else want)
                    else:
                        data = sock.recv(want)
                if not data:
                    ended = True
                    break
                budget -= len(data)
                source.feed(data)
                left = source.left
                if left and left + source.kept_size >= LARGE_FRAME:
                    large = True  # a large payload goes on: read it, then the next, apart
                if len(data) < want:
                    self.small = not large and len(data) < SMALL_READ
                    break
                want = size
                if budget <= 0:
                    break  # the rest is read by the next call (the poll says it is there)
        except BlockingIOError:
            pass
        except ConnectionError as exc:
            log.debug("websocket connection lost: %s", exc)
            ended = True
        self.large = large
        remote = self.remote
        if ended:
            remote._receive_eof()  # first: a frame kept cut short goes to the protocol
            taken = source.take()
        else:
            taken = source.take()
            if not source.gave:
                # The protocol saw nothing: its state, its output and its errors are as
                # they were after the last read (open, nothing to send, none).
                for item in taken:
                    if type(item) is not bytes:
                        break
                else:
                    if _COMPILED:
                        # One by one: compiled, extend() is the generic slice
                        # assignment, five times the cost for the usual one message.
                        for item in taken:
                            frames.append(item)  # noqa: PERF402 - see above
                    else:
                        frames.extend(taken)
                    return 0
        source.gave = False
        closed: bool = remote._settle(taken, frames.append)
        self.outside = remote._held_outside()
        result = TEXT | (CLOSED if closed or ended else 0)  # the protocol's: any kind
        if remote.protocol.writes:
            result |= OUTPUT
        return result

    def incomplete(self) -> int:
        source = self.source
        # A frame under way counts its header too, read apart or not (as FramedTcp's).
        return source.kept_size + source.kept_header + self.outside

    def framers(
        self,
    ) -> tuple[Callable[[int], bytes | None] | None, Callable[[Any], Any] | None]:
        if self.masker is None:
            return self.header, None
        return None, self.frame

    def header(self, size: int) -> bytes | None:
        """The header of a binary frame of ``size`` bytes (server side: not masked), or
        None once the connection is closing."""
        if not self.source.is_open:
            return None  # our close frame is out: no data frame may follow (RFC 6455 5.5.1)
        return frame_header(FIN_BINARY, size)

    def frame(self, data: Any) -> bytes | tuple[bytes, bytes | bytearray] | None:
        """``data`` as a masked binary frame (client side), or None once closing."""
        masker = self.masker
        if not self.source.is_open or masker is None:
            return None
        return masker.binary(data)
