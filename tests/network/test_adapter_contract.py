"""The adapter contract: overriding an optional hook with its documented default changes
nothing, on every hook of Remote, Local and Adapter.

Capabilities are declared (``Remote.framing``, ``reports_incomplete``...), never inferred
from which methods a class overrides. Each case below takes the minimal transport (the
template with only its required methods filled in), overrides one hook with a body that
does exactly what its docstring says the default does, and runs the same scenario as
the untouched transport: every outcome must be the same.
"""

from __future__ import annotations

import inspect
import itertools
import os
import queue
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

import pytest

import message_io
from message_io import (
    Accepted,
    Disconnected,
    Endpoint,
    Message,
    NodeEvent,
    SendStatus,
    Transport,
    register_transport,
)
from message_io.network.adapter import (
    Buffer,
    Framing,
    HostName,
    PendingStatus,
    Readiness,
    Remote,
)
from message_io.network.endpoint import Address
from message_io.testing import TransportSuite

from .minimal_adapter import MinimalAdapter, MinimalLocal, MinimalRemote

TIMEOUT: Final = 10.0
_names = itertools.count()


# What each hook's docstring says its default does, written out (not inherited).
def _pending(self: Remote, readiness: Readiness) -> PendingStatus:
    return PendingStatus.READY


def _pending_interest(self: Remote) -> Readiness:
    return Readiness.READ | Readiness.WRITE


def _frame(self: Remote, data: Buffer) -> Buffer:
    return data


def _header(self: Remote, size: int) -> bytes | None:
    return b""


def _write_many(self: Remote, buffers: list[Buffer]) -> int:
    return self.write(buffers[0])


def _ready_to_write(self: Remote) -> bool:
    return True


def _frame_text(self: Remote, data: bytes) -> Buffer:
    raise TypeError(f"{type(self).__name__} sends bytes; encode the str first")


def _take_output(self: Remote) -> Buffer | None:
    return None


def _buffered(self: Remote) -> bool:
    return False


def _incomplete(self: Remote) -> int:
    return 0


def _heartbeat(self: Remote) -> None:
    return


def _farewell(self: Remote, going_away: bool) -> bytes | None:
    return None


def _send_to(self: Any, addr: Address, data: Buffer) -> SendStatus:
    raise TypeError(f"{type(self).__name__} cannot send from a listener")


def _lookup(self: Any, addr: Any, config: Any) -> HostName | None:
    return None


def _connect_to(self: Any, addr: Any, config: Any, family: Any, sockaddr: Any) -> Any:
    raise NotImplementedError(f"{type(self).__name__} has no connect_to()")


REMOTE_HOOKS: Final[dict[str, Callable[..., Any]]] = {
    "pending": _pending,
    "pending_interest": _pending_interest,
    "frame": _frame,
    "header": _header,
    "write_many": _write_many,
    "ready_to_write": _ready_to_write,
    "frame_text": _frame_text,
    "take_output": _take_output,
    "buffered": _buffered,
    "incomplete": _incomplete,
    "heartbeat": _heartbeat,
    "farewell": _farewell,
}
LOCAL_HOOKS: Final[dict[str, Callable[..., Any]]] = {"send_to": _send_to}
ADAPTER_HOOKS: Final[dict[str, Callable[..., Any]]] = {
    "lookup": _lookup,
    "connect_to": _connect_to,
}


def test_every_optional_hook_is_covered() -> None:
    """A new optional hook on the contract must get a case here."""
    for cls, hooks, required in (
        (Remote, REMOTE_HOOKS, {"fileno", "receive", "write", "close"}),
        (message_io.network.adapter.Local, LOCAL_HOOKS, {"fileno", "accept", "close"}),
        (message_io.network.adapter.Adapter, ADAPTER_HOOKS, {"connect", "listen"}),
    ):
        methods = {
            name
            for name, value in vars(cls).items()
            if inspect.isfunction(value) and not name.startswith("_")
        }
        assert set(cls.__abstractmethods__) == required, cls
        assert methods - required == set(hooks), cls


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mio-contract-") as path:
        yield Path(path)


def _transport(
    remote: type[MinimalRemote] = MinimalRemote,
    local: type[MinimalLocal] = MinimalLocal,
    adapter: type[MinimalAdapter] = MinimalAdapter,
) -> Transport:
    made = type("Adapter", (adapter,), {"remote_class": remote, "local_class": local})
    return register_transport(f"CONTRACT_{next(_names)}", made())


def _scenario(transport: Transport, path: Path) -> tuple[object, ...]:
    """Connect, send both ways (an empty message, a large one, a str), remove; return
    every outcome a user could see."""
    handler, listener = message_io.split()
    events: queue.Queue[NodeEvent[Any]] = queue.Queue()
    task = listener.for_each_async(events.put)
    try:
        network = handler.network
        _listener_id, addr = network.listen(transport, path)
        client, _local = network.connect_sync(transport, addr, timeout=TIMEOUT)
        accepted = _next(events, Accepted)
        payload = b"hello" + b"" + bytes(range(256)) * 400
        statuses = [network.send(client, data) for data in (b"hello", b"", payload[5:])]
        try:
            text: object = network.send(client, "text")
        except TypeError as exc:
            text = type(exc)
        received = _bytes_from(events, accepted.endpoint, len(payload))
        back = network.send(accepted.endpoint, b"back")
        echoed = _bytes_from(events, client, 4)
        removed = network.remove(client)
        gone = _next(events, Disconnected).endpoint == accepted.endpoint
        return (statuses, text, received == payload, back, echoed, removed, gone)
    finally:
        handler.stop()
        assert task.wait(TIMEOUT)


def _next(events: queue.Queue[NodeEvent[Any]], kind: type[Any]) -> Any:
    while True:
        event = events.get(timeout=TIMEOUT)
        if isinstance(event, kind):
            return event


def _bytes_from(events: queue.Queue[NodeEvent[Any]], endpoint: Endpoint, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        event = _next(events, Message)
        assert event.endpoint == endpoint
        data += event.data
    return bytes(data)


@pytest.fixture(scope="module")
def baseline() -> tuple[object, ...]:
    with tempfile.TemporaryDirectory(prefix="mio-contract-") as path:
        outcome = _scenario(_transport(), Path(path) / "base.sock")
    statuses, text, intact, back, echoed, removed, gone = outcome
    # The untouched minimal transport works: this is what every variant must match.
    assert statuses == [SendStatus.SENT] * 3
    assert text is TypeError
    assert intact and echoed == b"back" and removed and gone
    assert back is SendStatus.SENT
    return outcome


# The capability a hook takes effect with: the override is declared with it, so that the
# node really calls it (an undeclared override is never called, and warned about).
ENABLED_BY: Final[dict[str, dict[str, object]]] = {
    "header": {"framing": Framing.HEADER},
    "incomplete": {"reports_incomplete": True},
    "take_output": {"has_output": True},
    "frame_text": {"text_messages": True},
}


@pytest.mark.parametrize("hook", sorted(REMOTE_HOOKS))
def test_a_remote_hook_overridden_with_its_default_changes_nothing(
    hook: str, baseline: tuple[object, ...], socket_dir: Path
) -> None:
    members = {hook: REMOTE_HOOKS[hook], **ENABLED_BY.get(hook, {})}
    remote = type(f"Remote_{hook}", (MinimalRemote,), members)
    assert _scenario(_transport(remote=remote), socket_dir / "s.sock") == baseline


@pytest.mark.parametrize("hook", sorted(LOCAL_HOOKS))
def test_a_local_hook_overridden_with_its_default_changes_nothing(
    hook: str, baseline: tuple[object, ...], socket_dir: Path
) -> None:
    local = type(f"Local_{hook}", (MinimalLocal,), {hook: LOCAL_HOOKS[hook]})
    assert _scenario(_transport(local=local), socket_dir / "s.sock") == baseline


@pytest.mark.parametrize("hook", sorted(ADAPTER_HOOKS))
def test_an_adapter_hook_overridden_with_its_default_changes_nothing(
    hook: str, baseline: tuple[object, ...], socket_dir: Path
) -> None:
    adapter = type(f"Adapter_{hook}", (MinimalAdapter,), {hook: ADAPTER_HOOKS[hook]})
    assert _scenario(_transport(adapter=adapter), socket_dir / "s.sock") == baseline


def test_declared_capabilities_decide_what_is_called(socket_dir: Path) -> None:
    """``header`` and ``incomplete`` are called only when declared (HEADER framing,
    reports_incomplete), whatever the class overrides; an undeclared override is warned
    about, once per class."""
    calls: list[str] = []

    class Undeclared(MinimalRemote):
        def header(self, size: int) -> bytes | None:
            calls.append("header")
            return None  # would refuse every message if it were called

        def incomplete(self) -> int:
            calls.append("incomplete")
            return 0

    with pytest.warns(UserWarning) as warned:
        outcome = _scenario(_transport(remote=Undeclared), socket_dir / "u.sock")
    assert sorted(str(w.message).split(" but ")[0].split(".")[-1] for w in warned) == [
        "Undeclared overrides header()",
        "Undeclared overrides incomplete()",
    ]
    assert "framing = Framing.HEADER" in str(warned[0].message) + str(warned[1].message)
    assert outcome[0] == [SendStatus.SENT] * 3
    assert calls == []

    class Declared(Undeclared):
        framing = Framing.HEADER
        reports_incomplete = True

        def header(self, size: int) -> bytes | None:
            calls.append("header")
            return b""

    outcome = _scenario(_transport(remote=Declared), socket_dir / "d.sock")
    assert outcome[0] == [SendStatus.SENT] * 3
    assert "header" in calls and "incomplete" in calls
    assert os.path.exists(socket_dir) and not os.path.exists(socket_dir / "d.sock")


MINIMAL: Final = register_transport("MINIMAL_TEMPLATE", MinimalAdapter())
_paths = itertools.count()


class TestMinimalTemplate(TransportSuite):
    """The template with only its required methods filled in passes the conformance
    suite: a byte stream over Unix sockets, with a raw peer."""

    transport: ClassVar[Transport] = MINIMAL
    refuses_at_once: ClassVar[bool] = True  # its connect() raises: it has no pending()

    def listen_address(self) -> object:
        return str(self.workdir / f"{next(_paths)}.sock")

    def refused_address(self) -> object:
        return str(self.workdir / "nobody.sock")

    def raw_connect(self, addr: Any, *, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(addr)
        return sock


@pytest.mark.parametrize(
    ("refusal", "empty_status"),
    [(None, SendStatus.RESOURCE_NOT_AVAILABLE), (b"", SendStatus.SENT)],
    ids=["none", "empty"],
)
def test_frame_refuses_with_none_and_an_empty_result_sends_nothing(
    socket_dir: Path, refusal: bytes | None, empty_status: SendStatus
) -> None:
    """``frame()`` returning None refuses any message (a transport that is closing);
    an empty result refuses a non-empty message and sends an empty one as nothing."""

    class Refusing(MinimalRemote):
        def frame(self, data: Buffer) -> Buffer | None:
            return refusal

    handler, listener = message_io.split()
    task = listener.for_each_async(lambda _event: None)
    try:
        transport = _transport(remote=Refusing)
        _listener_id, addr = handler.network.listen(transport, socket_dir / "r.sock")
        client, _local = handler.network.connect_sync(transport, addr, timeout=TIMEOUT)
        assert handler.network.send(client, b"x") is SendStatus.RESOURCE_NOT_AVAILABLE
        assert handler.network.send(client, b"") is empty_status
    finally:
        handler.stop()
        assert task.wait(TIMEOUT)
