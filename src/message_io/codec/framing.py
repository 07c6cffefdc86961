"""Length-prefixed message framing, byte-compatible with message-io's ``FramedTcp``.

Every message travels as a varint holding the payload length followed by the payload.
The varint is the Rust crate ``integer-encoding``'s ``u64`` varint, which is the
protobuf base-128 varint (unsigned LEB128, at most 10 bytes; see
:mod:`message_io.codec.varint`). Zero-length messages are legal.

Theory of operation
-------------------
:class:`FrameDecoder` is a Sans-I/O state machine: the caller reads bytes however it
likes and hands them to :meth:`FrameDecoder.feed`, which appends each complete payload
to a list. Between calls it keeps the state of at most one incomplete frame, either

* the bytes of a header that has not ended yet (a ``bytearray`` of at most 9 bytes), or
* the announced payload size, the header length and the list of payload chunks
  received so far (each chunk an immutable ``bytes`` slice of the data fed).

Memory is bounded: a header announcing more than ``max_message_size`` bytes raises
:class:`~message_io.errors.FrameTooLarge` as soon as the header is complete, so at most
``max_message_size - 1`` payload bytes plus a 10-byte header are ever held. Nothing is
allocated from the header's say-so: a peer announcing 4 GiB and sending 1 byte costs
one byte of memory, because payload bytes are only kept as they arrive and joined once
(``b"".join``), when the frame is complete. This also keeps a large frame received in
many small pieces linear in time: no growing buffer is copied again and again.

Complete frames inside a chunk are not buffered at all: the hot loop slices them
straight out of the chunk fed.
"""

from __future__ import annotations

from typing import Final

from ..errors import FrameError, FrameTooLarge
from .varint import _SMALL, MAX_VARINT_LEN, decode_varint, encode_varint

__all__ = ["FrameDecoder", "encode_frame", "frame_header"]

# Final: compiled, module constants are C statics, not looked up by name per call.
_HEADERS: Final = _SMALL
_SMALL_COUNT: Final = len(_SMALL)
_SMALL_PIECE: Final = 4096  # pieces of a pending frame below this size are merged


def frame_header(size: int) -> bytes:
    """Return the header that announces a payload of ``size`` bytes.

    This is the send hot path: write the header, then the payload, with no copy of the
    payload (``sock.sendmsg([frame_header(len(p)), p])`` or two buffered writes).

    Args:
        size: The payload length, in ``[0, 2**64)``.

    Returns:
        The varint encoding of ``size``.

    Raises:
        ValueError: If ``size`` is negative or does not fit in 64 bits.
    """
    if 0 <= size < _SMALL_COUNT:
        return _HEADERS[size]
    return encode_varint(size)


def encode_frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Return ``payload`` as one frame: its header followed by the payload.

    This copies the payload; senders on a hot path should use :func:`frame_header`.

    Args:
        payload: The message to frame (may be empty).

    Returns:
        The framed message.
    """
    data = bytes(payload)
    return frame_header(len(data)) + data


def _too_large(size: int, limit: int) -> FrameTooLarge:
    return FrameTooLarge(
        f"frame announces {size} bytes, over the maximum message size of {limit} bytes"
    )


class FrameDecoder:
    """Split a byte stream into the payloads of its frames (Sans-I/O).

    Feed it the bytes received from one peer, in order, cut anywhere::

        decoder = FrameDecoder(max_message_size=1 << 20)
        messages: list[bytes] = []
        decoder.feed(sock.recv(65536), messages)

    A :class:`~message_io.errors.FrameError` from :meth:`feed` means the peer broke the
    protocol: the stream cannot be resynchronised, so the decoder is unusable from then
    on (every later :meth:`feed` raises :class:`~message_io.errors.FrameError`) and the
    caller should disconnect the peer.

    Args:
        max_message_size: The largest payload accepted, in bytes.

    Raises:
        ValueError: If ``max_message_size`` is negative.
    """

    __slots__ = ("_chunks", "_failed", "_header", "_hlen", "_max", "have", "need")

    need: int
    """Payload size of the frame being received, or -1 while no header is complete.
    Read-only for callers: a reader's fast path reads it (and :attr:`have`) where a call
    to :attr:`wanted` would cost as much as the rest of a small message's path."""
    have: int
    """Payload bytes of the frame being received so far (read-only for callers)."""

    def __init__(self, max_message_size: int) -> None:
        if max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, not {max_message_size}")
        self._max = max_message_size
        self._header = bytearray()  # bytes of a header not complete yet
        self.need = -1  # payload size of the pending frame; -1: no complete header
        self._hlen = 0  # header length of the pending frame (when need >= 0)
        self.have = 0  # payload bytes of the pending frame received so far
        self._chunks: list[bytes | bytearray] = []  # those payload bytes
        self._failed = False

    @property
    def max_message_size(self) -> int:
        """The largest payload accepted, in bytes."""
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete frame received so far: header bytes plus payload.

        0 when the last byte fed ended a frame. Never more than
        ``max_message_size + 10``.
        """
        return len(self._header) + (self._hlen + self.have if self.need >= 0 else 0)

    @property
    def wanted(self) -> int:
        """Payload bytes still missing from the current frame.

        Nonzero only once the current frame's header is complete: the caller may then
        receive exactly this many bytes to finish the frame. 0 otherwise (between
        frames or inside a header), when the next read size is the caller's choice.
        """
        return self.need - self.have if self.need >= 0 else 0

    def feed(self, data: bytes | bytearray | memoryview, out: list[bytes]) -> None:
        """Consume ``data`` and append every payload it completes to ``out``, in order.

        ``data`` may be of any length (empty is a no-op) and cut anywhere, even inside a
        header. Bytes that do not finish a frame are kept for the next call. The
        payloads appended are always :class:`bytes`.

        Args:
            data: The next bytes of the stream.
            out: The list the complete payloads are appended to.

        Raises:
            InvalidVarint: If a header runs past 10 bytes or 64 bits.
            FrameTooLarge: As soon as a header announces more than
                :attr:`max_message_size` bytes, before any of its payload is kept.
            FrameError: If the decoder already raised; it is unusable after an error.
                The payloads completed before the bad header, in this call too, are
                already in ``out``.
        """
        if self._failed:
            raise FrameError("the frame decoder failed earlier; disconnect the peer")
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        if not n:
            return
        try:
            pos = 0
            if self._header or self.need >= 0:
                pos = self._resume(data, out)
                if pos == n:
                    return
            self._scan(data, pos, n, out)
        except FrameError:
            self._failed = True
            self._header.clear()
            self._chunks = []
            self.need = -1
            self.have = self._hlen = 0
            raise

    def _resume(self, data: bytes, out: list[bytes]) -> int:
        """Continue the pending frame with ``data``; return the position after it."""
        n = len(data)
        pos = 0
        header = self._header
        if header:
            k = len(header)
            r = decode_varint(bytes(header) + data[: MAX_VARINT_LEN - k])
            if r is None:  # still incomplete: all of data is header (len < 10 - k)
                header += data
                return n
            size, hlen = r
            pos = hlen - k
            header.clear()
            if size > self._max:
                raise _too_large(size, self._max)
            self.need = size
            self._hlen = hlen
            self.have = 0
        missing = self.need - self.have
        avail = n - pos
        if avail < missing:
            chunks = self._chunks
            if avail < _SMALL_PIECE:
                # Many tiny reads (a peer trickling bytes) go into one bytearray: a bytes
                # object per read would cost ~20x the payload in object overhead.
                if chunks and type(chunks[-1]) is bytearray:
                    chunks[-1] += data[pos:]
                else:
                    chunks.append(bytearray(data[pos:]))
            else:
                chunks.append(data[pos:] if pos else data)
            self.have += avail
            return n
        end = pos + missing
        # The whole of ``data`` is the payload when a large frame's payload was read
        # apart: keep that very object. (CPython's ``data[0:len(data)]`` returns ``data``
        # itself, but compiled code copies it, into fresh pages: 250 times slower.)
        piece = data if pos == 0 and end == n else data[pos:end]
        chunks = self._chunks
        if chunks:
            chunks.append(piece)
            out.append(b"".join(chunks))
            self._chunks = []
        else:
            out.append(piece)
        self.need = -1
        self.have = self._hlen = 0
        return end

    def _scan(self, data: bytes, pos: int, n: int, out: list[bytes]) -> None:
        """Decode the frames of ``data[pos:n]`` with no frame pending; keep the rest."""
        limit = self._max
        # A first byte below `fast` is a whole header announcing an acceptable size.
        fast = 0x80 if limit >= 0x7F else limit + 1
        while True:  # invariant: pos < n
            size = data[pos]
            if size < fast:
                start = pos + 1
                end = start + size
                if end < n:
                    out.append(data[start:end])
                    pos = end
                    continue
                hlen = 1
            else:
                if size < 0x80:
                    raise _too_large(size, limit)
                start = pos + 1
                if start < n and data[start] < 0x80:  # two-byte header
                    size = (size & 0x7F) | (data[start] << 7)
                    start += 1
                else:
                    r = decode_varint(data, pos)
                    if r is None:  # the chunk ends inside this header
                        self._header += data[pos:]
                        return
                    size, start = r
                if size > limit:
                    raise _too_large(size, limit)
                end = start + size
                if end < n:
                    out.append(data[start:end])
                    pos = end
                    continue
                hlen = start - pos
            # This frame reaches the end of the chunk.
            if end == n:
                out.append(data[start:end])
                return
            if start < n:
                self._chunks.append(data[start:])
            self.need = size
            self._hlen = hlen
            self.have = n - start
            return
