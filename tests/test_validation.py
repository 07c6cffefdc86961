"""Arguments are checked where they are given: configs at construction, timer delays,
signals of a stopped node, addresses without a host."""

from __future__ import annotations

import dataclasses
import gc
import math
import socket
import ssl
import typing
import weakref
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Any, Literal

import pytest

from message_io import (
    AddressError,
    EventSender,
    FramedTcpConnectConfig,
    FramedTcpListenConfig,
    NodeStoppedError,
    TcpConnectConfig,
    TcpKeepalive,
    TcpListenConfig,
    Transport,
    UdpConnectConfig,
    UdpListenConfig,
    WsConnectConfig,
    WsListenConfig,
    register_transport,
)
from message_io.network import config as config_module
from message_io.network.adapter import (
    Adapter,
    ConnectConfig,
    ConnectionInfo,
    ListenConfig,
    ListeningInfo,
    check_fields,
    resolve_address,
)

from .helpers import Node

# -- configs: types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (
            FramedTcpConnectConfig,
            {"send_buffer_limit": "big"},
            "FramedTcpConnectConfig.send_buffer_limit must be int, not str",
        ),
        (
            FramedTcpConnectConfig,
            {"connect_timeout": "1"},
            "FramedTcpConnectConfig.connect_timeout must be float or None, not str",
        ),
        (
            TcpConnectConfig,
            {"connect_timeout": True},
            "TcpConnectConfig.connect_timeout must be float or None, not bool",
        ),
        (
            FramedTcpListenConfig,
            {"max_message_size": None},
            "FramedTcpListenConfig.max_message_size must be int, not None",
        ),
        (
            FramedTcpListenConfig,
            {"max_message_size": 1.0},
            "FramedTcpListenConfig.max_message_size must be int, not float",
        ),
        (TcpConnectConfig, {"nodelay": 1}, "TcpConnectConfig.nodelay must be bool, not int"),
        (
            TcpConnectConfig,
            {"unsent_limit": "64k"},
            "TcpConnectConfig.unsent_limit must be int or None, not str",
        ),
        (TcpListenConfig, {"backlog": "8"}, "TcpListenConfig.backlog must be int, not str"),
        (
            TcpConnectConfig,
            {"keepalive": 30},
            "TcpConnectConfig.keepalive must be TcpKeepalive or None, not int",
        ),
        (
            TcpListenConfig,
            {"bind_device": b"eth0"},
            "TcpListenConfig.bind_device must be str or None, not bytes",
        ),
        (
            UdpListenConfig,
            {"multicast_interface": True},
            "UdpListenConfig.multicast_interface must be str, int or None, not bool",
        ),
        (
            UdpConnectConfig,
            {"multicast_ttl": "2"},
            "UdpConnectConfig.multicast_ttl must be int or None, not str",
        ),
        (
            WsConnectConfig,
            {"ssl_context": "default"},
            "WsConnectConfig.ssl_context must be SSLContext or None, not str",
        ),
        (
            WsConnectConfig,
            {"headers": [("a", "b")]},
            "WsConnectConfig.headers must be tuple[tuple[str, str], ...], not list",
        ),
        (
            WsConnectConfig,
            {"headers": (("a", 1),)},
            r"WsConnectConfig.headers[0][1] must be str, not int",
        ),
        (
            WsConnectConfig,
            {"headers": (("a", "b", "c"),)},
            r"WsConnectConfig.headers[0] must be tuple[str, str], not a tuple of 3 items",
        ),
        (
            WsConnectConfig,
            {"subprotocols": "chat"},
            "WsConnectConfig.subprotocols must be tuple[str, ...], not str",
        ),
        (
            WsListenConfig,
            {"paths": "/chat"},
            "WsListenConfig.paths must be Collection[str] or None, not str",
        ),
        (
            WsListenConfig,
            {"paths": {"/chat", 3}},
            "an item of WsListenConfig.paths must be str, not int",
        ),
        (
            WsListenConfig,
            {"origins": ["https://a.example", None, 7]},
            "an item of WsListenConfig.origins must be str or None, not int",
        ),
    ],
)
def test_a_config_field_of_the_wrong_type_is_a_type_error_naming_it(
    cls: type[object], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        cls(**options)
    assert str(info.value) == message


def test_configs_of_the_right_types_are_accepted() -> None:
    context = ssl.create_default_context()
    ws = WsConnectConfig(ssl_context=context, headers=(("a", "b"),), subprotocols=("chat",))
    assert ws.ssl_context is context
    server = WsListenConfig(paths=["/a"], origins={None, "https://a.example"})
    assert server.paths == ["/a"]
    config = TcpConnectConfig(connect_timeout=1, keepalive=TcpKeepalive(time=30, retries=3))
    assert config.connect_timeout == 1  # an int where a float is expected
    assert UdpListenConfig(multicast_interface="lo").multicast_interface == "lo"
    assert UdpListenConfig(multicast_interface=1).multicast_interface == 1
    assert TcpConnectConfig(source_address=("127.0.0.1", 0)).source_address
    assert UdpConnectConfig(source_address=":0").source_address == ":0"  # any interface
    assert FramedTcpListenConfig(max_message_size=0).max_message_size == 0


# -- configs: ranges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (ConnectConfig, {"connect_timeout": 0}, "ConnectConfig.connect_timeout must be > 0"),
        (
            TcpConnectConfig,
            {"connect_timeout": math.nan},
            "TcpConnectConfig.connect_timeout must be > 0",
        ),
        (
            ListenConfig,
            {"handshake_timeout": -1.0},
            "ListenConfig.handshake_timeout must be > 0",
        ),
        (
            FramedTcpConnectConfig,
            {"send_buffer_limit": 0},
            "FramedTcpConnectConfig.send_buffer_limit must be >= 1",
        ),
        (
            FramedTcpConnectConfig,
            {"max_message_size": -1},
            "FramedTcpConnectConfig.max_message_size must be >= 0",
        ),
        (WsConnectConfig, {"ping_interval": 0}, "WsConnectConfig.ping_interval must be > 0"),
        (WsListenConfig, {"ping_interval": -5}, "WsListenConfig.ping_interval must be > 0"),
        (
            WsListenConfig,
            {"handshake_timeout": 0.0},
            "WsListenConfig.handshake_timeout must be > 0",
        ),
        (
            WsConnectConfig,
            {"max_message_size": -1},
            "WsConnectConfig.max_message_size must be >= 0",
        ),
        (
            UdpListenConfig,
            {"receive_buffer_size": -1},
            "UdpListenConfig.receive_buffer_size must be >= 0",
        ),
        (WsListenConfig, {"unsent_limit": -1}, "WsListenConfig.unsent_limit must be >= 0"),
        (UdpConnectConfig, {"multicast_ttl": 256}, "multicast_ttl must be 0-255"),
    ],
)
def test_a_config_field_out_of_range_is_a_value_error_naming_it(
    cls: type[object], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        cls(**options)


def test_none_is_never_range_checked() -> None:
    config = WsConnectConfig(ping_interval=None, max_message_size=None, connect_timeout=None)
    assert config.ping_interval is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time": "30"}, "TcpKeepalive.time must be float or None, not str"),
        ({"retries": 2.5}, "TcpKeepalive.retries must be int or None, not float"),
        ({"interval": True}, "TcpKeepalive.interval must be float or None, not bool"),
    ],
)
def test_keepalive_fields_are_type_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as info:
        TcpKeepalive(**options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "options",
    [{"time": 0}, {"time": math.inf}, {"interval": -1.0}, {"interval": math.nan}, {"retries": 0}],
)
def test_keepalive_fields_are_range_checked(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=f"TcpKeepalive.{name} must be"):
        TcpKeepalive(**options)


# -- configs: the generic check, for a transport written outside the library -------------


@dataclasses.dataclass(frozen=True)
class _Limits:
    burst: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class _CustomConnectConfig(ConnectConfig):
    mode: Literal["fast", "safe"] = "fast"
    tags: Collection[str] = ()
    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    limits: _Limits | None = None
    on_open: Callable[[], None] | None = None
    anything: Any = None
    retry_interval: float = 1.0
    queue_size: int = 0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"mode": "slow"},
            TypeError,
            "_CustomConnectConfig.mode must be one of 'fast', 'safe', not str",
        ),
        ({"tags": [1]}, TypeError, "an item of _CustomConnectConfig.tags must be str, not int"),
        (
            {"weights": {"a": "heavy"}},
            TypeError,
            "_CustomConnectConfig.weights['a'] must be float, not str",
        ),
        (
            {"limits": {"burst": 2}},
            TypeError,
            "_CustomConnectConfig.limits must be _Limits or None, not dict",
        ),
        (
            {"on_open": "open"},
            TypeError,
            "_CustomConnectConfig.on_open must be callable or None, not str",
        ),
        (
            {"retry_interval": 0.0},
            ValueError,
            "_CustomConnectConfig.retry_interval must be > 0, not 0.0",
        ),
        ({"queue_size": -1}, ValueError, "_CustomConnectConfig.queue_size must be >= 0, not -1"),
    ],
)
def test_a_subclass_written_elsewhere_is_checked_without_code_of_its_own(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        _CustomConnectConfig(**options)
    assert str(info.value) == message


def test_a_subclass_written_elsewhere_accepts_right_values() -> None:
    config = _CustomConnectConfig(
        mode="safe",
        tags={"a"},
        weights={"a": 1},
        limits=_Limits(),
        on_open=lambda: None,
        anything=object(),
    )
    assert config.mode == "safe"


def test_annotations_are_resolved_once_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Once(ListenConfig):
        size_hint: int = 0

    calls: list[object] = []
    real = typing.get_type_hints

    def counting(obj: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counting)
    for _ in range(3):
        Once(size_hint=1)
    assert calls == [Once]
    with pytest.raises(TypeError, match=r"Once\.size_hint must be int"):
        Once(size_hint="1")  # type: ignore[arg-type]


def test_an_annotation_that_does_not_resolve_is_not_checked() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Unresolved(ConnectConfig):
        later: NotDefinedAnywhere = None  # type: ignore[name-defined]  # noqa: F821

    assert Unresolved(later="whatever").later == "whatever"
    with pytest.raises(TypeError, match=r"Unresolved\.send_buffer_limit must be int"):
        Unresolved(send_buffer_limit="big")  # type: ignore[arg-type]


def test_check_fields_works_on_any_dataclass() -> None:
    check_fields(_Limits(burst=3))
    with pytest.raises(TypeError, match=r"_Limits\.burst must be int, not str"):
        check_fields(_Limits(burst="3"))  # type: ignore[arg-type]


# -- timers and signals ------------------------------------------------------------------


@pytest.mark.parametrize("delay", ["1", b"1", None, True, False, [1], 1j])
def test_a_timer_delay_that_is_not_a_number_is_a_type_error(delay: Any) -> None:
    signals: EventSender[str] = EventSender(lambda: None)
    with pytest.raises(TypeError) as info:
        signals.send_with_timer("x", delay)
    assert str(info.value) == (
        "send_with_timer() delay must be a number of seconds or a timedelta, "
        f"not {type(delay).__name__}"
    )
    assert signals.pending() == 0


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, timedelta(seconds=-1)])
def test_a_timer_delay_out_of_range_is_a_value_error(delay: Any) -> None:
    signals: EventSender[str] = EventSender(lambda: None)
    with pytest.raises(ValueError, match=r"send_with_timer\(\) delay must be a finite number"):
        signals.send_with_timer("x", delay)
    assert signals.pending() == 0


@pytest.mark.parametrize("delay", [0, 1, 0.5, timedelta(milliseconds=1)])
def test_a_timer_delay_in_seconds_or_timedelta_is_accepted(delay: float | timedelta) -> None:
    signals: EventSender[str] = EventSender(lambda: None)
    signals.send_with_timer("x", delay)
    assert signals.pending() == 1


def test_a_closed_event_sender_refuses_every_signal() -> None:
    wakes: list[None] = []
    signals: EventSender[str] = EventSender(lambda: wakes.append(None))
    signals.send("queued before")
    assert not signals.closed
    signals.close()
    signals.close()  # idempotent
    assert signals.closed
    sends: list[Callable[[], object]] = [
        lambda: signals.send("x"),
        lambda: signals.send_with_priority("x"),
        lambda: signals.send_with_timer("x", 0.1),
    ]
    for send in sends:
        with pytest.raises(NodeStoppedError, match="the node is stopped"):
            send()
    assert signals.pending() == 1  # what was queued stays counted; nothing was added
    assert len(wakes) == 1  # only the send before close() woke the loop


def test_a_closed_event_sender_still_checks_the_delay_first() -> None:
    signals: EventSender[str] = EventSender(lambda: None)
    signals.close()
    with pytest.raises(TypeError):
        signals.send_with_timer("x", "1")  # type: ignore[arg-type]


# -- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize("addr", [":80", "[]:80", ("", 80), ("", 80, 0, 0), "  :80"])
def test_an_address_without_a_host_is_an_error_for_connecting(addr: Any) -> None:
    with pytest.raises(AddressError, match="no host to connect to") as info:
        resolve_address(addr)
    assert repr(addr) in str(info.value)
    with pytest.raises(AddressError, match="no host to connect to"):
        resolve_address(addr, type_=socket.SOCK_DGRAM)


@pytest.mark.parametrize("addr", [":0", ("", 0)])
def test_an_address_without_a_host_means_every_interface_for_listening(addr: Any) -> None:
    resolved = resolve_address(addr, passive=True)
    wildcards = {str(sockaddr[0]) for _family, sockaddr in resolved}
    assert wildcards <= {"0.0.0.0", "::"}, resolved
    assert wildcards


def test_connect_to_an_address_without_a_host_raises_and_listen_binds_every_interface(
    node: Node,
) -> None:
    handler, _listener = node
    for transport in (Transport.TCP, Transport.FRAMED_TCP, Transport.UDP):
        with pytest.raises(AddressError, match="no host to connect to"):
            handler.network.connect(transport, ":80")
        _listener_id, local = handler.network.listen(transport, ":0")
        assert local[0] in ("0.0.0.0", "::"), local
    with pytest.raises(AddressError):
        handler.network.connect(Transport.WS, ":80")


# -- wrong argument types to public calls ------------------------------------------------


class _NoAdapter(Adapter):
    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        raise NotImplementedError

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        raise NotImplementedError


def test_register_transport_names_the_argument_of_the_wrong_type() -> None:
    before = list(Transport.all())
    with pytest.raises(TypeError) as info:
        register_transport(b"BYTES_NAME", _NoAdapter())  # type: ignore[arg-type]
    assert str(info.value) == "register_transport() name must be a str, not bytes"
    with pytest.raises(TypeError) as info:
        register_transport("VALIDATION_STR_ID", _NoAdapter(), id="70")  # type: ignore[arg-type]
    assert str(info.value) == "register_transport() id must be an int, not str"
    with pytest.raises(TypeError, match="id must be an int, not bool"):
        register_transport("VALIDATION_BOOL_ID", _NoAdapter(), id=True)
    assert list(Transport.all()) == before


@pytest.mark.parametrize("transport_id", ["1", 1.0, None, True])
def test_transport_from_id_names_the_argument_of_the_wrong_type(transport_id: Any) -> None:
    with pytest.raises(TypeError) as info:
        Transport.from_id(transport_id)
    assert str(info.value) == (
        f"Transport.from_id() transport_id must be an int, not {type(transport_id).__name__}"
    )


def test_a_wrong_default_is_reported_when_it_is_used() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WrongDefault(ListenConfig):
        retry_interval: float = "soon"  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"WrongDefault\.retry_interval must be float, not str"):
        WrongDefault()
    assert WrongDefault(retry_interval=1.0).retry_interval == 1.0


def test_the_checks_of_a_class_are_freed_with_it() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Temporary(ConnectConfig):
        pass

    Temporary()
    assert Temporary in config_module._FIELD_CHECKS
    alive = weakref.ref(Temporary)
    del Temporary
    gc.collect()
    assert alive() is None  # the cache does not keep the class alive


@pytest.mark.parametrize("cls", [TcpConnectConfig, FramedTcpConnectConfig, UdpConnectConfig])
def test_a_source_address_must_be_an_ip_address(cls: type[Any]) -> None:
    """A name would have to be resolved on the loop thread, where a connect to a host
    name binds its attempts."""
    with pytest.raises(AddressError, match=rf"{cls.__name__}\.source_address must be an IP"):
        cls(source_address=("localhost", 0))
    with pytest.raises(AddressError, match="invalid address"):
        cls(source_address="no port")
