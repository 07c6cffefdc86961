"""Resource ids, and addresses: the two halves of an :class:`~.endpoint.Endpoint`.

Interpreted always: a compiled class cannot derive from ``int``."""

from __future__ import annotations

import enum
from typing import Any, Final

__all__ = [
    "ADAPTER_SHIFT",
    "BASE_BITS",
    "BASE_MASK",
    "LOCAL_BIT",
    "Address",
    "PeerResourceId",
    "ResourceId",
    "ResourceType",
]

Address = tuple[Any, ...] | str
"""A transport address: ``(host, port)`` / ``(host, port, flowinfo, scope_id)`` for IP
transports, as the :mod:`socket` module returns them; a path or another string for
transports that are not IP based."""

# The counter takes the low bits, so that the ids of one transport hash (an int hashes
# to itself) to consecutive dictionary slots; the adapter id and the type sit above it.
BASE_BITS: Final = 47
BASE_MASK: Final = (1 << BASE_BITS) - 1
LOCAL_BIT: Final = 1 << BASE_BITS
ADAPTER_SHIFT: Final = BASE_BITS + 1
_ADAPTER_MASK: Final = (1 << 16) - 1


class ResourceType(enum.Enum):
    """Whether a resource was created by ``listen`` (LOCAL) or is a connection (REMOTE)."""

    LOCAL = "L"
    REMOTE = "R"


class ResourceId(int):
    """Identifies a connection or a listener for the life of the node; never reused.

    It is an ``int`` (cheap to hash and compare) that packs three fields, as in the Rust
    crate: the adapter id of its transport, whether it is a listener (local) or a
    connection (remote), and a per-node counter. ``repr`` shows them as
    ``[adapter.L|R.counter]``. The counter holds the low 47 bits (the ids of a node's
    connections spread over a dictionary's slots), the type the next bit and the
    adapter id the 16 above.
    """

    __slots__ = ()

    @classmethod
    def new(cls, adapter_id: int, resource_type: ResourceType, base_value: int) -> ResourceId:
        """The id packing these three fields. The node makes the ids of its resources;
        this is for tests and tools that need one without a node.

        Raises:
            ValueError: ``adapter_id`` is not in ``[0, 2**16)`` or ``base_value`` not in
                ``[0, 2**47)``.
        """
        if not 0 <= adapter_id <= _ADAPTER_MASK:
            raise ValueError(f"adapter id {adapter_id} is not in [0, 2**16)")
        if not 0 <= base_value <= BASE_MASK:
            raise ValueError(f"base value {base_value} is not in [0, 2**{BASE_BITS})")
        local = LOCAL_BIT if resource_type is ResourceType.LOCAL else 0
        return cls(base_value | local | (adapter_id << ADAPTER_SHIFT))

    @property
    def adapter_id(self) -> int:
        """The id of the transport (adapter) this resource belongs to."""
        return int(self) >> ADAPTER_SHIFT

    @property
    def resource_type(self) -> ResourceType:
        """LOCAL for a listener, REMOTE for a connection."""
        return ResourceType.LOCAL if int(self) & LOCAL_BIT else ResourceType.REMOTE

    @property
    def is_local(self) -> bool:
        """True for a listener (a resource created by ``listen``)."""
        return bool(int(self) & LOCAL_BIT)

    @property
    def is_remote(self) -> bool:
        """True for a connection (created by ``connect`` or accepted by a listener)."""
        return not int(self) & LOCAL_BIT

    @property
    def base_value(self) -> int:
        """The per-node counter part of the id."""
        return int(self) & BASE_MASK

    def __repr__(self) -> str:
        return f"[{self.adapter_id}.{self.resource_type.value}.{self.base_value}]"

    __str__ = __repr__


class PeerResourceId(ResourceId):
    """The resource id of one peer of a packet listener (a UDP listener's sender).

    Such peers have no resource of their own: the id is the listener's (equal to it,
    with the same hash), but it remembers the peer's address, so that
    ``remove(endpoint.resource_id)`` (the recipe to kick a client on every transport)
    forgets that one peer instead of closing the listener for all of them. The
    listener itself is removed with the id ``listen()`` returned.
    """

    peer_addr: Address

    def __new__(cls, listener_id: int, peer_addr: Address) -> PeerResourceId:
        self = super().__new__(cls, listener_id)
        self.peer_addr = peer_addr
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (PeerResourceId, (int(self), self.peer_addr))
