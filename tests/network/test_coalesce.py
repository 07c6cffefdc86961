"""coalesce: appending a message to a send buffer, by the C twin or the Python twin,
gives the bytes of ``buffer += head; buffer += data``."""

from __future__ import annotations

import array
import random
import sys
from types import ModuleType
from typing import Any

import pytest

import message_io
from message_io.network import coalesce

from ..twins import same_names, twins


@pytest.fixture(params=twins(coalesce))
def twin(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def test_the_c_twin_is_there_with_the_compiled_engine() -> None:
    assert coalesce.COMPILED is message_io.COMPILED
    same_names(coalesce)


def test_appends_head_then_data(twin: Any) -> None:
    buffer = bytearray(b"ab")
    assert twin.append(buffer, b"\x03", b"xyz") is None
    assert buffer == b"ab\x03xyz"
    twin.append(buffer, b"", b"")
    assert buffer == b"ab\x03xyz"
    twin.append(buffer, b"", bytearray(b"!"))
    twin.append(buffer, memoryview(b"--")[1:], memoryview(b"0123")[2:])
    assert buffer == b"ab\x03xyz!-23"


def test_many_appends_keep_every_byte_in_order(twin: Any) -> None:
    rng = random.Random(7)
    buffer = bytearray()
    expected = bytearray()
    for _ in range(3000):
        head = bytes([rng.randrange(256)]) * rng.randrange(3)
        data = rng.randbytes(rng.randrange(300))
        twin.append(buffer, head, data)
        expected += head
        expected += data
        if rng.random() < 0.05:  # the writer takes a front part, as a partial send does
            cut = rng.randrange(len(buffer) + 1)
            del buffer[:cut]
            del expected[:cut]
    assert buffer == expected


def test_any_contiguous_buffer(twin: Any) -> None:
    buffer = bytearray()
    twin.append(buffer, b"h", array.array("H", [1, 2]))
    assert buffer == b"h" + array.array("H", [1, 2]).tobytes()


def test_an_exported_buffer_that_must_grow_is_refused_unchanged(twin: Any) -> None:
    buffer = bytearray(b"abc")
    with memoryview(buffer), pytest.raises(BufferError):
        twin.append(buffer, b"\x10", b"y" * 4096)
    assert buffer == b"abc"


@pytest.mark.parametrize(
    ("buffer", "head", "data", "error"),
    [
        (b"bytes", b"", b"x", TypeError),
        (memoryview(bytearray(1)), b"", b"x", TypeError),
        (bytearray(b"x"), "str", b"x", TypeError),
        (bytearray(b"x"), b"H", "str", TypeError),
        (bytearray(b"x"), b"H", None, TypeError),
        (bytearray(b"x"), b"H", 5, TypeError),
        (bytearray(b"x"), b"H", memoryview(b"abcdef")[::2], BufferError),  # not contiguous
        (bytearray(b"x"), memoryview(b"abcdef")[::2], b"y", BufferError),
    ],
)
def test_bad_arguments_raise_and_change_nothing(
    twin: Any, buffer: Any, head: Any, data: Any, error: type[Exception]
) -> None:
    before = bytes(buffer)
    with pytest.raises(error):
        twin.append(buffer, head, data)
    assert bytes(buffer) == before


def test_the_buffer_itself_as_data_is_refused_unchanged(twin: Any) -> None:
    buffer = bytearray(b"ab")
    with pytest.raises(BufferError):
        twin.append(buffer, b"H", buffer)
    with pytest.raises(BufferError):
        twin.append(buffer, memoryview(buffer)[:1], b"y")
    assert buffer == b"ab"


def test_an_exported_buffer_takes_nothing_even_within_its_room(twin: Any) -> None:
    buffer = bytearray(b"abcdef")
    del buffer[3:]  # room for three more without a new allocation
    with memoryview(buffer), pytest.raises(BufferError):
        twin.append(buffer, b"", b"x")
    assert buffer == b"abc"
    with memoryview(buffer):
        twin.append(buffer, b"", b"")  # adds nothing: allowed, as += allows it
    assert buffer == b"abc"


@pytest.mark.skipif(not coalesce.COMPILED, reason="the C twin's growth (the compiled engine)")
def test_the_c_twin_grows_by_the_size_it_holds() -> None:
    buffer = bytearray()
    reallocations = 0
    last = sys.getsizeof(buffer)
    for _ in range(10_000):
        coalesce.append(buffer, b"\x64", b"x" * 100)
        if sys.getsizeof(buffer) != last:
            reallocations += 1
            last = sys.getsizeof(buffer)
    assert len(buffer) == 1_010_000
    # Doubling: about log2(1 MB / 101 B), 14 times; by an eighth it would be about 80.
    assert reallocations <= 16
    # Never more than the slack beyond what it holds.
    assert sys.getsizeof(buffer) <= 2 * len(buffer) + 200


@pytest.mark.skipif(not coalesce.COMPILED, reason="the C twin's growth (the compiled engine)")
def test_the_c_twin_keeps_its_room_after_a_front_cut() -> None:
    """After the writer took a front part (as a partial send does), a growth still
    reserves room, and the appends that follow fit in it."""
    buffer = bytearray(b"x" * 999)
    del buffer[:499]
    coalesce.append(buffer, b"", b"y" * 10)
    reserved = sys.getsizeof(buffer)
    for _ in range(40):
        coalesce.append(buffer, b"", b"y" * 10)
    assert sys.getsizeof(buffer) == reserved
    assert buffer == b"x" * 500 + b"y" * 410


@pytest.mark.skipif(not coalesce.COMPILED, reason="the C twin's growth (the compiled engine)")
def test_the_c_twin_reserves_at_most_slack_max_or_an_eighth() -> None:
    for size in (2 * coalesce.SLACK_MAX, 16 * coalesce.SLACK_MAX):
        buffer = bytearray(b"x" * size)
        coalesce.append(buffer, b"", b"y")
        assert buffer[-2:] == b"xy"
        # Past 8 SLACK_MAX, CPython's own growth (an eighth) is the larger.
        reserve = max(coalesce.SLACK_MAX, len(buffer) // 8 + 16)
        assert sys.getsizeof(buffer) <= len(buffer) + reserve + 200
