"""Run the message_io benchmarks, print the results and write ``docs/performance.md``.

The report's figures (``docs/img/performance-*.svg``, one per section) are drawn by
``plots.py`` from the same rows as its tables.

::

    python benchmarks/run.py                  # everything (about 4 minutes, and churn)
    python benchmarks/run.py --quick          # fewer messages, 3 samples (1 minute, and churn)
    python benchmarks/run.py --only latency   # or throughput receive fanout bulk udp ws asyncio
                                              # churn idle accept
    python benchmarks/run.py --only churn     # 50,000 connections per transport (1-2 minutes)
    python benchmarks/run.py --no-write       # print only
    python benchmarks/run.py --quick --profile /tmp/prof   # cProfile stats of every side

Every variant is measured several times, interleaved with the others (A B C, A B C, ...)
so that a slow patch of the machine hits every variant alike; the table gives the
median, min and max, and the ratio of the medians to the variant's baseline measured in
the same run. Exits with status 1 if any benchmark fails (lost messages, a side that
raised or ran out of time); nothing is written then.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import bench_accept
import bench_asyncio
import bench_churn
import bench_common
import bench_fanout
import bench_idle
import bench_latency
import bench_receive
import bench_stream
import bench_udp
import bench_ws
from bench_common import BenchmarkError, Case, Row

import message_io

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"

# Benchmarks of one row group each, with a section (table, method, figure) of their own:
# (module, title, introduction), in the report's order.
_SECTIONS: list[tuple[ModuleType, str, str]] = [
    (
        bench_asyncio,
        "asyncio",
        "`message_io.asyncio`, a node driven by the running event loop, against the\n"
        "synchronous `for_each` node and asyncio's own fastest form, a `Protocol`.",
    ),
    (
        bench_receive,
        "Receive only",
        "How fast a receiver takes 100-byte length-prefixed messages from a sender that\n"
        "outpaces it: message_io against asyncio's and uvloop's own `Protocol`.",
    ),
    (
        bench_fanout,
        "Fan-out",
        "One server sending the same 100-byte message to each of many clients, round after\n"
        "round: message_io against asyncio's and uvloop's own `Protocol` server.",
    ),
    (
        bench_idle,
        "Idle connections",
        "What each open but silent connection costs a server in memory.",
    ),
    (
        bench_accept,
        "Accepts per second",
        "How fast a server takes a burst of new connections: message_io against asyncio's\n"
        "and uvloop's `Protocol` servers, and the `websockets` server for WebSocket.",
    ),
]

# benchmarks with a section of their own
_OWN_SECTION = {"udp", bench_churn.NAME, *(module.NAME for module, _, _ in _SECTIONS)}
_OWN_SECTION.update(bench_ws.SECTIONS)  # WebSocket: round trip, 100 B, bulk

# name: (the variants, samples per variant in a full run; --quick takes 3 of each)
BENCHMARKS: dict[str, tuple[Callable[[bool], list[Case]], int]] = {
    "latency": (bench_latency.cases, 5),
    "throughput": (bench_stream.throughput_cases, 5),
    bench_receive.NAME: (bench_receive.cases, 5),
    bench_fanout.NAME: (bench_fanout.cases, 5),
    "bulk": (bench_stream.bulk_cases, 7),
    "udp": (bench_udp.cases, 5),
    "ws": (bench_ws.cases, 5),
    bench_asyncio.NAME: (bench_asyncio.cases, 5),
    # one long run per transport: it measures what is left after 50,000 connections
    bench_churn.NAME: (bench_churn.cases, 1),
    bench_idle.NAME: (bench_idle.cases, 1),  # steady: min and max agree within 1%
    # 3: a websockets sample takes 5 s (10,000 handshakes at 2,000-3,000 a second)
    bench_accept.NAME: (bench_accept.cases, 3),
}

METHODS = {
    "latency": """\
**1-byte round-trip latency.** Client and echo server are two processes, both pinned to
CPU 0 (`os.sched_setaffinity(0, {{0}})`), so a round trip is the work of both sides plus two
context switches on one core; unpinned, the cost of waking the other core dominates and
varies from run to run. The client sends a 1-byte message and waits for its echo, {warmup}
times to warm up and then {count} times timed; a sample is the mean time of one round trip,
measured in the client. message_io: the client sends each ping from its callback on the
previous `Message`, the server echoes from its callback; both run `for_each` and dispatch
with `event.__class__ is Message`, as a consumer that cares about speed would (the UDP and
WS round trips below too; the asyncio section shows what `match` costs). Plain
baseline: blocking sockets with `TCP_NODELAY` (as message_io's default); TCP: `sendall` +
`recv` on both sides; framed: the same, with the 1-byte varint length prefix added and
parsed by hand on both sides. *nodelay off*: message_io with `nodelay=False` in both the
connect and the listen config (Nagle's algorithm on). *2-write request*: each request is
two 1-byte messages written by two separate flushes of the client's loop (the first sent
from the callback of the previous reply, the second from the callback of a signal); the
server answers once it has both parts. This is where Nagle's algorithm hurts: the second
write waits for the ACK of the first, which the server delays since it has nothing to
answer yet.""",
    "throughput": """\
**One-way throughput of 100-byte messages.** A sender process sends {count} messages of
100 bytes to a receiver process (unpinned: one core each); the receiver counts `Message`
events and their bytes until it has them all, checks that it got exactly {count}
messages of 100 bytes, and notes the time. A sample is {count} divided by the time from
the sender's first send to the receiver's last receive (`time.perf_counter()`, i.e.
`CLOCK_MONOTONIC`, one clock for both processes). *loop thread*: the sender calls `send`
in its callback, 1024 messages per turn of the loop, the next batch asked for with a
signal (or, after `send` returned `QUEUE_FULL`, by the `Drained` event). *foreign
thread*: the node runs `for_each_async` and the main thread calls `send` in a loop, and
on `QUEUE_FULL` waits with `wait_drained` and sends again. On `Tcp` (a byte stream) the
receiver counts bytes, not messages. The receiving callback dispatches with
`event.__class__ is Message`, as a consumer that cares about speed would; *match
callback* is the same run with the documented `match event: case Message(_, data):`,
which costs CPython 3.11 about 0.2 µs more per event (measured apart; it shows here
only while the receiver is the slower end). Plain baseline: blocking sockets,
one `sendall` per 101-byte frame (1-byte varint header + 100 bytes), with Nagle's
algorithm on (the default: the kernel coalesces the small writes, three times faster
than with `TCP_NODELAY` here); the receiver does `recv_into` a 64 KiB buffer and cuts
every frame out as its own object, as message_io delivers them. *pyzmq PUSH/PULL*: the
ZeroMQ baseline, {pyzmq}: the receiver `bind`s a PULL socket and `recv`s the messages
one by one (each its own `bytes`, its size checked); the sender `connect`s a PUSH socket
(with `IMMEDIATE`, and the clock starts once `poll` says the connection is up) and
`send`s them in a loop; ZeroMQ's own framing (a 2-byte header each), default high-water
marks (1,000 messages queued on each side) and one I/O thread per process.""",
    "bulk": """\
**Bulk throughput.** {size} in 64 KiB messages, one way, between two unpinned processes;
the receiver counts the bytes (and, on `FramedTcp`, checks every message is 64 KiB) and a
sample is bytes / time from first send to last receive, in GB/s (10^9 bytes/s). message_io
senders as for throughput (loop thread: 64 messages per turn; foreign thread), all with
the default 4 MiB `send_buffer_limit`. Plain baseline: blocking sockets, `sendall` of a
64 KiB chunk with `TCP_NODELAY` (as message_io; without it the tail of each write that
does not fill a segment waits for an ACK, 1.5x slower) and `recv_into` a reused 64 KiB
buffer (the fastest of the sizes tried, 64 KiB to 1 MiB).""",
    "udp": """\
**UDP round trip and send rate.** *Round trip*: as for latency, client and echo server
pinned to CPU 0, a 1-byte datagram and its echo, {udp_warmup} times to warm up and then
{udp_count} times timed, a sample being the mean round trip measured in the client.
message_io: the client `connect`s (a connected UDP socket) and sends each ping from its
callback on the previous `Message`; the server `listen`s and echoes from its callback,
which sends from the listening socket (`sendto`). Plain baseline: blocking sockets,
connected on both ends (the server `connect`s to the client after the first datagram),
`send` + `recv`; *recvfrom/sendto server*: the plain server stays unconnected and answers
with `sendto` to the address `recvfrom` gave, as a server answering any peer from one
socket (message_io's listener among them) must. *DatagramProtocol*: asyncio's own
fastest form, on asyncio and on uvloop: the server's `datagram_received` answers with
`transport.sendto(data, addr)`, the client (a connected endpoint) sends each ping from
`datagram_received` of the previous echo; the message_io row is repeated with its ratio
to uvloop's. *Send rate*: a sender sends {rate_count}
datagrams of 100 bytes one way to a receiver in another process, the sender pinned to
CPU 0 and the receiver to CPU 1 (so neither runs on the other's CPU: steadier samples).
UDP has no flow control: on loopback a send never waits, the kernel puts the datagram in
the receiver's socket buffer during the sender's `send` call, and drops it if that buffer
is full (both receivers ask for an `SO_RCVBUF` of {rcvbuf}, capped by
`net.core.rmem_max`: {rmem_max} here). So a sample is the *sender's* rate, {rate_count}
divided by the time from its first `send` to the return of its last, measured in the
sender, and *arrived* is the share of them the receiver counted (each one checked to be
100 bytes); then the sender sends an end marker, again every 10 ms until the receiver
acknowledges it. Plain: `sock.send(data)` in a loop on a connected blocking socket; the
receiver calls `recvfrom` in a loop. *Socket polled for reading*: the same, the sending
socket first registered with an epoll for `EPOLLIN`, as an event loop keeps every socket
it reads (message_io's connected socket too): the kernel then calls the socket's wait
queue each time a datagram's buffer is freed, a cost an unpolled socket does not pay;
the row shows what it costs plain sockets. message_io: the sender `connect`s, and sends from
the *loop thread* (1024 datagrams per turn of the loop, the next batch asked for with a
signal) or from a *foreign thread* (a loop of `send` on the main thread while the node
runs `for_each_async`), as for throughput; the receiver listens with
`UdpListenConfig(receive_buffer_size=...)` and counts `Message` events in its callback.""",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and repeats")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument(
        "--repeats", type=int, help="samples per variant (default: 5, bulk 7; quick 3)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every side under cProfile and dump its stats in DIR (implies --no-write)",
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    parser.add_argument("--output", type=Path, default=DOC, help="where to write the report")
    return parser.parse_args(argv)


def _ratio(row: Row, rows: dict[str, Row]) -> tuple[float, float, float] | None:
    """message_io / baseline: of the medians, and the min and max of per-repeat ratios."""
    if row.baseline is None:
        return None
    base = rows[row.benchmark + "/" + row.baseline]
    paired = [a / b for a, b in zip(row.samples, base.samples, strict=False)]
    return row.stats.median / base.stats.median, min(paired), max(paired)


def _fmt(value: float, unit: str) -> str:
    if unit in ("msgs/s", "datagrams/s", "deliveries/s"):
        return f"{value / 1e6:.3f}M"
    if unit == "GB/s":
        return f"{value:.2f}"
    if unit == "µs CPU/delivery":
        return f"{value:.2f}"
    if unit in ("fds", "remotes"):
        return f"{value:,.0f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _table(rows: list[Row]) -> list[list[str]]:
    by_key = {row.benchmark + "/" + row.name: row for row in rows}
    lines = [["benchmark", "variant", "unit", "median", "min", "max", "ratio", "target"]]
    for row in rows:
        stats = row.stats
        ratio = _ratio(row, by_key)
        ratio_text = "" if ratio is None else f"{ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f})"
        target = row.target
        if row.target_met is not None:
            met = row.target_met(stats.median, None if ratio is None else ratio[0])
            target = f"{target}: {'met' if met else 'MISSED'}"
        lines.append(
            [
                row.benchmark,
                row.name,
                row.unit,
                _fmt(stats.median, row.unit),
                _fmt(stats.low, row.unit),
                _fmt(stats.high, row.unit),
                ratio_text,
                target,
            ]
        )
    return lines


def _print_table(lines: list[list[str]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def _markdown_table(lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    out.extend(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines[1:]
    )
    return "\n".join(out)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    uname = platform.uname()
    return f"{cpu}, {os.cpu_count()} logical CPUs{memory}; {uname.system} {uname.release}"


def _commit() -> str:
    try:
        out = subprocess.run(
            # read-only: no optional locks, so the index is never rewritten
            ["git", "--no-optional-locks", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def _size(n: int) -> str:
    return f"{n // 2**30} GiB" if n % 2**30 == 0 else f"{n // 2**20} MiB"


def _bytes(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} bytes"


def _rmem_max() -> str:
    try:
        return _bytes(int(Path("/proc/sys/net/core/rmem_max").read_text()))
    except (OSError, ValueError):
        return "unknown"


def _method_text(name: str, quick: bool) -> str:
    warmup, count = bench_latency.counts(quick)
    if name != "latency":
        count = bench_stream.throughput_count(quick)
    udp_warmup, udp_count = bench_udp.latency_counts(quick)
    return METHODS[name].format(
        warmup=f"{warmup:,}",
        count=f"{count:,}",
        size=_size(bench_stream.bulk_bytes(quick)),
        udp_warmup=f"{udp_warmup:,}",
        udp_count=f"{udp_count:,}",
        rate_count=f"{bench_udp.rate_count(quick):,}",
        rcvbuf=_bytes(bench_udp.RECEIVE_BUFFER),
        rmem_max=_rmem_max() if name == "udp" else "",
        pyzmq=bench_stream.pyzmq_version(),
    )


def _source_digest() -> str:
    """A digest of the library's source, to notice edits made during the run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "message_io").rglob("*.py")):
        digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _write_doc(
    path: Path,
    rows: list[Row],
    args: argparse.Namespace,
    *,
    seconds: float,
    commit: str,
) -> None:
    from plots import plot_section  # matplotlib: only once everything is measured

    def figure(slug: str, title: str, section_rows: list[Row]) -> str | None:
        """Draw a section's figure next to the report; its Markdown, or None."""
        name = f"img/performance-{slug}.svg"
        if not plot_section(title, section_rows, path.parent / name):
            return None
        return f"![{title}: medians, min to max]({name})"

    command = "python benchmarks/run.py" + "".join(f" {shlex.quote(arg)}" for arg in sys.argv[1:])
    names = list(dict.fromkeys(row.benchmark for row in rows))
    samples = ", ".join(
        f"{name} {len(next(r for r in rows if r.benchmark == name).samples)}" for name in names
    )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Performance",
        "",
        "_Generated by `benchmarks/run.py`; do not edit by hand, run it again._",
        "",
        f"- **Command:** `{command}` (from the repository root, in its virtualenv)",
        f"- **Date:** {now}; the whole run took {seconds:.0f} s",
        f"- **Machine:** {_machine()}",
        f"- **Python:** {platform.python_implementation()} {platform.python_version()}",
        f"- **message_io:** {message_io.__version__} (commit {commit}); engine "
        + (
            "compiled (mypyc)"
            if message_io.COMPILED
            else "pure Python (`MESSAGE_IO_NO_EXTENSIONS=1` or no compiler)"
        ),
        f"- **Samples per variant:** {samples}, interleaved; median, min and max shown",
        "",
        "Each variant runs its two ends as two fresh processes talking over loopback",
        "(`127.0.0.1`; TCP, or UDP in the [UDP](#udp) section), forked from a fork server",
        "that imported only the benchmark modules, so every side starts from the same state.",
        "Each side then allocates and frees one 1 MiB block before it starts. That matters:",
        "glibc's malloc serves blocks of 128 KiB or more with `mmap` until the first such",
        "block is freed, which raises the threshold for good, and until then a read into a",
        "large buffer costs an `mmap` and a `munmap` (asyncio's transports read 256 KiB at a",
        "time: a `Protocol` echo takes twice as long). A long-running program is past that",
        "point; so is every side here, message_io's and the baselines' alike.",
        "",
        "*Ratio* is message_io's median divided by its baseline's median, both measured in",
        "this run, in the row's unit: below 1 is faster for µs, above 1 faster for msgs/s,",
        "datagrams/s and GB/s. In brackets: the lowest and highest ratio of samples taken",
        "side by side (same repeat). Absolute numbers vary from machine to machine and, on a",
        "shared machine, from minute to minute; the ratios are what to compare.",
        "",
        "Each section but the connection churn has a figure under its table, drawn by",
        "`benchmarks/plots.py` from the same samples: every variant's median as a bar,",
        "message_io's blue and the others grey, a line from the lowest to the highest",
        "sample, and the ratio in brackets.",
        "",
    ]
    # TCP benchmarks: one table, then how each is measured; UDP has a section of its own.
    tcp_names = [name for name in names if name not in _OWN_SECTION]
    if tcp_names:
        tcp_rows = [row for row in rows if row.benchmark in tcp_names]
        parts += ["## Results", "", _markdown_table(_table(tcp_rows)), ""]
        image = figure("tcp", "TCP and FramedTcp", tcp_rows)
        if image is not None:
            parts += [image, ""]
        parts += ["## How each is measured", ""]
        for name in tcp_names:
            parts += [_method_text(name, args.quick), ""]
        parts += _nodelay_notes(rows)
    if "udp" in names:
        udp_rows = [row for row in rows if row.benchmark == "udp"]
        parts += _section(
            "UDP",
            "`Transport.UDP`: round trips, and how fast a sender hands 100-byte datagrams to\n"
            "the OS (UDP has no flow control, so what arrives is reported beside it).",
            udp_rows,
            [_method_text("udp", args.quick)],
            figure("udp", "UDP", udp_rows),
        )
    ws_names = [name for name in names if name in bench_ws.SECTIONS]
    if ws_names:
        ws_rows = [row for row in rows if row.benchmark in ws_names]
        parts += _section(
            "WebSocket",
            "`Transport.WS` against the `websockets` library (on asyncio and uvloop), and\n"
            "against message_io's own FramedTcp for bulk transfers.",
            ws_rows,
            [bench_ws.method_text(name, args.quick) for name in ws_names],
            figure("ws", "WebSocket", ws_rows),
        )
    for module, title, intro in _SECTIONS:
        if module.NAME in names:
            section_rows = [row for row in rows if row.benchmark == module.NAME]
            parts += _section(
                title,
                intro,
                section_rows,
                [module.method_text(args.quick)],
                figure(module.NAME, title, section_rows),
            )
    if bench_churn.NAME in names:
        parts += _section(
            "Connection churn",
            "What a closed connection leaves behind in the server: memory, file descriptors\n"
            "and `Remote` objects after tens of thousands of short connections.",
            [row for row in rows if row.benchmark == bench_churn.NAME],
            [bench_churn.method_text(args.quick)],
        )
    parts += [
        "## Correctness",
        "",
        "Every run checks what it measured: the echo servers count the round trips, the",
        "receivers count messages and bytes (and message sizes on `FramedTcp` and UDP), and",
        "any difference, any exception on either side, or a run over its time limit fails",
        "the whole benchmark (exit status 1, no report written); the churn server counts",
        "the connections it accepted, echoed and saw close, the accept servers the ones",
        "they accepted, and the fan-out client compares every connection's bytes with the",
        "rounds sent. The one exception is a datagram lost on the way in the UDP send rate:",
        "the kernel may drop datagrams, so the receiver reports how many arrived, and only",
        "more than were sent fails the run.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def _section(
    title: str, intro: str, rows: list[Row], methods: list[str], image: str | None = None
) -> list[str]:
    """The lines of a report section: title, introduction, table, its figure (Markdown,
    if any), how it is measured."""
    parts = [f"## {title}", "", *intro.split("\n"), "", _markdown_table(_table(rows)), ""]
    if image is not None:
        parts += [image, ""]
    for method in methods:
        parts += [method, ""]
    return parts


def _nodelay_notes(rows: list[Row]) -> list[str]:
    by_name = {row.name: row for row in rows if row.benchmark == "latency"}
    ping = by_name.get("message_io FramedTcp")
    ping_off = by_name.get("message_io FramedTcp, nodelay off")
    split = by_name.get("message_io FramedTcp, 2-write request")
    split_off = by_name.get("message_io FramedTcp, 2-write request, nodelay off")
    if not (ping and ping_off and split and split_off):
        return []
    on, off = ping.stats.median, ping_off.stats.median
    same = abs(off / on - 1) < 0.1
    effect = "makes no measurable difference" if same else f"changes it by {off / on:.2f}x"
    return [
        "## Why `nodelay` is on by default",
        "",
        f"In strict ping-pong Nagle's algorithm {effect} (FramedTcp:",
        f"{on:.1f} µs per round trip with `TCP_NODELAY`, {off:.1f} µs without): each side",
        "writes one segment and waits, so nothing is held back, and the node already",
        "coalesces the messages sent during one turn of its loop into one write. But once a",
        "message is written while an earlier one is still unacknowledged, as in the",
        "*2-write request*, Nagle holds it until the peer's delayed ACK: FramedTcp takes",
        f"{split.stats.median:.1f} µs per round trip with `TCP_NODELAY` and",
        f"{split_off.stats.median / 1000:.1f} ms without. Hence `nodelay=True` by default.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        bench_common.PROFILE_DIR = args.profile.resolve()
        args.no_write = True
    names = args.only or list(BENCHMARKS)
    repeats = {
        name: args.repeats or (3 if args.quick else full)
        for name, (_factory, full) in BENCHMARKS.items()
    }
    # What is measured is the code as the fork server imports it, at the first run.
    commit, digest = _commit(), _source_digest()
    started = time.monotonic()
    rows: list[Row] = []
    try:
        for name in names:
            cases = BENCHMARKS[name][0](args.quick)
            rows += [row for case in cases for row in (case.row, *case.extra_rows)]
            for repeat in range(repeats[name]):
                for case in cases:
                    t0 = time.monotonic()
                    sample = case.measure()
                    case.row.samples.append(sample)
                    extra = "".join(
                        f", {_fmt(row.samples[-1], row.unit)} {row.unit}" for row in case.extra_rows
                    )
                    print(
                        f"[{time.monotonic() - started:6.1f}s] {name} #{repeat + 1}"
                        f" {case.row.name}: {_fmt(sample, case.row.unit)} {case.row.unit}"
                        f"{extra} ({time.monotonic() - t0:.1f}s)",
                        file=sys.stderr,
                        flush=True,
                    )
    except BenchmarkError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    if _source_digest() != digest:
        print(
            "WARNING: src/message_io changed during the run; the numbers are for the code"
            " as it was at the start",
            file=sys.stderr,
        )
        commit += "; the source changed during the run, the numbers are for its start"
    lines = _table(rows)
    print()
    _print_table(lines)
    print(f"\n{len(rows)} variants in {seconds:.0f} s")
    if not args.no_write:
        _write_doc(args.output, rows, args, seconds=seconds, commit=commit)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
