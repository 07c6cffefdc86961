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
    ``handle(event, exc)`` instead of propagating (None: it propagates).

    ``before``, if given, is called first with each event whose class is not ``skip``:
    where the owner of the events has its own work to do on them (the asyncio driver
    settles the futures that wait for ``Connected`` or ``Drained``), without a Python
    call on every message.
    """

    __slots__ = ("before", "callback", "handle", "skip")

    def __init__(
        self,
        callback: Callable[[Any], object],
        handle: Callable[[Any, Exception], object] | None,
        *,
        before: Callable[[Any], object] | None = None,
        skip: type | None = None,
    ) -> None:
        self.callback = callback
        self.handle = handle
        self.before = before
        self.skip = skip

    def __call__(self, event: Any) -> None:
        before = self.before
        if before is not None and type(event) is not self.skip:
            before(event)
        handle = self.handle
        if handle is None:
            self.callback(event)
            return
        try:
            self.callback(event)
        except Exception as exc:  # noqa: BLE001 - the policy decides
            handle(event, exc)
