"""The examples ported from the Rust crate (file_transfer, distributed, throughput) run
end to end, as their docstrings say, each as processes talking over loopback.

As in test_examples.py, Python is given the example's path and runs it from a
temporary directory, with this checkout's message_io importable and nothing else of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from message_io.codec import decode_varint, encode_frame

from .helpers import PYTHON_ENV, ROOT

EXAMPLES = ROOT / "examples"
FILE_TRANSFER = [sys.executable, str(EXAMPLES / "file_transfer")]
DISTRIBUTED = [sys.executable, str(EXAMPLES / "distributed")]
THROUGHPUT = [sys.executable, str(EXAMPLES / "throughput")]
TIMEOUT = 30  # seconds for any one process: a hang fails the test instead of blocking it

# Stand-ins for tqdm, put first on the examples' path: one that says what the example
# asked of it, and one that is not there.
RECORDING_TQDM = """\
import sys

class tqdm:
    def __init__(self, total=None, desc=None, **options):
        self.desc, self.total, self.n, self.closed = desc, total, 0, False

    def update(self, n=1):
        self.n += n

    def close(self):
        if not self.closed:
            self.closed = True
            sys.stderr.write(f"tqdm {self.desc}: {self.n} of {self.total}\\n")
"""
MISSING_TQDM = 'raise ImportError("no tqdm here")\n'


def environment(tmp_path: Path, tqdm_stand_in: str | None = None) -> dict[str, str]:
    """The examples' environment; with ``tqdm_stand_in`` as the module ``tqdm``."""
    if tqdm_stand_in is None:
        return PYTHON_ENV
    folder = tmp_path / "stand-in"
    folder.mkdir()
    (folder / "tqdm.py").write_text(tqdm_stand_in)
    return {**PYTHON_ENV, "PYTHONPATH": f"{folder}{os.pathsep}{PYTHON_ENV['PYTHONPATH']}"}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


# -- file_transfer -----------------------------------------------------------------------


class Receivers:
    """Starts file_transfer receivers in ``cwd``; :meth:`close` kills those left."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.processes: list[subprocess.Popen[str]] = []

    def start(
        self, *options: str, addr: str = "127.0.0.1:0", env: dict[str, str] = PYTHON_ENV
    ) -> tuple[subprocess.Popen[str], str]:
        """A receiver, and the address it says it listens on."""
        process = subprocess.Popen(
            [*FILE_TRANSFER, "receiver", addr, *options],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.fullmatch(r"receiver listening on \w+ (.+), saving into .+\n", first)
        assert match is not None, first + process.communicate(timeout=TIMEOUT)[1]
        return process, match.group(1)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Receivers]:
    started = Receivers(tmp_path)
    try:
        yield started
    finally:
        started.close()


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for a process to exit by itself: its status, standard output and error."""
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, out, err


def make_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("progress", ["tqdm", "no tqdm", "--plain-progress"])
def test_a_file_arrives_whole_with_progress(
    progress: str, receivers: Receivers, tmp_path: Path
) -> None:
    # 3 MiB and a bit: many chunks, backpressure, a short last chunk.
    size = 3 * 1024 * 1024 + 12345
    data = make_file(tmp_path / "data.bin", size)
    (tmp_path / "downloads").mkdir()
    env = environment(tmp_path, MISSING_TQDM if progress == "no tqdm" else RECORDING_TQDM)
    options = ["--plain-progress"] if progress == "--plain-progress" else []
    receiver, addr = receivers.start("--dir", "downloads", *options, env=env)
    sender = run([*FILE_TRANSFER, "sender", "data.bin", addr, *options], tmp_path, env)
    status, out, err = finish(receiver)

    assert sender.returncode == 0, sender.stdout + sender.stderr
    assert status == 0, out + err
    saved = (tmp_path / "downloads" / "data.bin").resolve()
    assert saved.read_bytes() == data
    assert sorted(os.listdir(tmp_path / "downloads")) == ["data.bin"]  # no temporary file
    digest = hashlib.sha256(data).hexdigest()
    assert sender.stdout.splitlines() == [
        f"sending data.bin (3.0 MiB) to {addr}",
        f"sent {size} bytes, SHA-256 {digest}",
        f"receiver: {size} bytes, SHA-256 ok, saved as {saved}",
    ]
    first, second = out.splitlines()
    assert re.fullmatch(r"receiving data\.bin \(3\.0 MiB\) from 127\.0\.0\.1:\d+", first)
    assert second == f"received data.bin: {size} bytes, SHA-256 ok, saved as {saved}"
    for side, stderr in (("sending", sender.stderr), ("receiving", err)):
        if progress == "tqdm":
            assert stderr == f"tqdm {side} data.bin: {size} of {size}\n"
        else:  # the plain line, finished
            last = stderr.splitlines()[-1]
            assert last.startswith(f"{side} data.bin: 3.0 MiB of 3.0 MiB (100%), "), stderr
            assert "/s, " in last
            assert "tqdm" not in stderr


def test_the_progress_bar_of_the_real_tqdm(receivers: Receivers, tmp_path: Path) -> None:
    tqdm = pytest.importorskip("tqdm")
    # Where this test finds tqdm, the examples find it too.
    site = str(Path(tqdm.__file__).resolve().parent.parent)
    env = {**PYTHON_ENV, "PYTHONPATH": f"{PYTHON_ENV['PYTHONPATH']}{os.pathsep}{site}"}
    data = make_file(tmp_path / "data.bin", 1024 * 1024)
    (tmp_path / "in").mkdir()
    receiver, addr = receivers.start("--dir", "in", env=env)
    sender = run([*FILE_TRANSFER, "sender", "data.bin", addr], tmp_path, env)
    status, out, err = finish(receiver)
    assert (sender.returncode, status) == (0, 0), sender.stdout + out
    assert (tmp_path / "in" / "data.bin").read_bytes() == data
    assert "sending data.bin: 100%|" in sender.stderr
    assert "receiving data.bin: 100%|" in err


@pytest.mark.parametrize("transport", ["ws", "unix"])
def test_a_file_goes_over_the_other_message_transports(
    transport: str, receivers: Receivers, tmp_path: Path
) -> None:
    data = make_file(tmp_path / "data.bin", 1024 * 1024 + 1)
    (tmp_path / "in").mkdir()
    addr = str(tmp_path / "files.sock") if transport == "unix" else "127.0.0.1:0"
    options = ["--transport", transport, "--plain-progress"]
    receiver, addr = receivers.start("--dir", "in", *options, addr=addr)
    sender = run([*FILE_TRANSFER, "sender", "data.bin", addr, *options], tmp_path, PYTHON_ENV)
    status, out, _ = finish(receiver)
    assert (sender.returncode, status) == (0, 0), sender.stdout + sender.stderr + out
    assert (tmp_path / "in" / "data.bin").read_bytes() == data
    assert "SHA-256 ok" in sender.stdout


class FramedPeer:
    """One FramedTcp connection spoken by hand, to send what the real sender never does
    and to see what the real sender sends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def send(self, *messages: bytes) -> None:
        self.sock.sendall(b"".join(encode_frame(message) for message in messages))

    def receive(self) -> bytes:
        while True:
            header = decode_varint(self.buffer)
            if header is not None and len(self.buffer) >= header[1] + header[0]:
                size, start = header
                message = bytes(self.buffer[start : start + size])
                del self.buffer[: start + size]
                return message
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the connection closed")
            self.buffer += data


def request(name: str, size: int) -> bytes:
    return b"R" + struct.pack(">Q", size) + name.encode()


MiB = 1024 * 1024
BAD_TRANSFERS = {
    # case: (the chunks sent for an announced MiB, what the hash sent is of, the verdict)
    "short": ([b"a" * (MiB // 2)], b"a" * MiB, "size mismatch: 524288 of 1048576"),
    "long": ([b"a" * MiB, b"b"], b"a" * MiB + b"b", "more than the 1048576 bytes"),
    "tampered": ([b"a" * (MiB - 1) + b"!"], b"a" * MiB, "SHA-256 mismatch"),
}


@pytest.mark.parametrize("case", BAD_TRANSFERS)
def test_the_receiver_detects_a_bad_transfer_and_keeps_nothing(
    case: str, receivers: Receivers, tmp_path: Path
) -> None:
    chunks, digest_of, verdict = BAD_TRANSFERS[case]
    (tmp_path / "in").mkdir()
    receiver, addr = receivers.start("--dir", "in", "--plain-progress")
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        peer = FramedPeer(sock)
        peer.send(request(f"{case}.bin", MiB))
        assert peer.receive() == b"A\x01"
        peer.send(*(b"C" + chunk for chunk in chunks))
        if case != "long":  # a long one is refused as soon as it is too long
            peer.send(b"E" + hashlib.sha256(digest_of).digest())
        answer = peer.receive()
    assert answer.startswith(b"V\x00" + verdict.encode()), answer
    status, out, _ = finish(receiver)
    assert status == 1, out
    assert f"failed {case}.bin from 127.0.0.1:" in out
    assert os.listdir(tmp_path / "in") == []  # neither the file nor its temporary file


def test_the_receiver_keeps_files_in_its_folder_under_a_free_name(
    receivers: Receivers, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "evil.txt").write_text("already here")
    receiver, addr = receivers.start("--dir", "in", "--plain-progress", "--count", "2")
    host, port = addr.rsplit(":", 1)
    content = b"not where you meant"
    answers = []
    for name in ("..", "bad\x1b[2Jname", "../../evil.txt", "/etc/evil.txt"):
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            peer = FramedPeer(sock)
            peer.send(request(name, len(content)))
            answer = peer.receive()
            if answer == b"A\x01":
                peer.send(b"C" + content, b"E" + hashlib.sha256(content).digest())
                answer = peer.receive()
            answers.append(answer)
    folder = (tmp_path / "in").resolve()
    assert answers == [
        b"A\x00not a usable file name",
        b"A\x00not a usable file name",
        f"V\x01{len(content)} bytes, SHA-256 ok, saved as {folder / 'evil-1.txt'}".encode(),
        f"V\x01{len(content)} bytes, SHA-256 ok, saved as {folder / 'evil-2.txt'}".encode(),
    ]
    status, out, _ = finish(receiver)  # --count 2: refused requests do not count
    assert status == 0, out
    assert (tmp_path / "in" / "evil.txt").read_text() == "already here"  # never replaced
    assert (tmp_path / "in" / "evil-1.txt").read_bytes() == content
    assert sorted(os.listdir(tmp_path / "in")) == ["evil-1.txt", "evil-2.txt", "evil.txt"]
    assert not (tmp_path.parent / "evil.txt").exists()


def test_the_sender_reports_the_receiver_s_verdict(tmp_path: Path) -> None:
    data = make_file(tmp_path / "data.bin", 200_000)
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)

        def receive_and_refuse() -> None:  # a receiver that finds the file damaged
            conn, _ = server.accept()
            with conn:
                peer = FramedPeer(conn)
                assert peer.receive() == request("data.bin", len(data))
                peer.send(b"A\x01")
                while (message := peer.receive())[:1] == b"C":
                    received.extend(message[1:])
                assert message == b"E" + hashlib.sha256(data).digest()
                peer.send(b"V\x00SHA-256 mismatch: the file arrived damaged")
                with pytest.raises(EOFError):
                    peer.receive()  # the sender hangs up

        thread = threading.Thread(target=receive_and_refuse)
        thread.start()
        port = server.getsockname()[1]
        sender = run(
            [*FILE_TRANSFER, "sender", "data.bin", f"127.0.0.1:{port}", "--plain-progress"],
            tmp_path,
            PYTHON_ENV,
        )
        thread.join(TIMEOUT)
    assert bytes(received) == data
    assert sender.returncode == 1, sender.stdout + sender.stderr
    assert sender.stdout.splitlines()[-1] == "receiver: SHA-256 mismatch: the file arrived damaged"


def test_the_sender_says_when_no_receiver_is_there(tmp_path: Path) -> None:
    make_file(tmp_path / "data.bin", 10)
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    sender = run([*FILE_TRANSFER, "sender", "data.bin", f"127.0.0.1:{port}"], tmp_path, PYTHON_ENV)
    assert sender.returncode == 1
    assert "Connection refused" in sender.stdout


# -- distributed -------------------------------------------------------------------------


@pytest.fixture
def discovery_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A discovery server on a port the OS picked: the process and its address."""
    server = subprocess.Popen(
        [*DISTRIBUTED, "discovery-server", "127.0.0.1:0"],
        cwd=tmp_path,
        env=PYTHON_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("discovery server running on FRAMED_TCP 127.0.0.1:"), first
        yield server, first.split()[-1]
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_three_participants_greet_each_other(
    discovery_server: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    server, addr = discovery_server
    names = ["alice", "bob", "carol"]
    participants = {
        name: subprocess.Popen(
            [*DISTRIBUTED, "participant", name, addr, "--count", "2"],
            cwd=tmp_path,
            env=PYTHON_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    try:
        results = {
            name: process.communicate(timeout=TIMEOUT) for name, process in participants.items()
        }
    finally:
        for process in participants.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    for name, (out, err) in results.items():
        assert participants[name].returncode == 0, out + err
        lines = out.splitlines()
        assert lines[0].startswith(f"{name} registers with {addr}, greetings on UDP 127.0.0.1:")
        greetings = sorted(line for line in lines if " says: " in line)
        others = [other for other in names if other != name]
        assert [line.split(" says: ")[0] for line in greetings] == others, out
        for line in greetings:
            assert line.endswith(("I see you in the participant list", "welcome to the network!"))
    # Each pair greeted once each way: one of them from the list, the other on its joining.
    texts = [line for out, _ in results.values() for line in out.splitlines() if " says: " in line]
    assert sum(t.endswith("welcome to the network!") for t in texts) == 3
    server.terminate()
    log, _ = server.communicate(timeout=TIMEOUT)
    for name in names:
        assert re.search(rf"^{name} registered, UDP 127\.0\.0\.1:\d+ \(total: \d\)$", log, re.M)
        assert re.search(rf"^{name} left \(total: \d\)$", log, re.M), log


def test_a_taken_name_is_refused(
    discovery_server: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    _, addr = discovery_server
    first = subprocess.Popen(
        [*DISTRIBUTED, "participant", "alice", addr],
        cwd=tmp_path,
        env=PYTHON_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("alice registers with ")
        assert first.stdout.readline() == "already here: nobody\n"  # registered now
        second = run([*DISTRIBUTED, "participant", "alice", addr], tmp_path, PYTHON_ENV)
        assert second.returncode == 1
        assert "the discovery server refused alice: the name alice is taken" in second.stdout
        assert first.poll() is None  # the first alice is still there
    finally:
        first.kill()
        first.communicate()


# -- throughput --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "shown", "datagrams"),
    [("8MiB", "8.4 MB (8 MiB)", 129), ("100000", "0.1 MB", 2)],  # 65507 bytes in each
)
def test_throughput_measures_every_transport_both_ways(
    size: str, shown: str, datagrams: int, tmp_path: Path
) -> None:
    result = run([*THROUGHPUT, "--size", size, "--timeout", "20"], tmp_path, PYTHON_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Sending {shown} in chunks of 65507 bytes:"
    assert lines[1].split() == ["transport", "message-io", "native", "ratio"]
    rate = r"\d+\.\d\d GB/s"
    for line, name in zip(lines[2:7], ["FRAMED_TCP", "TCP", "UDP", "WS", "UNIX"], strict=True):
        assert re.fullmatch(rf"{name} +{rate} +{rate} +\d+%", line), line
    udp = re.fullmatch(
        r"UDP: paced by acknowledgements, at most \d+ datagrams in flight; "
        r"datagrams sent/arrived: message-io (\d+)/(\d+), native (\d+)/(\d+) .*",
        lines[-1],
    )
    assert udp is not None, lines[-1]
    mio_sent, mio_arrived, native_sent, native_arrived = map(int, udp.groups())
    assert mio_sent >= mio_arrived >= datagrams  # every byte arrived, losses made up for
    assert native_sent >= native_arrived >= datagrams


def test_throughput_runs_the_transports_it_is_given(tmp_path: Path) -> None:
    result = run([*THROUGHPUT, "tcp", "unix", "--size", "1MiB"], tmp_path, PYTHON_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[2:4]] == ["TCP", "UNIX"]
    assert "UDP:" not in result.stdout
    refused = run([*THROUGHPUT, "sctp"], tmp_path, PYTHON_ENV)
    assert refused.returncode == 2
    assert "no transport 'sctp'" in refused.stderr
