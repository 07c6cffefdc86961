"""Fuzz targets for :class:`~message_io.codec.ws_frames.FrameInput`, the WebSocket data
frames taken without ``websockets``' parser: it must agree with that parser on every
input, cut anywhere (``ws_differential.py`` says what "agree" covers), and it must take
every whole data frame it may take. The long differential campaign is
``python -m tests.fuzz.ws_differential`` (``make fuzz-ws``); its kept corpus is replayed
here."""

from __future__ import annotations

from hypothesis import strategies as st
from websockets.frames import Frame

from message_io.codec.ws_frames import FrameInput

from .campaign import fuzz_target
from .mutate import cut, cuts
from .ws_differential import CORPUS, Case, check, load, open_protocol
from .ws_wire import BINARY, WsStream, frame, hostile_streams, streams

_sides = st.booleans()


@st.composite
def _cases(draw: st.DrawFn) -> Case:
    masked = draw(_sides)
    stream: WsStream = draw(st.one_of(streams(masked), hostile_streams(masked)))
    points = tuple(draw(cuts()))
    close_after = draw(st.integers(-1, len(points) + 1) | st.just(-1))
    return Case(masked, stream.max_size, stream.data, points, close_after)


@fuzz_target(short=300, case=_cases())
def test_the_frame_input_agrees_with_the_protocol(case: Case) -> None:
    check(case)


@fuzz_target(
    short=200,
    masked=_sides,
    sizes=st.lists(st.integers(0, 70_000) | st.integers(0, 130), min_size=1, max_size=8),
    points=cuts(6),
)
def test_every_whole_data_frame_is_taken_directly(
    masked: bool, sizes: list[int], points: list[int]
) -> None:
    """Unfragmented binary frames: exactly those whose header no cut splits are taken
    directly (the others are the protocol's), whatever the cuts did to the frames
    before them, and whether or not their payload is cut."""
    key = b"\x01\x02\x03\x04" if masked else None
    frames = [frame(BINARY, bytes([n % 251]) * n, key=key) for n in sizes]
    pieces = cut(b"".join(frames), points)
    ends = set()
    at = 0
    for piece in pieces:
        at += len(piece)
        ends.add(at)
    whole = 0
    start = 0
    for framed, n in zip(frames, sizes, strict=True):
        head = len(framed) - n  # the header's size
        whole += not any(start < end < start + head for end in ends)
        start += len(framed)
    protocol = open_protocol(masked, None)
    source = FrameInput(protocol, masked=masked, max_size=None)
    taken = 0
    delivered: list[bytes] = []
    for piece in pieces:
        source.feed(piece)
        for item in source.take():
            if isinstance(item, bytes):
                taken += 1
                delivered.append(item)
            else:
                assert isinstance(item, Frame)
                delivered.append(bytes(item.data))
    assert delivered == [bytes([n % 251]) * n for n in sizes]
    assert taken == whole


def test_the_kept_corpus_agrees() -> None:
    cases = load(CORPUS)
    assert len(cases) >= 50, f"the corpus in {CORPUS} is missing"
    for case in cases:
        check(case)
