"""The figures of ``docs/performance.md``, drawn from the same rows as its tables.

One SVG per report section; in it, one panel per benchmark and unit (a round trip in µs,
a rate in messages, datagrams, deliveries or accepts per second, a transfer in GB/s),
one horizontal bar per variant in the table's order: the median, with a line from the
lowest to the highest sample. message_io's variants are blue, the others (plain sockets,
the ``websockets`` library, asyncio's ``Protocol``, pyzmq) grey; a variant compared with
a baseline is labelled with the ratio the table shows. Units that compare nothing (the
share of datagrams that arrived, memory, file descriptors) stay in the tables only.

The SVGs are written to be diffable: text stays text (``svg.fonttype = "none"``), no
date, and element ids from a fixed salt, so a new run changes only what moved.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
from bench_common import Row
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = ["PLOTTED_UNITS", "plot_section"]

# unit -> (axis label, scale applied to the values)
PLOTTED_UNITS: dict[str, tuple[str, float]] = {
    "µs/round trip": ("µs per round trip", 1.0),
    "msgs/s": ("million messages/s", 1e-6),
    "datagrams/s": ("million datagrams/s", 1e-6),
    "GB/s": ("GB/s", 1.0),
    "deliveries/s": ("million deliveries/s", 1e-6),
    "accepts/s": ("thousand accepts/s", 1e-3),
}

_OTHERS = "#9e9e9e"
_MESSAGE_IO = "#1f77b4"
_BAR_HEIGHT = 0.34  # inches per bar
_LOG_SPREAD = 30.0  # a log axis when the largest median is this many times the smallest


def _panels(rows: Sequence[Row]) -> list[list[Row]]:
    """The rows of each panel: one per (benchmark, unit), in the table's order."""
    panels: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row.unit in PLOTTED_UNITS and row.samples:
            panels.setdefault((row.benchmark, row.unit), []).append(row)
    return list(panels.values())


def _ratio(row: Row, rows: Sequence[Row]) -> float | None:
    """message_io's median over its baseline's, as in the table."""
    if row.baseline is None:
        return None
    for base in rows:
        if base.benchmark == row.benchmark and base.name == row.baseline and base.samples:
            return statistics.median(row.samples) / statistics.median(base.samples)
    return None


def _value_text(value: float, scaled_unit: str) -> str:
    """As the table shows it (run.py's ``_fmt``)."""
    if scaled_unit.startswith("million"):
        return f"{value:.3f}M"
    if scaled_unit.startswith("GB"):
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _draw(ax: Axes, panel: list[Row], rows: Sequence[Row], title: str) -> None:
    label, scale = PLOTTED_UNITS[panel[0].unit]
    medians = [statistics.median(row.samples) * scale for row in panel]
    lows = [min(row.samples) * scale for row in panel]
    highs = [max(row.samples) * scale for row in panel]
    positions = list(range(len(panel)))
    ax.barh(
        positions,
        medians,
        height=0.7,
        color=[_MESSAGE_IO if row.name.startswith("message_io") else _OTHERS for row in panel],
        xerr=[
            [m - lo for m, lo in zip(medians, lows, strict=True)],
            [hi - m for m, hi in zip(medians, highs, strict=True)],
        ],
        error_kw={"ecolor": "#333333", "elinewidth": 0.8, "capsize": 2},
    )
    ax.set_yticks(positions, [row.name for row in panel], fontsize=8)
    ax.invert_yaxis()  # the table's first row on top
    better = "higher" if panel[0].higher_is_better else "lower"
    ax.set_xlabel(f"{label} ({better} is better)", fontsize=8)
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    low_end = min(medians)
    if low_end > 0 and max(medians) / low_end > _LOG_SPREAD:
        ax.set_xscale("log")
        ax.set_xlim(right=max(highs) * 8)  # room for the labels
    else:
        ax.set_xlim(0, max(highs) * 1.3)
    for position, row, value, high in zip(positions, panel, medians, highs, strict=True):
        text = _value_text(value, label)
        ratio = _ratio(row, rows)
        if ratio is not None:
            text += f"  ({ratio:.2f}x)"
        ax.annotate(
            text,
            (high, position),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )


def plot_section(title: str, rows: Sequence[Row], path: Path) -> bool:
    """Draw the panels of one report section into the SVG file ``path``.

    Args:
        title: The section's title, drawn above the panels.
        rows: The section's rows, as in its table (baselines included).
        path: Where to write the SVG; its directory is created if need be.

    Returns:
        False, writing nothing, if no row has a unit worth a plot.
    """
    panels = _panels(rows)
    if not panels:
        return False
    heights = [len(panel) * _BAR_HEIGHT + 0.9 for panel in panels]
    with mpl.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "message-io",
            "font.family": "sans-serif",
        }
    ):
        figure = Figure(figsize=(9.0, sum(heights) + 0.4), layout="constrained")
        figure.set_facecolor("white")  # readable on the site's dark theme too
        axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)
        benchmarks = [panel[0].benchmark for panel in panels]
        for ax, panel in zip(axes[:, 0], panels, strict=True):
            name = panel[0].benchmark
            if benchmarks.count(name) > 1:  # UDP: a round trip and a send rate
                name += ", " + PLOTTED_UNITS[panel[0].unit][0]
            _draw(ax, panel, rows, name)
        figure.suptitle(title, fontsize=10, x=0.01, ha="left")
        figure.legend(
            handles=[
                Patch(color=_MESSAGE_IO, label="message_io"),
                Patch(color=_OTHERS, label="others"),
                Line2D([], [], color="#333333", linewidth=0.8, label="min to max"),
            ],
            loc="outside upper right",
            ncols=3,
            fontsize=8,
            frameon=False,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="svg", metadata={"Date": None})
    return True
