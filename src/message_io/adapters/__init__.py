"""The built-in transports, one module each, registered as ``Transport.<NAME>``."""

from __future__ import annotations

from ..network.transport import Transport, register_transport
from .framed_tcp import FramedTcpAdapter, FramedTcpConnectConfig, FramedTcpListenConfig
from .tcp import TcpAdapter, TcpConnectConfig, TcpKeepalive, TcpListenConfig

__all__ = [
    "FramedTcpConnectConfig",
    "FramedTcpListenConfig",
    "TcpConnectConfig",
    "TcpKeepalive",
    "TcpListenConfig",
]

# Ids 0 and 1 as in the Rust crate.
Transport.TCP = register_transport("TCP", TcpAdapter(), id=0)
Transport.FRAMED_TCP = register_transport("FRAMED_TCP", FramedTcpAdapter(), id=1)
