"""The runnable examples work as the README and their docstrings say, from any directory.

Every example runs here from a temporary directory, with the library importable (as
after ``pip install -e .``) and nothing else of the checkout: Python is given the
example's path, as the documentation says.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import run_python
from .netns import network_namespace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO = [sys.executable, str(EXAMPLES / "demo.py")]
PING_PONG = [sys.executable, str(EXAMPLES / "ping_pong")]
MULTICAST = [sys.executable, str(EXAMPLES / "multicast")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}

_COMMAND = re.compile(r"python3? +(?:-m +)?[\w./-]*examples[\w./-]*")


def _documented_commands() -> list[tuple[str, str]]:
    """Every ``python ... examples...`` command in the README and the examples' docstrings,
    as ``(where, command)``."""
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for path in sorted(EXAMPLES.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        if docstring:
            texts[str(path.relative_to(ROOT))] = docstring
    return [
        (where, " ".join(match.group(0).split()))
        for where, text in texts.items()
        for match in _COMMAND.finditer(text)
    ]


def test_the_documented_commands_give_python_the_example_s_path() -> None:
    commands = _documented_commands()
    assert len(commands) >= 10, commands
    for where, command in commands:
        # "python examples/ping_pong": the same from any directory, with the path changed;
        # "python -m examples.ping_pong" needs the checkout's root as working directory.
        assert " -m " not in command, (where, command)
        target = command.split()[1]
        if target.startswith("path/to/"):
            target = target.removeprefix("path/to/")
        path = ROOT / target
        assert path.is_file() or (path / "__main__.py").is_file(), (where, command)


@pytest.mark.parametrize("example", ["ping_pong", "multicast"])
def test_an_example_runs_from_another_directory(example: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example), "--help"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"usage: {example} "), result.stdout


def test_an_example_still_runs_as_a_module_from_the_checkout_root() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.ping_pong", "--help"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: ping_pong "), result.stdout


def test_demo_runs_every_transport_and_exits(tmp_path: Path) -> None:
    result = subprocess.run(
        DEMO,
        cwd=tmp_path,
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
        cwd=tmp_path,
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
            cwd=tmp_path,
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


def test_multicast_instances_hear_each_other(loopback_namespace: str, tmp_path: Path) -> None:
    # The default group and port: the namespace is private, so nothing else uses them.
    in_namespace = ["ip", "netns", "exec", loopback_namespace]

    def start(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*in_namespace, *MULTICAST, name, "--interface", "127.0.0.1", "--count", "1"],
            cwd=tmp_path,
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


def test_multicast_without_default_route_asks_for_an_interface(
    loopback_namespace: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", loopback_namespace, *MULTICAST, "alice"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "239.255.0.1:3010" in result.stderr  # the library's error names the group
    assert "give --interface ADDRESS" in result.stderr


def test_the_asyncio_example_serves_its_clients_from_another_directory(tmp_path: Path) -> None:
    example = str(EXAMPLES / "asyncio_echo.py")
    result = run_python(example, "both", "--clients", "5", "--count", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "15 of 15 echoes came back" in result.stdout
    assert "tick" in result.stdout  # other work on the same event loop went on
