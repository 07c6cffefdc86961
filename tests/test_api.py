"""Tests of the public API: exports, events, endpoints, resource ids, transports, errors."""

from __future__ import annotations

import dataclasses
import errno
import os
import pickle
import queue
import socket
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    AddressError,
    ConfigError,
    Connected,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    Drained,
    Endpoint,
    FramedTcpConnectConfig,
    FramedTcpListenConfig,
    FrameError,
    FrameTooLarge,
    InvalidVarint,
    ListenError,
    ListenerUsedError,
    LoopThreadError,
    Message,
    MessageIOError,
    NodeEvent,
    NodeHandler,
    NodeListener,
    NodeStoppedError,
    ResourceId,
    ResourceType,
    Signal,
    TcpConnectConfig,
    TcpListenConfig,
    Transport,
    TransportRegistryError,
    register_transport,
)
from message_io.network.adapter import Adapter, ConnectionInfo, ListeningInfo

from .helpers import Node

WAIT = 5.0
LOCAL = "127.0.0.1:0"

EXPECTED_ALL = [
    "Accepted",
    "Address",
    "AddressError",
    "COMPILED",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "Connected",
    "Disconnected",
    "Drained",
    "Endpoint",
    "EndpointStatistics",
    "EventSender",
    "FrameError",
    "FrameTooLarge",
    "FramedTcpConnectConfig",
    "FramedTcpListenConfig",
    "InvalidVarint",
    "ListenError",
    "ListenerUsedError",
    "LoopThreadError",
    "Message",
    "MessageIOError",
    "NetEvent",
    "NetworkController",
    "NodeEvent",
    "NodeHandler",
    "NodeListener",
    "NodeStoppedError",
    "NodeTask",
    "PeerResourceId",
    "ResourceId",
    "ResourceType",
    "SendStatus",
    "Signal",
    "TcpConnectConfig",
    "TcpKeepalive",
    "TcpListenConfig",
    "TextMessage",
    "TimerId",
    "Transport",
    "TransportRegistryError",
    "UdpConnectConfig",
    "UdpListenConfig",
    "UnixConnectConfig",
    "UnixListenConfig",
    "WsConnectConfig",
    "WsListenConfig",
    "register_transport",
    "split",
]


def some_endpoint(resource_type: ResourceType = ResourceType.REMOTE) -> Endpoint:
    return Endpoint(ResourceId.new(1, resource_type, 7), ("127.0.0.1", 4242))


# -- exports -----------------------------------------------------------------------------


def test_public_export_list_is_pinned() -> None:
    assert sorted(message_io.__all__) == EXPECTED_ALL
    assert len(set(message_io.__all__)) == len(message_io.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_exported_name_is_importable(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from message_io import {name}", namespace)
    assert namespace[name] is getattr(message_io, name)


def test_star_import_gives_exactly_the_export_list() -> None:
    namespace: dict[str, Any] = {}
    exec("from message_io import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED_ALL
    assert message_io.__version__ == "0.1.0"


# -- events ------------------------------------------------------------------------------


EVENTS: list[Any] = [
    Connected(some_endpoint(), True),
    Accepted(some_endpoint(), ResourceId.new(1, ResourceType.LOCAL, 0)),
    Message(some_endpoint(), b"payload"),
    Disconnected(some_endpoint()),
    Drained(some_endpoint()),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_events_are_frozen_dataclasses(event: Any) -> None:
    assert dataclasses.is_dataclass(event)
    assert not isinstance(event, type)
    first = dataclasses.fields(event)[0].name
    assert first == "endpoint"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, first, some_endpoint())
    assert getattr(event, first) == some_endpoint()
    assert event == dataclasses.replace(event)
    assert hash(event) == hash(dataclasses.replace(event))
    assert not hasattr(event, "__dict__")  # slotted


def test_events_match_positionally() -> None:
    endpoint = some_endpoint()
    listener_id = ResourceId.new(1, ResourceType.LOCAL, 0)
    matched: list[str] = []
    events: list[NodeEvent[Any]] = [
        Connected(endpoint, True),
        Connected(endpoint, False),
        Accepted(endpoint, listener_id),
        Message(endpoint, b"data"),
        Disconnected(endpoint),
        Drained(endpoint),
        Signal("sig"),
    ]
    for event in events:
        match event:
            case Connected(ep, True):
                assert ep == endpoint
                matched.append("connected")
            case Connected(ep, False):
                assert ep == endpoint
                matched.append("failed")
            case Accepted(ep, lid):
                assert (ep, lid) == (endpoint, listener_id)
                matched.append("accepted")
            case Message(ep, data):
                assert (ep, data) == (endpoint, b"data")
                matched.append("message")
            case Disconnected(ep):
                assert ep == endpoint
                matched.append("disconnected")
            case Drained(ep):
                assert ep == endpoint
                matched.append("drained")
            case Signal(value):
                assert value == "sig"
                matched.append("signal")
    assert matched == [
        "connected",
        "failed",
        "accepted",
        "message",
        "disconnected",
        "drained",
        "signal",
    ]


def test_message_repr_shows_the_size_not_the_payload() -> None:
    endpoint = some_endpoint()
    text = repr(Message(endpoint, b"top secret payload"))
    assert "<18 bytes>" in text
    assert "secret" not in text
    assert repr(endpoint) in text
    assert "<0 bytes>" in repr(Message(endpoint, b""))


# -- endpoints and resource ids ------------------------------------------------------------


def test_endpoint_is_hashable_and_equal_by_fields() -> None:
    rid = ResourceId.new(0, ResourceType.REMOTE, 3)
    a = Endpoint(rid, ("127.0.0.1", 1000))
    b = Endpoint(ResourceId.new(0, ResourceType.REMOTE, 3), ("127.0.0.1", 1000))
    assert a == b
    assert hash(a) == hash(b)
    assert {a: "x"}[b] == "x"
    assert len({a, b}) == 1
    assert a != Endpoint(rid, ("127.0.0.1", 1001))
    assert a != Endpoint(ResourceId.new(0, ResourceType.REMOTE, 4), ("127.0.0.1", 1000))
    assert a != (rid, ("127.0.0.1", 1000))
    assert a.resource_id == rid
    assert a.addr == ("127.0.0.1", 1000)
    assert repr(a) == "Endpoint([0.R.3], ('127.0.0.1', 1000))"
    assert pickle.loads(pickle.dumps(a)) == a


@pytest.mark.parametrize("attribute", ["resource_id", "addr", "_addr", "other"])
def test_endpoint_is_immutable(attribute: str) -> None:
    endpoint = some_endpoint()
    with pytest.raises(AttributeError):
        setattr(endpoint, attribute, "changed")
    with pytest.raises(AttributeError):
        delattr(endpoint, attribute)
    assert endpoint == some_endpoint()


def test_endpoint_from_listener() -> None:
    listener_id = ResourceId.new(1, ResourceType.LOCAL, 2)
    endpoint = Endpoint.from_listener(listener_id, ("127.0.0.1", 5))
    assert endpoint == Endpoint(listener_id, ("127.0.0.1", 5))
    with pytest.raises(ValueError, match="not a listener id"):
        Endpoint.from_listener(ResourceId.new(1, ResourceType.REMOTE, 2), ("127.0.0.1", 5))
    with pytest.raises(ValueError, match="not a listener id"):
        Endpoint.from_listener(int(listener_id), ("127.0.0.1", 5))


@pytest.mark.parametrize(
    ("resource_id", "addr"),
    [(3, ("127.0.0.1", 5)), (ResourceId.new(0, ResourceType.REMOTE, 3), 5)],
)
def test_an_endpoint_of_the_wrong_types_is_refused(resource_id: Any, addr: Any) -> None:
    with pytest.raises(TypeError):
        Endpoint(resource_id, addr)


def test_resource_id_fields_round_trip_at_their_bounds() -> None:
    for adapter_id in (0, 1, 2**16 - 1):
        for resource_type in ResourceType:
            for base in (0, 1, 2**47 - 1):
                rid = ResourceId.new(adapter_id, resource_type, base)
                assert (rid.adapter_id, rid.resource_type, rid.base_value) == (
                    adapter_id,
                    resource_type,
                    base,
                )
    with pytest.raises(ValueError, match="adapter id"):
        ResourceId.new(2**16, ResourceType.REMOTE, 0)
    with pytest.raises(ValueError, match="base value"):
        ResourceId.new(0, ResourceType.REMOTE, 2**47)
    with pytest.raises(ValueError, match="base value"):
        ResourceId.new(0, ResourceType.REMOTE, -1)


def test_the_ids_of_one_transport_hash_to_distinct_low_bits() -> None:
    """A node's ids are dictionary keys on every send: consecutive ids of a transport
    differ in their low bits, so they do not all start on one slot and probe on."""
    ids = [ResourceId.new(3, ResourceType.REMOTE, n) for n in range(1024)]
    assert len({hash(rid) & 1023 for rid in ids}) == 1024


def test_resource_id_fields_of_real_resources(node: Node) -> None:
    handler, _listener = node
    listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    endpoint, _local = handler.network.connect(Transport.FRAMED_TCP, addr)
    remote_id = endpoint.resource_id
    assert isinstance(listener_id, ResourceId)
    assert isinstance(remote_id, ResourceId)
    assert isinstance(remote_id, int)

    assert listener_id.adapter_id == Transport.FRAMED_TCP.id == 1
    assert listener_id.is_local
    assert not listener_id.is_remote
    assert listener_id.resource_type is ResourceType.LOCAL
    assert listener_id.base_value == 0
    assert repr(listener_id) == str(listener_id) == "[1.L.0]"

    assert remote_id.adapter_id == 1
    assert remote_id.is_remote
    assert not remote_id.is_local
    assert remote_id.resource_type is ResourceType.REMOTE
    assert remote_id.base_value == 0
    assert repr(remote_id) == str(remote_id) == "[1.R.0]"

    tcp_id, _addr = handler.network.listen(Transport.TCP, LOCAL)
    assert repr(tcp_id) == "[0.L.0]"
    assert tcp_id.adapter_id == 0
    assert len({listener_id, remote_id, tcp_id}) == 3


def test_resource_ids_are_never_reused_within_a_node(node: Node) -> None:
    handler, _listener = node
    seen: list[ResourceId] = []
    server_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    seen.append(server_id)
    for _ in range(20):
        listener_id, _local = handler.network.listen(Transport.TCP, LOCAL)
        assert handler.network.remove(listener_id)
        assert not handler.network.remove(listener_id)
        endpoint, _ = handler.network.connect(Transport.TCP, addr)
        assert handler.network.remove(endpoint.resource_id)
        seen += [listener_id, endpoint.resource_id]
    assert len(set(seen)) == len(seen)
    local = [rid.base_value for rid in seen if rid.is_local]
    remote = [rid.base_value for rid in seen if rid.is_remote]
    assert local == sorted(local)
    assert remote == sorted(remote)


# -- transports ----------------------------------------------------------------------------


def test_builtin_transports() -> None:
    tcp, framed = Transport.TCP, Transport.FRAMED_TCP
    assert (tcp.id, tcp.name) == (0, "TCP")
    assert (framed.id, framed.name) == (1, "FRAMED_TCP")
    assert tcp.is_connection_oriented
    assert not tcp.is_packet_based
    assert tcp.max_message_size is None
    assert framed.is_connection_oriented
    assert framed.is_packet_based
    assert framed.max_message_size == 16 * 1024 * 1024
    assert Transport.from_id(0) is tcp
    assert Transport.from_id(1) is framed
    assert repr(framed) == "Transport.FRAMED_TCP"
    assert pickle.loads(pickle.dumps(framed)) is framed
    assert {tcp, framed} <= set(Transport.all())
    with pytest.raises(ValueError, match="no transport with id"):
        Transport.from_id(65_000)


class _NoAdapter(Adapter):
    """A valid Adapter (never used to connect): only for registry tests."""

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        raise NotImplementedError

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        raise NotImplementedError


def test_register_transport_rejects_duplicates_and_non_adapters() -> None:
    before = list(Transport.all())
    with pytest.raises(TransportRegistryError, match="TCP"):
        register_transport("TCP", _NoAdapter())
    with pytest.raises(TransportRegistryError, match="FRAMED_TCP"):
        register_transport("FRAMED_TCP", _NoAdapter(), id=4000)
    with pytest.raises(TransportRegistryError, match="id 0"):
        register_transport("API_TEST_DUPLICATE_ID", _NoAdapter(), id=0)
    with pytest.raises(TypeError, match="Adapter"):
        register_transport("API_TEST_NOT_AN_ADAPTER", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Adapter"):
        register_transport("API_TEST_ADAPTER_CLASS", _NoAdapter)  # type: ignore[arg-type]
    assert list(Transport.all()) == before
    assert not hasattr(Transport, "API_TEST_DUPLICATE_ID")
    assert isinstance(TransportRegistryError("x"), MessageIOError)


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (AddressError, (ValueError,)),
        (ConfigError, (TypeError,)),
        (ListenError, (OSError,)),
        (ConnectError, (ConnectionError, OSError)),
        (ConnectTimeout, (ConnectError, ConnectionError, TimeoutError, OSError)),
        (NodeStoppedError, (RuntimeError,)),
        (LoopThreadError, (RuntimeError,)),
        (ListenerUsedError, (RuntimeError,)),
        (TransportRegistryError, (ValueError,)),
        (FrameError, (ValueError,)),
        (InvalidVarint, (FrameError, ValueError)),
        (FrameTooLarge, (FrameError, ValueError)),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_error_hierarchy(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert issubclass(error, MessageIOError)
    assert issubclass(error, Exception)
    for base in bases:
        assert issubclass(error, base)
    with pytest.raises(MessageIOError):
        raise error("x")
    with pytest.raises(bases[0]):
        raise error("x")


def test_every_exported_exception_derives_from_message_io_error() -> None:
    exported = [getattr(message_io, name) for name in message_io.__all__]
    errors = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, Exception)]
    assert len(errors) == 13
    assert all(issubclass(error, MessageIOError) for error in errors)


# -- bad input -----------------------------------------------------------------------------


def echo_works(handler: NodeHandler[Any], listener: NodeListener[Any]) -> bool:
    """A FRAMED_TCP echo through ``handler``'s node; True once the client got it back."""
    _listener_id, addr = handler.network.listen(Transport.FRAMED_TCP, LOCAL)
    client, _local = handler.network.connect(Transport.FRAMED_TCP, addr)
    echoed: queue.Queue[bytes] = queue.Queue()

    def on_event(event: NodeEvent[Any]) -> None:
        match event:
            case Connected(endpoint, True):
                handler.network.send(endpoint, b"still alive")
            case Message(endpoint, data) if endpoint == client:
                echoed.put(data)
            case Message(endpoint, data):
                handler.network.send(endpoint, data)

    with listener.for_each_async(on_event):
        return echoed.get(timeout=WAIT) == b"still alive"


@pytest.mark.parametrize(
    ("addr", "shown"),
    [
        ("nonsense", "nonsense"),
        ("1.2.3.4:99999", "1.2.3.4:99999"),
        (("h", "p"), "('h', 'p')"),
        ("127.0.0.1:port", "127.0.0.1:port"),
        ("[::1", "[::1"),
        (12345, "12345"),
    ],
)
def test_bad_address_raises_address_error_and_node_keeps_working(
    node: Node, addr: Any, shown: str
) -> None:
    handler, listener = node
    with pytest.raises(AddressError) as connect_info:
        handler.network.connect(Transport.TCP, addr)
    assert shown in str(connect_info.value)
    assert isinstance(connect_info.value, ValueError)
    with pytest.raises(AddressError) as listen_info:
        handler.network.listen(Transport.FRAMED_TCP, addr)
    assert shown in str(listen_info.value)
    with pytest.raises(AddressError):
        handler.network.connect_sync(Transport.FRAMED_TCP, addr, timeout=1)
    assert handler.is_running()
    assert echo_works(handler, listener)


def test_listen_on_a_busy_port_raises_listen_error(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    text = f"127.0.0.1:{addr[1]}"
    for transport in (Transport.TCP, Transport.FRAMED_TCP):
        with pytest.raises(ListenError) as info:
            handler.network.listen(transport, text)
        error = info.value
        assert isinstance(error, OSError)
        assert error.errno == errno.EADDRINUSE
        assert text in str(error)
        assert error.filename == text
        assert isinstance(error.__cause__, OSError)
        assert error.__cause__.errno == errno.EADDRINUSE
    assert echo_works(handler, listener)


def test_listen_error_strerror_is_the_os_one(node: Node) -> None:
    handler, _listener = node
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ListenError) as info:
            handler.network.listen(Transport.TCP, ("127.0.0.1", port))
    # errors.py: "errno and strerror are those of the underlying OSError".
    cause = info.value.__cause__
    assert isinstance(cause, OSError)
    assert info.value.strerror == cause.strerror == os.strerror(errno.EADDRINUSE)
    assert info.value.errno == cause.errno == errno.EADDRINUSE


def test_config_of_the_wrong_type_raises_config_error(node: Node) -> None:
    handler, listener = node
    _listener_id, addr = handler.network.listen(Transport.TCP, LOCAL)
    with pytest.raises(ConfigError, match="TcpConnectConfig, not a TcpListenConfig") as info:
        handler.network.connect(Transport.TCP, addr, config=TcpListenConfig())  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    with pytest.raises(ConfigError, match="TcpListenConfig, not a TcpConnectConfig"):
        handler.network.listen(Transport.TCP, LOCAL, config=TcpConnectConfig())  # type: ignore[arg-type]
    # A subclass of the transport's config is accepted.
    endpoint, _local = handler.network.connect(Transport.TCP, addr, config=FramedTcpConnectConfig())
    assert handler.network.remove(endpoint.resource_id)
    with pytest.raises(ConfigError, match="FramedTcpConnectConfig"):
        handler.network.connect(Transport.FRAMED_TCP, addr, config=TcpConnectConfig())
    with pytest.raises(ConfigError, match="FramedTcpListenConfig"):
        handler.network.listen(Transport.FRAMED_TCP, LOCAL, config=TcpListenConfig())
    with pytest.raises(ConfigError):
        handler.network.connect_sync(Transport.TCP, addr, config=FramedTcpListenConfig())  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        handler.network.listen(Transport.TCP, LOCAL, config={"backlog": 1})  # type: ignore[arg-type]
    assert echo_works(handler, listener)
