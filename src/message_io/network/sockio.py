"""The engine's non-blocking socket calls.

This file is what runs without the compiled engine; a build with a C compiler puts
``sockio.c`` beside it, which makes the same calls directly: without parsing arguments
the generic way, with ``MSG_DONTWAIT``, and keeping the GIL for transfers of up to
:data:`GIL_LIMIT` bytes (a non-blocking call never waits, so releasing the GIL around
it costs more than it lends). :data:`COMPILED` tells which one runs.

The engine's callers branch on :data:`COMPILED` and call the socket's own methods
themselves when it is False, so the interpreted engine pays no extra call.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

__all__ = [
    "BATCH",
    "COMPILED",
    "DIRECT",
    "GIL_LIMIT",
    "accept",
    "pending",
    "recv",
    "recv_some",
    "recvfrom",
    "recvfrom_some",
    "send",
    "send2",
    "send_back",
]

# Not Final: the compiled engine would fold this file's values into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""
DIRECT: bool = False
"""True in the C build when it reads an exact ``socket.socket``'s descriptor itself
(every CPython it was built for); False: it calls the socket's methods."""
GIL_LIMIT: int = 65536
"""The C build releases the GIL for transfers larger than this many bytes only."""
BATCH: int = 16
"""The most datagrams one :func:`recv_some` call reads."""


def recv(sock: socket.socket, size: int, flags: int = 0, /) -> bytes:
    """``sock.recv(size, flags)``; ``BlockingIOError`` when nothing waits."""
    return sock.recv(size, flags)


def recvfrom(sock: socket.socket, size: int, flags: int = 0, /) -> tuple[bytes, Any]:
    """``sock.recvfrom(size, flags)``: a datagram and its sender's address (the C twin
    gives the same tuple object again while the sender stays the same);
    ``BlockingIOError`` when nothing waits."""
    return sock.recvfrom(size, flags)


def recv_some(
    sock: socket.socket, size: int, flags: int, out: list[Any], limit: int, /
) -> int | None:
    """Read up to ``limit`` datagrams (:data:`BATCH` at most) of the datagram socket
    ``sock`` with one system call (``recvmmsg``), each as ``recv(size, flags)`` reads it,
    and append them to ``out``: the number read, fewer than asked when no other datagram
    waited, or when an error ended the batch (the kernel keeps it for the next call, and
    the socket stays readable). ``BlockingIOError`` when none waits; the error of the
    first datagram as ``recv`` raises it.

    None, having read nothing, when the datagrams cannot be read so: the caller reads them
    one at a time. The C twin reads an exact ``socket.socket`` on Linux, for a ``size``
    from 1 to :data:`GIL_LIMIT` and without ``MSG_PEEK``, until the system refuses
    ``recvmmsg`` (a seccomp filter: ``ENOSYS``, ``EPERM``...); this twin never does (Python
    has no ``recvmmsg``) and always answers None."""
    return None


def recvfrom_some(
    sock: socket.socket, size: int, flags: int, out: list[Any], limit: int, /
) -> int | None:
    """:func:`recv_some`, appending ``(address, data)`` pairs: each datagram's sender as
    :func:`recvfrom` gives it, and its bytes; :func:`send_back` knows the last sender.
    This twin always answers None."""
    return None


def send(sock: socket.socket, data: bytes | bytearray | memoryview, /) -> int:
    """``sock.send(data)``: the bytes sent; ``BlockingIOError`` when none could be."""
    return sock.send(data)


def send2(sock: socket.socket, head: bytes, data: bytes | bytearray | memoryview, /) -> int:
    """``sock.send(head + data)``: the bytes sent of the two together (the C twin copies
    them into one buffer instead of making ``head + data``); ``BlockingIOError`` when
    none could be."""
    return sock.send(head + data)


def send_back(
    sock: socket.socket, data: bytes | bytearray | memoryview, addr: Any, /
) -> int | None:
    """``sock.sendto(data, addr)`` when ``addr`` is the very tuple the last
    :func:`recvfrom` returned, sent to that sender as read (no tuple parsed); None,
    having sent nothing, for any other ``addr``. This twin keeps no sender (its
    ``recvfrom`` is the socket's): it always answers None, and the caller sends."""
    return None


def accept(sock: socket.socket, /) -> tuple[int, Any]:
    """``sock._accept()`` of an IPv4 or IPv6 listening socket, the new descriptor
    already non-blocking (the C twin asks ``accept4`` for that, this one makes it so
    afterwards): wrap it as ``socket.socket(family, type | SOCK_NONBLOCK, proto,
    fileno=fd)``. ``BlockingIOError`` when no connection waits."""
    fd, addr = sock._accept()  # type: ignore[attr-defined]
    try:
        os.set_blocking(fd, False)
    except BaseException:
        os.close(fd)
        raise
    return fd, addr


def pending(sock: socket.socket, /) -> int:
    """The bytes waiting to be read (``FIONREAD``; on a datagram socket, the size of the
    next datagram). Raises ``OSError`` if the socket cannot tell."""
    import fcntl  # noqa: PLC0415 - POSIX only, and only this call needs it
    import termios  # noqa: PLC0415

    fd = sock.fileno()
    if fd < 0:  # closed: as the C twin, which asks the OS with the -1 it reads
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    answer = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, answer)
    return int.from_bytes(answer, sys.byteorder, signed=True)
