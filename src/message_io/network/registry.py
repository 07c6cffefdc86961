"""The node's resources by id and by descriptor, and the ids it hands out.

Any thread may look a resource up (``connections.get`` is one dict lookup, which the GIL
makes atomic); adding and removing happen under :attr:`Registry.lock`, which also
orders them against the node's stop: once :meth:`Registry.refuse` has run, nothing new
is added, so nothing is left open behind the shutdown.
"""

from __future__ import annotations

import itertools
import threading

from ..errors import NodeStoppedError
from .connection import Connection
from .dial import Dial
from .endpoint import ResourceId, ResourceType
from .listener import Listener

__all__ = ["Registry"]


class Registry:
    """Ids, connections and listeners of one node.

    Attributes:
        connections: Open (or opening) connections by id. Read by ``send`` on any
            thread without the lock.
        listeners: Open listeners by id.
        resources: Connections and listeners by descriptor, until closed (a connection
            still dialing a host name has none yet).
        lock: Held to add or remove (re-entrant).
    """

    __slots__ = ("_counters", "_open", "connections", "listeners", "lock", "resources")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.connections: dict[ResourceId, Connection] = {}
        self.listeners: dict[ResourceId, Listener] = {}
        self.resources: dict[int, Connection | Listener] = {}
        self._counters: dict[tuple[int, ResourceType], itertools.count[int]] = {}
        self._open = True

    def new_id(self, adapter_id: int, resource_type: ResourceType) -> ResourceId:
        """A fresh id for a resource of the transport ``adapter_id``. Any thread."""
        key = (adapter_id, resource_type)
        with self.lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = itertools.count()
            return ResourceId.new(adapter_id, resource_type, next(counter))

    def add_connection(self, conn: Connection) -> None:
        """Add ``conn``; its descriptor too unless it is still dialing. Holds the lock.

        Raises:
            NodeStoppedError: the node is stopped.
        """
        self._check_open()
        self.connections[conn.id] = conn
        if not isinstance(conn.remote, Dial):
            self.resources[conn.fd] = conn

    def add_listener(self, listener: Listener) -> None:
        """Add ``listener``. Holds the lock.

        Raises:
            NodeStoppedError: the node is stopped.
        """
        self._check_open()
        self.listeners[listener.id] = listener
        self.resources[listener.fd] = listener

    def take(self, resource_id: ResourceId) -> Connection | Listener | None:
        """Remove the resource ``resource_id`` by id (its descriptor stays until it is
        closed); None if there is none."""
        with self.lock:
            conn = self.connections.pop(resource_id, None)
            if conn is not None:
                return conn
            return self.listeners.pop(resource_id, None)

    def forget(self, conn: Connection) -> None:
        """Remove ``conn`` by id (it failed or was lost)."""
        with self.lock:
            self.connections.pop(conn.id, None)

    def closed(self, fd: int) -> None:
        """The resource of descriptor ``fd`` is closed."""
        self.resources.pop(fd, None)

    def snapshot(self) -> list[Connection]:
        """The open connections now."""
        with self.lock:
            return list(self.connections.values())

    def refuse(self) -> None:
        """From now on nothing is added: the node is stopping."""
        with self.lock:
            self._open = False

    def clear(self) -> tuple[list[Connection], list[Connection | Listener]]:
        """Forget everything for the shutdown: ``(dialing, resources)``, the connections
        still dialing a host name (no descriptor) and every resource with one."""
        with self.lock:
            self._open = False
            dialing = [c for c in self.connections.values() if isinstance(c.remote, Dial)]
            resources = list(self.resources.values())
            self.connections.clear()
            self.listeners.clear()
            return dialing, resources

    def _check_open(self) -> None:
        if not self._open:
            raise NodeStoppedError("the node is stopped")
