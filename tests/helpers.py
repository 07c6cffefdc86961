"""Helpers shared by the node, signal and API tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from message_io import NodeHandler, NodeListener

ROOT = Path(__file__).resolve().parent.parent

PYTHON_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
"""The environment of a Python subprocess that imports this checkout's message_io."""

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


def run_python(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with this checkout's message_io from ``cwd``; its output as
    text (the caller checks the exit status)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=PYTHON_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
