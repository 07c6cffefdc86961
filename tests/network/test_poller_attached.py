"""A poller attached to an outer event loop: the loop watches each descriptor itself.

An outer loop stands in for asyncio's here (it records what it is asked to watch), so
that what the poller asks of it, from which thread, is seen exactly; ``test_asyncio.py``
runs the same on asyncio's and uvloop's loops.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from message_io.network.poller import READ, WRITE, Poller


class RecordingLoop:
    """The part of asyncio's loop API that an attached poller uses."""

    def __init__(self) -> None:
        self.readers: dict[int, tuple[Callable[..., None], tuple[Any, ...]]] = {}
        self.writers: dict[int, tuple[Callable[..., None], tuple[Any, ...]]] = {}
        self.closed = False
        self.refuse: set[int] = set()  # fds whose add_reader fails (closed ones)
        # fds closed and reused behind the loop's back: as asyncio's, the next change
        # fails (epoll: ENOENT) and the loop drops what it had for them
        self.stale: set[int] = set()

    def add_reader(self, fd: int, callback: Callable[..., None], *args: Any) -> None:
        if fd in self.refuse:
            raise OSError(9, "Bad file descriptor")
        self.readers[fd] = (callback, args)

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def add_writer(self, fd: int, callback: Callable[..., None], *args: Any) -> None:
        if fd in self.stale:
            self.stale.discard(fd)
            self.readers.pop(fd, None)
            raise FileNotFoundError(2, "No such file or directory")
        self.writers[fd] = (callback, args)

    def remove_writer(self, fd: int) -> bool:
        return self.writers.pop(fd, None) is not None

    def is_closed(self) -> bool:
        return self.closed

    def fire(self, fd: int, writable: bool = False) -> None:
        callback, args = (self.writers if writable else self.readers)[fd]
        callback(*args)


class Attached:
    """A poller attached to a :class:`RecordingLoop`, with what it dispatched (``ready``:
    ``(fd, flags)``) and how often it woke the loop."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self.outer = RecordingLoop()
        self.ready: list[tuple[int, int]] = []
        self.wakes = 0
        poller.attach(self.outer, self._dispatch, self._wake)

    def _dispatch(self, fd: int, flags: int) -> None:
        self.ready.append((fd, flags))

    def _wake(self) -> None:
        self.wakes += 1


@pytest.fixture
def node() -> Iterator[Attached]:
    """A new poller, attached; closed after the test."""
    poller = Poller()
    try:
        yield Attached(poller)
    finally:
        poller.close()


def test_what_was_registered_moves_to_the_outer_loop_and_readiness_comes_back(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = socket_pair
    poller = Poller()
    try:
        poller.register(a.fileno(), READ)
        attached = Attached(poller)
        outer, ready = attached.outer, attached.ready
        assert set(outer.readers) == {a.fileno()} and not outer.writers
        assert poller.poll(0) == []  # the node's own poller watches nothing any more
        b.send(b"x")
        assert poller.poll(0) == []
        outer.fire(a.fileno())
        (fd, flags), *_ = ready
        assert fd == a.fileno() and flags & READ and not flags & WRITE

        poller.modify(a.fileno(), READ | WRITE)
        assert a.fileno() in outer.readers and a.fileno() in outer.writers
        outer.fire(a.fileno(), writable=True)
        assert ready[-1][1] & WRITE and not ready[-1][1] & READ
        poller.modify(a.fileno(), WRITE)
        assert a.fileno() not in outer.readers and a.fileno() in outer.writers
        poller.modify(a.fileno(), 0)
        assert not outer.readers and not outer.writers
        poller.unregister(a.fileno())
        poller.unregister(a.fileno())  # twice: nothing to undo, as with epoll
    finally:
        poller.close()


def test_another_threads_registrations_wait_for_settle_on_the_loops_thread(
    socket_pair: tuple[socket.socket, socket.socket], node: Attached
) -> None:
    a, b = socket_pair

    def elsewhere() -> None:
        node.poller.register(a.fileno(), READ)
        node.poller.register(b.fileno(), READ | WRITE)
        node.poller.unregister(b.fileno())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert node.wakes and not node.outer.readers  # the loop was woken; nothing applied yet
    node.poller.settle()
    assert set(node.outer.readers) == {a.fileno()} and not node.outer.writers
    node.poller.close()
    assert not node.outer.readers  # closing stops the watches


def test_modify_of_an_unknown_descriptor_fails_as_epolls_does(
    socket_pair: tuple[socket.socket, socket.socket], node: Attached
) -> None:
    a, _b = socket_pair
    with pytest.raises(FileNotFoundError):
        node.poller.modify(a.fileno(), READ)


def test_a_descriptor_the_loop_cannot_watch_is_dropped_and_a_reused_number_works(
    socket_pair: tuple[socket.socket, socket.socket],
    node: Attached,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _b = socket_pair
    node.outer.refuse.add(a.fileno())
    with caplog.at_level(logging.WARNING, logger="message_io"):
        node.poller.register(a.fileno(), READ)  # the loop refuses it: no raise, no watch
    assert not node.outer.readers
    assert f"cannot watch descriptor {a.fileno()}" in caplog.text  # but it is said
    node.outer.refuse.clear()
    node.poller.register(a.fileno(), READ)  # the number again (closed, reused)
    assert set(node.outer.readers) == {a.fileno()}


def test_closing_after_the_loop_closed_asks_it_nothing(
    socket_pair: tuple[socket.socket, socket.socket], node: Attached
) -> None:
    a, _b = socket_pair
    node.poller.register(a.fileno(), READ)
    node.outer.closed = True
    node.poller.close()
    assert set(node.outer.readers) == {a.fileno()}  # not touched: a closed loop may raise


def test_inside_a_turn_changes_wait_for_its_end_but_unregistering_does_not(
    socket_pair: tuple[socket.socket, socket.socket], node: Attached
) -> None:
    a, b = socket_pair
    node.poller.register(b.fileno(), READ)
    node.poller.deferring = True  # a turn of the node
    node.poller.register(a.fileno(), READ | WRITE)  # accepted: polled for writing first,
    node.poller.modify(a.fileno(), READ)  # then for reading
    assert set(node.outer.readers) == {b.fileno()}  # nothing asked of the loop yet
    node.poller.unregister(b.fileno())  # at once: it may be closed next
    assert set(node.outer.readers) == {a.fileno()} and not node.outer.writers
    node.poller.deferring = False
    node.poller.settle()
    assert set(node.outer.readers) == {a.fileno()} and not node.outer.writers


def test_a_number_reused_behind_the_loops_back_is_watched_afresh(
    socket_pair: tuple[socket.socket, socket.socket], node: Attached
) -> None:
    a, _b = socket_pair
    node.poller.register(a.fileno(), READ)
    fd = a.fileno()
    node.outer.stale.add(fd)  # closed and reused since the loop took it
    node.poller.modify(fd, READ | WRITE)
    assert fd in node.outer.readers and fd in node.outer.writers


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_number_unregistered_and_registered_again_elsewhere_is_watched_afresh(
    kind: str,
) -> None:
    """On another thread: unregister a socket, close it, open another that gets its
    number, register it with the same interest, all before the loop settles. The loop's
    record of the old socket is stale (the kernel forgot it on close): the new one must
    be watched afresh, not taken for the old one."""
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def main() -> None:
        aloop = asyncio.get_running_loop()
        poller = Poller()
        ready = asyncio.Event()
        poller.attach(aloop, lambda fd, flags: ready.set(), lambda: None)  # settled below
        old, old_peer = socket.socketpair()
        number = old.fileno()
        poller.register(number, READ)
        held: list[socket.socket] = [old_peer]

        def elsewhere() -> None:
            poller.unregister(number)
            old.close()
            new, new_peer = socket.socketpair()
            held.extend((new, new_peer))
            poller.register(new.fileno(), READ)
            new_peer.send(b"x")

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        try:
            assert held[1].fileno() == number  # the number was reused
            poller.settle()  # what the node's waker makes the loop's thread do
            await asyncio.wait_for(ready.wait(), 5.0)
        finally:
            poller.close()
            for sock in held:
                sock.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
