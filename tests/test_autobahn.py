"""Autobahn|Testsuite conformance of ``Transport.WS``, as a server and as a client.

The slow tests run ``tools/autobahn/run.py`` (see its docstring): wstest's fuzzingclient
against our echo server, wstest's fuzzingserver against our client, cases 1-10 (12.* and
13.* need permessage-deflate, which we do not negotiate), all inside a throwaway network
namespace, gated by ``tools/autobahn/allowed.json``. They need the wstest install that
``bash tools/autobahn/setup.sh`` makes (Python 2.7, under ``$AUTOBAHN_HOME``, default
``/tmp/wstest``) and root for the namespace, and are skipped, with the reason, without
either. Set ``AUTOBAHN_REQUIRED=1`` to make a missing install a failure instead (CI).

The fast tests check the gate itself on made-up reports, so they run everywhere.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tools" / "autobahn" / "run.py"
AUTOBAHN_HOME = Path(os.environ.get("AUTOBAHN_HOME", "/tmp/wstest"))
WSTEST = AUTOBAHN_HOME / "venv" / "bin" / "wstest"
SKIP_EXIT = 77


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autobahn_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run = _load_run()


def _require_wstest() -> None:
    if os.access(WSTEST, os.X_OK):
        return
    reason = (
        f"Autobahn's wstest is not installed at {WSTEST}: "
        "run `bash tools/autobahn/setup.sh` first (AUTOBAHN_HOME picks the directory)"
    )
    if os.environ.get("AUTOBAHN_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _run_autobahn(mode: str, outdir: Path) -> None:
    _require_wstest()
    result = subprocess.run(
        [sys.executable, str(RUN), "--mode", mode, "--outdir", str(outdir), "--timeout", "240"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    if result.returncode == SKIP_EXIT:
        pytest.skip(result.stderr.strip() or "tools/autobahn/run.py cannot run here")
    assert result.returncode == 0, (
        f"tools/autobahn/run.py --mode {mode} exited {result.returncode}; "
        f"reports in {outdir}\n{result.stdout}\n{result.stderr}"
    )


@pytest.mark.timeout(330)
def test_autobahn_server_and_client(tmp_path: Path) -> None:
    """All of cases 1-10 against our server and our client (both at once, ~35 s)."""
    _run_autobahn("both", tmp_path)


@pytest.mark.timeout(330)
def test_autobahn_server_over_tls(tmp_path: Path) -> None:
    """A subset (framing, pings, fragments, UTF-8, closing, big messages) over wss."""
    pytest.importorskip("trustme")
    _run_autobahn("server-tls", tmp_path)


# -- the gate on made-up reports ------------------------------------------------------


def _write_reports(outdir: Path, cases: dict[str, tuple[str, str, list[Any]]]) -> None:
    """An index.json and per-case reports: case -> (behavior, behaviorClose, wirelog)."""
    index: dict[str, dict[str, Any]] = {}
    for case, (behavior, close, wirelog) in cases.items():
        name = f"case_{case.replace('.', '_')}.json"
        index[case] = {
            "behavior": behavior,
            "behaviorClose": close,
            "duration": 1,
            "remoteCloseCode": 1000,
            "reportfile": name,
        }
        report = {"id": case, "behavior": behavior, "behaviorClose": close, "wirelog": wirelog}
        (outdir / name).write_text(json.dumps(report))
    (outdir / "index.json").write_text(json.dumps({run.AGENT: index}))


def _allowed(tmp_path: Path, entries: list[dict[str, Any]]) -> list[Any]:
    path = tmp_path / "allowed.json"
    path.write_text(json.dumps({"allowed": entries}))
    result: list[Any] = run.load_allowed(path)
    return result


_ALLOW_715 = {
    "case": "7.1.5",
    "modes": ["server"],
    "behavior": "FAILED",
    "behaviorClose": "WRONG CODE",
    "reason": "closes with 1002 instead of 1000, which RFC 6455 permits",
}
_CLOSE = ["RF", [2, "0x03e8"], 8, True, 0, False, None]
_TEXT = ["RF", [5, "hello"], 1, True, 0, False, None]


def test_gate_accepts_passing_verdicts_and_listed_exceptions(tmp_path: Path) -> None:
    _write_reports(
        tmp_path,
        {
            "1.1.1": ("OK", "OK", [_TEXT, _CLOSE]),
            "3.2": ("NON-STRICT", "OK", []),
            "7.13.1": ("INFORMATIONAL", "INFORMATIONAL", []),
            "12.1.1": ("UNIMPLEMENTED", "OK", []),
            "7.1.5": ("FAILED", "WRONG CODE", []),
        },
    )
    out = io.StringIO()
    assert run.gate("server", tmp_path, _allowed(tmp_path, [_ALLOW_715]), 1.0, out)
    assert "[server] allowed 7.1.5" in out.getvalue()


def test_gate_fails_unlisted_or_different_verdicts(tmp_path: Path) -> None:
    _write_reports(
        tmp_path,
        {
            "2.5": ("OK", "UNCLEAN", []),
            "7.1.5": ("FAILED", "UNCLEAN", []),  # listed, but with other verdicts
            "6.1.1": ("UNIMPLEMENTED", "OK", []),  # only 12.*/13.* may be unimplemented
        },
    )
    out = io.StringIO()
    assert not run.gate("server", tmp_path, _allowed(tmp_path, [_ALLOW_715]), 1.0, out)
    text = out.getvalue()
    assert "FAILED: 2.5, 6.1.1, 7.1.5" in text
    assert '"behaviorClose": "UNCLEAN"' in text  # the offending case's JSON is printed


def test_gate_allow_list_is_per_mode(tmp_path: Path) -> None:
    _write_reports(tmp_path, {"7.1.5": ("FAILED", "WRONG CODE", [])})
    assert not run.gate("client", tmp_path, _allowed(tmp_path, [_ALLOW_715]), 1.0, io.StringIO())


def test_gate_fails_data_frames_after_own_close(tmp_path: Path) -> None:
    """RFC 6455 5.5.1, which wstest's verdicts let through."""
    _write_reports(tmp_path, {"3.2": ("OK", "OK", [_CLOSE, _TEXT])})
    out = io.StringIO()
    assert not run.gate("server", tmp_path, [], 1.0, out)
    assert "FAILING 3.2: OK/OK + data-after-close" in out.getvalue()


def test_allow_list_entries_need_a_reason(tmp_path: Path) -> None:
    entry = dict(_ALLOW_715, reason="")
    with pytest.raises(run.Broken, match="reason"):
        _allowed(tmp_path, [entry])


def test_shipped_allow_list_is_valid() -> None:
    entries = run.load_allowed(RUN.parent / "allowed.json")
    assert all(len(entry.reason) > 40 for entry in entries)
