"""The node's side of a listener: what it accepted, and its datagrams queue.

A connection-oriented listener only accepts: the loop turns each accepted remote into a
:class:`~message_io.network.connection.Connection`. A packet listener (UDP) also sends:
datagrams to its peers go straight to the OS, and wait in a bounded
:class:`~message_io.network.connection.SendQueue` only when the OS pushes back.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final, Protocol

from .adapter import BytesLike, Local, Remote, SendStatus
from .connection import Limits, as_buffer, drop_datagram
from .endpoint import _COMPILED, Address, Endpoint, ResourceId
from .poller import READ, WRITE, Poller
from .resource import READY, SendQueue

__all__ = ["Listener", "ListenerHost"]

log = logging.getLogger("message_io")

_SENT: Final = SendStatus.SENT
_NOT_FOUND: Final = SendStatus.RESOURCE_NOT_FOUND
_NOT_AVAILABLE: Final = SendStatus.RESOURCE_NOT_AVAILABLE


class ListenerHost(Protocol):
    """What a listener needs of the loop it belongs to."""

    poller: Poller
    input_paused: bool


class Listener(SendQueue):
    """The node's side of one listener. Packet listeners (UDP) also send: datagrams go
    straight to the OS, and wait in a bounded queue only when the OS pushes back."""

    __slots__ = (
        "accepted",
        "adapter_id",
        "datagrams",
        "drain_for",
        "endpoint_cache",
        "exhausted_since",
        "failures",
        "fd",
        "handshake_timeout",
        "id",
        "limits",
        "local",
        "loop",
        "on_datagram",
        "on_remote",
        "owner",
        "published",
        "source",
    )

    def __init__(
        self,
        loop: ListenerHost,
        resource_id: ResourceId,
        local: Local,
        limit: int,
        *,
        handshake_timeout: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(limit, packets=True)
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.limits = limits or Limits()
        self.exhausted_since = 0.0  # accept() short of fds/memory since then (0: not)
        self.failures = 0  # accept() failures in this episode
        self.id = resource_id
        self.adapter_id = resource_id.adapter_id  # of its connections' ids
        self.local = local
        self.fd = local.fileno()
        # The built-in packet transport's shortcut: the node reads and sends with its
        # compiled source, where the listener's methods would do just that.
        self.source = local._datagram_source()
        self.published = True  # its creator holds its id (see Loop.register_listener)
        self.owner: object | None = None  # its registry (compiled, see Registry.send)
        self.move(READY)
        self.endpoint_cache: dict[Address, Endpoint] = {}
        # What one accept() call found, through callbacks made once, not per event.
        self.accepted: list[tuple[Remote, Address]] = []
        self.datagrams: list[tuple[Address, bytes]] = []
        self.on_remote = lambda remote, addr: self.accepted.append((remote, addr))
        self.on_datagram = lambda addr, data: self.datagrams.append((addr, data))
        # SendQueue.chunks: (endpoint, datagram) pairs, pushed once the OS pushes back.
        self.drain_for: set[Endpoint] = set()  # refused sends: tell each one Drained

    def forget_peers(self) -> None:
        """Drop the endpoints cached for its peers, unlinked from it (loop thread): when
        the cache is full, and when the listener closes. An endpoint a user keeps then
        holds neither the closed listener nor, through it, the node; a later send with
        it takes the lookup by id (see Registry.send)."""
        cache = self.endpoint_cache
        if _COMPILED:  # only the compiled engine links them (Acceptor._on_listener)
            for peer in cache.values():
                peer._link_listener(None)
        cache.clear()

    def send_to(self, endpoint: Endpoint, message: BytesLike) -> SendStatus:
        """Send one datagram from this listener to ``endpoint.addr`` (any thread)."""
        data = as_buffer(message)
        if not self.chunks:  # nothing waits: no order to keep, no lock to take
            source = self.source
            try:
                if source is not None:
                    return source.send_to(endpoint.addr, data)
                return self.local.send_to(endpoint.addr, data)
            except BlockingIOError:
                pass
            except OSError as exc:
                return drop_datagram(endpoint, exc) if self.state is READY else _NOT_FOUND
        with self.lock:
            if self.state is not READY:
                return _NOT_FOUND
            if self.full():
                self.drain_for.add(endpoint)
                return self.refuse(endpoint, "listener")
            packet = bytes(data)
            self.push((endpoint, packet))
            self.queued += len(packet)
            if not self.write_armed:
                self.write_armed = True
                try:
                    self.loop.poller.modify(self.fd, self.interest())
                except OSError:  # closed meanwhile
                    pass
            return _SENT

    def request_drained(self, endpoint: Endpoint) -> bool:
        """As :meth:`Connection.request_drained`, for a send to ``endpoint``."""
        with self.lock:
            if self.state is not READY or not self.full():
                return False
            self.drain_for.add(endpoint)
            return True

    def interest(self) -> int:
        """What to poll it for: accepting (or receiving) unless the node's input is
        paused, writing while datagrams wait."""
        return (0 if self.loop.input_paused else READ) | (WRITE if self.write_armed else 0)

    def forget(self, addr: Address) -> int:
        """Drop the datagrams queued to ``addr`` (any thread); return how many."""
        with self.lock:
            kept: deque[tuple[Endpoint, bytes]] = deque()
            dropped = 0
            for endpoint, packet in self.chunks:
                if endpoint.addr == addr:
                    dropped += 1
                    self.queued -= len(packet)
                else:
                    kept.append((endpoint, packet))
            self.chunks = kept
            self.drain_for = {ep for ep in self.drain_for if ep.addr != addr}
            if not kept:
                self.notify()
            return dropped

    def flush(self) -> list[Endpoint]:
        """Write queued datagrams until done or the OS pushes back (loop thread).

        Returns the endpoints to tell ``Drained`` once the queue is empty.
        """
        with self.lock:
            chunks = self.chunks
            send_to = self.local.send_to
            while chunks:
                assert isinstance(chunks, deque)  # not the empty tuple: it has items
                endpoint, packet = chunks[0]
                try:
                    status = send_to(endpoint.addr, packet)
                except BlockingIOError:
                    return []
                except OSError as exc:
                    status = drop_datagram(endpoint, exc)
                except (ValueError, TypeError) as exc:  # an address the transport refuses
                    log.warning("queued datagram to %s dropped: %s", endpoint, exc)
                    status = _NOT_AVAILABLE
                if status is not _SENT:
                    log.debug("queued datagram to %s dropped: %s", endpoint, status.name)
                chunks.popleft()
                self.queued -= len(packet)
            self.queued = 0
            self.write_armed = False
            self.drained()  # its peers are told Drained through drain_for
            self.notify()
            if self.state is READY:
                self.loop.poller.modify(self.fd, self.interest())
            drained = list(self.drain_for)
            self.drain_for.clear()
            return drained
