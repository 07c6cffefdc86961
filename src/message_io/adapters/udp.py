"""``Transport.UDP``: one datagram is one message; unicast, multicast and broadcast.

* ``connect(Transport.UDP, addr)`` opens a *connected* UDP socket: ``send`` needs no
  address and only datagrams from that peer are received. ``Connected(endpoint, True)``
  follows at once and proves nothing about the peer: UDP has no handshake.
* ``listen(Transport.UDP, addr)`` receives every datagram sent to ``addr`` as
  ``Message(Endpoint(listener_id, sender), data)``. Sending to that endpoint answers
  from the listening socket; ``Endpoint.from_listener(listener_id, addr)`` sends to any
  address from it.
* Listening on a multicast group (IPv4 ``224.0.0.0/4``, IPv6 ``ff00::/8``) joins it, with
  address and port reuse so that several listeners on one host all receive; ``remove``
  leaves the group. To send to a group, ``connect`` to it.
* UDP produces no ``Accepted`` and no ``Disconnected``. An ICMP "port unreachable" (a
  peer that is not listening) never ends a connection or a listener.

Sizes: a datagram carries at most :data:`MAX_LOCAL_PAYLOAD_LEN` bytes over IPv4
(:data:`MAX_LOCAL_PAYLOAD_LEN_V6` over IPv6); larger sends return
``MAX_PACKET_SIZE_EXCEEDED`` and send nothing. Across the internet, datagrams up to
:data:`MAX_INTERNET_PAYLOAD_LEN` avoid IP fragmentation. Received datagrams are never
truncated.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..errors import AddressError
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
    ReadStatus,
    Remote,
    SendStatus,
    check_ip_address,
    format_address,
    host_name,
    resolve_address,
)
from ..network.datagrams import (
    DATAGRAMS_PER_EVENT,
    DESTINATION,
    MSG_TRUNC,
    RECV_SIZE,
    DatagramReader,
    DatagramSource,
)
from ..network.endpoint import Address
from .tcp import _bind_device

__all__ = [
    "MAX_INTERNET_PAYLOAD_LEN",
    "MAX_LOCAL_PAYLOAD_LEN",
    "MAX_LOCAL_PAYLOAD_LEN_V6",
    "UdpAdapter",
    "UdpConnectConfig",
    "UdpListenConfig",
    "UdpLocal",
    "UdpRemote",
]

log = logging.getLogger("message_io")

MAX_LOCAL_PAYLOAD_LEN: Final = 65535 - 20 - 8
"""The largest UDP payload over IPv4 (65507 bytes): 64 KiB minus the IP and UDP headers."""

MAX_LOCAL_PAYLOAD_LEN_V6: Final = 65535 - 8
"""The largest UDP payload over IPv6 (65527 bytes; the IPv6 header is not counted)."""

MAX_INTERNET_PAYLOAD_LEN: Final = 1500 - 20 - 8
"""The largest payload (1472 bytes) that crosses a 1500-byte Ethernet MTU over IPv4
without fragmentation: the safe size for datagrams that leave the local network."""

_SIOCGIFADDR: Final = 0x8915
_SIOCGIFNETMASK: Final = 0x891B
_IN_PKTINFO: Final = struct.Struct("@i4s4s")
# Python exposes IP_PKTINFO only from 3.12 on; its Linux value is 8.
_IP_PKTINFO: Final[int | None] = getattr(
    socket, "IP_PKTINFO", 8 if sys.platform.startswith("linux") else None
)

# The enum's members as globals (see tcp.py: a lookup on the enum costs 70 ns).
_OK: Final = ReadStatus.OK


@dataclass(frozen=True, kw_only=True)
class _UdpOptions:
    """Options shared by the connect and listen configs."""

    reuse_address: bool = False
    reuse_port: bool = False
    send_buffer_size: int | None = None
    receive_buffer_size: int | None = None
    bind_device: str | None = None
    multicast_interface: str | int | None = None
    multicast_ttl: int | None = None
    multicast_loop: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        for name in ("send_buffer_size", "receive_buffer_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, not {value!r}")
        if self.multicast_ttl is not None and not 0 <= self.multicast_ttl <= 255:
            raise ValueError(f"multicast_ttl must be 0-255, not {self.multicast_ttl!r}")
        source = getattr(self, "source_address", None)
        if source is not None:
            check_ip_address(source, f"{type(self).__name__}.source_address", passive=True)


@dataclass(frozen=True, kw_only=True)
class UdpConnectConfig(_UdpOptions, ConnectConfig):
    """How ``connect`` opens a UDP socket.

    Attributes:
        source_address: Bind to this local ``"host:port"`` / ``(host, port)`` first. By
            default the OS picks an address of the peer's family (IPv4 or IPv6) and a port.
        broadcast: Allow sending to broadcast addresses (``SO_BROADCAST``), e.g.
            ``"255.255.255.255:port"``.
        reuse_address: ``SO_REUSEADDR`` before binding ``source_address``.
        reuse_port: ``SO_REUSEPORT`` before binding ``source_address``.
        send_buffer_size: ``SO_SNDBUF`` in bytes (the OS may round or cap it); ``None``
            keeps the OS default.
        receive_buffer_size: ``SO_RCVBUF`` in bytes (the OS may round or cap it);
            ``None`` keeps the OS default.
        bind_device: Bind to this network interface (``SO_BINDTODEVICE``, Linux).
        multicast_interface: The interface that sends to a multicast group: an IPv4
            address of it (``"192.168.1.5"``) or, for either family, its name (``"eth0"``)
            or index. ``None``: the routing table decides.
        multicast_ttl: Hops a multicast datagram may take (``IP_MULTICAST_TTL`` /
            ``IPV6_MULTICAST_HOPS``; the OS default is 1: the local network only).
        multicast_loop: Whether this host's own listeners receive what it sends to a
            group (the OS default is yes).
        send_buffer_limit: See :class:`~message_io.network.adapter.ConnectConfig`; it
            only fills when the OS pushes back.
        connect_timeout: Seconds for a host name to be resolved (10 by default; a UDP
            socket itself connects at once) before ``Connected(endpoint, False)`` with a
            ``ConnectTimeout``, as for TCP. ``None``: wait as long as the resolver takes.
    """

    source_address: Any = None
    broadcast: bool = False
    connect_timeout: float | None = 10.0


@dataclass(frozen=True, kw_only=True)
class UdpListenConfig(_UdpOptions, ListenConfig):
    """How ``listen`` opens a UDP socket.

    Attributes:
        send_broadcasts: Allow sending broadcasts from this listener with
            ``Endpoint.from_listener`` (``SO_BROADCAST``).
        receive_broadcasts: Also receive broadcasts sent to the network of the listen
            address (its subnet's broadcast address and ``255.255.255.255``) when listening
            on a specific IPv4 address, which the OS otherwise does not deliver (Linux; a
            listener on ``0.0.0.0`` receives them anyway).
        reuse_address: ``SO_REUSEADDR``; always on for a multicast group, so that
            several listeners on one host all receive.
        reuse_port: ``SO_REUSEPORT``; always on for a multicast group, as
            ``reuse_address``.
        send_buffer_size: ``SO_SNDBUF`` in bytes.
        receive_buffer_size: ``SO_RCVBUF`` in bytes; a larger receive buffer loses fewer
            datagrams in bursts.
        bind_device: Bind to this network interface (``SO_BINDTODEVICE``, Linux).
        multicast_interface: The interface on which to join the group (and send to
            groups): an IPv4 address of it, or its name or index. ``None``: the routing
            table decides (on a host without a default route, give one).
        multicast_ttl: As in :class:`UdpConnectConfig`, for datagrams sent from this
            listener to a group.
        multicast_loop: As in :class:`UdpConnectConfig`, for datagrams sent from this
            listener to a group.
        send_buffer_limit: See :class:`~message_io.network.adapter.ListenConfig`.
    """

    send_broadcasts: bool = False
    receive_broadcasts: bool = False


def _ip(sockaddr: tuple[Any, ...]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


def _if_index(interface: str | int) -> int:
    if isinstance(interface, int):
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise AddressError(f"no network interface named {interface!r}") from None


def _v4_interface(interface: str | int | None) -> bytes:
    """``struct ip_mreqn`` minus its group: an interface by address, name or index
    (all zero: the routing table picks one)."""
    if interface is None:
        return b"\0" * 8
    if isinstance(interface, str):
        try:
            return socket.inet_aton(str(ipaddress.IPv4Address(interface))) + b"\0" * 4
        except ValueError:
            pass
    return struct.pack("@4si", b"\0" * 4, _if_index(interface))


def _apply_options(sock: socket.socket, family: int, options: _UdpOptions) -> None:
    """Socket options common to connections and listeners (before bind)."""
    if options.reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if options.reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if options.send_buffer_size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, options.send_buffer_size)
    if options.receive_buffer_size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, options.receive_buffer_size)
    if options.bind_device is not None:
        _bind_device(sock, options.bind_device)
    v6 = family == socket.AF_INET6
    if options.multicast_interface is not None:
        if v6:
            index = _if_index(options.multicast_interface)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        else:
            mreqn = b"\0" * 4 + _v4_interface(options.multicast_interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
    if options.multicast_ttl is not None:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, options.multicast_ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, options.multicast_ttl)
    if options.multicast_loop is not None:
        loop = int(options.multicast_loop)
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, loop)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, loop)


def _max_payload(family: int) -> int:
    return MAX_LOCAL_PAYLOAD_LEN_V6 if family == socket.AF_INET6 else MAX_LOCAL_PAYLOAD_LEN


class UdpRemote(Remote):
    """A connected UDP socket: one peer, one datagram per message."""

    datagrams = True
    framing = Framing.NONE  # one datagram per message, as given
    _built_in = True

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self._fd = sock.fileno()
        self._send = sock.send
        self._reader = DatagramReader(self, sock)
        self.max_message_size = _max_payload(sock.family)

    def fileno(self) -> int:
        return self._fd

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        """Read the datagrams waiting (see :mod:`message_io.network.datagrams`)."""
        # A list's ``append`` (the node's, when it does not call the reader itself):
        # read straight into that list instead of calling ``deliver`` per datagram.
        target = getattr(deliver, "__self__", None)
        if type(target) is list:
            self._reader.read(target)
        else:
            datagrams: list[bytes] = []
            try:
                self._reader.read(datagrams)
            finally:
                for data in datagrams:
                    deliver(data)
        return _OK

    def _recv_failed(self, exc: OSError) -> None:
        """A read reported an ICMP error about an earlier datagram."""
        log.debug("udp %s: %s", format_address(self.socket.getpeername()), exc)

    def _frame_reader(self) -> DatagramReader | None:
        """The reader behind :meth:`receive`, for the node to call directly: for this
        class itself (a subclass gets :meth:`receive` called)."""
        return self._reader if self._built_in else None

    def _direct_socket(self) -> socket.socket | None:
        """The socket, which :meth:`write` sends to as it is: for this class itself."""
        return self.socket if self._built_in else None

    def write(self, data: Buffer) -> int:
        try:
            return self._send(data)
        except ConnectionRefusedError:
            # The error belongs to an earlier datagram (ICMP port unreachable) and the
            # kernel did not send this one; it is cleared now, so send again.
            return self._send(data)

    def close(self) -> None:
        self.socket.close()


class UdpLocal(Local):
    """A UDP listening socket; it can also send, to any address."""

    _built_in = True

    def __init__(
        self,
        sock: socket.socket,
        *,
        membership: tuple[int, int, bytes] | None = None,
        accept_destinations: frozenset[bytes] | None = None,
    ) -> None:
        self.socket = sock
        self._fd = sock.fileno()
        self._family = sock.family
        self._source = DatagramSource(self, sock, _max_payload(sock.family))
        self._membership = membership
        self._destinations = accept_destinations

    def fileno(self) -> int:
        return self._fd

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        if self._destinations is not None:
            self._accept_filtered(deliver)
            return
        datagrams: list[tuple[Any, bytes]] = []
        try:
            self._source.read(datagrams)
        finally:
            for addr, data in datagrams:
                deliver(addr, data)

    def _recv_failed(self, exc: OSError) -> None:
        """A read reported an ICMP error about an earlier datagram sent."""
        log.debug("udp listener: %s", exc)

    def _datagram_source(self) -> DatagramSource | None:
        """What :meth:`accept` and :meth:`send_to` delegate to, for the node to call
        directly: for this class itself, without a destination filter (a subclass gets
        its methods called)."""
        return self._source if self._destinations is None and self._built_in else None

    def _accept_filtered(self, deliver: Callable[[Address, bytes], object]) -> None:
        """Receive broadcasts too, but only those for the listen address's network."""
        space = socket.CMSG_SPACE(_IN_PKTINFO.size)
        accepted = self._destinations
        assert accepted is not None
        for _ in range(DATAGRAMS_PER_EVENT):
            try:
                data, ancdata, _flags, addr = self.socket.recvmsg(RECV_SIZE, space, MSG_TRUNC)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("udp listener: %s", exc)
                continue
            destination = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IP and kind == _IP_PKTINFO:
                    destination = _IN_PKTINFO.unpack_from(value)[2]
            if destination in accepted and len(data) <= RECV_SIZE:
                deliver(addr, data)

    def send_to(self, addr: Address, data: Buffer) -> SendStatus:
        """Send one datagram to ``addr`` (``(host, port)`` or ``"host:port"``).

        Raises:
            BlockingIOError: the socket buffer is full (the node queues the datagram).
            OSError: the OS refused it (the node drops and logs it).
            AddressError: ``addr`` is not an IP address and port (a host name would be
                looked up for every datagram, in the sending thread).
        """
        return self._source.send_to(addr, data)

    def _sockaddr(self, addr: Any) -> tuple[Any, ...]:
        check_ip_address(addr, DESTINATION)
        for family, sockaddr in resolve_address(addr, type_=socket.SOCK_DGRAM):
            if family == self._family:
                return sockaddr
            if self._family == socket.AF_INET6:  # an IPv4 peer of a dual-stack listener
                return ("::ffff:" + str(sockaddr[0]), sockaddr[1], 0, 0)
        raise AddressError(f"cannot send to {addr!r} from an IPv4 listener")

    def leave_group(self) -> None:
        """Leave the multicast group joined by ``listen`` (``close`` calls it)."""
        membership, self._membership = self._membership, None
        if membership is None:
            return
        level, option, mreq = membership
        try:
            self.socket.setsockopt(level, option, mreq)
        except OSError as exc:
            log.warning("could not leave multicast group: %s", exc)

    def close(self) -> None:
        self.leave_group()
        self.socket.close()


def _interface_networks() -> dict[bytes, tuple[str, bytes]]:
    """IPv4 address -> (interface name, broadcast address of its network), via ioctl."""
    import fcntl  # noqa: PLC0415 - POSIX only, and only needed here

    found: dict[bytes, tuple[str, bytes]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                address = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)[20:24]
                netmask = fcntl.ioctl(probe.fileno(), _SIOCGIFNETMASK, request)[20:24]
            except OSError:
                continue  # no IPv4 address on this interface
            host = int.from_bytes(address, "big")
            mask = int.from_bytes(netmask, "big")
            found[address] = (name, ((host | ~mask) & 0xFFFFFFFF).to_bytes(4, "big"))
    return found


class UdpAdapter(Adapter):
    """The adapter behind ``Transport.UDP``."""

    connection_oriented = False
    packet_based = True
    max_message_size: ClassVar[int | None] = MAX_LOCAL_PAYLOAD_LEN
    connect_config = UdpConnectConfig
    listen_config = UdpListenConfig

    def lookup(self, addr: Any, config: Any) -> HostName | None:
        # No race: a UDP socket "connects" at once, so the first address always wins.
        return host_name(addr, socket_type=socket.SOCK_DGRAM)

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        family, sockaddr = resolve_address(addr, type_=socket.SOCK_DGRAM)[0]
        return self.connect_to(addr, config, family, sockaddr)

    def connect_to(
        self, addr: Any, config: Any, family: socket.AddressFamily, sockaddr: tuple[Any, ...]
    ) -> ConnectionInfo:
        source = None
        if config.source_address is not None:
            candidates = resolve_address(
                config.source_address, type_=socket.SOCK_DGRAM, passive=True
            )
            source = next((s for f, s in candidates if f == family), None)
            if source is None:
                kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
                raise AddressError(
                    f"source address {config.source_address!r} has no {kind} address, "
                    f"which the peer {format_address(sockaddr)} needs"
                )
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _apply_options(sock, family, config)
            if config.broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if source is not None:
                sock.bind(source)
            try:
                sock.connect(sockaddr)
            except PermissionError as exc:
                if config.broadcast:
                    raise
                raise PermissionError(
                    exc.errno, f"{exc.strerror}: a broadcast address needs broadcast=True"
                ) from exc
            except OSError as exc:
                if not (_ip(sockaddr).is_multicast and config.multicast_interface is None):
                    raise
                raise OSError(
                    exc.errno, f"{exc.strerror}: no route to the group; set multicast_interface"
                ) from exc
            local_addr = sock.getsockname()
        except BaseException:
            sock.close()
            raise
        return ConnectionInfo(UdpRemote(sock), local_addr, sockaddr)

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        family, sockaddr = resolve_address(addr, type_=socket.SOCK_DGRAM, passive=True)[0]
        ip = _ip(sockaddr)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        membership = None
        destinations = None
        try:
            sock.setblocking(False)
            _apply_options(sock, family, config)
            if config.send_broadcasts:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if ip.is_multicast:
                membership = self._join(sock, family, sockaddr, config)
            elif config.receive_broadcasts and family == socket.AF_INET and not ip.is_unspecified:
                destinations = self._bind_for_broadcasts(sock, sockaddr)
            else:
                sock.bind(sockaddr)
            local_addr = sock.getsockname()
        except BaseException:
            sock.close()
            raise
        local = UdpLocal(sock, membership=membership, accept_destinations=destinations)
        return ListeningInfo(local, local_addr)

    @staticmethod
    def _join(
        sock: socket.socket, family: int, sockaddr: tuple[Any, ...], config: UdpListenConfig
    ) -> tuple[int, int, bytes]:
        """Bind for a multicast group and join it; return how to leave it."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        group = str(sockaddr[0])
        # Linux can bind to the group itself, which filters out datagrams sent to the same
        # port for other groups; elsewhere bind to the wildcard address.
        if sys.platform.startswith("linux"):
            sock.bind(sockaddr)
        elif family == socket.AF_INET6:
            sock.bind(("::", sockaddr[1]))
        else:
            sock.bind(("0.0.0.0", sockaddr[1]))
        if family == socket.AF_INET6:
            index = (
                0 if config.multicast_interface is None else _if_index(config.multicast_interface)
            )
            mreq = socket.inet_pton(socket.AF_INET6, group.split("%", 1)[0]) + struct.pack(
                "@I", index
            )
            join = (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP)
            leave = (socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP)
        else:
            mreq = socket.inet_aton(group) + _v4_interface(config.multicast_interface)
            join = (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP)
            leave = (socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP)
        try:
            sock.setsockopt(*join, mreq)
        except OSError as exc:
            where = (
                "the default interface"
                if config.multicast_interface is None
                else f"interface {config.multicast_interface!r}"
            )
            hint = "; set multicast_interface" if config.multicast_interface is None else ""
            raise OSError(
                exc.errno, f"cannot join multicast group {group} on {where}: {exc.strerror}{hint}"
            ) from exc
        return leave[0], leave[1], mreq

    @staticmethod
    def _bind_for_broadcasts(sock: socket.socket, sockaddr: tuple[Any, ...]) -> frozenset[bytes]:
        """Bind to the wildcard address on the listen address's interface, and return the
        destinations to accept: that address, its network's broadcast, 255.255.255.255."""
        address = socket.inet_aton(str(sockaddr[0]))
        networks = _interface_networks()
        if address not in networks:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"no interface has the address {sockaddr[0]} (receive_broadcasts)",
            )
        name, broadcast = networks[address]
        if _IP_PKTINFO is None:
            raise OSError(errno.EOPNOTSUPP, "receive_broadcasts is not supported on this OS")
        _bind_device(sock, name)
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        sock.bind(("0.0.0.0", sockaddr[1]))
        return frozenset({address, broadcast, b"\xff\xff\xff\xff"})
