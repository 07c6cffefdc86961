"""mask: a WebSocket payload masked by the C twin or the Python twin (websockets' own
apply_mask) is the same, for every size and alignment, and bad arguments are refused."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from websockets.frames import Frame
from websockets.streams import StreamReader

import message_io
from message_io.codec import mask

from ..twins import same_names, twins


@pytest.fixture(params=twins(mask))
def twin(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def _reference(data: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


def test_the_c_twin_is_there_with_the_compiled_engine() -> None:
    assert mask.COMPILED is message_io.COMPILED
    same_names(mask)


@pytest.mark.parametrize("size", [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 70_001])
def test_the_same_xor_for_every_size(twin: Any, size: int) -> None:
    data = os.urandom(size)
    key = os.urandom(4)
    masked = twin.mask(data, key)
    assert type(masked) is bytes
    assert masked == _reference(data, key)
    assert twin.mask(masked, key) == data  # masking twice gives the payload back


def test_any_bytes_like_input_from_any_offset(twin: Any) -> None:
    payload = os.urandom(100)
    key = b"\x01\x02\x03\x04"
    for start in range(9):  # views that start off any word boundary
        view = memoryview(payload)[start:]
        assert twin.mask(view, key) == _reference(payload[start:], key)
    assert twin.mask(bytearray(payload), bytearray(key)) == _reference(payload, key)


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_a_key_of_another_size_is_refused(twin: Any, key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        twin.mask(b"payload", key)


def test_what_is_not_bytes_like_is_refused(twin: Any) -> None:
    with pytest.raises(TypeError):
        twin.mask("text", b"abcd")
    with pytest.raises(TypeError):
        twin.mask(b"data", 1234)
    with pytest.raises(TypeError):
        twin.mask(b"data")


@pytest.mark.parametrize("size", [0, 1, 7, 8, 16, 17, 1000, 65_536, 70_001])
def test_mask_into_fills_a_buffer_as_mask_makes_bytes(twin: Any, size: int) -> None:
    data = os.urandom(size)
    key = os.urandom(4)
    for start in (b"", b"x" * 10, b"y" * (2 * size + 10)):  # grown, or shrunk
        dest = bytearray(start)
        assert twin.mask_into(dest, data, key) is None
        assert dest == _reference(data, key)


def test_mask_into_reuses_a_buffer_cut_at_its_front(twin: Any) -> None:
    key = b"\x0f\xf0\x55\xaa"
    dest = bytearray(os.urandom(70_000))
    del dest[:12_345]  # written in part, as a short send leaves it
    for size in (70_000, 65_536, 40_000, 70_001):
        data = os.urandom(size)
        twin.mask_into(dest, memoryview(data), key)
        assert dest == _reference(data, key)
        del dest[:3]


def test_mask_into_in_place(twin: Any) -> None:
    key = b"\x01\x02\x03\x04"
    payload = os.urandom(1000)
    dest = bytearray(payload)
    twin.mask_into(dest, dest, key)  # the same size: XOR in place
    assert dest == _reference(payload, key)


def test_mask_into_refuses_to_resize_a_viewed_buffer(twin: Any) -> None:
    dest = bytearray(b"0123456789")
    with memoryview(dest) as view:
        with pytest.raises(BufferError):
            twin.mask_into(dest, b"a longer payload", b"abcd")
        with pytest.raises(BufferError):
            twin.mask_into(dest, b"short", b"abcd")
        assert dest == b"0123456789"
        twin.mask_into(dest, b"9876543210", b"\x00\x00\x00\x00")  # same size: allowed
        assert view.tobytes() == b"9876543210"


def test_mask_into_refuses_bad_arguments_and_leaves_dest_alone(twin: Any) -> None:
    dest = bytearray(b"kept")
    with pytest.raises(ValueError, match="4 bytes"):
        twin.mask_into(dest, b"payload", b"abc")
    with pytest.raises(TypeError):
        twin.mask_into(dest, "text", b"abcd")
    with pytest.raises(TypeError):
        twin.mask_into(dest, b"data", 1234)
    assert dest == b"kept"
    with pytest.raises(TypeError):
        twin.mask_into(b"bytes", b"data", b"abcd")
    with pytest.raises(TypeError):
        twin.mask_into(memoryview(bytearray(4)), b"data", b"abcd")
    with pytest.raises(TypeError):
        twin.mask_into(dest, b"data")


def _frame_reference(first: int, data: bytes, key: bytes) -> bytes:
    size = len(data)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + key + _reference(data, key)


def _parsed(frame: bytes) -> tuple[int, bool, bytes]:
    """``(opcode, fin, payload)`` of one masked frame, as websockets' own parser reads it."""
    reader = StreamReader()
    reader.feed_data(frame)
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        parsed: Frame = done.value
        assert not reader.buffer  # nothing left over
        return int(parsed.opcode), parsed.fin, bytes(parsed.data)
    pytest.fail("the frame is cut short")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65_535, 65_536, 70_001])
@pytest.mark.parametrize("first", [0x82, 0x81, 0x02])
def test_masked_frame_is_the_whole_frame(twin: Any, size: int, first: int) -> None:
    data = os.urandom(size)
    keys = os.urandom(16)
    for at in (0, 5, 12):  # any key in the pool, the last one included
        frame = twin.masked_frame(first, data, keys, at)
        assert type(frame) is bytes
        assert frame == _frame_reference(first, data, keys[at : at + 4])
        assert _parsed(frame) == (first & 0x0F, bool(first & 0x80), data)
    view = memoryview(bytearray(data))
    assert twin.masked_frame(first, view, keys, 0) == _frame_reference(first, data, keys[:4])


@pytest.mark.parametrize(("first", "at"), [(-1, 0), (256, 0), (0x82, -1), (0x82, 13), (0x82, 16)])
def test_masked_frame_refuses_a_bad_first_byte_or_key(twin: Any, first: int, at: int) -> None:
    with pytest.raises(ValueError):
        twin.masked_frame(first, b"data", os.urandom(16), at)


def test_masked_frame_refuses_what_is_not_bytes_like(twin: Any) -> None:
    with pytest.raises(TypeError):
        twin.masked_frame(0x81, "text", os.urandom(16), 0)
    with pytest.raises(TypeError):
        twin.masked_frame(0x81, b"data", os.urandom(16))


@pytest.mark.parametrize("size", [0, 1, 7, 8, 16, 17, 125, 4095, 4096, 70_001])
@pytest.mark.parametrize("start", [4, 5, 6, 7, 14])
def test_unmask_takes_the_payload_after_its_key(twin: Any, size: int, start: int) -> None:
    payload = os.urandom(size)
    key = os.urandom(4)
    frame = os.urandom(start - 4) + key + _reference(payload, key) + b"next frame"
    unmasked = twin.unmask(frame, start, start + size)
    assert type(unmasked) is bytes
    assert unmasked == payload


@pytest.mark.parametrize(("start", "stop"), [(3, 5), (0, 0), (6, 5), (4, 11), (-1, 4)])
def test_unmask_refuses_bounds_outside_the_data(twin: Any, start: int, stop: int) -> None:
    with pytest.raises(ValueError, match="4 <= start <= stop <= len"):
        twin.unmask(b"keyXpayload"[:10], start, stop)


def test_unmask_takes_bytes_only(twin: Any) -> None:
    for data in (bytearray(10), memoryview(bytes(10)), "0123456789"):
        with pytest.raises(TypeError, match="bytes"):
            twin.unmask(data, 4, 6)
