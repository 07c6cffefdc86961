"""Transports: the registry of adapters, built-in and user-made.

``Transport`` is a small value object rather than a closed ``enum``: a transport written
outside the library is registered at run time with :func:`register_transport` and then
used exactly like the built-in ones (the Rust crate needs its source edited for that).

A transport may be registered with a *factory* instead of an adapter
(:func:`_register_lazy`): its module is imported the first time the adapter is needed
(``connect``, ``listen``, or one of the properties that ask the adapter). That is how
``Transport.WS`` exists without ``import message_io`` loading ``websockets`` and ``ssl``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

from ..errors import TransportRegistryError
from .adapter import Adapter

__all__ = ["Transport", "register_transport"]

_MAX_ADAPTER_ID = 0xFFFF


class Transport:
    """A registered transport. Compare with ``is`` or ``==``; usable as a dict key.

    Built-in transports are class attributes: ``Transport.TCP``, ``Transport.FRAMED_TCP``,
    ``Transport.UDP``, ``Transport.WS``, and ``Transport.UNIX`` where the platform has
    Unix domain sockets.
    A registered one is also set as an attribute under its name
    (``Transport.QUIC`` after ``register_transport("QUIC", ...)``).
    """

    __slots__ = ("_adapter", "_factory", "_id", "_name")

    TCP: ClassVar[Transport]
    FRAMED_TCP: ClassVar[Transport]
    UDP: ClassVar[Transport]
    WS: ClassVar[Transport]
    UNIX: ClassVar[Transport]

    _registry: ClassVar[dict[int, Transport]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        name: str,
        id: int,  # noqa: A002
        adapter: Adapter | None,
        factory: Callable[[], Adapter] | None = None,
    ) -> None:
        self._name = name
        self._id = id
        self._adapter = adapter
        self._factory = factory

    @property
    def name(self) -> str:
        """The transport's name, e.g. ``"FRAMED_TCP"``."""
        return self._name

    @property
    def id(self) -> int:
        """The adapter id, stored in every :class:`ResourceId` of this transport."""
        return self._id

    @property
    def adapter(self) -> Adapter:
        """The adapter implementing this transport.

        For a transport registered with a factory, the first access calls it (importing
        the transport's module), once, even if several threads ask at the same time.

        Raises:
            ImportError: the transport's module, or a package it needs, cannot be
                imported (asked again on the next access).
        """
        adapter = self._adapter
        if adapter is None:
            adapter = self._load()
        return adapter

    def _load(self) -> Adapter:
        with Transport._load_lock:
            adapter = self._adapter
            if adapter is None:
                assert self._factory is not None
                adapter = self._factory()
                if not isinstance(adapter, Adapter):
                    kind = type(adapter).__name__
                    raise TypeError(f"the factory of {self!r} must return an Adapter, not {kind}")
                self._adapter = adapter
                self._factory = None
        return adapter

    @property
    def is_connection_oriented(self) -> bool:
        """True if connections are accepted and report ``Disconnected`` (TCP, WebSocket)."""
        return self.adapter.connection_oriented

    @property
    def is_packet_based(self) -> bool:
        """True if each send arrives as exactly one ``Message`` (not a byte stream)."""
        return self.adapter.packet_based

    @property
    def max_message_size(self) -> int | None:
        """The default largest message, in bytes; ``None`` means unlimited."""
        return self.adapter.max_message_size

    @classmethod
    def from_id(cls, transport_id: int) -> Transport:
        """The transport registered under ``transport_id``.

        Raises:
            TypeError: ``transport_id`` is not an ``int``.
            ValueError: no transport has that id.
        """
        if not isinstance(transport_id, int) or isinstance(transport_id, bool):
            kind = type(transport_id).__name__
            raise TypeError(f"Transport.from_id() transport_id must be an int, not {kind}")
        try:
            return cls._registry[transport_id]
        except KeyError:
            raise ValueError(f"no transport with id {transport_id}") from None

    @classmethod
    def all(cls) -> Iterator[Transport]:
        """Every registered transport, by id."""
        return iter(sorted(cls._registry.values(), key=lambda t: t.id))

    def __repr__(self) -> str:
        return f"Transport.{self._name}"

    def __reduce__(self) -> tuple[object, ...]:
        return (Transport.from_id, (self._id,))


def register_transport(name: str, adapter: Adapter, *, id: int | None = None) -> Transport:  # noqa: A002
    """Register a transport so every node can ``connect``/``listen`` with it.

    Args:
        name: An identifier, conventionally upper case (``"QUIC"``). It becomes an
            attribute of :class:`Transport`.
        adapter: The :class:`~message_io.network.adapter.Adapter` implementing it.
        id: The adapter id (0-65535); by default the lowest free id from 64 up (ids
            below 64 are kept for the library's own transports).

    Returns:
        The new :class:`Transport`.

    Raises:
        TransportRegistryError: the name or the id is already taken.
        TypeError: ``name`` is not a ``str``, ``adapter`` not an :class:`Adapter`, or
            ``id`` not an ``int``.
        ValueError: ``name`` is not an identifier, or ``id`` is out of range.
    """
    if not isinstance(adapter, Adapter):
        raise TypeError(f"adapter must be an Adapter, not {type(adapter).__name__}")
    return _register(name, adapter, None, id)


def _register_lazy(name: str, factory: Callable[[], Adapter], *, id: int) -> Transport:  # noqa: A002
    """Register a transport whose adapter ``factory()`` makes on first use.

    For the library's own transports whose modules are costly to import (``WS`` needs
    ``websockets`` and ``ssl``): the import happens on the first ``connect``/``listen``
    or the first access to :attr:`Transport.adapter`. Raises as :func:`register_transport`.
    """
    return _register(name, None, factory, id)


def _register(
    name: str,
    adapter: Adapter | None,
    factory: Callable[[], Adapter] | None,
    id: int | None,  # noqa: A002
) -> Transport:
    if not isinstance(name, str):
        raise TypeError(f"register_transport() name must be a str, not {type(name).__name__}")
    if id is not None and (not isinstance(id, int) or isinstance(id, bool)):
        raise TypeError(f"register_transport() id must be an int, not {type(id).__name__}")
    if not name.isidentifier():
        raise ValueError(f"transport name must be an identifier, not {name!r}")
    with Transport._lock:
        taken = Transport._registry
        if any(t.name == name for t in taken.values()) or name in vars(Transport):
            raise TransportRegistryError(f"a transport named {name!r} is already registered")
        if id is None:
            id = next(i for i in range(64, _MAX_ADAPTER_ID + 1) if i not in taken)  # noqa: A001
        elif not 0 <= id <= _MAX_ADAPTER_ID:
            raise ValueError(f"transport id must be in 0..{_MAX_ADAPTER_ID}, not {id}")
        elif id in taken:
            raise TransportRegistryError(f"transport id {id} is taken by {taken[id]!r}")
        transport = Transport(name, id, adapter, factory)
        taken[id] = transport
        setattr(Transport, name, transport)
    return transport
