"""The events a node delivers about the network.

They are frozen, slotted dataclasses whose positional fields follow the Rust crate's
``NetEvent`` variants, so a ``match`` reads like the Rust::

    match event:
        case Connected(endpoint, established): ...
        case Accepted(endpoint, listener_id): ...
        case Message(endpoint, data): ...   # also matches a TextMessage
        case Disconnected(endpoint): ...
        case Drained(endpoint): ...

Their reprs show sizes, never payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConnectError
from .endpoint import Endpoint, ResourceId

__all__ = [
    "Accepted",
    "Connected",
    "Disconnected",
    "Drained",
    "Message",
    "NetEvent",
    "TextMessage",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """The outcome of a ``connect``: ``established`` is False if it failed.

    After a failure the resource is already gone (``is_ready`` returns None) and
    ``error`` says why: a :class:`~message_io.errors.ConnectError` (a
    ``ConnectTimeout`` when ``connect_timeout`` passed) with the OS's ``errno`` when it
    gave one, the address, and the transport's own exception as ``__cause__``. It is
    ``None`` on success. ``match`` patterns name two fields, as in the Rust crate:
    ``case Connected(endpoint, established)``; ``error`` is not compared.
    """

    endpoint: Endpoint
    established: bool
    error: ConnectError | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A listener accepted a new connection, ready to use (handshake done)."""

    endpoint: Endpoint
    listener_id: ResourceId


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """A message from ``endpoint``: one whole message on packet-based transports, a chunk
    of the stream (what one read returned) on ``Transport.TCP``."""

    endpoint: Endpoint
    data: bytes

    def __repr__(self) -> str:
        return f"Message({self.endpoint!r}, data=<{len(self.data)} bytes>)"


class MessageDraft(Message):
    """A ``Message`` being made by the engine: a subclass that adds no slot and takes
    back ``object``'s own ``__init__`` and ``__setattr__`` (C slots, no Python call). The
    engine sets both fields, then makes the object a ``Message`` by assigning its
    ``__class__``: no argument tuple is built on the way, and CPython accepts the
    assignment at once, a subclass that adds nothing being the same layout (two sibling
    classes would have their ``__slots__`` compared on every message). Never seen
    outside the engine."""

    __slots__ = ()
    __init__ = object.__init__
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


def _check_draft() -> None:
    """Fail at import, not at the first message, if the two layouts ever differ."""
    draft: Any = MessageDraft()
    draft.endpoint = draft.data = None
    draft.__class__ = Message


_check_draft()


@dataclass(frozen=True, slots=True, repr=False)
class TextMessage(Message):
    """A text message (a WebSocket text frame): a :class:`Message` whose ``data`` is the
    UTF-8 encoding of ``text``.

    Code that handles ``Message`` receives text messages too, as bytes; test
    ``isinstance(event, TextMessage)`` (or ``case TextMessage(endpoint, data, text)``
    before ``case Message(...)``) to tell them apart. Send text with
    ``send(endpoint, "a str")``.
    """

    text: str

    def __repr__(self) -> str:
        return f"TextMessage({self.endpoint!r}, text=<{len(self.text)} characters>)"


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost or closed by the peer; its resource is already gone.

    Not produced for connections you ``remove`` yourself, nor for packet transports.
    """

    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Drained:
    """Every byte queued for ``endpoint`` has been handed to the OS.

    Produced once after a ``send`` to that endpoint returned ``SendStatus.QUEUE_FULL``:
    it is the signal to resume sending.
    """

    endpoint: Endpoint


NetEvent = Connected | Accepted | Message | TextMessage | Disconnected | Drained
"""Every network event; ``match`` on it, ``assert_never`` proves the match exhaustive."""
