"""``Transport.FRAMED_TCP``: whole messages over TCP, byte-compatible with the Rust crate.

Each message is a varint length prefix (unsigned LEB128) followed by the payload; see
:mod:`message_io.codec.framing`. A zero-length message is legal. A peer that announces
a message larger than ``max_message_size`` or sends an invalid prefix is disconnected
(one log line); the size is checked on the header, before anything is buffered.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..codec.framing import frame_header
from ..network.adapter import Framing, ReadStatus
from ..network.framed_reader import FrameReader
from .tcp import (
    INPUT_BUFFER_SIZE,
    TcpAdapter,
    TcpConnectConfig,
    TcpListenConfig,
    TcpLocal,
    TcpRemote,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FramedTcpAdapter",
    "FramedTcpConnectConfig",
    "FramedTcpListenConfig",
    "FramedTcpLocal",
    "FramedTcpRemote",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""The default largest message (16 MiB), in both directions."""

# 64 KiB: a larger recv() makes CPython allocate (and the allocator mmap) a buffer that
# big for every read, even for a 1-byte message: 17 us instead of 2.4 us here.
_READ_SIZE: Final = 64 * 1024

# The enum's members as globals (see tcp.py: a lookup on the enum costs 70 ns).
_OK: Final = ReadStatus.OK
_DISCONNECTED: Final = ReadStatus.DISCONNECTED


def _check_max(value: int) -> None:
    if not 0 <= value < 2**64:
        raise ValueError(f"max_message_size must be in [0, 2**64), not {value!r}")


@dataclass(frozen=True, kw_only=True)
class FramedTcpConnectConfig(TcpConnectConfig):
    """:class:`~message_io.adapters.tcp.TcpConnectConfig` plus the message size limit.

    Attributes:
        max_message_size: The largest message sent or received on this connection.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_max(self.max_message_size)


@dataclass(frozen=True, kw_only=True)
class FramedTcpListenConfig(TcpListenConfig):
    """:class:`~message_io.adapters.tcp.TcpListenConfig` plus the message size limit.

    Attributes:
        max_message_size: The largest message sent or received on each accepted
            connection. A peer announcing a larger one is disconnected.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_max(self.max_message_size)


class FramedTcpRemote(TcpRemote):
    """A TCP connection carrying length-prefixed messages."""

    framing = Framing.HEADER  # the varint length, then the payload itself
    reports_incomplete = True
    _built_in = True

    def __init__(
        self,
        sock: socket.socket,
        *,
        connecting: bool,
        max_message_size: int,
    ) -> None:
        super().__init__(sock, connecting=connecting, read_size=_READ_SIZE)
        self.max_message_size = max_message_size
        self._reader = FrameReader(sock, max_message_size, self._read_size)

    def incomplete(self) -> int:
        """Bytes of the frame being received (header and payload so far)."""
        return self._reader.incomplete()

    # The varint header; a static method so the send path makes one call, not two.
    header = staticmethod(frame_header)

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        """Read and decode frames (see :mod:`message_io.network.framed_reader`)."""
        reader = self._reader
        # A subclass may have replaced the socket (wrapped it) or the limit since
        # __init__: the reader follows, as when they were read here at each call.
        reader.sock = self.socket
        if reader.decoder is None:
            limit = self.max_message_size
            assert limit is not None  # set by __init__
            reader.max_message_size = limit
        # A list's ``append`` (the node's, when it does not call the reader itself):
        # decode straight into that list instead of calling ``deliver`` per message.
        target = getattr(deliver, "__self__", None)
        if type(target) is list:
            closed = reader.read(target)
        else:
            frames: list[bytes] = []
            try:
                closed = reader.read(frames)
            finally:
                for frame in frames:
                    deliver(frame)
        return _DISCONNECTED if closed else _OK

    def _frame_reader(self) -> FrameReader | None:
        """The reader behind :meth:`receive` and :meth:`incomplete`, for the node to call
        directly: for this class itself. A subclass may override them or replace the
        socket: the node calls :meth:`receive` and :meth:`incomplete` for it."""
        return self._reader if self._built_in else None


class FramedTcpLocal(TcpLocal):
    """A TCP listener whose connections carry length-prefixed messages."""

    def make_remote(self, sock: socket.socket) -> FramedTcpRemote:
        config: Any = self._config
        return FramedTcpRemote(
            sock,
            connecting=False,
            max_message_size=config.max_message_size,
        )


class FramedTcpAdapter(TcpAdapter):
    """The adapter behind ``Transport.FRAMED_TCP``."""

    packet_based = True
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    connect_config = FramedTcpConnectConfig
    listen_config = FramedTcpListenConfig

    def make_remote(self, sock: socket.socket, config: Any) -> FramedTcpRemote:
        return FramedTcpRemote(
            sock,
            connecting=True,
            max_message_size=config.max_message_size,
        )

    def make_local(self, sock: socket.socket, config: Any) -> FramedTcpLocal:
        return FramedTcpLocal(sock, config)


assert INPUT_BUFFER_SIZE <= _READ_SIZE
