"""Unsigned LEB128 varints: the length prefix of message-io's framed transports.

This is the protobuf base-128 varint (no zigzag), the encoding the Rust crate
``integer-encoding`` produces for ``u64`` and that message-io's ``FramedTcp`` puts in
front of every message: 7 bits per byte, least-significant group first, the high bit of
a byte set when more bytes follow. A ``u64`` takes at most :data:`MAX_VARINT_LEN` bytes.

Examples::

    >>> encode_varint(300).hex()
    'ac02'
    >>> decode_varint(bytes.fromhex("ac02ff"))
    (300, 2)
    >>> decode_varint(b"\\x80") is None
    True
"""

from __future__ import annotations

from typing import Final

from ..errors import InvalidVarint

__all__ = ["MAX_VARINT_LEN", "decode_varint", "encode_varint"]

MAX_VARINT_LEN: Final = 10
"""The longest varint a ``u64`` needs: ``ceil(64 / 7)`` bytes."""

# Final: compiled, module constants are C statics, not looked up by name per call.
_LIMIT: Final = 1 << 64
_SMALL_COUNT: Final = 1 << 14  # every value below this fits in one or two bytes


def _encode(value: int) -> bytes:
    """Encode a non-negative ``value`` without any range check or table lookup."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL: Final[tuple[bytes, ...]] = tuple(_encode(i) for i in range(_SMALL_COUNT))
"""Precomputed encodings of ``0 .. 16383``: ``_SMALL[n] == encode_varint(n)``."""


def encode_varint(value: int) -> bytes:
    """Encode ``value`` as an unsigned LEB128 varint.

    Values below 16384 (one or two bytes) come from a precomputed table.

    Args:
        value: The integer to encode, in ``[0, 2**64)``.

    Returns:
        The encoding, 1 to :data:`MAX_VARINT_LEN` bytes long.

    Raises:
        ValueError: If ``value`` is negative or does not fit in 64 bits.
    """
    if 0 <= value < _SMALL_COUNT:
        return _SMALL[value]
    if value < 0 or value >= _LIMIT:
        raise ValueError(f"varint value out of range [0, 2**64): {value}")
    return _encode(value)


def decode_varint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """Decode the unsigned LEB128 varint that starts at ``data[pos]``.

    Non-minimal encodings (such as ``80 00`` for 0) are accepted, as protobuf does.

    Args:
        data: The buffer to read from (a :class:`memoryview` must have byte format).
        pos: The index of the varint's first byte.

    Returns:
        ``(value, end)`` where ``end`` is the index just past the varint, or ``None``
        if ``data`` ends before the varint does (read more bytes and try again).

    Raises:
        InvalidVarint: If the varint does not end within :data:`MAX_VARINT_LEN` bytes
            or its value does not fit in 64 bits (a 10th byte above 1).
    """
    n = len(data)
    last = pos + MAX_VARINT_LEN - 1  # index of the 10th byte
    value = 0
    shift = 0
    i = pos
    while i < n:
        b = data[i]
        if i == last and b > 1:
            if b & 0x80:
                raise InvalidVarint(f"varint at offset {pos} is longer than {MAX_VARINT_LEN} bytes")
            raise InvalidVarint(f"varint at offset {pos} overflows 64 bits")
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7
    return None
