"""Masking a WebSocket payload (RFC 6455 5.3): XOR with a 4-byte key, repeated.

This file is what runs without the compiled engine: ``websockets``' own ``apply_mask``
(its C speedup, or its Python code where the speedups are not built). A build with a C
compiler puts ``mask.c`` beside it: the same XOR, without the generic argument parsing
that costs more than masking a small message does. Every message a client sends is
masked, and every message a server receives unmasked. :data:`COMPILED` tells which one
runs.

:func:`mask_into` masks into a ``bytearray`` the caller reuses (a client's frame bodies,
see :mod:`.body_pool`). Here it is ``apply_mask`` and a copy into it; the C twin writes
it directly.
"""

from __future__ import annotations

import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets without its C speedups
    from websockets.utils import apply_mask

__all__ = ["COMPILED", "mask", "mask_into", "masked_frame", "unmask"]

# Not Final: the compiled engine would fold this file's value into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""

mask = apply_mask
"""``mask(data, key, /) -> bytes``: ``data`` (bytes-like) XOR ``key`` (4 bytes) repeated.
Raises ``ValueError`` if ``key`` is not 4 bytes long, ``TypeError`` if either is not
bytes-like."""


def mask_into(
    dest: bytearray, data: bytes | bytearray | memoryview, key: bytes | bytearray, /
) -> None:
    """``dest[:] = mask(data, key)``: ``dest`` is resized to ``len(data)`` and holds the
    masked bytes. Raises as :func:`mask` does (before ``dest`` changes), ``TypeError`` if
    ``dest`` is not a ``bytearray``, ``BufferError`` if it must change size while a view
    of it is open."""
    if not isinstance(dest, bytearray):
        raise TypeError(f"mask_into() needs a bytearray, not {type(dest).__name__}")
    dest[:] = apply_mask(data, key)


def masked_frame(
    first: int, data: bytes | bytearray | memoryview, keys: bytes, at: int, /
) -> bytes:
    """A whole masked WebSocket frame (RFC 6455 5.2) in one object: its first byte
    ``first``, the mask bit and the length of ``data``, the masking key
    ``keys[at:at + 4]``, then ``data`` masked with it. Raises ``ValueError`` if
    ``first`` is not a byte or ``keys`` holds no 4 bytes at ``at``. (The C twin makes
    it in one allocation; the engine calls it only there, and joins the parts itself
    without.)"""
    if not 0 <= first <= 255:
        raise ValueError("first must be a byte (0 to 255)")
    if at < 0 or at > len(keys) - 4:
        raise ValueError("mask must contain 4 bytes")
    key = bytes(keys[at : at + 4])
    masked = apply_mask(data, key)
    size = len(masked)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    return head + key + masked


def unmask(data: bytes, start: int, stop: int, /) -> bytes:
    """``mask(data[start:stop], data[start - 4:start])``: the payload of a masked frame
    that ``data`` holds whole, unmasked with the key just before it (the C twin makes
    no slice). Raises ``ValueError`` unless ``4 <= start <= stop <= len(data)``,
    ``TypeError`` if ``data`` is not ``bytes``."""
    if not isinstance(data, bytes):
        raise TypeError(f"unmask() needs bytes, not {type(data).__name__}")
    if start < 4 or stop < start or stop > len(data):
        raise ValueError("unmask() needs 4 <= start <= stop <= len(data)")
    return apply_mask(memoryview(data)[start:stop], data[start - 4 : start])
