"""The exceptions message-io raises.

Every exception the library raises on purpose derives from :class:`MessageIOError`, and
also from the builtin that best describes it, so ``except OSError`` or ``except
ValueError`` keep working::

    MessageIOError
    ├── AddressError          (ValueError)      an address that cannot be parsed or resolved
    ├── ConfigError           (TypeError)       a config of the wrong type for the transport
    ├── ListenError           (OSError)         binding or listening failed; names the address
    ├── ConnectError          (ConnectionError) a connect failed; names the address
    │   └── ConnectTimeout    (TimeoutError)    connect_sync() gave up waiting
    ├── NodeStoppedError      (RuntimeError)    the node was stopped; it cannot be used again
    ├── LoopThreadError       (RuntimeError)    a blocking call made from the loop thread
    ├── ListenerUsedError     (RuntimeError)    the NodeListener is already being consumed
    ├── TransportRegistryError(ValueError)      registering a transport name or id twice
    └── FrameError            (ValueError)      bytes that break a transport's framing
        ├── InvalidVarint                       a length prefix longer than 10 bytes
        └── FrameTooLarge                       a length prefix over the configured limit

Network *outcomes* are never exceptions: they are values (:class:`~message_io.SendStatus`)
or events (``Connected(endpoint, False)``, ``Disconnected``). A peer's bad bytes raise
:class:`FrameError` only inside a codec; the node turns it into a disconnection of that peer.
"""

from __future__ import annotations

import socket

__all__ = [
    "AddressError",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "FrameError",
    "FrameTooLarge",
    "InvalidVarint",
    "ListenError",
    "ListenerUsedError",
    "LoopThreadError",
    "MessageIOError",
    "NodeStoppedError",
    "TransportRegistryError",
]


class MessageIOError(Exception):
    """The root of every exception raised by message-io."""


class AddressError(MessageIOError, ValueError):
    """An address could not be parsed or resolved. The message names the address."""


class ConfigError(MessageIOError, TypeError):
    """A config object does not belong to the transport it was given to."""


class _AddressedOSError(OSError):
    """An OSError whose ``filename`` is the address it concerns.

    Built as ``Error(errno, strerror, address)``: ``errno`` and ``strerror`` stay the OS's,
    and ``str()`` reads ``"cannot <verb> <address>: <strerror> (errno N)"``.
    """

    _verb = "use"

    def __str__(self) -> str:
        if self.filename is None:
            return super().__str__()
        text = f"cannot {self._verb} {self.filename}: {self.strerror or 'failed'}"
        return f"{text} (errno {self.errno})" if self.errno is not None else text


class ListenError(MessageIOError, _AddressedOSError):
    """Binding or listening failed (address in use, permission denied...).

    ``errno`` and ``strerror`` are those of the underlying :class:`OSError`, which is also
    chained as ``__cause__``; ``filename`` holds the address, and the message names it.
    """

    _verb = "listen on"


class ConnectError(MessageIOError, ConnectionError, _AddressedOSError):
    """A connection could not be started or was not established.

    Raised by ``connect()`` when the OS refuses to even start the connection, and by
    ``connect_sync()`` when the outcome is a failure. ``errno``/``strerror`` are the
    OS's when it gave a reason; ``filename`` holds the address, and the message names it.
    """

    _verb = "connect to"


class ConnectTimeout(ConnectError, TimeoutError):
    """``connect_sync()`` did not see the outcome within its timeout.

    The connection attempt is abandoned and its resource removed.
    """


def connect_error(failure: BaseException | None, addr: str) -> ConnectError:
    """The :class:`ConnectError` (``ConnectTimeout`` for a timeout) that tells why a
    connection to ``addr`` failed, from the transport's ``failure`` (chained as its
    ``__cause__``)."""
    errno = failure.errno if isinstance(failure, OSError) else None
    if isinstance(failure, socket.gaierror):
        errno = None  # an EAI_* code of getaddrinfo's, not an errno: strerror tells
    reason = failure.strerror if isinstance(failure, OSError) else None
    reason = reason or str(failure or "") or (type(failure).__name__ if failure else "failed")
    kind = ConnectTimeout if isinstance(failure, TimeoutError) else ConnectError
    error = kind(errno, reason, addr)
    error.__cause__ = failure
    return error


class NodeStoppedError(MessageIOError, RuntimeError):
    """The node has been stopped; stopping is final, create a new node with ``split()``."""


class LoopThreadError(MessageIOError, RuntimeError):
    """A call that waits for the event loop was made from the event loop's own thread.

    It would deadlock: the loop cannot make progress while its thread is waiting.
    """


class ListenerUsedError(MessageIOError, RuntimeError):
    """A :class:`~message_io.NodeListener` can be consumed by only one loop at a time."""


class TransportRegistryError(MessageIOError, ValueError):
    """A transport name or id is already registered."""


class FrameError(MessageIOError, ValueError):
    """Bytes received from a peer break the transport's framing."""


class InvalidVarint(FrameError):
    """A varint length prefix ran past 10 bytes or past 64 bits."""


class FrameTooLarge(FrameError):
    """A length prefix announced a frame larger than the configured maximum.

    Raised from the header alone, before any payload is buffered.
    """
