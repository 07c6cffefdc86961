"""A complete custom transport over Unix domain stream sockets, for the behaviour suite.

It is written against the public adapter contract only (:mod:`message_io.network.adapter`)
and frames messages exactly like ``FRAMED_TCP`` (a varint length prefix, see
:mod:`message_io.codec.framing`), so one ``send`` is one ``Message``. Addresses are
filesystem paths (``str`` or ``os.PathLike``).

Unix sockets connect synchronously: ``connect()`` on a non-blocking socket either
succeeds at once or fails at once (``ENOENT``, ``ECONNREFUSED``, ``EAGAIN`` when the
listener's backlog is full). To behave like the other transports, a failure is not
raised from :meth:`UnixAdapter.connect`: it is kept and reported by
:meth:`UnixRemote.pending`, so the user sees ``Connected(endpoint, False)``. The
unconnected socket still serves as the polled file descriptor: the kernel reports it as
hung up, so the node calls ``pending`` promptly.

The transport is registered once per process as ``Transport.UNIX`` (see :data:`UNIX`).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from message_io import AddressError, Transport, register_transport
from message_io.codec.framing import FrameDecoder, frame_header
from message_io.network.adapter import (
    Adapter,
    Buffer,
    ConnectConfig,
    ConnectionInfo,
    Framing,
    ListenConfig,
    ListeningInfo,
    Local,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
)
from message_io.network.endpoint import Address

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "UNIX",
    "UnixAdapter",
    "UnixConnectConfig",
    "UnixListenConfig",
    "UnixLocal",
    "UnixRemote",
    "accepted_remote",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""The default largest message, as for ``FRAMED_TCP``."""

_READ_SIZE: Final = 256 * 1024
_MAX_READ: Final = 4 * 1024 * 1024
_READS_PER_EVENT: Final = 4
_ACCEPTS_PER_EVENT: Final = 64
_MAX_PATH: Final = 107  # sun_path is 108 bytes on Linux, with the terminating NUL


@dataclass(frozen=True, kw_only=True)
class UnixConnectConfig(ConnectConfig):
    """How ``connect`` opens a Unix socket connection.

    Attributes:
        max_message_size: The largest message sent or received on this connection.
        connect_timeout, send_buffer_limit: See :class:`ConnectConfig`.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, not {self.max_message_size!r}")


@dataclass(frozen=True, kw_only=True)
class UnixListenConfig(ListenConfig):
    """How ``listen`` opens a Unix socket listener.

    Attributes:
        max_message_size: The largest message sent or received on each accepted
            connection; a peer announcing a larger one is disconnected.
        backlog: The ``listen()`` backlog.
        send_buffer_limit: See :class:`ListenConfig`.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    backlog: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, not {self.max_message_size!r}")


def _path(addr: Any) -> str:
    """Validate a Unix socket address: a non-empty filesystem path that fits sun_path."""
    if isinstance(addr, os.PathLike):
        addr = os.fspath(addr)
    if not isinstance(addr, str):
        raise AddressError(f"invalid Unix socket address {addr!r}: expected a path")
    if not addr:
        raise AddressError("invalid Unix socket address '': empty path")
    if len(os.fsencode(addr)) > _MAX_PATH:
        raise AddressError(f"invalid Unix socket address {addr!r}: longer than {_MAX_PATH}")
    return addr


def _text(addr: object) -> str:
    """A peer or local name as the OS gave it, as text (unnamed sockets give '')."""
    if isinstance(addr, bytes):
        return os.fsdecode(addr)
    return str(addr)


class UnixRemote(Remote):
    framing = Framing.HEADER
    reports_incomplete = True
    """One Unix stream connection carrying length-prefixed messages.

    It also records how the node drives it, for tests of the node's side of the adapter
    contract: :attr:`eof` is set once :meth:`receive` reported ``DISCONNECTED``, and
    :attr:`receives_after_eof` counts the calls the node made after that (a node that
    keeps polling a connection at EOF spins).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_message_size: int,
        connect_error: OSError | None = None,
        peer: str = "",
    ) -> None:
        self.socket = sock
        self.peer = peer
        self._fd = sock.fileno()
        self._connect_error = connect_error
        self.max_message_size = max_message_size
        self._decoder = FrameDecoder(max_message_size)
        self._frames: list[bytes] = []
        self.eof = threading.Event()
        self.receives_after_eof = 0
        _remotes.add(self)

    def fileno(self) -> int:
        return self._fd

    def pending(self, readiness: Readiness) -> PendingStatus:
        if self._connect_error is not None:
            self.failure = self._connect_error
            return PendingStatus.DISCONNECTED
        return PendingStatus.READY

    def header(self, size: int) -> bytes:
        return frame_header(size)

    def incomplete(self) -> int:
        """Bytes of the frame being received: the node's message limits then apply."""
        return self._decoder.buffered

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        if self.eof.is_set():
            self.receives_after_eof += 1
        status = self._receive(deliver)
        if status is ReadStatus.DISCONNECTED:
            self.eof.set()
        return status

    def _receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        frames = self._frames
        decoder = self._decoder
        for _ in range(_READS_PER_EVENT):
            wanted = decoder.wanted
            size = min(wanted, _MAX_READ) if wanted > _READ_SIZE else _READ_SIZE
            try:
                data = self.socket.recv(size)
            except BlockingIOError:
                return ReadStatus.OK
            except ConnectionError:
                return ReadStatus.DISCONNECTED
            if not data:
                return ReadStatus.DISCONNECTED
            try:
                decoder.feed(data, frames)  # a FrameError disconnects this peer
            finally:
                for frame in frames:
                    deliver(frame)
                frames.clear()
            if len(data) < size:
                break
        return ReadStatus.OK

    def write(self, data: Buffer) -> int:
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.socket.close()


class UnixLocal(Local):
    """A listening Unix socket; removes its path when closed."""

    def __init__(self, sock: socket.socket, path: str, config: UnixListenConfig) -> None:
        self.socket = sock
        self.path = path
        self._config = config
        self._fd = sock.fileno()
        self._inode = os.stat(path).st_ino

    def fileno(self) -> int:
        return self._fd

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        for _ in range(_ACCEPTS_PER_EVENT):
            try:
                sock, addr = self.socket.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            sock.setblocking(False)
            peer = _text(addr)
            remote = UnixRemote(sock, max_message_size=self._config.max_message_size, peer=peer)
            accept_remote(remote, peer)

    def close(self) -> None:
        self.socket.close()
        try:
            # Only unlink our own socket file, not one another listener bound since.
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


class UnixAdapter(Adapter):
    """The adapter behind ``Transport.UNIX``."""

    connection_oriented: ClassVar[bool] = True
    packet_based: ClassVar[bool] = True
    max_message_size: ClassVar[int | None] = DEFAULT_MAX_MESSAGE_SIZE
    connect_config: ClassVar[type[ConnectConfig]] = UnixConnectConfig
    listen_config: ClassVar[type[ListenConfig]] = UnixListenConfig

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        path = _path(addr)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(path)
            failure = None if err == 0 else OSError(err, os.strerror(err), path)
            local_addr = _text(sock.getsockname())
        except BaseException:
            sock.close()
            raise
        remote = UnixRemote(sock, max_message_size=config.max_message_size, connect_error=failure)
        return ConnectionInfo(remote, local_addr, path)

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        path = _path(addr)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise OSError(errno.EEXIST, "the path exists and is not a socket", path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            try:
                sock.listen(config.backlog)
                sock.setblocking(False)
                local = UnixLocal(sock, path, config)
            except BaseException:
                os.unlink(path)
                raise
        except BaseException:
            sock.close()
            raise
        return ListeningInfo(local, path)


_remotes: weakref.WeakSet[UnixRemote] = weakref.WeakSet()


def accepted_remote(peer: str) -> UnixRemote:
    """The live connection accepted from a client bound to the path ``peer``."""
    found = [remote for remote in list(_remotes) if remote.peer == peer]
    assert len(found) == 1, f"{len(found)} connections accepted from {peer!r}"
    return found[0]


def _register() -> Transport:
    existing = getattr(Transport, "UNIX", None)
    if isinstance(existing, Transport):  # imported twice (under another module name)
        return existing
    return register_transport("UNIX", UnixAdapter())


UNIX: Final[Transport] = _register()
"""The Unix domain socket transport, registered once per process."""
