"""BodyPool: it lends only once enabled and within its limit, reuses only what it lent
and got back, keeps its spare bodies through a burst and few once idle; and a client's
Masker masks large binary bodies into its buffers, the bytes exactly as a new frame's."""

from __future__ import annotations

import os

import pytest

from message_io.codec.body_pool import IDLE_KEEP, BodyPool
from message_io.codec.ws_frames import FIN_BINARY, SPLIT_FRAME, Masker, frame_header

LEAST = 16 * 1024


def _pool(limit: int = 1 << 20) -> BodyPool:
    pool = BodyPool()
    pool.enable(limit, LEAST)
    return pool


def _unmask(frame_head: bytes, body: bytes | bytearray) -> bytes:
    """The payload of a masked frame given as its header (key last) and its body."""
    key = frame_head[-4:]
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(body))


def test_a_pool_lends_nothing_until_enabled() -> None:
    pool = BodyPool()
    assert pool.take(LEAST) is None
    assert pool.take(1 << 20) is None


def test_what_is_given_back_is_lent_again() -> None:
    pool = _pool()
    body = pool.take(LEAST)
    assert type(body) is bytearray
    assert pool.lends(body)
    pool.give(body)
    assert not pool.lends(body)
    assert pool.spare() == 1
    assert pool.take(LEAST) is body
    assert pool.spare() == 0


def test_small_bodies_are_not_lent() -> None:
    pool = _pool()
    assert pool.take(LEAST - 1) is None
    assert pool.take(0) is None


def test_what_it_did_not_lend_is_left_alone() -> None:
    pool = _pool()
    stranger = bytearray(LEAST)
    pool.give(stranger)
    pool.give(b"bytes")
    assert pool.spare() == 0
    assert not pool.lends(stranger)
    body = pool.take(LEAST)
    assert body is not stranger
    assert body is not None
    pool.give(body)
    pool.give(body)  # twice: kept once
    assert pool.spare() == 1


def test_it_lends_up_to_its_limit() -> None:
    pool = _pool(limit=3 * LEAST)
    bodies = [pool.take(LEAST) for _ in range(3)]
    for body in bodies:
        assert body is not None
        body[:] = bytes(LEAST)  # filled, as the masker does
    assert pool.take(LEAST) is None  # 3 * LEAST out: the caller makes a new object
    first = bodies[0]
    assert first is not None
    del first[: LEAST // 2]  # written in part, as a short send leaves it
    pool.give(first)
    assert pool.take(LEAST) is first  # room again
    for body in bodies:
        assert body is not None
        pool.give(body)
    assert pool.lent_bytes == 0  # nothing out: the count is exact again


def _lend_and_return(pool: BodyPool, count: int, size: int = LEAST) -> None:
    bodies = [pool.take(size) for _ in range(count)]
    for body in bodies:
        assert body is not None
        body[:] = bytes(size)
        pool.give(body)


def test_spare_bodies_stay_through_a_burst() -> None:
    pool = _pool()
    _lend_and_return(pool, 8)
    # Bodies were lent since the last drain: a burst goes on. More than the idle
    # allowance is kept: the caller is told to arm the idle check.
    assert pool.drained(busy=False)
    assert pool.spare() == 8
    assert pool.drained(busy=True)  # a sender waits for this drain
    assert pool.spare() == 8


def test_an_idle_drain_keeps_one_small_spare() -> None:
    pool = _pool()
    _lend_and_return(pool, 8)
    assert pool.drained(busy=False)
    assert not pool.drained(busy=False)  # nothing lent since: idle, nothing to check
    assert pool.spare() == 1
    assert not pool.drained(busy=False)
    assert pool.spare() == 1


def test_a_drain_within_the_allowance_arms_no_check() -> None:
    pool = _pool()
    _lend_and_return(pool, 1)
    assert not pool.drained(busy=False)  # one small spare: the idle allowance
    assert not pool.drained(busy=True)
    assert pool.spare() == 1


def test_an_idle_drain_keeps_no_large_spare() -> None:
    pool = _pool(limit=8 * IDLE_KEEP)
    _lend_and_return(pool, 2, size=2 * IDLE_KEEP)
    pool.drained(busy=False)
    pool.drained(busy=False)
    assert pool.spare() == 0


def test_the_idle_check_trims_when_nothing_was_lent() -> None:
    pool = _pool()
    _lend_and_return(pool, 8)
    assert pool.drained(busy=True)
    pool.watch()  # armed
    assert not pool.expire()  # nothing lent since: done
    assert pool.spare() == 1


def test_the_idle_check_waits_while_bodies_are_lent() -> None:
    pool = _pool()
    _lend_and_return(pool, 8)
    assert pool.drained(busy=False)
    pool.watch()
    _lend_and_return(pool, 3)  # the burst goes on
    assert pool.drained(busy=False)  # (a check is pending: the caller arms none)
    assert pool.expire()  # lent since it was armed: keep, check once more
    assert pool.spare() == 8
    assert not pool.expire()  # a period with nothing lent: trimmed
    assert pool.spare() == 1


def test_the_idle_check_drops_a_large_spare() -> None:
    pool = _pool(limit=8 * IDLE_KEEP)
    _lend_and_return(pool, 1, size=2 * IDLE_KEEP)
    assert pool.drained(busy=False)  # one spare, larger than the allowance
    pool.watch()
    assert not pool.expire()
    assert pool.spare() == 0


def test_clear_lets_go_of_everything() -> None:
    pool = _pool()
    out = pool.take(LEAST)
    _lend_and_return(pool, 2)
    pool.clear()
    assert pool.spare() == 0
    assert not pool.lends(out)
    assert pool.lent_bytes == 0


@pytest.mark.parametrize("size", [SPLIT_FRAME, SPLIT_FRAME + 1, 65_536, 70_001])
def test_the_masker_masks_into_a_lent_body(size: int) -> None:
    masker = Masker()
    masker.pool.enable(1 << 20, LEAST)
    data = os.urandom(size)
    framed = masker.binary(data)
    assert isinstance(framed, tuple)
    head, body = framed
    assert type(body) is bytearray
    assert masker.pool.lends(body)
    assert head[:-4] == frame_header(FIN_BINARY, size, 0x80)
    assert _unmask(head, body) == data


def test_a_reused_body_holds_the_new_frame_only() -> None:
    masker = Masker()
    masker.pool.enable(1 << 20, LEAST)
    first = masker.binary(os.urandom(70_001))
    assert isinstance(first, tuple)
    body = first[1]
    assert type(body) is bytearray
    del body[:1000]  # partly written first
    masker.pool.give(body)
    for size in (65_536, 40_000, 65_536):  # shorter, then longer again
        data = os.urandom(size)
        framed = masker.binary(data)
        assert isinstance(framed, tuple)
        head, again = framed
        assert again is body
        assert len(again) == size
        assert _unmask(head, again) == data
        masker.pool.give(again)


def test_the_body_is_a_copy_of_the_callers_buffer() -> None:
    masker = Masker()
    masker.pool.enable(1 << 20, LEAST)
    data = bytearray(os.urandom(65_536))
    original = bytes(data)
    framed = masker.binary(data)
    assert isinstance(framed, tuple)
    data[:] = bytes(len(data))  # the caller reuses its buffer once send returned
    assert _unmask(*framed) == original


def test_without_an_enabled_pool_the_body_is_new_bytes() -> None:
    masker = Masker()
    data = os.urandom(65_536)
    framed = masker.binary(data)
    assert isinstance(framed, tuple)
    assert type(framed[1]) is bytes
    assert _unmask(*framed) == data
    small = masker.binary(b"small")  # in one piece, as before
    assert isinstance(small, bytes)
