"""FrameInput (``codec/ws_frames.py``) on its own: what a frame kept across reads costs,
and how a reader that reads a large payload apart hands it over (the differential
fuzz targets in ``tests/fuzz`` check that it agrees with websockets' parser)."""

from __future__ import annotations

import tracemalloc

import pytest

from message_io.codec.ws_frames import FrameInput

from ..fuzz.ws_differential import open_protocol
from ..fuzz.ws_wire import BINARY, frame


@pytest.mark.parametrize("masked", [True, False])
def test_a_trickled_frame_costs_about_its_size_in_memory(masked: bool) -> None:
    """A peer sending a large frame two bytes at a time must not pin ~20x its size (a
    bytes object per read)."""
    payload = bytes(range(256)) * 1024  # 256 KiB
    wire = frame(BINARY, payload, key=b"\x01\x02\x03\x04" if masked else None)
    head = len(wire) - len(payload)  # the header comes whole: the frame is taken here
    pieces = [wire[: head + 2]] + [wire[at : at + 2] for at in range(head + 2, len(wire), 2)]
    source = FrameInput(open_protocol(masked, None), masked=masked, max_size=None)
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            source.feed(piece)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert source.take() == []
    assert source.kept_size == len(payload) - 2
    source.feed(pieces[-1])
    [message] = source.take()
    assert type(message) is bytes and message == payload
    assert held < 1.5 * len(payload), f"{held} bytes held for a {len(payload)}-byte frame"
    assert source.kept_size == 0


@pytest.mark.parametrize("masked", [True, False])
def test_a_header_fed_alone_then_the_payload_in_one_piece(masked: bool) -> None:
    payload = bytes(range(256)) * 200
    wire = frame(BINARY, payload, key=b"\x05\x06\x07\x08" if masked else None)
    source = FrameInput(open_protocol(masked, None), masked=masked, max_size=None)
    head = len(wire) - len(payload)
    assert source.large_header(wire[:14], 32 * 1024) == head
    assert source.large_header(wire[:14], len(payload) + 1) == 0  # smaller than asked
    assert source.large_header(wire[: head - 1], 1) == 0  # not all of it
    source.feed(wire[:head])
    assert source.take() == []
    assert (source.left, source.kept_size) == (len(payload), 0)
    assert source.large_header(wire[:14], 1) == 0  # a payload is under way
    body = wire[head:]
    source.feed(body)
    [message] = source.take()
    assert message == payload
    if not masked:
        assert message is body  # the bytes read are the message: no copy
    assert source.left == 0
