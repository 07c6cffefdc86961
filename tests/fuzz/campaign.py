"""How long each fuzz target runs: a short fixed campaign in the test suite, a long
random one under ``make fuzz``.

A target is a property over generated inputs, declared with :func:`fuzz_target`::

    @fuzz_target(short=60, data=st.binary())
    def test_something(data: bytes) -> None:
        ...

Short campaign (the default, what ``make test`` runs): each target runs its ``short``
examples, derandomized and with no example database, so every run tries the same inputs
and the whole folder takes a few seconds.

Long campaign: set :data:`SECONDS_VAR` to the budget of the whole run, in seconds; it is
split evenly among the targets collected. :data:`EXAMPLES_VAR` optionally caps the examples
of each target. Each target then runs rounds of random examples until its share of time
(or its cap) is used up. Failing inputs are saved in :data:`DATABASE` and replayed first
by the next run. ``conftest.py`` prints what each target ran.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import HealthCheck, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.strategies import SearchStrategy

__all__ = [
    "DATABASE",
    "EXAMPLES_VAR",
    "SECONDS_VAR",
    "STATS",
    "Stats",
    "fuzz_target",
    "is_long",
    "set_share",
]

SECONDS_VAR: Final = "MESSAGE_IO_FUZZ_SECONDS"
"""Seconds for the whole long campaign; unset: the short campaign."""

EXAMPLES_VAR: Final = "MESSAGE_IO_FUZZ_EXAMPLES"
"""Most examples per target in the long campaign (unset: as many as time allows)."""

DATABASE: Final = os.path.join(".hypothesis", "fuzz")
"""Where the long campaign keeps the failing inputs it found (relative to the cwd)."""

_FIRST_ROUND: Final = 100  # examples of a target's first long round, which measures its speed
_MAX_ROUND: Final = 20_000
_ROUND_SECONDS: Final = 10.0  # later rounds are sized to last about this long

_HEALTH: Final = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]


@dataclass
class Stats:
    """What one target ran."""

    name: str
    inputs: int = 0
    """Calls of the property: generated examples, plus replays and shrinking."""
    examples: int = 0
    """Examples asked of Hypothesis (``max_examples`` summed over the rounds)."""
    rounds: int = 0
    seconds: float = 0.0
    outcome: str = "not run"


STATS: dict[str, Stats] = {}
"""Every target's stats, by test name, in the order they ran."""

_share: list[float] = [0.0]  # seconds per target in the long campaign (set by conftest)


def is_long() -> bool:
    """True under ``make fuzz`` (:data:`SECONDS_VAR` set)."""
    return bool(os.environ.get(SECONDS_VAR))


def total_seconds() -> float:
    """The long campaign's budget, in seconds."""
    return float(os.environ.get(SECONDS_VAR, "0"))


def examples_cap() -> int | None:
    """The long campaign's cap of examples per target, if any."""
    value = os.environ.get(EXAMPLES_VAR)
    return int(value) if value else None


def set_share(targets: int) -> None:
    """Split the long campaign's budget among ``targets`` targets."""
    _share[0] = total_seconds() / max(1, targets)


def _short_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=_HEALTH,
    )


def _long_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=False,
        database=DirectoryBasedExampleDatabase(DATABASE),
        suppress_health_check=_HEALTH,
        print_blob=True,
    )


def fuzz_target(
    short: int, **strategies: SearchStrategy[Any]
) -> Callable[[Callable[..., None]], Callable[[], None]]:
    """Make ``body`` a fuzz target: a test that runs it on inputs drawn from
    ``strategies`` (keyword arguments, as for :func:`hypothesis.given`), ``short``
    examples in the short campaign and for its share of time in the long one."""

    def decorate(body: Callable[..., None]) -> Callable[[], None]:
        name = body.__name__
        stats = Stats(name)

        @functools.wraps(body)
        def counted(*args: Any, **kwargs: Any) -> None:
            stats.inputs += 1
            body(*args, **kwargs)

        def prop(config: settings) -> Callable[[], None]:
            # A new wrapper each round: Hypothesis takes one settings object per test.
            return config(given(**strategies)(counted))

        def test() -> None:
            STATS[name] = stats
            _run(prop, stats, short)

        test.__name__ = test.__qualname__ = name
        test.__doc__ = body.__doc__
        test.__module__ = body.__module__
        test.fuzz_target = True  # type: ignore[attr-defined]  # counted by conftest
        return test

    return decorate


def _run(prop: Callable[[settings], Callable[[], None]], stats: Stats, short: int) -> None:
    start = time.monotonic()
    stats.outcome = "failed"
    try:
        if not is_long():
            stats.examples += short
            stats.rounds += 1
            prop(_short_settings(short))()
        else:
            _long_rounds(prop, stats, start + _share[0])
        stats.outcome = "passed"
    finally:
        stats.seconds += time.monotonic() - start


def _long_rounds(
    prop: Callable[[settings], Callable[[], None]], stats: Stats, deadline: float
) -> None:
    cap = examples_cap()
    size = _FIRST_ROUND
    started = time.monotonic()
    inputs = stats.inputs
    while True:
        now = time.monotonic()
        if now >= deadline or (cap is not None and stats.examples >= cap):
            return
        if cap is not None:
            size = min(size, cap - stats.examples)
        stats.examples += size
        stats.rounds += 1
        prop(_long_settings(size))()
        now = time.monotonic()
        rate = (stats.inputs - inputs) / max(now - started, 1e-3)
        left = deadline - now
        size = int(min(max(rate * min(left, _ROUND_SECONDS), 1), _MAX_ROUND))
