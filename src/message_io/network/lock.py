"""The lock of each connection.

This file is what runs without the compiled engine: ``threading.Lock`` itself. A build
with a C compiler puts ``lock.c`` beside it, a lock that is the same to its users
(``acquire(blocking=True, timeout=-1)``, ``release``, ``locked``, ``with``; so
``threading.Condition`` takes it) but whose ``acquire()`` without arguments does not
parse arguments the generic way: it is called twice per message sent.
:data:`COMPILED` tells which one runs.
"""

from __future__ import annotations

import threading

__all__ = ["COMPILED", "Lock"]

# Not Final: the compiled engine would fold this file's value into its own code, and
# never ask the module that is actually imported.
COMPILED: bool = False
"""True in the C build."""

Lock = threading.Lock
