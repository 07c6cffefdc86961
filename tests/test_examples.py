"""The runnable examples work as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .netns import network_namespace

ROOT = Path(__file__).resolve().parent.parent
PING_PONG = [sys.executable, "-m", "examples.ping_pong"]
MULTICAST = [sys.executable, "-m", "examples.multicast"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


def test_demo_runs_every_transport_and_exits() -> None:
    result = subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FRAMED_TCP: every echo came back" in result.stdout
    for name in ("TCP", "UDP", "WS", "WSS"):
        assert f"\n{name}: every echo came back" in result.stdout, name
    assert "demo finished: all transports ok" in result.stdout


@pytest.mark.parametrize(
    ("mode", "transport", "pong"),
    [
        ("tcp", "FRAMED_TCP", "pong {n}"),
        ("stream", "TCP", "pong {n}"),
        ("udp", "UDP", "pong"),
        ("ws", "WS", "pong {n}"),
        ("wss", "WS", "pong {n}"),
    ],
)
def test_ping_pong_client_and_server(mode: str, transport: str, pong: str, tmp_path: Path) -> None:
    server_options: list[str] = []
    client_options: list[str] = []
    host = "127.0.0.1"
    if mode == "wss":
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        cert = tmp_path / "cert.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(cert))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        server_options = ["--cert", str(cert)]
        client_options = ["--ca", str(tmp_path / "ca.pem")]
        host = "localhost"
    server = subprocess.Popen(
        [*PING_PONG, "server", mode, "0", *server_options],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith(f"server running on {transport} 0.0.0.0:"), first
        port = first.rsplit(":", 1)[1].strip()
        client = subprocess.run(
            [*PING_PONG, "client", mode, f"{host}:{port}", "--count", "2", *client_options],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        pongs = [line for line in client.stdout.splitlines() if line.endswith(" from the server")]
        assert pongs == [f"{pong.format(n=n)} from the server" for n in (1, 2)], client.stdout
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=10)
    assert rest.count("ping from ('127.0.0.1', ") == 2, rest


@pytest.fixture
def loopback_namespace() -> Iterator[str]:
    """A private network namespace with only its loopback device, up: multicast sent in it
    cannot leave the machine. Skipped where namespaces cannot be created."""
    with network_namespace("mio-ex") as namespace:
        yield namespace.name


def test_multicast_instances_hear_each_other(loopback_namespace: str) -> None:
    # The default group and port: the namespace is private, so nothing else uses them.
    in_namespace = ["ip", "netns", "exec", loopback_namespace]

    def start(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*in_namespace, *MULTICAST, name, "--interface", "127.0.0.1", "--count", "1"],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    alice = start("alice")
    try:
        bob = start("bob")
        try:
            bob_out, bob_err = bob.communicate(timeout=30)
        finally:
            bob.kill()
            bob.communicate()
        alice_out, alice_err = alice.communicate(timeout=30)
    finally:
        alice.kill()
        alice.communicate()
    assert (alice.returncode, bob.returncode) == (0, 0), alice_err + bob_err
    # Sorted: a datagram may be handled before the connection's Connected event.
    assert sorted(alice_out.splitlines()) == ["alice hears bob", "alice joined 239.255.0.1:3010"]
    assert sorted(bob_out.splitlines()) == ["bob hears alice", "bob joined 239.255.0.1:3010"]


def test_multicast_without_default_route_asks_for_an_interface(loopback_namespace: str) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", loopback_namespace, *MULTICAST, "alice"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "239.255.0.1:3010" in result.stderr  # the library's error names the group
    assert "give --interface ADDRESS" in result.stderr
