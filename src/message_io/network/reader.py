"""The node's shortcut into a built-in transport's receive path, compiled with the
engine.

A :class:`Reader` does what a connection's ``Remote.receive`` and ``Remote.incomplete``
do, for the node to call directly: compiled code calling compiled code, with no
interpreted frame between the poll and the message. Only the built-in transport classes
themselves hand one out (``Remote._frame_reader``); the node calls the adapter contract's
methods for every other class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["CLOSED", "OUTPUT", "TEXT", "Reader"]

CLOSED: Final = 1
"""Flag of :meth:`Reader.read`'s result: the connection is over (closed by the peer, lost,
or ended by the protocol)."""
OUTPUT: Final = 2
"""Flag of :meth:`Reader.read`'s result: the transport has bytes of its own to send (the
node collects them with ``Remote.take_output``)."""
TEXT: Final = 4
"""Flag of :meth:`Reader.read`'s result: ``frames`` may hold text messages (``str``).
Without it, every item is ``bytes`` and the node makes no test per message."""


class Reader:
    """Reads one connection: the base of the built-in transports' compiled readers."""

    def read(self, frames: list[Any]) -> int:
        """Read what the socket has, appending each message (``bytes``, or ``str`` for a
        text message) to ``frames``; return :data:`CLOSED`, :data:`OUTPUT` and
        :data:`TEXT` or-ed together (0: open, nothing to send, bytes only).

        Called on the loop thread, under the connection's lock if its transport is not
        full-duplex. Raises ``OSError`` or ``FrameError`` when the connection fails (the
        messages before the failure are in ``frames``).
        """
        raise NotImplementedError

    def incomplete(self) -> int:
        """Bytes of the message being received, as ``Remote.incomplete`` says."""
        return 0

    def framers(
        self,
    ) -> tuple[Callable[[int], bytes | None] | None, Callable[[Any], Any] | None]:
        """Compiled stand-ins for the remote's ``header`` and ``frame``, or None for
        each that the node keeps calling on the remote."""
        return None, None
