"""Helpers shared by the node, signal and API tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from message_io import NodeHandler, NodeListener

ROOT = Path(__file__).resolve().parent.parent

INSTALLED_PYTHON = os.environ.get("MESSAGE_IO_PYTHON")
"""The interpreter of an installed message_io (a wheel in a fresh virtual environment,
see ``make wheel-check``) to run the subprocess tests against, or None."""

PYTHON = INSTALLED_PYTHON or sys.executable
"""The interpreter of Python subprocesses: the installed one, else this one."""

PYTHON_ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    **({} if INSTALLED_PYTHON else {"PYTHONPATH": str(ROOT / "src")}),
}
"""The environment of a Python subprocess: it imports this checkout's message_io, or the
installed one's."""

Node = tuple[NodeHandler[Any], NodeListener[Any]]
"""What the ``node`` fixture (tests/conftest.py) gives: a fresh handler and listener."""


@contextlib.contextmanager
def watchdog(handler: NodeHandler[Any], seconds: float = 10.0) -> Iterator[threading.Event]:
    """Stop the node after ``seconds`` so that a broken test fails instead of hanging."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        handler.stop()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        timer.join()


def run_python(
    *args: str, cwd: Path, timeout: float = 30, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with this checkout's message_io from ``cwd``, ``stdin`` as its
    input; its output as text (the caller checks the exit status)."""
    return subprocess.run(
        [PYTHON, *args],
        cwd=cwd,
        env=PYTHON_ENV,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def udp_to_a_closed_port() -> socket.socket:
    """A non-blocking UDP socket connected to a loopback port that nobody listens on (one
    bound, then closed): a datagram sent on it brings back an ICMP "port unreachable",
    which its next read raises as ``ConnectionRefusedError``."""
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    address = closed.getsockname()
    closed.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(address)
    return sock
