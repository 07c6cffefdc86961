"""Tests for message_io.codec.framing: frame encoding and the Sans-I/O FrameDecoder."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from message_io.codec import (
    FrameDecoder,
    decode_varint,
    encode_frame,
    encode_varint,
    frame_header,
)
from message_io.errors import FrameError, FrameTooLarge, InvalidVarint

SETTINGS = settings(
    database=None,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG = 1 << 20  # a limit no test payload reaches

_PATTERN = bytes(range(256)) * 70  # 17920 bytes: room for 16384 from any offset < 256


def _payload(size: int, seed: int) -> bytes:
    return _PATTERN[seed : seed + size]


# Sizes around the varint boundaries are favoured; contents differ between payloads so
# that a reordering or a mix-up shows.
payloads = st.builds(
    _payload,
    st.one_of(
        st.sampled_from([0, 1, 126, 127, 128, 129, 16383, 16384]),
        st.integers(min_value=0, max_value=300),
    ),
    st.integers(min_value=0, max_value=255),
)
payload_lists = st.lists(payloads, max_size=12)
# Small payloads only, for feeding one byte at a time with many examples.
small_payload_lists = st.lists(
    st.builds(
        _payload,
        st.sampled_from([0, 1, 5, 127, 128, 129, 300]),
        st.integers(min_value=0, max_value=255),
    ),
    max_size=10,
)


def _stream(messages: Iterable[bytes]) -> bytes:
    return b"".join(encode_frame(m) for m in messages)


def _cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p for p in points if 0 <= p <= len(data))})
    return [data[a:b] for a, b in pairwise(bounds)]


def _feed_all(decoder: FrameDecoder, pieces: Sequence[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for piece in pieces:
        decoder.feed(piece, out)
        assert decoder.buffered <= decoder.max_message_size + 10
    return out


def _reference(data: bytes, limit: int) -> tuple[list[bytes], type[FrameError] | None]:
    """Decode a whole stream the obvious way: (payloads, error class or None)."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        try:
            r = decode_varint(data, pos)
        except InvalidVarint:
            return frames, InvalidVarint
        if r is None:
            return frames, None
        size, start = r
        if size > limit:
            return frames, FrameTooLarge
        if start + size > len(data):
            return frames, None
        frames.append(data[start : start + size])
        pos = start + size
    return frames, None


# --- encoding -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 20, 127, 128, 300, 16383, 16384, 65535, 8388608, 2**64 - 1])
def test_frame_header_is_the_varint(size: int) -> None:
    assert frame_header(size) == encode_varint(size)


def test_frame_header_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        frame_header(-1)
    with pytest.raises(ValueError):
        frame_header(2**64)


def test_encode_frame_known_bytes() -> None:
    assert encode_frame(b"") == b"\x00"
    assert encode_frame(b"hello") == b"\x05hello"
    assert encode_frame(bytearray(b"ab")) == b"\x02ab"
    assert encode_frame(memoryview(b"xyz")) == b"\x03xyz"
    assert encode_frame(b"a" * 128) == b"\x80\x01" + b"a" * 128
    assert encode_frame(b"b" * 300) == b"\xac\x02" + b"b" * 300
    assert encode_frame(b"c" * 16384) == b"\x80\x80\x01" + b"c" * 16384


# --- decoding valid streams -------------------------------------------------------------


def test_constructor() -> None:
    assert FrameDecoder(1234).max_message_size == 1234
    fresh = FrameDecoder(0)
    assert (fresh.buffered, fresh.wanted) == (0, 0)
    with pytest.raises(ValueError):
        FrameDecoder(-1)


@SETTINGS
@given(payload_lists)
def test_whole_stream_at_once(messages: list[bytes]) -> None:
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    decoder.feed(_stream(messages), out)
    assert out == messages
    assert all(type(m) is bytes for m in out)
    assert (decoder.buffered, decoder.wanted) == (0, 0)


@SETTINGS
@given(small_payload_lists)
def test_one_byte_at_a_time(messages: list[bytes]) -> None:
    data = _stream(messages)
    decoder = FrameDecoder(BIG)
    out = _feed_all(decoder, [data[i : i + 1] for i in range(len(data))])
    assert out == messages
    assert all(type(m) is bytes for m in out)
    assert (decoder.buffered, decoder.wanted) == (0, 0)


@settings(SETTINGS, max_examples=25)
@given(payload_lists)
def test_one_byte_at_a_time_any_sizes(messages: list[bytes]) -> None:
    data = _stream(messages)
    decoder = FrameDecoder(BIG)
    out = _feed_all(decoder, [data[i : i + 1] for i in range(len(data))])
    assert out == messages


def test_one_byte_at_a_time_with_large_payloads() -> None:
    messages = [_payload(16384, 3), b"", _payload(128, 7), _payload(16383, 9), b"z"]
    data = _stream(messages)
    decoder = FrameDecoder(BIG)
    out = _feed_all(decoder, [data[i : i + 1] for i in range(len(data))])
    assert out == messages


@SETTINGS
@given(st.data(), payload_lists)
def test_split_at_chosen_points(data: st.DataObject, messages: list[bytes]) -> None:
    stream = _stream(messages)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    decoder = FrameDecoder(BIG)
    out = _feed_all(decoder, _cut(stream, points))
    assert out == messages
    assert all(type(m) is bytes for m in out)
    assert (decoder.buffered, decoder.wanted) == (0, 0)


@SETTINGS
@given(st.data(), payload_lists, st.sampled_from([bytes, bytearray, memoryview]))
def test_feed_accepts_any_buffer_type(
    data: st.DataObject, messages: list[bytes], kind: type
) -> None:
    stream = _stream(messages)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    for piece in _cut(stream, points):
        decoder.feed(kind(piece), out)
    assert out == messages
    assert all(type(m) is bytes for m in out)


def test_zero_length_message() -> None:
    decoder = FrameDecoder(10)
    out: list[bytes] = []
    decoder.feed(b"\x00", out)
    assert out == [b""]
    assert type(out[0]) is bytes
    decoder.feed(b"\x00\x02hi\x00", out)
    assert out == [b"", b"", b"hi", b""]
    assert (decoder.buffered, decoder.wanted) == (0, 0)


def test_zero_length_message_after_split_header() -> None:
    # A non-minimal two-byte header announcing 0, split in two.
    decoder = FrameDecoder(10)
    out: list[bytes] = []
    decoder.feed(b"\x80", out)
    assert (out, decoder.buffered, decoder.wanted) == ([], 1, 0)
    decoder.feed(b"\x00", out)
    assert out == [b""]
    assert (decoder.buffered, decoder.wanted) == (0, 0)


def test_feed_empty_is_a_no_op() -> None:
    decoder = FrameDecoder(100)
    out: list[bytes] = []
    decoder.feed(b"", out)
    assert (out, decoder.buffered, decoder.wanted) == ([], 0, 0)
    decoder.feed(b"\x05ab", out)  # header + 2 of 5 payload bytes
    state = (decoder.buffered, decoder.wanted)
    assert state == (3, 3)
    decoder.feed(b"", out)
    assert (decoder.buffered, decoder.wanted) == state
    assert out == []
    decoder.feed(b"cde", out)
    assert out == [b"abcde"]


def test_buffered_and_wanted_through_a_split_header() -> None:
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    data = encode_frame(b"q" * 16384)  # 3-byte header 80 80 01
    decoder.feed(data[:1], out)
    assert (decoder.buffered, decoder.wanted) == (1, 0)
    decoder.feed(data[1:2], out)
    assert (decoder.buffered, decoder.wanted) == (2, 0)
    decoder.feed(data[2:3], out)
    assert (decoder.buffered, decoder.wanted) == (3, 16384)
    decoder.feed(data[3:100], out)
    assert (decoder.buffered, decoder.wanted) == (100, 16384 - 97)
    decoder.feed(data[100:], out)
    assert out == [b"q" * 16384]
    assert (decoder.buffered, decoder.wanted) == (0, 0)


def test_frames_before_and_after_a_pending_frame_in_one_chunk() -> None:
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    data = _stream([b"a", b"b" * 200, b"c"])
    decoder.feed(data[:5], out)  # "a" complete, then header + 1 byte of the 200
    assert out == [b"a"]
    assert (decoder.buffered, decoder.wanted) == (3, 199)
    decoder.feed(data[5:] + encode_frame(b"d") + b"\x03x", out)
    assert out == [b"a", b"b" * 200, b"c", b"d"]
    assert (decoder.buffered, decoder.wanted) == (2, 2)


def test_eight_mib_payload_in_64_kib_chunks() -> None:
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    data = encode_frame(payload) + encode_frame(b"tail")
    header_len = len(encode_varint(size))
    assert header_len == 4
    step = 64 * 1024
    decoder = FrameDecoder(size)
    out: list[bytes] = []
    for offset in range(0, len(data), step):
        decoder.feed(data[offset : offset + step], out)
        fed = min(offset + step, len(data))
        if fed < header_len + size:  # mid-way through the big frame
            assert out == []
            assert decoder.buffered == fed
            assert decoder.wanted == header_len + size - fed
    assert len(out) == 2
    assert out[0] == payload
    assert out[1] == b"tail"
    assert (decoder.buffered, decoder.wanted) == (0, 0)


def test_wanted_lets_the_reader_receive_exactly_the_rest() -> None:
    messages = [b"x" * 1000, b"", b"y" * 70000]
    data = _stream(messages)
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = decoder.wanted or 7  # the header: any read size will do
        decoder.feed(data[pos : pos + size], out)
        pos += size
    assert out == messages


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 100, 126, 127, 128, 300, 16384, 1 << 20])
def test_frame_too_large_from_the_header_alone(limit: int) -> None:
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(frame_header(limit + 1), out)
    assert str(limit + 1) in str(info.value)
    assert str(limit) in str(info.value)
    assert out == []
    assert decoder.buffered == 0


@pytest.mark.parametrize("limit", [0, 1, 100, 126, 127, 128, 300, 16384, 1 << 20])
def test_frame_too_large_on_a_split_header(limit: int) -> None:
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    header = frame_header(limit + 1)
    with pytest.raises(FrameTooLarge):
        for i in range(len(header)):
            decoder.feed(header[i : i + 1], out)
    assert out == []


@pytest.mark.parametrize("limit", [0, 1, 100, 126, 127, 128, 300, 16384, 1 << 20])
def test_frame_exactly_at_the_limit_passes(limit: int) -> None:
    payload = _PATTERN[:limit] if limit <= len(_PATTERN) else b"m" * limit
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    decoder.feed(encode_frame(payload), out)
    assert out == [payload]
    # and split one byte after the header
    decoder2 = FrameDecoder(limit)
    data = encode_frame(payload)
    out2 = _feed_all(decoder2, _cut(data, [len(frame_header(limit)) + 1]))
    assert out2 == [payload]


def test_huge_announced_size_raises_before_allocating() -> None:
    decoder = FrameDecoder(1 << 20)
    out: list[bytes] = []
    with pytest.raises(FrameTooLarge):
        decoder.feed(frame_header(2**64 - 1), out)
    assert decoder.buffered == 0


def test_frames_before_the_bad_header_are_delivered() -> None:
    decoder = FrameDecoder(100)
    out: list[bytes] = []
    data = _stream([b"one", b"", b"two"]) + frame_header(101) + b"junk"
    with pytest.raises(FrameTooLarge):
        decoder.feed(data, out)
    assert out == [b"one", b"", b"two"]


def test_frames_before_the_bad_header_are_delivered_after_a_pending_frame() -> None:
    decoder = FrameDecoder(300)
    out: list[bytes] = []
    first = encode_frame(b"p" * 200)
    decoder.feed(first[:50], out)
    with pytest.raises(FrameTooLarge):
        decoder.feed(first[50:] + encode_frame(b"q") + frame_header(301), out)
    assert out == [b"p" * 200, b"q"]


def test_decoder_is_unusable_after_an_error() -> None:
    decoder = FrameDecoder(10)
    out: list[bytes] = []
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\x0b", out)
    with pytest.raises(FrameError):
        decoder.feed(b"\x00", out)
    assert out == []
    assert (decoder.buffered, decoder.wanted) == (0, 0)


# --- garbage ------------------------------------------------------------------------------


def test_eleven_ff_bytes_at_once() -> None:
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    with pytest.raises(InvalidVarint):
        decoder.feed(b"\xff" * 11, out)
    assert out == []


def test_eleven_ff_bytes_one_at_a_time() -> None:
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    with pytest.raises(InvalidVarint):
        for _ in range(11):
            decoder.feed(b"\xff", out)
            assert decoder.buffered <= 9
    assert out == []


@pytest.mark.parametrize("cut", range(1, 11))
def test_overlong_header_split_anywhere(cut: int) -> None:
    data = encode_frame(b"ok") + b"\x80" * 10
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    with pytest.raises(InvalidVarint):
        for piece in _cut(data, [3 + cut]):
            decoder.feed(piece, out)
    assert out == [b"ok"]


def test_header_over_64_bits_raises() -> None:
    decoder = FrameDecoder(BIG)
    out: list[bytes] = []
    with pytest.raises(InvalidVarint):
        decoder.feed(b"\x01x" + b"\xff" * 9 + b"\x02", out)
    assert out == [b"x"]


@SETTINGS
@given(
    st.data(),
    st.binary(max_size=400),
    st.sampled_from([0, 1, 5, 127, 128, 300, BIG]),
)
def test_arbitrary_bytes_decode_or_raise_frame_error(
    data: st.DataObject, garbage: bytes, limit: int
) -> None:
    points = data.draw(st.lists(st.integers(0, len(garbage)), max_size=20))
    expected, expected_error = _reference(garbage, limit)
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    error: type[FrameError] | None = None
    try:
        for piece in _cut(garbage, points):
            decoder.feed(piece, out)
            assert decoder.buffered <= limit + 10
            assert decoder.wanted <= limit
    except FrameError as exc:
        error = type(exc)
    assert error is expected_error
    assert out == expected


def test_trickled_frame_costs_about_its_size_in_memory() -> None:
    """A peer sending a large frame two bytes at a time must not pin ~20x its size."""
    import tracemalloc

    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_frame(payload)
    decoder = FrameDecoder(len(payload))
    out: list[bytes] = []
    pieces = [stream[i : i + 2] for i in range(0, len(stream), 2)]
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            decoder.feed(piece, out)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    decoder.feed(pieces[-1], out)
    assert out == [payload]
    # One growing bytearray: about the payload size (a bytes object per piece: ~20x).
    assert held < 1.5 * len(payload), f"{held} bytes held for a {len(payload)}-byte frame"


def test_a_payload_fed_apart_is_the_message_itself() -> None:
    """FramedTcp reads a large frame's header, then its payload in one read of the exact
    size: that bytes object is the message, never copied (the compiled decoder once
    copied it into fresh pages, 250 times slower than the Python one)."""
    payload = bytes(range(256)) * 4096  # 1 MiB
    decoder = FrameDecoder(len(payload))
    out: list[bytes] = []
    decoder.feed(frame_header(len(payload)), out)
    assert out == []
    decoder.feed(payload, out)
    assert len(out) == 1
    assert out[0] is payload
