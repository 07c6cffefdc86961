"""A listener short of file descriptors pauses instead of spinning on accept()."""

from __future__ import annotations

import errno
import logging
import os
import queue
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import message_io
from message_io import Accepted, Message, NodeEvent, Signal, Transport
from message_io.network.adapter import Adapter, ConnectionInfo, ListeningInfo, Local, Remote
from message_io.network.endpoint import Address

from .minimal_adapter import MinimalAdapter, MinimalRemote

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


class _RecoveringLocal(_ExhaustedLocal):
    """Fails with EMFILE ``failures`` times, then accepts (nothing: the stub has no peers)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        self.sock.recv(16)  # recovered; nothing more to accept


class _RecoveringAdapter(_ExhaustedAdapter):
    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        local = _RecoveringLocal(failures=5)
        self.locals.append(local)
        return ListeningInfo(local, "stub")


_RECOVERING = _RecoveringAdapter()
RECOVERING: Transport = getattr(Transport, "RECOVERING", None) or message_io.register_transport(
    "RECOVERING", _RECOVERING
)


def test_an_exhaustion_episode_logs_one_line_and_one_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Five failed accepts in a row (0.1 s pauses between them) are one WARNING line when
    the shortage starts and one when accepting works again, not one per attempt."""
    handler, listener = message_io.split()
    handler.network.listen(RECOVERING, "anything")
    local = _RECOVERING.locals[-1]
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    caplog.set_level(logging.DEBUG, logger="message_io")
    handler.signals.send_with_timer("after recovery", 1.0)  # 5 pauses of 0.1 s, then more
    with listener.for_each_async(events.put):
        assert events.get(timeout=TIMEOUT) == Signal("after recovery")
    assert local.calls >= 6  # it recovered within the 1.0 s (resumed after each pause)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "Too many open files" in warnings[0]
    assert "accepting again" in warnings[1]
    assert "(5 failed attempts)" in warnings[1]


_EXHAUSTIBLE_SERVER = r"""
import logging, os, resource, sys, threading, time
import message_io
from message_io import Accepted, Signal, Transport

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
LIMIT = 64
resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
handler, listener = message_io.split()
_, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")

def on_event(event):
    if isinstance(event, Signal):  # inside the loop: every fd it needs is open
        free = LIMIT - (len(os.listdir("/proc/self/fd")) - 1)  # listdir holds one
        print("ready", addr[1], free, flush=True)
    elif isinstance(event, Accepted):
        print("accepted", time.monotonic(), flush=True)

def stop_at_eof():
    sys.stdin.read()
    handler.stop()

threading.Thread(target=stop_at_eof, daemon=True).start()
handler.signals.send("ready")
listener.for_each(on_event)
"""


def test_real_fd_exhaustion_logs_once_and_recovers_fast() -> None:
    """A server limited to 64 fds, sent 5 connections more than it has fds for: one
    WARNING when accept() runs out, one when it works again, and the waiting
    connections are accepted within 1.5 s of fds being freed."""
    import subprocess
    import sys
    import time

    clients: list[socket.socket] = []
    with subprocess.Popen(
        [sys.executable, "-c", _EXHAUSTIBLE_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdin is not None
        try:
            ready = child.stdout.readline().split()
            assert ready[0] == "ready", ready
            port, free = int(ready[1]), int(ready[2])
            assert free > 10
            clients.extend(  # the last 5 wait in the backlog
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                for _ in range(free + 5)
            )
            for _ in range(free):
                assert child.stdout.readline().startswith("accepted")
            warning = child.stderr.readline()  # blocks until the server runs out
            assert "Too many open files" in warning, warning
            freed_at = time.monotonic()
            for sock in clients[:10]:  # accepted first (the backlog is FIFO): 10 fds
                sock.close()
            accepted_at = [float(child.stdout.readline().split()[1]) for _ in range(5)]
            assert max(accepted_at) - freed_at < 1.5
            child.stdin.close()
            assert child.wait(TIMEOUT) == 0
            rest = child.stderr.read()
        finally:
            for sock in clients:
                sock.close()
            if child.poll() is None:
                child.kill()
    lines = [line for line in rest.splitlines() if line.startswith("WARNING")]
    assert len(lines) == 1 and "accepting again" in lines[0], lines


class _FirstUnpollableRemote(MinimalRemote):
    """An accepted connection; the first one made has a descriptor that epoll refuses
    (``/dev/null``: EPERM), the others their socket's."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.null = -1 if _UNPOLLABLE else os.open(os.devnull, os.O_RDONLY)
        self.closed = False
        if self.null >= 0:
            _UNPOLLABLE.append(self)

    def fileno(self) -> int:
        return self.null if self.null >= 0 else super().fileno()

    def close(self) -> None:
        self.closed = True
        if self.null >= 0:
            os.close(self.null)
        super().close()


_UNPOLLABLE: list[_FirstUnpollableRemote] = []  # the unpollable one, once made


class _FirstUnpollableAdapter(MinimalAdapter):
    remote_class = _FirstUnpollableRemote


_FIRST_UNPOLLABLE = _FirstUnpollableAdapter()
FIRST_UNPOLLABLE: Transport = getattr(
    Transport, "FIRST_UNPOLLABLE", None
) or message_io.register_transport("FIRST_UNPOLLABLE", _FIRST_UNPOLLABLE)


def test_an_accepted_connection_the_poller_refuses_is_closed_and_the_next_one_served(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """epoll refuses the first accepted descriptor: that connection is closed and said
    in a WARNING, never announced; the next one is accepted and carries messages."""
    _UNPOLLABLE.clear()
    handler, listener = message_io.split()
    path = str(tmp_path / "sock")
    listener_id, _addr = handler.network.listen(FIRST_UNPOLLABLE, path)
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    caplog.set_level(logging.WARNING, logger="message_io")
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with listener.for_each_async(events.put):
            first.connect(path)
            first.settimeout(TIMEOUT)
            assert first.recv(1) == b""  # closed by the node
            second.connect(path)
            accepted = events.get(timeout=TIMEOUT)
            assert isinstance(accepted, Accepted)
            assert accepted.listener_id == listener_id
            second.sendall(b"hi")
            message = events.get(timeout=TIMEOUT)
            assert message == Message(accepted.endpoint, b"hi")
            handler.stop()
    finally:
        first.close()
        second.close()
    (remote,) = _UNPOLLABLE
    assert remote.closed
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("could not poll accepted" in w for w in warnings), warnings


class _UnpollableConnectRemote(MinimalRemote):
    """A connecting side whose descriptor epoll refuses (``/dev/null``: EPERM)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.null = os.open(os.devnull, os.O_RDONLY)
        _UNPOLLABLE_CONNECTS.append(self)

    def fileno(self) -> int:
        return self.null

    def close(self) -> None:
        os.close(self.null)
        self.null = -1
        super().close()


_UNPOLLABLE_CONNECTS: list[_UnpollableConnectRemote] = []


class _UnpollableConnectAdapter(MinimalAdapter):
    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        info = super().connect(addr, config)
        assert isinstance(info.remote, MinimalRemote)
        return ConnectionInfo(
            _UnpollableConnectRemote(info.remote.sock), info.local_addr, info.peer_addr
        )


_UNPOLLABLE_CONNECT = _UnpollableConnectAdapter()
UNPOLLABLE_CONNECT: Transport = getattr(
    Transport, "UNPOLLABLE_CONNECT", None
) or message_io.register_transport("UNPOLLABLE_CONNECT", _UNPOLLABLE_CONNECT)


def test_a_connection_the_poller_refuses_is_not_left_in_the_node(tmp_path: Path) -> None:
    """epoll refuses a new connection's descriptor: connect raises, the remote is closed,
    and the node keeps nothing of it (no connection by id, no resource or handler by
    descriptor, which a later socket may reuse)."""
    _UNPOLLABLE_CONNECTS.clear()
    handler, listener = message_io.split()
    path = str(tmp_path / "sock")
    handler.network.listen(Transport.UNIX, path)
    loop: Any = handler.network._loop
    with pytest.raises(OSError) as failed:
        handler.network.connect(UNPOLLABLE_CONNECT, path)
    assert failed.value.errno == errno.EPERM
    (remote,) = _UNPOLLABLE_CONNECTS
    assert remote.null == -1  # closed
    assert loop.connections == {}
    assert all(type(r).__name__ == "Listener" for r in loop.registry.resources.values())
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    with listener.for_each_async(events.put):
        endpoint, _ = handler.network.connect_sync(Transport.UNIX, path)
        assert handler.network.send(endpoint, b"still fine") is message_io.SendStatus.SENT
        kinds = []
        while Message not in kinds:
            event = events.get(timeout=TIMEOUT)
            kinds.append(type(event))
            if isinstance(event, Message):
                assert event.data == b"still fine"
        handler.stop()
