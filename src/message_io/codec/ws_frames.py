"""The input of an open WebSocket connection: whole data frames cut out directly, every
other frame parsed by the ``websockets`` protocol.

Theory of operation
-------------------
``websockets``' Sans-I/O protocol parses every frame in Python: about 2.4 µs for a
small one, most of a WebSocket receiver's time. :class:`FrameInput` sits in front of it
and takes the common frame itself: an unfragmented binary or text frame with no
reserved bit set, masked as the side requires and within the size limit, arriving
while no fragmented message is under way and the protocol is ``OPEN``, whose header
came whole in one read. Its payload is sliced out of the bytes read; one that goes on
in later reads is kept, in pieces, until complete, then joined once (at most the size
limit, as the protocol would have buffered). On the server side it is unmasked with
:func:`~message_io.codec.mask.mask` (``websockets``' own ``apply_mask``, or its C
twin). Everything else (control frames, fragments, a header cut by the end of a read,
a header the protocol would refuse, anything after a close frame or an error) goes to
the protocol, byte for byte, so its state, its replies (pong, close), its close codes
and its errors stay exactly what they would be had it seen all the bytes. So does a
kept frame if the stream ends (:meth:`end`) or the connection stops being ``OPEN``
before it is complete.

That works because :class:`FrameInput` knows where every frame starts: it reads the
header of each frame it hands over (keeping the first bytes of a header cut by the end
of a read, at most 14) and counts the bytes still owed to the protocol. So the
protocol's parser is always between two frames when a frame is taken from it, exactly
as after a frame it parsed itself. The protocol must be at such a boundary when the
input is created: right after the opening handshake, with nothing behind it fed yet.

Whether the protocol is ``OPEN`` is read once per call that may change it (its
``receive_data`` here; its owner calls :meth:`FrameInput.refresh` after its ``fail``,
``send_close`` or ``receive_eof``), not per frame: the state is a Python property, as
costly as the rest of a small frame's path.

A frame the protocol parses is only processed after the bytes fed with it; so the
frames of one read come out in one list, in order: a payload taken here is a ``bytes``
(binary) or a ``websockets`` ``Frame`` (text, which the caller decodes), a frame parsed
by the protocol is its ``Frame`` (the protocol's events: after the handshake, nothing
else).
"""

from __future__ import annotations

import os
import struct
from typing import Final

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Event, Protocol

from . import mask
from .body_pool import BodyPool

# Final: compiled, module constants are C statics; imported names are looked up by name.
_apply_mask: Final = mask.mask
_unmask: Final = mask.unmask
_mask_into: Final = mask.mask_into
_masked_frame: Final = mask.masked_frame
# The C build's masked frame in one object (see mask); without it, the parts joined.
_C_MASK: Final = mask.COMPILED
_OPEN: Final = OPEN
_OPCODE_TEXT: Final = Opcode.TEXT
_Frame: Final = Frame

__all__ = [
    "FIN_BINARY",
    "FIN_TEXT",
    "MAX_HEADER",
    "SPLIT_FRAME",
    "FrameInput",
    "Masker",
    "frame_header",
]

FIN_BINARY: Final = 0x82
"""The first byte of a whole binary frame: FIN and opcode 2."""
FIN_TEXT: Final = 0x81
"""The first byte of a whole text frame: FIN and opcode 1."""
MAX_HEADER: Final = 14
"""The largest frame header: 2 bytes, an 8-byte length and a 4-byte masking key."""
_FIN: Final = 0x80
_OPCODE: Final = 0x0F
_TEXT: Final = 1
_BINARY: Final = 2
_CONT: Final = 0
_MASK_BIT: Final = 0x80
_LENGTH: Final = 0x7F
_SMALL_PIECE: Final = 4096  # pieces of a kept payload below this size are merged
_VIEW_FROM: Final = 4096  # masked payloads from this size are unmasked from a view
_LENGTH_16: Final = struct.Struct("!BBH")
_LENGTH_64: Final = struct.Struct("!BBQ")
_KEY_BYTES: Final = 4096  # masking keys drawn from os.urandom this many bytes at a time
SPLIT_FRAME: Final = 16 * 1024
"""From this size, :meth:`Masker.binary` gives a frame as its header and its body."""


# The headers of small whole data frames, made once: [text, binary][unmasked, masked].
_SMALL: Final = [
    [[bytes((first, size | mask_bit)) for size in range(126)] for mask_bit in (0, _MASK_BIT)]
    for first in (FIN_TEXT, FIN_BINARY)
]


def frame_header(first: int, size: int, mask_bit: int = 0) -> bytes:
    """The header of a data frame of ``size`` bytes whose first byte is ``first`` (RFC
    6455 5.2), without the masking key: ``mask_bit`` is 0x80 for a masked frame."""
    if size < 126:
        if first in (FIN_BINARY, FIN_TEXT):
            return _SMALL[first - FIN_TEXT][mask_bit >> 7][size]
        return bytes((first, size | mask_bit))
    if size < 65536:
        return _LENGTH_16.pack(first, 126 | mask_bit, size)
    return _LENGTH_64.pack(first, 127 | mask_bit, size)


class Masker:
    """The outgoing frames of a client, masked (RFC 6455 5.3) with keys drawn from
    ``os.urandom`` (strong entropy, as the RFC asks) 1,024 at a time.

    The body of a large binary frame is masked into a buffer of :attr:`pool`, reused
    once the connection has written it out (see :mod:`.body_pool`), when the connection
    has enabled the pool; else into a new ``bytes``.
    """

    __slots__ = ("_at", "_keys", "pool")

    def __init__(self) -> None:
        self._keys = b""
        self._at = 0
        self.pool = BodyPool()

    def _next_at(self) -> int:
        """Where the next masking key starts in ``_keys`` (4 bytes), drawing new keys
        once these are used up."""
        at = self._at
        if at >= len(self._keys):
            self._keys = os.urandom(_KEY_BYTES)
            at = 0
        self._at = at + 4
        return at

    def _key(self) -> bytes:
        """The next masking key (4 bytes)."""
        at = self._next_at()
        return self._keys[at : at + 4]

    def split(self, first: int, data: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """A frame of ``data``: its header with the masking key, and the masked payload."""
        at = self._at  # _next_at(), inline: the interpreted engine's every small frame
        if at >= len(self._keys):
            self._keys = os.urandom(_KEY_BYTES)
            at = 0
        self._at = at + 4
        key = self._keys[at : at + 4]
        return frame_header(first, len(data), _MASK_BIT) + key, _apply_mask(data, key)

    def frame(self, first: int, data: bytes | bytearray | memoryview) -> bytes:
        """A frame of ``data``, masked, in one piece."""
        if _C_MASK:
            # Header, key and masked payload made in one object: no header object, no
            # key slice, no masked copy, no two joins.
            at = self._next_at()
            return _masked_frame(first, data, self._keys, at)
        head, body = self.split(first, data)
        return head + body

    def binary(
        self, data: bytes | bytearray | memoryview
    ) -> bytes | tuple[bytes, bytes | bytearray]:
        """A whole binary frame of ``data``, masked: in one piece if small, else as its
        header and its body (queued apart: no join of a large payload). The body is a
        ``bytearray`` lent by :attr:`pool` if it lends one, else ``bytes``."""
        size = len(data)
        if size < SPLIT_FRAME:
            return self.frame(FIN_BINARY, data)
        body = self.pool.take(size)
        if body is None:
            return self.split(FIN_BINARY, data)
        key = self._key()
        try:
            _mask_into(body, data, key)
        except BaseException:
            self.pool.give(body)  # never queued: back at once
            raise
        return frame_header(FIN_BINARY, size, _MASK_BIT) + key, body


def header_size(second: int, masked: bool) -> int:
    """The size of a frame header whose second byte is ``second`` (2 to 14 bytes)."""
    length = second & _LENGTH
    size = 2 if length < 126 else 4 if length == 126 else 10
    return size + 4 if masked else size


def payload_size(head: bytes | bytearray, at: int) -> int:
    """The payload length announced by the complete header at ``head[at:]``."""
    length = head[at + 1] & _LENGTH
    if length < 126:
        return length
    if length == 126:
        return int.from_bytes(head[at + 2 : at + 4], "big")
    return int.from_bytes(head[at + 2 : at + 10], "big")


class FrameInput:
    """The bytes read from one open WebSocket connection, made into frames.

    ``protocol``: the connection's ``websockets`` protocol, ``OPEN``, its parser between
    two frames. ``masked``: whether frames must come masked (the server side).
    ``max_size``: the largest payload taken directly (the protocol's own limit; larger
    ones go to it, to be refused), or ``None``.
    """

    __slots__ = (
        "_fragmented",
        "_head",
        "_kept",
        "_kept_head",
        "_owed",
        "frames",
        "gave",
        "heard",
        "is_open",
        "kept_size",
        "left",
        "masked",
        "max_size",
        "protocol",
    )

    def __init__(self, protocol: Protocol, *, masked: bool, max_size: int | None) -> None:
        self.protocol = protocol
        self.masked = masked
        self.max_size = max_size
        self.frames: list[bytes | Event] = []
        # Whether the protocol is OPEN: looked at after each call that may change its
        # state (a property, as costly as the rest of a small frame's path). The owner
        # calls refresh() after it calls the protocol's fail, send_close or receive_eof.
        self.is_open = protocol.state is _OPEN
        self.gave = False  # bytes went to the protocol since the owner last cleared this
        self.heard = False  # a frame came out since the owner last cleared this
        self._owed = 0  # bytes of the frame under way that the protocol has yet to get
        self._head = b""  # the start of a header cut by the end of a read
        self._fragmented = False  # a fragmented message is under way
        # A frame taken here whose payload goes on in later reads: its header, the
        # pieces of its payload so far and their size, and the bytes still to come
        # (``left``: a reader may read exactly those, see large_header()).
        self._kept_head = b""
        self._kept: list[bytes | bytearray] | None = None
        self.kept_size = 0
        self.left = 0

    def take(self) -> list[bytes | Event]:
        """The frames of what was fed since the last call, in order (see the module)."""
        frames = self.frames
        if frames:
            self.frames = []
            self.heard = True
        return frames

    @property
    def kept_header(self) -> int:
        """The size of the header of the frame kept (0 if none): held too, as its
        payload so far (``kept_size``)."""
        return len(self._kept_head) if self._kept is not None else 0

    def refresh(self) -> None:
        """Look at the protocol's state again: call after changing it from outside
        (its ``fail``, ``send_close``, ``receive_eof``)."""
        self.is_open = self.protocol.state is _OPEN

    def feed(self, data: bytes) -> None:
        """Take the frames in ``data``, the next bytes read (not empty)."""
        pos = 0
        end = len(data)
        if self._head:  # a header cut short: the protocol has its first bytes
            pos = self._complete_header(data)
        elif self._kept is not None:  # a payload cut short: it goes on here
            pos = self._go_on(data)
        if pos < 0:
            return
        is_open = self.is_open
        while pos < end:
            if self._owed:
                pos = self._hand_over(data, pos)
                is_open = self.is_open
                continue
            if not is_open:  # closing, or failed: the rest is the protocol's
                self._give(data[pos:] if pos else data)
                return
            first = data[pos]
            if end - pos < 2:
                self._owe_header(data, pos)
                return
            second = data[pos + 1]
            masked = self.masked
            start = pos + header_size(second, masked)
            if start > end:
                self._owe_header(data, pos)
                return
            size = second & _LENGTH
            if size >= 126:
                size = payload_size(data, pos)
            stop = start + size
            limit = self.max_size
            if (
                first in (FIN_BINARY, FIN_TEXT)
                and bool(second & _MASK_BIT) == masked
                and not self._fragmented
                and (limit is None or size <= limit)
            ):
                if stop > end:  # the payload goes on in later reads: keep it till then
                    self._kept_head = data[pos:start]
                    # None of it yet when the header was read apart (large_header()):
                    # the payload read next is then the whole payload, not a piece.
                    self._kept = [data[start:]] if start < end else []
                    self.kept_size = end - start
                    self.left = stop - end
                    return
                if not masked:
                    payload = data[start:stop]
                elif _C_MASK:  # unmasked with the key before it, no slice of either
                    payload = _unmask(data, start, stop)
                elif size < _VIEW_FROM:  # interpreted: no call of the Python twin's
                    payload = _apply_mask(data[start:stop], data[start - 4 : start])
                else:  # no copy before the one unmasking makes
                    payload = _apply_mask(memoryview(data)[start:stop], data[start - 4 : start])
                if first == FIN_BINARY:
                    self.frames.append(payload)
                else:
                    self._emit(first, payload)
                pos = stop
                continue
            self._note(first)
            self._owed = stop - pos
            pos = self._hand_over(data, pos)
            is_open = self.is_open

    def end(self) -> None:
        """The stream ends: a frame kept cut short goes to the protocol, which will say
        what its end means (call its ``receive_eof`` next)."""
        if self._kept is not None:
            self._give_up_kept()

    def large_header(self, head: bytes, least: int) -> int:
        """The size of the frame header that ``head`` (the next bytes of the stream,
        peeked) starts with, if this input would take that frame itself and its payload
        has at least ``least`` bytes; else 0.

        A reader that then reads exactly that header, then exactly what :attr:`left`
        says, gets the payload in one ``bytes`` (or a few, if it comes in pieces) that
        is taken as it is, never sliced or joined.
        """
        if (
            len(head) < 2
            or not self.is_open
            or self._head
            or self._kept is not None
            or self._owed
            or self._fragmented
        ):
            return 0
        first = head[0]
        second = head[1]
        masked = self.masked
        if first not in (FIN_BINARY, FIN_TEXT) or bool(second & _MASK_BIT) != masked:
            return 0
        size = header_size(second, masked)
        if len(head) < size:
            return 0
        payload = payload_size(head, 0)
        limit = self.max_size
        if payload < least or (limit is not None and payload > limit):
            return 0
        return size

    def _emit(self, first: int, payload: bytes) -> None:
        if first == FIN_BINARY:
            self.frames.append(payload)
        else:
            self.frames.append(_Frame(_OPCODE_TEXT, payload))

    def _go_on(self, data: bytes) -> int:
        """Add to the payload kept; return where in ``data`` the frames after it start,
        or -1 if ``data`` ended first."""
        kept = self._kept
        assert kept is not None
        if not self.is_open:
            # Closed or failed meanwhile (by the caller): the protocol takes the frame,
            # and will do with it what it does in that state.
            self._owed = self.left
            self._give_up_kept()
            return 0
        left = self.left
        size = len(data)
        if size < left:
            if size >= _SMALL_PIECE:
                kept.append(data)
            elif kept and type(kept[-1]) is bytearray:
                kept[-1] += data
            else:
                # Small reads (a peer trickling its bytes) go into one bytearray: a
                # bytes object per read would hold ~20 times the payload.
                kept.append(bytearray(data))
            self.kept_size += size
            self.left = left - size
            return -1
        kept.append(data[:left] if left < size else data)
        head = self._kept_head
        payload = self._release_kept()
        if self.masked:
            payload = _apply_mask(payload, head[-4:])
        self._emit(head[0], payload)
        return left

    def _release_kept(self) -> bytes:
        """The payload kept so far, in one piece (not copied if it came in one read);
        nothing is kept any more."""
        kept = self._kept
        assert kept is not None
        self._kept = None
        self.kept_size = 0
        self.left = 0
        if len(kept) == 1:
            piece = kept[0]
            if type(piece) is bytes:
                return piece
        return b"".join(kept)

    def _give_up_kept(self) -> None:
        """Hand the frame kept so far to the protocol."""
        self._give(self._kept_head + self._release_kept())

    def _give(self, data: bytes) -> None:
        """Feed ``data`` to the protocol and collect the frames it parsed."""
        protocol = self.protocol
        protocol.receive_data(data)
        self.frames.extend(protocol.events_received())
        self.is_open = protocol.state is _OPEN
        self.gave = True

    def _note(self, first: int) -> None:
        """Follow the fragmentation of the messages through a frame's first byte."""
        opcode = first & _OPCODE
        if opcode in (_TEXT, _BINARY):
            self._fragmented = not first & _FIN
        elif opcode == _CONT and first & _FIN:
            self._fragmented = False

    def _hand_over(self, data: bytes, pos: int) -> int:
        """Feed the protocol what it is owed of the frame under way from ``data[pos:]``;
        return the position after it."""
        stop = min(len(data), pos + self._owed)
        self._owed -= stop - pos
        self._give(data[pos:stop] if pos or stop < len(data) else data)
        return stop

    def _owe_header(self, data: bytes, pos: int) -> None:
        """The end of ``data`` cuts a header short: hand it over, keep a copy."""
        self._head = data[pos:]
        self._give(self._head)

    def _complete_header(self, data: bytes) -> int:
        """Go on with the header cut short: return 0, the frame's bytes owed to the
        protocol now counted from the start of ``data``, or -1 if ``data`` ended first."""
        cut = self._head
        head = cut + data[:MAX_HEADER]
        if len(head) < 2 or len(head) < header_size(head[1], self.masked):
            self._head = head  # all of data: the header is still cut short
            self._give(data)
            return -1
        self._head = b""
        self._note(head[0])
        self._owed = header_size(head[1], self.masked) + payload_size(head, 0) - len(cut)
        return 0
