"""Run Autobahn|Testsuite against message-io's WebSocket server and client, and gate on it.

::

    bash tools/autobahn/setup.sh                  # once: installs wstest (Python 2.7)
    python tools/autobahn/run.py                  # server and client modes
    python tools/autobahn/run.py --mode server    # or: client, server-tls, all

Modes:

* ``server``: ``wstest -m fuzzingclient`` against ``echo_server.py`` (``ws://``).
* ``client``: ``wstest -m fuzzingserver`` driven by ``client.py``.
* ``server-tls``: the server over ``wss://`` (a throwaway certificate), on a subset.

Cases 1-10 run; 12.* and 13.* (permessage-deflate, which message-io does not negotiate)
are excluded. Everything runs inside a throwaway network namespace (``ip netns add``,
only ``lo``, up), because ``wstest`` binds 0.0.0.0: no traffic leaves it. Needs root.

The gate: every case's ``behavior`` and ``behaviorClose`` must be ``OK``,
``NON-STRICT`` or ``INFORMATIONAL`` (``UNIMPLEMENTED`` only for 12.*/13.*), and its wire
log must not show us sending a data frame after our own close frame (RFC 6455 5.5.1,
which wstest's verdicts let through), unless ``allowed.json`` lists the case, for that
mode, with exactly the verdicts (and wire findings) seen and a reason. Offending cases
are printed with their report JSON (long wire logs cut).

The modes run at once (each has its own ports in the shared namespace); ``--serial``
runs them one by one. ``--src DIR`` tests another source tree's ``message_io`` (a
candidate fix) without touching this checkout.

Exit status: 0 passed; 1 a case failed the gate; 2 the run itself broke (the testee
did not start, no report...); 77 cannot run here (no wstest install, no namespaces).
Reports (index.json, per-case JSON and HTML, logs) stay under ``--outdir``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AUTOBAHN_HOME = Path(os.environ.get("AUTOBAHN_HOME", "/tmp/wstest"))
AGENT = "message-io"

PASS = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
UNIMPLEMENTED_OK = ("12.", "13.")  # permessage-deflate: not negotiated by message-io
SKIP_EXIT = 77
BROKEN_EXIT = 2

SERVER_PORT = 9002
TLS_PORT = 9443
FUZZING_SERVER_PORT = 9001

DEFAULT_EXCLUDE = ("12.*", "13.*")
TLS_CASES = ("1.*", "2.*", "5.*", "6.2.*", "7.1.*", "9.1.*")
"""The wss run: framing, pings, fragments, UTF-8 split across reads, closing, and big
messages (TLS records split and joined), without repeating the whole suite."""


class CannotRun(Exception):
    """The environment lacks something: the run is skipped (exit 77)."""


class Broken(Exception):
    """The run itself failed (exit 2)."""


@dataclass(frozen=True)
class Allowed:
    case: str
    modes: frozenset[str]
    behavior: str
    behavior_close: str
    reason: str
    wire: frozenset[str] = frozenset()


def load_allowed(path: Path) -> list[Allowed]:
    """Read the allow-list; every entry must name its case, modes, verdicts and reason."""
    raw = json.loads(path.read_text())
    entries: list[Allowed] = []
    for i, item in enumerate(raw.get("allowed", [])):
        missing = [
            k for k in ("case", "modes", "behavior", "behaviorClose", "reason") if not item.get(k)
        ]
        if missing:
            raise Broken(f"{path}: entry {i} lacks {', '.join(missing)}")
        if len(str(item["reason"]).strip()) < 20:
            raise Broken(f"{path}: entry {i} ({item['case']}): the reason must explain the case")
        entries.append(
            Allowed(
                case=str(item["case"]),
                modes=frozenset(item["modes"]),
                behavior=str(item["behavior"]),
                behavior_close=str(item["behaviorClose"]),
                reason=str(item["reason"]),
                wire=frozenset(item.get("wire", ())),
            )
        )
    return entries


# -- the namespace and the processes --------------------------------------------------


@contextmanager
def namespace() -> Iterator[str]:
    """A fresh network namespace with only ``lo``, up; deleted afterwards."""
    if shutil.which("ip") is None:
        raise CannotRun("network namespaces need iproute2's `ip`, which is not installed")
    name = f"autobahn-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise CannotRun(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        up = subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up"],
            capture_output=True,
            text=True,
            check=False,
        )
        if up.returncode != 0:
            raise CannotRun(f"cannot bring lo up in the namespace: {up.stderr.strip()}")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def py3_env(src_dir: Path) -> dict[str, str]:
    """Our testee's environment: ``src_dir`` (the package tree under test) first on the path."""
    env = dict(os.environ)
    src = str(src_dir)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def py2_env() -> dict[str, str]:
    """wstest's environment: nothing of Python 3's (PYTHONPATH would break Python 2)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def stop_process(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (only this process)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The first stdout line of ``proc`` starting with ``prefix``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Broken(f"the testee did not print {prefix!r} within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise Broken(f"the testee exited (status {proc.wait()}) before {prefix!r}")
            if line.startswith(prefix):
                return line.strip()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- the modes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    wstest: Path
    outdir: Path
    cases: tuple[str, ...]
    exclude: tuple[str, ...]
    timeout: float
    src: Path


def write_spec(path: Path, spec: dict[str, Any]) -> None:
    path.write_text(json.dumps(spec, indent=2) + "\n")


def run_server_mode(ns: str, settings: Settings, outdir: Path, *, tls: bool) -> None:
    """wstest's fuzzingclient against our echo server."""
    port = TLS_PORT if tls else SERVER_PORT
    scheme = "wss" if tls else "ws"
    spec_path = outdir / "fuzzingclient.json"
    write_spec(
        spec_path,
        {
            "outdir": str(outdir),
            "servers": [{"agent": AGENT, "url": f"{scheme}://127.0.0.1:{port}"}],
            "cases": list(settings.cases),
            "exclude-cases": list(settings.exclude),
            "exclude-agent-cases": {},
        },
    )
    server_log = outdir / "echo_server.log"
    wstest_log = outdir / "wstest.log"
    command = [sys.executable, str(HERE / "echo_server.py"), f"127.0.0.1:{port}"]
    if tls:
        command.append("--tls")
    with server_log.open("w") as log:
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, *command],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=py3_env(settings.src),
        )
        try:
            wait_for_line(server, "listening on", 20.0)
            run_wstest(
                ns, settings, ["-m", "fuzzingclient", "-s", str(spec_path)], wstest_log, outdir
            )
            if server.poll() is not None:
                raise Broken(
                    f"the echo server died (status {server.returncode}):\n{tail(server_log)}"
                )
        finally:
            stop_process(server)


def run_client_mode(ns: str, settings: Settings, outdir: Path) -> list[str]:
    """Our client against wstest's fuzzingserver; the client's complaints, if any.

    A client that fails after the reports were written (a case it could not connect
    to) still leaves an index.json to gate; one that fails before raises Broken.
    """
    spec_path = outdir / "fuzzingserver.json"
    write_spec(
        spec_path,
        {
            "url": f"ws://127.0.0.1:{FUZZING_SERVER_PORT}",
            "outdir": str(outdir),
            "cases": list(settings.cases),
            "exclude-cases": list(settings.exclude),
            "exclude-agent-cases": {},
        },
    )
    wstest_log = outdir / "wstest.log"
    client_log = outdir / "client.log"
    with wstest_log.open("w") as log:
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                str(settings.wstest),
                "-m",
                "fuzzingserver",
                "-s",
                str(spec_path),
                "-u",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=outdir,
            env=py2_env(),
        )
        try:
            with client_log.open("w") as clog:
                try:
                    client = subprocess.run(
                        [
                            "ip",
                            "netns",
                            "exec",
                            ns,
                            sys.executable,
                            str(HERE / "client.py"),
                            f"ws://127.0.0.1:{FUZZING_SERVER_PORT}",
                            "--agent",
                            AGENT,
                            "--timeout",
                            str(settings.timeout),
                        ],
                        stdout=clog,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=py3_env(settings.src),
                        timeout=settings.timeout + 30,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    raise Broken(f"the client hung:\n{tail(client_log)}") from None
            if client.returncode != 0:
                complaint = f"the client failed (status {client.returncode}):\n{tail(client_log)}"
                if not (outdir / "index.json").exists():
                    raise Broken(f"{complaint}\n--- wstest:\n{tail(wstest_log)}")
                return [complaint]
            return []
        finally:
            stop_process(server)


def run_wstest(ns: str, settings: Settings, args: list[str], log_path: Path, cwd: Path) -> None:
    with log_path.open("w") as log:
        try:
            done = subprocess.run(
                ["ip", "netns", "exec", ns, str(settings.wstest), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=py2_env(),
                timeout=settings.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Broken(
                f"wstest timed out after {settings.timeout} s:\n{tail(log_path)}"
            ) from None
    if done.returncode != 0:
        raise Broken(f"wstest failed (status {done.returncode}):\n{tail(log_path)}")


# -- the gate -------------------------------------------------------------------------------


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def verdict_ok(case: str, verdict: str) -> bool:
    return verdict in PASS or (verdict == "UNIMPLEMENTED" and case.startswith(UNIMPLEMENTED_OK))


_DATA_OPCODES = frozenset({0, 1, 2})
_CLOSE_OPCODE = 8


def wire_violations(report: dict[str, Any]) -> list[str]:
    """RFC 6455 rules the verdicts do not check, read from the case's wire log.

    ``data-after-close``: the testee sent a data frame after its close frame (section
    5.5.1: "the endpoint MUST NOT send any more data frames after sending a Close
    frame"); wstest still parses and counts such frames.
    """
    closed = False
    for entry in report.get("wirelog") or ():
        if not entry or entry[0] != "RF":
            continue
        opcode = entry[2]
        if opcode == _CLOSE_OPCODE:
            closed = True
        elif closed and opcode in _DATA_OPCODES:
            return ["data-after-close"]
    return []


def load_report(outdir: Path, result: dict[str, Any]) -> dict[str, Any] | str:
    """A case's report JSON, or why it cannot be read."""
    name = result.get("reportfile")
    if not name:
        return "(no report file)"
    try:
        report: dict[str, Any] = json.loads((outdir / name).read_text())
    except (OSError, ValueError) as exc:
        return f"(cannot read {name}: {exc})"
    return report


def shortened(value: Any, depth: int = 0) -> Any:
    """The report JSON with long strings and lists cut, to print it."""
    if isinstance(value, str) and len(value) > 400:
        return value[:400] + f"... ({len(value)} chars)"
    if isinstance(value, list):
        items = [shortened(v, depth + 1) for v in value[:40]]
        if len(value) > 40:
            items.append(f"... ({len(value) - 40} more)")
        return items
    if isinstance(value, dict):
        return {k: shortened(v, depth + 1) for k, v in value.items()}
    return value


def gate(mode: str, outdir: Path, allowed: list[Allowed], elapsed: float, out: TextIO) -> bool:
    """Print the summary of one mode's run; True if it passes."""
    index_path = outdir / "index.json"
    if not index_path.exists():
        raise Broken(f"{mode}: wstest wrote no {index_path}")
    index = json.loads(index_path.read_text())
    results: dict[str, dict[str, Any]] = index.get(AGENT, {})
    if not results:
        raise Broken(f"{mode}: {index_path} has no results for agent {AGENT!r}")
    by_case = {a.case: a for a in allowed if mode in a.modes}
    counts: Counter[str] = Counter()
    failing: list[str] = []
    allowed_seen: list[str] = []
    reports: dict[str, dict[str, Any] | str] = {}
    wire: dict[str, list[str]] = {}
    for case in sorted(results, key=case_key):
        result = results[case]
        behavior, close = result["behavior"], result["behaviorClose"]
        counts[behavior if close in (behavior, "OK") else f"{behavior}/{close}"] += 1
        report = reports[case] = load_report(outdir, result)
        violations = wire[case] = wire_violations(report) if isinstance(report, dict) else []
        if verdict_ok(case, behavior) and verdict_ok(case, close) and not violations:
            continue
        entry = by_case.get(case)
        if (
            entry is not None
            and (entry.behavior, entry.behavior_close) == (behavior, close)
            and set(violations) <= entry.wire
        ):
            allowed_seen.append(case)
            continue
        failing.append(case)
    shown = ", ".join(f"{n} {verdict}" for verdict, n in counts.most_common())
    out.write(f"[{mode}] {len(results)} cases in {elapsed:.1f} s: {shown}\n")
    bad_wire = [case for case, found in wire.items() if found]
    out.write(
        f"[{mode}] wire checks (data frame after own close frame): "
        + (f"{len(bad_wire)} cases: {', '.join(bad_wire)}" if bad_wire else "none")
        + "\n"
    )
    slowest = sorted(results.items(), key=lambda kv: -int(kv[1].get("duration", 0)))[:5]
    out.write(
        f"[{mode}] slowest: "
        + ", ".join(f"{case} {r.get('duration', 0)} ms" for case, r in slowest)
        + "\n"
    )
    for case in allowed_seen:
        out.write(
            f"[{mode}] allowed {case}: {results[case]['behavior']}/"
            f"{results[case]['behaviorClose']}: {by_case[case].reason}\n"
        )
    for case in sorted(by_case, key=case_key):
        if case in results and case not in allowed_seen and case not in failing:
            out.write(
                f"[{mode}] note: allowed.json lists {case}, which passed: remove the entry?\n"
            )
    for case in failing:
        result = results[case]
        extra = f" + {', '.join(wire[case])}" if wire[case] else ""
        out.write(
            f"[{mode}] FAILING {case}: {result['behavior']}/{result['behaviorClose']}{extra}\n"
        )
        out.write(
            json.dumps({"index": result, "report": shortened(reports[case])}, indent=1) + "\n"
        )
    if failing:
        out.write(f"[{mode}] FAILED: {', '.join(failing)}\n")
    else:
        out.write(f"[{mode}] passed\n")
    return not failing


# -- main -------------------------------------------------------------------------------


def source_revision(src: Path) -> str:
    """Which code is tested: the git commit of ``src``, and whether it has local edits."""
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "not a git checkout"
    if head.returncode != 0:
        return "not a git checkout"
    return head.stdout.strip() + (", with local changes" if dirty.stdout.strip() else "")


def run_mode(mode: str, ns: str, settings: Settings, allowed: list[Allowed]) -> tuple[int, str]:
    """Run one mode and gate it: (exit status, what to print)."""
    out = io.StringIO()
    shutil.rmtree(settings.outdir, ignore_errors=True)
    settings.outdir.mkdir(parents=True)
    start = time.monotonic()
    try:
        problems: list[str] = []
        if mode == "client":
            problems = run_client_mode(ns, settings, settings.outdir)
        else:
            run_server_mode(ns, settings, settings.outdir, tls=mode == "server-tls")
        elapsed = time.monotonic() - start
        passed = gate(mode, settings.outdir, allowed, elapsed, out)
    except Broken as exc:
        out.write(f"[{mode}] ERROR: {exc}\n")
        return BROKEN_EXIT, out.getvalue()
    for problem in problems:
        out.write(f"[{mode}] FAILED: {problem}\n")
        passed = False
    return (0 if passed else 1), out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite against message-io (see the module docstring)."
    )
    parser.add_argument(
        "--mode",
        choices=["server", "client", "server-tls", "both", "all"],
        default="both",
        help="both = server and client (default); all = both and server-tls",
    )
    parser.add_argument("--wstest", type=Path, default=AUTOBAHN_HOME / "venv" / "bin" / "wstest")
    parser.add_argument("--outdir", type=Path, default=AUTOBAHN_HOME / "reports")
    parser.add_argument("--allowed", type=Path, default=HERE / "allowed.json")
    parser.add_argument("--cases", nargs="+", default=["*"], help="case patterns (default *)")
    parser.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mode")
    parser.add_argument(
        "--serial", action="store_true", help="run the modes one after another, not at once"
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="the source tree whose message_io is tested (default: this checkout's src)",
    )
    args = parser.parse_args(argv)

    modes = {
        "both": ["server", "client"],
        "all": ["server", "client", "server-tls"],
    }.get(args.mode, [args.mode])
    src = args.src.resolve()
    try:
        if not os.access(args.wstest, os.X_OK):
            raise CannotRun(
                f"wstest is not installed at {args.wstest}: run tools/autobahn/setup.sh "
                "(or set AUTOBAHN_HOME / --wstest)"
            )
        allowed = load_allowed(args.allowed)
    except CannotRun as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return SKIP_EXIT
    except Broken as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return BROKEN_EXIT
    print(f"testing message_io from {src} ({source_revision(src)})", flush=True)
    settings = {
        mode: Settings(
            args.wstest,
            (args.outdir / mode).resolve(),
            TLS_CASES if mode == "server-tls" and args.cases == ["*"] else tuple(args.cases),
            tuple(args.exclude),
            args.timeout,
            src,
        )
        for mode in modes
    }
    start = time.monotonic()
    try:
        with namespace() as ns:
            # Each mode has its own ports, so they can share the namespace and run at once.
            workers = 1 if args.serial else len(modes)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(run_mode, mode, ns, settings[mode], allowed) for mode in modes
                ]
                results = [future.result() for future in futures]
    except CannotRun as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return SKIP_EXIT
    status = 0
    for code, text in results:
        sys.stdout.write(text)
        status = max(status, code)
    verdict = {0: "passed", 1: "FAILED", BROKEN_EXIT: "BROKEN"}[status]
    print(
        f"autobahn: {verdict} ({', '.join(modes)}) in {time.monotonic() - start:.1f} s; "
        f"reports in {args.outdir.resolve()}/<mode>/"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
