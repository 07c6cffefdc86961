"""Fuzz targets for the WebSocket input path (``message_io.adapters.ws``), both sides.

Server side: a ``WsLocal`` listener accepts a loopback TCP connection from the test,
which then plays the client: arbitrary or mutated opening handshakes (fed to
``pending``), and after a valid one, arbitrary, hostile and mutated masked frames (fed
to ``receive``), some of them in the same write as the handshake. Client side: a
``WsRemote`` from ``WsAdapter.connect`` talks to a plain socket, where the test plays the
server: arbitrary or mutated responses, then unmasked frames. The bytes are cut at drawn
points, and each piece is read as the node reads: ``pending`` until READY, then
``receive`` while the socket is readable, with ``take_output`` written back.

Properties (the adapter contract of ``message_io.network.adapter``):

* nothing escapes ``pending``, ``receive``, ``take_output`` or ``write`` but ``OSError``
  or ``FrameError``; ``pending`` returns a ``PendingStatus`` (with ``failure`` set when
  DISCONNECTED), ``receive`` a ``ReadStatus``;
* ``incomplete()`` stays within ``max_message_size`` plus :data:`INCOMPLETE_SLACK`;
* delivered messages are ``bytes`` or ``str``, never over ``max_message_size`` bytes;
* an end of stream ends a connection that is still open, in the handshake or after;
* the same bytes give the same messages and the same end, sent whole or cut anywhere;
* a valid stream delivers exactly its messages, and closes only on its close frame.
"""

from __future__ import annotations

import re
import select
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from hypothesis import strategies as st

from message_io.adapters.ws import (
    WsAdapter,
    WsConnectConfig,
    WsListenConfig,
    WsLocal,
    WsRemote,
    WsServerRemote,
)
from message_io.errors import FrameError
from message_io.network.adapter import PendingStatus, Readiness, ReadStatus, Remote

from .campaign import fuzz_target
from .mutate import cut, cuts
from .ws_wire import (
    BINARY,
    KEY,
    TEXT,
    Handshake,
    WsStream,
    accept_value,
    frame,
    hostile_streams,
    max_sizes,
    requests,
    responses,
    streams,
)

TIMEOUT: Final = 5.0
INCOMPLETE_SLACK: Final = 256
"""What ``incomplete()`` may hold beyond ``max_message_size``: a frame header (at most 14
bytes) and a control frame cut short among the fragments (at most 131), rounded up."""
_MAX_CALLS: Final = 10_000  # receive() calls for one piece before it counts as a hang
_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT per example


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _reset_on_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass  # already closed by the peer's reset


def _no_datagram(addr: Any, data: bytes) -> None:
    raise AssertionError("a WebSocket listener delivered a datagram")


@dataclass
class Outcome:
    """What a connection did with the bytes it was sent."""

    ready: bool = False
    messages: list[bytes | str] = field(default_factory=list)
    ended: str = ""
    """How it ended before the test's end of stream: '' (it did not), 'pending' or
    'receive' (returned DISCONNECTED), or the name of the exception raised."""
    failure: str = ""
    """The type of ``Remote.failure`` after a DISCONNECTED handshake."""


class Conn:
    """One WebSocket connection under test and the test's socket at the other end."""

    def __init__(self, remote: WsRemote, peer: socket.socket, max_size: int | None) -> None:
        self.remote = remote
        self.peer = peer
        self.max_size = max_size
        self.sent = 0
        self.out = Outcome()

    def close(self) -> None:
        _reset_on_close(self.peer)
        _reset_on_close(self.remote.socket)
        self.remote.close()
        self.peer.close()

    # -- what the node does, with every property of the contract checked -------------

    def _deliver(self, message: bytes | str) -> None:
        assert type(message) in (bytes, str), f"delivered a {type(message).__name__}"
        size = len(message.encode() if isinstance(message, str) else message)
        assert self.max_size is None or size <= self.max_size, (
            f"delivered {size} bytes, over max_message_size={self.max_size}"
        )
        self.out.messages.append(message)

    def _check_incomplete(self) -> None:
        held = self.remote.incomplete()
        assert isinstance(held, int)
        limit = self.sent if self.max_size is None else self.max_size
        assert 0 <= held <= limit + INCOMPLETE_SLACK, f"incomplete() = {held}"

    def pending(self) -> PendingStatus | None:
        """One pending() call; None if it raised one of the exceptions allowed."""
        try:
            status = self.remote.pending(Readiness.READ)
        except (OSError, FrameError) as exc:
            self.out.ended = type(exc).__name__
            return None
        assert isinstance(status, PendingStatus), status
        if status is PendingStatus.DISCONNECTED:
            assert isinstance(self.remote.failure, BaseException), "no failure set"
            self.out.ended = "pending"
            self.out.failure = type(self.remote.failure).__name__
        elif status is PendingStatus.READY:
            self.out.ready = True
        else:
            assert self.remote.pending_interest() in (Readiness.READ, Readiness.WRITE)
        self._check_incomplete()
        return status

    def receive(self) -> None:
        """One receive() call, then its output written back."""
        try:
            status = self.remote.receive(self._deliver)
        except (OSError, FrameError) as exc:
            self.out.ended = type(exc).__name__
            return
        assert isinstance(status, ReadStatus), status
        if status is ReadStatus.DISCONNECTED:
            self.out.ended = "receive"
        self._check_incomplete()
        try:
            output = self.remote.take_output()
            if output is not None:
                assert isinstance(output, bytes | bytearray | memoryview), type(output)
                if len(output):
                    self.remote.write(output)
        except OSError as exc:
            self.out.ended = self.out.ended or type(exc).__name__

    def drain(self) -> None:
        """receive() while the socket is readable, until the connection ends."""
        fd = self.remote.fileno()
        for _ in range(_MAX_CALLS):
            if self.out.ended or not _readable(fd, 0):
                return
            self.receive()
        raise AssertionError(f"receive() still readable after {_MAX_CALLS} calls")

    def _discard_output(self) -> None:
        """Read what the connection sent us (responses, pongs), so it never blocks."""
        try:
            while _readable(self.peer.fileno(), 0) and self.peer.recv(1 << 16):
                pass
        except OSError:
            pass  # reset by the connection: nothing more to read

    def send(self, piece: bytes) -> None:
        """Send ``piece`` and read it as the node would: pending() until the handshake is
        over, then receive() while readable."""
        self.peer.sendall(piece)
        self.sent += len(piece)
        self._discard_output()
        if self.out.ended:
            return
        assert _readable(self.remote.fileno(), TIMEOUT), "the bytes sent never arrived"
        if not self.out.ready:
            status = self.pending_while_readable()
            if status is not PendingStatus.READY:
                return
            if self.remote.buffered():
                self.receive()
        self.drain()

    def pending_while_readable(self) -> PendingStatus | None:
        """pending() until the handshake is decided or the socket has nothing more (one
        call reads a bounded amount: the node calls again while readable)."""
        fd = self.remote.fileno()
        for _ in range(_MAX_CALLS):
            status = self.pending()
            if status is not PendingStatus.INCOMPLETE or not _readable(fd, 0):
                return status
        raise AssertionError(f"pending() still readable after {_MAX_CALLS} calls")

    def end(self) -> None:
        """The test's end of stream: a connection still open must end."""
        if self.out.ended:
            return
        self.peer.shutdown(socket.SHUT_WR)
        assert _readable(self.remote.fileno(), TIMEOUT)
        ended = self.out.ended
        if not self.out.ready:
            status = self.pending_while_readable()
            assert status is not PendingStatus.INCOMPLETE, "the handshake outlived EOF"
            if status is PendingStatus.READY:
                self.drain()
        else:
            self.drain()
        assert self.out.ended, "the connection outlived EOF"
        self.out.ended = ended  # the outcome is what happened before the EOF


# --- the two sides ------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptions:
    max_size: int | None
    paths: tuple[str, ...] | None
    origins: tuple[str | None, ...] | None
    subprotocols: tuple[str, ...]

    def config(self) -> WsListenConfig:
        return WsListenConfig(
            max_message_size=self.max_size,
            ping_interval=None,
            paths=self.paths,
            origins=self.origins,
            subprotocols=self.subprotocols,
        )


server_options = st.builds(
    ServerOptions,
    max_sizes,
    st.sampled_from([None, ("/fuzz",)]),
    st.sampled_from([None, ("http://ok", None)]),
    st.sampled_from([(), ("chat",)]),
)


def server_conn(options: ServerOptions) -> Conn:
    """A connection accepted by a WsLocal; the test's socket is the client."""
    info = WsAdapter().listen(("127.0.0.1", 0), options.config())
    local = info.local
    assert isinstance(local, WsLocal)
    accepted: list[Remote] = []
    try:
        assert isinstance(info.local_addr, tuple)
        peer = socket.create_connection(info.local_addr[:2], timeout=TIMEOUT)
        assert _readable(local.fileno(), TIMEOUT)
        local.accept(lambda remote, _addr: accepted.append(remote), _no_datagram)
    finally:
        local.close()
    assert len(accepted) == 1 and isinstance(accepted[0], WsServerRemote), accepted
    return Conn(accepted[0], peer, options.max_size)


def client_conn(max_size: int | None, subprotocols: tuple[str, ...]) -> tuple[Conn, str]:
    """A WsRemote connected to a plain socket that plays the server, once it has sent
    its request; returns it and the request's key."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(TIMEOUT)
        port = server.getsockname()[1]
        config = WsConnectConfig(
            max_message_size=max_size, ping_interval=None, subprotocols=subprotocols
        )
        remote = WsAdapter().connect(f"ws://127.0.0.1:{port}/fuzz", config).remote
        assert isinstance(remote, WsRemote)
        peer, _addr = server.accept()
    conn = Conn(remote, peer, max_size)
    try:
        for _ in range(100):  # until the connect is done and the request written
            assert select.select([], [remote.fileno()], [], TIMEOUT)[1]
            assert remote.pending(Readiness.WRITE) is PendingStatus.INCOMPLETE
            if remote.pending_interest() is Readiness.READ:
                break
        request = bytearray()
        while b"\r\n\r\n" not in request:
            data = peer.recv(4096)
            assert data, f"EOF inside the request {bytes(request)!r}"
            request += data
        found = re.search(rb"\r\nSec-WebSocket-Key: ([^\r]+)\r\n", request)
        assert found, bytes(request)
        return conn, found.group(1).decode()
    except BaseException:
        conn.close()
        raise


def _valid_request(path: str = "/fuzz") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _valid_response(key: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_value(key)}\r\n\r\n"
    ).encode()


# --- runs -----------------------------------------------------------------------------


def run(conn: Conn, pieces: list[bytes]) -> Outcome:
    """Send the pieces one by one, then end the stream; the outcome, and the
    connection closed."""
    try:
        for piece in pieces:
            conn.send(piece)
            if conn.out.ended:
                break
        conn.end()
        return conn.out
    finally:
        conn.close()


def _pieces(handshake: bytes, data: bytes, points: list[int], early: bool) -> list[bytes]:
    """The handshake alone, then ``data`` cut at ``points``; ``early``: the first piece of
    ``data`` goes in the handshake's write."""
    pieces = cut(data, points)
    if early and pieces:
        return [handshake + pieces[0], *pieces[1:]]
    return [handshake, *pieces]


def _same(whole: Outcome, split: Outcome) -> None:
    assert split.messages == whole.messages, "the cuts changed the messages delivered"
    assert split.ended == whole.ended, "the cuts changed how the connection ended"
    assert split.ready == whole.ready
    assert split.failure == whole.failure


def server_frames(options: ServerOptions, stream: WsStream, points: list[int], early: bool) -> None:
    request = _valid_request()
    whole = run(server_conn(options), [request, stream.data] if stream.data else [request])
    split = run(server_conn(options), _pieces(request, stream.data, points, early))
    assert whole.ready, "a valid request was not accepted"
    _same(whole, split)
    if stream.valid:
        assert whole.messages == stream.messages
        assert whole.ended == ("receive" if stream.closes else "")


def client_frames(max_size: int | None, stream: WsStream, points: list[int], early: bool) -> None:
    outcomes = []
    for split_it in (False, True):
        conn, key = client_conn(max_size, ())
        response = _valid_response(key)
        if split_it:
            pieces = _pieces(response, stream.data, points, early)
        else:
            pieces = [response, stream.data] if stream.data else [response]
        outcomes.append(run(conn, pieces))
    whole, split = outcomes
    assert whole.ready, "a valid response was not accepted"
    _same(whole, split)
    if stream.valid:
        assert whole.messages == stream.messages
        assert whole.ended == ("receive" if stream.closes else "")


any_bytes = st.binary(max_size=600).map(lambda data: Handshake(data, []))

# --- server side ------------------------------------------------------------------------


@fuzz_target(
    short=40,
    options=server_options,
    handshake=st.one_of(requests(), any_bytes),
    points=cuts(8),
)
def test_ws_server_handshake(
    options: ServerOptions, handshake: Handshake, points: list[int]
) -> None:
    data = handshake.render()
    whole = run(server_conn(options), [data] if data else [])
    split = run(server_conn(options), cut(data, points))
    _same(whole, split)


@fuzz_target(
    short=40,
    stream=st.one_of(streams(masked=True), hostile_streams(masked=True)),
    points=cuts(),
    early=st.booleans(),
)
def test_ws_server_frames(stream: WsStream, points: list[int], early: bool) -> None:
    server_frames(ServerOptions(stream.max_size, None, None, ()), stream, points, early)


# --- client side ------------------------------------------------------------------------


@fuzz_target(
    short=40,
    max_size=max_sizes,
    subprotocols=st.sampled_from([(), ("chat",)]),
    handshake=st.one_of(responses(), any_bytes),
    points=cuts(8),
)
def test_ws_client_handshake(
    max_size: int | None, subprotocols: tuple[str, ...], handshake: Handshake, points: list[int]
) -> None:
    outcomes = []
    for split in (False, True):
        conn, key = client_conn(max_size, subprotocols)
        data = handshake.render(accept_value(key))
        outcomes.append(run(conn, cut(data, points) if split else [data] if data else []))
    _same(*outcomes)


@fuzz_target(
    short=40,
    stream=st.one_of(streams(masked=False), hostile_streams(masked=False)),
    points=cuts(),
    early=st.booleans(),
)
def test_ws_client_frames(stream: WsStream, points: list[int], early: bool) -> None:
    client_frames(stream.max_size, stream, points, early)


# --- what the targets found ---------------------------------------------------------------
# Each test below is the smallest form of a failure the targets above found.

_BAD_TEXT: Final = frame(TEXT, b"\xff", key=b"\x01\x02\x03\x04")
_AFTER: Final = frame(BINARY, b"after", key=b"\x05\x06\x07\x08")


def test_no_message_after_invalid_utf8_in_the_same_read() -> None:
    """RFC 6455 8.1: text that is not UTF-8 fails the connection, and (7.1.7) nothing
    the peer sent after it may be processed. Sent in one write, the binary frame behind
    the bad text frame must not be delivered, as it is not when the two come apart."""
    options = ServerOptions(1000, None, None, ())
    apart = run(server_conn(options), [_valid_request(), _BAD_TEXT, _AFTER])
    assert apart.messages == []
    together = run(server_conn(options), [_valid_request(), _BAD_TEXT + _AFTER])
    assert together.messages == []
    with_handshake = run(server_conn(options), [_valid_request() + _BAD_TEXT + _AFTER])
    assert with_handshake.messages == []


def test_a_rejected_request_with_more_bytes_behind_it_is_refused_quietly() -> None:
    """A request the server rejects (here: no Host, no Upgrade), with any byte after it
    in the same read (a pipelined request, a stray CRLF), must end the handshake with
    DISCONNECTED, not with an exception the adapter contract does not allow."""
    for data in (b"GET / HTTP/1.1\r\n\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n" * 2):
        conn = server_conn(ServerOptions(1000, None, None, ()))
        try:
            conn.send(data)
            assert conn.out.ended == "pending", conn.out
        finally:
            conn.close()


def test_a_close_or_an_error_that_comes_with_the_handshake_ends_the_connection() -> None:
    """A close frame, or a frame that breaks the protocol (reserved opcode 0xD; a ping
    over a max_message_size of 0), in the same write as a valid request, must end the
    connection: the handshake fails, or it succeeds and receive() (buffered() True)
    answers the close or reports the error, as when they come later. The peer need not
    send anything more."""
    cases = [
        (1000, frame(0x8, b"", key=b"\x00" * 4)),
        (1000, frame(0x8, b"\x03\xe8", key=b"\x01\x02\x03\x04")),
        (1000, frame(0xD, b"", key=b"\x00" * 4)),
        (0, frame(0x9, b"\x00", key=b"\x00" * 4)),
    ]
    for limit, bad in cases:
        conn = server_conn(ServerOptions(limit, None, None, ()))
        try:
            conn.send(_valid_request() + bad)
            assert conn.out.ended, f"still open after {bad!r} came with the handshake"
        finally:
            conn.close()


def test_a_request_for_a_path_not_served_is_refused() -> None:
    """A request for a path outside ``paths`` gets its 404 and must end the handshake
    with DISCONNECTED, as every other refusal does; it must not wait for the peer, and
    never turn READY (an ``Accepted``) when the peer then closes."""
    conn = server_conn(ServerOptions(1000, ("/fuzz",), None, ()))
    try:
        conn.send(_valid_request("/elsewhere"))
        assert conn.out.ended == "pending", conn.out
    finally:
        conn.close()
    outcome = run(server_conn(ServerOptions(1000, ("/fuzz",), None, ())), [_valid_request("/")])
    assert not outcome.ready, outcome
