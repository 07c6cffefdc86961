"""lock: the connections' lock, compiled (GilLock) and interpreted (threading.Lock) alike."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import pytest

import message_io
from message_io.network import lock

from ..twins import python_twin, twins


@pytest.fixture(params=twins(lock))
def new(request: pytest.FixtureRequest) -> Any:
    return request.param.Lock


def test_the_compiled_lock_is_there_with_the_compiled_engine() -> None:
    assert lock.COMPILED is message_io.COMPILED
    assert lock.Lock is (lock.GilLock if message_io.COMPILED else threading.Lock)
    # Interpreted, the module never offers GilLock as its Lock.
    assert python_twin(lock).Lock is threading.Lock


def test_acquire_and_release(new: Any) -> None:
    held = new()
    assert not held.locked()
    assert held.acquire() is True
    assert held.locked()
    assert held.acquire(False) is False
    assert held.acquire(blocking=False) is False
    assert held.acquire(timeout=0) is False
    assert held.acquire(True, 0.001) is False  # bounded: times out
    held.release()
    assert not held.locked()
    assert held.acquire(True, 5) is True
    held.release()
    with held:
        assert held.locked()
    assert not held.locked()
    assert "unlocked" in repr(held)


def test_release_unlocked_raises(new: Any) -> None:
    with pytest.raises(RuntimeError):
        new().release()


def test_bad_arguments(new: Any) -> None:
    held = new()
    with pytest.raises(ValueError):
        held.acquire(False, 1)
    with pytest.raises(ValueError):
        held.acquire(timeout=-5)
    with pytest.raises(TypeError):
        held.acquire(True, 1, 2)
    with pytest.raises(TypeError):
        held.acquire(wait=True)
    with pytest.raises(TypeError):
        held.acquire(True, blocking=True)
    assert not held.locked()


def test_another_thread_waits_until_released(new: Any) -> None:
    held = new()
    held.acquire()
    started = threading.Event()
    got: list[bool] = []

    def taker() -> None:
        started.set()
        got.append(held.acquire())  # waits: the main thread holds it
        held.release()

    thread = threading.Thread(target=taker)
    thread.start()
    assert started.wait(10)
    assert not got
    held.release()
    thread.join(10)
    assert got == [True]
    assert not held.locked()


def test_many_threads_exclude_each_other(new: Any) -> None:
    held = new()
    counter = [0]

    def work() -> None:
        for _ in range(2000):
            held.acquire()
            value = counter[0]
            counter[0] = value + 1
            held.release()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counter[0] == 8000


def test_a_condition_on_it(new: Any) -> None:
    cond = threading.Condition(new())
    ready: list[int] = []

    def producer() -> None:
        with cond:
            ready.append(1)
            cond.notify()

    with cond:
        thread = threading.Thread(target=producer)
        thread.start()
        assert cond.wait_for(lambda: ready, timeout=10)
        assert not cond.wait(0.001)  # bounded: nobody notifies again
    thread.join(10)


def test_a_signal_handler_error_ends_the_wait(new: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled on the main thread")
    held = new()
    held.acquire()

    class Interrupted(Exception):
        pass

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.05, signal.pthread_kill, (threading.get_ident(), signal.SIGUSR1))
    try:
        with pytest.raises(Interrupted):  # however early the signal comes
            timer.start()
            held.acquire()  # held by this very thread: only the signal ends it
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert held.locked()
    held.release()


def test_a_waiter_that_times_out_is_forgotten(new: Any) -> None:
    """One waiter gives up, another waits on: the release goes to the one still
    waiting, and once that one is done the lock is free (no token left behind)."""
    held = new()
    held.acquire()
    gave_up = threading.Event()
    waiting = threading.Event()
    got: list[bool] = []

    def impatient() -> None:
        got.append(held.acquire(True, 0.01))
        gave_up.set()

    def patient() -> None:
        waiting.set()
        got.append(held.acquire())
        held.release()

    first = threading.Thread(target=impatient)
    first.start()
    assert gave_up.wait(10)
    second = threading.Thread(target=patient)
    second.start()
    assert waiting.wait(10)
    held.release()
    second.join(10)
    first.join(10)
    assert got == [False, True]
    assert not held.locked()
    assert held.acquire(False) is True
    held.release()


def test_threads_with_timeouts_still_exclude_each_other(new: Any) -> None:
    """Waiters that time out, waiters that wait for good and non-blocking tries, all
    at once: never two holders, and the lock ends free."""
    held = new()
    inside = [0]
    overlaps = [0]
    taken = [0]

    def work(n: int) -> None:
        for i in range(1500):
            kind = (n + i) % 3
            if kind == 0:
                ok = held.acquire()
            elif kind == 1:
                ok = held.acquire(True, 0.0001)
            else:
                ok = held.acquire(False)
            if not ok:
                continue
            inside[0] += 1
            if inside[0] != 1:
                overlaps[0] += 1
            taken[0] += 1
            for _ in range(n % 4):  # sometimes long enough for the GIL to move
                pass
            inside[0] -= 1
            held.release()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the GIL moves often: holders get interrupted
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert overlaps[0] == 0
    assert taken[0] >= 2000  # every thread's blocking acquires at least
    assert not held.locked()
    assert held.acquire(False) is True
    held.release()
