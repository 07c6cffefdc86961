"""Host names: resolved off the loop, their addresses raced (Happy Eyeballs, RFC 8305).

The resolver is one the tests control (``split(resolver=...)``, with the signature of
``socket.getaddrinfo``): it can hang, fail, or answer with addresses where servers
refuse, never answer, or accept. Where a test must know exactly when an answer reaches
the node, the resolver pool is replaced by :class:`ManualPool`, whose jobs the test
runs itself. The race logic is checked with a stub transport whose attempts connect,
refuse or stay silent on demand, and once with real TCP sockets.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import message_io
from message_io import (
    Accepted,
    Connected,
    ConnectError,
    ConnectTimeout,
    FramedTcpConnectConfig,
    Message,
    SendStatus,
    Signal,
    Transport,
    UdpConnectConfig,
)
from message_io.network import dial as dial_module
from message_io.network.adapter import (
    Adapter,
    Buffer,
    ConnectConfig,
    ConnectionInfo,
    HostName,
    ListeningInfo,
    PendingStatus,
    Readiness,
    ReadStatus,
    Remote,
    check_ip_address,
    host_name,
)
from message_io.network.resolver import ResolverPool, interleave

from .conftest import TIMEOUT, Net, Node

V4 = socket.AF_INET
V6 = socket.AF_INET6


class FakeResolver:
    """``getaddrinfo`` with answers given by the test; optionally held at a gate."""

    def __init__(
        self,
        answers: dict[str, Sequence[tuple[socket.AddressFamily, tuple[Any, ...]]]],
        gate: threading.Event | None = None,
    ) -> None:
        self.answers = answers
        self.gate = gate
        self.calls: list[tuple[str, int, str]] = []  # host, port, thread name
        self.started = threading.Event()

    def __call__(
        self, host: str, port: int, family: int = 0, kind: int = 0, *_rest: Any
    ) -> list[tuple[Any, ...]]:
        self.calls.append((host, port, threading.current_thread().name))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(TIMEOUT)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(fam, kind, 0, "", sockaddr) for fam, sockaddr in self.answers[host]]


class ManualPool:
    """Stands in for the resolver threads: the test runs each job when it chooses."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None]] = []

    def submit(self, job: Callable[[], None]) -> None:
        self.jobs.append(job)

    def run_all(self) -> None:
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job()


@pytest.fixture
def manual_pool(monkeypatch: pytest.MonkeyPatch) -> ManualPool:
    pool = ManualPool()
    monkeypatch.setattr(dial_module, "POOL", pool)
    return pool


def loop_turn(node: Node) -> None:
    """Return once the node's loop has run what was posted to it before this call
    (an answer of the resolver is a timer of delay 0, run before signals)."""
    node.sync()


def refused_port(net: Net, host: str = "127.0.0.1") -> int:
    """A port where connections are refused (bound, not listening; held till teardown)."""
    family = V6 if ":" in host else V4
    sock = net._keep(socket.socket(family, socket.SOCK_STREAM))
    sock.bind((host, 0))
    return int(sock.getsockname()[1])


# -- resolution off the loop ------------------------------------------------------------


def test_a_hung_resolver_blocks_neither_the_caller_nor_the_loop(framed: Net) -> None:
    server, _listener_id, addr = framed.server()
    gate = threading.Event()
    resolver = FakeResolver({"slow.test": [(V4, addr)]}, gate)
    client = framed.node("client", resolver=resolver)
    try:
        # Called from the loop thread, as a callback would.
        endpoint, local = client.run_on_loop(
            lambda: client.network.connect(Transport.FRAMED_TCP, ("slow.test", addr[1]))
        )
        assert local is None  # no socket yet: the name is not resolved
        assert endpoint.addr == ("slow.test", addr[1])
        assert resolver.started.wait(TIMEOUT)
        assert not gate.is_set()
        # The loop still serves everything else while the resolver hangs.
        client.handler.signals.send("still alive")
        assert client.expect(Signal).value == "still alive"
        assert client.network.send(endpoint, b"x") is SendStatus.RESOURCE_NOT_AVAILABLE
        assert client.network.is_ready(endpoint.resource_id) is False
    finally:
        gate.set()
    assert client.expect(Connected) == Connected(endpoint, True)
    server.expect(Accepted)
    assert resolver.calls == [("slow.test", addr[1], "message-io-resolver")]
    assert client.network.send(endpoint, b"hello") is SendStatus.SENT
    assert server.expect(Message).data == b"hello"


def test_a_name_that_does_not_resolve_is_a_failed_connect(framed: Net) -> None:
    client = framed.node("client", resolver=FakeResolver({}))
    endpoint, _ = client.network.connect(Transport.FRAMED_TCP, "nowhere.test:80")
    event = client.expect(Connected)
    assert event == Connected(endpoint, False)
    assert isinstance(event.error, ConnectError)
    assert "nowhere.test:80" in str(event.error)
    assert "Name or service not known" in str(event.error)
    assert isinstance(event.error.__cause__, socket.gaierror)
    assert client.network.is_ready(endpoint.resource_id) is None


def _lookup_times_out(net: Net, transport: Transport, config: ConnectConfig) -> None:
    """Connect to a name whose lookup hangs: ``Connected(endpoint, False)`` with a
    ``ConnectTimeout`` once ``config.connect_timeout`` passes, and nothing is sent."""
    gate = threading.Event()
    client = net.node("client", resolver=FakeResolver({}, gate))
    try:
        endpoint, _ = client.network.connect(transport, "hung.test:80", config=config)
        event = client.expect(Connected)
        assert event == Connected(endpoint, False)
        assert isinstance(event.error, ConnectTimeout)
        assert client.network.send(endpoint, b"x") is SendStatus.RESOURCE_NOT_FOUND
    finally:
        gate.set()


def test_connect_timeout_covers_the_lookup(framed: Net) -> None:
    _lookup_times_out(framed, Transport.FRAMED_TCP, FramedTcpConnectConfig(connect_timeout=0.2))


def test_removed_while_resolving_nothing_follows(framed: Net, manual_pool: ManualPool) -> None:
    server, _listener_id, addr = framed.server()
    resolver = FakeResolver({"later.test": [(V4, addr)]})
    client = framed.node("client", resolver=resolver)
    endpoint, _ = client.network.connect(Transport.FRAMED_TCP, ("later.test", addr[1]))
    assert client.network.remove(endpoint.resource_id) is True
    assert client.network.is_ready(endpoint.resource_id) is None
    manual_pool.run_all()  # the answer comes after the remove...
    loop_turn(client)
    assert resolver.calls == []  # ...and was not even asked: the job saw the remove
    assert client.drain_events() == []
    server.sync()
    assert server.drain_events() == []


def test_removed_after_the_answer_closes_the_attempts(manual_pool: ManualPool) -> None:
    adapter = RaceAdapter({("10.0.0.1", 1): "silent"}, delay=None)
    handler, listener = message_io.split(resolver=FakeResolver({"a.test": [(V4, ("10.0.0.1", 1))]}))
    with listener.for_each_async(lambda _event: None, on_error="stop"):
        endpoint, _ = handler.network.connect(RACE, "a.test:1", config=RaceConfig(adapter))
        manual_pool.run_all()
        attempt = adapter.wait_started(1)[0]
        assert handler.network.remove(endpoint) is True
        assert attempt.closed.wait(TIMEOUT)


def test_stop_while_dialing_closes_the_attempts(manual_pool: ManualPool) -> None:
    adapter = RaceAdapter({("10.0.0.1", 1): "silent"}, delay=None)
    handler, listener = message_io.split(resolver=FakeResolver({"a.test": [(V4, ("10.0.0.1", 1))]}))
    task = listener.for_each_async(lambda _event: None, on_error="stop")
    handler.network.connect(RACE, "a.test:1", config=RaceConfig(adapter))
    manual_pool.run_all()
    attempt = adapter.wait_started(1)[0]
    handler.stop()
    assert task.wait(TIMEOUT)
    assert attempt.closed.is_set()


def test_connect_sync_with_a_name_before_and_while_the_loop_runs(framed: Net) -> None:
    server, _listener_id, addr = framed.server()
    resolver = FakeResolver({"sync.test": [(V4, addr)]})
    client = framed.node("client", start=False, resolver=resolver)
    endpoint, local = client.network.connect_sync(Transport.FRAMED_TCP, ("sync.test", addr[1]))
    assert isinstance(local, tuple)
    assert local[0] == "127.0.0.1" and local[1] > 0  # the socket that connected
    assert client.network.is_ready(endpoint.resource_id) is True
    server.expect(Accepted)
    client.start()
    assert client.expect(Connected) == Connected(endpoint, True)  # delivered, in order
    second, local = client.network.connect_sync(Transport.FRAMED_TCP, ("sync.test", addr[1]))
    assert local[0] == "127.0.0.1"
    assert client.expect(Connected) == Connected(second, True)
    with pytest.raises(ConnectError, match=r"unknown\.test"):
        client.network.connect_sync(Transport.FRAMED_TCP, "unknown.test:1")


def test_the_system_resolver_finds_localhost(framed: Net) -> None:
    server, _listener_id, addr = framed.server()
    client = framed.node("client")
    endpoint, local = client.network.connect(Transport.FRAMED_TCP, f"localhost:{addr[1]}")
    assert local is None
    # localhost may be ::1 first, where nothing listens: the next address is tried.
    assert client.expect(Connected) == Connected(endpoint, True)
    server.expect(Accepted)


def test_udp_to_a_name_is_ready_once_resolved(udp: Net, manual_pool: ManualPool) -> None:
    server, _listener_id, addr = udp.server()
    client = udp.node("client", resolver=FakeResolver({"peer.test": [(V4, addr)]}))
    endpoint, local = client.network.connect(Transport.UDP, ("peer.test", addr[1]))
    assert local is None
    assert client.network.send(endpoint, b"early") is SendStatus.RESOURCE_NOT_AVAILABLE
    manual_pool.run_all()
    assert client.expect(Connected) == Connected(endpoint, True)
    assert client.network.send(endpoint, b"datagram") is SendStatus.SENT
    assert server.expect(Message).data == b"datagram"


def test_udp_connect_timeout_covers_the_lookup_by_default(udp: Net) -> None:
    assert UdpConnectConfig().connect_timeout == 10.0  # as TCP's: a lookup ends
    _lookup_times_out(udp, Transport.UDP, UdpConnectConfig(connect_timeout=0.2))


def test_websocket_url_with_a_name(ws: Net) -> None:
    server, _listener_id, addr = ws.server()
    client = ws.node("client", resolver=FakeResolver({"chat.test": [(V4, addr)]}))
    endpoint, _ = client.network.connect(Transport.WS, f"ws://chat.test:{addr[1]}/room")
    assert client.expect(Connected) == Connected(endpoint, True)
    server.expect(Accepted)
    assert client.network.send(endpoint, "text") is SendStatus.SENT
    assert server.expect(message_io.TextMessage).text == "text"


# -- Happy Eyeballs with real sockets -----------------------------------------------------


def test_a_refused_ipv6_address_falls_back_to_ipv4_at_once(framed: Net) -> None:
    server, _listener_id, addr = framed.server()
    dead_v6 = ("::1", refused_port(framed, "::1"), 0, 0)
    resolver = FakeResolver({"dual.test": [(V6, dead_v6), (V4, addr)]})
    client = framed.node("client", resolver=resolver)
    # No delay at all between attempts: only the refusal can start the IPv4 one.
    config = FramedTcpConnectConfig(happy_eyeballs_delay=None)
    endpoint, _ = client.network.connect(Transport.FRAMED_TCP, "dual.test:1", config=config)
    assert client.expect(Connected) == Connected(endpoint, True)
    server.expect(Accepted)


def test_an_address_that_never_answers_is_overtaken() -> None:
    """A listener whose accept queue is full drops SYNs (Linux): the attempt to it hangs,
    and the next address, started after the attempt delay, wins."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        blackhole = full.getsockname()
        fillers: list[socket.socket] = []
        server, server_listener = message_io.split()
        try:
            for _ in range(4):  # backlog 0 admits one, sometimes two, connections
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(blackhole)
                fillers.append(sock)
            _listener_id, good = server.network.listen(Transport.FRAMED_TCP, "127.0.0.1:0")
            assert isinstance(good, tuple)
            accepted = threading.Event()
            resolver = FakeResolver({"slow.test": [(V4, blackhole), (V4, good)]})
            handler, listener = message_io.split(resolver=resolver)
            events: list[Any] = []
            done = threading.Event()

            def on_event(event: Any) -> None:
                events.append(event)
                done.set()

            config = FramedTcpConnectConfig(happy_eyeballs_delay=0.05, connect_timeout=5)
            with (
                server_listener.for_each_async(
                    lambda e: accepted.set() if isinstance(e, Accepted) else None
                ),
                listener.for_each_async(on_event),
            ):
                endpoint, _ = handler.network.connect(
                    Transport.FRAMED_TCP, "slow.test:1", config=config
                )
                assert done.wait(TIMEOUT)
                assert accepted.wait(TIMEOUT)
            assert events == [Connected(endpoint, True)]
        finally:
            server.stop()
            for sock in fillers:
                sock.close()


# -- the race, with a stub transport ------------------------------------------------------


class Attempt(Remote):
    """One attempt of the stub transport: ``ok`` connects, ``refuse`` fails, ``silent``
    never answers. Its socket pair's far end decides when it is readable."""

    def __init__(self, sockaddr: tuple[Any, ...], behaviour: str) -> None:
        self.sockaddr = sockaddr
        self.behaviour = behaviour
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.closed = threading.Event()
        if behaviour != "silent":
            self.peer.send(b"!")  # readable at once: decided on the first poll

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self, readiness: Readiness) -> PendingStatus:
        if self.behaviour == "refuse":
            self.failure = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            return PendingStatus.DISCONNECTED
        assert self.behaviour == "ok", "a silent attempt is never ready"
        self.sock.recv(1)
        return PendingStatus.READY

    def pending_interest(self) -> Readiness:
        return Readiness.READ

    def receive(self, deliver: Callable[[bytes], object]) -> ReadStatus:
        data = self.sock.recv(65536)
        if not data:
            return ReadStatus.DISCONNECTED
        deliver(data)
        return ReadStatus.OK

    def write(self, data: Buffer) -> int:
        return self.sock.send(data)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        self.peer.close()


class RaceAdapter(Adapter):
    """Every address is a host name; each resolved address behaves as ``plan`` says."""

    def __init__(self, plan: dict[tuple[Any, ...], str], *, delay: float | None) -> None:
        self.plan = plan
        self.delay = delay
        self.started: list[Attempt] = []
        self._cond = threading.Condition()

    def lookup(self, addr: Any, config: Any) -> HostName | None:
        host, _, port = str(addr).rpartition(":")
        return HostName(host, int(port), attempt_delay=config.adapter.delay)

    def connect_to(
        self, addr: Any, config: Any, family: socket.AddressFamily, sockaddr: tuple[Any, ...]
    ) -> ConnectionInfo:
        adapter: RaceAdapter = config.adapter
        behaviour = adapter.plan[sockaddr]
        if behaviour == "unroutable":
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        attempt = Attempt(sockaddr, behaviour)
        with adapter._cond:
            adapter.started.append(attempt)
            adapter._cond.notify_all()
        return ConnectionInfo(attempt, ("local", 0), sockaddr)

    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        raise AssertionError("a host name never comes here")

    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        raise OSError("the race stub cannot listen")

    def wait_started(self, count: int) -> list[Attempt]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.started) >= count, TIMEOUT)
            return list(self.started)


class RaceConfig(ConnectConfig):
    """Carries the adapter (and so its plan) of one test to the shared transport."""

    def __init__(self, adapter: RaceAdapter, connect_timeout: float | None = 10.0) -> None:
        super().__init__(connect_timeout=connect_timeout)
        object.__setattr__(self, "adapter", adapter)

    adapter: RaceAdapter


RaceAdapter.connect_config = RaceConfig
RACE: Transport = getattr(Transport, "RACE", None) or message_io.register_transport(
    "RACE", RaceAdapter({}, delay=None)
)


def race(
    plan: list[tuple[tuple[Any, ...], str]],
    *,
    delay: float | None,
    families: Sequence[socket.AddressFamily] | None = None,
    connect_timeout: float | None = 10.0,
) -> tuple[RaceAdapter, Any]:
    """Connect through the stub to a name whose addresses behave as ``plan`` says;
    return the adapter (its attempts) and the outcome."""
    adapter = RaceAdapter(dict(plan), delay=delay)
    fams = families or [V4] * len(plan)
    resolver = FakeResolver({"race.test": [(f, a) for f, (a, _b) in zip(fams, plan, strict=True)]})
    handler, listener = message_io.split(resolver=resolver)
    outcome: list[Any] = []
    done = threading.Event()

    def on_event(event: Any) -> None:
        outcome.append(event)
        done.set()

    config = RaceConfig(adapter, connect_timeout=connect_timeout)
    with listener.for_each_async(on_event, on_error="stop"):
        endpoint, _ = handler.network.connect(RACE, "race.test:1", config=config)
        assert done.wait(TIMEOUT)
    assert outcome[0].endpoint == endpoint
    return adapter, outcome[0]


def test_the_first_to_connect_wins_and_the_others_are_closed() -> None:
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 1)
    adapter, event = race([(a, "silent"), (b, "ok")], delay=0.01)
    assert event.established
    silent, winner = adapter.started
    assert [silent.sockaddr, winner.sockaddr] == [a, b]
    assert silent.closed.is_set()  # the loser
    assert winner.closed.is_set()  # the node closed it at stop, as its connection


def test_without_a_delay_addresses_are_tried_one_at_a_time() -> None:
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 1)
    adapter, event = race([(a, "silent"), (b, "ok")], delay=None, connect_timeout=0.2)
    assert not event.established
    assert isinstance(event.error, ConnectTimeout)
    assert [attempt.sockaddr for attempt in adapter.started] == [a]  # b never started
    assert adapter.started[0].closed.is_set()


def test_a_failure_starts_the_next_address_at_once() -> None:
    a, b, c = ("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)
    # A delay far longer than the wait: only the failures can start b, then c.
    adapter, event = race([(a, "refuse"), (b, "unroutable"), (c, "ok")], delay=1000)
    assert event.established
    assert [attempt.sockaddr for attempt in adapter.started] == [a, c]


def test_when_every_address_fails_the_error_names_each() -> None:
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 1)
    _adapter, event = race([(a, "refuse"), (b, "unroutable")], delay=0.01)
    assert not event.established
    text = str(event.error)
    assert "race.test:1" in text
    assert "all 2 addresses failed" in text
    assert "10.0.0.1:1: Connection refused" in text
    assert "10.0.0.2:1: Network is unreachable" in text
    assert event.error.errno == errno.ECONNREFUSED


def test_address_families_are_interleaved() -> None:
    v6a, v6b, v4a, v4b = ("::a", 1, 0, 0), ("::b", 1, 0, 0), ("10.0.0.1", 1), ("10.0.0.2", 1)
    plan = [(v6a, "silent"), (v6b, "silent"), (v4a, "silent"), (v4b, "ok")]
    adapter, event = race(plan, delay=0.0, families=[V6, V6, V4, V4])
    assert event.established
    assert [attempt.sockaddr for attempt in adapter.started] == [v6a, v4a, v6b, v4b]


def test_interleave_keeps_each_family_in_order_and_starts_with_the_first() -> None:
    v4 = [(V4, (f"10.0.0.{i}", 1)) for i in range(3)]
    v6 = [(V6, (f"::{i}", 1, 0, 0)) for i in range(2)]
    assert interleave([*v4, *v6]) == [v4[0], v6[0], v4[1], v6[1], v4[2]]
    assert interleave([*v6, *v4]) == [v6[0], v4[0], v6[1], v4[1], v4[2]]
    assert interleave([]) == []


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_happy_eyeballs_delay_is_checked(bad: float) -> None:
    with pytest.raises(ValueError, match=r"FramedTcpConnectConfig\.happy_eyeballs_delay"):
        FramedTcpConnectConfig(happy_eyeballs_delay=bad)
    with pytest.raises(TypeError, match="happy_eyeballs_delay"):
        FramedTcpConnectConfig(happy_eyeballs_delay="fast")  # type: ignore[arg-type]


def test_resolver_must_be_callable() -> None:
    with pytest.raises(TypeError, match="resolver must be callable"):
        message_io.split(resolver=3)  # type: ignore[call-overload]


# -- pauses and removals around a connection that is not ready yet -----------------------


def test_a_pause_made_while_dialing_holds_once_connected(
    framed: Net, manual_pool: ManualPool
) -> None:
    server, _listener_id, addr = framed.server()
    client = framed.node("client", resolver=FakeResolver({"p.test": [(V4, addr)]}))
    endpoint, _ = client.network.connect(Transport.FRAMED_TCP, ("p.test", addr[1]))
    assert client.network.pause_reading(endpoint) is True
    manual_pool.run_all()
    assert client.expect(Connected) == Connected(endpoint, True)
    peer = server.expect(Accepted).endpoint
    assert server.network.send(peer, b"held") is SendStatus.SENT
    server.sync()
    client.sync()  # two turns with the message readable: it must not be read
    assert client.drain_events() == []
    stats = client.network.statistics(endpoint)
    assert stats is not None and not stats.reading
    local = client.network.local_addr(endpoint)
    assert isinstance(local, tuple) and local[0] == "127.0.0.1"
    assert client.network.resume_reading(endpoint) is True
    assert client.expect(Message).data == b"held"


def test_a_pause_right_after_connect_sync_holds(framed: Net) -> None:
    """connect_sync holds its events (and the reading) until it returns: the release
    must not undo a pause_reading made at once after it."""
    server, _listener_id, addr = framed.server()
    client = framed.node("client")
    for _ in range(20):
        endpoint, _local = client.network.connect_sync(Transport.FRAMED_TCP, addr)
        assert client.network.pause_reading(endpoint) is True
        peer = server.expect(Accepted).endpoint
        assert server.network.send(peer, b"held") is SendStatus.SENT
        server.sync()
        client.sync()
        assert client.drain_events() == [Connected(endpoint, True)]
        assert client.network.resume_reading(endpoint) is True
        assert client.expect(Message).data == b"held"
        client.network.remove(endpoint)
        server.expect(message_io.Disconnected)


def test_remove_then_stop_while_dialing_closes_the_attempt(manual_pool: ManualPool) -> None:
    for _ in range(20):
        adapter = RaceAdapter({("10.0.0.1", 1): "silent"}, delay=None)
        resolver = FakeResolver({"a.test": [(V4, ("10.0.0.1", 1))]})
        handler, listener = message_io.split(resolver=resolver)
        task = listener.for_each_async(lambda _event: None, on_error="stop")
        endpoint, _ = handler.network.connect(RACE, "a.test:1", config=RaceConfig(adapter))
        manual_pool.run_all()
        attempt = adapter.wait_started(1)[0]
        handler.network.remove(endpoint)  # queued for the loop...
        handler.stop()  # ...which may stop before it handles it
        assert task.wait(TIMEOUT)
        assert attempt.closed.is_set()


def test_text_to_a_websocket_still_dialing_is_not_available(
    ws: Net, manual_pool: ManualPool
) -> None:
    _server, _listener_id, addr = ws.server()
    client = ws.node("client", resolver=FakeResolver({"w.test": [(V4, addr)]}))
    endpoint, _ = client.network.connect(Transport.WS, f"ws://w.test:{addr[1]}/")
    assert client.network.send(endpoint, "text") is SendStatus.RESOURCE_NOT_AVAILABLE
    assert client.network.send(endpoint, b"bytes") is SendStatus.RESOURCE_NOT_AVAILABLE
    manual_pool.run_all()
    assert client.expect(Connected) == Connected(endpoint, True)
    assert client.network.send(endpoint, "text") is SendStatus.SENT


def test_a_scoped_ipv6_literal_is_not_looked_up() -> None:
    assert host_name("[fe80::1%lo]:80") is None
    with pytest.raises(message_io.AddressError, match="must be an IP address"):
        check_ip_address(("example.com%lo", 0), "source_address", passive=True)


def test_resolver_threads_serve_a_name_while_another_hangs() -> None:
    """Two names submitted at once to an idle pool get a thread each: a quick lookup
    never waits behind a hung one."""
    pool = ResolverPool(max_threads=4)
    warm = threading.Event()
    pool.submit(warm.set)
    assert warm.wait(TIMEOUT)  # one idle thread now
    gate = threading.Event()
    quick = threading.Event()

    def hang() -> None:
        gate.wait(TIMEOUT)

    pool.submit(hang)
    pool.submit(quick.set)
    try:
        assert quick.wait(TIMEOUT / 2)
    finally:
        gate.set()
