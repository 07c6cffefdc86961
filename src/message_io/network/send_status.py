"""What a send returns: :class:`SendStatus` (also exported by :mod:`.adapter` and
:mod:`message_io`)."""

from __future__ import annotations

import enum

__all__ = ["SendStatus"]


class SendStatus(enum.Enum):
    """The outcome of ``NetworkController.send``."""

    SENT = "sent"
    """The message was handed to the transport: written to the OS, or queued to be written
    by the loop in order. It is not a proof of delivery."""
    MAX_PACKET_SIZE_EXCEEDED = "max_packet_size_exceeded"
    """The message is larger than the transport (or its config) allows; nothing was sent."""
    RESOURCE_NOT_FOUND = "resource_not_found"
    """No such connection: never existed, removed, disconnected or failed."""
    RESOURCE_NOT_AVAILABLE = "resource_not_available"
    """The connection exists but cannot take the message now: it is not ready yet
    (connect or handshake pending), or, on datagram transports, the OS refused this one
    datagram (network unreachable, broadcast not allowed...; logged at debug level).
    Nothing was sent."""
    QUEUE_FULL = "queue_full"
    """Backpressure: the connection already holds ``send_buffer_limit`` bytes that the peer
    has not taken. Nothing was queued. Send again after the ``Drained(endpoint)`` event,
    or after ``NetworkController.wait_drained(endpoint)`` returns True."""
