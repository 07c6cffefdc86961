"""Strategies shared by the fuzz targets: byte-level mutations of valid input, and
cut points that split a byte string into the pieces a peer's writes (or the OS's reads)
would make of it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Final, TypeAlias

from hypothesis import strategies as st

__all__ = [
    "Mutation",
    "apply_mutations",
    "cut",
    "cuts",
    "mutations",
    "pattern",
    "short_repr",
]

Mutation: TypeAlias = tuple[str, int, int, bytes]
"""``(kind, at, count, data)``; ``at`` is taken modulo the length of the input, so one
mutation applies to any input."""

_PATTERN: Final = bytes(range(256)) * 300  # 76800 bytes


def pattern(size: int, seed: int) -> bytes:
    """``size`` bytes that differ from one ``seed`` to the next (cheap for big sizes)."""
    seed %= 256
    if size + seed <= len(_PATTERN):
        return _PATTERN[seed : seed + size]
    return (_PATTERN[seed:] * (size // len(_PATTERN) + 2))[:size]


_ONE: Final = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "duplicate", "truncate"]),
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=0, max_value=255),
    st.binary(max_size=12),
)


def mutations(max_size: int = 4) -> st.SearchStrategy[list[Mutation]]:
    """Lists of up to ``max_size`` mutations."""
    return st.lists(_ONE, max_size=max_size)


def apply_mutations(data: bytes, ops: Iterable[Mutation]) -> bytes:
    """``data`` with each mutation applied in turn.

    * ``flip``: xor the byte at ``at`` with ``count`` (1 if ``count`` is 0);
    * ``set``: the byte at ``at`` becomes ``count``;
    * ``insert``: ``data`` inserted before ``at`` (``count`` as one byte if it is empty);
    * ``delete``: ``count % 16 + 1`` bytes removed from ``at``;
    * ``duplicate``: ``count % 32 + 1`` bytes from ``at`` repeated in place;
    * ``truncate``: everything from ``at`` on removed.
    """
    out = bytearray(data)
    for kind, at, count, extra in ops:
        n = len(out)
        if kind == "insert":
            i = at % (n + 1)
            out[i:i] = extra or bytes((count,))
            continue
        if not n:
            continue
        i = at % n
        if kind == "flip":
            out[i] ^= count or 1
        elif kind == "set":
            out[i] = count
        elif kind == "delete":
            del out[i : i + count % 16 + 1]
        elif kind == "duplicate":
            piece = out[i : i + count % 32 + 1]
            out[i:i] = piece
        elif kind == "truncate":
            del out[i:]
    return bytes(out)


def cuts(max_size: int = 24) -> st.SearchStrategy[list[int]]:
    """Cut points, taken modulo the length of the input plus one."""
    return st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=max_size)


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` split at ``points`` (modulo ``len(data) + 1``); no empty piece, and one
    piece for the whole of ``data`` when there are no points."""
    n = len(data)
    bounds = sorted({0, n, *(p % (n + 1) for p in points)})
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


def chunk_ends(pieces: Sequence[bytes]) -> list[int]:
    """The offset just past each piece."""
    ends = []
    total = 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    return ends


def short_repr(data: bytes) -> str:
    """``repr(data)``, or its length and ends when long: reports of failing inputs stay
    readable (reproduce them from the blob or the database, not from the text)."""
    if len(data) <= 1000:
        return repr(data)
    return f"<{len(data)} bytes: {data[:400]!r} ... {data[-100:]!r}>"
