"""The runnable examples work as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PING_PONG = [sys.executable, "-m", "examples.ping_pong"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


def test_demo_runs_every_transport_and_exits() -> None:
    result = subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FRAMED_TCP: every echo came back" in result.stdout
    assert "TCP: every echo came back" in result.stdout
    assert "demo finished: all transports ok" in result.stdout


def test_ping_pong_client_and_server() -> None:
    server = subprocess.Popen(
        [*PING_PONG, "server", "tcp", "0"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("server running on FRAMED_TCP 0.0.0.0:"), first
        port = first.rsplit(":", 1)[1].strip()
        client = subprocess.run(
            [*PING_PONG, "client", "tcp", f"127.0.0.1:{port}", "--count", "2"],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        assert "pong 1 from the server" in client.stdout
        assert "pong 2 from the server" in client.stdout
    finally:
        server.terminate()
        server.communicate(timeout=10)
