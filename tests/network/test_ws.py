"""``Transport.WS`` beyond the common behaviour suite: URLs, handshakes and their
deadline, text frames, pings and keepalive, close codes, limits and protocol
violations. Misbehaving peers are raw sockets that speak just enough WebSocket, with
frames built and parsed by the ``websockets`` package."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from message_io import (
    Accepted,
    Address,
    AddressError,
    Connected,
    Disconnected,
    Message,
    ResourceId,
    SendStatus,
    TextMessage,
    Transport,
    WsConnectConfig,
    WsListenConfig,
)
from message_io.adapters.ws import DEFAULT_PATH, WsRemote, parse_ws_address
from message_io.codec.ws_frames import Masker, frame_header

from .conftest import TIMEOUT, Net, Node, accepted

SENT = SendStatus.SENT


class RawPeer:
    """A blocking client socket after the opening handshake, whose frames are built and
    parsed by websockets (so it can also send what a good client never would)."""

    def __init__(self, net: Net, addr: Any) -> None:
        self.sock = net.raw_connect(addr)  # does the handshake
        self.parser = ClientProtocol(parse_uri("ws://localhost/"), state=OPEN)

    def send_frame(
        self, opcode: Opcode, data: bytes, *, mask: bool = True, fin: bool = True
    ) -> None:
        self.sock.sendall(Frame(opcode, data, fin).serialize(mask=mask, extensions=[]))

    def next_frame(self) -> Frame:
        """The next frame from the server (fails on EOF or timeout)."""
        while True:
            for event in self.parser.events_received():
                assert isinstance(event, Frame)
                return event
            data = self.sock.recv(65536)
            assert data, "EOF before a frame"
            self.parser.receive_data(data)

    def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            frame = self.next_frame()
            if frame.opcode is Opcode.CLOSE:
                return int(Close.parse(frame.data).code)

    def wait_eof(self) -> None:
        while self.sock.recv(65536):
            pass


def test_urls_and_addresses() -> None:
    uri = parse_ws_address("127.0.0.1:3000")
    assert (uri.host, uri.port, uri.path, uri.secure) == ("127.0.0.1", 3000, DEFAULT_PATH, False)
    assert uri.resource_name == DEFAULT_PATH
    uri = parse_ws_address("wss://example.com/chat?room=1")
    assert (uri.host, uri.port, uri.resource_name, uri.secure) == (
        "example.com",
        443,
        "/chat?room=1",
        True,
    )
    uri = parse_ws_address(("::1", 80))
    assert uri.host == "::1"
    for bad in ("http://example.com/", "ws://", "ws://host:notaport/", "wss://host/#frag"):
        with pytest.raises(AddressError):
            parse_ws_address(bad)
    assert issubclass(AddressError, ValueError)


def test_bad_url_raises_and_the_node_carries_on(ws: Net) -> None:
    _server, _listener_id, addr = ws.echo_server()
    client = ws.node("client")
    with pytest.raises(ValueError, match="invalid WebSocket URL"):
        client.network.connect(Transport.WS, "ws://[::1/oops")
    endpoint = ws.connected(client, f"ws://127.0.0.1:{addr[1]}/after")
    assert client.network.send(endpoint, b"still fine") is SENT
    assert client.expect(Message).data == b"still fine"


def test_socket_address_uses_the_rust_default_path(ws: Net) -> None:
    listener = ws._keep(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(TIMEOUT)
    client = ws.node("client")
    client.network.connect(Transport.WS, listener.getsockname())
    peer, _addr = listener.accept()
    ws._keep(peer)
    peer.settimeout(TIMEOUT)
    request = peer.recv(4096)
    assert request.startswith(f"GET {DEFAULT_PATH} HTTP/1.1\r\n".encode()), request


def test_text_and_binary_keep_their_kind(ws: Net) -> None:
    server, listener_id, addr = ws.server()
    client = ws.node("client")
    endpoint = ws.connected(client, addr)
    server_ep = accepted(server, listener_id)

    assert client.network.send(endpoint, "héllo ✓") is SENT
    assert client.network.send(endpoint, b"\xff\x00 binary") is SENT
    text = server.expect(TextMessage)
    assert (text.text, text.data) == ("héllo ✓", "héllo ✓".encode())
    assert isinstance(text, Message)  # code that handles Message gets text too
    binary = server.expect(Message)
    assert not isinstance(binary, TextMessage)
    assert binary.data == b"\xff\x00 binary"
    assert type(binary.data) is bytes

    # Echo keeping the kind, the way the docs show it.
    for event in (text, binary):
        data = event.text if isinstance(event, TextMessage) else event.data
        assert server.network.send(server_ep, data) is SENT
    assert client.expect(TextMessage).text == "héllo ✓"
    echoed = client.expect(Message)
    assert not isinstance(echoed, TextMessage)
    assert type(echoed.data) is bytes  # on the client side too (unmasked frames)


def test_str_on_a_bytes_transport_is_a_type_error(framed: Net) -> None:
    _server, _lid, addr = framed.server()
    client = framed.node("client")
    endpoint = framed.connected(client, addr)
    with pytest.raises(TypeError, match="not str"):
        client.network.send(endpoint, "text")


def test_fragmented_message_from_a_raw_client(ws: Net) -> None:
    server, listener_id, addr = ws.server()
    raw = RawPeer(ws, addr)
    accepted(server, listener_id)
    raw.send_frame(Opcode.TEXT, b"frag", fin=False)
    raw.send_frame(Opcode.PING, b"in between")  # control frames may interleave
    raw.send_frame(Opcode.CONT, "mented ✓".encode(), fin=True)
    assert server.expect(TextMessage).text == "fragmented ✓"
    pong = raw.next_frame()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"in between")


def test_remove_sends_close_1000_and_stop_1001(ws: Net) -> None:
    server, listener_id, addr = ws.server()
    first = RawPeer(ws, addr)
    first_ep = accepted(server, listener_id)
    second = RawPeer(ws, addr)
    accepted(server, listener_id)
    assert server.network.remove(first_ep.resource_id)
    assert first.close_code() == 1000
    first.wait_eof()  # and the node does not wait for the reply
    server.stop()
    assert second.close_code() == 1001


def test_peer_close_is_answered_then_disconnected(ws: Net) -> None:
    server, listener_id, addr = ws.server()
    raw = RawPeer(ws, addr)
    endpoint = accepted(server, listener_id)
    raw.send_frame(Opcode.CLOSE, Close(1000, "bye").serialize())
    assert server.expect(Disconnected) == Disconnected(endpoint)
    assert raw.close_code() == 1000  # the close reply
    raw.wait_eof()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Frame(Opcode.BINARY, b"unmasked"), 1002),  # a client must mask: sent unmasked below
        (Frame(Opcode.TEXT, b"\xff\xfe not utf-8"), 1007),
        (b"\xc2\x81\x00\x00\x00\x00x", 1002),  # RSV1 set, and no extension negotiated
        (Frame(Opcode.CONT, b"nothing to continue"), 1002),
    ],
    ids=["unmasked", "bad-utf8", "rsv1", "stray-continuation"],
)
def test_protocol_violation_closes_only_that_connection(
    ws: Net, frame: Frame | bytes, code: int
) -> None:
    server, listener_id, addr = ws.echo_server()
    good = RawPeer(ws, addr)
    good_ep = accepted(server, listener_id)
    bad = RawPeer(ws, addr)
    bad_ep = accepted(server, listener_id)
    if isinstance(frame, bytes):
        wire = frame  # what websockets refuses to build
    else:
        wire = frame.serialize(mask=frame.data != b"unmasked", extensions=[])
    bad.sock.sendall(wire)
    assert bad.close_code() == code
    assert server.expect(Disconnected) == Disconnected(bad_ep)
    good.send_frame(Opcode.BINARY, b"still served")
    assert server.expect(Message).endpoint == good_ep
    echoed = good.next_frame()
    assert echoed.data == b"still served"


def test_message_size_limits(ws: Net) -> None:
    server, listener_id, addr = ws.server(config=WsListenConfig(max_message_size=1000))
    client = ws.node("client")
    endpoint = ws.connected(client, addr, max_message_size=1500)
    server_ep = accepted(server, listener_id)
    assert client.network.send(endpoint, b"x" * 1501) is SendStatus.MAX_PACKET_SIZE_EXCEEDED
    assert server.network.send(server_ep, b"x" * 1001) is SendStatus.MAX_PACKET_SIZE_EXCEEDED
    assert client.network.send(endpoint, b"x" * 1000) is SENT
    assert server.expect(Message).data == b"x" * 1000
    # Over the server's limit, under the client's: the server closes with 1009.
    assert client.network.send(endpoint, b"y" * 1200) is SENT
    assert server.expect(Disconnected) == Disconnected(server_ep)
    assert client.expect(Disconnected) == Disconnected(endpoint)


def test_handshake_deadline_is_not_extended_by_trickling(ws: Net) -> None:
    deadline = 0.5
    server, _listener_id, addr = ws.server(config=WsListenConfig(handshake_timeout=deadline))
    sock = ws._keep(socket.create_connection(addr, timeout=TIMEOUT))
    request = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    stop = threading.Event()

    def trickle() -> None:
        for byte in request:
            if stop.wait(0.02):  # paces the trickle; the test waits on EOF, not on this
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    started = time.monotonic()
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        try:
            ended = sock.recv(4096)
        except ConnectionResetError:
            # Closed with a trickled byte still unread on its side: the kernel resets
            # instead of ending the stream. Either way, the server hung up.
            ended = b""
        assert ended == b""  # the server hung up
    finally:
        stop.set()
        trickler.join(TIMEOUT)
    elapsed = time.monotonic() - started
    assert deadline * 0.9 <= elapsed < deadline + 5, elapsed
    server.sync()
    assert server.drain_events() == []  # no Accepted for it


def test_failed_handshakes(ws: Net) -> None:
    # A server that answers HTTP, not WebSocket: Connected(ep, False).
    http = ws._keep(socket.socket())
    http.bind(("127.0.0.1", 0))
    http.listen()
    http.settimeout(TIMEOUT)
    client = ws.node("client")
    endpoint, _local = client.network.connect(Transport.WS, http.getsockname())
    peer, _addr = http.accept()
    ws._keep(peer)
    peer.recv(4096)
    peer.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    assert client.expect(Connected) == Connected(endpoint, False)
    assert client.network.is_ready(endpoint.resource_id) is None

    # A server that never answers: the connect timeout gives up.
    config = WsConnectConfig(connect_timeout=0.3)
    silent, _local = client.network.connect(Transport.WS, http.getsockname(), config=config)
    assert client.expect(Connected) == Connected(silent, False)

    # A path the server does not serve: 404, refused on both sides.
    server, listener_id, addr = ws.server(config=WsListenConfig(paths={"/chat"}))
    wrong, _local = client.network.connect(Transport.WS, f"ws://127.0.0.1:{addr[1]}/other")
    assert client.expect(Connected) == Connected(wrong, False)
    ws.connected(client, f"ws://127.0.0.1:{addr[1]}/chat?room=1")
    # The first event of the server: the refused client was never Accepted.
    assert server.expect(Accepted).listener_id == listener_id


def _answer_pings(
    ws: Net, server: Node, listener_id: ResourceId, addr: Address, count: int
) -> None:
    """Wait out ``count - 1`` ping intervals of ``server`` by an event it produces: a
    raw peer of its own gets and answers its ``count`` first pings."""
    peer = RawPeer(ws, addr)
    accepted(server, listener_id)
    for _ in range(count):
        frame = peer.next_frame()
        assert frame.opcode is Opcode.PING
        peer.send_frame(Opcode.PONG, bytes(frame.data))


def test_keepalive_detects_a_silent_peer(ws: Net) -> None:
    interval = 0.2
    server, listener_id, addr = ws.server(config=WsListenConfig(ping_interval=interval))
    silent = RawPeer(ws, addr)  # its kernel ACKs, but it never sends a frame
    silent_ep = accepted(server, listener_id)
    started = time.monotonic()
    assert server.expect(Disconnected) == Disconnected(silent_ep)
    assert time.monotonic() - started < interval * 3 + 2
    assert silent.next_frame().opcode is Opcode.PING  # it was pinged first


def test_pings_keep_a_quiet_peer_alive(ws: Net) -> None:
    interval = 0.1
    server, listener_id, addr = ws.server(config=WsListenConfig(ping_interval=interval))
    client = ws.node("client")  # our client answers pings: never disconnected
    endpoint = ws.connected(client, addr, ping_interval=None)
    server_ep = accepted(server, listener_id)
    _answer_pings(ws, server, listener_id, addr, 6)
    assert server.network.send(server_ep, b"alive?") is SENT
    assert client.expect(Message).data == b"alive?"
    assert client.network.is_ready(endpoint.resource_id) is True
    server.sync()
    assert server.drain_events() == []


def test_keepalive_spares_a_peer_the_server_does_not_read(ws: Net) -> None:
    """Paused by pause_reading(), a peer's answers would wait unread: it is not judged
    while the pause lasts, and is pinged again once read."""
    interval = 0.1
    server, listener_id, addr = ws.server(config=WsListenConfig(ping_interval=interval))
    held = RawPeer(ws, addr)
    held_ep = accepted(server, listener_id)
    assert server.network.pause_reading(held_ep)
    _answer_pings(ws, server, listener_id, addr, 6)
    server.sync()
    assert server.drain_events() == []  # not disconnected while paused
    assert server.network.resume_reading(held_ep)
    frame = held.next_frame()  # read again: pinged
    assert frame.opcode is Opcode.PING
    held.send_frame(Opcode.PONG, bytes(frame.data))
    assert server.network.send(held_ep, b"still here") is SENT
    while (frame := held.next_frame()).opcode is Opcode.PING:
        held.send_frame(Opcode.PONG, bytes(frame.data))
    assert frame.data == b"still here"


def test_keepalive_spares_a_slow_reader_whose_queue_drains(ws: Net) -> None:
    """A peer that reads a long download slowly sees the server's pings only behind the
    data queued before them; while what the server sends drains, it is alive."""
    interval = 0.1
    config = WsListenConfig(ping_interval=interval, send_buffer_limit=32 << 20)
    server, listener_id, addr = ws.server(config=config)
    reader = RawPeer(ws, addr)
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    endpoint = accepted(server, listener_id)
    chunk = bytes(range(256)) * 1024  # 256 KiB
    for _ in range(40):  # 10 MiB: at 64 KiB per 5 ms, about a second to read
        assert server.network.send(endpoint, chunk) is SENT
    received = 0
    while received < 40 * len(chunk):
        frame = reader.next_frame()
        if frame.opcode is Opcode.BINARY:
            assert frame.data == chunk
            received += len(frame.data)
        time.sleep(0.005)  # the pace of a slow reader, not a wait for an event
    server.sync()
    assert server.drain_events() == []  # never disconnected
    assert server.network.is_ready(endpoint.resource_id) is True


def test_a_ping_flood_from_a_peer_that_never_reads_is_bounded(ws: Net) -> None:
    """Each ping asks for a pong; a peer that sends them and reads none would make the
    node queue pongs without end. Once its replies fill the queue it is read no more,
    until it reads them: memory stays near the queue's limit, and no pong is lost."""
    limit = 16 << 10
    config = WsListenConfig(ping_interval=None, send_buffer_limit=limit, unsent_limit=4096)
    server, listener_id, addr = ws.server(config=config)
    flooder = RawPeer(ws, addr)
    flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    endpoint = accepted(server, listener_id)
    count = 5000
    ping = Frame(Opcode.PING, b"p" * 125).serialize(mask=True, extensions=[])

    def flood() -> None:
        with contextlib.suppress(OSError):  # blocked until read, or closed at the end
            flooder.sock.sendall(ping * count)

    thread = threading.Thread(target=flood, name="flooder")
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        reading = True
        while reading and time.monotonic() < deadline:
            server.sync()  # a wait on the loop's turns, not a sleep
            stats = server.network.statistics(endpoint)
            assert stats is not None
            reading = stats.reading
        assert not reading, "never stopped reading the flooder"
        server.sync()
        # The limit, plus the pongs of the one read that crossed it (a read is at most
        # 256 KiB of pings): not the 5000 pongs asked for (635 KB).
        assert server.network.pending_bytes(endpoint) <= limit + (256 << 10)
        pongs = 0
        while pongs < count:  # reading them lets the node read the next pings
            data = flooder.sock.recv(65536)
            assert data, "EOF before every pong"
            flooder.parser.receive_data(data)
            for event in flooder.parser.events_received():
                assert isinstance(event, Frame) and event.opcode is Opcode.PONG
                pongs += 1
        assert pongs == count
        assert server.network.is_ready(endpoint.resource_id) is True
    finally:
        flooder.sock.close()
        thread.join(TIMEOUT)


def test_a_ping_flooder_that_never_reads_is_disconnected_by_the_keepalive(ws: Net) -> None:
    interval = 0.1
    config = WsListenConfig(ping_interval=interval, send_buffer_limit=16 << 10, unsent_limit=4096)
    server, listener_id, addr = ws.server(config=config)
    flooder = RawPeer(ws, addr)
    flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    endpoint = accepted(server, listener_id)
    ping = Frame(Opcode.PING, b"p" * 125).serialize(mask=True, extensions=[])

    def flood() -> None:
        with contextlib.suppress(OSError):  # blocked once not read, then closed
            flooder.sock.sendall(ping * 5000)

    thread = threading.Thread(target=flood, name="flooder")
    thread.start()
    try:
        # Not read once its pongs fill the queue, then judged: no answer to our ping.
        assert server.expect(Disconnected) == Disconnected(endpoint)
    finally:
        flooder.sock.close()
        thread.join(TIMEOUT)


@pytest.mark.parametrize("unsent_limit", [None, 4096])
def test_large_text_and_binary_through_wss(
    ws: Net, tmp_path: Any, unsent_limit: int | None
) -> None:
    """Also with a tiny ``unsent_limit`` on both ends: TLS records then leave in many
    partial writes (the kernel takes a few KiB at a time)."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    config = WsListenConfig(
        certfile=str(cert_file), send_buffer_limit=32 << 20, unsent_limit=unsent_limit
    )
    _server, _listener_id, addr = ws.echo_server(config=config)
    client = ws.node("client")
    url = f"wss://localhost:{addr[1]}/secure"
    endpoint = ws.connected(
        client,
        url,
        ca_file=str(ca_file),
        send_buffer_limit=32 << 20,
        unsent_limit=unsent_limit,
    )
    payload = os.urandom(8 * 1024 * 1024)
    assert client.network.send(endpoint, payload) is SENT
    assert client.network.send(endpoint, "ü" * 100_000) is SENT
    assert client.expect(Message).data == payload
    assert client.expect(Message).data == "ü".encode() * 100_000  # echoed as binary


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
def test_outgoing_frames_are_what_websockets_builds(size: int, opcode: Opcode) -> None:
    """Data frames are built by the adapter (the fast path); they must be byte for byte
    what websockets' own serializer makes: unmasked from a server, and from a client
    the same frame once unmasked with its key."""
    payload = bytes(range(256)) * (size // 256) + b"a" * (size % 256)
    first = 0x80 | opcode.value
    ours = frame_header(first, size) + payload
    assert ours == Frame(opcode, payload).serialize(mask=False, extensions=[])
    masked = frame_header(first, size, 0x80)
    reference = Frame(opcode, payload).serialize(mask=True, extensions=[])
    assert reference[: len(masked)] == masked  # same header, mask bit set
    reader = ServerProtocol(max_size=None)  # parses what a client sends
    reader.state = OPEN
    reader.parser = reader.parse()
    next(reader.parser)
    wire = Masker().frame(first, payload)
    reader.receive_data(wire)
    (frame,) = reader.events_received()
    assert isinstance(frame, Frame)
    assert (frame.opcode, frame.data, frame.fin) == (opcode, payload, True)


def test_subprotocols(ws: Net) -> None:
    server, listener_id, addr = ws.server(config=WsListenConfig(subprotocols=("chat", "v2")))
    client = ws.node("client")
    ws.connected(client, addr, subprotocols=("v2",))
    assert server.expect(Accepted).listener_id == listener_id
    refused, _local = client.network.connect(
        Transport.WS, addr, config=WsConnectConfig(subprotocols=("other",))
    )
    assert client.expect(Connected) == Connected(refused, False)


def test_only_plain_ws_lets_the_node_write_to_the_socket_itself() -> None:
    """The node's direct write (``Remote._direct_socket``) is for plain ``ws`` with the
    adapter's own ``write``: never once TLS may wrap the socket, nor past an override."""

    class Overriding(WsRemote):
        def write(self, data: Any) -> int:
            return super().write(data)

    def made(cls: type[WsRemote], sock: socket.socket, tls: ssl.SSLContext | None) -> WsRemote:
        return cls(
            sock,
            ServerProtocol(),
            connecting=False,
            tls=tls,
            max_message_size=None,
            ping_interval=None,
        )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    a, b = socket.socketpair()
    with a, b:
        assert made(WsRemote, a, None)._direct_socket() is a
        assert made(WsRemote, a, context)._direct_socket() is None
        assert made(Overriding, a, None)._direct_socket() is None
