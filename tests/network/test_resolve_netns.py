"""The real resolver (``getaddrinfo``) against a DNS server that never answers.

A private network namespace gets its own ``resolv.conf`` (``ip netns exec`` mounts
``/etc/netns/NAME/resolv.conf`` over ``/etc/resolv.conf``), naming a DNS server on the
namespace's own loopback that swallows every query. A node in a process run inside it
connects to a name from its callback: the loop must go on serving signals while the C
library waits on that server, and the connect must end at its ``connect_timeout``. No
packet leaves the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..netns import network_namespace

ROOT = Path(__file__).resolve().parent.parent.parent

# Runs inside the namespace: a silent DNS server, then a node that connects to a name.
_SCRIPT = r"""
import json, socket, threading, time
import message_io
from message_io import Connected, FramedTcpConnectConfig, Signal, Transport

silent_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent_udp.bind(("127.0.0.1", 53))  # queries arrive and are never answered
silent_tcp = socket.create_server(("127.0.0.1", 53))

handler, listener = message_io.split(str)
report = {"ticks": 0}
config = FramedTcpConnectConfig(connect_timeout=1.5)

def on_event(event):
    match event:
        case Signal("start"):
            began = time.monotonic()
            endpoint, local = handler.network.connect(
                Transport.FRAMED_TCP, "unanswered.test:80", config=config
            )
            report["connect_seconds"] = time.monotonic() - began
            report["local"] = local
            report["started"] = time.monotonic()
            handler.signals.send_with_timer("tick", 0.05)
        case Signal("tick"):
            report["ticks"] += 1
            handler.signals.send_with_timer("tick", 0.05)
        case Connected(_, established):
            report["established"] = established
            report["error"] = type(event.error).__name__
            report["outcome_after"] = time.monotonic() - report["started"]
            handler.stop()

handler.signals.send("start")
listener.for_each(on_event)
print(json.dumps(report))
"""


def _nss_hosts() -> list[str]:
    """The sources of the ``hosts`` line of nsswitch.conf (what getaddrinfo asks)."""
    try:
        text = Path("/etc/nsswitch.conf").read_text()
    except OSError:
        return ["files", "dns"]  # the C library's default without the file
    for line in text.splitlines():
        if line.startswith("hosts:"):
            return [word for word in line.split()[1:] if not word.startswith("[")]
    return ["files", "dns"]


@pytest.fixture
def silent_dns_namespace() -> Iterator[str]:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip`")
    hosts = _nss_hosts()
    if "dns" not in hosts or "resolve" in hosts:
        # With systemd-resolved (nss-resolve) the lookup would leave the namespace.
        pytest.skip(f"the C library does not ask resolv.conf's server here (hosts: {hosts})")
    with network_namespace("mio-dns") as namespace:
        etc = Path("/etc/netns") / namespace.name
        try:
            etc.mkdir(parents=True)
        except PermissionError:
            pytest.skip("cannot write /etc/netns (not root)")
        try:
            # One try, long enough to outlast the connect timeout.
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:1\n")
            yield namespace.name
        finally:
            shutil.rmtree(etc, ignore_errors=True)


def test_a_silent_dns_server_stalls_neither_connect_nor_the_loop(
    silent_dns_namespace: str,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        ["ip", "netns", "exec", silent_dns_namespace, sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["local"] is None
    assert report["connect_seconds"] < 0.5  # no lookup in the caller (the loop thread)
    # The loop ticked every 50 ms throughout the 1.5 s the resolver hung.
    assert report["ticks"] >= 10
    assert report["established"] is False
    assert report["error"] == "ConnectTimeout"
    assert 1.4 < report["outcome_after"] < 4.5
