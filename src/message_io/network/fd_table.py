"""The handler of each polled descriptor, in a list indexed by descriptor.

Descriptors are small and dense (the kernel hands out the lowest free number), so a
list serves where a ``dict`` would hash and probe once per ready event: the loop finds
a handler with an index (:func:`get`, inlined there). The list only grows, doubling,
never beyond the highest descriptor polled; a slot without a handler holds None. The
loop's thread changes it, or any thread before a loop runs (under the GIL: a racing
growth only lengthens the list).
"""

from __future__ import annotations

from typing import Any

__all__ = ["get", "put", "take"]


def put(table: list[Any], fd: int, handler: Any) -> None:
    """Make ``handler`` the handler of ``fd`` (a descriptor, at least 0)."""
    size = len(table)
    if fd >= size:
        table.extend([None] * max(fd + 1 - size, size))
    table[fd] = handler


def take(table: list[Any], fd: int) -> Any:
    """Remove the handler of ``fd`` and return it, or None if it has none."""
    if 0 <= fd < len(table):
        handler = table[fd]
        table[fd] = None
        return handler
    return None


def get(table: list[Any], fd: int) -> Any:
    """The handler of ``fd``, or None (the loop writes this test inline)."""
    return table[fd] if 0 <= fd < len(table) else None
