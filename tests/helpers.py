"""Helpers shared by the node, signal and API tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from message_io import NodeHandler, NodeListener

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
