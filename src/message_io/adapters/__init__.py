"""The built-in transports, one module each, registered as ``Transport.<NAME>``.

``Transport.WS`` and ``Transport.UNIX`` are registered here too, but their modules
(:mod:`.ws`, which imports ``websockets`` and ``ssl``, and :mod:`.unix`) are imported
only when first used: a ``connect`` or ``listen`` on the transport, its ``adapter`` or
another property that asks the adapter, or the name of one of its config classes
(``WsConnectConfig``, ``UnixListenConfig``...) looked up in this package or in
:mod:`message_io`. A program that never uses them never loads that code.
``Transport.UNIX`` is registered only where the platform has ``socket.AF_UNIX``; its
config classes exist everywhere.
"""

from __future__ import annotations

import importlib
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

if TYPE_CHECKING:
    from .unix import UnixConnectConfig, UnixListenConfig
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

# Configs of transports whose module is imported on first use, by the module's name.
_LAZY = {
    "WsConnectConfig": "ws",
    "WsListenConfig": "ws",
    "UnixConnectConfig": "unix",
    "UnixListenConfig": "unix",
}


def _ws_adapter() -> Adapter:
    from .ws import WsAdapter  # noqa: PLC0415 - imported on first use, see the docstring

    return WsAdapter()


def _unix_adapter() -> Adapter:
    from .unix import UnixAdapter  # noqa: PLC0415 - imported on first use, see the docstring

    return UnixAdapter()


def __getattr__(name: str) -> Any:
    """The configs of WebSocket and Unix sockets, imported from :mod:`.ws` or
    :mod:`.unix` on first use.

    Raises:
        AttributeError: no such name in this package.
    """
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value  # later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# Ids 0, 1, 2 and 3 as in the Rust crate.
Transport.TCP = register_transport("TCP", TcpAdapter(), id=0)
Transport.FRAMED_TCP = register_transport("FRAMED_TCP", FramedTcpAdapter(), id=1)
Transport.UDP = register_transport("UDP", UdpAdapter(), id=2)
Transport.WS = _register_lazy("WS", _ws_adapter, id=3)
# Ids from 4 to 63 are the Python library's own.
if hasattr(socket, "AF_UNIX"):
    Transport.UNIX = _register_lazy("UNIX", _unix_adapter, id=4)
