"""``python -m message_io``: the command-line tool, run as users run it (subprocesses)."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import pytest

import message_io
from message_io.cli import show
from message_io.codec.framing import frame_header

from .helpers import INSTALLED_PYTHON, PYTHON, ROOT, run_python
from .helpers import PYTHON_ENV as ENV

TIMEOUT: Final = 20.0


def tool(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "message_io", *args],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_python("-m", "message_io", *args, cwd=ROOT, timeout=TIMEOUT, stdin=stdin)


def line(stream: IO[str] | None) -> str:
    """The next line of a child's output (the test's timeout bounds the wait)."""
    assert stream is not None
    text = stream.readline()
    assert text, "the tool ended its output early"
    return text.rstrip("\n")


@pytest.fixture
def echo_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``listen framed-tcp 127.0.0.1:0 --echo``, and the address it listens on."""
    server = tool("listen", "framed-tcp", "127.0.0.1:0", "--echo")
    try:
        first = line(server.stderr)
        assert first.startswith("message-io: listening on framed-tcp 127.0.0.1:"), first
        yield server, first.rsplit(" ", 1)[1]
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=TIMEOUT)


def test_show_prints_text_as_text_and_the_rest_as_hex() -> None:
    assert show(b"hello") == "hello"
    assert show(b"tab\tand newline\n") == "tab\tand newline"
    assert show("caf\u00e9") == "caf\u00e9"
    assert show(b"") == "(empty)"
    assert show(b"\x00\xff\x01") == "hex: 00 ff 01"
    assert show(b"bell\x07") == "hex: 62 65 6c 6c 07"


def test_version_and_help() -> None:
    version = run("--version")
    assert (version.returncode, version.stdout) == (0, f"message-io {message_io.__version__}\n")
    helped = run("--help")
    assert helped.returncode == 0
    for word in ("listen", "connect", "framed-tcp", "ws", "unix"):
        assert word in helped.stdout
    assert "--echo" in run("listen", "--help").stdout
    assert "--wait" in run("connect", "--help").stdout


def test_usage_errors_exit_with_2() -> None:
    unknown = run("connect", "carrier-pigeon", "127.0.0.1:1")
    assert unknown.returncode == 2
    assert "unknown transport 'carrier-pigeon'" in unknown.stderr
    assert run().returncode == 2  # no command


def test_a_refused_connect_exits_with_1() -> None:
    with socket.socket() as unused:  # bound, never listening: connects are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        refused = run("connect", "framed-tcp", f"127.0.0.1:{port}")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"message-io: cannot connect to 127.0.0.1:{port}")
    assert refused.stdout == ""


def test_connect_sends_lines_and_prints_the_echoes(
    echo_server: tuple[subprocess.Popen[str], str],
) -> None:
    server, addr = echo_server
    client = tool("connect", "framed-tcp", addr)
    try:
        assert line(client.stderr).startswith(f"message-io: connected to {addr}")
        assert client.stdin is not None
        for text in ("hello", "caf\u00e9", ""):
            client.stdin.write(text + "\n")
            client.stdin.flush()
            assert line(client.stdout) == (text or "(empty)")
        client.communicate(timeout=TIMEOUT)  # closes the input: its end ends the client
        assert client.returncode == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate(timeout=TIMEOUT)
    server.send_signal(signal.SIGINT)
    out, err = server.communicate(timeout=TIMEOUT)
    assert server.returncode == 130
    peer = out.split(" ", 1)[0]
    assert out.splitlines() == [f"{peer} hello", f"{peer} caf\u00e9", f"{peer} (empty)"]
    assert err.splitlines() == [
        f"message-io: {peer} connected",
        f"message-io: {peer} left",
        "message-io: interrupted",
    ]


def test_binary_messages_are_shown_in_hex_and_a_leaving_server_ends_the_client(
    echo_server: tuple[subprocess.Popen[str], str],
) -> None:
    server, addr = echo_server
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(frame_header(3) + b"\x00\xff\x01")
        assert line(server.stdout).endswith(" hex: 00 ff 01")
        client = tool("connect", "framed-tcp", addr)
        try:
            assert line(client.stderr).startswith("message-io: connected to")
            server.send_signal(signal.SIGINT)  # the server goes: the client ends, status 0
            assert client.wait(TIMEOUT) == 0
            assert client.stderr is not None
            assert client.stderr.read() == "message-io: the peer left\n"
        finally:
            if client.poll() is None:
                client.kill()
            client.communicate(timeout=TIMEOUT)


def test_unix_sockets_and_text_frames_too(tmp_path: Path) -> None:
    path = str(tmp_path / "cli.sock")
    server = tool("listen", "unix", path, "--echo")
    try:
        assert line(server.stderr) == f"message-io: listening on unix {path}"
        done = run("connect", "unix", path, "--wait", "0", stdin="over unix\n")
        assert done.returncode == 0, done.stderr
        assert line(server.stdout) == "(unnamed) over unix"
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=TIMEOUT)
    assert server.returncode == 130


def test_the_installed_console_script_is_the_same_tool() -> None:
    script = Path(PYTHON).with_name("message-io")
    assert script.exists(), "the package is installed with its console script (pip install -e .)"
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert (done.returncode, done.stdout) == (0, f"message-io {message_io.__version__}\n")


def test_the_tool_runs_the_message_io_it_should() -> None:
    """This checkout's source, or (``make wheel-check``) the installed wheel's."""
    where = subprocess.run(
        [PYTHON, "-c", "import message_io; print(message_io.__file__)"],
        env=ENV,
        cwd=Path(PYTHON).parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout.strip()
    in_checkout = Path(where).is_relative_to(ROOT / "src")
    assert in_checkout is (INSTALLED_PYTHON is None), where


def test_text_on_a_transport_without_text_messages_ends_with_1(
    echo_server: tuple[subprocess.Popen[str], str],
) -> None:
    _server, addr = echo_server
    done = run("connect", "framed-tcp", addr, "--text", stdin="hello\n")
    assert done.returncode == 1
    assert "--text is for transports with text messages" in done.stderr


def test_lines_that_are_not_utf8_are_sent_as_they_are(
    echo_server: tuple[subprocess.Popen[str], str],
) -> None:
    server, addr = echo_server
    client = subprocess.Popen(
        [PYTHON, "-m", "message_io", "connect", "framed-tcp", addr],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"\xff\xfe\n")
        client.stdin.flush()
        assert client.stdout.readline() == b"hex: ff fe\n"  # the echo, shown in hex
        client.communicate(timeout=TIMEOUT)
        assert client.returncode == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate(timeout=TIMEOUT)
    assert line(server.stdout).endswith(" hex: ff fe")


def test_input_the_peer_does_not_read_is_reported_with_1() -> None:
    """A server that accepts and never reads: what is still queued at the end of
    ``--drain`` is said, and the status is 1 (nothing is dropped in silence)."""
    with socket.create_server(("127.0.0.1", 0)) as deaf:
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        port = deaf.getsockname()[1]
        # 6 MB: more than the kernel's buffers hold, less than the send queue's bound (so
        # no send waits for room: a peer that never reads holds back only the end).
        lines = ("x" * 1000 + "\n") * 6_000
        done = run("connect", "framed-tcp", f"127.0.0.1:{port}", "--drain", "0.5", stdin=lines)
    assert done.returncode == 1
    assert "bytes not sent: the peer did not read them in 0.5 s" in done.stderr
