"""Addresses of the IP transports: parsing ``"host:port"`` and ``(host, port)``, telling a
literal from a host name, and formatting an address for a message.

Nothing here resolves a name on the caller's thread except :func:`resolve_address`,
which only accepts literals on the loop thread's behalf; host names go to
:class:`HostName` and the node's resolver threads.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from ..errors import AddressError
from .endpoint import Address
from .resolver import ip_addresses

__all__ = [
    "HostName",
    "check_ip_address",
    "format_address",
    "host_name",
    "parse_host_port",
    "resolve_address",
]


@dataclass(frozen=True)
class HostName:
    """A host name that ``connect`` must resolve before it can start: what
    :meth:`Adapter.lookup` returns for an address that names a host.

    Attributes:
        host: The name, as ``getaddrinfo`` takes it (``"example.com"``, ``"localhost"``).
        port: The port to connect to.
        socket_type: What to ask the resolver for: ``SOCK_STREAM``, or ``SOCK_DGRAM``
            for a transport whose remotes carry datagrams (:attr:`Remote.datagrams`).
        attempt_delay: Seconds to wait for an attempt before starting the next address
            in parallel (RFC 8305's "Connection Attempt Delay"; 0.25 recommended);
            ``None`` tries one address at a time, the next one when the last fails.
    """

    host: str
    port: int
    socket_type: socket.SocketKind = socket.SOCK_STREAM
    attempt_delay: float | None = None


def _split_host_port(addr: str) -> tuple[str, int]:
    text = addr.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise AddressError(f"invalid address {addr!r}: expected '[ipv6]:port'")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise AddressError(f"invalid address {addr!r}: expected 'host:port'")
    try:
        port_number = int(port)
    except ValueError:
        raise AddressError(f"invalid port in address {addr!r}") from None
    return host, port_number


def host_name(
    addr: Any,
    *,
    socket_type: socket.SocketKind = socket.SOCK_STREAM,
    attempt_delay: float | None = None,
) -> HostName | None:
    """The :class:`HostName` in an IP address that names a host, or None for an IP literal.

    Parses what :func:`resolve_address` accepts, without resolving anything: the
    helper behind :meth:`Adapter.lookup` for IP transports.

    Raises:
        AddressError: the address cannot be parsed, its port is out of range, or its
            host is empty.
    """
    host, port = parse_host_port(addr)
    if _literal(host) is not None:
        return None
    return HostName(host, port, socket_type, attempt_delay)


def check_ip_address(addr: Any, where: str, *, passive: bool = False) -> None:
    """Check that ``addr`` spells an IP address and a port (with ``passive``, an empty
    host too): a host name would need a lookup, which may block for seconds.

    For addresses the node uses on its loop thread (a source address to bind, a UDP
    listener's destination), where a name cannot be resolved without stalling it.

    Raises:
        AddressError: ``addr`` cannot be parsed, or holds a host name; the message
            names ``where``.
    """
    host, _port = parse_host_port(addr, passive=passive)
    if host and _literal(host) is None:
        raise AddressError(
            f"{where} must be an IP address, not the host name {host!r}: resolving it "
            "would block the loop (resolve it once beforehand, e.g. with socket.getaddrinfo)"
        )


def parse_host_port(addr: Any, *, passive: bool = False) -> tuple[str, int]:
    """``(host, port)`` from ``"host:port"``, ``"[ipv6]:port"`` or a ``(host, port)`` tuple
    (a 4-tuple IPv6 socket address too), without resolving anything.

    Raises:
        AddressError: the address cannot be parsed, its port is out of range, or its
            host is empty and ``passive`` (binding) is False.
    """
    if isinstance(addr, str):
        host, port = _split_host_port(addr)
    elif isinstance(addr, tuple) and len(addr) in (2, 4) and isinstance(addr[0], str):
        host, port = addr[0], addr[1]
        if not isinstance(port, int) or isinstance(port, bool):
            raise AddressError(f"invalid port in address {addr!r}")
    else:
        raise AddressError(f"invalid address {addr!r}: expected 'host:port' or (host, port)")
    if not 0 <= port <= 65535:
        raise AddressError(f"invalid address {addr!r}: port out of range 0-65535")
    if not host and not passive:
        raise AddressError(
            f"invalid address {addr!r}: no host to connect to (an empty host means "
            "every interface only when listening)"
        )
    return host, port


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells (an IPv6 one may have a ``%scope``), or None for
    a name."""
    if not host:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_address(
    addr: Any, *, type_: socket.SocketKind = socket.SOCK_STREAM, passive: bool = False
) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """Parse and resolve an IP address into ``[(family, sockaddr), ...]``, best first.

    Accepts ``"ip:port"``, ``"[ipv6]:port"``, ``"host:port"``, a ``(host, port)`` tuple and
    a 4-tuple IPv6 socket address. Host names are resolved with ``getaddrinfo`` in the
    calling thread.

    The host may be empty (``":3042"``, ``("", 3042)``) only with ``passive=True``, which
    resolves for binding: there an empty host means every interface, the wildcard
    addresses that ``getaddrinfo`` gives with ``AI_PASSIVE`` (``0.0.0.0`` and ``::``, in
    its order; the built-in transports bind the first, ``0.0.0.0`` on Linux). To connect
    or send (``passive=False``) a host is required: an empty one is an error rather than
    a guess at the loopback address.

    Raises:
        AddressError: the address cannot be parsed, the port is out of range, the host
            is empty and ``passive`` is False, or the name does not resolve. The message
            names the address.
    """
    host, port = parse_host_port(addr, passive=passive)
    ip = _literal(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # A scoped literal (fe80::1%eth0): the C library turns the interface name into
        # its index, numerically, with no lookup.
        numeric = socket.AI_NUMERICHOST | (socket.AI_PASSIVE if passive else 0)
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_INET6, type_, 0, numeric)
        except socket.gaierror as exc:  # no such interface
            raise AddressError(f"invalid address {addr!r}: {exc}") from exc
        return [(socket.AF_INET6, tuple(infos[0][4]))]
    if ip is not None:
        # A literal: no resolver round trip, and no surprise from /etc/hosts.
        if ip.version == 4:
            return [(socket.AF_INET, (host, port))]
        if isinstance(addr, tuple) and len(addr) == 4:
            return [(socket.AF_INET6, (host, port, addr[2], addr[3]))]
        return [(socket.AF_INET6, (host, port, 0, 0))]
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(host or None, port, 0, type_, 0, flags)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressError(f"cannot resolve address {addr!r}: {exc}") from exc
    seen = ip_addresses(infos)
    if not seen:
        raise AddressError(f"cannot resolve address {addr!r}: no IPv4 or IPv6 address")
    return seen


def format_address(addr: Address) -> str:
    """``"ip:port"`` or ``"[ipv6]:port"`` for a socket address; strings pass through."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
