"""A datagram transport over Unix domain datagram sockets, for the node's datagram paths.

Unlike UDP on loopback, a Unix datagram socket pushes back: once the receiver's queue
is full, ``send`` fails with ``EAGAIN`` until the receiver reads. That makes the node's
bounded send queues of datagram connections and packet listeners testable
deterministically. Written against the public adapter contract only; registered once per
process as ``Transport.UNIX_DGRAM`` (see :data:`UNIX_DGRAM`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, ClassVar, Final

from message_io import Transport, register_transport
from message_io.network.adapter import (
    Adapter,
    Buffer,
    ConnectConfig,
    ConnectionInfo,
    Framing,
    ListenConfig,
    ListeningInfo,
    Local,
    ReadStatus,
    Remote,
    SendStatus,
)
from message_io.network.endpoint import Address

__all__ = ["MAX_DATAGRAM", "UNIX_DGRAM"]

MAX_DATAGRAM: Final = 64 * 1024


class DgramRemote(Remote):
    datagrams = True
    framing = Framing.NONE

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    def fileno(self) -> int:
        return self.socket.fileno()

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        for _ in range(64):
            try:
                data = self.socket.recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            deliver(data)
        return ReadStatus.OK

    def write(self, data: Buffer) -> int:
        return self.socket.send(data)  # BlockingIOError: the node queues it

    def close(self) -> None:
        self.socket.close()


class DgramLocal(Local):
    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    def fileno(self) -> int:
        return self.socket.fileno()

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        for _ in range(64):
            try:
                data, addr = self.socket.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            deliver(addr, data)

    def send_to(self, addr: Address, data: Buffer) -> SendStatus:
        self.socket.sendto(data, addr)  # BlockingIOError: the node queues it
        return SendStatus.SENT

    def close(self) -> None:
        self.socket.close()


class DgramAdapter(Adapter):
    connection_oriented = False
    packet_based = True
    max_message_size: ClassVar[int | None] = MAX_DATAGRAM

    def connect(self, addr: Any, config: ConnectConfig) -> ConnectionInfo:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind("")  # an abstract address of its own, so that replies can reach it
        sock.connect(addr)
        # An abstract name comes as bytes; an Address is a tuple or a str.
        return ConnectionInfo(DgramRemote(sock), os.fsdecode(sock.getsockname()), addr)

    def listen(self, addr: Any, config: ListenConfig) -> ListeningInfo:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(addr)
        return ListeningInfo(DgramLocal(sock), sock.getsockname())


def _register() -> Transport:
    existing = getattr(Transport, "UNIX_DGRAM", None)
    if isinstance(existing, Transport):
        return existing
    return register_transport("UNIX_DGRAM", DgramAdapter())


UNIX_DGRAM: Final = _register()
