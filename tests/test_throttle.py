"""LogThrottle: at most N lines a period, then one summary; a fake clock, no sleeps."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from message_io.util.throttle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ten_lines_a_second_then_a_summary_from_the_timer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    scheduled: list[tuple[float, Callable[[], None]]] = []
    logger = logging.getLogger("test.throttle")
    throttle = LogThrottle(
        logger, "peer lines", schedule=lambda d, f: scheduled.append((d, f)), clock=clock
    )
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        for index in range(250):
            clock.now += 0.001
            throttle.log(logging.INFO, "peer %d gone", index)
        assert len(caplog.records) == 10
        assert len(scheduled) == 1  # one summary scheduled for the end of the second
        delay, flush = scheduled[0]
        assert 0.9 < delay <= 1.0
        clock.now += delay
        flush()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:10] == [f"peer {i} gone" for i in range(10)]
    assert messages[10] == "240 more peer lines suppressed in the last 1 s"
    assert throttle.summaries == 1


def test_a_new_period_lets_lines_through_again_and_reports_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    logger = logging.getLogger("test.throttle2")
    throttle = LogThrottle(logger, "lines", limit=2, period=1.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.throttle2"):
        for _ in range(5):
            throttle.log(logging.INFO, "x")
        clock.now += 1.0
        throttle.log(logging.INFO, "y")
    assert [r.getMessage() for r in caplog.records] == [
        "x",
        "x",
        "3 more lines suppressed in the last 1 s",
        "y",
    ]


def test_disabled_levels_cost_nothing_and_count_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.throttle3")
    throttle = LogThrottle(logger, "lines", limit=1, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="test.throttle3"):
        for _ in range(100):
            throttle.log(logging.DEBUG, "quiet")
        throttle.flush()
    assert caplog.records == []
