"""Fuzz targets for the FramedTcp decoder (:class:`message_io.codec.framing.FrameDecoder`)
and for the FramedTcp connection that runs it on a socket (``FramedTcpRemote.receive``).

Inputs: arbitrary bytes, soups of header-like tokens, and valid frame streams (with
minimal or padded headers) that are then mutated; each cut at arbitrary points.

Properties of the decoder:

* only :class:`~message_io.errors.FrameError` subclasses are raised, and after one every
  later ``feed`` (even an empty one) raises ``FrameError``;
* ``buffered`` never exceeds ``max_message_size + 10``, and after every feed
  ``buffered`` and ``wanted`` are those of the model (``framing_model.py``);
* the same bytes fed whole, one byte at a time and at the chosen cuts give the same
  messages (all ``bytes``) and the same error or none: those of the model;
* a valid stream decodes to the messages encoded, with no error and nothing buffered.

The connection: the same bytes written to a socket pair at the cuts decode to the
model's messages and error (a ``FrameError`` out of ``receive``, nothing else), and
``incomplete()`` is the model's unfinished frame after each write.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import strategies as st

from message_io.adapters.framed_tcp import FramedTcpRemote
from message_io.codec.framing import FrameDecoder, encode_frame
from message_io.errors import FrameError
from message_io.network.adapter import ReadStatus

from .campaign import fuzz_target
from .framing_model import Model, model, padded_frame
from .mutate import apply_mutations, chunk_ends, cut, cuts, mutations, pattern, short_repr

TIMEOUT: Final = 5.0

limits = st.one_of(
    st.sampled_from([0, 1, 2, 126, 127, 128, 129, 255, 16383, 16384, 1 << 20]),
    st.integers(min_value=0, max_value=300),
)
buffer_kinds = st.sampled_from(["bytes", "bytearray", "memoryview"])

# Pieces of headers and payloads that reach the decoder's corners: continuation bytes,
# the 10th-byte rule, 2-byte headers, zero-length frames, non-minimal encodings.
_TOKENS: Final = [
    b"\x00",
    b"\x01",
    b"\x7f",
    b"\x80",
    b"\x81",
    b"\xff",
    b"\x80\x00",
    b"\x80\x01",
    b"\xff\x01",
    b"\xff\x7f",
    b"\x80" * 9 + b"\x01",
    b"\x80" * 9 + b"\x02",
    b"\xff" * 9 + b"\x01",
    b"\xff" * 9 + b"\x00",
    b"\xff" * 10,
    b"\x80" * 10,
]


def _boundary_headers(limit: int) -> st.SearchStrategy[bytes]:
    """Headers announcing sizes right around ``limit`` (its last legal size and the first
    illegal ones) and at the top of the range, minimal or padded."""
    sizes = st.sampled_from([max(0, limit - 1), limit, limit + 1, limit + 2, (1 << 64) - 1])
    return st.builds(_header, sizes, st.sampled_from([0, 0, 0, 2, 5, 10]))


def _header(size: int, pad: int) -> bytes:
    """The varint of ``size``, padded to ``pad`` bytes where that fits in 10."""
    groups = []
    while True:
        groups.append(size & 0x7F)
        size >>= 7
        if not size:
            break
    groups += [0] * max(0, min(pad, 10) - len(groups))
    return bytes(g | 0x80 for g in groups[:-1]) + bytes((groups[-1],))


@st.composite
def limited_bytes(draw: st.DrawFn) -> tuple[int, bytes]:
    """A limit, and arbitrary bytes or a soup of header-like tokens (some made for that
    limit) and short runs of arbitrary bytes."""
    limit = draw(limits)
    if draw(st.integers(0, 2)) == 0:
        return limit, draw(st.binary(max_size=400))
    pieces = st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=6), _boundary_headers(limit))
    return limit, b"".join(draw(st.lists(pieces, max_size=40)))


@dataclass(frozen=True)
class Stream:
    """A stream of frames, how it was made and what it must decode to."""

    limit: int
    messages: list[bytes]
    data: bytes
    valid: bool
    """True if ``data`` is the messages encoded (not mutated, not arbitrary)."""

    def __repr__(self) -> str:
        sizes = [len(m) for m in self.messages]
        return (
            f"Stream(limit={self.limit}, message sizes={sizes}, "
            f"data={short_repr(self.data)}, valid={self.valid})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's reports
        printer.text(repr(self))


@st.composite
def streams(draw: st.DrawFn, big: bool = False) -> Stream:
    """Valid streams of frames within a drawn limit, with padded headers now and then;
    then mutated, or not. ``big``: also frames of tens of KiB."""
    limit = draw(limits)
    sizes = st.integers(min_value=0, max_value=min(limit, 300))
    if big and limit >= 70_000:
        sizes = st.one_of(sizes, st.integers(min_value=30_000, max_value=70_000))
    messages = [
        pattern(size, seed)
        for size, seed in draw(st.lists(st.tuples(sizes, st.integers(0, 255)), max_size=10))
    ]
    frames = []
    for payload in messages:
        pad = draw(st.one_of(st.just(0), st.integers(min_value=0, max_value=10)))
        frames.append(padded_frame(payload, pad) if pad else encode_frame(payload))
    ops = draw(st.one_of(st.just([]), mutations()))
    bad = draw(st.one_of(st.just(b""), _boundary_headers(limit)))
    if bad:  # a header right at or past the limit, between two frames
        frames.insert(draw(st.integers(0, len(frames))), bad + b"tail")
    data = b"".join(frames)
    return Stream(limit, messages, apply_mutations(data, ops), not ops and not bad)


@dataclass
class Outcome:
    messages: list[bytes]
    error: type[FrameError] | None


def _as(kind: str, piece: bytes) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(piece)
    if kind == "memoryview":
        return memoryview(piece)
    return piece


def decode(data: bytes, pieces: list[bytes], limit: int, kind: str, expected: Model) -> Outcome:
    """Feed ``pieces`` to a fresh decoder, checking its state after each against the
    model of ``data``."""
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    fed = 0
    for piece in pieces:
        fed += len(piece)
        try:
            decoder.feed(_as(kind, piece), out)
        except FrameError as exc:
            assert expected.fails_within(fed), f"unexpected {exc!r} after {fed} bytes"
            assert decoder.buffered <= limit + 10
            _check_dead(decoder, out)
            return Outcome(out, type(exc))
        assert not expected.fails_within(fed), f"no {expected.error} after {fed} bytes"
        assert decoder.buffered <= limit + 10
        assert decoder.buffered == expected.buffered(fed)
        assert decoder.wanted == expected.wanted(fed)
        assert out == expected.payloads[: expected.complete(fed)]
    assert all(type(m) is bytes for m in out)
    return Outcome(out, None)


def _check_dead(decoder: FrameDecoder, out: list[bytes]) -> None:
    """After an error, every feed raises FrameError and delivers nothing."""
    before = list(out)
    for data in (b"", b"\x00", b"\x01a", b"\xff" * 11):
        try:
            decoder.feed(data, out)
        except FrameError:
            pass
        else:
            raise AssertionError(f"feed({data!r}) after an error did not raise")
        assert decoder.buffered <= decoder.max_message_size + 10
    assert out == before


def check_decoder(data: bytes, limit: int, points: list[int], kind: str) -> Outcome:
    """Every property of the decoder on ``data``; returns the outcome."""
    expected = model(data, limit)
    whole = decode(data, [data] if data else [], limit, kind, expected)
    bytewise = decode(data, [data[i : i + 1] for i in range(len(data))], limit, kind, expected)
    split = decode(data, cut(data, points), limit, kind, expected)
    assert whole == bytewise == split
    assert whole.messages == expected.payloads
    assert whole.error is expected.error
    return whole


@fuzz_target(short=150, case=limited_bytes(), points=cuts(), kind=buffer_kinds)
def test_decoder_arbitrary_bytes(case: tuple[int, bytes], points: list[int], kind: str) -> None:
    limit, data = case
    check_decoder(data, limit, points, kind)


@fuzz_target(short=150, stream=streams(), points=cuts(), kind=buffer_kinds)
def test_decoder_valid_and_mutated_streams(stream: Stream, points: list[int], kind: str) -> None:
    outcome = check_decoder(stream.data, stream.limit, points, kind)
    if stream.valid:
        assert outcome == Outcome(stream.messages, None)


# --- the connection: FramedTcpRemote.receive over a socket pair ------------------------


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


class Wire:
    """A FramedTcpRemote on one end of a socket pair; the test writes to the other."""

    def __init__(self, limit: int, direct: bool) -> None:
        self.peer, theirs = socket.socketpair()
        try:
            theirs.setblocking(False)
            self.peer.setblocking(False)
            self.remote = FramedTcpRemote(theirs, connecting=False, max_message_size=limit)
        except BaseException:
            self.peer.close()
            theirs.close()
            raise
        self.out: list[bytes] = []
        # The node hands receive() list.append, which takes the decoder's direct path;
        # any other callable takes the other one.
        self.deliver: Callable[[bytes], Any] = self.out.append if direct else self._deliver
        self.error: type[FrameError] | None = None
        self.disconnected = False

    def _deliver(self, message: bytes) -> None:
        self.out.append(message)

    def close(self) -> None:
        self.remote.close()
        self.peer.close()

    def drain(self) -> None:
        """Call receive() while the socket has bytes (as the node would)."""
        while not (self.error or self.disconnected) and _readable(self.remote.socket, 0):
            try:
                status = self.remote.receive(self.deliver)
            except FrameError as exc:
                self.error = type(exc)
                return
            assert isinstance(status, ReadStatus)
            self.disconnected = status is ReadStatus.DISCONNECTED

    def write(self, piece: bytes) -> None:
        view = memoryview(piece)
        while view and not (self.error or self.disconnected):
            try:
                sent = self.peer.send(view)
            except BlockingIOError:
                sent = 0
                assert _readable(self.remote.socket, TIMEOUT)
            view = view[sent:]
            self.drain()


@fuzz_target(
    short=80,
    stream=st.one_of(
        streams(big=True),
        limited_bytes().map(lambda case: Stream(case[0], [], case[1], valid=False)),
    ),
    points=cuts(12),
    direct=st.booleans(),
)
def test_framed_tcp_receive(stream: Stream, points: list[int], direct: bool) -> None:
    data = stream.data
    expected = model(data, stream.limit)
    wire = Wire(stream.limit, direct)
    try:
        pieces = cut(data, points)
        for piece, end in zip(pieces, chunk_ends(pieces), strict=True):
            wire.write(piece)
            if wire.error:
                break
            assert not wire.disconnected
            assert not expected.fails_within(end), f"no {expected.error} after {end} bytes"
            assert wire.out == expected.payloads[: expected.complete(end)]
            assert wire.remote.incomplete() == expected.buffered(end)
            assert wire.remote.incomplete() <= stream.limit + 10
        if not wire.error:
            wire.peer.shutdown(socket.SHUT_WR)
            assert _readable(wire.remote.socket, TIMEOUT)
            wire.drain()
            assert wire.disconnected or wire.error
        assert wire.error is expected.error
        assert wire.out == expected.payloads
        assert all(type(m) is bytes for m in wire.out)
        if stream.valid:
            assert wire.out == stream.messages
    finally:
        wire.close()
