"""Private network namespaces for tests whose traffic must never leave the machine.

:func:`network_namespace` creates a namespace with ``ip netns add`` (only its loopback
device, brought up), and deletes it afterwards. :meth:`Namespace.entered` moves the
*calling thread* into it with ``setns(2)``: sockets created meanwhile live in the
namespace for good, whichever thread uses them later, so a node's ``listen`` and
``connect`` called inside the block put its sockets there. The thread moves back on exit.

Creating namespaces needs root (or CAP_SYS_ADMIN) and iproute2; where either is missing
the tests that ask for a namespace are skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Namespace", "network_namespace"]

_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Namespace:
    """A network namespace created by :func:`network_namespace`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def ip(self, *args: str) -> None:
        """Run ``ip -n <namespace> <args>``; fail the test with ip's message on error."""
        result = subprocess.run(
            ["ip", "-n", self.name, *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread inside the namespace."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def read_proc(self, name: str) -> str:
        """``/proc/net/<name>`` as seen from inside the namespace."""
        with self.entered():
            return Path(f"/proc/thread-self/net/{name}").read_text()


@contextlib.contextmanager
def network_namespace(prefix: str) -> Iterator[Namespace]:
    """A fresh namespace with only ``lo``, up; deleted on exit.

    Skips the test if namespaces cannot be created here.
    """
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need iproute2's `ip`, which is not installed")
    name = f"{prefix}-{os.getpid()}"
    created = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
    try:
        namespace = Namespace(name)
        namespace.ip("link", "set", "lo", "up")
        yield namespace
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
