"""``Transport.WS``: WebSocket (``ws://`` and ``wss://``), client and server.

The protocol is the ``websockets`` package's Sans-I/O layer (handshake, framing,
masking with its C speedups, validation, close codes); TLS is the standard ``ssl``
module, non-blocking. Both run inside the node's own poll loop: no asyncio.

* ``connect(Transport.WS, "ws://host:port/path")`` or ``"wss://host/path"``; a socket
  address (``"127.0.0.1:3000"``) means ``ws://127.0.0.1:3000/message-io-default``, the
  Rust crate's path. ``Connected(endpoint, True)`` comes after the opening handshake;
  ``Connected(endpoint, False)`` if TCP, TLS or the handshake fails (or
  ``connect_timeout``, 10 s by default, passes).
* ``listen(Transport.WS, "0.0.0.0:8080")``: ``Accepted`` after the handshake. A listen
  config with a certificate makes it ``wss``. Any path is accepted unless ``paths`` says
  otherwise (others get ``404``).
* Binary frames arrive as ``Message``; text frames as ``TextMessage`` (a ``Message``
  whose ``data`` is the UTF-8 bytes, plus ``text``). ``send(endpoint, b"...")`` sends a
  binary frame, ``send(endpoint, "...")`` a text frame.
* Pings are answered; the node pings every ``ping_interval`` seconds and disconnects a
  peer that sends nothing back for a whole interval. ``remove`` sends a close frame
  (1000), ``stop`` too (1001); neither waits for the reply. A protocol violation closes
  that connection with the right close code (1002, 1007, 1009...) and ``Disconnected``.
* A message may come in ``max_fragments`` frames (4096 by default; 1009 beyond). A
  request over websockets' handshake limits gets ``414`` or ``431``, then the close.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI, SecurityError
from websockets.frames import Opcode
from websockets.http11 import MAX_LINE_LENGTH, Request, Response
from websockets.protocol import CONNECTING, OPEN
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol
from websockets.uri import WebSocketURI, parse_uri

from ..codec.body_pool import BodyPool
from ..codec.ws_frames import FIN_BINARY, FIN_TEXT, FrameInput, Masker, frame_header
from ..errors import AddressError
from ..network.adapter import (
    Buffer,
    ConnectionInfo,
    Framing,
    HostName,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
    format_address,
    host_name,
    parse_host_port,
    resolve_address,
)
from ..network.ws_reader import WsReader
from ..util.throttle import LogThrottle
from .tcp import (
    INPUT_BUFFER_SIZE,
    TcpAdapter,
    TcpConnectConfig,
    TcpListenConfig,
    TcpLocal,
    connect_status,
)

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_PATH",
    "WsAdapter",
    "WsConnectConfig",
    "WsListenConfig",
    "WsLocal",
    "WsRemote",
]

log = logging.getLogger("message_io")

DEFAULT_PATH: Final = "/message-io-default"
"""The path used when ``connect`` is given a socket address, as in the Rust crate."""

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""The default largest message, sent or received (the same as ``FRAMED_TCP``)."""

DEFAULT_MAX_FRAGMENTS: Final = 4096
"""The default most frames one received message may come in."""

_READS_PER_EVENT: Final = 4
_TCP, _TLS, _WS = 0, 1, 2  # handshake phases

# The enum's members as globals (see tcp.py: a lookup on the enum costs 70 ns).
_OK: Final = ReadStatus.OK
_DISCONNECTED: Final = ReadStatus.DISCONNECTED


@dataclass(frozen=True, kw_only=True)
class WsConnectConfig(TcpConnectConfig):
    """How ``connect`` opens a WebSocket client connection.

    Attributes:
        ssl_context: The TLS context for ``wss://`` URLs. Default: the system's trusted
            certificates, verifying the certificate and the host name.
        ca_file: Trust the certificates in this PEM file instead (a private CA, a test
            certificate); ignored if ``ssl_context`` is given.
        server_hostname: The name to verify the certificate against (and send as SNI);
            default: the URL's host.
        max_message_size: The largest message received; bigger ones close the
            connection with 1009. ``send`` refuses bigger ones too.
        max_fragments: The most frames (fragments) a received message may come in,
            empty ones included; one more closes the connection with 1009. ``None``:
            no limit.
        ping_interval: Seconds between keepalive pings; a peer that sends nothing for
            a whole interval after a ping is disconnected. ``None``: no pings.
        origin: The ``Origin`` header to send, if any.
        headers: Extra handshake headers, as ``(name, value)`` pairs.
        subprotocols: Subprotocols to offer.
        connect_timeout: Seconds for TCP, TLS and the opening handshake together
            (default 10).

    The other fields (``source_address``, ``bind_device``, ``keepalive``, ``nodelay``,
    ``unsent_limit``, ``send_buffer_limit``) are as for TCP.
    """

    connect_timeout: float | None = 10.0
    ssl_context: ssl.SSLContext | None = None
    ca_file: str | None = None
    server_hostname: str | None = None
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS
    ping_interval: float | None = 20.0
    origin: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fragments(self.max_fragments)


@dataclass(frozen=True, kw_only=True)
class WsListenConfig(TcpListenConfig):
    """How ``listen`` opens a WebSocket server.

    Attributes:
        ssl_context: A server-side TLS context: the listener speaks ``wss``.
        certfile: Or a PEM certificate chain (and its key, if ``keyfile`` is not
            given): a default server context is built.
        keyfile: The key of ``certfile``, if it is not in ``certfile`` itself.
        paths: Accept only these request paths (others get 404). ``None``: any path.
        origins: Accept only these ``Origin`` headers (``None`` in the collection
            accepts requests without one). ``None``: any origin.
        subprotocols: Subprotocols the server speaks, best first: the first one that a
            client offers is chosen. A client that offers only others is refused.
        max_message_size: The largest message received (1009 beyond) and sent.
        max_fragments: As in :class:`WsConnectConfig`: fragments per received message,
            empty ones included (1009 beyond); ``None``: no limit.
        ping_interval: As in :class:`WsConnectConfig`.
        handshake_timeout: Seconds a client may take for TLS and the opening handshake
            (default 10); bytes trickled meanwhile do not extend it.

    The other fields (``bind_device``, ``keepalive``, ``nodelay``, ``unsent_limit``,
    ``reuse_address``, ``reuse_port``, ``backlog``, ``send_buffer_limit``) are as for
    TCP.
    """

    handshake_timeout: float | None = 10.0
    ssl_context: ssl.SSLContext | None = None
    certfile: str | None = None
    keyfile: str | None = None
    paths: Collection[str] | None = None
    origins: Collection[str | None] | None = None
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS
    ping_interval: float | None = 20.0
    subprotocols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fragments(self.max_fragments)


def _check_fragments(value: int | None) -> None:
    """The range of ``max_fragments`` (its type is checked with every field's)."""
    if value is not None and value < 1:
        raise ValueError(f"max_fragments must be an int >= 1 or None, not {value!r}")


def _client_context(config: WsConnectConfig) -> ssl.SSLContext:
    if config.ssl_context is not None:
        return config.ssl_context
    return ssl.create_default_context(cafile=config.ca_file)


def _server_context(config: WsListenConfig) -> ssl.SSLContext | None:
    if config.ssl_context is not None:
        return config.ssl_context
    if config.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.certfile, config.keyfile)
    return context


def parse_ws_address(addr: Any) -> WebSocketURI:
    """Turn what ``connect`` was given into a WebSocket URI.

    Raises:
        AddressError: not a ``ws://``/``wss://`` URL nor a socket address.
    """
    if isinstance(addr, str) and "://" in addr:
        try:
            return parse_uri(addr)
        except (InvalidURI, ValueError) as exc:  # urllib's own: a bad port, a bad IPv6
            raise AddressError(f"invalid WebSocket URL {addr!r}: {exc}") from None
    host, port = parse_host_port(addr)
    return parse_uri(f"ws://{format_address((host, port))}{DEFAULT_PATH}")


class WsRemote(Remote):
    """One WebSocket connection, client or server side, over TCP or TLS."""

    # Every attribute in a slot: no per-instance dict (the base classes have none of
    # their own slots, but a dict is only made for an attribute outside them).
    __slots__ = (
        "_accept",
        "_after",
        "_client",
        "_closed_early",
        "_failure",
        "_fd",
        "_feed",
        "_fragment_count",
        "_fragments",
        "_fragments_text",
        "_headers",
        "_heard",
        "_held_input",
        "_input",
        "_masker",
        "_out",
        "_phase",
        "_pinged",
        "_reader",
        "_request_seen",
        "_server_hostname",
        "_stream",
        "_tail",
        "_tls",
        "_want",
        "failure",
        "heartbeat_interval",
        "max_fragments",
        "max_message_size",
        "protocol",
        "socket",
    )

    full_duplex = False  # the protocol's state (and TLS's) serves both directions
    framing = Framing.FRAME  # a client masks every payload: frame() copies it anyway
    reports_incomplete = True
    has_output = True  # pongs and close replies
    text_messages = True
    _built_in = True

    def __init__(
        self,
        sock: socket.socket,
        protocol: ClientProtocol | ServerProtocol,
        *,
        connecting: bool,
        tls: ssl.SSLContext | None,
        server_hostname: str | None = None,
        max_message_size: int | None,
        ping_interval: float | None,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        accept: Callable[[ServerProtocol, Request], Response] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._headers = headers
        self.socket = sock
        self._stream: socket.socket = sock  # the TLS socket once wrapped
        self._fd = sock.fileno()
        self._tls = tls
        self._server_hostname = server_hostname
        self._phase = _TCP if connecting else (_TLS if tls is not None else _WS)
        self.protocol = protocol
        self._reader = protocol.reader  # its buffer: what a frame cut short left
        self._client = isinstance(protocol, ClientProtocol)
        self._accept = accept
        self._out = bytearray()  # handshake bytes not yet written
        # What is read goes to the protocol: during the handshake, only up to the end of
        # the request or response (see _feed_head); once open, through a FrameInput.
        self._feed: Callable[[bytes], None] = self._feed_head
        self._input: FrameInput | None = None
        self._request_seen = 0  # bytes before the request's first LF; -1 once one came
        self._tail = b""  # the last bytes of the request so far (to find its end)
        self._after: bytearray | None = None  # bytes behind the request, held
        self._held_input = False  # parsed by the protocol, not yet by receive()
        self._want = Readiness.WRITE if connecting else Readiness.READ
        # The message being received in fragments: their payloads so far, in one buffer
        # (a list of a million 1-byte bytes objects would hold 40 times the payload),
        # how many frames it came in (0: none under way), and its kind.
        self._fragments = bytearray()
        self._fragment_count = 0
        self._fragments_text = False
        self.max_fragments = max_fragments
        self._closed_early = False  # the peer's close frame (or EOF) came with the handshake
        self.max_message_size = max_message_size
        self.heartbeat_interval = ping_interval
        self._heard = True  # something arrived since the last heartbeat
        self._failure: Exception | None = None  # why we failed the connection (_fail)
        self._pinged = False
        self._masker = Masker() if self._client else None  # clients mask every frame
        if self._phase == _WS and self._client:
            self._request()

    def fileno(self) -> int:
        return self._fd

    # -- the opening handshake -------------------------------------------------------

    def pending(self, readiness: Readiness) -> PendingStatus:
        if self._phase == _TCP:
            if connect_status(self.socket) is PendingStatus.INCOMPLETE:
                return PendingStatus.INCOMPLETE
            if self._tls is not None:
                self._phase = _TLS
            else:
                self._phase = _WS
                self._request()
        if self._phase == _TLS:
            if not self._tls_handshake():
                return PendingStatus.INCOMPLETE
            self._phase = _WS
            if self._client:
                self._request()
        return self._ws_handshake()

    def pending_interest(self) -> Readiness:
        return self._want

    def _tls_handshake(self) -> bool:
        """Advance the TLS handshake; True once done."""
        if self._stream is self.socket:
            assert self._tls is not None
            self._stream = self._tls.wrap_socket(
                self.socket,
                server_side=not self._client,
                do_handshake_on_connect=False,
                server_hostname=self._server_hostname if self._client else None,
            )
        try:
            self._stream.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._want = Readiness.READ
            return False
        except ssl.SSLWantWriteError:
            self._want = Readiness.WRITE
            return False
        return True

    def _request(self) -> None:
        protocol = self.protocol
        assert isinstance(protocol, ClientProtocol)
        request = protocol.connect()
        for name, value in self._headers:
            request.headers[name] = value
        protocol.send_request(request)
        self._collect_handshake_output()

    def _collect_handshake_output(self) -> None:
        for chunk in self.protocol.data_to_send():
            self._out += chunk

    def _ws_handshake(self) -> PendingStatus:
        protocol = self.protocol
        if self._out and not self._flush_handshake():
            return PendingStatus.INCOMPLETE
        if protocol.state is OPEN and self._phase == _WS and not self._out:
            return PendingStatus.READY
        status = self._read_into_protocol()
        events = protocol.events_received()
        for event in events:
            if isinstance(event, Request):  # server side: the client's request
                assert isinstance(protocol, ServerProtocol)
                assert self._accept is not None
                response = self._accept(protocol, event)
                protocol.send_response(response)
                self._collect_handshake_output()
                # The protocol's parser keeps the request for the connection's life:
                # its headers are most of an idle connection's memory (1.7 KiB).
                event.headers.clear()
                if response.status_code != 101:  # refused (404...): answered, then closed
                    self.failure = ConnectionRefusedError(
                        f"refused with {response.status_code} {response.reason_phrase}"
                    )
                    self._flush_handshake()  # best effort: the connection closes anyway
                    return PendingStatus.DISCONNECTED
            elif isinstance(event, Response):  # client side: checked by the protocol
                if protocol.state is OPEN:
                    event.headers.clear()  # kept by the parser, as a request is
            else:  # _feed_head gives the protocol the request or response alone
                raise AssertionError(f"a frame parsed during the handshake: {event!r}")
        if protocol.state is not CONNECTING and self._input is None:
            self._open_input()
        if protocol.handshake_exc is not None:
            self.failure = protocol.handshake_exc
            self._collect_handshake_output()  # a server's error response (414, 431...)
            if not self._out and not self._client:
                self._out += self._refusal(protocol.handshake_exc)
            self._flush_handshake()  # best effort: the connection closes anyway
            return PendingStatus.DISCONNECTED
        if status is _DISCONNECTED and protocol.state is CONNECTING:
            self.failure = ConnectionError("the peer closed during the handshake")
            return PendingStatus.DISCONNECTED
        if self._out and not self._flush_handshake():
            return PendingStatus.INCOMPLETE
        if protocol.state is OPEN:
            return PendingStatus.READY
        if protocol.state is not CONNECTING:
            # Established, but a close frame (or EOF) came right behind the handshake:
            # ready all the same; receive() then delivers what came first, answers the
            # close and reports the disconnection.
            self._closed_early = True
            return PendingStatus.READY
        self._want = Readiness.READ
        return PendingStatus.INCOMPLETE

    def _feed_head(self, data: bytes) -> None:
        """Feed the request (or response) to the protocol, noting where a request's
        first line ended.

        Only the request or response goes in: bytes behind its blank line wait in
        ``_after`` until the connection is open (a server has answered), then go in
        through the ``FrameInput``, which must see every frame from the first (see
        :mod:`message_io.codec.ws_frames`). So a close frame or a protocol error has the
        same effect whether it comes with the request or later.
        """
        if self._after is not None:  # the request is complete: hold the rest
            self._after += data
            return
        seen = self._request_seen
        if 0 <= seen < MAX_LINE_LENGTH:
            found = data.find(b"\n", 0, MAX_LINE_LENGTH - seen) >= 0
            self._request_seen = -1 if found else seen + len(data)
        tail = self._tail
        end = (tail + data).find(b"\r\n\r\n")
        if end < 0:
            self._tail = (tail + data[-3:])[-3:]
            self.protocol.receive_data(data)
            return
        cut = end + 4 - len(tail)
        protocol = self.protocol
        protocol.receive_data(data[:cut])
        if self._client and protocol.state is not OPEN:
            # Refused (a body may follow) or failed: the protocol takes all there is.
            self._feed = protocol.receive_data
            if cut < len(data):
                protocol.receive_data(data[cut:])
            return
        self._after = bytearray(data[cut:])

    def _open_input(self) -> None:
        """The handshake is over: what is read from now on, starting with what came
        behind the request or response, goes in through a ``FrameInput`` (if open)."""
        protocol = self.protocol
        after, self._after = self._after, None
        if protocol.state is OPEN and not protocol.extensions:
            self._input = FrameInput(
                protocol, masked=not self._client, max_size=self.max_message_size
            )
            self._feed = self._input.feed
        else:
            self._feed = protocol.receive_data
        if after:
            # Parsed now that the connection is open, exactly as if in a later read.
            self._feed(bytes(after))
            self._held_input = True

    def _refusal(self, exc: Exception) -> bytes:
        """The answer of websockets' servers to a request over its size limits, for the
        older releases whose protocol only flags it (a SecurityError, as is in 14.0, as
        an InvalidMessage's cause in 16.1): 414 for an over-long request line, 431 for too
        many or too long header lines. Newer ones (17.4) answer by themselves."""
        cause = exc if isinstance(exc, SecurityError) else exc.__cause__
        if not isinstance(cause, SecurityError):
            return b""  # a malformed request: no answer, as websockets gives none
        assert isinstance(self.protocol, ServerProtocol)
        status = 431 if self._request_seen < 0 else 414  # did the request line end?
        text = f"Failed to open a WebSocket connection: {cause}.\n"
        return self.protocol.reject(status, text).serialize()

    def _flush_handshake(self) -> bool:
        """Write handshake bytes; True once all are written."""
        while self._out:
            written = self.write(self._out)
            if written <= 0:
                self._want = Readiness.WRITE
                return False
            del self._out[:written]
        return True

    # -- reading -----------------------------------------------------------------------

    def _read_into_protocol(self) -> ReadStatus:
        """Feed what the OS has (all of it, for TLS) to the protocol."""
        recv = self._stream.recv
        tls = self._stream is not self.socket
        for _ in range(_READS_PER_EVENT):
            try:
                data = recv(INPUT_BUFFER_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return _OK
            except (ConnectionError, ssl.SSLError) as exc:
                log.debug("websocket connection lost: %s", exc)
                self._receive_eof()
                return _DISCONNECTED
            if not data:
                self._receive_eof()
                return _DISCONNECTED
            self._feed(data)  # looked up each time: the handshake may change it
            if len(data) < INPUT_BUFFER_SIZE and not (tls and self._stream.pending()):  # type: ignore[attr-defined]
                return _OK
        if tls and self._stream.pending():  # type: ignore[attr-defined]
            # Decrypted bytes wait in the TLS layer, where readiness cannot see them.
            return self._read_into_protocol()
        return _OK

    def _receive_eof(self) -> None:
        source = self._input
        if source is not None:
            source.end()
        self.protocol.receive_eof()
        if source is not None:
            source.refresh()

    def incomplete(self) -> int:
        """Bytes of the frame being received (what the protocol's reader or the
        FrameInput holds of it) and of the fragments of an unfinished message, plus one
        while such a message is under way (so that one begun with empty fragments does
        not read as none)."""
        source = self._input
        kept = 0 if source is None else source.kept_size + source.kept_header
        return kept + self._held_outside()

    def _held_outside(self) -> int:
        """What :meth:`incomplete` counts outside the ``FrameInput``: the protocol's
        parser buffer and the fragments so far."""
        return len(self._reader.buffer) + len(self._fragments) + (self._fragment_count > 0)

    def buffered(self) -> bool:
        if self._closed_early or self._held_input:
            return True
        tls = self._stream is not self.socket
        return tls and self._stream.pending() > 0  # type: ignore[attr-defined]

    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        status = self._read_into_protocol()
        source = self._input
        frames = self.protocol.events_received() if source is None else source.take()
        if self._settle(frames, deliver):
            return _DISCONNECTED
        return status

    def _settle(self, frames: list[Any], deliver: Callable[[bytes | str], object]) -> bool:
        """Deliver the messages among ``frames`` (the frames of one read, in order) and
        act on the rest; True if the connection is over: failed by a protocol error
        (logged here), or closed by a close frame (replied to) or the end of the stream.
        Also what the node's compiled reader calls when a read needs the protocol."""
        self._held_input = False
        protocol = self.protocol
        if frames:
            self._heard = True
        for frame in frames:
            if frame.__class__ is bytes:  # a binary message taken by the FrameInput
                deliver(frame)
            elif self._on_frame(frame, deliver):
                break  # the connection was failed: no later frame is processed (RFC 7.1.7)
        # Ours (_fail), or the parser's (websockets documents parser_exc as where a
        # parse error is kept).
        error = self._failure if self._failure is not None else protocol.parser_exc
        if error is not None and not isinstance(error, EOFError):
            close = protocol.close_sent
            _protocol_errors.log(
                logging.INFO,
                "websocket protocol error, closing with %s: %s",
                close.code if close is not None else "no close frame",
                error,
            )
            return True
        return protocol.state is not OPEN  # a close frame (replied to) or EOF

    def _on_frame(self, frame: Any, deliver: Callable[[bytes | str], object]) -> bool:
        """Handle one received frame; True if it failed the connection."""
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                return self._deliver(frame.data, opcode is Opcode.TEXT, deliver)
            # The protocol refuses a data frame inside a fragmented message: none is.
            self._fragments += frame.data
            self._fragment_count = 1
            self._fragments_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            count = self._fragment_count + 1
            limit = self.max_fragments
            if limit is not None and count > limit:
                # websockets bounds the bytes of a message, not its frames: empty ones
                # would cost nothing there, and each costs a frame's work here.
                reason = f"a message in more than {limit} fragments"
                return self._fail(1009, reason, ValueError(reason))
            self._fragments += frame.data
            if not frame.fin:
                self._fragment_count = count
                return False
            data = self._fragments
            self._fragments = bytearray()
            self._fragment_count = 0
            return self._deliver(data, self._fragments_text, deliver)
        elif opcode is Opcode.PONG:
            self._pinged = False
        # PING is answered and CLOSE replied to by the protocol itself.
        return False

    def _deliver(
        self, data: bytes | bytearray, text: bool, deliver: Callable[[bytes | str], object]
    ) -> bool:
        """Deliver one whole message; True if it failed the connection (bad UTF-8)."""
        if not text:
            # websockets hands unmasked payloads over as bytearray: deliver bytes always.
            deliver(data if data.__class__ is bytes else bytes(data))
            return False
        try:
            deliver(data.decode())
        except UnicodeDecodeError as exc:
            return self._fail(1007, f"invalid UTF-8 at position {exc.start}", exc)
        return False

    def _fail(self, code: int, reason: str, exc: Exception) -> bool:
        """Fail the connection (RFC 6455 7.1.7): the protocol sends the close frame and
        discards what follows; ``receive`` logs ``exc`` and reports the disconnection."""
        protocol = self.protocol
        # Its parser runs ahead of these frames: if what came after them (an error, a
        # close frame, EOF) ended the connection already, that stands. (Failing a client
        # protocol again after EOF would trip an assertion in websockets.)
        if protocol.state is OPEN:
            protocol.fail(code, reason)
            self._failure = exc
            if self._input is not None:
                self._input.refresh()
        self._fragments = bytearray()
        self._fragment_count = 0
        return True

    def take_output(self) -> Buffer | None:
        # Protocol.writes is what data_to_send() hands over: looked at first, as the
        # common case is nothing to answer and the call would cost more than the look.
        if not self.protocol.writes:
            return None
        writes = self.protocol.data_to_send()
        if not writes:
            return None
        return b"".join(writes)  # an empty one is the protocol's "half-close": closing anyway

    # -- writing -----------------------------------------------------------------------

    # Whole data frames are built here rather than with Protocol.send_binary(), which
    # costs 1.5 to 2.7 us per message; the bytes are the same (see the tests). Control
    # frames (ping, pong, close) still come from the protocol.

    def frame(self, data: Buffer) -> Buffer | tuple[bytes, Buffer] | None:
        if self.protocol.state is not OPEN:
            return None  # our close frame is out: no data frame may follow (RFC 6455 5.5.1)
        masker = self._masker
        if masker is not None:
            return masker.binary(data)
        return frame_header(FIN_BINARY, len(data)) + data

    def frame_text(self, data: bytes) -> Buffer:
        if self.protocol.state is not OPEN:
            return b""
        masker = self._masker
        if masker is not None:
            return masker.frame(FIN_TEXT, data)
        return frame_header(FIN_TEXT, len(data)) + data

    def write(self, data: Buffer) -> int:
        try:
            return self._stream.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0

    def _send_pool(self) -> BodyPool | None:
        """A client's: the pool its masker takes large binary bodies from (see
        :mod:`message_io.codec.body_pool`); None on the server side, which copies
        nothing."""
        return self._masker.pool if self._masker is not None else None

    def _direct_socket(self) -> socket.socket | None:
        """The socket, for plain ``ws`` (never wrapped in TLS), from the built-in classes
        themselves: what :meth:`write` sends to as it is. A subclass gets its
        :meth:`write` called."""
        return self.socket if self._tls is None and self._built_in else None

    def _frame_reader(self) -> WsReader | None:
        """For plain ``ws`` once open, from the built-in classes themselves: the
        compiled reader (:mod:`message_io.network.ws_reader`) that the node calls in
        place of :meth:`receive` and :meth:`incomplete`, and whose framing it uses in
        place of :meth:`header` and :meth:`frame`. None before the handshake is over,
        with an extension, and for a subclass (the node calls its methods)."""
        source = self._input
        if source is None or self._tls is not None or not self._built_in:
            return None
        return WsReader(self, self.socket, source, self._masker, INPUT_BUFFER_SIZE)

    def write_many(self, buffers: list[Buffer]) -> int:
        if self._stream is self.socket:
            try:
                return self.socket.sendmsg(buffers)
            except BlockingIOError:
                return 0
        # TLS has no vectored write: join small buffers into one record instead.
        head = buffers[0]
        if len(head) >= INPUT_BUFFER_SIZE:
            return self.write(head)
        joined = bytearray()
        for buffer in buffers:
            if len(joined) + len(buffer) > 4 * INPUT_BUFFER_SIZE:
                break
            joined += buffer
        return self.write(joined)

    def heartbeat(self) -> None:
        source = self._input
        heard = self._heard or (source is not None and source.heard)
        if self._pinged and not heard:
            raise TimeoutError(f"no answer to a ping within {self.heartbeat_interval} s")
        self._heard = False
        if source is not None:
            source.heard = False
        if self.protocol.state is OPEN:
            self.protocol.send_ping(os.urandom(4))
            self._pinged = True

    def farewell(self, going_away: bool) -> bytes | None:
        protocol = self.protocol
        if protocol.state is not OPEN:
            return None
        protocol.send_close(1001 if going_away else 1000)
        if self._input is not None:
            self._input.refresh()
        return b"".join(protocol.data_to_send()) or None

    def close(self) -> None:
        self._stream.close()
        if self._stream is not self.socket:
            self.socket.close()


class WsServerRemote(WsRemote):
    """An accepted WebSocket connection: its frames are not masked, so a binary message
    goes out as a header followed by the payload itself, never copied."""

    __slots__ = ()

    framing = Framing.HEADER
    _built_in = True

    def header(self, size: int) -> bytes | None:
        if self.protocol.state is not OPEN:
            return None  # closing: no data frame may follow our close frame
        return frame_header(FIN_BINARY, size)


def _origin(value: str | None) -> Origin | None:
    return None if value is None else Origin(value)


class WsLocal(TcpLocal):
    """A WebSocket listening socket."""

    def __init__(self, sock: socket.socket, config: WsListenConfig) -> None:
        super().__init__(sock, config)
        self._ws_config = config
        self._tls = _server_context(config)
        self._paths = None if config.paths is None else frozenset(config.paths)

    def make_remote(self, sock: socket.socket) -> WsRemote:
        config = self._ws_config
        protocol = ServerProtocol(
            origins=None if config.origins is None else [_origin(o) for o in config.origins],
            subprotocols=[Subprotocol(p) for p in config.subprotocols] or None,
            max_size=config.max_message_size,
            logger=_PROTOCOL_LOG,
        )
        return WsServerRemote(
            sock,
            protocol,
            connecting=False,
            tls=self._tls,
            max_message_size=config.max_message_size,
            ping_interval=config.ping_interval,
            max_fragments=config.max_fragments,
            accept=self._answer,
        )

    def _answer(self, protocol: ServerProtocol, request: Request) -> Response:
        path = request.path.partition("?")[0]
        if self._paths is not None and path not in self._paths:
            return protocol.reject(404, f"no WebSocket endpoint at {path}\n")
        return protocol.accept(request)


class WsAdapter(TcpAdapter):
    """The adapter behind ``Transport.WS``."""

    connection_oriented = True
    packet_based = True
    max_message_size: ClassVar[int | None] = DEFAULT_MAX_MESSAGE_SIZE
    connect_config = WsConnectConfig
    listen_config = WsListenConfig

    def lookup(self, addr: Any, config: Any) -> HostName | None:
        uri = parse_ws_address(addr)
        return host_name((uri.host, uri.port), attempt_delay=config.happy_eyeballs_delay)

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        uri = parse_ws_address(addr)
        family, sockaddr = resolve_address((uri.host, uri.port))[0]
        return self.connect_to(addr, config, family, sockaddr)

    def connect_to(
        self, addr: Any, config: Any, family: socket.AddressFamily, sockaddr: tuple[Any, ...]
    ) -> ConnectionInfo:
        uri = parse_ws_address(addr)
        tls = _client_context(config) if uri.secure else None
        protocol = ClientProtocol(
            uri,
            origin=_origin(config.origin),
            subprotocols=[Subprotocol(p) for p in config.subprotocols] or None,
            max_size=config.max_message_size,
            logger=_PROTOCOL_LOG,
        )
        sock, local_addr = self.start_connect(family, sockaddr, config)
        remote = WsRemote(
            sock,
            protocol,
            connecting=True,
            tls=tls,
            server_hostname=config.server_hostname or uri.host,
            max_message_size=config.max_message_size,
            ping_interval=config.ping_interval,
            max_fragments=config.max_fragments,
            headers=config.headers,
        )
        return ConnectionInfo(remote, local_addr, sockaddr)

    def make_local(self, sock: socket.socket, config: Any) -> WsLocal:
        return WsLocal(sock, config)


# A peer can make protocol errors as fast as it can connect: their lines are rate-limited.
_protocol_errors: Final = LogThrottle(log, "websocket protocol error lines")

_PROTOCOL_LOG: Final = logging.getLogger("message_io.websockets")
"""The protocol layer's own log (quiet unless configured): the node logs what matters."""
_PROTOCOL_LOG.setLevel(logging.WARNING)
