"""Appending a small message to a connection's open send buffer.

Small messages sent in a burst are copied, header and payload, into one ``bytearray``
that is written with one ``send`` (see :class:`~message_io.network.connection.Connection`).
This file is what runs without the compiled engine: ``buffer += head`` and ``buffer +=
data``, both read first (the engine writes the two ``+=`` itself). CPython grows a
``bytearray`` by an eighth each time it runs out of room, so a buffer filled one small
message at a time is copied about eight times over by ``realloc``. A build with a C
compiler puts ``coalesce.c`` beside it, which copies both parts in one call and grows
the buffer by its own size (up to :data:`SLACK_MAX` more bytes at a time): each byte is
copied about once. :data:`COMPILED` tells which one runs.

The engine's callers branch on :data:`COMPILED` and use ``+=`` themselves when it is
False, so the interpreted engine pays no extra call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .adapter import Buffer

__all__ = ["COMPILED", "SLACK_MAX", "append"]

# Not Final: the compiled engine would fold this file's values into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""
SLACK_MAX: int = 1 << 20
"""The C build reserves at most this many bytes beyond what a buffer holds (or an eighth
of it, CPython's own growth, if that is more)."""


def append(buffer: bytearray, head: Buffer, data: Buffer, /) -> None:
    """``buffer += head; buffer += data``.

    Raises:
        TypeError: ``buffer`` is not a ``bytearray``, or ``head`` or ``data`` is not
            bytes-like.
        BufferError: ``buffer`` is exported (a ``memoryview`` of it is open), so it
            cannot grow.
    """
    if type(buffer) is not bytearray:
        raise TypeError(f"append() needs a bytearray, not {type(buffer).__name__}")
    # Both read before either is added: a bad ``data`` leaves ``buffer`` as it was.
    with memoryview(head) as head_view, memoryview(data) as data_view:
        if not (head_view.c_contiguous and data_view.c_contiguous):
            raise BufferError("append() needs contiguous buffers")
        buffer += head_view
        buffer += data_view
