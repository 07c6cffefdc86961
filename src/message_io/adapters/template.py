"""An annotated skeleton for a new transport: copy it, fill it in, register it.

A transport is an :class:`~message_io.network.adapter.Adapter` (a factory), a
:class:`~message_io.network.adapter.Remote` (one connection) and a
:class:`~message_io.network.adapter.Local` (one listener). Nine methods are required:
four on the Remote (``fileno``, ``receive``, ``write``, ``close``), three on the Local
(``fileno``, ``accept``, ``close``) and two on the Adapter (``connect``, ``listen``).
Every other hook has a default that changes nothing, and what the transport can do is
declared in class attributes (its *capabilities*), never guessed from which methods
you override. Fill in the nine and you have a working byte-stream transport. Then::

    from message_io import register_transport
    MY = register_transport("MY", MyAdapter())
    handler.network.listen(MY, "...")          # works like any built-in transport

The node polls ``fileno()``, calls your methods on its loop thread, queues and coalesces
outgoing bytes, bounds memory, turns your exceptions into disconnections, and emits the
events. ``docs/adapters.md`` walks through a complete transport over Unix sockets
(:mod:`message_io.adapters.unix`, built in), and :mod:`message_io.testing` is the
conformance suite to run on yours. Every required method below raises
``NotImplementedError`` until you fill it in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    SendStatus,
)
from ..network.endpoint import Address

__all__ = ["MyAdapter", "MyConnectConfig", "MyListenConfig", "MyLocal", "MyRemote"]


@dataclass(frozen=True, kw_only=True)
class MyConnectConfig(ConnectConfig):
    """Your connect options, keyword-only. ``connect_timeout`` and ``send_buffer_limit``
    are inherited and handled by the node."""


@dataclass(frozen=True, kw_only=True)
class MyListenConfig(ListenConfig):
    """Your listen options. ``send_buffer_limit`` is inherited."""


class MyRemote(Remote):
    """One connection. Keep the OS object (a non-blocking socket) and any codec here."""

    # Capabilities, set here to their defaults: change what your transport does.
    framing = Framing.FRAME  # frame(data) makes each message's bytes; HEADER: header(size)
    #                          then the payload (no copy); NONE: bytes as given
    reports_incomplete = False  # True if incomplete() says how much of a message is pending
    has_output = False  # True if take_output() may return bytes of its own (pongs)
    text_messages = False  # True if send() takes a str (frame_text) and receive() gives one
    full_duplex = True  # False if reading and writing share state (TLS): one lock for both
    datagrams = False  # True if each write must carry exactly one whole message (UDP-like);
    #                    write() then raises BlockingIOError when the OS pushes back

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        # self.max_message_size = ...   # sends larger than this get MAX_PACKET_SIZE_EXCEEDED

    def fileno(self) -> int:
        """The fd the node polls. It must stay the same for the connection's life."""
        raise NotImplementedError

    def pending(self, readiness: Readiness) -> PendingStatus:
        """Optional: a handshake. Called on each readiness until READY or DISCONNECTED.
        Set ``self.failure`` to an exception before returning DISCONNECTED."""
        return PendingStatus.READY

    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        """Read without blocking; ``deliver(message)`` per whole message. A bounded number
        of reads is fine (polling is level-triggered). Return DISCONNECTED on EOF."""
        raise NotImplementedError

    def frame(self, data: Buffer) -> Buffer | tuple[bytes, Buffer] | None:
        """Optional (``framing = Framing.FRAME``, the default): the bytes of one message,
        e.g. a length prefix and the payload; None refuses it (closing). The default
        sends the payload as it is."""
        return data

    # def header(self, size: int) -> bytes | None:
    #     """With ``framing = Framing.HEADER`` instead of frame(): the bytes to put
    #     before a payload of ``size`` (a length prefix); None refuses the message."""

    def write(self, data: Buffer) -> int:
        """Write without blocking; return how many bytes the OS took (0 if none)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the OS object."""
        raise NotImplementedError


class MyLocal(Local):
    """One listener."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def fileno(self) -> int:
        raise NotImplementedError

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        """Accept without blocking: ``accept_remote(MyRemote(conn), peer_addr)`` for each
        connection, or ``deliver(peer_addr, message)`` for each datagram."""
        raise NotImplementedError

    def send_to(self, addr: Address, data: Buffer) -> SendStatus:
        """Optional (packet transports): send one message from the listener to ``addr``;
        raise BlockingIOError when the OS pushes back (the node queues it)."""
        return super().send_to(addr, data)

    def close(self) -> None:
        raise NotImplementedError


class MyAdapter(Adapter):
    """The factory, plus what the transport is."""

    connection_oriented = True  # False for datagram transports: no Accepted/Disconnected
    packet_based = True  # True if one send arrives as one Message
    max_message_size = None  # the default limit, or None
    connect_config = MyConnectConfig
    listen_config = MyListenConfig

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        """Parse ``addr``, start a NON-BLOCKING connect, return at once:
        ``ConnectionInfo(MyRemote(sock), local_addr, peer_addr)``. Raise AddressError for
        a bad address, OSError if the OS refuses to start.

        Never resolve a host name here (it would block the caller, maybe the loop): if
        ``addr`` can hold one, also implement ``lookup`` (return
        ``host_name(addr)``) and ``connect_to(addr, config, family, sockaddr)``; the
        node then resolves names off the loop and races their addresses."""
        raise NotImplementedError

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        """Bind and listen: ``ListeningInfo(MyLocal(sock), real_local_addr)``."""
        raise NotImplementedError
