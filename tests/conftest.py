"""Fixtures shared by the test modules at this level."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import message_io

from .helpers import Node


@pytest.fixture
def node() -> Iterator[Node]:
    """A fresh node, stopped (and so closed) after the test."""
    handler, listener = message_io.split()
    try:
        yield handler, listener
    finally:
        handler.stop()
