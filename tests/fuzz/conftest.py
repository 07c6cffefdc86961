"""The fuzz targets' campaign: its budget split among the targets collected, and a
summary of what each one ran (long campaign only; see ``campaign.py``)."""

from __future__ import annotations

import pytest

from . import campaign


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    targets = [item for item in items if getattr(getattr(item, "obj", None), "fuzz_target", False)]
    campaign.set_share(len(targets))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not campaign.is_long() or not campaign.STATS:
        return
    cap = campaign.examples_cap()
    terminalreporter.section("fuzz campaign")
    terminalreporter.write_line(
        f"budget {campaign.total_seconds():g} s over {len(campaign.STATS)} targets"
        + (f", at most {cap} examples each" if cap is not None else "")
        + f"; failing inputs are kept in {campaign.DATABASE}"
    )
    total_inputs = 0
    total_seconds = 0.0
    for stats in campaign.STATS.values():
        total_inputs += stats.inputs
        total_seconds += stats.seconds
        terminalreporter.write_line(
            f"{stats.name}: {stats.outcome}, {stats.inputs} inputs "
            f"({stats.examples} examples asked in {stats.rounds} rounds) "
            f"in {stats.seconds:.1f} s"
        )
    terminalreporter.write_line(f"total: {total_inputs} inputs in {total_seconds:.1f} s")
