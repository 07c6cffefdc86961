"""TCP options reach the sockets: source address, keepalive, nodelay, unsent limit,
reuse port."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import message_io
from message_io import (
    FramedTcpConnectConfig,
    FramedTcpListenConfig,
    TcpConnectConfig,
    TcpKeepalive,
    TcpListenConfig,
    Transport,
)

from .conftest import harness

TIMEOUT = 10.0


def _socket_of(
    handler: message_io.NodeHandler[Any], resource_id: message_io.ResourceId
) -> socket.socket:
    """The OS socket behind a connection (white box: the options are kernel state)."""
    sock = handler._loop.connections[resource_id].remote.socket  # type: ignore[attr-defined]
    assert isinstance(sock, socket.socket)
    return sock


def test_source_address_is_bound_before_connecting() -> None:
    handler, _listener = message_io.split()
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        _, addr = handler.network.listen(Transport.TCP, "127.0.0.1:0")
        config = TcpConnectConfig(source_address=("127.0.0.1", free_port))
        endpoint, local = handler.network.connect_sync(
            Transport.TCP, addr, config=config, timeout=TIMEOUT
        )
        assert local == ("127.0.0.1", free_port)
        assert endpoint.addr == addr
    finally:
        handler.stop()


def test_keepalive_and_nodelay_are_set_on_connect() -> None:
    handler, _listener = message_io.split()
    try:
        _, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
        keepalive = TcpKeepalive(time=30, interval=5, retries=3)
        config = FramedTcpConnectConfig(keepalive=keepalive, nodelay=False)
        endpoint, _ = handler.network.connect_sync(
            Transport.FRAMED_TCP, addr, config=config, timeout=TIMEOUT
        )
        sock = _socket_of(handler, endpoint.resource_id)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    finally:
        handler.stop()


def _keepalive_of(sock: socket.socket) -> tuple[int, int, int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


@contextlib.contextmanager
def _both_ends(
    transport: Transport, *, listen_config: Any = None, connect_config: Any = None
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """The sockets of a connection's two ends: the client's, and the one its listener
    accepted (the nodes stop at the end of the block)."""
    server, server_listener = message_io.split()
    client, _client_listener = message_io.split()
    try:
        _, addr = server.network.listen(transport, "127.0.0.1:0", config=listen_config)
        accepted: queue.Queue[message_io.Accepted] = queue.Queue()

        def on_event(event: object) -> None:
            if isinstance(event, message_io.Accepted):
                accepted.put(event)

        with server_listener.for_each_async(on_event, on_error="stop"):
            endpoint, _ = client.network.connect_sync(
                transport, addr, config=connect_config, timeout=TIMEOUT
            )
            event = accepted.get(timeout=TIMEOUT)
            yield (
                _socket_of(client, endpoint.resource_id),
                _socket_of(server, event.endpoint.resource_id),
            )
    finally:
        server.stop()
        client.stop()


@pytest.mark.skipif(not hasattr(socket, "TCP_KEEPIDLE"), reason="no TCP_KEEPIDLE here")
@pytest.mark.parametrize("transport", [Transport.TCP, Transport.FRAMED_TCP, Transport.WS])
def test_nodelay_and_keepalive_are_on_by_default(transport: Transport) -> None:
    """Dead peers are noticed with default settings: Go's 15 s idle, 15 s, 9 probes."""
    with _both_ends(transport) as (sock, peer):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert _keepalive_of(sock) == (1, 15, 15, 9)
        assert _keepalive_of(peer) == (1, 15, 15, 9)


def test_keepalive_none_turns_it_off() -> None:
    handler, _listener = message_io.split()
    try:
        _, addr = handler.network.listen(
            Transport.TCP, "127.0.0.1:0", config=TcpListenConfig(keepalive=None)
        )
        endpoint, _ = handler.network.connect_sync(
            Transport.TCP, addr, config=TcpConnectConfig(keepalive=None), timeout=TIMEOUT
        )
        sock = _socket_of(handler, endpoint.resource_id)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    finally:
        handler.stop()


def test_accepted_connections_get_the_listen_options() -> None:
    server, server_listener = message_io.split()
    client, _client_listener = message_io.split()
    try:
        config = TcpListenConfig(keepalive=TcpKeepalive(time=40), nodelay=False)
        listener_id, addr = server.network.listen(Transport.TCP, "127.0.0.1:0", config=config)
        client.network.connect_sync(Transport.TCP, addr, timeout=TIMEOUT)
        event = server_listener.receive(TIMEOUT)
        assert isinstance(event, message_io.Accepted)
        assert event.listener_id == listener_id
        sock = _socket_of(server, event.endpoint.resource_id)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 40
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    finally:
        server.stop()
        client.stop()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    handler, _listener = message_io.split()
    try:
        config = FramedTcpListenConfig(reuse_port=True)
        _, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0", config=config)
        _, again = handler.network.listen(Transport.FRAMED_TCP, addr, config=config)
        assert again == addr
        with pytest.raises(message_io.ListenError):
            handler.network.listen(Transport.FRAMED_TCP, addr)  # without reuse_port
    finally:
        handler.stop()


def test_accepted_sockets_get_the_options_where_the_os_does_not_copy_them() -> None:
    """The listening socket carries the options too, and where the OS copies them to
    the sockets it accepts (Linux does) nothing more is set; where the first accepted
    socket shows otherwise, each accepted socket gets them set itself."""
    config = TcpListenConfig(keepalive=TcpKeepalive(time=40, interval=7), nodelay=True)
    for copied in (True, False):
        server, server_listener = message_io.split()
        client, _client_listener = message_io.split()
        try:
            listener_id, addr = server.network.listen(Transport.TCP, "127.0.0.1:0", config=config)
            local: Any = server._loop.listeners[listener_id].local  # white box
            listening = (
                _keepalive_of(local.socket),
                local.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            )
            assert listening[0][:3] == (1, 40, 7) and listening[1] != 0
            if not copied:
                local._options = ()  # as an OS that copies nothing would show
            for _ in range(2):
                client.network.connect_sync(Transport.TCP, addr, timeout=TIMEOUT)
                event = server_listener.receive(TIMEOUT)
                assert isinstance(event, message_io.Accepted)
                sock = _socket_of(server, event.endpoint.resource_id)
                assert _keepalive_of(sock)[:3] == (1, 40, 7)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert local._inherited is copied
        finally:
            server.stop()
            client.stop()


_CONFIGS: dict[Transport, tuple[Any, Any]] = {
    Transport.TCP: (TcpConnectConfig, TcpListenConfig),
    Transport.FRAMED_TCP: (FramedTcpConnectConfig, FramedTcpListenConfig),
    Transport.WS: (message_io.WsConnectConfig, message_io.WsListenConfig),
}


def _unsent_limit_of(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
@pytest.mark.parametrize("transport", list(_CONFIGS))
def test_unsent_limit_is_set_on_both_ends(transport: Transport) -> None:
    connect_config, listen_config = _CONFIGS[transport]
    with _both_ends(
        transport,
        listen_config=listen_config(unsent_limit=32768),
        connect_config=connect_config(unsent_limit=65536),
    ) as (sock, peer):
        assert _unsent_limit_of(sock) == 65536
        assert _unsent_limit_of(peer) == 32768


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
def test_unsent_limit_is_the_systems_by_default() -> None:
    handler, _listener = message_io.split()
    try:
        _, addr = handler.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
        endpoint, _ = handler.network.connect_sync(Transport.FRAMED_TCP, addr, timeout=TIMEOUT)
        with socket.socket() as fresh:
            system = _unsent_limit_of(fresh)
        assert _unsent_limit_of(_socket_of(handler, endpoint.resource_id)) == system
    finally:
        handler.stop()


def test_unsent_limit_where_the_os_has_none_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(message_io.adapters.tcp, "_NOTSENT_LOWAT", None)
    handler, _listener = message_io.split()
    try:
        _, addr = handler.network.listen(Transport.TCP, "127.0.0.1:0")
        with pytest.raises(message_io.ConnectError, match="TCP_NOTSENT_LOWAT"):
            handler.network.connect(Transport.TCP, addr, config=TcpConnectConfig(unsent_limit=4096))
        with pytest.raises(message_io.ListenError, match="TCP_NOTSENT_LOWAT"):
            handler.network.listen(
                Transport.TCP, "127.0.0.1:0", config=TcpListenConfig(unsent_limit=4096)
            )
        # Without the option, nothing asks for it: connections work as before.
        handler.network.connect_sync(Transport.TCP, addr, timeout=TIMEOUT)
    finally:
        handler.stop()


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
@pytest.mark.parametrize("transport", [Transport.FRAMED_TCP, Transport.WS])
def test_messages_go_through_whole_and_in_order_with_a_tiny_unsent_limit(
    transport: Transport, tmp_path: Path
) -> None:
    """With 4 KiB the kernel takes a few KiB per write: large messages leave in many
    partial writes from the node's queue, both ways, and arrive whole and in order."""
    with harness(transport, tmp_path) as net:
        _server, _listener_id, addr = net.echo_server(
            config=net.listen_config(unsent_limit=4096, send_buffer_limit=32 << 20)
        )
        client = net.node("client")
        endpoint = net.connected(client, addr, unsent_limit=4096, send_buffer_limit=32 << 20)
        assert _unsent_limit_of(_socket_of(client.handler, endpoint.resource_id)) == 4096
        messages = [os.urandom(size) for size in (3 << 20, 1, 70_000, 0, 5 << 20, 100)]
        for message in messages:
            assert client.network.send(endpoint, message) is message_io.SendStatus.SENT
        for message in messages:
            assert client.expect(message_io.Message).data == message
