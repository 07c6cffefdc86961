"""``Transport.TCP``: a raw byte stream. Each ``Message`` is what one read returned.

TCP does not keep message boundaries: two sends may arrive as one ``Message`` and one
send as several. Use it to talk to peers that speak their own stream protocol; use
``Transport.FRAMED_TCP`` to exchange whole messages.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..network import sockio
from ..network.adapter import (
    Adapter,
    Buffer,
    ConnectConfig,
    ConnectionInfo,
    Framing,
    HostName,
    ListenConfig,
    ListeningInfo,
    Local,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
    check_fields,
    check_ip_address,
    host_name,
    resolve_address,
)
from ..network.endpoint import Address

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HAPPY_EYEBALLS_DELAY",
    "DEFAULT_KEEPALIVE",
    "INPUT_BUFFER_SIZE",
    "LISTENER_BACKLOG",
    "TcpAdapter",
    "TcpConnectConfig",
    "TcpKeepalive",
    "TcpListenConfig",
    "TcpLocal",
    "TcpRemote",
]

log = logging.getLogger("message_io")

INPUT_BUFFER_SIZE: Final = 65536
"""Bytes asked of the OS per read (the Rust crate reads 65535)."""

LISTENER_BACKLOG: Final = 1024
"""Default ``listen()`` backlog, as in the Rust crate."""

_READS_PER_EVENT: Final = 4  # reads per readiness event before yielding to other peers
_ACCEPTS_PER_EVENT: Final = 64
_NONBLOCK: Final = getattr(socket, "SOCK_NONBLOCK", 0)  # Linux: a type flag
# Globals, not the enum's attributes: ``ReadStatus.OK`` costs 70 ns (its metaclass has a
# ``__getattr__``), a global 8.
_OK: Final = ReadStatus.OK
_DISCONNECTED: Final = ReadStatus.DISCONNECTED
_READY: Final = PendingStatus.READY  # what pending() says of every accepted connection
_IN_PROGRESS: Final = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}


@dataclass(frozen=True, kw_only=True)
class TcpKeepalive:
    """TCP keepalive probes: detect a peer that vanished without closing.

    On by default for TCP, FramedTcp and WebSocket connections with
    :data:`DEFAULT_KEEPALIVE` (Go's net package defaults: 15 s idle, 15 s between probes,
    9 probes), so a peer that vanished (no FIN, no RST) is noticed within about 2.5
    minutes of silence. Pass ``keepalive=None`` in a config to turn it off.

    Attributes:
        time: Idle seconds before the first probe (``TCP_KEEPIDLE``).
        interval: Seconds between probes (``TCP_KEEPINTVL``).
        retries: Unanswered probes before the connection is dropped (``TCP_KEEPCNT``).
    Fields left ``None`` keep the OS default; options the OS lacks are skipped.

    Raises:
        TypeError: a field is not a number (``retries``: not an ``int``).
        ValueError: ``time`` or ``interval`` is not a finite number > 0, or ``retries``
            is < 1.
    """

    time: float | None = None
    interval: float | None = None
    retries: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("time", "interval"):
            value = getattr(self, name)
            if value is not None and not 0 < value < float("inf"):
                raise ValueError(f"TcpKeepalive.{name} must be a finite number > 0, not {value!r}")
        if self.retries is not None and self.retries < 1:
            raise ValueError(f"TcpKeepalive.retries must be >= 1, not {self.retries!r}")

    def apply(self, sock: socket.socket) -> None:
        """Enable keepalive on ``sock`` with these settings."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", self.time),
            ("TCP_KEEPINTVL", self.interval),
            ("TCP_KEEPCNT", self.retries),
        ):
            option = getattr(socket, name, None)
            if value is not None and option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(value)))


DEFAULT_CONNECT_TIMEOUT: Final = 10.0
"""Seconds a TCP-based connect may take by default (websockets' ``open_timeout``)."""

DEFAULT_KEEPALIVE: Final = TcpKeepalive(time=15, interval=15, retries=9)
"""The keepalive every TCP-based connection has unless its config says otherwise."""

DEFAULT_HAPPY_EYEBALLS_DELAY: Final = 0.25
"""Seconds before the next address of a host name is tried in parallel: RFC 8305's
recommended "Connection Attempt Delay" (trio's default too)."""


@dataclass(frozen=True, kw_only=True)
class TcpConnectConfig(ConnectConfig):
    """How ``connect`` opens a TCP connection.

    Attributes:
        source_address: Bind to this local ``(host, port)`` / ``"host:port"`` first.
        bind_device: Bind to this network interface (``SO_BINDTODEVICE``; Linux, and
            usually needs privileges).
        keepalive: TCP keepalive settings (default :data:`DEFAULT_KEEPALIVE`); ``None``
            turns keepalive off.
        nodelay: Disable Nagle's algorithm (``TCP_NODELAY``). On by default: the node
            already coalesces small messages itself, so Nagle only adds delay (see
            ``docs/performance.md`` for the measurement).
        unsent_limit: Bytes not yet sent that the kernel may hold in this connection's
            send buffer (``TCP_NOTSENT_LOWAT``); the rest waits in the node's own queue
            (``send_buffer_limit``). ``None`` (default): the system's setting (on
            Linux ``net.ipv4.tcp_notsent_lowat``, no limit unless set). A limit moves
            the work of pushing queued bytes onto the network to the sending side. On
            loopback the receiving thread otherwise does it while it reads: with 64 KiB
            a bulk transfer between two threads of one process runs much faster, and a
            sender of many small messages slower (more, smaller writes); see
            ``docs/transports.md`` and ``docs/performance.md``. Where the OS has no
            such option, ``connect`` raises ``ConnectError``.
        connect_timeout: Seconds before giving up with ``Connected(endpoint, False)``
            (default 10, as WebSocket's; the kernel alone retries a SYN for minutes);
            ``None`` leaves it to the OS. It covers the name lookup and every address
            tried.
        happy_eyeballs_delay: For a host name with several addresses: seconds to wait
            for an attempt before starting the next address in parallel (Happy
            Eyeballs, RFC 8305; default 0.25, as trio's, asyncio's
            ``happy_eyeballs_delay``). The first to connect wins, the others are
            closed; a failed attempt starts the next one at once. ``None``: one address
            at a time, the next only once the last has failed.
        send_buffer_limit: See :class:`ConnectConfig`.

    Raises:
        ValueError: ``happy_eyeballs_delay`` is negative, NaN or infinite (and the
            checks of :class:`ConnectConfig`).
        AddressError: ``source_address`` is not an IP address and port (a host name
            would have to be resolved on the loop thread).
    """

    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    happy_eyeballs_delay: float | None = DEFAULT_HAPPY_EYEBALLS_DELAY
    source_address: Any = None
    bind_device: str | None = None
    keepalive: TcpKeepalive | None = DEFAULT_KEEPALIVE
    nodelay: bool = True
    unsent_limit: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source_address is not None:
            check_ip_address(
                self.source_address, f"{type(self).__name__}.source_address", passive=True
            )
        delay = self.happy_eyeballs_delay
        if delay is not None and not 0 <= delay < float("inf"):
            raise ValueError(
                f"{type(self).__name__}.happy_eyeballs_delay must be a finite number >= 0 "
                f"or None, not {delay!r}"
            )


@dataclass(frozen=True, kw_only=True)
class TcpListenConfig(ListenConfig):
    """How ``listen`` opens a TCP listener.

    Attributes:
        bind_device: Bind to this network interface (``SO_BINDTODEVICE``, Linux).
        keepalive: TCP keepalive on every accepted connection (default
            :data:`DEFAULT_KEEPALIVE`; ``None``: off).
        nodelay: ``TCP_NODELAY`` on every accepted connection (default on).
        unsent_limit: ``TCP_NOTSENT_LOWAT`` on every accepted connection: see
            :class:`TcpConnectConfig` (default ``None``, the system's setting). Where
            the OS has no such option, ``listen`` raises ``ListenError``.
        reuse_address: ``SO_REUSEADDR`` (default on, so a restarted server can bind at
            once).
        reuse_port: ``SO_REUSEPORT`` where the OS has it (several listeners, one port).
        backlog: The ``listen()`` backlog.
        send_buffer_limit: See :class:`ListenConfig`.
    """

    bind_device: str | None = None
    keepalive: TcpKeepalive | None = DEFAULT_KEEPALIVE
    nodelay: bool = True
    unsent_limit: int | None = None
    reuse_address: bool = True
    reuse_port: bool = False
    backlog: int = LISTENER_BACKLOG


def _bind_device(sock: socket.socket, device: str) -> None:
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        raise OSError(errno.EOPNOTSUPP, f"binding to device {device!r} is not supported here")
    sock.setsockopt(socket.SOL_SOCKET, option, device.encode() + b"\0")


def _nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not every stream socket is TCP (e.g. a test's Unix socket)
        pass


# TCP_NOTSENT_LOWAT (Linux, macOS); None where Python does not know it.
_NOTSENT_LOWAT: Final[int | None] = getattr(socket, "TCP_NOTSENT_LOWAT", None)


def _unsent_limit(sock: socket.socket, limit: int) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # not every stream socket is TCP (e.g. a test's Unix socket)
    if _NOTSENT_LOWAT is None:
        raise OSError(errno.EOPNOTSUPP, "unsent_limit (TCP_NOTSENT_LOWAT) is not supported here")
    sock.setsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT, limit)


def _set_options(sock: socket.socket, config: Any) -> None:
    """Set ``config``'s ``nodelay``, ``keepalive`` and ``unsent_limit`` on ``sock``."""
    if config.nodelay:
        _nodelay(sock)
    if config.keepalive is not None:
        _keepalive(sock, config.keepalive)
    if config.unsent_limit is not None:
        _unsent_limit(sock, config.unsent_limit)


# The options _set_options sets, that an accepted socket must show as its listener does.
_OPTIONS: Final = tuple(
    (level, getattr(socket, name))
    for level, name in (
        (socket.SOL_SOCKET, "SO_KEEPALIVE"),
        (socket.IPPROTO_TCP, "TCP_NODELAY"),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE"),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL"),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT"),
        (socket.IPPROTO_TCP, "TCP_NOTSENT_LOWAT"),
    )
    if hasattr(socket, name)
)


def _options_of(sock: socket.socket) -> tuple[int, ...] | None:
    """``sock``'s values of :data:`_OPTIONS`; None if it cannot tell (not TCP)."""
    try:
        return tuple(sock.getsockopt(level, option) for level, option in _OPTIONS)
    except OSError:
        return None


def _keepalive(sock: socket.socket, keepalive: TcpKeepalive) -> None:
    """Enable keepalive on a new socket (the options hold from before connect())."""
    try:
        keepalive.apply(sock)
    except OSError as exc:  # not every stream socket is TCP (a test's Unix socket)
        log.debug("could not enable TCP keepalive: %s", exc)


def connect_status(sock: socket.socket) -> PendingStatus:
    """Where a non-blocking connect stands: READY or INCOMPLETE.

    Raises:
        OSError: the connect failed (refused, unreachable...).
    """
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))
    try:
        sock.getpeername()
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.EINVAL):
            return PendingStatus.INCOMPLETE
        raise
    return PendingStatus.READY


class TcpRemote(Remote):
    """One TCP connection. Subclassed by framed transports, which add a decoder."""

    framing = Framing.NONE  # a raw byte stream: messages are written as given
    _built_in = True

    def __init__(
        self,
        sock: socket.socket,
        *,
        connecting: bool,
        read_size: int = INPUT_BUFFER_SIZE,
    ) -> None:
        self.socket = sock
        self._fd = sock.fileno()
        self._connecting = connecting
        self._read_size = read_size
        # No bound methods kept (sock.recv...): 72 bytes each, per connection.

    def fileno(self) -> int:
        return self._fd

    def pending(self, readiness: Readiness) -> PendingStatus:
        """Decide a non-blocking connect: ``SO_ERROR`` tells failure, a peer name success."""
        sock = self.socket
        if self._connecting:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.failure = OSError(err, os.strerror(err))
                return PendingStatus.DISCONNECTED
            try:
                sock.getpeername()
            except OSError as exc:
                if exc.errno in (errno.ENOTCONN, errno.EINVAL):
                    return PendingStatus.INCOMPLETE
                self.failure = exc
                return PendingStatus.DISCONNECTED
            self._connecting = False
        return _READY

    def pending_interest(self) -> Readiness:
        return Readiness.WRITE

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        recv = self.socket.recv
        size = self._read_size
        for _ in range(_READS_PER_EVENT):
            try:
                data = recv(size)
            except BlockingIOError:
                return _OK
            except ConnectionError as exc:
                log.debug("connection lost: %s", exc)
                return _DISCONNECTED
            if not data:
                return _DISCONNECTED
            deliver(data)
            if len(data) < size:
                break  # the OS had no more: skip the read that would say "would block"
        return _OK

    def write(self, data: Buffer) -> int:
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0

    def write_many(self, buffers: list[Buffer]) -> int:
        try:
            return self.socket.sendmsg(buffers)
        except BlockingIOError:
            return 0

    def _direct_socket(self) -> socket.socket | None:
        """The socket, for the built-in classes themselves. A subclass may override
        :meth:`write` or replace the socket: the node calls :meth:`write` for it."""
        return self.socket if self._built_in else None

    def close(self) -> None:
        self.socket.close()


class TcpLocal(Local):
    """A TCP listening socket."""

    def __init__(self, sock: socket.socket, config: TcpListenConfig) -> None:
        self.socket = sock
        self._config = config
        self._fd = sock.fileno()
        # What accept() makes each accepted socket from, as ints (the socket's own
        # accept() converts family and type to enums for every connection).
        self._family = int(sock.family)
        self._type = int(sock.type)
        self._proto = sock.proto
        # The options are set on the listening socket too: Linux copies them to every
        # socket it accepts. The first accepted socket shows whether this OS does; if
        # it does, no accepted socket needs a system call per option.
        _set_options(sock, config)
        self._options = _options_of(sock)
        self._inherited: bool | None = None  # None: not known before the first accept

    def fileno(self) -> int:
        return self._fd

    def make_remote(self, sock: socket.socket) -> Remote:
        """Wrap an accepted socket; transports over TCP override it."""
        return TcpRemote(sock, connecting=False)

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        # (fd, addr): what socket.accept() calls, before it converts the family and type
        # to enums and asks for the default timeout, for every connection.
        listening = self.socket
        accept: Callable[[], tuple[int, Any]] = listening._accept  # type: ignore[attr-defined]
        family, kind, proto = self._family, self._type, self._proto
        # The C build's accept4 makes the descriptor non-blocking: the socket object
        # is told so by its type, and no setblocking() call follows.
        direct = (
            sockio.COMPILED and sockio.DIRECT and _NONBLOCK and type(listening) is socket.socket
        )
        for _ in range(_ACCEPTS_PER_EVENT):
            try:
                fd, addr = sockio.accept(listening) if direct else accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue  # the peer gave up before we accepted: nothing to do
            if direct:
                sock = socket.socket(family, kind | _NONBLOCK, proto, fileno=fd)
            else:
                sock = socket.socket(family, kind, proto, fileno=fd)
                sock.setblocking(False)
            inherited = self._inherited
            if inherited is None:
                inherited = self._inherited = _options_of(sock) == self._options
            if not inherited:
                _set_options(sock, self._config)
            accept_remote(self.make_remote(sock), addr)

    def close(self) -> None:
        self.socket.close()


class TcpAdapter(Adapter):
    """The adapter behind ``Transport.TCP``."""

    connection_oriented = True
    packet_based = False
    max_message_size: ClassVar[int | None] = None
    connect_config = TcpConnectConfig
    listen_config = TcpListenConfig

    def make_remote(self, sock: socket.socket, config: Any) -> TcpRemote:
        """Wrap a connecting socket; framed transports override it."""
        return TcpRemote(sock, connecting=True)

    def make_local(self, sock: socket.socket, config: Any) -> TcpLocal:
        """Wrap a listening socket; framed transports override it."""
        return TcpLocal(sock, config)

    def lookup(self, addr: Any, config: Any) -> HostName | None:
        return host_name(addr, attempt_delay=config.happy_eyeballs_delay)

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        family, sockaddr = resolve_address(addr)[0]
        return self.connect_to(addr, config, family, sockaddr)

    def connect_to(
        self, addr: Any, config: Any, family: socket.AddressFamily, sockaddr: tuple[Any, ...]
    ) -> ConnectionInfo:
        sock, local_addr = self.start_connect(family, sockaddr, config)
        return ConnectionInfo(self.make_remote(sock, config), local_addr, sockaddr)

    def start_connect(
        self, family: socket.AddressFamily, sockaddr: tuple[Any, ...], config: Any
    ) -> tuple[socket.socket, Address]:
        """Open a non-blocking socket with ``config``'s options and start connecting it;
        return it and its local address. Transports over TCP reuse it."""
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            _set_options(sock, config)
            if config.bind_device is not None:
                _bind_device(sock, config.bind_device)
            if config.source_address is not None:
                _src_family, src = resolve_address(config.source_address, passive=True)[0]
                sock.bind(src)
            err = sock.connect_ex(sockaddr)
            if err not in _IN_PROGRESS:
                raise OSError(err, os.strerror(err))
            local_addr = sock.getsockname()
        except BaseException:
            sock.close()
            raise
        return sock, local_addr

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        family, sockaddr = resolve_address(addr, passive=True)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if config.reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if config.reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if config.bind_device is not None:
                _bind_device(sock, config.bind_device)
            sock.bind(sockaddr)
            sock.listen(config.backlog)
            sock.setblocking(False)
            local_addr = sock.getsockname()
            local = self.make_local(sock, config)  # sets the options: may fail too
        except BaseException:
            sock.close()
            raise
        return ListeningInfo(local, local_addr)
