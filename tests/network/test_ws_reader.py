"""The compiled reader of open plain ``ws`` connections (``network/ws_reader.py``): what
the node calls in place of ``WsRemote.receive``, ``incomplete``, ``header`` and
``frame``. Each test drives two ``WsRemote`` objects through their handshake over a
socket pair, then reads with the reader as the node does, and checks it does what the
remote's own methods would: messages, replies, the end, and the state that the protocol
and the heartbeat see."""

from __future__ import annotations

import os
import random
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from message_io.adapters.ws import WsRemote, WsServerRemote
from message_io.codec.ws_frames import Masker, frame_header
from message_io.network.adapter import PendingStatus, Readiness
from message_io.network.framed_reader import MAX_READ
from message_io.network.reader import CLOSED, OUTPUT, TEXT
from message_io.network.ws_reader import WsReader

from .conftest import TIMEOUT


def _open(
    server_cls: type[WsRemote],
    client_cls: type[WsRemote],
    ends: tuple[socket.socket, ...],
    max_message_size: int = 1 << 20,
) -> tuple[WsRemote, WsRemote]:
    """A server and a client remote on the two ends, through their opening handshake."""
    a, b = ends
    for sock in ends:
        sock.setblocking(False)
    server = server_cls(
        a,
        ServerProtocol(),
        connecting=False,
        tls=None,
        max_message_size=max_message_size,
        ping_interval=None,
        accept=lambda protocol, request: protocol.accept(request),
    )
    client = client_cls(
        b,
        ClientProtocol(parse_uri("ws://x/")),
        connecting=False,
        tls=None,
        max_message_size=max_message_size,
        ping_interval=None,
    )
    done = {server: False, client: False}
    while True:
        for remote in (client, server):
            if not done[remote]:
                status = remote.pending(Readiness.READ | Readiness.WRITE)
                assert status is not PendingStatus.DISCONNECTED, remote.failure
                done[remote] = status is PendingStatus.READY
        if all(done.values()):
            return server, client
        assert select.select([a, b], [], [], TIMEOUT)[0], "the handshake stalled"


@pytest.fixture
def pair() -> Iterator[tuple[WsRemote, WsRemote, WsReader, WsReader]]:
    ends = socket.socketpair()
    with ends[0], ends[1]:
        server, client = _open(WsServerRemote, WsRemote, ends)
        server_reader = server._frame_reader()
        client_reader = client._frame_reader()
        assert isinstance(server_reader, WsReader)
        assert isinstance(client_reader, WsReader)
        yield server, client, server_reader, client_reader


def _read(reader: WsReader, sock: socket.socket) -> tuple[list[Any], int]:
    """What one read takes, once ``sock`` has something."""
    assert select.select([sock], [], [], TIMEOUT)[0], "nothing to read"
    got: list[Any] = []
    return got, reader.read(got)


def _write(remote: WsRemote, data: Any) -> None:
    wire = b"".join(data) if isinstance(data, tuple) else bytes(data)
    assert remote.write(wire) == len(wire)


def _framers(remote: WsRemote) -> tuple[Any, Any]:
    """The framers of a fresh reader of ``remote`` (header, frame)."""
    reader = remote._frame_reader()
    assert reader is not None
    return reader.framers()


def test_only_the_built_in_classes_once_open_hand_out_a_reader() -> None:
    class Overriding(WsRemote):
        pass

    class OverridingServer(WsServerRemote):
        pass

    ends = socket.socketpair()
    with ends[0], ends[1]:
        fresh = WsServerRemote(
            ends[0],
            ServerProtocol(),
            connecting=False,
            tls=None,
            max_message_size=None,
            ping_interval=None,
        )
        assert fresh._frame_reader() is None  # the handshake is not over
    ends = socket.socketpair()
    with ends[0], ends[1]:
        server, client = _open(OverridingServer, Overriding, ends)
        assert server._frame_reader() is None
        assert client._frame_reader() is None


def test_binary_messages_text_and_a_ping_take_the_right_ways(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, client_reader = pair
    header, frame = client_reader.framers()
    assert header is None and frame is not None  # a client masks: whole frames
    _write(client, frame(b"one"))
    _write(client, frame(b"two"))
    got, result = _read(server_reader, server.socket)
    assert (got, result) == ([b"one", b"two"], 0)
    assert all(type(message) is bytes for message in got)

    # A text message is checked as UTF-8 by the remote; a ping is answered (OUTPUT).
    _write(client, client._masker.frame(0x81, "héllo".encode()))  # type: ignore[union-attr]
    _write(client, Masker().frame(0x89, b"p"))
    got, result = _read(server_reader, server.socket)
    assert got == ["héllo"]
    assert result == TEXT | OUTPUT  # the protocol's way: text may come
    pong = server.take_output()
    assert pong is not None
    client.protocol.receive_data(bytes(pong))
    [event] = client.protocol.events_received()
    assert isinstance(event, Frame) and event.opcode is Opcode.PONG and event.data == b"p"


def test_the_server_side_frames_with_headers_and_stops_once_closing(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, client_reader = pair
    header, frame = server_reader.framers()
    assert frame is None and header is not None
    assert header(5) == frame_header(0x82, 5)
    _write(server, header(5) + b"hello")  # type: ignore[operator]
    got, result = _read(client_reader, client.socket)
    assert (got, result) == ([b"hello"], 0)

    farewell = server.farewell(going_away=False)  # our close frame: no data frame after it
    assert farewell is not None
    assert header(5) is None
    assert server.header(5) is None  # the remote's own method agrees


def test_a_close_frame_read_ends_the_connection_and_is_answered(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, _ = pair
    client.protocol.send_close(1000, "bye")
    _write(client, b"".join(client.protocol.data_to_send()))
    got, result = _read(server_reader, server.socket)
    assert got == []
    assert result == CLOSED | OUTPUT | TEXT
    reply = server.take_output()
    assert reply is not None and Close.parse(bytes(reply)[2:]).code == 1000
    header, _ = server_reader.framers()
    assert header is not None and header(1) is None  # closing: no data frame any more
    assert server.protocol.state is not OPEN


def test_the_end_of_the_stream_ends_it(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, _ = pair
    _, frame = _framers(client)
    _write(client, frame(b"last"))
    client.socket.shutdown(socket.SHUT_WR)
    got, result = _read(server_reader, server.socket)
    if not result & CLOSED:  # the message and the end came in two reads
        more, result = _read(server_reader, server.socket)
        got += more
    assert got == [b"last"]
    assert result & CLOSED


def test_a_frame_cut_short_counts_as_incomplete(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, _ = pair
    _, frame = _framers(client)
    wire = frame(b"x" * 1000)
    assert isinstance(wire, bytes)
    _write(client, wire[:500])
    got, result = _read(server_reader, server.socket)
    assert (got, result) == ([], 0)
    assert server_reader.incomplete() == server.incomplete() > 0
    _write(client, wire[500:])
    got, result = _read(server_reader, server.socket)
    assert (got, result) == ([b"x" * 1000], 0)
    assert server_reader.incomplete() == server.incomplete() == 0

    # A header cut short goes to the protocol's parser: counted from there.
    wire = frame(b"y" * 300)
    assert isinstance(wire, bytes)
    _write(client, wire[:1])
    got, result = _read(server_reader, server.socket)
    assert (got, result) == ([], TEXT)  # the protocol's way: any kind may come
    assert server_reader.incomplete() == server.incomplete() == 1
    _write(client, wire[1:])
    got, result = _read(server_reader, server.socket)
    assert got == [b"y" * 300]
    assert server_reader.incomplete() == 0


def test_a_message_read_by_the_reader_answers_the_heartbeat(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, _ = pair
    server.heartbeat()  # sends a ping: the peer must be heard from before the next one
    _, frame = _framers(client)
    _write(client, frame(b"alive"))
    got, _ = _read(server_reader, server.socket)
    assert got == [b"alive"]
    server.heartbeat()  # heard: no TimeoutError
    with pytest.raises(TimeoutError):
        server.heartbeat()  # nothing since the last one


def test_bad_utf8_fails_the_connection_and_stops_the_framing(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, _ = pair
    _, frame = _framers(client)
    _write(client, frame(b"before"))
    _write(client, client._masker.frame(0x81, b"\xff"))  # type: ignore[union-attr]
    _write(client, frame(b"after"))
    got, result = _read(server_reader, server.socket)
    assert got == [b"before"]  # nothing after the failure is processed (RFC 6455 7.1.7)
    assert result == CLOSED | OUTPUT | TEXT
    reply = server.take_output()
    assert reply is not None and Close.parse(bytes(reply)[2:]).code == 1007
    header, _ = server_reader.framers()
    assert header is not None and header(1) is None


class _Recording(socket.socket):
    """A socket that records the size and flags of every ``recv`` (the reader's C
    socket calls fall back to the method for a subclass)."""

    def __init__(self, fileno: int) -> None:
        super().__init__(fileno=fileno)
        self.calls: list[tuple[int, int]] = []

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.calls.append((size, flags))
        return super().recv(size, flags)


def _recorded(reading: WsRemote, source: WsReader) -> tuple[_Recording, WsReader]:
    """A copy of ``reading``'s socket that records every ``recv`` (close it after use),
    and a reader like ``source`` that reads through it."""
    recording = _Recording(os.dup(reading.socket.fileno()))
    return recording, WsReader(reading, recording, source.source, source.masker, source.size)


def _drain(reader: WsReader, sock: socket.socket) -> list[Any]:
    """Every message ``sock`` has now, read as the node reads: until it has nothing."""
    got: list[Any] = []
    while select.select([sock], [], [], 0)[0]:
        assert reader.read(got) & CLOSED == 0
    return got


def _large_wire(remote: WsRemote, payloads: list[bytes]) -> bytes:
    """``payloads`` as the binary frames ``remote`` sends (masked if it is a client)."""
    header, frame = _framers(remote)
    parts: list[bytes] = []
    for payload in payloads:
        if frame is not None:
            made = frame(payload)
            parts.append(b"".join(made) if isinstance(made, tuple) else bytes(made))
        else:
            parts.append(header(len(payload)) + payload)
    return b"".join(parts)


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_large_payload_is_read_in_one_read_of_its_size(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str
) -> None:
    reading, sending, source = _sides(pair, side)
    recording, reader = _recorded(reading, source)
    with recording:
        large = [bytes([n]) * (65_536 + n) for n in range(3)]
        header_size = 14 if side == "server" else 10  # 8-byte length, and a key if masked
        _write(sending, _large_wire(sending, large[:1]))
        assert _drain(reader, recording) == large[:1]  # the first one tells it: large frames
        _write(sending, _large_wire(sending, large[1:]))
        got = _drain(reader, recording)
        assert got == large[1:]
        if side == "client":  # not masked: the bytes read are the message itself
            assert all(type(message) is bytes for message in got)
        # After the first: each header peeked, read apart, then the payload exactly.
        peeks = [call for call in recording.calls if call[1] == socket.MSG_PEEK]
        assert len(peeks) >= 2, recording.calls
        reads = [size for size, flags in recording.calls if flags == 0]
        for payload in large[1:]:
            assert reads.count(len(payload)) == 1
        assert reads.count(header_size) >= 2


def _mixed_wire(rng: random.Random, masked: bool) -> tuple[bytes, list[Any]]:
    """Frames of every kind a peer sends, large and small, and the messages they make:
    whole binary and text frames, pings, and binary messages in fragments."""
    sizes = (0, 1, 125, 126, 40_000, 65_535, 65_536, 200_000)
    frames: list[Frame] = []
    messages: list[Any] = []
    for _ in range(16):
        kind = rng.choice(("binary", "binary", "text", "ping", "fragments"))
        if kind == "binary":
            payload = rng.randbytes(rng.choice(sizes))
            frames.append(Frame(Opcode.BINARY, payload))
            messages.append(payload)
        elif kind == "text":
            text = "é" * (rng.choice(sizes) // 2)
            frames.append(Frame(Opcode.TEXT, text.encode()))
            messages.append(text)
        elif kind == "ping":
            frames.append(Frame(Opcode.PING, rng.randbytes(rng.choice((0, 1, 125)))))
        else:
            pieces = [rng.randbytes(rng.choice(sizes)) for _ in range(rng.choice((2, 3)))]
            opcodes = [Opcode.BINARY] + [Opcode.CONT] * (len(pieces) - 1)
            for at, (opcode, piece) in enumerate(zip(opcodes, pieces, strict=True)):
                frames.append(Frame(opcode, piece, fin=at == len(pieces) - 1))
            messages.append(b"".join(pieces))
    wire = b"".join(frame.serialize(mask=masked, extensions=[]) for frame in frames)
    return wire, messages


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("seed", range(8))
def test_frames_of_every_kind_cut_anywhere_come_whole_and_in_order(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str, seed: int
) -> None:
    reading, sending, reader = _sides(pair, side)
    rng = random.Random(seed)
    wire, messages = _mixed_wire(rng, masked=side == "server")
    got: list[Any] = []
    at = 0
    while at < len(wire):
        cut = min(len(wire), at + rng.choice((1, 7, 14, 1000, 40_000, 70_000, 300_000)))
        at += sending.write(wire[at:cut])  # what the socket's buffer takes
        got += _drain(reader, reading.socket)
        reading.take_output()  # the pongs
    assert [type(message) for message in got] == [type(message) for message in messages]
    assert got == messages
    assert reader.incomplete() == 0
    assert reading.protocol.state is OPEN


def test_a_large_frame_over_the_limit_still_goes_to_the_protocol(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader],
) -> None:
    server, client, server_reader, _ = pair
    _large_mode(server_reader, server, client)  # the next header is peeked
    _write(client, _large_wire(client, [b"b" * ((1 << 20) + 1)])[:100_000])
    result = 0
    while not result & CLOSED:
        got, result = _read(server_reader, server.socket)
        assert got == []  # nothing of the refused frame comes out
    reply = server.take_output()
    assert reply is not None and Close.parse(bytes(reply)[2:]).code == 1009


def _sides(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str
) -> tuple[WsRemote, WsRemote, WsReader]:
    """(the reading remote, the sending remote, the reader) for ``side``."""
    server, client, server_reader, client_reader = pair
    if side == "server":
        return server, client, server_reader
    return client, server, client_reader


def _large_mode(reader: WsReader, reading: WsRemote, sending: WsRemote) -> None:
    _write(sending, _large_wire(sending, [b"L" * 65_536]))
    assert _drain(reader, reading.socket) == [b"L" * 65_536]
    assert reader.large


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_header_read_apart_counts_as_incomplete(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str
) -> None:
    # The input guard's message timeout starts from what incomplete() says: a peer that
    # stops after a header must not read as holding nothing.
    reading, sending, reader = _sides(pair, side)
    _large_mode(reader, reading, sending)
    wire = _large_wire(sending, [b"x" * 65_536])
    head = len(wire) - 65_536
    _write(sending, wire[:head])
    assert _read(reader, reading.socket) == ([], 0)
    assert reader.source.left == 65_536
    assert reader.incomplete() == reading.incomplete() == head
    _write(sending, wire[head : head + 1000])
    assert _read(reader, reading.socket) == ([], 0)
    assert reader.incomplete() == reading.incomplete() == head + 1000
    _write(sending, wire[head + 1000 :])
    assert _drain(reader, reading.socket) == [b"x" * 65_536]
    assert reader.incomplete() == reading.incomplete() == 0


@pytest.mark.parametrize("side", ["server", "client"])
def test_text_control_and_close_frames_after_large_frames(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str
) -> None:
    reading, sending, reader = _sides(pair, side)
    _large_mode(reader, reading, sending)
    text = "é" * 32_768
    masker = sending._masker
    if masker is not None:
        _write(sending, masker.frame(0x81, text.encode()))
        _write(sending, masker.frame(0x89, b"p"))
    else:
        _write(sending, frame_header(0x81, len(text.encode())) + text.encode())
        _write(sending, frame_header(0x89, 1) + b"p")
    _write(sending, _large_wire(sending, [b"y" * 65_536]))
    sending.protocol.send_close(1000, "bye")
    _write(sending, b"".join(sending.protocol.data_to_send()))
    got: list[Any] = []
    result = 0
    while not result & CLOSED:
        more, result = _read(reader, reading.socket)
        got += more
    assert got == [text, b"y" * 65_536]
    reply = reading.take_output()
    assert reply is not None  # the pong and the closing handshake's answer


@pytest.mark.parametrize("side", ["server", "client"])
def test_the_end_of_the_stream_inside_a_payload_read_apart(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str
) -> None:
    reading, sending, reader = _sides(pair, side)
    _large_mode(reader, reading, sending)
    wire = _large_wire(sending, [b"z" * 65_536])
    _write(sending, wire[:-100])
    sending.socket.shutdown(socket.SHUT_WR)
    got: list[Any] = []
    result = 0
    while not result & CLOSED:
        more, result = _read(reader, reading.socket)
        got += more
    assert got == []  # the frame cut short is the protocol's: no message
    assert reader.source.left == reader.source.kept_size == 0


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_trickled_large_payload_is_read_a_usual_read_at_a_time(
    pair: tuple[WsRemote, WsRemote, WsReader, WsReader], side: str
) -> None:
    # Each read is allocated at the size it asks: after a short read of a large
    # payload, asking for all of its rest (up to 4 MiB) again would map and shrink a
    # block per byte the peer sends.
    reading, sending, source = _sides(pair, side)
    recording, reader = _recorded(reading, source)
    with recording:
        payload = bytes(range(256)) * 4096  # 1 MiB
        wire = _large_wire(sending, [payload])
        head = len(wire) - len(payload)
        _write(sending, wire[: head + 1])
        assert _drain(reader, recording) == []
        for at in range(head + 1, head + 40):
            _write(sending, wire[at : at + 1])
            assert _drain(reader, recording) == []
        asked = [size for size, flags in recording.calls if flags == 0]
        assert max(asked[-30:]) <= reader.size
        at = head + 40
        got: list[Any] = []
        while at < len(wire):
            at += sending.write(wire[at : at + 300_000])
            got += _drain(reader, recording)
        assert got == [payload]
        # Reads that fill up go back to asking for all of the rest.
        assert max(size for size, flags in recording.calls if flags == 0) > reader.size


def test_one_call_reads_at_most_max_read_bytes() -> None:
    """A call of the reader takes at most MAX_READ bytes of large payloads, however much
    the socket holds: what a connection adds to the node's unfinished messages between
    two checks of the node's cap is bounded by it."""
    ends = socket.socketpair()
    with ends[0], ends[1]:
        ends[1].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)  # room for 8 MiB
        server, client = _open(WsServerRemote, WsRemote, ends, max_message_size=32 << 20)
        source = server._frame_reader()
        assert isinstance(source, WsReader)
        recording, reader = _recorded(server, source)
        with recording:
            _large_mode(reader, server, client)
            wire = _large_wire(client, [bytes(range(256)) * (64 << 10)])  # 16 MiB
            at = 0
            while at < MAX_READ + (2 << 20):  # what the socket takes without a read
                written = client.write(wire[at : at + (1 << 20)])
                assert written > 0, f"only {at} bytes fit"
                at += written
            recording.calls.clear()
            got: list[Any] = []
            assert reader.read(got) == 0
            assert got == []
            asked = sum(size for size, flags in recording.calls if flags == 0)
            assert asked <= MAX_READ + reader.size
