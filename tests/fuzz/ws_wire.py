"""WebSocket bytes for the fuzz targets, written from RFC 6455 and not from the library:
frames (valid, hostile, mutated), opening-handshake requests and responses.

A stream from :func:`streams` carries the messages it must deliver when it is not
mutated; :func:`hostile_frames` are single frames that break one rule each.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

from hypothesis import strategies as st

from .mutate import Mutation, apply_mutations, mutations, pattern, short_repr

__all__ = [
    "ACCEPT",
    "CONT",
    "KEY",
    "Handshake",
    "WsStream",
    "accept_value",
    "frame",
    "hostile_streams",
    "max_sizes",
    "requests",
    "responses",
    "streams",
]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

ACCEPT: Final = b"<accept>"
"""Stands in a response for the ``Sec-WebSocket-Accept`` value of the client's key."""

KEY: Final = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` that answers ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def _masked(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    length: int | None = None,
    form: int = 0,
) -> bytes:
    """One frame (RFC 6455 5.2). ``key``: masked with it. ``length``: announce this
    instead of the payload's length. ``form``: the length in 16 or 64 bits even where 7
    would do (0: the shortest, as the RFC requires)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    mask = 0x80 if key is not None else 0
    if size < 126 and form == 0:
        head = bytes((first, mask | size))
    elif size < 65536 and form != 64:
        head = bytes((first, mask | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, mask | 127)) + size.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + _masked(payload, key)


max_sizes = st.sampled_from([None, 0, 1, 2, 7, 125, 126, 127, 128, 300, 65536])
"""``max_message_size`` values: small ones, so that inputs reach the limit, and the
7-bit and 16-bit length boundaries."""

_keys = st.binary(min_size=4, max_size=4)
_close_codes = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999])


@dataclass(frozen=True)
class WsStream:
    """Frames from one peer, and what they deliver when not mutated."""

    max_size: int | None
    frames: list[bytes]
    messages: list[bytes | str]
    closes: bool
    """The last frame is a close frame: the connection ends after it."""
    valid: bool

    @property
    def data(self) -> bytes:
        return b"".join(self.frames)

    def __repr__(self) -> str:
        frames = ", ".join(map(short_repr, self.frames))
        messages = repr(self.messages)
        if len(messages) > 2000:
            messages = f"<{len(self.messages)} messages>"
        return (
            f"WsStream(max_size={self.max_size!r}, frames=[{frames}], messages={messages}, "
            f"closes={self.closes!r}, valid={self.valid!r})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's reports
        printer.text(repr(self))


def _size_cap(max_size: int | None) -> int:
    return 300 if max_size is None else min(max_size, 300)


@st.composite
def _message(draw: st.DrawFn, max_size: int | None) -> bytes | str:
    cap = _size_cap(max_size)
    if draw(st.booleans()):
        text = draw(st.text(max_size=cap))
        return text.encode()[:cap].decode("utf-8", "ignore")
    sizes = st.integers(min_value=0, max_value=cap)
    if max_size is not None:  # right at the limit, whatever its size
        sizes = st.one_of(sizes, st.just(max_size))
    size = draw(sizes)
    if size <= 64:
        return draw(st.binary(min_size=size, max_size=size))
    return pattern(size, draw(st.integers(0, 255)))


def _control(draw: st.DrawFn, masked: bool, room: int | None) -> list[bytes]:
    """Zero or one ping or pong (allowed between any two frames, fragments too), with a
    payload of at most ``room`` bytes: websockets holds every frame to the room left in
    ``max_message_size``, control frames too, and inside a fragmented message the room
    is what the fragments so far left."""
    if draw(st.integers(0, 3)) != 0:
        return []
    opcode = draw(st.sampled_from([PING, PONG]))
    key = draw(_keys) if masked else None
    cap = 125 if room is None else min(125, room)
    return [frame(opcode, draw(st.binary(max_size=cap)), key=key)]


@st.composite
def streams(draw: st.DrawFn, masked: bool) -> WsStream:
    """Valid streams within a drawn ``max_message_size``: messages (binary and text,
    fragmented or not, up to the limit), pings and pongs among their frames, and maybe a
    close frame at the end. Frames to a server are ``masked``."""
    limit = draw(max_sizes)
    frames: list[bytes] = []
    messages = draw(st.lists(_message(limit), max_size=6))
    for message in messages:
        data = message.encode() if isinstance(message, str) else message
        points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
        bounds = [0, *points, len(data)]
        pieces = [data[a:b] for a, b in pairwise(bounds)]
        for i, piece in enumerate(pieces):
            inside = sum(map(len, pieces[:i])) if i else 0
            frames += _control(draw, masked, None if limit is None else limit - inside)
            opcode = CONT if i else (TEXT if isinstance(message, str) else BINARY)
            key = draw(_keys) if masked else None
            frames.append(frame(opcode, piece, fin=i == len(pieces) - 1, key=key))
    frames += _control(draw, masked, limit)
    closes = draw(st.booleans())
    if closes:
        key = draw(_keys) if masked else None
        room = 125 if limit is None else min(125, limit)  # the limit holds here too
        if room < 2 or draw(st.booleans()):
            payload = b""
        else:
            reason = draw(st.text(max_size=40)).encode()[: room - 2].decode("utf-8", "ignore")
            payload = draw(_close_codes).to_bytes(2, "big") + reason.encode()
        frames.append(frame(CLOSE, payload, key=key))
    return WsStream(limit, frames, messages, closes, valid=True)


_BAD_UTF8: Final = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"]


@st.composite
def hostile_frames(draw: st.DrawFn, masked: bool, max_size: int | None) -> bytes:
    """One frame that breaks a rule of RFC 6455 (or sits right on a limit)."""
    key = draw(_keys) if masked else None
    kind = draw(st.integers(0, 13))
    over = (max_size if max_size is not None else 1 << 20) + 1
    if kind == 0:  # reserved opcodes
        opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        return frame(opcode, draw(st.binary(max_size=20)), key=key)
    if kind == 1:  # reserved bits, no extension negotiated
        opcode = draw(st.sampled_from([TEXT, BINARY, PING, CONT]))
        return frame(opcode, b"x", rsv=draw(st.integers(1, 7)), key=key)
    if kind == 2:  # control frame too long, or fragmented
        if draw(st.booleans()):
            return frame(PING, pattern(draw(st.integers(126, 200)), 1), key=key)
        return frame(draw(st.sampled_from([PING, PONG, CLOSE])), b"", fin=False, key=key)
    if kind == 3:  # bad close payloads
        code = draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]))
        payload = draw(
            st.sampled_from(
                [b"\x03", code.to_bytes(2, "big"), b"\x03\xe8" + draw(st.sampled_from(_BAD_UTF8))]
            )
        )
        return frame(CLOSE, payload, key=key)
    if kind == 4:  # a continuation with nothing to continue, or a message left open
        if draw(st.booleans()):
            return frame(CONT, b"c", fin=draw(st.booleans()), key=key)
        return frame(draw(st.sampled_from([TEXT, BINARY])), b"open", fin=False, key=key)
    if kind == 5:  # the wrong masking for the direction
        wrong = None if masked else draw(_keys)
        return frame(BINARY, b"m", key=wrong)
    if kind == 6:  # text that is not UTF-8, whole or across fragments
        bad = draw(st.sampled_from(_BAD_UTF8))
        if draw(st.booleans()):
            return frame(TEXT, bad, key=key)
        return frame(TEXT, bad[:1], fin=False, key=key) + frame(CONT, bad[1:], key=key)
    if kind == 7:  # a length over the limit, announced with no payload behind it
        length = draw(st.sampled_from([over, 1 << 31, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]))
        return frame(BINARY, b"", length=length, key=key)
    if kind == 8:  # one byte over the limit, for real
        if over > 70_000:
            return frame(BINARY, b"", length=over, key=key)
        return frame(draw(st.sampled_from([TEXT, BINARY])), b"a" * over, key=key)
    if kind == 9:  # over the limit across fragments
        if max_size is None or max_size > 1000:
            return frame(BINARY, b"f", fin=False, key=key) + frame(CONT, b"g", key=key)
        half = max_size // 2 + 1
        return frame(BINARY, b"f" * half, fin=False, key=key) + frame(CONT, b"g" * half, key=key)
    if kind == 10:  # lengths in more bits than needed
        payload = draw(st.binary(max_size=10))
        return frame(BINARY, payload, key=key, form=draw(st.sampled_from([16, 64])))
    if kind == 11:  # a header cut short, or a frame with nothing after its header
        whole = frame(BINARY, b"partial", key=key)
        return whole[: draw(st.integers(1, len(whole) - 1))]
    if kind == 12:  # a second close, or data after close
        return frame(CLOSE, b"\x03\xe8", key=key) + frame(BINARY, b"late", key=key)
    # a message exactly at the limit, text and binary
    size = max_size if max_size is not None and max_size <= 70_000 else 1000
    return frame(draw(st.sampled_from([TEXT, BINARY])), b"z" * size, key=key)


@st.composite
def hostile_streams(draw: st.DrawFn, masked: bool) -> WsStream:
    """Valid streams with hostile frames put between their frames, then mutated (either
    step may be skipped)."""
    stream = draw(streams(masked))
    frames = list(stream.frames)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(frames)))
        frames.insert(at, draw(hostile_frames(masked, stream.max_size)))
    ops = draw(mutations(3))
    data = apply_mutations(b"".join(frames), ops)
    valid = frames == stream.frames and data == stream.data
    return WsStream(stream.max_size, [data], stream.messages, stream.closes, valid)


# --- the opening handshake ----------------------------------------------------------

_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_values = st.one_of(
    _tokens,
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.sampled_from(["", " ", "\t", "\x00", "é", "a\rb", "\r\n"]),
)


def _header_block(draw: st.DrawFn, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` with some dropped, changed or repeated, and others added."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        what = draw(st.integers(0, 9))
        if what == 0:
            continue  # dropped
        new_name, new_value = name, value
        if what == 1:
            new_value = draw(_values)
        elif what == 2:
            new_name = name.lower() if draw(st.booleans()) else name.upper()
        out.append((new_name, new_value))
        if what == 3:
            out.append((name, draw(st.one_of(st.just(value), _values))))
    out += draw(st.lists(st.tuples(_tokens, _values), max_size=3))
    if draw(st.integers(0, 19)) == 0:  # over the parser's limits
        if draw(st.booleans()):
            out.append(("X-Long", "v" * draw(st.sampled_from([4096, 8192, 9000]))))
        else:
            out += [("X-Many", str(i)) for i in range(draw(st.sampled_from([127, 128, 200])))]
    return out


@dataclass(frozen=True)
class Handshake:
    """Handshake bytes: ``template`` mutated, then :data:`ACCEPT` (if the mutations left
    it whole) replaced by the real value. In that order, a connection's random key
    never changes what the mutations do, so every run of an input sees the same bytes
    but for the accept value."""

    template: bytes
    ops: list[Mutation]

    def render(self, accept: str = "") -> bytes:
        return apply_mutations(self.template, self.ops).replace(ACCEPT, accept.encode())

    def __repr__(self) -> str:
        return f"Handshake(template={short_repr(self.template)}, ops={self.ops!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's reports
        printer.text(repr(self))


def _encode(start: str, headers: list[tuple[str, str]], tail: bytes) -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode() + tail


@st.composite
def requests(draw: st.DrawFn) -> Handshake:
    """A client's opening handshake, well-formed or not, maybe followed by frames."""
    method = draw(st.sampled_from(["GET"] * 6 + ["POST", "get", "", "GET GET"]))
    path = draw(st.sampled_from(["/fuzz"] * 4 + ["/", "/other", "*", "", "/fuzz?q=1", "/é"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2", "", "HTTP/1.1 x"]))
    headers = [
        ("Host", "localhost"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
    if draw(st.booleans()):
        headers.append(("Origin", draw(st.sampled_from(["http://ok", "http://evil", ""]))))
    if draw(st.booleans()):
        headers.append(("Sec-WebSocket-Protocol", draw(st.sampled_from(["chat", "x, chat", ""]))))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("Sec-WebSocket-Extensions", "permessage-deflate"))
    tail = b""
    if draw(st.integers(0, 3)) == 0:
        tail = draw(streams(masked=True)).data
    data = _encode(f"{method} {path} {version}", _header_block(draw, headers), tail)
    return Handshake(data, draw(st.one_of(st.just([]), mutations(3))))


@st.composite
def responses(draw: st.DrawFn) -> Handshake:
    """A server's opening handshake, well-formed or not (:data:`ACCEPT` stands for the
    right accept value), maybe followed by frames."""
    status = draw(st.sampled_from(["101 Switching Protocols"] * 6 + ["200 OK", "101", "404 x"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2", ""]))
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT.decode()),
    ]
    if draw(st.booleans()):
        headers.append(("Sec-WebSocket-Protocol", draw(st.sampled_from(["chat", "other", ""]))))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("Sec-WebSocket-Extensions", "permessage-deflate"))
    if draw(st.integers(0, 5)) == 0:
        headers.append(("Content-Length", draw(st.sampled_from(["0", "5", "-1", "x"]))))
    tail = b""
    if draw(st.integers(0, 3)) == 0:
        tail = draw(streams(masked=False)).data
    data = _encode(f"{version} {status}", _header_block(draw, headers), tail)
    return Handshake(data, draw(st.one_of(st.just([]), mutations(3))))
