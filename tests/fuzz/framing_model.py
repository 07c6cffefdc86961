"""An obvious, slow model of a FramedTcp byte stream, written from the format's
description and not from the decoder: what a peer's bytes must decode to, and what a
decoder holds after any prefix of them.

The format: each frame is an unsigned LEB128 varint (7 bits a byte, low group first,
high bit set when more bytes follow; at most 10 bytes, the 10th at most 1) holding the
payload length, then the payload. A complete header announcing more than the maximum
message size is an error, as is a 10th header byte above 1.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from message_io.errors import FrameError, FrameTooLarge, InvalidVarint

__all__ = ["Model", "model", "padded_frame"]


@dataclass
class Model:
    """The decoding of one whole stream."""

    starts: list[int] = field(default_factory=list)
    """Where each frame's header begins (the last frame may be incomplete)."""
    bodies: list[int] = field(default_factory=list)
    """Where each frame's payload begins."""
    ends: list[int] = field(default_factory=list)
    """Where each frame ends (past the stream for an incomplete last frame)."""
    payloads: list[bytes] = field(default_factory=list)
    """The payloads of the complete frames."""
    error: type[FrameError] | None = None
    error_at: int = -1
    """The offset of the byte that makes the stream invalid (the last header byte)."""

    def complete(self, fed: int) -> int:
        """How many frames are complete once ``fed`` bytes are in."""
        return bisect_right(self.ends, fed)

    def buffered(self, fed: int) -> int:
        """The bytes of the unfinished frame (header and payload) after ``fed`` bytes."""
        k = self.complete(fed)
        return fed - (self.ends[k - 1] if k else 0)

    def wanted(self, fed: int) -> int:
        """The payload bytes missing from the current frame, once its header is in."""
        k = self.complete(fed)
        if k < len(self.ends) and self.bodies[k] <= fed:
            return self.ends[k] - fed
        return 0

    def fails_within(self, fed: int) -> bool:
        """True if the first ``fed`` bytes already hold the error."""
        return self.error is not None and fed > self.error_at


def model(data: bytes, limit: int) -> Model:
    """Decode ``data`` with a maximum message size of ``limit``."""
    m = Model()
    pos = 0
    n = len(data)
    while pos < n:
        value = 0
        i = pos
        while True:
            if i == n:
                return m  # the stream ends inside a header
            b = data[i]
            if i - pos == 9 and b > 1:
                m.error, m.error_at = InvalidVarint, i
                return m
            value |= (b & 0x7F) << (7 * (i - pos))
            i += 1
            if b < 0x80:
                break
        if value > limit:
            m.error, m.error_at = FrameTooLarge, i - 1
            return m
        m.starts.append(pos)
        m.bodies.append(i)
        m.ends.append(i + value)
        if i + value <= n:
            m.payloads.append(data[i : i + value])
        pos = i + value
    return m


def padded_frame(payload: bytes, header_len: int) -> bytes:
    """``payload`` framed with a header of ``header_len`` bytes (1 to 10), longer than
    needed if asked: the extra groups are zeros, which the format allows."""
    groups = []
    value = len(payload)
    while True:
        groups.append(value & 0x7F)
        value >>= 7
        if not value:
            break
    groups += [0] * max(0, header_len - len(groups))
    header = bytes(g | 0x80 for g in groups[:-1]) + bytes((groups[-1],))
    return header + payload
