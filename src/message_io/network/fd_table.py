"""The handler of each polled descriptor, in a list indexed by descriptor.

Descriptors are small and dense (the kernel hands out the lowest free number), so a
list serves where a ``dict`` would hash and probe once per ready event: the loop finds
a handler with an index (:func:`get`, inlined there). The list only grows, to at least
twice its length each time (so its length is at most twice the highest descriptor
polled, plus one: 8 bytes per slot) and never shrinks; a slot without a handler holds
None.

The loop's thread writes it, and so does any thread that registers a resource while no
turn runs (under the registry's lock, and the GIL): a racing growth only lengthens the
list, and a slot is cleared before its descriptor is closed, so a number the kernel
reuses never finds the old handler.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get", "put", "take"]


def put(table: list[Any], fd: int, handler: Any) -> None:
    """Make ``handler`` the handler of ``fd``.

    Raises:
        ValueError: ``fd`` is negative (a closed socket's ``fileno()``): nothing changes.
    """
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
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
