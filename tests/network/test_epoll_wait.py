"""epoll_wait: the loop's wait on its epoll, the C twin and the Python twin alike."""

from __future__ import annotations

import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType, ModuleType
from typing import Any

import pytest

import message_io
from message_io.network import epoll_wait

from ..twins import python_twin, same_names, twins

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="Linux's epoll only")


@pytest.fixture(params=twins(epoll_wait))
def twin(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture
def epoll() -> Iterator[select.epoll]:
    poller = select.epoll()
    yield poller
    poller.close()


def test_the_c_twin_is_there_with_the_compiled_engine() -> None:
    assert epoll_wait.COMPILED is message_io.COMPILED
    assert epoll_wait.MAX_EVENTS == python_twin(epoll_wait).MAX_EVENTS
    same_names(epoll_wait)


def test_nothing_ready(twin: Any, epoll: select.epoll, socket_pair: Any) -> None:
    _, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    assert twin.wait(epoll, 0) == []
    assert twin.wait(epoll, 0.0) == []


def test_ready_descriptors_and_their_masks(
    twin: Any, epoll: select.epoll, socket_pair: Any
) -> None:
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN | select.EPOLLOUT)
    epoll.register(a.fileno(), select.EPOLLIN)
    a.send(b"x")
    ready = twin.wait(epoll, None)
    assert ready == [(b.fileno(), select.EPOLLIN | select.EPOLLOUT)]
    assert ready == epoll.poll(0)  # the same as epoll's own answer
    b.send(b"y")
    assert sorted(twin.wait(epoll, -1)) == sorted(epoll.poll(0))
    assert len(twin.wait(epoll, 5)) == 2


def test_a_hangup(twin: Any, epoll: select.epoll, socket_pair: Any) -> None:
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    a.close()
    ((fd, mask),) = twin.wait(epoll, 1)
    assert fd == b.fileno()
    assert mask & select.EPOLLIN and mask & select.EPOLLHUP


@pytest.mark.parametrize(
    "wait",
    [
        pytest.param(lambda twin, epoll: twin.wait(epoll, 10), id="wait"),
        pytest.param(lambda twin, epoll: twin.wait_until(epoll, None), id="wait_until"),
    ],
)
def test_waits_for_a_descriptor_made_ready_by_another_thread(
    twin: Any, epoll: select.epoll, socket_pair: Any, wait: Any
) -> None:
    """The C twin releases the GIL while it may sleep: the writer thread runs."""
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    writer = threading.Thread(target=a.send, args=(b"wake",))
    writer.start()
    assert wait(twin, epoll) == [(b.fileno(), select.EPOLLIN)]
    writer.join(10)


def test_at_most_max_events(twin: Any, epoll: select.epoll) -> None:
    pairs = [socket.socketpair() for _ in range(twin.MAX_EVENTS + 10)]
    try:
        for _, b in pairs:
            epoll.register(b.fileno(), select.EPOLLOUT)
        assert len(twin.wait(epoll, 0)) == twin.MAX_EVENTS
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_closed_epoll(twin: Any) -> None:
    poller = select.epoll()
    poller.close()
    with pytest.raises(ValueError, match="closed epoll"):
        twin.wait(poller, 0)


def test_bad_timeouts(twin: Any, epoll: select.epoll) -> None:
    with pytest.raises(TypeError):
        twin.wait(epoll, "1")
    with pytest.raises(ValueError):
        twin.wait(epoll, float("nan"))
    with pytest.raises(OverflowError):
        twin.wait(epoll, 1e10)


def test_a_tiny_negative_timeout_is_rounded_up_to_zero(twin: Any, epoll: select.epoll) -> None:
    """-0.0005 s rounds up to 0 ms, as epoll.poll rounds: no wait (not "no limit")."""
    assert twin.wait(epoll, -0.0005) == []


def test_a_signal_that_does_not_raise_lets_the_wait_go_on(
    twin: Any, epoll: select.epoll, socket_pair: Any
) -> None:
    """PEP 475: the handler runs, the wait goes on until a descriptor is ready."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled on the main thread")
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    handled = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda _n, _f: handled.set())
    main = threading.get_ident()

    def interrupt_then_wake() -> None:
        signal.pthread_kill(main, signal.SIGUSR1)
        if handled.wait(10):  # the handler ran: now make the descriptor ready
            a.send(b"x")

    thread = threading.Thread(target=interrupt_then_wake)
    try:
        thread.start()
        assert twin.wait(epoll, 30) == [(b.fileno(), select.EPOLLIN)]
        assert handled.is_set()
    finally:
        thread.join(10)
        signal.signal(signal.SIGUSR1, previous)


def test_a_signal_handler_error_is_raised(twin: Any, epoll: select.epoll, socket_pair: Any) -> None:
    """A signal during the wait: its handler runs, and what it raises comes out."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled on the main thread")
    _, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)

    class Interrupted(Exception):
        pass

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)
    main = threading.get_ident()
    timer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGUSR1))
    try:
        with pytest.raises(Interrupted):  # however early the signal comes
            timer.start()
            twin.wait(epoll, 30)  # never ready: only the signal ends it
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)


def test_a_list_or_pair_that_is_kept_never_changes(
    twin: Any, epoll: select.epoll, socket_pair: Any
) -> None:
    """The C twin refills the list and pairs of an earlier call only when nothing holds
    them: neither a kept list nor a pair kept without its list changes."""
    a, b = socket_pair
    fd = b.fileno()
    epoll.register(fd, select.EPOLLIN)
    a.send(b"x")
    kept = twin.wait(epoll, 0)
    pair = twin.wait(epoll, 0)[0]  # its list dropped at once
    epoll.modify(fd, select.EPOLLIN | select.EPOLLOUT)
    later = [twin.wait(epoll, 0) for _ in range(3)]
    assert later == [[(fd, select.EPOLLIN | select.EPOLLOUT)]] * 3
    assert kept == [(fd, select.EPOLLIN)]
    assert pair == (fd, select.EPOLLIN)
    first = kept[0]
    del kept
    assert twin.wait(epoll, 0) == [(fd, select.EPOLLIN | select.EPOLLOUT)]
    assert first == (fd, select.EPOLLIN)
    epoll.unregister(fd)
    assert twin.wait(epoll, 0) == []
    assert (first, pair) == ((fd, select.EPOLLIN),) * 2


def test_the_c_twin_reuses_a_list_and_pairs_nothing_holds(
    epoll: select.epoll, socket_pair: Any
) -> None:
    if not epoll_wait.COMPILED:
        pytest.skip("the Python twin returns epoll.poll's own pairs")
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    a.send(b"x")
    first = epoll_wait.wait(epoll, 0)
    identities = id(first), id(first[0])
    del first  # the list and its pair are free: the next call fills them anew
    second = epoll_wait.wait(epoll, 0)
    assert (id(second), id(second[0])) == identities
    assert second == [(b.fileno(), select.EPOLLIN)]
    # Another length: a new list, whose pair is the one freed with the old list.
    a_fd = a.fileno()
    epoll.register(a_fd, select.EPOLLOUT)
    third = epoll_wait.wait(epoll, 0)
    assert sorted(third) == sorted([(b.fileno(), select.EPOLLIN), (a_fd, select.EPOLLOUT)])


def test_wait_until_a_passed_deadline_does_not_wait(
    twin: Any, epoll: select.epoll, socket_pair: Any
) -> None:
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    assert twin.wait_until(epoll, 0.0) == []
    assert twin.wait_until(epoll, time.monotonic() - 5) == []
    assert twin.wait_until(epoll, -1e300) == []
    a.send(b"x")
    assert twin.wait_until(epoll, 0.0) == [(b.fileno(), select.EPOLLIN)]


def test_wait_until_returns_at_its_deadline(twin: Any, epoll: select.epoll) -> None:
    """Never sooner than the deadline (the milliseconds are rounded up), and not much
    later: it is read against time.monotonic()."""
    deadline = time.monotonic() + 0.03
    assert twin.wait_until(epoll, deadline) == []
    now = time.monotonic()
    assert deadline <= now < deadline + 5


def test_wait_until_a_deadline_past_epoll_waits_longest(
    twin: Any, epoll: select.epoll, socket_pair: Any
) -> None:
    """A deadline further than epoll_wait can wait is no error (the wait is cut to its
    longest): a ready descriptor is returned at once."""
    a, b = socket_pair
    epoll.register(b.fileno(), select.EPOLLIN)
    a.send(b"wake")
    assert twin.wait_until(epoll, time.monotonic() + 1e12) == [(b.fileno(), select.EPOLLIN)]


def test_wait_until_a_signal_then_the_rest_of_the_wait(twin: Any, epoll: select.epoll) -> None:
    """PEP 475: after the handler, the wait goes on until the same deadline."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled on the main thread")
    handled = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda _n, _f: handled.set())
    main = threading.get_ident()
    deadline = time.monotonic() + 0.2
    timer = threading.Timer(0.02, signal.pthread_kill, (main, signal.SIGUSR1))
    try:
        timer.start()
        assert twin.wait_until(epoll, deadline) == []
        assert time.monotonic() >= deadline
        assert handled.is_set()
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)


def test_wait_until_bad_deadlines(twin: Any, epoll: select.epoll) -> None:
    with pytest.raises(TypeError):
        twin.wait_until(epoll, "1")
    with pytest.raises(ValueError):
        twin.wait_until(epoll, float("nan"))
    poller = select.epoll()
    poller.close()
    with pytest.raises(ValueError, match="closed epoll"):
        twin.wait_until(poller, 0.0)


def test_passed_tells_whether_a_deadline_has_come(twin: Any) -> None:
    assert twin.passed(time.monotonic())  # a reading already taken: it has come
    assert twin.passed(0)
    assert twin.passed(-1.0)
    assert not twin.passed(time.monotonic() + 3600.0)
    assert not twin.passed(float("inf"))
    assert not twin.passed(float("nan"))  # as time.monotonic() >= nan


def test_passed_agrees_with_a_later_clock_reading(twin: Any) -> None:
    # Deadlines a few microseconds ahead: some have come, some not, and any that has
    # come for passed() has come for a time.monotonic() read after it.
    outcomes = set()
    for step in range(2_000):
        deadline = time.monotonic() + (step % 10) * 1e-6
        came = twin.passed(deadline)
        if came:
            assert time.monotonic() >= deadline
        outcomes.add(came)
    assert outcomes == {True, False}


def test_passed_refuses_what_is_not_a_number(twin: Any) -> None:
    with pytest.raises(TypeError):
        twin.passed("soon")
    with pytest.raises(TypeError):
        twin.passed(None)
