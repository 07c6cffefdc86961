"""A count that compiled code reads in place."""

from __future__ import annotations

__all__ = ["Count"]


class Count:
    """An ``int`` in an object, for a count that interpreted code changes and compiled
    code reads: compiled, :attr:`value` is a field read in place, where an interpreted
    object's attribute is looked up by name each time (internal API)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0
