"""``Transport.UNIX``: whole messages over Unix domain stream sockets, for local IPC.

Messages are framed exactly as on ``Transport.FRAMED_TCP``: a varint length prefix, then
the payload (see :mod:`message_io.codec.framing`), so one ``send`` is one ``Message``. A
peer that announces a message over ``max_message_size`` or sends an invalid prefix is
disconnected. The transport is written with the public adapter contract only
(:mod:`message_io.network.adapter`), like any transport of your own.

Addresses
---------
* A filesystem path: a ``str`` or an ``os.PathLike`` (``pathlib.Path``), at most 107
  bytes once encoded (``sun_path`` holds 108, with the terminating NUL). Relative paths
  are relative to the working directory of the moment.
* A Linux abstract name: a ``str`` that starts with ``"\\0"``, as in ``"\\0my-service"``
  (at most 108 bytes, the NUL included). It is Python's own convention
  (``socket.bind("\\0name")``); the ``"@name"`` spelling of some tools is not used
  because ``"@name"`` is also a legal file name.

``listen`` and the endpoints report addresses as ``str``: a path as given (after
``os.fspath``), an abstract name with its leading ``"\\0"``. A client socket has no name
(``connect`` binds none), so the ``Accepted`` endpoints of clients all have the address
``""``: tell them apart by their resource id.

The socket file
---------------
* ``listen`` creates it with the process umask, so its mode is ``0o777 & ~umask``
  (``0o755`` with the usual ``022``); a client needs write permission on it to connect,
  and search permission on the directories above it. ``UnixListenConfig(mode=0o600)``
  changes the mode between ``bind`` and ``listen``, before any client can connect.
* A stale file, left by a process that died without closing its listener, is replaced:
  ``listen`` connects to it, and if nothing accepts (``ECONNREFUSED``) the file is
  removed and bound again. If a listener answers, ``listen`` fails with ``EADDRINUSE``
  and the file is kept (the probe is a connection that listener sees open and close).
  ``UnixListenConfig(unlink_stale=False)`` never removes anything: an existing file
  makes ``listen`` fail with ``EADDRINUSE``. A path that is not a socket is never
  removed (``EEXIST``).
* The file is removed when the listener closes (``remove(listener_id)``, or the node
  stops), unless another socket has replaced it since (compared by inode), as asyncio's
  ``create_unix_server`` does.

An abstract name has no file, hence no permissions (any process of the same network
namespace may connect) and nothing stale: the name is free again as soon as the
listener's socket closes.

Connecting
----------
A non-blocking ``connect`` on a Unix socket succeeds or fails at once: ``ENOENT`` (no
such file), ``ECONNREFUSED`` (nobody listens), ``EACCES`` (the socket file's mode), or
``EAGAIN`` (the listener's backlog is full; raise ``backlog``). As on the other
transports, :meth:`UnixAdapter.connect` does not raise such a failure: it is kept and
reported by :meth:`UnixRemote.pending`, so the caller sees ``Connected(endpoint, False,
error)`` (or ``connect_sync`` raises it). The unconnected socket is the polled file
descriptor meanwhile: the kernel reports it hung up, so the node asks at once.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..codec.framing import FrameDecoder, frame_header
from ..errors import AddressError
from ..network.adapter import (
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
from ..network.endpoint import Address

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "LISTENER_BACKLOG",
    "UnixAdapter",
    "UnixConnectConfig",
    "UnixListenConfig",
    "UnixLocal",
    "UnixRemote",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""The default largest message (16 MiB), in both directions, as on ``FRAMED_TCP``."""

LISTENER_BACKLOG: Final = 1024
"""Default ``listen()`` backlog, as on TCP. A client that finds it full fails (``EAGAIN``)."""

# 64 KiB per read, as on FRAMED_TCP (a larger recv() makes CPython allocate that much for
# every read); the rest of a large frame is read in one recv() of its exact size, capped.
_READ_SIZE: Final = 64 * 1024
_MAX_READ: Final = 4 * 1024 * 1024
_READS_PER_EVENT: Final = 4  # reads per readiness before yielding to other peers
_ACCEPTS_PER_EVENT: Final = 64
_SUN_PATH: Final = 108  # sizeof(sun_path) on Linux
_ABSTRACT_PREFIX: Final = "\0"

# The enum's members as globals (see tcp.py: a lookup on the enum costs 70 ns).
_OK: Final = ReadStatus.OK
_DISCONNECTED: Final = ReadStatus.DISCONNECTED


def _check_max(config: object, value: int) -> None:
    if not 0 <= value < 2**64:
        name = type(config).__name__
        raise ValueError(f"{name}.max_message_size must be in [0, 2**64), not {value!r}")


@dataclass(frozen=True, kw_only=True)
class UnixConnectConfig(ConnectConfig):
    """How ``connect`` opens a Unix socket connection.

    Attributes:
        max_message_size: The largest message sent or received on this connection.

    The other fields (``connect_timeout``, ``send_buffer_limit``, ``message_timeout``,
    ``min_message_rate``, ``idle_timeout``) are those of
    :class:`~message_io.network.adapter.ConnectConfig`.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_max(self, self.max_message_size)


@dataclass(frozen=True, kw_only=True)
class UnixListenConfig(ListenConfig):
    """How ``listen`` opens a Unix socket listener.

    Attributes:
        max_message_size: The largest message sent or received on each accepted
            connection; a peer announcing a larger one is disconnected.
        backlog: The ``listen()`` backlog: connections the kernel holds until accepted.
        mode: If set, the permission bits of the socket file (``0o600``: its owner
            only), applied before the socket listens. ``None``: the process umask
            decides. Only for paths: an abstract name has no file (``ValueError``).
        unlink_stale: Remove a socket file that nobody listens on before binding
            (see the module's documentation). False: an existing file is an error.

    The other fields (``send_buffer_limit``, ``handshake_timeout``, ``message_timeout``,
    ``min_message_rate``, ``idle_timeout``) are those of
    :class:`~message_io.network.adapter.ListenConfig`.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: ``max_message_size`` out of ``[0, 2**64)``, ``backlog`` < 0, or
            ``mode`` out of ``[0, 0o7777]``.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    backlog: int = LISTENER_BACKLOG
    mode: int | None = None
    unlink_stale: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_max(self, self.max_message_size)
        if self.backlog < 0:
            raise ValueError(f"UnixListenConfig.backlog must be >= 0, not {self.backlog!r}")
        if self.mode is not None and not 0 <= self.mode <= 0o7777:
            raise ValueError(f"UnixListenConfig.mode must be in [0, 0o7777], not {self.mode!r}")


def unix_address(addr: Any) -> str:
    """Check a Unix socket address and return it as the ``str`` the socket takes.

    Args:
        addr: A path (``str`` or ``os.PathLike``) or an abstract name (``"\\0name"``).

    Raises:
        AddressError: not a path, empty, too long, or a path holding a NUL byte.
    """
    if isinstance(addr, os.PathLike):
        addr = os.fspath(addr)
        if isinstance(addr, bytes):
            addr = os.fsdecode(addr)
    if not isinstance(addr, str):
        kind = type(addr).__name__
        raise AddressError(f"invalid Unix socket address {addr!r}: expected a path, not {kind}")
    if not addr:
        raise AddressError("invalid Unix socket address '': empty path")
    size = len(os.fsencode(addr))
    if addr.startswith(_ABSTRACT_PREFIX):
        if size > _SUN_PATH:
            raise AddressError(
                f"invalid Unix socket address {addr!r}: an abstract name of {size} bytes, "
                f"over {_SUN_PATH}"
            )
    elif "\0" in addr:
        raise AddressError(f"invalid Unix socket address {addr!r}: a NUL byte in a path")
    elif size >= _SUN_PATH:
        raise AddressError(
            f"invalid Unix socket address {addr!r}: a path of {size} bytes, over {_SUN_PATH - 1}"
        )
    return addr


def is_abstract(addr: str) -> bool:
    """True if ``addr`` (checked by :func:`unix_address`) is a Linux abstract name."""
    return addr.startswith(_ABSTRACT_PREFIX)


def _name(addr: object) -> str:
    """A socket name as the OS gave it (``str``, or ``bytes`` for an abstract one), as text;
    an unnamed socket gives ``""``."""
    if isinstance(addr, bytes):
        return os.fsdecode(addr)
    return str(addr)


class UnixRemote(Remote):
    """One Unix stream connection carrying length-prefixed messages.

    Args:
        sock: The connected (or failed) non-blocking socket.
        max_message_size: The largest message sent or received.
        connect_error: Why the connect failed, if it did: reported by :meth:`pending`.
    """

    framing = Framing.HEADER  # the varint length, then the payload itself
    reports_incomplete = True  # the node's message_timeout and memory cap apply

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_message_size: int,
        connect_error: OSError | None = None,
    ) -> None:
        self.socket = sock
        self._fd = sock.fileno()
        self._recv = sock.recv
        self._send = sock.send
        self._sendmsg = sock.sendmsg
        self._connect_error = connect_error
        self.max_message_size = max_message_size
        self._decoder = FrameDecoder(max_message_size)
        self._frames: list[bytes] = []

    def fileno(self) -> int:
        return self._fd

    def pending(self, readiness: Readiness) -> PendingStatus:
        """READY at once, or DISCONNECTED with the error ``connect`` met."""
        if self._connect_error is not None:
            self.failure = self._connect_error
            return PendingStatus.DISCONNECTED
        return PendingStatus.READY

    # The varint header; a static method so the send path makes one call, not two.
    header = staticmethod(frame_header)

    def incomplete(self) -> int:
        """Bytes of the frame being received: the node's message limits then apply."""
        return self._decoder.buffered

    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        """Read and decode frames: 64 KiB at a time, or the rest of a large frame in one
        read of its size (up to 4 MiB)."""
        recv = self._recv
        decoder = self._decoder
        frames = self._frames
        for _ in range(_READS_PER_EVENT):
            wanted = decoder.wanted
            size = min(wanted, _MAX_READ) if wanted > _READ_SIZE else _READ_SIZE
            try:
                data = recv(size)
            except BlockingIOError:
                return _OK
            except ConnectionError:
                return _DISCONNECTED
            if not data:
                return _DISCONNECTED
            try:
                decoder.feed(data, frames)  # a FrameError disconnects this peer
            finally:
                for frame in frames:
                    deliver(frame)
                frames.clear()
            if len(data) < size:
                break  # the OS had no more: skip the read that would say "would block"
        return _OK

    def write(self, data: Buffer) -> int:
        try:
            return self._send(data)
        except BlockingIOError:
            return 0

    def write_many(self, buffers: list[Buffer]) -> int:
        try:
            return self._sendmsg(buffers)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.socket.close()


class UnixLocal(Local):
    """A listening Unix socket; removes its socket file when closed (if still its own).

    Args:
        sock: The bound, listening, non-blocking socket.
        addr: The address it is bound to (checked by :func:`unix_address`).
        config: The listen config; its ``max_message_size`` applies to each connection.
    """

    def __init__(self, sock: socket.socket, addr: str, config: UnixListenConfig) -> None:
        self.socket = sock
        self.address = addr
        self._config = config
        self._fd = sock.fileno()
        self._inode = None if is_abstract(addr) else os.stat(addr).st_ino

    def fileno(self) -> int:
        return self._fd

    def make_remote(self, sock: socket.socket, peer: str) -> Remote:
        """Wrap an accepted socket (whose peer is named ``peer``); subclasses override it."""
        return UnixRemote(sock, max_message_size=self._config.max_message_size)

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
                continue  # the peer gave up before we accepted: nothing to do
            sock.setblocking(False)
            peer = _name(addr)
            accept_remote(self.make_remote(sock, peer), peer)

    def close(self) -> None:
        self.socket.close()
        if self._inode is None:
            return
        try:
            # Only our own socket file, not one that another listener bound there since.
            if os.stat(self.address).st_ino == self._inode:
                os.unlink(self.address)
        except FileNotFoundError:
            pass


def _remove_stale(path: str) -> None:
    """Remove the socket file at ``path`` if nobody listens on it.

    Raises:
        OSError: ``EEXIST`` if ``path`` is not a socket; ``EADDRINUSE`` if a listener
            accepts connections there; what probing it met otherwise (``EACCES``).
    """
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, "the path exists and is not a socket", path)
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        err = probe.connect_ex(path)
    finally:
        probe.close()
    if err == errno.ECONNREFUSED:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    elif err in (0, errno.EAGAIN):  # connected, or its backlog is full: a live listener
        raise OSError(errno.EADDRINUSE, "a listener is live on this socket", path)
    elif err != errno.ENOENT:  # removed meanwhile: nothing to do
        raise OSError(err, os.strerror(err), path)


class UnixAdapter(Adapter):
    """The adapter behind ``Transport.UNIX``."""

    connection_oriented: ClassVar[bool] = True
    packet_based: ClassVar[bool] = True
    max_message_size: ClassVar[int | None] = DEFAULT_MAX_MESSAGE_SIZE
    connect_config: ClassVar[type[ConnectConfig]] = UnixConnectConfig
    listen_config: ClassVar[type[ListenConfig]] = UnixListenConfig

    def make_remote(
        self, sock: socket.socket, config: Any, connect_error: OSError | None
    ) -> Remote:
        """Wrap a connecting socket; subclasses override it."""
        return UnixRemote(
            sock, max_message_size=config.max_message_size, connect_error=connect_error
        )

    def make_local(self, sock: socket.socket, addr: str, config: Any) -> Local:
        """Wrap a listening socket; subclasses override it."""
        return UnixLocal(sock, addr, config)

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        """Connect at once; a failure is kept for :meth:`UnixRemote.pending`.

        Raises:
            AddressError: ``addr`` is not a valid Unix socket address.
        """
        path = unix_address(addr)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(path)
            failure = None if err == 0 else OSError(err, os.strerror(err), path)
            local_addr = _name(sock.getsockname())
            remote = self.make_remote(sock, config, failure)
        except BaseException:
            sock.close()
            raise
        return ConnectionInfo(remote, local_addr, path)

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        """Bind ``addr`` (replacing a stale socket file), apply ``mode``, listen.

        Raises:
            AddressError: ``addr`` is not a valid Unix socket address.
            ValueError: ``config.mode`` is set for an abstract name.
            OSError: the path is taken (``EADDRINUSE``), is not a socket (``EEXIST``),
                or cannot be created (``EACCES``, ``ENOENT`` for a missing directory).
        """
        path = unix_address(addr)
        abstract = is_abstract(path)
        if abstract and config.mode is not None:
            raise ValueError(f"mode applies to a socket file; {path!r} is an abstract name")
        if config.unlink_stale and not abstract:
            _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            try:
                if config.mode is not None:
                    os.chmod(path, config.mode)
                sock.listen(config.backlog)
                sock.setblocking(False)
                local = self.make_local(sock, path, config)
            except BaseException:
                if not abstract:
                    os.unlink(path)
                raise
        except BaseException:
            sock.close()
            raise
        return ListeningInfo(local, path)
