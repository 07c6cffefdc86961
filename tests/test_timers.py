"""The loop's internal timers: cancelled ones release what they hold and do not pile up."""

from __future__ import annotations

import gc
import weakref

from message_io.network.loop import Loop


class Held:
    """Stands for a connection that a timer's callback refers to."""

    def fire(self) -> None:
        raise AssertionError("a cancelled timer fired")


def test_a_cancelled_timer_releases_its_callback_at_once() -> None:
    loop: Loop[object] = Loop()
    try:
        held = Held()
        ref = weakref.ref(held)
        timer = loop.add_timer(3600, held.fire)
        del held
        loop.cancel_timer(timer)
        gc.collect()
        assert ref() is None
    finally:
        loop.shutdown()


def test_cancelled_timers_are_compacted_out_of_the_heap() -> None:
    loop: Loop[object] = Loop()
    try:
        keep = loop.add_timer(3600, lambda: None)
        for _ in range(10_000):
            loop.cancel_timer(loop.add_timer(3600, Held().fire))
        assert len(loop.timers.entries) <= 600  # not 10,001: rebuilt as cancelled ones pile up
        assert any(entry[2] is keep for entry in loop.timers.entries)
        loop.cancel_timer(keep)
        loop.cancel_timer(keep)  # twice is harmless
    finally:
        loop.shutdown()


def test_due_timers_run_and_cancelled_ones_do_not() -> None:
    loop: Loop[object] = Loop()
    ran: list[str] = []
    try:
        loop.add_timer(0, lambda: ran.append("due"))
        loop.cancel_timer(loop.add_timer(0, lambda: ran.append("cancelled")))
        loop.timers.run_due(lambda: True)
        assert ran == ["due"]
        assert loop.timers.entries == []
    finally:
        loop.shutdown()


def test_cancelling_the_earliest_timer_takes_it_out_of_the_heap_at_once() -> None:
    """The loop plans its poll from the earliest entry: a cancelled one there would keep
    it reading the clock every turn until it surfaced. Cancelled entries behind it go
    with it; a live one stops the clean-up."""
    loop: Loop[object] = Loop()
    try:
        first = loop.add_timer(10, Held().fire)
        second = loop.add_timer(20, Held().fire)
        later = loop.add_timer(30, lambda: None)
        loop.cancel_timer(second)  # not the earliest: stays until it surfaces
        assert len(loop.timers.entries) == 3
        loop.cancel_timer(first)  # the earliest, and the cancelled one behind it
        assert [entry[2] for entry in loop.timers.entries] == [later]
        loop.cancel_timer(later)
        assert loop.timers.entries == []
        assert loop.next_timeout() is None
    finally:
        loop.shutdown()


def test_a_cancelled_timer_that_surfaces_when_the_earlier_ones_run_goes_with_them() -> None:
    loop: Loop[object] = Loop()
    ran: list[str] = []
    try:
        loop.add_timer(0, lambda: ran.append("due"))
        behind = loop.add_timer(3600, Held().fire)
        live = loop.add_timer(7200, lambda: None)
        loop.cancel_timer(behind)  # not the earliest: it stays, behind the due one
        assert len(loop.timers.entries) == 3
        loop.timers.run_due(lambda: True)
        assert ran == ["due"]
        assert [entry[2] for entry in loop.timers.entries] == [live]
    finally:
        loop.shutdown()
