"""Connection churn: does a closed connection give back everything it took, at once?

An echo server (a message_io node, in its own process) serves ``cycles`` short
connections of a client process (default 50,000): each one connects, sends one small
message, waits for its echo and is removed by the client. The server measures itself
after the first ``warmup`` cycles (1,000) and after the last one: its resident memory
(``VmRSS`` of ``/proc/self/status``), its open file descriptors (the entries of
``/proc/self/fd``) and the :class:`~message_io.network.adapter.Remote` objects not yet
freed (``gc.get_objects()``, without a collection first: what a server would carry).
The target: memory at the end within :data:`RSS_TARGET_MIB` of the value after the
warmup, and as many fds and remotes at both points (none of the churned connections).

Both sides use default configs (WebSocket: its 20 s keepalive pings, 10 s connect and
handshake deadlines). The client keeps ``lanes`` cycles in flight at once (one node,
each lane strictly sequential: connect, send, echo, remove, next connect), so that the
server always has connections to serve. It also holds one more connection open
throughout, the *control* connection, to ask for the two measurements: after the
warmup cycles (and after the last one) it sends :data:`_SAMPLE` there, and the server
measures once every churned connection it accepted is disconnected, answers
:data:`_SAMPLED`, and the client goes on. The control connection is open at both
measurements, so it cancels out. The time between the two is measured first, then the
memory, the fds, and the remotes (the slow part: a list of every object).

*cycles/s* is the server's rate between its two measurements (cycles after the warmup
divided by the time between the two). A run is bounded by ``time_limit`` seconds (600):
past it the client starts no new cycle, lets the lanes finish theirs, and asks for the
final measurement, which then covers the cycles done; run from ``run.py`` that fails
the benchmark, run by hand it is reported as such.

Every echo is checked (content and connection), and the server counts that it accepted,
echoed and saw disconnect exactly the churned connections.

::

    python benchmarks/bench_churn.py                    # 50,000 cycles, FramedTcp and WS
    python benchmarks/bench_churn.py --cycles 5000 --transport ws
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from bench_common import HOST, BenchmarkError, Case, Report, Row, run_pair

import message_io
from message_io import Accepted, Connected, Disconnected, Endpoint, Message, Signal, Transport
from message_io.network.adapter import Remote

__all__ = [
    "CYCLES",
    "LANES",
    "NAME",
    "QUICK_CYCLES",
    "RSS_TARGET_MIB",
    "TIME_LIMIT",
    "WARMUP",
    "ChurnResult",
    "Plan",
    "Sample",
    "cases",
    "cycle_count",
    "measure",
    "method_text",
]

NAME: Final = "churn"
"""The ``benchmark`` column of this module's rows (and its ``run.py --only`` name)."""
CYCLES: Final = 50_000
"""Cycles per run by default (``run.py --quick``: :data:`QUICK_CYCLES`)."""
QUICK_CYCLES: Final = 5_000
WARMUP: Final = 1_000
"""Cycles before the first measurement."""
LANES: Final = 4
"""Cycles in flight at once in the client."""
TIME_LIMIT: Final = 600.0
RSS_TARGET_MIB: Final = 10.0

_PING: Final = b"churn"
_SAMPLE: Final = b"sample?"
_SAMPLED: Final = b"sampled"
_QUIET: Final = "measure if quiet"  # the server's own signal
_LABELS: Final = {Transport.FRAMED_TCP: "FramedTcp", Transport.WS: "WS"}
_BY_OPTION: Final = {"framed_tcp": Transport.FRAMED_TCP, "ws": Transport.WS}


@dataclass(frozen=True)
class Plan:
    """What the client is to do."""

    cycles: int
    warmup: int
    lanes: int
    time_limit: float


@dataclass(frozen=True)
class Sample:
    """What the server measured of itself, once every churned connection was closed."""

    cycles: int
    """Churned connections accepted (and disconnected) so far."""
    rss_kib: int
    fds: int
    remotes: int
    """Remote objects not freed, but the control connection's."""
    at: float
    """``time.perf_counter()`` when measured."""
    cpu: float
    """``time.process_time()`` when measured (the server's CPU time, all threads)."""


@dataclass(frozen=True)
class ChurnResult:
    transport: Transport
    cycles: int
    """Cycles done (fewer than asked if the time limit passed)."""
    timed_out: bool
    warm: Sample
    end: Sample
    client_busy: float
    """The client's CPU time per second of its whole run (warmup included)."""

    @property
    def rate(self) -> float:
        """Cycles per second between the two measurements (the server's clock)."""
        return (self.end.cycles - self.warm.cycles) / (self.end.at - self.warm.at)

    @property
    def server_busy(self) -> float:
        """The server's CPU time between the two measurements, per second of them."""
        return (self.end.cpu - self.warm.cpu) / (self.end.at - self.warm.at)

    @property
    def rss_growth_mib(self) -> float:
        return (self.end.rss_kib - self.warm.rss_kib) / 1024

    @property
    def target_met(self) -> bool:
        return (
            self.rss_growth_mib <= RSS_TARGET_MIB
            and self.end.fds == self.warm.fds
            and self.end.remotes == self.warm.remotes
        )


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchmarkError("no VmRSS in /proc/self/status")


def _remotes() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Remote))


# -- the server ------------------------------------------------------------------------------


def churn_server(report: Report, transport: Transport) -> list[Sample]:
    """Echo every message; measure when the control connection asks (see the module's
    docstring); stop when it goes. Returns the measurements."""
    handler, listener = message_io.split()
    _, addr = handler.network.listen(transport, f"{HOST}:0")
    report(addr[1])
    send = handler.network.send
    control: Endpoint | None = None
    accepted = disconnected = echoes = 0
    asked = False
    samples: list[Sample] = []
    problems: list[str] = []

    def measure_if_quiet() -> None:
        nonlocal asked
        if not asked or accepted - disconnected != 1:
            return  # churned connections still open (their Disconnected is on the way)
        asked = False
        cycles = accepted - 1
        if echoes != cycles:
            problems.append(f"{echoes} echoes for {cycles} connections")
        at, cpu = time.perf_counter(), time.process_time()
        rss_kib = _rss_kib()
        fds = len(os.listdir("/proc/self/fd"))
        remotes = _remotes() - 1
        samples.append(Sample(cycles, rss_kib, fds, remotes, at, cpu))
        assert control is not None
        send(control, _SAMPLED)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal control, accepted, disconnected, echoes, asked
        if isinstance(event, Message):
            data = event.data
            if data == _PING:
                send(event.endpoint, data)
                echoes += 1
            elif data == _SAMPLE:
                control = event.endpoint
                asked = True
                measure_if_quiet()
            else:
                problems.append(f"unexpected message {data!r}")
        elif isinstance(event, Accepted):
            accepted += 1
        elif isinstance(event, Disconnected):
            disconnected += 1
            if event.endpoint == control:
                handler.stop()
            else:
                # Not now: while its Disconnected is delivered the connection is still
                # being released (the engine holds it, so its Remote is alive). A signal
                # comes after this callback has returned.
                handler.signals.send(_QUIET)
        elif isinstance(event, Signal) and event.value == _QUIET:
            measure_if_quiet()
        else:
            problems.append(f"unexpected event {event!r}")

    listener.for_each(on_event)
    if problems:
        raise BenchmarkError("; ".join(problems[:5]))
    return samples


# -- the client ------------------------------------------------------------------------------


def churn_client(port: int, transport: Transport, plan: Plan) -> tuple[int, bool, float]:
    """Run the cycles (see the module's docstring).

    Returns ``(cycles done, timed out, CPU seconds per second of the run)``.
    """
    cycles, lanes = plan.cycles, plan.lanes
    handler, listener = message_io.split()
    network = handler.network
    addr = (HOST, port)
    control, _ = network.connect(transport, addr)
    lane_ends: set[Endpoint] = set()  # the churned connections open now
    started = done = 0
    target = min(plan.warmup, cycles)  # cycles of the current phase
    phase = 0  # 0: before the control connection is up; 1: warmup; 2: the rest
    timed_out = False
    asking = False  # _SAMPLE sent, _SAMPLED not yet back
    t0, cpu0 = time.perf_counter(), time.process_time()

    def start_cycles() -> None:
        nonlocal started
        while started < target and len(lane_ends) < lanes and not timed_out:
            endpoint, _ = network.connect(transport, addr)
            lane_ends.add(endpoint)
            started += 1

    def phase_done() -> None:
        nonlocal asking
        if not asking and not lane_ends and (done == target or timed_out):
            asking = True
            network.send(control, _SAMPLE)

    def on_event(event: message_io.NodeEvent[Any]) -> None:
        nonlocal done, target, phase, timed_out, asking
        if isinstance(event, Message):
            endpoint = event.endpoint
            if endpoint == control:
                if event.data != _SAMPLED:
                    raise BenchmarkError(f"unexpected answer {event.data!r}")
                asking = False
                if phase == 1 and not timed_out and target < cycles:
                    phase, target = 2, cycles
                    start_cycles()
                else:
                    network.remove(control.resource_id)
                    handler.stop()
                return
            if endpoint not in lane_ends or event.data != _PING:
                raise BenchmarkError(f"unexpected echo {event.data!r} from {endpoint}")
            network.remove(endpoint.resource_id)
            lane_ends.discard(endpoint)
            done += 1
            start_cycles()
            phase_done()
        elif isinstance(event, Connected):
            endpoint = event.endpoint
            if not event.established:
                raise BenchmarkError(f"connecting {endpoint} failed")
            if endpoint == control:
                phase = 1
                handler.signals.send_with_timer("time limit", plan.time_limit)
                start_cycles()
                phase_done()  # no cycles at all
            elif network.send(endpoint, _PING) is not message_io.SendStatus.SENT:
                raise BenchmarkError(f"could not send to {endpoint}")
        elif isinstance(event, Signal):
            timed_out = True
            phase_done()
        elif isinstance(event, Disconnected):
            raise BenchmarkError(f"the server closed {event.endpoint}")

    listener.for_each(on_event)
    return done, timed_out, (time.process_time() - cpu0) / (time.perf_counter() - t0)


# -- one run ---------------------------------------------------------------------------------


def measure(
    transport: Transport,
    cycles: int = CYCLES,
    *,
    warmup: int = WARMUP,
    lanes: int = LANES,
    time_limit: float = TIME_LIMIT,
) -> ChurnResult:
    """One run: the server in one process, the client in another."""
    if cycles <= warmup:
        raise ValueError(f"cycles ({cycles}) must be more than the warmup ({warmup})")
    samples, (done, timed_out, client_busy) = run_pair(
        churn_server,
        churn_client,
        server_args=(transport,),
        client_args=(transport, Plan(cycles, warmup, lanes, time_limit)),
        timeout=time_limit + 120.0,  # time to finish the lanes and measure
    )
    if len(samples) != 2:
        raise BenchmarkError(f"{len(samples)} measurements by the server, expected 2")
    warm, end = samples
    if warm.cycles != warmup or end.cycles != done:
        raise BenchmarkError(
            f"the server measured after {warm.cycles} and {end.cycles} connections;"
            f" the client did {warmup} and {done} cycles"
        )
    return ChurnResult(transport, done, timed_out, warm, end, client_busy)


# -- run.py ----------------------------------------------------------------------------------


def cycle_count(quick: bool) -> int:
    return QUICK_CYCLES if quick else CYCLES


def _sample(transport: Transport, cycles: int, rows: list[Row]) -> float:
    result = measure(transport, cycles)
    if result.timed_out:
        raise BenchmarkError(
            f"churn {transport.name}: {result.cycles} of {cycles} cycles in the time limit"
        )
    warm_rss, end_rss, growth, fds, remotes = rows
    warm_rss.samples.append(result.warm.rss_kib / 1024)
    end_rss.samples.append(result.end.rss_kib / 1024)
    growth.samples.append(result.rss_growth_mib)
    fds.samples.append(result.end.fds - result.warm.fds)
    remotes.samples.append(result.end.remotes)
    return result.rate


def cases(quick: bool) -> list[Case]:
    """Per transport: cycles/s, and the rows the same run fills (memory, fds, remotes)."""
    cycles = cycle_count(quick)
    result = []
    for transport, label in _LABELS.items():
        extra = [
            Row(NAME, f"{label}, RSS after {WARMUP:,} cycles", "MiB", higher_is_better=False),
            Row(NAME, f"{label}, RSS at the end", "MiB", higher_is_better=False),
            Row(
                NAME,
                f"{label}, RSS growth after {WARMUP:,} cycles",
                "MiB",
                higher_is_better=False,
                target=f"<= {RSS_TARGET_MIB:.0f} MiB",
                target_met=lambda median, _ratio: median <= RSS_TARGET_MIB,
            ),
            Row(
                NAME,
                f"{label}, open fds, change",
                "fds",
                higher_is_better=False,
                target="0",
                target_met=lambda median, _ratio: median == 0,
            ),
            Row(
                NAME,
                f"{label}, remotes not freed at the end",
                "remotes",
                higher_is_better=False,
                target="0",
                target_met=lambda median, _ratio: median == 0,
            ),
        ]
        result.append(
            Case(
                Row(NAME, f"{label}, connect/echo/close", "cycles/s", higher_is_better=True),
                partial(_sample, transport, cycles, extra),
                extra_rows=tuple(extra),
            )
        )
    return result


_METHOD: Final = """\
**Connection churn.** An echo server (a message_io node with default configs, one
process) serves {cycles} short connections from a client process: each one connects,
sends a {size}-byte message, waits for its echo and is removed by the client, which
keeps {lanes} such cycles in flight (each one strictly sequential), so that the
server always has connections to serve. The server measures itself after the first
{warmup} cycles and after the last, each time once every connection of the cycles so
far is disconnected: its resident memory (`VmRSS` in `/proc/self/status`), its open file descriptors
(`/proc/self/fd`), and the `Remote` objects not yet freed (`gc.get_objects()`, no
collection first). *RSS growth* is the difference of the two memory figures, *open
fds, change* that of the two fd counts, *remotes not freed* the count at the end; the
client's one connection that stays open (to ask for the measurements) is in both and
is not counted. *cycles/s* is the server's rate between the two measurements. WS runs
with its defaults (a ping every 20 s, 10 s connect and handshake deadlines). The target
is what a closed connection should leave behind: nothing, so memory within
{target} MiB and no fd or remote more."""


def method_text(quick: bool) -> str:
    """The "how it is measured" paragraph of the churn section."""
    return _METHOD.format(
        cycles=f"{cycle_count(quick):,}",
        size=len(_PING),
        lanes=LANES,
        warmup=f"{WARMUP:,}",
        target=f"{RSS_TARGET_MIB:.0f}",
    )


# -- by hand ---------------------------------------------------------------------------------


def _table(results: list[ChurnResult]) -> list[list[str]]:
    lines = [
        [
            "transport",
            "cycles",
            "cycles/s",
            "server CPU",
            "client CPU",
            f"RSS after {WARMUP:,}",
            "RSS at end",
            "growth",
            f"fds after {WARMUP:,}",
            "fds at end",
            f"remotes after {WARMUP:,}",
            "remotes at end",
            "target",
        ]
    ]
    for result in results:
        done = f"{result.cycles:,}" + (" (time limit)" if result.timed_out else "")
        lines.append(
            [
                _LABELS[result.transport],
                done,
                f"{result.rate:,.0f}",
                f"{result.server_busy:.0%}",
                f"{result.client_busy:.0%}",
                f"{result.warm.rss_kib / 1024:.1f} MiB",
                f"{result.end.rss_kib / 1024:.1f} MiB",
                f"{result.rss_growth_mib:+.1f} MiB",
                str(result.warm.fds),
                str(result.end.fds),
                f"{result.warm.remotes:,}",
                f"{result.end.remotes:,}",
                "met" if result.target_met else "MISSED",
            ]
        )
    return lines


def _print(lines: list[list[str]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=CYCLES, help="cycles per transport")
    parser.add_argument("--lanes", type=int, default=LANES, help="cycles in flight at once")
    parser.add_argument(
        "--transport",
        action="append",
        choices=list(_BY_OPTION),
        help="only this transport (repeatable; default: both)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=TIME_LIMIT, help="seconds per transport"
    )
    args = parser.parse_args(argv)
    if args.cycles <= WARMUP:
        parser.error(f"--cycles must be more than the {WARMUP:,} cycles before the first sample")
    names = args.transport or list(_BY_OPTION)
    results: list[ChurnResult] = []
    for name in names:
        transport = _BY_OPTION[name]
        t0 = time.monotonic()
        try:
            result = measure(transport, args.cycles, lanes=args.lanes, time_limit=args.time_limit)
        except BenchmarkError as exc:
            print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
            return 1
        print(
            f"{_LABELS[transport]}: {result.cycles:,} cycles in {time.monotonic() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    _print(_table(results))
    return 0


if __name__ == "__main__":
    import bench_churn  # so that the sides are pickled as bench_churn.*, not __main__.*

    sys.exit(bench_churn.main())
