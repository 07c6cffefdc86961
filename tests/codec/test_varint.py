"""Tests for message_io.codec.varint: the unsigned LEB128 length prefix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from message_io.codec import MAX_VARINT_LEN, decode_varint, encode_varint
from message_io.errors import FrameError, InvalidVarint

SETTINGS = settings(database=None, derandomize=True, deadline=None)

KNOWN = [
    (0, "00"),
    (1, "01"),
    (20, "14"),
    (127, "7f"),
    (128, "80 01"),
    (300, "ac 02"),
    (1000, "e8 07"),
    (16383, "ff 7f"),
    (16384, "80 80 01"),
    (65535, "ff ff 03"),
    (8388608, "80 80 80 04"),
    (2**64 - 1, "ff ff ff ff ff ff ff ff ff 01"),
]


@pytest.mark.parametrize(("value", "hexed"), KNOWN)
def test_encode_known_vectors(value: int, hexed: str) -> None:
    assert encode_varint(value) == bytes.fromhex(hexed)


@pytest.mark.parametrize(("value", "hexed"), KNOWN)
def test_decode_known_vectors(value: int, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert decode_varint(data) == (value, len(data))


@pytest.mark.parametrize(("value", "hexed"), KNOWN)
def test_decode_accepts_bytearray_and_memoryview(value: int, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert decode_varint(bytearray(data)) == (value, len(data))
    assert decode_varint(memoryview(data)) == (value, len(data))


def test_max_varint_len() -> None:
    assert MAX_VARINT_LEN == 10
    assert len(encode_varint(2**64 - 1)) == MAX_VARINT_LEN


def test_small_table_matches_general_encoding() -> None:
    # The table covers 0..16383; the byte counts change exactly at 2**7 and 2**14.
    for value in range(16384 + 2):
        encoded = encode_varint(value)
        assert len(encoded) == (1 if value < 128 else 2 if value < 16384 else 3)
        assert decode_varint(encoded) == (value, len(encoded))


@pytest.mark.parametrize("value", [-1, -(2**70), 2**64, 2**64 + 1, 2**100])
def test_encode_rejects_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


@SETTINGS
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert 1 <= len(encoded) <= MAX_VARINT_LEN
    assert all(b & 0x80 for b in encoded[:-1])
    assert encoded[-1] < 0x80
    assert decode_varint(encoded) == (value, len(encoded))


@SETTINGS
@given(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=12),
    st.binary(max_size=12),
)
def test_decode_at_offset_ignores_surrounding_bytes(
    value: int, before: bytes, after: bytes
) -> None:
    encoded = encode_varint(value)
    data = before + encoded + after
    assert decode_varint(data, len(before)) == (value, len(before) + len(encoded))


def test_decode_at_nonzero_pos() -> None:
    data = bytes.fromhex("ff ff ac 02 07")
    assert decode_varint(data, 2) == (300, 4)
    assert decode_varint(data, 4) == (7, 5)
    assert decode_varint(data, 5) is None  # nothing left: incomplete


@SETTINGS
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_proper_prefix_is_incomplete(value: int) -> None:
    encoded = encode_varint(value)
    for cut in range(len(encoded)):
        assert decode_varint(encoded[:cut]) is None
        assert decode_varint(b"\x00" + encoded[:cut], 1) is None


@pytest.mark.parametrize(("value", "hexed"), KNOWN)
def test_every_proper_prefix_of_known_vectors_is_incomplete(value: int, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    for cut in range(len(data)):
        assert decode_varint(data[:cut]) is None


def test_nine_continuation_bytes_are_incomplete() -> None:
    assert decode_varint(b"\xff" * 9) is None
    assert decode_varint(b"\x80" * 9) is None


def test_ten_continuation_bytes_are_invalid() -> None:
    with pytest.raises(InvalidVarint):
        decode_varint(b"\x80" * 10)
    with pytest.raises(InvalidVarint):
        decode_varint(b"\xff" * 10)


def test_eleven_ff_bytes_are_invalid() -> None:
    with pytest.raises(InvalidVarint) as info:
        decode_varint(b"\xff" * 11)
    assert isinstance(info.value, FrameError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("last", [0x02, 0x03, 0x7F])
def test_ten_byte_varint_over_64_bits_is_invalid(last: int) -> None:
    data = b"\xff" * 9 + bytes([last])  # value >= 2**64
    with pytest.raises(InvalidVarint):
        decode_varint(data)
    with pytest.raises(InvalidVarint):
        decode_varint(b"\x05" + data, 1)


def test_ten_byte_varint_at_the_limit_is_valid() -> None:
    assert decode_varint(b"\xff" * 9 + b"\x01") == (2**64 - 1, 10)
    assert decode_varint(b"\x80" * 9 + b"\x01") == (2**63, 10)
    assert decode_varint(b"\x80" * 9 + b"\x00") == (0, 10)  # non-minimal but in range


def test_non_minimal_encodings_are_accepted() -> None:
    assert decode_varint(b"\x80\x00") == (0, 2)
    assert decode_varint(b"\x81\x80\x00") == (1, 3)
