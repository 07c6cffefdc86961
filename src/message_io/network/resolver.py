"""Host names resolved off the loop: ``getaddrinfo`` on a few daemon threads.

The C library's ``getaddrinfo`` blocks, for seconds when a DNS server does not answer,
and cannot be cancelled. So ``connect`` never calls it on the loop thread nor in its
caller's: it hands the name to this pool, as asyncio does with ``run_in_executor``,
and the answer comes back to the loop as a timer of delay 0. A connect whose resolver
hangs is ended by its ``connect_timeout``; the thread finishes the call in its own time.

The addresses found are put in the order RFC 8305 (Happy Eyeballs v2, section 4) asks
for: the resolver's order (RFC 6724 sorting, done by ``getaddrinfo``) with the address
families interleaved, starting with the family of the first address, so that one
broken family costs one attempt delay, not one timeout per address.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

__all__ = ["Resolver", "ResolverPool", "interleave", "ip_addresses", "resolve"]

log = logging.getLogger("message_io")

Resolver: TypeAlias = Callable[..., Sequence[tuple[Any, ...]]]
"""A function with the signature and results of :func:`socket.getaddrinfo`, called as
``resolver(host, port, 0, socket_type)`` on a resolver thread (the default is
``socket.getaddrinfo`` itself; ``split(resolver=...)`` takes another, e.g. one that
caches, or a fake in tests)."""

Addresses: TypeAlias = list[tuple[socket.AddressFamily, tuple[Any, ...]]]

MAX_THREADS: Final = 8
"""Resolver threads at most, for the whole process (asyncio's default executor has 6 on
a 2-core machine); more names wait their turn."""


def interleave(addresses: Addresses) -> Addresses:
    """``addresses`` with their families alternating, the first address's family first
    (RFC 8305, section 4, with a "First Address Family Count" of 1)."""
    if not addresses:
        return []
    first = addresses[0][0]
    preferred = deque(a for a in addresses if a[0] == first)
    others = deque(a for a in addresses if a[0] != first)
    ordered: Addresses = []
    while preferred or others:
        if preferred:
            ordered.append(preferred.popleft())
        if others:
            ordered.append(others.popleft())
    return ordered


def ip_addresses(infos: Sequence[tuple[Any, ...]]) -> Addresses:
    """The IPv4 and IPv6 ``(family, sockaddr)`` pairs of ``getaddrinfo`` results, in
    their order, without duplicates."""
    seen: Addresses = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            entry = (family, tuple(sockaddr))
            if entry not in seen:
                seen.append(entry)
    return seen


def resolve(resolver: Resolver, host: str, port: int, socket_type: socket.SocketKind) -> Addresses:
    """The IPv4 and IPv6 addresses of ``host``, without duplicates, in the order to try
    them. Blocks: call it on a resolver thread.

    Raises:
        OSError: the name does not resolve (``socket.gaierror`` from the resolver), or it
            has no IPv4 or IPv6 address.
    """
    try:
        infos = resolver(host, port, 0, socket_type)
    except UnicodeError as exc:  # a label too long for IDNA: a bad name, said as such
        raise socket.gaierror(socket.EAI_NONAME, f"invalid host name: {exc}") from exc
    seen = ip_addresses(infos)
    if not seen:
        raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
    return interleave(seen)


class ResolverPool:
    """Runs jobs on up to ``max_threads`` daemon threads, started as jobs arrive.

    Daemon threads, unlike a ``ThreadPoolExecutor``'s, never hold up the interpreter's
    exit while a resolver hangs. A job is a function that must not raise (it reports its
    own outcome); an exception escaping one is logged and the thread goes on.
    """

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self._max_threads = max_threads
        self._jobs: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._threads = 0
        self._idle = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_threads)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on a resolver thread, soon. Any thread."""
        with self._lock:
            self._jobs.append(job)
            if len(self._jobs) <= self._idle:  # an idle thread for each waiting job
                self._ready.notify()
                return
            if self._threads >= self._max_threads:
                if self._idle:
                    self._ready.notify()
                return  # a busy thread takes it when done
            self._threads += 1
        thread = threading.Thread(target=self._work, name="message-io-resolver", daemon=True)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                job = self._jobs.popleft()
            try:
                job()
            except Exception:
                log.exception("a name resolution job failed")

    def _forget_threads(self) -> None:
        """After ``fork()``, the child has none of the parent's threads: start afresh."""
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._threads = 0
        self._idle = 0


POOL: Final = ResolverPool()
"""The process's resolver threads, shared by every node."""
