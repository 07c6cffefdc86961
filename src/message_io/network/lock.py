"""The lock of each connection: ``threading.Lock``, or with the compiled engine
:class:`GilLock`, which the compiled engine calls without a Python call.

:data:`Lock` is what the engine makes. Interpreted, it is ``threading.Lock`` itself: a
Python class could only be slower. Compiled (mypyc, see ``setup.py``), it is
:class:`GilLock`: ``threading.Lock().acquire()`` parses its arguments and takes a
semaphore even when nobody else wants the lock, twice per message sent, behind a
generic call; a compiled caller calls :class:`GilLock`'s methods directly, and taking a
free lock is two field accesses. :data:`COMPILED` tells which one runs.
"""

from __future__ import annotations

import _thread
import math
import sysconfig
import threading
import types
from typing import Any, Final, cast

__all__ = ["COMPILED", "GilLock", "Lock"]


class GilLock:
    """A lock used as ``threading.Lock`` is, whose state only a thread holding the GIL
    reads or writes: the compiled engine's lock (see :data:`COMPILED`).

    Compiled, nothing between reading a field and writing it can let another thread
    run (compiled code gives the GIL up only in a call that says so, as a blocking
    wait), so the two fields need no other guard:

    - ``_held``: the lock is held (or handed to a waiter that has not woken yet);
    - ``_waiters``: threads waiting for it, not counting those a token was passed to.

    A thread that must wait counts itself in ``_waiters`` and sleeps, the GIL released,
    on a semaphore (an ``_thread`` lock used as one, made the first time anybody waits:
    an idle connection never has one). :meth:`release` with waiters leaves the lock
    held and posts one token: the waiter that takes it owns the lock (no newcomer can
    barge in between). A waiter that times out or is interrupted takes the GIL back,
    then either finds a token after all (and owns the lock) or uncounts itself.

    It is used as ``threading.Lock`` is: ``acquire(blocking=True, timeout=-1)``,
    ``release()`` (``RuntimeError`` if unlocked), ``locked()``, and the context
    manager; so ``threading.Condition`` works on it unchanged. One difference: a thread
    must not release a lock another thread holds while threads wait for it
    (``threading.Lock`` allows that; the engine and ``threading.Condition`` never do
    it). Interpreted, bytecode may switch threads between two field accesses: then
    this class is not what :data:`Lock` names.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiters = 0
        self._handoff: _thread.LockType | None = None  # made by the first wait

    def acquire(self, blocking: object = True, timeout: float = -1) -> bool:
        """Take the lock: True once taken; False if not ``blocking`` (or after
        ``timeout`` seconds, unless negative) it is held by another.

        Raises:
            ValueError: a timeout with ``blocking=False``, or a negative one but -1.
            OverflowError: ``timeout`` is larger than ``threading.TIMEOUT_MAX``.
        """
        if timeout != -1:
            _check(blocking, timeout)
        if not self._held:
            self._held = True
            return True
        if not blocking or timeout == 0:
            return False
        return self._wait(timeout)

    def _wait(self, timeout: float) -> bool:
        """Wait for the lock to be handed over, the GIL released (see the class)."""
        handoff = self._handoff
        if handoff is None:
            handoff = self._handoff = _thread.allocate_lock()
            handoff.acquire()  # no token yet
        self._waiters += 1
        try:
            # Signals run their handlers inside and the wait goes on; one that raises
            # ends it here.
            if handoff.acquire(True, timeout):
                return True  # the releaser uncounted this thread
        except BaseException:
            if handoff.acquire(False):  # handed over meanwhile: pass it on
                self._hand_on()
            else:
                self._waiters -= 1
            raise
        if handoff.acquire(False):  # time is up: a last look, a token may have come
            return True
        self._waiters -= 1
        return False

    def _hand_on(self) -> None:
        """Release: to one waiter (posting one token; the lock stays held), or free."""
        handoff = self._handoff
        if handoff is not None and self._waiters:
            self._waiters -= 1
            handoff.release()
        else:
            self._held = False

    def release(self) -> None:
        """Release the lock: to a waiting thread, if any.

        Raises:
            RuntimeError: it is not held.
        """
        if not self._held:
            raise RuntimeError("release unlocked lock")
        self._hand_on()

    def locked(self) -> bool:
        """True while it is held."""
        return self._held

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "locked" if self._held else "unlocked"
        return f"<{state} message_io lock object at {id(self):#x}>"


def _check(blocking: object, timeout: float) -> None:
    """Refuse what ``threading.Lock.acquire`` refuses.

    Raises:
        ValueError, OverflowError: as :meth:`GilLock.acquire`.
    """
    if math.isnan(timeout):
        raise ValueError("Invalid value NaN (not a number)")
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    if timeout > threading.TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")


def _probe() -> None:
    """A function: a Python function when this module is interpreted."""


COMPILED: Final[bool] = not isinstance(_probe, types.FunctionType) and not (
    sysconfig.get_config_var("Py_GIL_DISABLED")
)
"""True if :data:`Lock` is :class:`GilLock`: this module is compiled, and the GIL is there
to guard its fields."""

# Typed as GilLock: compiled, the engine calls its methods directly. Interpreted,
# nothing checks the type, and threading.Lock's methods are the same.
Lock: Final[type[GilLock]] = GilLock if COMPILED else cast(Any, threading.Lock)
"""The lock the engine makes: :class:`GilLock` if :data:`COMPILED`, else
``threading.Lock``."""
