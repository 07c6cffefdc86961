"""The built-in transports, one module each, registered as ``Transport.<NAME>``.

``Transport.UNIX`` (Unix domain sockets, :mod:`.unix`) is registered only where the
platform has ``socket.AF_UNIX``; its config classes exist everywhere.

``Transport.WS`` is registered here too, but its module (:mod:`.ws`, which imports
``websockets`` and ``ssl``) is imported only when it is first used: a ``connect`` or
``listen`` on it, its ``adapter`` or another property that asks the adapter, or the
name ``WsConnectConfig`` / ``WsListenConfig`` looked up in this package or in
:mod:`message_io`. A program that never uses WebSocket never loads that code.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ..network.adapter import Adapter
from ..network.transport import Transport, _register_lazy, register_transport
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
from .unix import UnixAdapter, UnixConnectConfig, UnixListenConfig

if TYPE_CHECKING:
    from .ws import WsConnectConfig, WsListenConfig

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
    "UnixConnectConfig",
    "UnixListenConfig",
    "WsConnectConfig",
    "WsListenConfig",
]

_LAZY_WS = frozenset({"WsConnectConfig", "WsListenConfig"})


def _ws_adapter() -> Adapter:
    from .ws import WsAdapter  # noqa: PLC0415 - imported on first use, see the docstring

    return WsAdapter()


def __getattr__(name: str) -> Any:
    """``WsConnectConfig`` and ``WsListenConfig``, imported from :mod:`.ws` on first use.

    Raises:
        AttributeError: no such name in this package.
    """
    if name in _LAZY_WS:
        from . import ws  # noqa: PLC0415 - imported on first use, see the docstring

        value = getattr(ws, name)
        globals()[name] = value  # later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_WS)


# Ids 0, 1, 2 and 3 as in the Rust crate.
Transport.TCP = register_transport("TCP", TcpAdapter(), id=0)
Transport.FRAMED_TCP = register_transport("FRAMED_TCP", FramedTcpAdapter(), id=1)
Transport.UDP = register_transport("UDP", UdpAdapter(), id=2)
Transport.WS = _register_lazy("WS", _ws_adapter, id=3)
# Ids from 4 to 63 are the Python library's own.
if hasattr(socket, "AF_UNIX"):
    Transport.UNIX = register_transport("UNIX", UnixAdapter(), id=4)
