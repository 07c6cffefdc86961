"""The README's echo server and client run as written (only the port is changed)."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from .helpers import PYTHON, ROOT, run_python
from .helpers import PYTHON_ENV as ENV


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_readme_echo_server_and_client() -> None:
    server_code, client_code = _python_blocks()[:2]
    assert "3042" in server_code and "3042" in client_code
    port = str(_free_port())
    server_code = server_code.replace("0.0.0.0:3042", f"127.0.0.1:{port}")
    client_code = client_code.replace("3042", port)
    # The one addition: say when the server listens, so the client starts after it.
    server_code = server_code.replace(
        "listener.for_each(on_event)", "print('ready', flush=True)\nlistener.for_each(on_event)"
    )
    server = subprocess.Popen(
        [PYTHON, "-c", server_code], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True
    )
    client = None
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "ready\n"
        client = subprocess.Popen(
            [PYTHON, "-c", client_code],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        first = client.stdout.readline()
        assert first == "received: Hello server!\n"
        assert server.stdout.readline().startswith("client connected Endpoint(")
    finally:
        for process in (client, server):
            if process is not None:
                process.terminate()
                process.communicate(timeout=10)


def test_readme_echo_server_loses_nothing_to_a_slow_reader() -> None:
    """100 echoes of 256 KiB (25 MiB, six times the send queue's limit) to a client that
    sends them all before reading any: every echo comes back, whole and in order."""
    import threading

    from message_io.codec.framing import FrameDecoder, encode_frame

    server_code = _python_blocks()[0]
    port = str(_free_port())
    server_code = server_code.replace("0.0.0.0:3042", f"127.0.0.1:{port}")
    server_code = server_code.replace(
        "listener.for_each(on_event)", "print('ready', flush=True)\nlistener.for_each(on_event)"
    )
    payloads = [bytes([index]) * (256 * 1024) for index in range(100)]
    with subprocess.Popen(
        [PYTHON, "-c", server_code], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == "ready\n"
            with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                sender = threading.Thread(
                    target=lambda: sock.sendall(b"".join(map(encode_frame, payloads)))
                )
                sender.start()  # blocks while the server holds back (it stops reading)
                decoder = FrameDecoder(1 << 20)
                echoes: list[bytes] = []
                while len(echoes) < len(payloads):
                    data = sock.recv(16 * 1024)  # a slow reader: small reads
                    assert data, f"EOF after {len(echoes)} echoes"
                    decoder.feed(data, echoes)
                sender.join(30)
            assert echoes == payloads
        finally:
            server.terminate()
            server.communicate(timeout=10)


def test_readme_asyncio_example_runs_as_written(tmp_path: Path) -> None:
    blocks = [block for block in _python_blocks() if "message_io.asyncio" in block]
    assert len(blocks) == 1
    result = run_python("-c", blocks[0], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echoed: hello\n"


def test_the_asyncio_docs_example_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "asyncio.md").read_text()
    first = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[0]
    result = run_python("-c", first, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echoed: b'hello'\n"
