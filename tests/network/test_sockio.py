"""sockio: the engine's non-blocking socket calls. The C twin and the Python twin are
held to the same behaviour, on the sockets the engine uses (non-blocking)."""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import message_io
from message_io.network import sockio

from ..helpers import udp_to_a_closed_port
from ..twins import same_names, twins


@pytest.fixture(params=twins(sockio))
def io(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture
def pair(socket_pair: tuple[socket.socket, socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A connected pair, non-blocking as the engine's sockets are."""
    for sock in socket_pair:
        sock.setblocking(False)
    return socket_pair


@pytest.fixture
def udp() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    yield sender, receiver
    sender.close()
    receiver.close()


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A bound UDP socket and two others bound beside it to send to it: every one
    non-blocking, as the engine's sockets are."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sock in (receiver, *senders):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    yield receiver, senders
    for sock in (receiver, *senders):
        sock.close()


def test_the_c_twin_is_there_with_the_compiled_engine() -> None:
    assert sockio.COMPILED is message_io.COMPILED
    if sockio.COMPILED:
        assert sockio.DIRECT, "this CPython's socket layout was not recognised"
    same_names(sockio)


def test_send_and_recv(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    assert io.send(a, b"hello") == 5
    assert io.send(a, bytearray(b" world")) == 6
    assert io.send(a, memoryview(b"!!")[1:]) == 1
    assert io.pending(b) == 12
    assert io.recv(b, 5) == b"hello"
    assert io.recv(b, 100) == b" world!"
    assert io.pending(b) == 0


@pytest.mark.parametrize("size", [1, 2, 479, 511, 512, 513, 4096])
def test_a_read_returns_its_own_bytes_whatever_its_size(
    io: Any, pair: tuple[socket.socket, socket.socket], size: int
) -> None:
    """Reads of every size around the one that small reads are copied at: each returns
    exactly the bytes it received, never those of an earlier read, and MSG_PEEK leaves
    them waiting."""
    a, b = pair
    first = bytes(range(256)) * 4
    io.send(a, first[:size])
    assert io.recv(b, size, socket.MSG_PEEK) == first[:size]
    assert io.recv(b, size) == first[:size]
    io.send(a, b"xy")
    assert io.recv(b, size) == b"xy"[:size]
    if size == 1:
        assert io.recv(b, size) == b"y"


def test_nothing_waiting_raises_blocking_io_error(
    io: Any, pair: tuple[socket.socket, socket.socket]
) -> None:
    _, b = pair
    with pytest.raises(BlockingIOError):
        io.recv(b, 10)


def test_a_full_socket_raises_blocking_io_error(
    io: Any, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair
    chunk = b"x" * 4096
    with pytest.raises(BlockingIOError):  # bounded: the socket buffers are finite
        for _ in range(100_000):
            io.send(a, chunk)


def test_end_of_stream_reads_empty(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    io.send(a, b"last")
    a.shutdown(socket.SHUT_WR)
    assert io.recv(b, 100) == b"last"
    assert io.recv(b, 100) == b""


def test_a_reset_raises_connection_reset(io: Any) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # linger 0: an RST
    try:
        with pytest.raises(ConnectionResetError):
            io.recv(server, 10)
    finally:
        server.close()


def test_a_closed_peer_raises_broken_pipe_without_a_signal(
    io: Any, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    b.close()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        io.send(a, b"x")


def test_a_closed_socket_raises_bad_descriptor(
    io: Any, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Never another socket's data: a closed socket's descriptor is gone, even when its
    number is reused at once."""
    a, b = pair
    io.send(a, b"for b")
    b.close()
    reuse_a, reuse_b = socket.socketpair()  # likely takes b's old number
    try:
        reuse_a.send(b"someone else's")
        with pytest.raises(OSError) as raised:
            io.recv(b, 100)
        assert raised.value.errno == errno.EBADF
        with pytest.raises(OSError) as raised:
            io.send(b, b"x")
        assert raised.value.errno == errno.EBADF
        assert reuse_b.recv(100) == b"someone else's"
    finally:
        reuse_a.close()
        reuse_b.close()


def test_large_transfers(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    """Above GIL_LIMIT the C twin releases the GIL: the same results."""
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    data = bytes(range(256)) * 1024  # 256 KiB
    sent = io.send(a, data)
    assert 0 < sent <= len(data)
    received = b""
    while len(received) < sent:
        received += io.recv(b, 4 * sockio.GIL_LIMIT)
    assert received == data[:sent]


def test_large_sends_let_other_threads_run(pair: tuple[socket.socket, socket.socket]) -> None:
    """A send of a large buffer from one thread while another reads: both progress."""
    a, b = pair
    data = b"y" * (4 * 1024 * 1024)
    got = bytearray()
    done = threading.Event()

    def reader() -> None:
        b.setblocking(True)
        b.settimeout(10)
        while len(got) < len(data):
            got.extend(b.recv(1 << 20))
        done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        assert select.select([], [a], [], 10)[1], "the reader thread stopped reading"
        offset += sockio.send(a, view[offset:])
    assert done.wait(10)
    thread.join(10)
    assert bytes(got) == data


def test_datagrams_and_their_real_size(io: Any, udp: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp
    assert io.pending(receiver) == 0
    io.send(sender, b"12345")
    io.send(sender, b"")
    io.send(sender, b"z" * 300)
    assert io.pending(receiver) == 5  # the next datagram's size
    assert io.recv(receiver, 65536, socket.MSG_TRUNC) == b"12345"
    assert io.recv(receiver, 65536, socket.MSG_TRUNC) == b""
    # Longer than asked: MSG_TRUNC gives its real size, as socket.recv does.
    truncated = io.recv(receiver, 100, socket.MSG_TRUNC)
    assert len(truncated) == 300
    assert truncated[:100] == b"z" * 100
    with pytest.raises(BlockingIOError):
        io.recv(receiver, 65536, socket.MSG_TRUNC)


def test_a_zero_size_read_reads_nothing(io: Any, udp: tuple[socket.socket, socket.socket]) -> None:
    """As socket.recv(0): no call at all, so a waiting datagram is not consumed."""
    sender, receiver = udp
    io.send(sender, b"kept")
    assert io.recv(receiver, 0) == b""
    assert io.recv(receiver, 0, socket.MSG_TRUNC) == b""
    assert io.recv(receiver, 100) == b"kept"


def test_truncated_reads_of_a_stream_never_show_another_socket(
    io: Any, udp: tuple[socket.socket, socket.socket], pair: tuple[socket.socket, socket.socket]
) -> None:
    """MSG_TRUNC on a stream socket discards the bytes: what comes back must not be an
    earlier datagram's (the C twin reads datagrams through a scratch buffer)."""
    sender, receiver = udp
    io.send(sender, b"SECRET-FROM-ANOTHER-PEER")
    assert io.recv(receiver, 65536, socket.MSG_TRUNC) == b"SECRET-FROM-ANOTHER-PEER"
    a, b = pair
    a.send(b"x" * 30)
    assert b"SECRET" not in io.recv(b, 100, socket.MSG_TRUNC)


def test_pending_on_a_closed_socket_raises_os_error(io: Any) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.close()
    with pytest.raises(OSError) as raised:
        io.pending(closed)
    assert raised.value.errno == errno.EBADF


def test_recvfrom_gives_each_sender_as_socket_does(
    io: Any, listener: tuple[socket.socket, list[socket.socket]]
) -> None:
    receiver, senders = listener
    names = [sender.getsockname() for sender in senders]
    # The same sender twice, then the other, then the first again.
    for index in (0, 0, 1, 0):
        senders[index].sendto(f"from {index}".encode(), receiver.getsockname())
        data, address = io.recvfrom(receiver, 65536, socket.MSG_TRUNC)
        assert (data, address) == (f"from {index}".encode(), names[index])
        assert type(address) is tuple and type(address[0]) is str
    with pytest.raises(BlockingIOError):
        io.recvfrom(receiver, 65536, socket.MSG_TRUNC)
    senders[1].sendto(b"z" * 300, receiver.getsockname())
    data, address = io.recvfrom(receiver, 100, socket.MSG_TRUNC)
    assert (len(data), data[:100], address) == (300, b"z" * 100, names[1])


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_recvfrom_ipv6_addresses_are_socket_s_own(io: Any) -> None:
    try:
        receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        receiver.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sender.bind(("::1", 0))
        sender.sendto(b"six", receiver.getsockname())
        data, address = io.recvfrom(receiver, 65536, socket.MSG_TRUNC)
        assert data == b"six"
        assert address == sender.getsockname()  # (host, port, flowinfo, scope_id)
    finally:
        receiver.close()
        sender.close()


def test_recvfrom_of_a_stream_socket_is_the_socket_s_own(
    io: Any, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Not the engine's case: the C twin asks the socket, so the answer is the same."""
    a, b = pair
    a.send(b"stream")
    c, d = socket.socketpair()
    try:
        c.send(b"stream")
        assert io.recvfrom(b, 100) == d.recvfrom(100)
    finally:
        c.close()
        d.close()
    with pytest.raises(BlockingIOError):
        io.recvfrom(b, 100)


def test_a_refused_datagram_is_reported(io: Any) -> None:
    """An ICMP "port unreachable" about an earlier datagram: ConnectionRefusedError."""
    sender = udp_to_a_closed_port()
    try:
        io.send(sender, b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            io.recv(sender, 100, socket.MSG_TRUNC)
    finally:
        sender.close()


class _Counting(socket.socket):
    calls = 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        _Counting.calls += 1
        return super().recv(size, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        _Counting.calls += 1
        return super().send(data, flags)


@pytest.fixture
def counting_pair() -> Iterator[tuple[_Counting, _Counting]]:
    """A connected pair of non-blocking sockets of a socket.socket subclass that counts
    its recv and send calls (the count set to 0)."""
    raw_a, raw_b = socket.socketpair()
    a = _Counting(fileno=raw_a.detach())
    b = _Counting(fileno=raw_b.detach())
    a.setblocking(False)
    b.setblocking(False)
    _Counting.calls = 0
    yield a, b
    a.close()
    b.close()


def test_other_socket_classes_get_their_own_methods(
    io: Any, counting_pair: tuple[_Counting, _Counting]
) -> None:
    """An ssl.SSLSocket, a subclass: its methods decide, never the raw descriptor."""
    a, b = counting_pair
    assert io.send(a, b"via the method") == 14
    assert io.recv(b, 100) == b"via the method"
    assert _Counting.calls == 2
    assert io.pending(b) == 0


def test_bad_arguments(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    with pytest.raises(ValueError):
        io.recv(b, -1)
    with pytest.raises(TypeError):
        io.recv(b, "ten")
    with pytest.raises(TypeError):
        io.send(a, "text")
    with pytest.raises(TypeError):
        io.send(a)
    with pytest.raises((TypeError, AttributeError)):
        io.recv(object(), 10)


def test_send2_sends_head_and_data_as_one(
    io: Any, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    assert io.send2(a, b"\x05", b"hello") == 6
    assert io.send2(a, b"\x06", bytearray(b" world")) == 7
    assert io.send2(a, b"", memoryview(b"!!")[1:]) == 1
    assert io.recv(b, 100) == b"\x05hello\x06 world!"


def test_send2_on_a_full_socket(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    """What send2 reports sent is what arrives, head first, also when the socket takes
    only part of it; a full socket raises BlockingIOError."""
    a, b = pair
    head, chunk = b"\x80\x20", bytes(range(256)) * 16
    sent = 0
    with pytest.raises(BlockingIOError):  # bounded: the socket buffers are finite
        for _ in range(100_000):
            sent += io.send2(a, head, chunk)
    received = bytearray()
    while io.pending(b):
        received += io.recv(b, 1 << 20)
    whole, part = divmod(sent, len(head) + len(chunk))
    assert bytes(received) == (head + chunk) * whole + (head + chunk)[:part]


def test_send2_above_gil_limit(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    head, data = b"\x01\x02\x03", bytes(range(256)) * 512  # 128 KiB
    sent = io.send2(a, head, data)
    assert 0 < sent <= len(head) + len(data)
    received = b""
    while len(received) < sent:
        received += io.recv(b, 4 * sockio.GIL_LIMIT)
    assert received == (head + data)[:sent]


def test_send2_of_other_socket_classes_calls_their_send(
    io: Any, counting_pair: tuple[_Counting, _Counting]
) -> None:
    a, b = counting_pair
    assert io.send2(a, b"\x03", b"abc") == 4
    assert _Counting.calls == 1
    assert b.recv(100) == b"\x03abc"


def test_send2_bad_arguments(io: Any, pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(TypeError):
        io.send2(a, b"\x01", "text")
    with pytest.raises(TypeError):
        io.send2(a, b"\x01")
    closed = socket.socket()
    closed.close()
    with pytest.raises(OSError):
        io.send2(closed, b"\x01", b"x")


def test_send_back_answers_the_last_sender_by_its_own_tuple(
    io: Any, listener: tuple[socket.socket, list[socket.socket]]
) -> None:
    """The C twin sends to the sender of the datagram just read when given that very
    tuple (IPv4 and IPv6); an equal tuple that is another object, an older sender's, a
    socket of another family or another class: None, nothing sent. The Python twin keeps
    no sender: always None."""
    receiver, senders = listener
    other_family = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        senders[0].sendto(b"ping", receiver.getsockname())
        _data, first = io.recvfrom(receiver, 65536, socket.MSG_TRUNC)
        if not io.COMPILED:
            assert io.send_back(receiver, b"pong", first) is None
            with pytest.raises(BlockingIOError):
                senders[0].recv(100)
            return
        assert io.send_back(receiver, b"pong", first) == 4
        assert senders[0].recv(100) == b"pong"
        assert io.send_back(receiver, bytearray(b"again"), first) == 5
        assert senders[0].recv(100) == b"again"
        assert io.send_back(receiver, b"no", tuple(list(first))) is None  # equal, not it
        assert io.send_back(other_family, b"no", first) is None
        senders[1].sendto(b"ping", receiver.getsockname())
        _data, second = io.recvfrom(receiver, 65536, socket.MSG_TRUNC)
        assert second != first
        assert io.send_back(receiver, b"no", first) is None  # no longer the last sender
        assert io.send_back(receiver, b"to 1", second) == 4
        assert senders[1].recv(100) == b"to 1"
        with pytest.raises(BlockingIOError):
            senders[0].recv(100)  # nothing else came
    finally:
        other_family.close()


def test_send_back_errors_are_the_socket_s(io: Any) -> None:
    """A closed socket: OSError (EBADF); bad arguments: TypeError; a datagram above the
    C twin's limit: None, for the socket's own sendto."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"ping", receiver.getsockname())
        _data, addr = io.recvfrom(receiver, 65536, socket.MSG_TRUNC)
        with pytest.raises(TypeError):
            io.send_back(receiver, b"x")
        if io.COMPILED:
            with pytest.raises(TypeError):
                io.send_back(receiver, "text", addr)
            assert io.send_back(receiver, b"x" * (io.GIL_LIMIT + 1), addr) is None
            receiver.close()
            with pytest.raises(OSError) as caught:
                io.send_back(receiver, b"x", addr)
            assert caught.value.errno == errno.EBADF
    finally:
        receiver.close()
        sender.close()


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_accept_gives_a_non_blocking_descriptor_and_the_peer_s_address(
    io: Any, family: socket.AddressFamily, host: str
) -> None:
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        try:
            listening.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        listening.listen(4)
        listening.setblocking(False)
        with pytest.raises(BlockingIOError):
            io.accept(listening)  # nobody connects yet
        with socket.create_connection(listening.getsockname()[:2]) as client:
            fd, addr = io.accept(listening)
            accepted = socket.socket(
                family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0, fileno=fd
            )
            with accepted:
                assert not os.get_blocking(fd)
                assert not os.get_inheritable(fd)
                assert accepted.gettimeout() == 0.0
                assert accepted.type == socket.SOCK_STREAM
                assert addr == client.getsockname()  # the 4-tuple on IPv6 as well
                with pytest.raises(BlockingIOError):
                    accepted.recv(1)
                client.sendall(b"hi")
                select.select([accepted], [], [], 10)
                assert accepted.recv(2) == b"hi"
    finally:
        listening.close()


def test_accept_of_a_closed_socket_raises_bad_descriptor(io: Any) -> None:
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.close()
    with pytest.raises(OSError) as caught:
        io.accept(listening)
    assert caught.value.errno == errno.EBADF


# -- recv_some, recvfrom_some: datagrams in batches ----------------------------------------


def _batches(io: Any) -> bool:
    """Whether ``io`` reads datagrams in batches: the C twin on Linux. The Python twin
    (no recvmmsg) answers None to every call, having read nothing."""
    return bool(io.COMPILED) and sys.platform.startswith("linux")


def test_recv_some_reads_what_waits_in_one_call(
    io: Any, udp: tuple[socket.socket, socket.socket]
) -> None:
    """Each datagram as recv(size, MSG_TRUNC) reads it, in order; fewer than asked once
    none is left; BlockingIOError when none waits; never more than asked or BATCH."""
    sender, receiver = udp
    sent = [b"first", b"", b"z" * 300, *(f"d{i}".encode() for i in range(40))]
    for data in sent:
        sender.send(data)
    out: list[Any] = ["kept"]
    if not _batches(io):
        assert io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 5) is None
        assert out == ["kept"]
        assert io.recv(receiver, 100) == b"first"  # nothing was read
        return
    assert io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 0) == 0
    assert io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 2) == 2
    assert out == ["kept", b"first", b""]
    # Longer than size: its real size, the rest zeros, as recv() with MSG_TRUNC.
    assert io.recv_some(receiver, 100, socket.MSG_TRUNC, out, 1) == 1
    assert out[-1] == b"z" * 100 + bytes(200)
    del out[:]
    assert io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 1000) == io.BATCH == 16
    assert io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 16) == 16
    assert io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 16) == 8  # all that was left
    assert out == sent[3:]
    with pytest.raises(BlockingIOError):
        io.recv_some(receiver, 65536, socket.MSG_TRUNC, out, 16)
    assert len(out) == 40


def test_recv_some_reports_a_refused_datagram(io: Any) -> None:
    """An ICMP "port unreachable" about an earlier datagram: ConnectionRefusedError, as
    recv() raises it; the socket reads on afterwards."""
    sender = udp_to_a_closed_port()
    out: list[Any] = []
    try:
        io.send(sender, b"anyone?")
        if not _batches(io):
            assert io.recv_some(sender, 100, socket.MSG_TRUNC, out, 16) is None
            return
        with pytest.raises(ConnectionRefusedError):
            io.recv_some(sender, 100, socket.MSG_TRUNC, out, 16)
        with pytest.raises(BlockingIOError):
            io.recv_some(sender, 100, socket.MSG_TRUNC, out, 16)
        assert out == []
    finally:
        sender.close()


def test_recvfrom_some_gives_each_sender_as_recvfrom_does(
    io: Any, listener: tuple[socket.socket, list[socket.socket]]
) -> None:
    """(address, data) pairs, the address as socket.recvfrom gives it (the same tuple
    again while the sender stays the same); send_back answers the last of them."""
    receiver, senders = listener
    names = [sender.getsockname() for sender in senders]
    order = (0, 0, 1, 0, 1, 1)
    for number, index in enumerate(order):
        senders[index].sendto(f"{number} from {index}".encode(), receiver.getsockname())
    out: list[Any] = []
    got = io.recvfrom_some(receiver, 65536, socket.MSG_TRUNC, out, 16)
    if not _batches(io):
        assert got is None
        assert out == []
        return
    assert got == len(order)
    assert out == [
        (names[index], f"{number} from {index}".encode()) for number, index in enumerate(order)
    ]
    assert all(type(address) is tuple and type(address[0]) is str for address, _ in out)
    assert out[0][0] is out[1][0]  # one tuple while the sender stays the same
    assert io.send_back(receiver, b"to 1", out[-1][0]) == 4
    assert senders[1].recv(100) == b"to 1"
    assert io.send_back(receiver, b"no", out[0][0]) is None  # not the last sender
    with pytest.raises(BlockingIOError):
        io.recvfrom_some(receiver, 65536, socket.MSG_TRUNC, out, 16)


def test_recv_some_leaves_other_sockets_to_the_caller(
    io: Any,
    udp: tuple[socket.socket, socket.socket],
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """None, having read nothing: a stream socket, another socket class, a size over
    GIL_LIMIT. Bad arguments: TypeError."""
    sender, receiver = udp
    sender.send(b"waits")
    out: list[Any] = []
    assert io.recv_some(pair[1], 100, 0, out, 4) is None
    assert io.recv_some(receiver, io.GIL_LIMIT + 1, socket.MSG_TRUNC, out, 4) is None
    counting = _Counting(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert io.recv_some(counting, 100, 0, out, 4) is None
        assert io.recvfrom_some(counting, 100, 0, out, 4) is None
    finally:
        counting.close()
    assert out == []
    assert io.recv(receiver, 100) == b"waits"
    if _batches(io):
        with pytest.raises(TypeError):
            io.recv_some(receiver, 100, 0, (), 4)
        with pytest.raises(TypeError):
            io.recv_some(receiver, 100, 0, out)


def test_recv_some_leaves_peeks_and_empty_reads_to_recv(
    io: Any, udp: tuple[socket.socket, socket.socket]
) -> None:
    """MSG_PEEK (each header would read the same datagram) and size 0 (recv reads
    nothing at all): None, having read nothing."""
    sender, receiver = udp
    for data in (b"one", b"two"):
        sender.send(data)
    out: list[Any] = []
    assert io.recv_some(receiver, 100, socket.MSG_PEEK, out, 16) is None
    assert io.recv_some(receiver, 0, socket.MSG_TRUNC, out, 16) is None
    assert out == []
    assert io.recv(receiver, 100) == b"one"


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_batches_of_both_families_and_sizes_share_their_slots(io: Any) -> None:
    """IPv4 and IPv6 senders, batches with and without senders and of other sizes, one
    after the other: each sender as socket.recvfrom gives it (a sender's length that a
    batch left short would cut the next IPv6 address)."""
    sockets: list[socket.socket] = []

    def bound(family: int, host: str) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sockets.append(sock)
        sock.bind((host, 0))
        sock.setblocking(False)
        return sock

    try:
        try:
            rx6, tx6 = bound(socket.AF_INET6, "::1"), bound(socket.AF_INET6, "::1")
        except OSError:
            pytest.skip("no IPv6 loopback here")
        rx4, tx4 = bound(socket.AF_INET, "127.0.0.1"), bound(socket.AF_INET, "127.0.0.1")
        for round_ in range(3):
            for i in range(5):
                tx4.sendto(b"4-%d" % i, rx4.getsockname())
                tx6.sendto(b"6-%d" % i, rx6.getsockname())
            tx4.sendto(b"plain", rx4.getsockname())
            out4: list[Any] = []
            out6: list[Any] = []
            plain: list[Any] = []
            # IPv6 senders right after IPv4 ones, in the same slots; then another kind.
            got4 = io.recvfrom_some(rx4, 65536, socket.MSG_TRUNC, out4, 5)
            got6 = io.recvfrom_some(rx6, 65536, socket.MSG_TRUNC, out6, 16)
            got = io.recv_some(rx4, 100 + round_, socket.MSG_TRUNC, plain, 16)
            if not _batches(io):
                assert (got4, got, got6) == (None, None, None)
                return
            assert (got4, got, got6) == (5, 1, 5)
            assert out4 == [(tx4.getsockname(), b"4-%d" % i) for i in range(5)]
            assert plain == [b"plain"]
            assert out6 == [(tx6.getsockname(), b"6-%d" % i) for i in range(5)]
            assert io.send_back(rx6, b"back", out6[-1][0]) == 4
            assert tx6.recv(10) == b"back"
    finally:
        for sock in sockets:
            sock.close()


_REFUSING_RECVMMSG = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{ (void)fd; (void)v; (void)n; (void)flags; (void)t; errno = ENOSYS; return -1; }
"""

_WITHOUT_RECVMMSG = """
import socket
from message_io.network import sockio
from message_io.network.datagrams import DatagramReader
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.connect(rx.getsockname())
rx.connect(tx.getsockname())
for data in (b"a", b"b", b"c"):
    tx.send(data)
assert sockio.recv_some(rx, 100, 0, [], 16) is None  # refused: read one at a time
class Peer:
    errors = []
    def _recv_failed(self, exc):
        self.errors.append(exc)
frames = []
DatagramReader(Peer(), rx).read(frames)
assert frames == [b"a", b"b", b"c"], frames
assert Peer.errors == [], Peer.errors
print("ok")
"""


@pytest.mark.skipif(
    not (sockio.COMPILED and sys.platform.startswith("linux")), reason="the C twin on Linux"
)
def test_where_recvmmsg_is_refused_datagrams_are_read_one_at_a_time(tmp_path: Any) -> None:
    """A system that refuses recvmmsg (ENOSYS, as a seccomp filter or an emulator may):
    recv_some answers None from then on, and the readers read as without batches."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None, "the compiled engine was built: a C compiler is here"
    source = tmp_path / "refuse.c"
    source.write_text(_REFUSING_RECVMMSG)
    library = tmp_path / "refuse.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    env = {**os.environ, "LD_PRELOAD": str(library)}
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_RECVMMSG],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
