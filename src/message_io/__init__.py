"""message-io: fast, event-driven networking with two concepts, messages and endpoints.

::

    import message_io
    from message_io import Transport, Accepted, Message, Disconnected

    handler, listener = message_io.split()
    handler.network.listen(Transport.FRAMED_TCP, "0.0.0.0:3042")

    def on_event(event):
        match event:
            case Message(endpoint, data):
                handler.network.send(endpoint, data)

    listener.for_each(on_event)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# First of all: it chooses between the compiled engine and its sources.
from . import _compiled
from . import adapters as _adapters  # registers the built-in transports
from .adapters import (
    FramedTcpConnectConfig,
    FramedTcpListenConfig,
    TcpConnectConfig,
    TcpKeepalive,
    TcpListenConfig,
    UdpConnectConfig,
    UdpListenConfig,
)
from .errors import (
    AddressError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    FrameError,
    FrameTooLarge,
    InvalidVarint,
    ListenError,
    ListenerUsedError,
    LoopThreadError,
    MessageIOError,
    NodeStoppedError,
    TransportRegistryError,
)
from .events import EventSender, TimerId
from .network import (
    Accepted,
    Address,
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    EndpointStatistics,
    Message,
    NetEvent,
    NetworkController,
    PeerResourceId,
    ResourceId,
    ResourceType,
    SendStatus,
    TextMessage,
    Transport,
    register_transport,
)
from .node import NodeEvent, NodeHandler, NodeListener, NodeTask, Signal, split

#: True if the engine runs compiled (the extension modules that a build with a C compiler
#: makes), False if it runs from its Python sources: no compiler at build time, or
#: ``MESSAGE_IO_NO_EXTENSIONS=1`` at build or run time. Both behave the same.
COMPILED: bool = _compiled.ACTIVE

if TYPE_CHECKING:
    from .adapters.unix import UnixConnectConfig, UnixListenConfig
    from .adapters.ws import WsConnectConfig, WsListenConfig

del _adapters

__version__ = "0.1.0"

__all__ = [
    "COMPILED",
    "Accepted",
    "Address",
    "AddressError",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "Connected",
    "Disconnected",
    "Drained",
    "Endpoint",
    "EndpointStatistics",
    "EventSender",
    "FrameError",
    "FrameTooLarge",
    "FramedTcpConnectConfig",
    "FramedTcpListenConfig",
    "InvalidVarint",
    "ListenError",
    "ListenerUsedError",
    "LoopThreadError",
    "Message",
    "MessageIOError",
    "NetEvent",
    "NetworkController",
    "NodeEvent",
    "NodeHandler",
    "NodeListener",
    "NodeStoppedError",
    "NodeTask",
    "PeerResourceId",
    "ResourceId",
    "ResourceType",
    "SendStatus",
    "Signal",
    "TcpConnectConfig",
    "TcpKeepalive",
    "TcpListenConfig",
    "TextMessage",
    "TimerId",
    "Transport",
    "TransportRegistryError",
    "UdpConnectConfig",
    "UdpListenConfig",
    "UnixConnectConfig",
    "UnixListenConfig",
    "WsConnectConfig",
    "WsListenConfig",
    "register_transport",
    "split",
]

# The WebSocket and Unix configs are imported on first use, with their transport's module
# (WebSocket needs ``websockets`` and ``ssl``): ``import message_io`` does not load it.
_LAZY = frozenset({"WsConnectConfig", "WsListenConfig", "UnixConnectConfig", "UnixListenConfig"})


def __getattr__(name: str) -> Any:
    """The WebSocket and Unix config classes, imported on first use.

    Raises:
        AttributeError: no such name in :mod:`message_io`.
    """
    if name in _LAZY:
        from . import adapters  # noqa: PLC0415 - already imported; its __getattr__ loads ws

        value = getattr(adapters, name)
        globals()[name] = value  # later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
