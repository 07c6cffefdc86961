"""mask: a WebSocket payload masked by the C twin or the Python twin (websockets' own
apply_mask) is the same, for every size and alignment, and bad arguments are refused."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest

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
