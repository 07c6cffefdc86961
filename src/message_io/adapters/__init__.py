"""The built-in transports, one module each, registered as ``Transport.<NAME>``."""

from __future__ import annotations

from ..network.transport import Transport, register_transport
from .framed_tcp import FramedTcpAdapter, FramedTcpConnectConfig, FramedTcpListenConfig
from .tcp import TcpAdapter, TcpConnectConfig, TcpKeepalive, TcpListenConfig
from .udp import (
    MAX_INTERNET_PAYLOAD_LEN,
    MAX_LOCAL_PAYLOAD_LEN,
    MAX_LOCAL_PAYLOAD_LEN_V6,
    UdpAdapter,
    UdpConnectConfig,
    UdpListenConfig,
)
from .ws import WsAdapter, WsConnectConfig, WsListenConfig

__all__ = [
    "MAX_INTERNET_PAYLOAD_LEN",
    "MAX_LOCAL_PAYLOAD_LEN",
    "MAX_LOCAL_PAYLOAD_LEN_V6",
    "FramedTcpConnectConfig",
    "FramedTcpListenConfig",
    "TcpConnectConfig",
    "TcpKeepalive",
    "TcpListenConfig",
    "UdpConnectConfig",
    "UdpListenConfig",
    "WsConnectConfig",
    "WsListenConfig",
]

# Ids 0, 1, 2 and 3 as in the Rust crate.
Transport.TCP = register_transport("TCP", TcpAdapter(), id=0)
Transport.FRAMED_TCP = register_transport("FRAMED_TCP", FramedTcpAdapter(), id=1)
Transport.UDP = register_transport("UDP", UdpAdapter(), id=2)
Transport.WS = register_transport("WS", WsAdapter(), id=3)
