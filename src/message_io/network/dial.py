"""A connection to a host name: resolved off the loop, then its addresses raced.

Theory of operation. ``connect`` to an address that names a host (the adapter's
``lookup`` says so) cannot make a socket yet. The node gives the connection a
:class:`Dial` as its remote, a stand-in with no descriptor, and the dial:

1. resolves the name on a resolver thread (:mod:`.resolver`); the answer comes back to
   the loop thread as a timer of delay 0;
2. starts a connection to the first address (the adapter's ``connect_to``) and polls
   it; if it has not connected after ``attempt_delay`` (RFC 8305's 250 ms), it starts
   the next address too, and so on: several attempts may be in flight;
3. decides each attempt at its first readiness, with the remote's own ``pending``: a
   failure drops it and starts the next address at once; anything else wins the race.
   The others are closed, and the node adopts the winner as the connection's remote
   (it then goes on as any connection: handshake, ``Connected``...). A failure of every
   address, or of the resolution, ends the connection with ``Connected(ep, False)``.

Happy Eyeballs (RFC 8305) is what asyncio (``happy_eyeballs_delay``) and trio
(``open_tcp_stream``) do: a host with a broken IPv6 route, or one dead address among
several, costs a quarter of a second instead of a connect timeout. The connection's
``connect_timeout`` covers all of it, resolution included; removing the connection or
stopping the node closes every attempt. A resolver thread still blocked in
``getaddrinfo`` then finishes in its own time, and its answer is ignored.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, final

from ..errors import FrameError
from .adapter import (
    Buffer,
    ConnectionInfo,
    HostName,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
    format_address,
)
from .resolver import POOL, Addresses, Resolver, resolve

__all__ = ["Dial", "DialHost", "pending_status"]

log = logging.getLogger("message_io")


def pending_status(remote: Remote, readiness: Readiness, what: object) -> PendingStatus:
    """``remote.pending(readiness)``, with the contract's rule for its errors: an
    ``OSError`` or ``FrameError`` is a failed connection (kept as ``remote.failure``),
    anything else a bug of the adapter, logged with its traceback (``what`` names the
    connection), that fails it too."""
    try:
        return remote.pending(readiness)
    except (OSError, FrameError) as exc:
        remote.failure = exc
    except Exception as exc:
        log.exception("pending() of %s failed", what)
        remote.failure = exc
    return PendingStatus.DISCONNECTED


class DialHost(Protocol):
    """What a :class:`Dial` needs of the node (all on the loop thread, except
    :meth:`add_timer`, which any thread may call)."""

    def add_timer(self, delay: float, callback: Callable[[], None]) -> Any:
        """Run ``callback`` on the loop thread after ``delay`` seconds."""

    def cancel_timer(self, timer: Any) -> None:
        """Cancel a timer from :meth:`add_timer` (None: nothing)."""

    def watch(self, fd: int, interest: Readiness, handler: Callable[[Readiness], None]) -> None:
        """Poll ``fd`` for ``interest`` and call ``handler`` when it is ready."""

    def unwatch(self, fd: int) -> None:
        """Stop polling ``fd``."""


@final  # the engine tells a Dial by its exact class (``type(r) is Dial``): no ABC check
class Dial(Remote):
    """The remote of a connection to a host name until one of its addresses connects.

    It has no descriptor (:meth:`fileno` is -1): the node does not poll it, it polls its
    attempts through the :class:`DialHost`. The node sets two callbacks before
    :meth:`start`: :attr:`won` ``(info, status)`` hands over the winner (its descriptor
    still watched: the node takes it over), :attr:`failed` ``(error)`` reports that
    nothing connected. One of them is called, once, on the loop thread, and neither
    after :meth:`close`.
    """

    def __init__(
        self,
        name: HostName,
        connect_to: Callable[[Any, tuple[Any, ...]], ConnectionInfo],
        host: DialHost,
        *,
        resolver: Resolver,
    ) -> None:
        self.name = name
        self._connect_to = connect_to
        self._host = host
        self._resolver = resolver
        self.won: Callable[[ConnectionInfo, PendingStatus], None] = _unset
        self.failed: Callable[[BaseException], None] = _unset
        # Whether the creator holds the endpoint, so events about it may follow.
        self.may_proceed: Callable[[], bool] = _always
        self.active = True  # False once decided or closed
        self.addresses: deque[tuple[Any, tuple[Any, ...]]] = deque()
        self.attempts: dict[int, tuple[tuple[Any, ...], ConnectionInfo]] = {}  # by fd
        self.errors: list[tuple[tuple[Any, ...], BaseException]] = []
        self._timer: Any = None

    # -- the node's calls ----------------------------------------------------------

    def start(self) -> None:
        """Resolve the name on a resolver thread (any thread)."""
        POOL.submit(self._resolve)

    def cancel(self) -> None:
        """Any thread: start nothing more (a resolver job not yet run is skipped); the
        node's :meth:`close` on the loop thread then releases the attempts."""
        self.active = False

    def close(self) -> None:
        """Stop: close every attempt; a late answer of the resolver is ignored."""
        self.active = False
        self._host.cancel_timer(self._timer)
        self._timer = None
        attempts, self.attempts = self.attempts, {}
        for fd, (_sockaddr, info) in attempts.items():
            self._drop(fd, info)

    # -- resolution (resolver thread, then loop thread) ----------------------------

    def _resolve(self) -> None:
        if not self.active:
            return  # removed or timed out while queued behind other names
        name = self.name
        result: Addresses | BaseException
        try:
            result = resolve(self._resolver, name.host, name.port, name.socket_type)
        except Exception as exc:  # noqa: BLE001 - a resolver's failure, reported below
            result = exc
        try:
            self._host.add_timer(0.0, functools.partial(self._on_resolved, result))
        except Exception:  # noqa: BLE001 - the node is shut: nobody waits for it
            log.debug("answer for %s dropped: the node is stopped", name.host)

    def _on_resolved(self, result: Addresses | BaseException) -> None:
        if not self.active:
            return
        if not self.may_proceed():
            # connect() has not handed back the endpoint yet: look again next turn, so
            # that no event about it comes first (a matter of microseconds).
            self._host.add_timer(0.0, functools.partial(self._on_resolved, result))
            return
        if isinstance(result, BaseException):
            log.debug("cannot resolve %s: %s", self.name.host, result)
            self._fail(result)
            return
        log.debug(
            "%s resolved to %s",
            self.name.host,
            ", ".join(format_address(sockaddr) for _family, sockaddr in result),
        )
        self.addresses.extend(result)
        self._next()

    # -- the race (loop thread) ----------------------------------------------------

    def _next(self) -> None:
        """Start the next address; arm the delay before the one after it."""
        host = self._host
        host.cancel_timer(self._timer)
        self._timer = None
        while self.addresses and self.active:
            family, sockaddr = self.addresses.popleft()
            try:
                info = self._connect_to(family, sockaddr)
            except (OSError, ValueError) as exc:  # refused to start; AddressError: a
                self.errors.append((sockaddr, exc))  # source address of the other family
                continue
            except Exception as exc:
                log.exception("connect_to(%s) failed", format_address(sockaddr))
                self.errors.append((sockaddr, exc))
                continue
            fd = info.remote.fileno()
            self.attempts[fd] = (sockaddr, info)
            handler = functools.partial(self._on_ready, fd)
            host.watch(fd, info.remote.pending_interest(), handler)
            delay = self.name.attempt_delay
            if self.addresses and delay is not None:
                self._timer = host.add_timer(delay, self._next)
            return
        if not self.attempts and self.active:
            self._fail(self._error())

    def _on_ready(self, fd: int, readiness: Readiness) -> None:
        entry = self.attempts.get(fd)
        if entry is None or not self.active:
            return
        sockaddr, info = entry
        remote = info.remote
        status = pending_status(remote, readiness, f"an attempt to {format_address(sockaddr)}")
        del self.attempts[fd]
        if status is PendingStatus.DISCONNECTED:
            failure = remote.failure or OSError(errno.ECONNABORTED, "connection failed")
            log.debug("attempt to %s failed: %s", format_address(sockaddr), failure)
            self.errors.append((sockaddr, failure))
            self._drop(fd, info)
            self._next()  # RFC 8305: a failure starts the next attempt at once
            return
        # The first to connect wins; the others are closed (RFC 8305, section 5).
        self.close()
        log.debug("connected to %s (%s)", self.name.host, format_address(sockaddr))
        self.won(info, status)

    def _drop(self, fd: int, info: ConnectionInfo) -> None:
        self._host.unwatch(fd)
        try:
            info.remote.close()
        except Exception:
            log.exception("close() of an attempt failed")

    def _fail(self, error: BaseException) -> None:
        self.close()
        self.failure = error
        self.failed(error)

    def _error(self) -> BaseException:
        """Why no address connected: the one error, or all of them in one."""
        if not self.errors:
            return OSError(errno.EHOSTUNREACH, "no address to connect to")
        if len(self.errors) == 1:
            return self.errors[0][1]
        first = self.errors[0][1]
        code = first.errno if isinstance(first, OSError) else None
        reasons = "; ".join(
            f"{format_address(sockaddr)}: {_reason(exc)}" for sockaddr, exc in self.errors
        )
        error = OSError(code, f"all {len(self.errors)} addresses failed ({reasons})")
        error.__cause__ = self.errors[-1][1]
        return error

    # -- a stand-in remote: the node never reads or writes it ----------------------

    def fileno(self) -> int:
        return -1

    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        raise RuntimeError("a connection still dialing has nothing to read")

    def write(self, data: Buffer) -> int:
        raise RuntimeError("a connection still dialing cannot be written")


def _always() -> bool:
    return True


def _unset(*_args: object) -> None:
    raise RuntimeError("the node did not set Dial.won and Dial.failed")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
