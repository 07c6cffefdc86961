"""The accepting side of the driver: listeners, what they accept, and their datagrams.

A stream listener's readiness means connections wait: :meth:`Acceptor._on_listener`
accepts a batch through the transport's ``Local.accept``, makes each one a
:class:`~message_io.network.connection.Connection` and starts its handshake (the
``Accepted`` event follows once it is ready). A packet listener's readiness means
datagrams: each becomes a ``Message`` from an endpoint cached per peer address.

When ``accept()`` fails for want of descriptors or memory, the listener stops being
polled for a moment rather than spin at full speed, and says so once per episode.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from typing import Any, Final

from ..errors import NodeStoppedError
from . import fd_table, new_message
from .connection import Connection, connection_class, describe
from .driver import Driver
from .endpoint import _COMPILED, Endpoint, ResourceType
from .listener import Listener
from .net_event import Drained, Message, MessageDraft
from .poller import READ, WRITE
from .resource import CLOSED, PENDING, READY

__all__ = ["Acceptor"]

log = logging.getLogger("message_io")

# accept() errors that mean "the process is short of resources", not "this peer is bad".
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long accepting pauses when the process is short of resources.
_ACCEPT_PAUSE: Final = 0.1
# Endpoints cached per packet listener (one per peer address) before the cache restarts.
_ENDPOINT_CACHE: Final = 4096

_get_ident: Final = threading.get_ident
# Final: compiled, C statics, not looked up in the module's dictionary per message.
_DRAFT: Final[Any] = MessageDraft
_MESSAGE: Final = Message
# The C build's Message maker (see new_message); without it, the draft above.
_C_MESSAGE: Final = new_message.COMPILED
_REMOTE: Final = ResourceType.REMOTE  # a static: the enum's own lookup costs 150 ns
_new_message: Final[Any] = new_message.new_message


class Acceptor(Driver):
    """A driver that also serves listeners."""

    __slots__ = ()

    def register_listener(self, listener: Listener, *, publish_later: bool = False) -> None:
        """Add ``listener`` to the node and poll it; with ``publish_later``, only once
        ``listener.published`` is set (as :meth:`register_connection`), so that no
        ``Accepted`` or ``Message`` names its id before ``listen()`` has returned it."""
        handler = functools.partial(self._on_listener, listener)
        with self.registry.lock:
            self.registry.add_listener(listener)
            driver = self.driver
            if not publish_later or driver is None or driver == _get_ident():
                fd_table.put(self.handlers, listener.fd, handler)
                self.poller.register(listener.fd, listener.interest())
                return
            listener.published = False
            self.registrations.append((listener, handler))
        self.waker.wake()

    def _on_listener(self, listener: Listener, flags: int) -> None:
        if listener.state is not READY:
            return
        if flags & WRITE:
            for endpoint in listener.flush():
                self.emit(Drained(endpoint))
                if listener.state is not READY or not self.running:
                    return
            if not flags & READ:
                return
        try:
            source = listener.source
            if source is not None:  # the built-in packet transport, compiled
                source.read(listener.datagrams)
            else:
                listener.local.accept(listener.on_remote, listener.on_datagram)
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRNOS:
                self._exhausted(listener, exc)
            else:
                self.peer_log.log(
                    logging.WARNING, "listener %r: accept failed: %s", listener.id, describe(exc)
                )
        except Exception:
            log.exception("accept() of listener %r failed", listener.id)
        else:
            if listener.exhausted_since:
                log.warning(
                    "listener %r: accepting again after %.1f s short of resources "
                    "(%d failed attempts)",
                    listener.id,
                    time.monotonic() - listener.exhausted_since,
                    listener.failures,
                )
                listener.exhausted_since = 0.0
                listener.failures = 0
        accepted = listener.accepted
        if accepted:
            listener.accepted = []
        datagrams = listener.datagrams
        if datagrams:
            listener.datagrams = []
        for index, (remote, addr) in enumerate(accepted):
            if listener.state is not READY or not self.running:
                # The callback removed the listener (or stopped the node) while handling
                # an earlier Accepted of this batch: the rest are closed, not announced.
                for late, _addr in accepted[index:]:
                    late.close()
                return
            resource_id = self.registry.new_id(listener.adapter_id, _REMOTE)
            endpoint = Endpoint(resource_id, addr)
            conn = connection_class(remote)(
                self,
                resource_id,
                endpoint,
                remote,
                limit=listener.limit,
                listener_id=listener.id,
                limits=listener.limits,
            )
            try:
                self.register_connection(conn, poll=False)  # on_pending polls it
            except (OSError, NodeStoppedError) as exc:
                log.warning("could not register accepted %s: %s", conn.endpoint, exc)
                remote.close()
                continue
            try:
                self.on_pending(conn, WRITE)
            except OSError as exc:  # the poller refused it (out of memory or watches)
                log.warning("could not poll accepted %s: %s", conn.endpoint, exc)
                self.fail_pending(conn, exc)
                continue
            if conn.state is PENDING and listener.handshake_timeout is not None:
                self._handshake_deadline(conn, listener.handshake_timeout)
        if datagrams:
            emit = self.emit
            cache = listener.endpoint_cache
            for addr, data in datagrams:
                peer = cache.get(addr)
                if peer is None:
                    if len(cache) > _ENDPOINT_CACHE:
                        listener.forget_peers()
                    peer = cache[addr] = Endpoint(listener.id, addr)
                    if _COMPILED:
                        peer._link_listener(listener)  # see Registry.send
                if _C_MESSAGE:
                    emit(_new_message(peer, data))
                else:
                    message = _DRAFT()  # Message(peer, data), made from a draft
                    message.endpoint = peer
                    message.data = data
                    message.__class__ = _MESSAGE
                    emit(message)
                if listener.state is not READY or not self.running:
                    return

    def _handshake_deadline(self, conn: Connection, timeout: float) -> None:
        reason = TimeoutError(f"handshake not done within {timeout} s")
        conn.deadline_timer = self.timers.add(timeout, lambda: self.fail_pending(conn, reason))

    def _exhausted(self, listener: Listener, exc: OSError) -> None:
        """accept() is short of fds or memory: one line per episode, then pause."""
        listener.failures += 1
        if not listener.exhausted_since:
            listener.exhausted_since = time.monotonic()
            log.warning(
                "listener %r: accept failed: %s; pausing accepts for %g s at a time until it "
                "recovers (no more lines until then)",
                listener.id,
                describe(exc),
                _ACCEPT_PAUSE,
            )
        else:
            log.debug("listener %r: accept failed again: %s", listener.id, describe(exc))
        self._pause_listener(listener)

    def _pause_listener(self, listener: Listener) -> None:
        """Out of file descriptors or memory: stop accepting for a moment.

        The pending connection stays readable, so a level-triggered loop would otherwise
        retry (and log) at full speed until the shortage ends.
        """
        fd = listener.fd
        self.poller.modify(fd, 0)

        def resume() -> None:
            if listener.fd == fd and listener.state is READY:
                self.poller.modify(fd, listener.interest())

        self.timers.add(_ACCEPT_PAUSE, resume)

    def close_listener(self, listener: Listener) -> None:
        if listener.fd < 0:
            return
        fd = listener.fd
        with listener.lock:
            listener.fd = -1
            listener.move(CLOSED)
            listener.chunks = ()  # frees what was queued
            listener.queued = 0
            listener.notify()
        listener.forget_peers()
        self.poller.unregister(fd)
        fd_table.take(self.handlers, fd)
        self.registry.closed(fd)
        try:
            listener.local.close()
        except Exception:
            log.exception("close() of listener %r failed", listener.id)
