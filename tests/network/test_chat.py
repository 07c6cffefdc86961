"""A chat server whose transport changes in one line: FramedTcp, UDP or WebSocket.

The server is written once, as a user would, with the tutorial's recipes: per-client
state in a ``dict[Endpoint, str]`` filled on join, and ``remove(endpoint.resource_id)``
to kick a client. Each test runs it unchanged over every message transport: kicking a
client must never stop the server for the others (on UDP every client shares the
listener's resource id).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any, Final

import pytest

import message_io
from message_io import (
    Connected,
    Disconnected,
    Endpoint,
    Message,
    NodeEvent,
    NodeHandler,
    NodeListener,
    SendStatus,
    Transport,
)

TIMEOUT: Final = 10.0
TRANSPORTS: Final = (Transport.FRAMED_TCP, Transport.UDP, Transport.WS)


class ChatServer:
    """Relays ``say:`` lines to every other member; ``kick:NAME`` removes a member."""

    def __init__(self, transport: Transport) -> None:
        handler: NodeHandler[Any]
        listener: NodeListener[Any]
        handler, listener = message_io.split()
        self.handler = handler
        self.listener_id, self.addr = handler.network.listen(transport, "127.0.0.1:0")
        self.members: dict[Endpoint, str] = {}
        self.task = listener.for_each_async(self.on_event, name="chat-server")

    def broadcast(self, text: str, *, skip: Endpoint | None = None) -> None:
        for endpoint in self.members:
            if endpoint != skip:
                assert self.handler.network.send(endpoint, text.encode()) is SendStatus.SENT

    def on_event(self, event: NodeEvent[Any]) -> None:
        match event:
            case Message(endpoint, data):
                command, _, arg = bytes(data).decode().partition(":")
                if command == "join":
                    self.members[endpoint] = arg
                    self.broadcast(f"{arg} joined", skip=endpoint)
                elif endpoint not in self.members:
                    return  # a kicked client still talking (UDP has no connection to end)
                elif command == "say":
                    self.broadcast(f"{self.members[endpoint]}: {arg}", skip=endpoint)
                elif command == "kick":
                    for member, name in list(self.members.items()):
                        if name == arg:
                            assert self.handler.network.remove(member.resource_id)
                            del self.members[member]
                            self.broadcast(f"{name} was kicked")
            case Disconnected(endpoint):
                if endpoint in self.members:
                    self.broadcast(f"{self.members.pop(endpoint)} left")

    def stop(self) -> None:
        self.handler.stop()
        self.task.wait(TIMEOUT)


class ChatClient:
    """A member: its events land in a queue the test reads."""

    def __init__(self, transport: Transport, addr: Any, name: str) -> None:
        handler: NodeHandler[Any]
        listener: NodeListener[Any]
        handler, listener = message_io.split()
        self.handler = handler
        self.name = name
        self.events: queue.Queue[NodeEvent[Any]] = queue.Queue()
        target = f"ws://127.0.0.1:{addr[1]}/" if transport is Transport.WS else addr
        self.server, _ = handler.network.connect(transport, target)
        self.task = listener.for_each_async(self.events.put, name=f"chat-{name}")
        event = self.events.get(timeout=TIMEOUT)
        assert isinstance(event, Connected) and event.established, event

    def say(self, line: str) -> SendStatus:
        return self.handler.network.send(self.server, line.encode())

    def next_line(self) -> str:
        event = self.events.get(timeout=TIMEOUT)
        assert isinstance(event, Message), event
        return bytes(event.data).decode()

    def next_event(self) -> NodeEvent[Any]:
        return self.events.get(timeout=TIMEOUT)

    def stop(self) -> None:
        self.handler.stop()
        self.task.wait(TIMEOUT)


@pytest.fixture(params=TRANSPORTS, ids=lambda t: t.name)
def server(request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    chat = ChatServer(request.param)
    yield chat
    chat.stop()


@pytest.fixture
def transport(server: ChatServer) -> Transport:
    return Transport.from_id(server.listener_id.adapter_id)


def test_kick_leaves_the_server_working_for_everyone_else(
    server: ChatServer, transport: Transport
) -> None:
    clients: list[ChatClient] = []
    try:
        for name in ("alice", "bob", "carol"):
            client = ChatClient(transport, server.addr, name)
            assert client.say(f"join:{name}") is SendStatus.SENT
            for other in clients:
                assert other.next_line() == f"{name} joined"
            clients.append(client)
        alice, bob, carol = clients

        assert alice.say("say:hi") is SendStatus.SENT
        assert bob.next_line() == "alice: hi"
        assert carol.next_line() == "alice: hi"

        assert bob.say("kick:carol") is SendStatus.SENT
        assert alice.next_line() == "carol was kicked"
        assert bob.next_line() == "carol was kicked"
        if transport.is_connection_oriented:
            event = carol.next_event()
            assert isinstance(event, Disconnected), event
        else:
            # UDP: nothing ends. What carol still says is not relayed: her line reaches
            # the server before alice's, and bob gets only alice's.
            assert carol.say("say:still here") is SendStatus.SENT

        assert alice.say("say:bye") is SendStatus.SENT
        assert bob.next_line() == "alice: bye"
        assert server.handler.network.is_ready(server.listener_id) is True

        dave = ChatClient(transport, server.addr, "dave")
        clients.append(dave)
        assert dave.say("join:dave") is SendStatus.SENT
        assert alice.next_line() == "dave joined"
        assert bob.next_line() == "dave joined"
        assert dave.say("say:hello") is SendStatus.SENT
        assert alice.next_line() == "dave: hello"
        assert bob.next_line() == "dave: hello"
        assert carol.events.empty()
    finally:
        for client in clients:
            client.stop()
