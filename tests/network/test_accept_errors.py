"""A listener short of file descriptors pauses instead of spinning on accept()."""

from __future__ import annotations

import errno
import queue
import socket
from collections.abc import Callable
from typing import Any

import message_io
from message_io import NodeEvent, Signal, Transport
from message_io.network.adapter import Adapter, ConnectionInfo, ListeningInfo, Local, Remote
from message_io.network.endpoint import Address

TIMEOUT = 10.0


class _ExhaustedLocal(Local):
    """Always readable (a byte waits in a socket pair); accept() always fails with EMFILE."""

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair()
        self.peer.send(b"!")
        self.calls = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


class _ExhaustedAdapter(Adapter):
    def __init__(self) -> None:
        self.locals: list[_ExhaustedLocal] = []

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        raise OSError("this stub cannot connect")

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        local = _ExhaustedLocal()
        self.locals.append(local)
        return ListeningInfo(local, "stub")


_ADAPTER = _ExhaustedAdapter()
EXHAUSTED: Transport = getattr(Transport, "EXHAUSTED", None) or message_io.register_transport(
    "EXHAUSTED", _ADAPTER
)


def test_accept_out_of_descriptors_pauses_the_listener() -> None:
    handler, listener = message_io.split()
    handler.network.listen(EXHAUSTED, "anything")
    local = _ADAPTER.locals[-1]
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    handler.signals.send_with_timer("later", 0.05)  # half the pause
    with listener.for_each_async(events.put):
        assert events.get(timeout=TIMEOUT) == Signal("later")
        calls_during_pause = local.calls
    # A level-triggered loop that kept retrying would have called accept() thousands of
    # times in 50 ms; pausing leaves one call (two if this machine ran very late).
    assert 1 <= calls_during_pause <= 2
