"""The adapter template filled in minimally: only its nine required methods, over Unix
stream sockets, and nothing else. It proves that the template's defaults make a working
transport (the trap of a template whose optional hooks broke ``send`` is gone).

Addresses are socket paths. It is a raw byte stream (``packet_based = False``): the
template's ``framing = Framing.FRAME`` with the default ``frame()`` sends each message
as it is.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from message_io.adapters.template import MyAdapter, MyLocal, MyRemote
from message_io.network.adapter import (
    Buffer,
    ConnectionInfo,
    ListeningInfo,
    ReadStatus,
    Remote,
)
from message_io.network.endpoint import Address

__all__ = ["MinimalAdapter", "MinimalLocal", "MinimalRemote"]


class MinimalRemote(MyRemote):
    sock: socket.socket

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return ReadStatus.OK
        except ConnectionError:
            return ReadStatus.DISCONNECTED
        if not data:
            return ReadStatus.DISCONNECTED
        deliver(data)
        return ReadStatus.OK

    def write(self, data: Buffer) -> int:
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.sock.close()


class MinimalLocal(MyLocal):
    sock: socket.socket
    remote_class: type[MinimalRemote] = MinimalRemote

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        try:
            sock, peer = self.sock.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        accept_remote(self.remote_class(sock), peer)

    def close(self) -> None:
        path = self.sock.getsockname()
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


class MinimalAdapter(MyAdapter):
    packet_based = False  # a byte stream: the template's frame() adds no boundaries
    remote_class: type[MinimalRemote] = MinimalRemote
    local_class: type[MinimalLocal] = MinimalLocal

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.connect(os.fspath(addr))  # a Unix socket connects (or fails) at once
        except BaseException:
            sock.close()
            raise
        return ConnectionInfo(self.remote_class(sock), sock.getsockname(), os.fspath(addr))

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(addr))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        local = self.local_class(sock)
        local.remote_class = self.remote_class
        return ListeningInfo(local, os.fspath(addr))
