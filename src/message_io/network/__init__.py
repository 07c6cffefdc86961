"""Network: endpoints, resource ids, transports, the controller and the adapter contract."""

from __future__ import annotations

from .adapter import SendStatus
from .controller import EndpointStatistics, NetworkController
from .endpoint import Address, Endpoint, PeerResourceId, ResourceId, ResourceType
from .net_event import (
    Accepted,
    Connected,
    Disconnected,
    Drained,
    Message,
    NetEvent,
    TextMessage,
)
from .transport import Transport, register_transport

__all__ = [
    "Accepted",
    "Address",
    "Connected",
    "Disconnected",
    "Drained",
    "Endpoint",
    "EndpointStatistics",
    "Message",
    "NetEvent",
    "NetworkController",
    "PeerResourceId",
    "ResourceId",
    "ResourceType",
    "SendStatus",
    "TextMessage",
    "Transport",
    "register_transport",
]
