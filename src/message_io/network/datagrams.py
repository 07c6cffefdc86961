"""Reading and sending UDP datagrams: the receive loops of ``UdpRemote`` and ``UdpLocal``
and ``UdpLocal.send_to``, compiled with the engine.

A readable socket is read up to 64 datagrams at a time (fairness). The C build reads
them in batches of up to ``sockio.BATCH`` with one ``recvmmsg`` each: a batch shorter than
asked says that no other datagram waits (or that an error ended it, which the next read
reports: the socket stays readable), with no second system call. Otherwise they are
read one at a time, and after the first a ``FIONREAD`` ``ioctl`` says whether another one
waits: a quarter of the cost of a ``recv`` that fails with "would block", and the usual
readiness brings one datagram.
An ICMP error reported by ``recv`` goes back to the adapter, which logs it; a datagram
over the size read is dropped and logged (throttled).

``UdpRemote`` and ``UdpLocal`` delegate to :class:`DatagramReader` and
:class:`DatagramSource`; the node calls these directly, compiled code calling compiled
code, for the built-in classes themselves (``Remote._frame_reader``,
``Local._datagram_source``).
"""

from __future__ import annotations

import array
import importlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from ..util.throttle import LogThrottle
from . import sockio
from .address import check_ip_address
from .reader import Reader
from .send_status import SendStatus

__all__ = [
    "DATAGRAMS_PER_EVENT",
    "DESTINATION",
    "MSG_TRUNC",
    "RECV_SIZE",
    "DatagramReader",
    "DatagramSource",
    "waiting",
]

RECV_SIZE: Final = 65536
"""Bytes asked of each read: more than any UDP payload, so nothing is truncated."""

MSG_TRUNC: Final = getattr(socket, "MSG_TRUNC", 0)
"""Flag of each read: on Linux, ``recv`` returns a datagram's real size."""
DATAGRAMS_PER_EVENT: Final = 64
"""Datagrams read per readiness event at most, for fairness."""


def _posix(module: str, name: str) -> Any:
    """``module.name``, or None where the platform has neither."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # pragma: no cover - not POSIX
        return None


# Elsewhere than POSIX, no ioctl: read on until "would block".
_IOCTL: Final[Callable[..., Any] | None] = _posix("fcntl", "ioctl")
_FIONREAD: Final[int] = _posix("termios", "FIONREAD") or 0x541B
_LITERAL_HOSTS_MAX: Final = 4096
# The C build's socket calls (see sockio); without it, the socket's own methods.
_C_SOCKIO: Final = sockio.COMPILED
_recv: Final = sockio.recv
_recvfrom: Final = sockio.recvfrom
_recv_some: Final = sockio.recv_some
_recvfrom_some: Final = sockio.recvfrom_some
_BATCH: Final = sockio.BATCH
_send_back: Final = sockio.send_back
_pending: Final = sockio.pending
DESTINATION: Final = "the address a UDP listener sends to"
"""What an ``AddressError`` about a listener's destination names."""
_SENT: Final = SendStatus.SENT
_TOO_BIG: Final = SendStatus.MAX_PACKET_SIZE_EXCEEDED

log = logging.getLogger("message_io")
# A peer can send oversize datagrams as fast as it likes: its lines are rate-limited.
_oversize_log: Final = LogThrottle(log, "oversize datagram lines")


def _oversize() -> None:
    _oversize_log.log(logging.WARNING, "udp: dropped a datagram larger than %d bytes", RECV_SIZE)


def _drop_oversize(items: list[Any], start: int, pairs: bool) -> None:
    """Drop (and log) the datagrams from ``items[start]`` on that were longer than
    :data:`RECV_SIZE`: ``(sender, data)`` pairs if ``pairs``, else the data."""
    i = start
    while i < len(items):
        item = items[i]
        if len(item[1] if pairs else item) > RECV_SIZE:
            del items[i]
            _oversize()
        else:
            i += 1


def waiting(sock: socket.socket, fd: int, buffer: array.array[int]) -> int:
    """The size of the next queued datagram (``FIONREAD``) on ``sock`` (descriptor
    ``fd``), 0 if none: a quarter of the cost of a ``recv`` that fails with "would
    block". An empty datagram also reads 0; it is not lost: the socket stays readable and
    the next poll reports it."""
    if _C_SOCKIO:
        try:
            return _pending(sock)
        except OSError:
            return 1
    ioctl = _IOCTL
    if ioctl is None:
        return 1  # cannot tell: read on, the next recv says
    try:
        ioctl(fd, _FIONREAD, buffer)
    except OSError:
        return 1
    return buffer[0]


class DatagramReader(Reader):
    """Reads a connected UDP socket.

    Args:
        remote: The ``UdpRemote``: its ``_recv_failed(exc)`` logs an ICMP error.
        sock: The connected, non-blocking socket.
    """

    def __init__(self, remote: Any, sock: socket.socket) -> None:
        self.remote = remote
        self.sock = sock
        self.fd = sock.fileno()
        self.pending = array.array("i", [0])  # FIONREAD's answer

    def read(self, frames: list[Any]) -> int:
        """Append the datagrams waiting (up to 64) to ``frames``; never closes."""
        sock = self.sock
        left = DATAGRAMS_PER_EVENT
        while _C_SOCKIO and left > 0:
            asked = left if left < _BATCH else _BATCH
            start = len(frames)
            try:
                got = _recv_some(sock, RECV_SIZE, MSG_TRUNC, frames, asked)
            except BlockingIOError:
                return 0
            except OSError as exc:  # an ICMP error: see below
                self.remote._recv_failed(exc)
                left -= 1
                continue
            if got is None:
                break  # not in batches: one at a time, below
            if got != 1 or len(frames[start]) > RECV_SIZE:
                _drop_oversize(frames, start, False)
            if got < asked:
                return 0  # none waits, or an error that the next poll reports
            left -= got
        first = True
        for _datagram in range(left):
            try:
                if _C_SOCKIO:
                    data = _recv(sock, RECV_SIZE, MSG_TRUNC)
                else:
                    data = sock.recv(RECV_SIZE, MSG_TRUNC)
            except BlockingIOError:
                break
            except OSError as exc:
                # An ICMP error about an earlier datagram (the peer's port is closed, its
                # host unreachable): reported once, and the socket stays usable.
                self.remote._recv_failed(exc)
                continue
            if len(data) > RECV_SIZE:
                _oversize()
                continue
            frames.append(data)
            if first and not waiting(sock, self.fd, self.pending):
                break  # the usual single datagram: no failing recv to find out
            first = False
        return 0


class DatagramSource:
    """Reads and sends from a listening UDP socket.

    Args:
        local: The ``UdpLocal``: its ``_recv_failed(exc)`` logs an ICMP error, its
            ``_sockaddr(addr)`` makes a destination given as a string.
        sock: The bound, non-blocking socket.
        max_payload: The largest datagram it sends.
    """

    def __init__(self, local: Any, sock: socket.socket, max_payload: int) -> None:
        self.local = local
        self.sock = sock
        self.fd = sock.fileno()
        self.max_payload = max_payload
        self.pending = array.array("i", [0])  # FIONREAD's answer
        # Hosts of destination tuples known to be IP addresses: sendto() would look a
        # name up in the sending thread for every datagram (bounded: cleared when full).
        self.literal_hosts: set[Any] = set()

    def read(self, datagrams: list[tuple[Any, bytes]]) -> None:
        """Append the datagrams waiting (up to 64) to ``datagrams`` as (sender, data)."""
        sock = self.sock
        left = DATAGRAMS_PER_EVENT
        while _C_SOCKIO and left > 0:
            asked = left if left < _BATCH else _BATCH
            start = len(datagrams)
            try:
                got = _recvfrom_some(sock, RECV_SIZE, MSG_TRUNC, datagrams, asked)
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error about an earlier datagram sent
                self.local._recv_failed(exc)
                left -= 1
                continue
            if got is None:
                break  # not in batches: one at a time, below
            if got != 1 or len(datagrams[start][1]) > RECV_SIZE:
                _drop_oversize(datagrams, start, True)
            if got < asked:
                return  # none waits, or an error that the next poll reports
            left -= got
        first = True
        for _datagram in range(left):
            try:
                if _C_SOCKIO:
                    data, addr = _recvfrom(sock, RECV_SIZE, MSG_TRUNC)
                else:
                    data, addr = sock.recvfrom(RECV_SIZE, MSG_TRUNC)
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error about an earlier datagram sent
                self.local._recv_failed(exc)
                continue
            if len(data) > RECV_SIZE:
                _oversize()
                continue
            datagrams.append((addr, data))
            if first and not waiting(sock, self.fd, self.pending):
                return  # the usual single datagram: no failing recv to find out
            first = False

    def send_to(self, addr: Any, data: Any) -> SendStatus:
        """``UdpLocal.send_to``: see there."""
        if len(data) > self.max_payload:
            return _TOO_BIG
        sock = self.sock
        if _C_SOCKIO:
            # The usual reply: to the sender of the datagram just read, by its own
            # tuple. Sent as read, with no tuple to parse and no host to check.
            try:
                sent = _send_back(sock, data, addr)
            except ConnectionRefusedError:  # belongs to an earlier datagram: send again
                sent = _send_back(sock, data, addr)
            if sent is not None:
                return _SENT
        if type(addr) is not tuple:
            addr = self.local._sockaddr(addr)
        else:
            hosts = self.literal_hosts
            if addr[0] not in hosts:
                check_ip_address(addr, DESTINATION)
                if len(hosts) >= _LITERAL_HOSTS_MAX:
                    hosts.clear()
                hosts.add(addr[0])
        try:
            sock.sendto(data, addr)
        except ConnectionRefusedError:  # belongs to an earlier datagram: send again
            sock.sendto(data, addr)
        except TypeError:
            sock.sendto(data, self.local._sockaddr(addr))
        return _SENT
