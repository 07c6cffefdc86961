"""Endpoints: who sent a message, and whom to send one to.

Compiled with the engine (see ``setup.py``): the engine reads an endpoint's fields,
compares and hashes endpoints, and makes one per connection, all without a Python
call. The resource id and the address it is made of live in :mod:`.resource_id`
(re-exported here).
"""

from __future__ import annotations

import types
from typing import Any, ClassVar, Final

from .resource_id import (
    ADAPTER_SHIFT,
    BASE_BITS,
    BASE_MASK,
    LOCAL_BIT,
    Address,
    PeerResourceId,
    ResourceId,
    ResourceType,
)

__all__ = [
    "ADAPTER_SHIFT",
    "BASE_BITS",
    "BASE_MASK",
    "LOCAL_BIT",
    "Address",
    "Endpoint",
    "PeerResourceId",
    "ResourceId",
    "ResourceType",
]


class Endpoint:
    """A peer you can send to: a resource id plus the peer's address.

    Connection-oriented transports give every connection its own resource id. For
    packet transports a listener's id is shared by every peer that sends to it, and the
    address tells the peers apart. Endpoints are immutable and hashable, so they make
    good dictionary keys; two endpoints are equal when both fields are.
    """

    __slots__ = ("_addr", "_conn", "_hash", "_listener", "_resource_id")
    # A class variable (a compiled class would take a plain one for an attribute).
    __match_args__: ClassVar[tuple[str, ...]] = ("resource_id", "addr")

    _resource_id: ResourceId
    _addr: Address
    _hash: int
    # The engine's connection while a node has it open (set and cleared by that node's
    # registry, see Registry.add_connection; compiled only): a send finds it without a
    # dictionary lookup. Not part of the value: not compared, hashed, shown or pickled.
    _conn: Any
    # Likewise the engine's listener, for a packet listener's peer that the listener
    # received from (set by the node that made it, see Acceptor._on_listener).
    _listener: Any

    def __init__(self, resource_id: ResourceId, addr: Address) -> None:
        """The endpoint of the resource ``resource_id``, at the peer's address ``addr``.

        Raises:
            TypeError: ``resource_id`` is not a :class:`ResourceId`, or ``addr`` is
                neither a tuple nor a str (or holds something unhashable).
        """
        if not isinstance(resource_id, ResourceId):
            raise TypeError(
                f"Endpoint resource_id must be a ResourceId, not {type(resource_id).__name__}"
            )
        if not isinstance(addr, (tuple, str)):
            raise TypeError(f"Endpoint addr must be a tuple or a str, not {type(addr).__name__}")
        if _COMPILED:
            # Compiled, these are stores into the object: __setattr__ is not asked.
            self._resource_id = resource_id
            self._addr = addr
            self._hash = hash((resource_id, addr))
            self._conn = None
            self._listener = None
        else:
            # Interpreted, the slots' own setters (see below): __setattr__ refuses, and
            # object.__setattr__ would look each name up in the class first.
            _set_resource_id(self, resource_id)
            _set_addr(self, addr)
            _set_hash(self, hash((resource_id, addr)))
            # _conn and _listener stay unset: the interpreted engine does not link
            # endpoints.

    @classmethod
    def from_listener(cls, listener_id: ResourceId | int, addr: Address) -> Endpoint:
        """An endpoint for sending from a listener to ``addr`` (packet transports, e.g. UDP).

        Raises:
            ValueError: ``listener_id`` is not a listener's id (a :class:`ResourceId`
                that ``listen`` returned).
        """
        if not isinstance(listener_id, ResourceId) or not listener_id & LOCAL_BIT:
            raise ValueError(f"{listener_id!r} is not a listener id")
        return cls(listener_id, addr)

    @property
    def resource_id(self) -> ResourceId:
        """The id of the connection; for a packet listener's peer, the listener's id as
        a :class:`PeerResourceId` (equal to it), with which ``remove`` forgets this peer
        and leaves the listener open."""
        resource_id = self._resource_id
        if resource_id & LOCAL_BIT:
            return PeerResourceId(resource_id, self._addr)
        return resource_id

    @property
    def addr(self) -> Address:
        """The peer's address."""
        return self._addr

    def _link(self, conn: Any) -> None:
        """Link this endpoint to the engine's connection ``conn``, or unlink it (None).
        For the compiled registry only: compiled, this is a store into the object
        (``__setattr__`` is not asked); interpreted, ``__setattr__`` refuses it."""
        self._conn = conn

    def _link_listener(self, listener: Any) -> None:
        """Link this endpoint of a packet listener's peer to the engine's ``listener``
        (compiled only, as :meth:`_link`)."""
        self._listener = listener

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Endpoint is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Endpoint is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Endpoint:
            return NotImplemented
        assert isinstance(other, Endpoint)
        return self._resource_id == other._resource_id and self._addr == other._addr

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Endpoint({self._resource_id!r}, {self._addr!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Endpoint, (self._resource_id, self._addr))


def _probe() -> None:
    """A function: a Python function when this module is interpreted."""


_COMPILED: Final[bool] = not isinstance(_probe, types.FunctionType)

# The setters of Endpoint's slots (its __setattr__ refuses): member descriptors
# interpreted, the compiled class's attribute descriptors compiled (unused there).
_set_resource_id = vars(Endpoint)["_resource_id"].__set__
_set_addr = vars(Endpoint)["_addr"].__set__
_set_hash = vars(Endpoint)["_hash"].__set__
