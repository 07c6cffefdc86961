"""A message-io WebSocket client for Autobahn|Testsuite's ``fuzzingserver``.

The same loop as websockets' ``compliance/asyncio/client.py``, on one message-io node:

1. ``GET /getCaseCount``: the server sends the number of cases as a text message.
2. For each case N: ``/runCase?case=N&agent=AGENT``; echo every message (text as text,
   binary as binary) until the server closes the connection.
3. ``/updateReports?agent=AGENT``: the server writes ``index.json`` and closes.

::

    python tools/autobahn/client.py ws://127.0.0.1:9001 --agent message-io

Connecting to ``/getCaseCount`` is retried for ``--wait`` seconds, so the client may be
started together with ``wstest``. Exits 0 once the reports are updated, 1 on a problem
(no case count, a case that could not connect, ``--timeout`` reached).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import message_io
from message_io import (
    Connected,
    Disconnected,
    Drained,
    Endpoint,
    Message,
    SendStatus,
    Signal,
    TextMessage,
    Transport,
    WsConnectConfig,
)

log = logging.getLogger("autobahn.client")

MAX_MESSAGE_SIZE = 2**25
# Cases 9.3.* and 9.4.* send one message in up to 65,536 fragments (64 KiB in 1-byte
# pieces): more than the default cap of 4096 fragments per message, so raised here.
MAX_FRAGMENTS = 65537
"""Autobahn 9.1.6 sends 16 MiB; websockets' compliance client allows 32 MiB too."""

SEND_BUFFER_LIMIT = 64 * 1024 * 1024

_RETRY_DELAY = 0.1
_COUNT, _CASE, _REPORT, _DONE = "count", "case", "report", "done"


@dataclass
class _State:
    phase: str = _COUNT
    case_count: int | None = None
    case: int = 0
    endpoint: Endpoint | None = None
    path: str = ""
    backlog: deque[bytes | str] = field(default_factory=deque)
    errors: list[str] = field(default_factory=list)


def run(base: str, agent: str, *, wait: float, timeout: float, cases: list[int] | None) -> int:
    """Run every case (or only ``cases``) against the fuzzing server at ``base``."""
    handler, listener = message_io.split()
    config = WsConnectConfig(
        max_message_size=MAX_MESSAGE_SIZE,
        max_fragments=MAX_FRAGMENTS,
        send_buffer_limit=SEND_BUFFER_LIMIT,
        connect_timeout=5.0,
    )
    state = _State()
    wait_until = time.monotonic() + wait
    agent_q = quote(agent, safe="")
    todo: deque[int] = deque()

    def connect(path: str) -> None:
        state.path = path
        state.backlog.clear()
        state.endpoint, _local = handler.network.connect(
            Transport.WS, f"{base}{path}", config=config
        )

    def next_case() -> None:
        if todo:
            state.phase = _CASE
            state.case = todo.popleft()
            connect(f"/runCase?case={state.case}&agent={agent_q}")
        else:
            state.phase = _REPORT
            connect(f"/updateReports?agent={agent_q}")

    def echo(endpoint: Endpoint, data: bytes | str) -> None:
        if state.backlog:
            state.backlog.append(data)
            return
        status = handler.network.send(endpoint, data)
        if status is SendStatus.QUEUE_FULL:
            state.backlog.append(data)
        elif status is not SendStatus.SENT:
            log.warning("case %d: echo refused: %s", state.case, status.value)

    def flush(endpoint: Endpoint) -> None:
        while state.backlog:
            if handler.network.send(endpoint, state.backlog[0]) is SendStatus.QUEUE_FULL:
                return
            state.backlog.popleft()

    def on_event(event: Any) -> None:
        match event:
            case Signal("retry"):
                connect("/getCaseCount")
            case Signal("timeout"):
                state.errors.append(f"gave up after {timeout} s, at {state.path}")
                handler.stop()
            case Connected(endpoint, False) if endpoint == state.endpoint:
                if state.phase == _COUNT and time.monotonic() < wait_until:
                    handler.signals.send_with_timer("retry", _RETRY_DELAY)
                    return
                state.errors.append(f"{state.path}: Connected(established=False)")
                if state.phase == _CASE:
                    next_case()
                else:
                    handler.stop()
            case TextMessage(endpoint, _data, text) if state.phase == _COUNT:
                state.case_count = int(text)
            case TextMessage(endpoint, _data, text) if state.phase == _CASE:
                echo(endpoint, text)
            case Message(endpoint, data) if state.phase == _CASE:
                echo(endpoint, data)
            case Drained(endpoint) if endpoint == state.endpoint:
                flush(endpoint)
            case Disconnected(endpoint) if endpoint == state.endpoint:
                state.endpoint = None
                if state.phase == _COUNT:
                    if state.case_count is None:
                        state.errors.append("/getCaseCount: the server sent no case count")
                        handler.stop()
                        return
                    todo.extend(range(1, state.case_count + 1))
                    log.info("%d cases", len(todo))
                    next_case()
                elif state.phase == _CASE:
                    next_case()
                else:
                    state.phase = _DONE
                    handler.stop()

    handler.signals.send_with_timer("timeout", timeout)
    if cases:  # no need for the count
        state.case_count = len(cases)
        todo.extend(cases)
        next_case()
    else:
        connect("/getCaseCount")
    listener.for_each(on_event)
    for error in state.errors:
        log.error("%s", error)
    return 0 if state.phase == _DONE and not state.errors else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:9001", help="fuzzingserver URL")
    parser.add_argument("--agent", default="message-io", help="agent name in the reports")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the server")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (seconds)")
    parser.add_argument(
        "--case",
        type=int,
        action="append",
        help="run only case number N (1-based, repeatable; skips /getCaseCount)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="client %(levelname)s %(message)s")
    return run(
        args.url.rstrip("/"), args.agent, wait=args.wait, timeout=args.timeout, cases=args.case
    )


if __name__ == "__main__":
    sys.exit(main())
