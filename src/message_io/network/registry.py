"""The node's resources by id and by descriptor, and the ids it hands out.

Any thread may look a resource up (``connections.get`` is one dict lookup, which the GIL
makes atomic); adding and removing happen under :attr:`Registry.lock`, which also
orders them against the node's stop: once :meth:`Registry.refuse` has run, nothing new
is added, so nothing is left open behind the shutdown.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Final

from ..errors import NodeStoppedError
from .adapter import SendStatus
from .connection import Connection
from .dial import Dial
from .endpoint import _COMPILED, Endpoint
from .listener import Listener
from .resource_id import ADAPTER_SHIFT, BASE_MASK, LOCAL_BIT, ResourceId, ResourceType

__all__ = ["Registry"]

_NOT_FOUND: Final = SendStatus.RESOURCE_NOT_FOUND
_QUEUE_FULL: Final = SendStatus.QUEUE_FULL
_LOCAL: Final = ResourceType.LOCAL


def _resource_id(endpoint: Any) -> ResourceId:
    """``endpoint``'s resource id, read from its slot (no property call).

    Raises:
        TypeError: ``endpoint`` is not an Endpoint.
    """
    if isinstance(endpoint, Endpoint):
        return endpoint._resource_id  # compiled: a field of the object
    # Raised here, not in the handler, and not from a failed attribute lookup, whose
    # AttributeError would be chained to it in the traceback.
    raise TypeError(f"send() endpoint must be an Endpoint, not {type(endpoint).__name__}")


def _unlink(conn: Connection) -> None:
    """Undo the link :meth:`Registry.add_connection` made (compiled only: the callers
    test ``_COMPILED`` first, so the interpreted engine pays no call)."""
    conn.owner = None
    conn.endpoint._link(None)


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
        # the fields above the counter (see ResourceId.new) -> the counter of those ids
        self._counters: dict[int, itertools.count[int]] = {}
        self._open = True

    def new_id(self, adapter_id: int, resource_type: ResourceType) -> ResourceId:
        """A fresh id for a resource of the transport ``adapter_id``. Any thread: the
        GIL makes ``next`` on a counter and ``setdefault`` atomic (no lock taken).

        Raises:
            OverflowError: the transport has used up its 2**47 ids of that type.
        """
        # ResourceId.new's packing, without its checks (the node's ids are in range).
        local = LOCAL_BIT if resource_type is _LOCAL else 0
        prefix = local | adapter_id << ADAPTER_SHIFT
        counter = self._counters.get(prefix)
        if counter is None:
            counter = self._counters.setdefault(prefix, itertools.count())
        base: int = next(counter)
        if base > BASE_MASK:
            raise OverflowError(f"no resource id left for adapter {adapter_id}")
        return ResourceId(base | prefix)

    def send(self, endpoint: Any, data: Any) -> SendStatus:
        """Send ``data`` to the connection or the listener's peer ``endpoint`` names:
        :meth:`NetworkController.send <message_io.NetworkController.send>`, whose
        documentation it follows. Any thread.

        Raises:
            TypeError: ``endpoint`` is not an Endpoint; ``data`` is a ``str`` for a
                listener's peer (or for a transport without text messages).
        """
        listener: Listener | None = None
        if type(endpoint) is Endpoint:
            if _COMPILED:
                linked: Connection | None = endpoint._conn  # see add_connection
                if linked is not None:
                    if linked.owner is self:
                        return linked.send(data)
                else:
                    source: Listener | None = endpoint._listener  # see add_listener
                    if source is not None and source.owner is self:
                        listener = source
            resource_id = endpoint._resource_id  # inline: no call, interpreted
        else:
            resource_id = _resource_id(endpoint)  # a subclass's, or TypeError
        if listener is None:
            conn = self.connections.get(resource_id)
            if conn is not None:
                return conn.send(data)
            listener = self.listeners.get(resource_id)
        if listener is not None:
            if isinstance(data, str):
                raise TypeError(f"{endpoint} takes bytes-like messages, not str")
            return listener.send_to(endpoint, data)
        return _NOT_FOUND

    def send_unless_full(self, endpoint: Any, data: Any) -> SendStatus:
        """As :meth:`send`, except when ``endpoint``'s queue is full: then nothing is
        sent, logged or counted, a ``Drained(endpoint)`` event is arranged for when the
        queue is empty, and the result is ``QUEUE_FULL`` (the asyncio ``send``, which
        waits for room instead). Any thread.

        Raises:
            TypeError: as :meth:`send`.
        """
        conn = None
        if type(endpoint) is Endpoint:
            if _COMPILED:
                linked: Connection | None = endpoint._conn  # see add_connection
                if linked is not None and linked.owner is self:
                    conn = linked
            resource_id = endpoint._resource_id  # inline: no call, interpreted
        else:
            resource_id = _resource_id(endpoint)  # a subclass's, or TypeError
        if conn is None:
            conn = self.connections.get(resource_id)
        if conn is not None:
            if conn.request_drained(endpoint):
                return _QUEUE_FULL
            return conn.send(data)
        listener = self.listeners.get(resource_id)
        if listener is not None:
            if isinstance(data, str):
                raise TypeError(f"{endpoint} takes bytes-like messages, not str")
            if listener.request_drained(endpoint):
                return _QUEUE_FULL
            return listener.send_to(endpoint, data)
        return _NOT_FOUND

    def add_connection(self, conn: Connection) -> None:
        """Add ``conn``; its descriptor too unless it is still dialing. Holds the lock.

        Raises:
            NodeStoppedError: the node is stopped.
        """
        self._check_open()
        self.connections[conn.id] = conn
        if _COMPILED:
            # Link its endpoint to it, for send() to find it without a lookup by id (a
            # hash of the id and a probe): an endpoint linked to a connection this
            # registry owns is the one ``connections`` has under its id. Unlinked when
            # it leaves ``connections`` (take, forget, clear), so an endpoint the user
            # keeps holds no closed connection. Compiled only: these are stores into
            # the objects there, where the interpreted engine would pay more per
            # connection than it saves per send.
            conn.owner = self
            conn.endpoint._link(conn)
        if type(conn.remote) is not Dial:
            self.resources[conn.fd] = conn

    def add_listener(self, listener: Listener) -> None:
        """Add ``listener``. Holds the lock.

        Raises:
            NodeStoppedError: the node is stopped.
        """
        self._check_open()
        self.listeners[listener.id] = listener
        if _COMPILED:
            # The endpoints of the peers it receives from are linked to it (see
            # Acceptor._on_listener), valid while this registry owns it: as for
            # connections, but the loop thread unlinks them (Listener.forget_peers,
            # when it closes the listener), so the owner is what is unset at once
            # when the listener leaves.
            listener.owner = self
        self.resources[listener.fd] = listener

    def take(self, resource_id: ResourceId) -> Connection | Listener | None:
        """Remove the resource ``resource_id`` by id (its descriptor stays until it is
        closed); None if there is none."""
        with self.lock:
            conn = self.connections.pop(resource_id, None)
            if conn is not None:
                if _COMPILED:
                    _unlink(conn)
                return conn
            listener = self.listeners.pop(resource_id, None)
            if listener is not None:
                listener.owner = None
            return listener

    def forget(self, conn: Connection) -> None:
        """Remove ``conn`` by id (it failed or was lost)."""
        with self.lock:
            if self.connections.pop(conn.id, None) is conn and _COMPILED:
                _unlink(conn)

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
            dialing = [c for c in self.connections.values() if type(c.remote) is Dial]
            resources = list(self.resources.values())
            if _COMPILED:
                for conn in self.connections.values():
                    _unlink(conn)
            for listener in self.listeners.values():
                listener.owner = None
            self.connections.clear()
            self.listeners.clear()
            return dialing, resources

    def _check_open(self) -> None:
        if not self._open:
            raise NodeStoppedError("the node is stopped")
