"""Making the :class:`~message_io.Message` of each message received.

This file is what runs without the compiled engine; a build with a C compiler puts
``new_message.c`` beside it, which allocates the object and fills its two slots
directly: about a tenth of the cost of the draft below, which already avoids the
dataclass's ``__init__`` (see :class:`~message_io.network.net_event.MessageDraft`).
:data:`COMPILED` tells which one runs.

The engine's callers branch on :data:`COMPILED` and make the draft themselves when it
is False, so the interpreted engine pays no extra call.
"""

from __future__ import annotations

from typing import Any

from .endpoint import Endpoint
from .net_event import Message, MessageDraft

__all__ = ["COMPILED", "new_message"]

# Not Final: the compiled engine would fold this file's value into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""


def new_message(endpoint: Endpoint, data: bytes, /) -> Message:
    """``Message(endpoint, data)``, made without its ``__init__``: the engine's own data,
    already checked."""
    message: Any = MessageDraft()
    message.endpoint = endpoint
    message.data = data
    message.__class__ = Message
    return message  # type: ignore[no-any-return]
