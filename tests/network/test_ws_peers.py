"""``Transport.WS`` against WebSocket peers written elsewhere, on loopback:

* the ``websockets`` package's asyncio client and server (``ws`` and ``wss``, with
  certificates made by ``trustme``; certificate and host-name verification);
* a real browser: Debian's headless Chromium runs ``tests/peers/ws_echo.html``;
* the Node ``ws`` package, client and server (``tests/peers/ws_peer.js``; installed by
  ``npm install --prefix tests/peers``).

Each peer exchanges text and binary messages, small and large, and checks that every
echo keeps its kind (text frame or binary frame) and its content.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import http.server
import logging
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.http11 import Request, Response

from message_io import (
    Accepted,
    Connected,
    Disconnected,
    Endpoint,
    Message,
    NodeEvent,
    SendStatus,
    TextMessage,
    Transport,
    WsConnectConfig,
    WsListenConfig,
)
from message_io.network.adapter import resolve_address

from .conftest import TIMEOUT, Net, Node, accepted

SENT: Final = SendStatus.SENT
PEERS: Final = Path(__file__).resolve().parent.parent / "peers"
BIG: Final = 8 * 1024 * 1024
"""The large message: half of our default ``max_message_size``."""
THEIR_MAX_SIZE: Final = 16 * 1024 * 1024
"""The largest message the other libraries accept (``websockets`` defaults to 1 MiB)."""
SEND_LIMIT: Final = 32 * 1024 * 1024
"""Our send queue: room for the large echoes even if the peer is slow to read them."""
CHROMIUM: Final = Path("/usr/bin/chromium")
PEER_TIMEOUT: Final = 3 * TIMEOUT
"""Seconds for a whole exchange with an outside process (a browser starts slowly)."""

T = TypeVar("T")


def localhost() -> str:
    """The address ``localhost`` means to our client (its first resolution), so that a
    server bound there is the one a ``wss://localhost`` URL reaches."""
    return str(resolve_address(("localhost", 0))[0][1][0])


def echo_keeping_kind(node: Node, event: NodeEvent[Any]) -> None:
    """A hook that sends every message back in the frame type it came in; the events
    still reach the queue."""
    if isinstance(event, TextMessage):
        assert node.network.send(event.endpoint, event.text) is SENT
    elif isinstance(event, Message):
        assert node.network.send(event.endpoint, event.data) is SENT


def exchange(node: Node, endpoint: Endpoint, messages: list[str | bytes]) -> None:
    """Send each message and expect its echo, of the same kind, before the next."""
    for message in messages:
        assert node.network.send(endpoint, message) is SENT
        event = node.expect(Message)
        assert event.endpoint == endpoint
        if isinstance(message, str):
            assert isinstance(event, TextMessage), "a text message came back as binary"
            assert event.text == message
        else:
            assert not isinstance(event, TextMessage), "a binary message came back as text"
            assert event.data == message


def sample_messages() -> list[str | bytes]:
    return [
        "héllo ✓",
        b"\x00\xff binary \x80",
        "",
        b"",
        os.urandom(BIG),
        "ü" * (BIG // 2),  # 8 MiB of UTF-8
    ]


# -- certificates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A test CA and a server certificate it issued, also as PEM files."""

    ca: trustme.CA
    cert: trustme.LeafCert
    ca_file: Path
    cert_file: Path  # the chain only
    key_file: Path
    combined_file: Path  # key and chain: what ``WsListenConfig.certfile`` takes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_pki(directory: Path, *identities: str) -> Pki:
    ca = trustme.CA()
    cert = ca.issue_cert(*identities)
    pki = Pki(
        ca,
        cert,
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
        directory / "combined.pem",
    )
    ca.cert_pem.write_to_path(str(pki.ca_file))
    cert.private_key_pem.write_to_path(str(pki.key_file))
    pki.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_and_cert_chain_pem.write_to_path(str(pki.combined_file))
    return pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, "localhost", "127.0.0.1")


# -- the websockets package's asyncio side -------------------------------------------


class AsyncioThread:
    """An asyncio loop in a daemon thread; the test thread runs coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="asyncio", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = PEER_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_asyncgens()

        try:
            self.run(cancel_the_rest(), TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
            assert not self.thread.is_alive(), "the asyncio thread did not stop"
            self.loop.close()


@pytest.fixture
def aio() -> Iterator[AsyncioThread]:
    runner = AsyncioThread()
    try:
        yield runner
    finally:
        runner.close()


class TheirServer:
    """A ``websockets.asyncio.server`` echo server (keeping each message's kind) that
    reports each connection's request path and, when it ends, the codes of the close
    frames it received and sent (``None``: none).

    Two texts are commands instead: ``"ping me"`` (it pings, waits for the pong, then
    sends ``"pong received"``) and ``"close me"`` (it closes with 4000). On the path
    ``/greet-then-close`` it sends ``"welcome"`` and closes with 4001 at once, as a
    server that turns a client away after the handshake does, and corks that
    connection's socket (``TCP_CORK``) from the start: the kernel then sends the 101
    response, the message and the close frame in one segment (what a busy network or a
    server writing them together gives), flushing it at the latest 200 ms after the first
    byte; the client reads them all at once."""

    def __init__(
        self,
        aio: AsyncioThread,
        ssl_context: ssl.SSLContext | None,
        max_size: int = THEIR_MAX_SIZE,
        close_timeout: float = TIMEOUT,
    ) -> None:
        self.aio = aio
        self.paths: queue.Queue[str] = queue.Queue()
        self.closes: queue.Queue[tuple[int | None, int | None]] = queue.Queue()
        self.server: Server = aio.run(self._start(ssl_context, max_size, close_timeout))
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _start(
        self, ssl_context: ssl.SSLContext | None, max_size: int, close_timeout: float
    ) -> Server:
        server: Server = await serve(
            self._echo,
            localhost(),
            0,
            ssl=ssl_context,
            max_size=max_size,
            close_timeout=close_timeout,
            process_request=self._cork,
        )
        return server

    @staticmethod
    def _cork(conn: ServerConnection, request: Request) -> Response | None:
        if request.path == "/greet-then-close":
            sock = conn.transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        return None  # go on with the handshake

    async def _echo(self, conn: ServerConnection) -> None:
        path = conn.request.path if conn.request is not None else ""
        self.paths.put(path)
        try:
            if path == "/greet-then-close":
                await conn.send("welcome")
                await conn.close(4001, "turned away")
                return
            async for message in conn:
                if message == "ping me":
                    await asyncio.wait_for(await conn.ping(b"from websockets"), TIMEOUT)
                    await conn.send("pong received")
                elif message == "close me":
                    await conn.close(4000, "asked to")
                else:
                    await conn.send(message)
        except ConnectionClosed:
            pass  # an error close: its code is reported below all the same
        finally:
            received, sent = conn.protocol.close_rcvd, conn.protocol.close_sent
            self.closes.put(
                (None if received is None else received.code, None if sent is None else sent.code)
            )

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        self.aio.run(stop(), TIMEOUT)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_websockets_client_against_our_server(
    ws: Net, aio: AsyncioThread, pki: Pki, scheme: str
) -> None:
    secure = scheme == "wss"
    config = WsListenConfig(
        certfile=str(pki.combined_file) if secure else None, send_buffer_limit=SEND_LIMIT
    )
    server = ws.node("server", echo_keeping_kind)
    listener_id, addr = server.network.listen(Transport.WS, f"{localhost()}:0", config=config)
    host = "localhost" if secure else addr[0]
    url = f"{scheme}://{host}:{addr[1]}/their/client?q=1"
    messages = sample_messages()

    async def session() -> None:
        ssl_context = pki.client_context() if secure else None
        async with connect(
            url, ssl=ssl_context, max_size=THEIR_MAX_SIZE, close_timeout=TIMEOUT
        ) as conn:
            for message in messages:
                await conn.send(message)
                reply = await conn.recv()
                assert type(reply) is type(message), f"{type(message)} came back as {type(reply)}"
                assert reply == message
            # Fragmented messages arrive whole, and keep their kind.
            await conn.send(["frag", "mented ✓"])
            assert await conn.recv() == "fragmented ✓"
            await conn.send([b"frag", b"mented"])
            assert await conn.recv() == b"fragmented"
            # Our server answers pings.
            await asyncio.wait_for(await conn.ping(b"from websockets"), TIMEOUT)
        # Their close (1000) was answered by ours: the closing handshake completed.
        assert conn.protocol.close_rcvd is not None, "our server did not answer the close frame"
        assert conn.protocol.close_rcvd.code == 1000
        assert conn.close_code == 1000

    aio.run(session())
    endpoint = accepted(server, listener_id)
    for sent in [*messages, "fragmented ✓", b"fragmented"]:
        event = server.expect(Message)
        assert event.endpoint == endpoint
        assert isinstance(event, TextMessage) is isinstance(sent, str)
        assert (event.text if isinstance(event, TextMessage) else event.data) == sent
    assert server.expect(Disconnected) == Disconnected(endpoint)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_our_client_against_websockets_server(
    ws: Net, aio: AsyncioThread, pki: Pki, scheme: str
) -> None:
    secure = scheme == "wss"
    theirs = TheirServer(aio, pki.server_context() if secure else None)
    try:
        client = ws.node("client")
        url = f"{scheme}://localhost:{theirs.port}/their/server?room=1"
        endpoint = ws.connected(client, url, ca_file=str(pki.ca_file), send_buffer_limit=SEND_LIMIT)
        assert theirs.paths.get(timeout=TIMEOUT) == "/their/server?room=1"
        exchange(client, endpoint, sample_messages())
        # Our client answers their ping.
        assert client.network.send(endpoint, "ping me") is SENT
        assert client.expect(TextMessage).text == "pong received"
        # remove sends a close frame with 1000: their side saw a clean close.
        assert client.network.remove(endpoint.resource_id)
        assert theirs.closes.get(timeout=TIMEOUT) == (1000, 1000)

        # Closed by them: our client answers the close frame (they got their 4000
        # back) and reports Disconnected.
        second = ws.connected(client, url, ca_file=str(pki.ca_file))
        assert theirs.paths.get(timeout=TIMEOUT) == "/their/server?room=1"
        assert client.network.send(second, "close me") is SENT
        assert client.expect(Disconnected) == Disconnected(second)
        received, sent = theirs.closes.get(timeout=TIMEOUT)
        assert sent == 4000
        assert received == 4000, "our client did not answer the close frame"
    finally:
        theirs.close()


def test_our_client_when_their_server_closes_right_after_the_handshake(
    ws: Net, aio: AsyncioThread
) -> None:
    """A server that accepts the handshake, then at once sends a message and closes (a
    client turned away: full, not authorized): the message and the close frame arrive
    with, or right behind, the 101 response. The connection was established: our client
    must say so, deliver the message, answer the close and report Disconnected."""
    theirs = TheirServer(aio, None, close_timeout=2)  # then they drop the TCP connection
    try:
        client = ws.node("client")
        url = f"ws://{localhost()}:{theirs.port}/greet-then-close"
        config = WsConnectConfig(connect_timeout=TIMEOUT / 2)
        started = time.monotonic()
        endpoint, _local = client.network.connect(Transport.WS, url, config=config)
        event = client.expect(Connected)
        elapsed = time.monotonic() - started
        received, sent = theirs.closes.get(timeout=TIMEOUT)
        assert sent == 4001
        assert event == Connected(endpoint, True), (
            f"LIBRARY BUG: the server accepted the handshake (101), sent a message and a "
            f"close frame, and our client reported {event} after {elapsed:.1f} s; the "
            f"server got {'no' if received is None else received} close reply: "
            "WsRemote._ws_handshake only counts the handshake done while the protocol is "
            "OPEN, so an early close frame leaves it pending until EOF or the timeout"
        )
        assert client.expect(TextMessage).text == "welcome"
        assert client.expect(Disconnected) == Disconnected(endpoint)
        assert received == 4001, "our client did not answer the close frame"
    finally:
        theirs.close()


def test_too_big_messages_close_with_1009_both_ways(ws: Net, aio: AsyncioThread) -> None:
    # Their client sends more than our server takes: our server closes with 1009.
    server = ws.node("server", echo_keeping_kind)
    config = WsListenConfig(max_message_size=1000)
    listener_id, addr = server.network.listen(Transport.WS, f"{localhost()}:0", config=config)

    async def too_big() -> None:
        async with connect(f"ws://{addr[0]}:{addr[1]}/", close_timeout=TIMEOUT) as conn:
            await conn.send(b"x" * 1000)
            assert await conn.recv() == b"x" * 1000
            await conn.send(b"y" * 1001)
            with pytest.raises(ConnectionClosedError) as closed:
                await conn.recv()
            assert closed.value.rcvd is not None, "no close frame from our server"
            assert closed.value.rcvd.code == 1009

    aio.run(too_big())
    endpoint = accepted(server, listener_id)
    assert server.expect(Message).data == b"x" * 1000
    assert server.expect(Disconnected) == Disconnected(endpoint)

    # Our client sends more than their server takes: they close with 1009, our client
    # answers it and reports Disconnected.
    theirs = TheirServer(aio, None, max_size=1000)
    try:
        client = ws.node("client")
        endpoint = ws.connected(client, f"ws://{localhost()}:{theirs.port}/")
        exchange(client, endpoint, [b"x" * 1000])
        assert client.network.send(endpoint, b"y" * 1001) is SENT
        assert client.expect(Disconnected) == Disconnected(endpoint)
        # (They fail the connection: they send 1009 and read nothing after it, RFC 6455
        # 7.1.7, so they never see our reply.)
        assert theirs.closes.get(timeout=TIMEOUT) == (None, 1009)
    finally:
        theirs.close()


def test_our_client_verifies_the_certificate_and_the_host_name(
    ws: Net, aio: AsyncioThread, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="message_io")
    only_localhost = make_pki(tmp_path, "localhost")  # no IP address in the certificate
    theirs = TheirServer(aio, only_localhost.server_context())
    try:
        client = ws.node("client")
        port = theirs.port

        def outcome(url: str, **options: Any) -> str:
            """Connect: "ok" (a message echoed, then removed), or the failure's log."""
            caplog.clear()
            config = WsConnectConfig(**options)
            endpoint, _local = client.network.connect(Transport.WS, url, config=config)
            event = client.expect(Connected)
            assert event.endpoint == endpoint
            if event.established:
                exchange(client, endpoint, ["still trusted?"])
                assert client.network.remove(endpoint.resource_id)
                return "ok"
            return caplog.text

        url = f"wss://localhost:{port}/"
        ca_file = str(only_localhost.ca_file)
        untrusted = "CERTIFICATE_VERIFY_FAILED"
        # By default only the system's CAs are trusted: the test CA is not.
        assert untrusted in outcome(url), "an untrusted certificate was accepted by default"
        (tmp_path / "other").mkdir()
        other_ca = str(make_pki(tmp_path / "other", "localhost").ca_file)
        assert untrusted in outcome(url, ca_file=other_ca), "another CA's certificate passed"
        # Trusted through ca_file, or through an ssl_context (which wins over ca_file).
        assert outcome(url, ca_file=ca_file) == "ok"
        assert outcome(url, ssl_context=only_localhost.client_context()) == "ok"
        context = only_localhost.client_context()
        assert outcome(url, ssl_context=context, ca_file=other_ca) == "ok"
        # The host name is verified: the certificate names localhost, not 127.0.0.1...
        ip_url = f"wss://127.0.0.1:{port}/"
        mismatch = "mismatch, certificate is not valid for"
        assert mismatch in outcome(ip_url, ca_file=ca_file), "a certificate for another host"
        assert mismatch in outcome(ip_url, ssl_context=only_localhost.client_context())
        # ...unless server_hostname says which name to verify, and only the right one.
        assert outcome(ip_url, ca_file=ca_file, server_hostname="localhost") == "ok"
        assert mismatch in outcome(url, ca_file=ca_file, server_hostname="other.example")
        client.sync()
        assert client.drain_events() == []
    finally:
        theirs.close()


# -- a browser -------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[int]:
    """Serve ``directory`` on 127.0.0.1 (port chosen by the OS) in a thread; its port."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


@contextlib.contextmanager
def process_group(args: list[str], log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in a process group of its own, killed with all its children at the
    end (a browser forks helpers)."""
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)


def spki_pin(pki: Pki) -> str:
    """What Chromium's ``--ignore-certificate-errors-spki-list`` takes to trust exactly
    this server certificate: the base64 SHA-256 of its public key."""
    cert = x509.load_pem_x509_certificate(pki.cert.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"
)
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_chromium_against_our_server(ws: Net, tmp_path: Path, pki: Pki, scheme: str) -> None:
    def echo_but_reports(node: Node, event: NodeEvent[Any]) -> None:
        if isinstance(event, TextMessage) and event.text.startswith(("RESULT", "CLOSED")):
            return
        echo_keeping_kind(node, event)

    with http_server(PEERS) as http_port:
        origin = f"http://127.0.0.1:{http_port}"
        config = WsListenConfig(
            paths={"/echo"},
            origins={origin},
            certfile=str(pki.combined_file) if scheme == "wss" else None,
        )
        server = ws.node("server", echo_but_reports)
        listener_id, addr = server.network.listen(Transport.WS, "127.0.0.1:0", config=config)
        page = f"{origin}/ws_echo.html?scheme={scheme}&port={addr[1]}&path=/echo"
        browser_log = tmp_path / "chromium.log"
        args = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--ignore-certificate-errors-spki-list={spki_pin(pki)}",  # for wss: this one only
            page,
        ]
        with browser_log.open("wb") as log, process_group(args, log) as browser:

            def failure(what: str) -> str:
                code = browser.poll()
                lines = browser_log.read_text(errors="replace").splitlines()
                tail = "\n".join([line for line in lines if "dbus" not in line][-30:])
                return f"{what} (chromium exit code {code}); its log ends:\n{tail}"

            try:
                event = server.expect(Accepted, timeout=PEER_TIMEOUT)
            except AssertionError:
                pytest.fail(failure("the browser never opened the WebSocket"))
            assert event.listener_id == listener_id
            endpoint = event.endpoint
            assert endpoint.addr[0] == "127.0.0.1"

            text = server.expect(TextMessage)
            assert text.text == "héllo ✓ from the browser"
            small = server.expect(Message)
            assert not isinstance(small, TextMessage)
            assert small.data == bytes(range(256))
            big = server.expect(Message)
            assert not isinstance(big, TextMessage)
            assert big.data == bytes((i * 7 + 3) & 0xFF for i in range(1024 * 1024))
            result = server.expect(TextMessage, timeout=PEER_TIMEOUT)
            assert result.endpoint == endpoint
            assert result.text == "RESULT ok", failure(f"the page said {result.text!r}")

            # Our close frame reaches the page as a close event with its code; the page
            # reports it on a second connection.
            assert server.network.remove(endpoint.resource_id)
            second = server.expect(Accepted, timeout=PEER_TIMEOUT)
            report = server.expect(TextMessage, timeout=PEER_TIMEOUT)
            assert report.endpoint == second.endpoint
            assert report.text.split()[:2] == ["CLOSED", "1000"], failure(report.text)


# -- Node's ws package ------------------------------------------------------------------

NODE: Final = shutil.which("node")
NODE_WS: Final = PEERS / "node_modules" / "ws" / "package.json"
node_ws = pytest.mark.skipif(
    NODE is None or not NODE_WS.exists(),
    reason="node or its ws package is missing: npm install --prefix tests/peers",
)


class NodePeer:
    """``node tests/peers/ws_peer.js ...``, whose stdout lines land in a queue."""

    def __init__(self, *args: str) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, str(PEERS / "ws_peer.js"), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, name="node-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float = PEER_TIMEOUT) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node said nothing within {timeout} s: {self.seen}") from None
        assert line is not None, f"node exited ({self.proc.wait(TIMEOUT)}) after {self.seen}"
        self.seen.append(line)
        return line

    def wait(self) -> int:
        """Its exit code (it must exit within the timeout)."""
        code = self.proc.wait(PEER_TIMEOUT)
        self._reader.join(TIMEOUT)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@node_ws
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_node_ws_client_against_our_server(ws: Net, pki: Pki, scheme: str) -> None:
    secure = scheme == "wss"
    config = WsListenConfig(
        ssl_context=pki.server_context() if secure else None, send_buffer_limit=SEND_LIMIT
    )
    server = ws.node("server", echo_keeping_kind)
    listener_id, addr = server.network.listen(Transport.WS, f"{localhost()}:0", config=config)
    host = "localhost" if secure else addr[0]
    url = f"{scheme}://{host}:{addr[1]}/node"
    peer = NodePeer("client", url, *([str(pki.ca_file)] if secure else []))
    try:
        assert peer.next_line() == "RESULT ok", peer.seen
        assert peer.next_line() == "CLOSED 1000", peer.seen  # our reply to its close
        assert peer.wait() == 0, peer.seen
    finally:
        peer.close()

    endpoint = accepted(server, listener_id)
    text = server.expect(TextMessage)
    assert text.text == "héllo ✓ from node"
    small = server.expect(Message)
    assert not isinstance(small, TextMessage)
    assert small.data == bytes(range(256))
    big = server.expect(Message)
    assert not isinstance(big, TextMessage)
    assert big.data == bytes((i * 7 + 3) & 0xFF for i in range(BIG))
    assert server.expect(Disconnected) == Disconnected(endpoint)


@node_ws
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_our_client_against_node_ws_server(ws: Net, pki: Pki, scheme: str) -> None:
    secure = scheme == "wss"
    peer = NodePeer("server", *([str(pki.cert_file), str(pki.key_file)] if secure else []))
    try:
        line = peer.next_line()
        assert line.startswith("LISTENING "), peer.seen
        port = int(line.split()[1])
        client = ws.node("client")
        endpoint = ws.connected(
            client,
            f"{scheme}://127.0.0.1:{port}/from/message-io?x=1",  # the certificate has the IP
            ssl_context=pki.client_context() if secure else None,
            send_buffer_limit=SEND_LIMIT,
        )
        assert peer.next_line() == "PATH /from/message-io?x=1"
        exchange(client, endpoint, sample_messages())
        assert client.network.remove(endpoint.resource_id)
        assert peer.next_line() == "CLOSED 1000", peer.seen
        assert peer.wait() == 0, peer.seen
    finally:
        peer.close()


@node_ws
def test_our_client_when_node_ws_server_closes_right_after_the_handshake(ws: Net) -> None:
    """As with the websockets server: established, the message, the close answered."""
    peer = NodePeer("server")
    try:
        line = peer.next_line()
        assert line.startswith("LISTENING "), peer.seen
        port = int(line.split()[1])
        client = ws.node("client")
        config = WsConnectConfig(connect_timeout=TIMEOUT / 2)
        started = time.monotonic()
        url = f"ws://127.0.0.1:{port}/greet-then-close"
        endpoint, _local = client.network.connect(Transport.WS, url, config=config)
        event = client.expect(Connected)
        elapsed = time.monotonic() - started
        assert peer.next_line() == "PATH /greet-then-close"
        assert event == Connected(endpoint, True), (
            f"LIBRARY BUG: the server accepted the handshake (101), sent a message and a "
            f"close frame, and our client reported {event} after {elapsed:.1f} s "
            "(see test_our_client_when_their_server_closes_right_after_the_handshake)"
        )
        assert client.expect(TextMessage).text == "welcome"
        assert client.expect(Disconnected) == Disconnected(endpoint)
        assert peer.next_line() == "CLOSED 4001 turned away", "our client did not answer"
        assert peer.wait() == 0, peer.seen
    finally:
        peer.close()
