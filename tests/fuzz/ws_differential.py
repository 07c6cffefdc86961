"""The differential check of :class:`~message_io.codec.ws_frames.FrameInput`: the same
bytes, cut into the same pieces, fed to a ``websockets`` protocol alone and to a twin
protocol through a ``FrameInput``, must give the same frames in the same order, the same
bytes to send back (pongs, close frames), the same close codes and the same end state,
before and after the end of the stream.

:func:`check` is that comparison for one input. The short campaign of the test suite
draws inputs with Hypothesis (``test_fuzz_ws_frames.py``) and replays the kept corpus;
the long one is this module run as a program, with a plain seeded random generator that
is far cheaper per input than Hypothesis (a million inputs in minutes)::

    python -m tests.fuzz.ws_differential --cases 1000000 --seed 1 --corpus FILE

It starts from the kept corpus (:data:`CORPUS`, in the repository) and ``FILE``, mutates
and cuts their inputs and fresh ones, keeps in ``FILE`` the smallest input of every kind
of behaviour (its :func:`signature`), and stops at the first difference, saving that
input beside ``FILE``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import OPEN, Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from message_io.codec.ws_frames import FrameInput

from .mutate import apply_mutations, cut
from .ws_wire import BINARY, CLOSE, CONT, PING, PONG, TEXT, accept_value, frame

CORPUS: Final = Path(__file__).with_name("corpus") / "ws_frames.jsonl"
"""The kept inputs, replayed by the test suite: a JSON line each (see :class:`Case`)."""

MAX_SIZES: Final = (None, 0, 1, 2, 7, 125, 126, 127, 128, 300, 65536)


@dataclass(frozen=True)
class Case:
    """One input: the bytes one peer sends after the handshake, and where they are cut."""

    masked: bool  # the bytes go to a server (so they should come masked)
    max_size: int | None
    data: bytes
    cuts: tuple[int, ...]
    close_after: int = -1
    """Our side sends a close frame after this many pieces (as ``remove`` does), and the
    peer's bytes keep coming; -1: never."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "masked": self.masked,
                "max_size": self.max_size,
                "data": self.data.hex(),
                "cuts": list(self.cuts),
                "close_after": self.close_after,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Case:
        raw = json.loads(text)
        return cls(
            raw["masked"],
            raw["max_size"],
            bytes.fromhex(raw["data"]),
            tuple(raw["cuts"]),
            raw.get("close_after", -1),
        )


def open_protocol(masked: bool, max_size: int | None) -> Protocol:
    """A protocol through its opening handshake: a server if ``masked``, else a client."""
    protocol: Protocol
    if masked:
        server = ServerProtocol(max_size=max_size)
        server.receive_data(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        [request] = server.events_received()
        server.send_response(server.accept(request))  # type: ignore[arg-type]
        protocol = server
    else:
        client = ClientProtocol(parse_uri("ws://x/"), max_size=max_size)
        request = client.connect()
        client.send_request(request)
        key = request.headers["Sec-WebSocket-Key"]
        client.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_value(key).encode()
            + b"\r\n\r\n"
        )
        client.events_received()
        protocol = client
    protocol.data_to_send()
    assert protocol.state is OPEN
    return protocol


def _frame(item: object) -> tuple[int, bytes, bool]:
    if isinstance(item, bytes):
        return (BINARY, item, True)
    assert isinstance(item, Frame), f"not a frame: {item!r}"
    return (item.opcode.value, bytes(item.data), item.fin)


def _end(protocol: Protocol, masked: bool, kept: int = 0) -> tuple[Any, ...]:
    sent = protocol.data_to_send()
    # A client masks what it sends with random keys: only the sizes can agree.
    out = [len(chunk) for chunk in sent] if not masked else [bytes(chunk) for chunk in sent]
    close_sent = protocol.close_sent
    close_rcvd = protocol.close_rcvd
    return (
        protocol.state.name,
        None if close_sent is None else (close_sent.code, close_sent.reason),
        None if close_rcvd is None else (close_rcvd.code, close_rcvd.reason),
        type(protocol.parser_exc).__name__,
        str(protocol.parser_exc),
        len(protocol.reader.buffer) + kept,  # payload bytes held, by either
        out,
    )


def _close(protocol: Protocol) -> None:
    if protocol.state is OPEN:
        protocol.send_close(1000)


@dataclass
class Run:
    """What one side made of the pieces: per piece, its frames and end state."""

    steps: list[tuple[list[tuple[int, bytes, bool]], tuple[Any, ...]]]
    taken: int  # frames the FrameInput took itself (0 for the protocol alone)


def run_alone(case: Case, pieces: list[bytes]) -> Run:
    protocol = open_protocol(case.masked, case.max_size)
    steps = []
    for i, piece in enumerate(pieces):
        if i == case.close_after:
            _close(protocol)
        protocol.receive_data(piece)
        frames = [_frame(event) for event in protocol.events_received()]
        steps.append((frames, _end(protocol, case.masked)))
    protocol.receive_eof()
    after_eof = [_frame(event) for event in protocol.events_received()]
    steps.append((after_eof, _end(protocol, case.masked)))
    return Run(steps, 0)


def run_through_input(case: Case, pieces: list[bytes]) -> Run:
    protocol = open_protocol(case.masked, case.max_size)
    source = FrameInput(protocol, masked=case.masked, max_size=case.max_size)
    steps = []
    taken = 0
    for i, piece in enumerate(pieces):
        if i == case.close_after:
            _close(protocol)
            source.refresh()  # the owner's duty after changing the protocol's state
        source.feed(piece)
        items = source.take()
        taken += sum(1 for item in items if item.__class__ is bytes)
        assert not protocol.events_received(), "an event was left behind in the protocol"
        end = _end(protocol, case.masked, source.kept_size)
        steps.append(([_frame(item) for item in items], end))
    source.end()
    protocol.receive_eof()
    after_eof = [_frame(event) for event in protocol.events_received()]
    steps.append((after_eof, _end(protocol, case.masked)))
    return Run(steps, taken)


def check(case: Case) -> Run:
    """Assert that both ways agree on ``case``; return the ``FrameInput``'s run."""
    pieces = cut(case.data, case.cuts)
    alone = run_alone(case, pieces)
    through = run_through_input(case, pieces)
    for i, (want, got) in enumerate(zip(alone.steps, through.steps, strict=True)):
        assert got == want, (
            f"after piece {i} of {len(pieces)}: the protocol alone gave {want!r}, "
            f"through the FrameInput {got!r}"
        )
    return through


def signature(case: Case, run: Run) -> tuple[Any, ...]:
    """What kind of thing an input did: the coverage a long run keeps inputs for."""
    opcodes = {opcode for frames, _ in run.steps for opcode, _, _ in frames}
    _, end = run.steps[-2] if len(run.steps) > 1 else run.steps[-1]
    return (
        case.masked,
        run.taken > 0,
        len(case.cuts) > 0,
        min(len(opcodes), 2),
        end[0],
        end[1][0] if end[1] else None,
        end[3],
        case.close_after >= 0,
    )


# -- the long campaign's generator ---------------------------------------------------------

_CODES: Final = (1000, 1001, 1002, 1003, 1007, 1011, 999, 1005, 3000, 4999, 5000)


def _payload(rng: random.Random, limit: int | None) -> bytes:
    cap = 300 if limit is None else min(limit + 2, 300)
    size = rng.choice((0, 1, 2, rng.randrange(cap + 1), cap, 125, 126, 127))
    return bytes(rng.getrandbits(8) for _ in range(size))


def random_frame(rng: random.Random, masked: bool, limit: int | None) -> bytes:
    """One frame: mostly valid (data, fragments, control), sometimes breaking a rule."""
    key = rng.randbytes(4) if masked != (rng.random() < 0.03) else None
    roll = rng.random()
    form = rng.choice((0, 0, 0, 0, 16, 64))
    if roll < 0.45:
        opcode = BINARY if rng.random() < 0.7 else TEXT
        payload = _payload(rng, limit)
        if opcode == TEXT and rng.random() < 0.8:
            payload = payload.decode("latin-1").encode()[: len(payload)]
        return frame(opcode, payload, key=key, form=form, fin=rng.random() < 0.9)
    if roll < 0.6:
        return frame(CONT, _payload(rng, limit), key=key, fin=rng.random() < 0.6, form=form)
    if roll < 0.8:
        opcode = rng.choice((PING, PONG))
        return frame(opcode, _payload(rng, 125)[:125], key=key, fin=rng.random() < 0.97)
    if roll < 0.87:
        code = rng.choice(_CODES)
        payload = b"" if rng.random() < 0.2 else code.to_bytes(2, "big") + b"bye"
        return frame(CLOSE, payload, key=key)
    if roll < 0.93:
        over = (limit if limit is not None else 1 << 20) + rng.choice((1, 2, 1 << 40))
        return frame(BINARY, b"", key=key, length=over)
    opcode = rng.choice((3, 7, 0xB, 0xF, BINARY, TEXT))
    return frame(opcode, b"r", key=key, rsv=rng.randrange(8))


def random_case(rng: random.Random, seeds: list[Case]) -> Case:
    """A new input: a kept one or a fresh stream of frames, mutated and cut anew."""
    if seeds and rng.random() < 0.3:
        base = rng.choice(seeds)
        masked, limit, data = base.masked, base.max_size, base.data
    else:
        masked = rng.random() < 0.5
        limit = rng.choice(MAX_SIZES)
        data = b"".join(random_frame(rng, masked, limit) for _ in range(rng.randrange(1, 12)))
    if rng.random() < 0.4:
        ops = [
            (
                rng.choice(("flip", "set", "insert", "delete", "duplicate", "truncate")),
                rng.randrange(1 << 20),
                rng.randrange(256),
                rng.randbytes(rng.randrange(6)),
            )
            for _ in range(rng.randrange(1, 4))
        ]
        data = apply_mutations(data, ops)
    points = tuple(rng.randrange(len(data) + 1) for _ in range(rng.choice((0, 1, 2, 5, 20))))
    close_after = rng.randrange(len(points) + 2) if rng.random() < 0.15 else -1
    return Case(masked, limit, data, points, close_after)


def load(path: Path) -> list[Case]:
    """The inputs kept in ``path`` (JSON lines), none if it does not exist."""
    if not path.exists():
        return []
    return [Case.from_json(line) for line in path.read_text().splitlines() if line]


def campaign(cases: int, seed: int, corpus: Path) -> int:
    """Run ``cases`` random inputs; keep in ``corpus`` the smallest input of each kind
    seen (:func:`signature`). Return 1 at the first difference, 0 if there was none."""
    rng = random.Random(seed)
    kept: dict[tuple[Any, ...], Case] = {}
    for case in load(CORPUS) + load(corpus):
        kept.setdefault(signature(case, check(case)), case)
    seeds = list(kept.values())
    known = len(kept)
    started = time.perf_counter()
    status = 0
    for n in range(cases):
        case = random_case(rng, seeds)
        try:
            run = check(case)
        except AssertionError as exc:
            failure = corpus.with_name(f"{corpus.stem}-failure-{seed}-{n}.json")
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(case.to_json())
            print(f"input {n}: {exc}\nsaved as {failure}", file=sys.stderr)
            status = 1
            break
        mark = signature(case, run)
        best = kept.get(mark)
        if best is None:
            seeds.append(case)
        if best is None or len(case.data) + len(case.cuts) < len(best.data) + len(best.cuts):
            kept[mark] = case
        if n and n % 100_000 == 0:
            rate = n / (time.perf_counter() - started)
            print(f"{n:,} inputs, {len(kept)} kinds, {rate:,.0f}/s", file=sys.stderr)
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("".join(case.to_json() + "\n" for case in kept.values()))
    if not status:
        elapsed = time.perf_counter() - started
        print(
            f"{cases:,} inputs in {elapsed:.0f} s, no difference; "
            f"{len(kept) - known} new kinds, {len(kept)} kept in {corpus}"
        )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=Path(".hypothesis/fuzz/ws_frames.jsonl"))
    args = parser.parse_args(argv)
    return campaign(args.cases, args.seed, args.corpus)


if __name__ == "__main__":
    sys.exit(main())
