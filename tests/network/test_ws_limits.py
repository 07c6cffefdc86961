"""``Transport.WS`` limits on what a peer may make the node hold: the frames a message
may come in (``max_fragments``), the memory its fragments take, what ``incomplete()``
reports of an unfinished message, and the answers to handshake requests over the size
limits. Misbehaving peers are raw sockets whose frames websockets builds."""

from __future__ import annotations

import base64
import logging
import os
import select
import socket
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from websockets import exceptions
from websockets.client import ClientProtocol
from websockets.exceptions import SecurityError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

import message_io.adapters.ws as ws_module
from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Message,
    SendStatus,
    TextMessage,
    Transport,
    WsConnectConfig,
    WsListenConfig,
)
from message_io.adapters.ws import DEFAULT_MAX_FRAGMENTS, WsLocal, WsRemote
from message_io.network.adapter import PendingStatus, Readiness, ReadStatus

from .conftest import TIMEOUT, Net, accepted, recv_exactly
from .test_ws import RawPeer

SENT = SendStatus.SENT


def fragments(
    parts: list[bytes], *, opcode: Opcode = Opcode.BINARY, mask: bool = True, fin: bool = True
) -> bytes:
    """The wire bytes of one message sent as ``len(parts)`` frames (the last one FIN
    unless ``fin`` is False)."""
    frames = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        frame = Frame(opcode if index == 0 else Opcode.CONT, part, fin and index == last)
        frames.append(frame.serialize(mask=mask, extensions=[]))
    return b"".join(frames)


def split(payload: bytes, count: int) -> list[bytes]:
    """``payload`` in ``count`` parts (the first ones 1 byte each, the last the rest)."""
    assert 1 <= count <= len(payload)
    return [payload[i : i + 1] for i in range(count - 1)] + [payload[count - 1 :]]


def check_still_served(server: Any, good: RawPeer, good_ep: Any) -> None:
    """The other connection is unaffected: its message arrives."""
    good.send_frame(Opcode.BINARY, b"still served")
    event = server.expect(Message)
    assert (event.endpoint, event.data) == (good_ep, b"still served")


# -- configuration ---------------------------------------------------------------------


def test_max_fragments_config() -> None:
    for config_class in (WsConnectConfig, WsListenConfig):
        assert config_class().max_fragments == DEFAULT_MAX_FRAGMENTS == 4096
        assert config_class(max_fragments=None).max_fragments is None
        assert config_class(max_fragments=1).max_fragments == 1
        for bad in (0, -1):
            with pytest.raises(ValueError, match="max_fragments"):
                config_class(max_fragments=bad)
        for wrong in (True, 1.5, "10"):
            with pytest.raises(TypeError, match="max_fragments"):
                config_class(max_fragments=wrong)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="send_buffer_limit"):  # the base still checks
            config_class(send_buffer_limit=0)


# -- the fragment cap, through a node --------------------------------------------------


@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
def test_a_message_in_4096_fragments_is_delivered_whole(ws: Net, opcode: Opcode) -> None:
    server, listener_id, addr = ws.server()
    raw = RawPeer(ws, addr)
    raw_ep = accepted(server, listener_id)
    good = RawPeer(ws, addr)
    good_ep = accepted(server, listener_id)
    payload = ("ü" * 5000).encode()  # the 1-byte parts cut characters in half
    raw.sock.sendall(fragments(split(payload, 4096), opcode=opcode))
    event = server.expect(TextMessage if opcode is Opcode.TEXT else Message)
    assert (event.endpoint, event.data) == (raw_ep, payload)
    assert type(event.data) is bytes
    if isinstance(event, TextMessage):
        assert event.text == "ü" * 5000
    check_still_served(server, good, good_ep)
    raw.sock.sendall(fragments([b""] * 4095 + [b"again"]))  # the count starts anew
    assert server.expect(Message).data == b"again"


@pytest.mark.parametrize("empty", [False, True], ids=["1-byte", "empty"])
def test_4097_fragments_close_with_1009(
    ws: Net, caplog: pytest.LogCaptureFixture, empty: bool
) -> None:
    caplog.set_level(logging.INFO, logger="message_io")
    server, listener_id, addr = ws.server()
    good = RawPeer(ws, addr)
    good_ep = accepted(server, listener_id)
    raw = RawPeer(ws, addr)
    raw_ep = accepted(server, listener_id)
    parts = [b""] * 4097 if empty else split(b"x" * 5000, 4097)
    # A whole message right behind, in the same write: never delivered (RFC 6455 7.1.7).
    after = Frame(Opcode.BINARY, b"after the limit").serialize(mask=True, extensions=[])
    raw.sock.sendall(fragments(parts) + after)
    assert raw.close_code() == 1009
    assert server.expect(Disconnected) == Disconnected(raw_ep)
    check_still_served(server, good, good_ep)
    logged = [r.getMessage() for r in caplog.records if "fragments" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "1009" in logged[0]


def test_a_failed_connection_delivers_nothing_after(ws: Net) -> None:
    """Frames that came behind the one that failed the connection (bad UTF-8 here) in
    the same read are not delivered."""
    server, listener_id, addr = ws.server()
    raw = RawPeer(ws, addr)
    raw_ep = accepted(server, listener_id)
    bad = Frame(Opcode.TEXT, b"\xff not utf-8").serialize(mask=True, extensions=[])
    after = Frame(Opcode.BINARY, b"after").serialize(mask=True, extensions=[])
    raw.sock.sendall(bad + after)
    assert raw.close_code() == 1007
    assert server.expect(Disconnected) == Disconnected(raw_ep)


def test_the_cap_is_configurable_and_none_disables_it(ws: Net) -> None:
    server, listener_id, addr = ws.server(config=WsListenConfig(max_fragments=3))
    raw = RawPeer(ws, addr)
    raw_ep = accepted(server, listener_id)
    raw.sock.sendall(fragments([b"a", b"", b"c"]))
    assert server.expect(Message).data == b"ac"
    raw.sock.sendall(fragments([b"a", b"b", b"c", b"d"]))
    assert raw.close_code() == 1009
    assert server.expect(Disconnected) == Disconnected(raw_ep)

    unbounded, unbounded_id, unbounded_addr = ws.server(
        config=WsListenConfig(max_fragments=None), name="unbounded"
    )
    raw = RawPeer(ws, unbounded_addr)
    accepted(unbounded, unbounded_id)
    raw.sock.sendall(fragments([b""] * 20_000 + [b"end"]))
    assert unbounded.expect(Message).data == b"end"


def test_the_client_side_cap(ws: Net) -> None:
    """A client's ``max_fragments`` bounds what its server sends (a raw one here)."""
    listener = ws._keep(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(TIMEOUT)
    client = ws.node("client")
    config = WsConnectConfig(max_fragments=2)
    endpoint, _local = client.network.connect(
        Transport.WS, f"ws://127.0.0.1:{listener.getsockname()[1]}/", config=config
    )
    peer, _addr = listener.accept()
    ws._keep(peer)
    peer.settimeout(TIMEOUT)
    protocol = ServerProtocol()
    while not (events := protocol.events_received()):
        protocol.receive_data(peer.recv(65536))
    (request,) = events
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    peer.sendall(b"".join(protocol.data_to_send()))
    assert client.expect(Connected) == Connected(endpoint, True)

    peer.sendall(fragments([b"tw", b"o"], mask=False))
    assert client.expect(Message).data == b"two"
    peer.sendall(fragments([b"th", b"re", b"e"], mask=False))
    assert client.expect(Disconnected) == Disconnected(endpoint)
    while not (events := protocol.events_received()):
        data = peer.recv(65536)
        assert data, "EOF before the close frame"
        protocol.receive_data(data)
    (close,) = events
    assert isinstance(close, Frame)
    assert close.opcode is Opcode.CLOSE
    assert Close.parse(close.data).code == 1009


# -- a served connection, driven by hand: memory and incomplete() ----------------------


class Served:
    """A server-side WsRemote on one end of a socket pair, after the opening handshake;
    the test writes the client's bytes into the other end and calls :meth:`read`."""

    def __init__(self, config: WsListenConfig) -> None:
        self.peer, ours = socket.socketpair()
        self.peer.settimeout(TIMEOUT)
        ours.setblocking(False)
        self._ours = ours
        self._unused = socket.socket()
        self.remote: WsRemote = WsLocal(self._unused, config).make_remote(ours)
        self.messages: list[bytes | str] = []
        key = base64.b64encode(os.urandom(16)).decode()
        self.peer.sendall(
            (
                "GET /manual HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while (status := self.remote.pending(Readiness.READ)) is not PendingStatus.READY:
            assert status is PendingStatus.INCOMPLETE
            assert select.select([ours], [], [], TIMEOUT)[0], "no handshake"
        response = bytearray()
        while not response.endswith(b"\r\n\r\n"):
            response += recv_exactly(self.peer, 1)
        assert response.startswith(b"HTTP/1.1 101 ")

    def send(self, wire: bytes) -> None:
        """Write ``wire`` in 64 KiB pieces, each one read by the remote before the next
        (on a socket pair, what ``sendall`` wrote is there to read when it returns)."""
        view = memoryview(wire)
        for at in range(0, len(view), 65536):
            self.peer.sendall(view[at : at + 65536])
            while select.select([self._ours], [], [], 0)[0]:
                assert self.remote.receive(self.messages.append) is ReadStatus.OK

    def close(self) -> None:
        self.remote.close()
        self.peer.close()
        self._unused.close()


@pytest.fixture
def served() -> Iterator[Served]:
    connection = Served(WsListenConfig(max_fragments=None))
    try:
        yield connection
    finally:
        connection.close()


def test_100k_one_byte_fragments_hold_about_their_payload(served: Served) -> None:
    count = 100_000
    wire = fragments([b"x"] * count, fin=False)  # built before measuring
    last = Frame(Opcode.CONT, b"!", True).serialize(mask=True, extensions=[])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        served.send(wire)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert served.messages == []
    # Everything the connection holds for the message: the payload and little else
    # (a list of 1-byte bytes objects held 42 times the payload).
    assert count <= held < 1.5 * count, held
    assert sys.getsizeof(served.remote._fragments) < 1.5 * count
    assert count <= served.remote.incomplete() <= count + 1
    served.send(last)
    assert served.messages == [b"x" * count + b"!"]
    assert type(served.messages[0]) is bytes
    assert served.remote.incomplete() == 0
    assert sys.getsizeof(served.remote._fragments) < 100  # released


def test_incomplete_counts_a_partial_frame_and_fragments(served: Served) -> None:
    remote = served.remote
    assert remote.incomplete() == 0
    whole = Frame(Opcode.BINARY, b"y" * 1000).serialize(mask=True, extensions=[])
    served.send(whole[:308])  # its 8-byte header and mask, and 300 bytes of payload
    assert 300 <= remote.incomplete() <= 308
    served.send(whole[308:])
    assert served.messages == [b"y" * 1000]
    assert remote.incomplete() == 0  # between messages

    served.send(fragments([b"ab" * 5], opcode=Opcode.TEXT, fin=False))
    assert 10 <= remote.incomplete() <= 11
    served.send(fragments([b""], opcode=Opcode.CONT, fin=False))  # an empty one
    assert 10 <= remote.incomplete() <= 11
    cont = Frame(Opcode.CONT, b"c" * 50, True).serialize(mask=True, extensions=[])
    served.send(cont[:26])  # 6 bytes of header and mask, then 20 of payload
    assert 30 <= remote.incomplete() <= 37
    served.send(cont[26:])
    assert served.messages[1:] == ["ab" * 5 + "c" * 50]
    assert remote.incomplete() == 0


def test_incomplete_is_nonzero_inside_a_message_of_empty_fragments(served: Served) -> None:
    served.send(fragments([b"", b""], fin=False))
    assert served.remote.incomplete() > 0  # a message is under way, holding no byte
    served.send(fragments([b""], opcode=Opcode.CONT))
    assert served.messages == [b""]
    assert served.remote.incomplete() == 0


def _client_remote() -> tuple[WsRemote, socket.socket]:
    """A client-side WsRemote on one end of a socket pair, after the opening handshake
    (answered by websockets on the other end, which is returned)."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(TIMEOUT)
    protocol = ClientProtocol(parse_uri("ws://localhost/"), max_size=None)
    remote = WsRemote(
        ours, protocol, connecting=False, tls=None, max_message_size=None, ping_interval=None
    )
    assert remote.pending(Readiness.WRITE) is PendingStatus.INCOMPLETE  # request written
    server = ServerProtocol()
    while not (events := server.events_received()):
        server.receive_data(peer.recv(65536))
    assert isinstance(events[0], Request)
    server.send_response(server.accept(events[0]))
    peer.sendall(b"".join(server.data_to_send()))
    while remote.pending(Readiness.READ) is not PendingStatus.READY:
        assert select.select([ours], [], [], TIMEOUT)[0], "no handshake response"
    return remote, peer


def _bad_text() -> bytes:
    return Frame(Opcode.TEXT, b"\xff" * 65532).serialize(mask=False, extensions=[])


def _one_fragment_too_many() -> bytes:
    parts = [b"x"] * DEFAULT_MAX_FRAGMENTS + [b"y" * 53244]
    return fragments(parts, mask=False, fin=False)


@pytest.mark.parametrize("wire", [_bad_text, _one_fragment_too_many], ids=["1007", "1009"])
def test_failing_a_client_connection_that_the_peer_closed_already(wire: Any) -> None:
    """The frame that fails the connection ends the 64 KiB the read asked for, and the
    server's EOF is right behind it: read in the same receive(), which returns
    DISCONNECTED (the protocol's parser saw the EOF first and closed it)."""
    remote, peer = _client_remote()
    try:
        data = wire()
        assert len(data) == 65536
        peer.sendall(data)
        peer.shutdown(socket.SHUT_WR)
        delivered: list[bytes | str] = []
        assert remote.receive(delivered.append) is ReadStatus.DISCONNECTED
        assert delivered == []
    finally:
        remote.close()
        peer.close()


# -- handshake requests over the size limits -------------------------------------------


def _upgrade_headers() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    ).encode()


_HEADERS = _upgrade_headers().count(b"\r\n")

OVERSIZED = {
    "9000-byte-request-line": (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + _upgrade_headers() + b"\r\n",
        414,
    ),
    "129-headers": (
        b"GET / HTTP/1.1\r\n"
        + _upgrade_headers()
        + b"".join(b"X-Filler-%d: v\r\n" % i for i in range(129 - _HEADERS))
        + b"\r\n",
        431,
    ),
    "9000-byte-header-line": (
        b"GET / HTTP/1.1\r\n" + _upgrade_headers() + b"X-Long: " + b"b" * 9000 + b"\r\n\r\n",
        431,
    ),
}


def _refused(ws: Net, addr: Any, request: bytes) -> bytes:
    """What the server answers ``request`` with, up to the EOF that follows."""
    sock = ws._keep(socket.create_connection(addr, timeout=TIMEOUT))
    sock.sendall(request)
    answer = bytearray()
    while data := sock.recv(65536):
        answer += data
    return bytes(answer)


def _check_refusals(ws: Net) -> None:
    server, listener_id, addr = ws.server()
    good = RawPeer(ws, addr)
    good_ep = accepted(server, listener_id)
    for name, (request, status) in OVERSIZED.items():
        answer = _refused(ws, addr, request)
        assert answer.startswith(b"HTTP/1.1 %d " % status), (name, answer[:100])
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"\r\nConnection: close\r\n" in head + b"\r\n"
        assert body.startswith(b"Failed to open a WebSocket connection")
        check_still_served(server, good, good_ep)
    # None of them was accepted (else an Accepted would have come before a Message);
    # a new client is.
    client = ws.node("client")
    endpoint = ws.connected(client, addr)
    assert server.expect(Accepted).listener_id == listener_id
    assert client.network.send(endpoint, b"a new one") is SENT
    assert server.expect(Message).data == b"a new one"


def test_oversized_requests_get_414_and_431(ws: Net) -> None:
    _check_refusals(ws)


class _FlagsOnly(ServerProtocol):
    """A ServerProtocol as the older websockets releases have it (16.1 still does): a
    request over the size limits sets ``handshake_exc`` (an ``InvalidMessage`` caused by
    a ``SecurityError``) and gets no answer; the adapter must answer by itself."""

    def send_response(self, response: Response) -> None:
        exc = self.handshake_exc
        if response.status_code in (414, 431) and isinstance(exc, SecurityError):
            # (InvalidMessage is looked up here: 14.0 warns that it is deprecated.)
            wrapped = exceptions.InvalidMessage("did not receive a valid HTTP request")
            wrapped.__cause__ = SecurityError("line too long")  # it did not tell which
            self.handshake_exc = wrapped
            self.send_eof()
            self.parser = self.discard()
            next(self.parser)
            return
        super().send_response(response)


def test_oversized_requests_with_a_protocol_that_only_flags_them(
    ws: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "ServerProtocol", _FlagsOnly)
    _check_refusals(ws)
