"""The event callback, called under the node's ``on_error`` policy.

A compiled class rather than a closure: calling it costs no Python frame of its own,
and it is called once per event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Guarded"]


class Guarded:
    """Calls ``callback(event)``; an ``Exception`` it raises goes to
    ``handle(event, exc)`` instead of propagating."""

    __slots__ = ("callback", "handle")

    def __init__(
        self, callback: Callable[[Any], object], handle: Callable[[Any, Exception], object]
    ) -> None:
        self.callback = callback
        self.handle = handle

    def __call__(self, event: Any) -> None:
        try:
            self.callback(event)
        except Exception as exc:  # noqa: BLE001 - the policy decides
            self.handle(event, exc)
