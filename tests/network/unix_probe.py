"""``Transport.UNIX`` with its connections instrumented: the node's side of the adapter
contract, observed.

:data:`UNIX_PROBE` is the built-in Unix transport (:mod:`message_io.adapters.unix`)
whose connections record how the node drives them: :attr:`ProbeRemote.eof` is set once
``receive`` reported ``DISCONNECTED``, and :attr:`ProbeRemote.receives_after_eof` counts
the calls the node made after that (a node that keeps polling a connection at EOF
spins). It is registered once per process, under the name ``UNIX_PROBE``.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from message_io import Transport, register_transport
from message_io.adapters.unix import UnixAdapter, UnixLocal, UnixRemote
from message_io.network.adapter import Local, ReadStatus, Remote

__all__ = ["UNIX_PROBE", "ProbeRemote", "accepted_remote"]


class ProbeRemote(UnixRemote):
    """A Unix connection that records the ``receive`` calls made after its EOF."""

    def __init__(self, sock: socket.socket, *, max_message_size: int, peer: str) -> None:
        super().__init__(sock, max_message_size=max_message_size)
        self.peer = peer
        self.eof = threading.Event()
        self.receives_after_eof = 0
        _remotes.add(self)

    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        if self.eof.is_set():
            self.receives_after_eof += 1
        status = super().receive(deliver)
        if status is ReadStatus.DISCONNECTED:
            self.eof.set()
        return status


class _ProbeLocal(UnixLocal):
    def make_remote(self, sock: socket.socket, peer: str) -> Remote:
        return ProbeRemote(sock, max_message_size=self._config.max_message_size, peer=peer)


class _ProbeAdapter(UnixAdapter):
    def make_local(self, sock: socket.socket, addr: str, config: Any) -> Local:
        return _ProbeLocal(sock, addr, config)


_remotes: weakref.WeakSet[ProbeRemote] = weakref.WeakSet()


def accepted_remote(peer: str) -> ProbeRemote:
    """The live connection accepted from a client bound to the path ``peer``."""
    found = [remote for remote in list(_remotes) if remote.peer == peer]
    assert len(found) == 1, f"{len(found)} connections accepted from {peer!r}"
    return found[0]


def _register() -> Transport:
    existing = getattr(Transport, "UNIX_PROBE", None)
    if isinstance(existing, Transport):  # imported twice (under another module name)
        return existing
    return register_transport("UNIX_PROBE", _ProbeAdapter())


UNIX_PROBE: Final[Transport] = _register()
"""The instrumented Unix transport, registered once per process."""
