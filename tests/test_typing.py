"""The documented ways to type a node's signals pass mypy --strict, and a signal of the
wrong type is flagged.

``split(S)`` takes a class (``split(str)``). For a ``Union`` or a ``Literal`` signal type,
which is not a class, the documented form annotates the handler and the listener and
calls ``split()`` without an argument (README, "The API in one page").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mypy", reason="mypy is not installed here (pip install -e '.[lint]')")

GOOD = """
from __future__ import annotations

from datetime import timedelta
from typing import Literal, Union

import message_io
from message_io import NodeEvent, NodeHandler, NodeListener, Signal

Command = Literal["tick", "stop"]
Reading = Union[int, float]

# A Literal signal type: annotate both, then split() with no argument.
handler: NodeHandler[Command]
listener: NodeListener[Command]
handler, listener = message_io.split()
handler.signals.send("tick")
handler.signals.send_with_priority("stop")
handler.signals.send_with_timer("tick", timedelta(seconds=1))


def on_event(event: NodeEvent[Command]) -> None:
    match event:
        case Signal("tick"):
            handler.signals.send_with_timer("tick", 1.0)
        case Signal(value):
            command: Command = value
            print(command)
        case _:
            pass


def run() -> None:
    listener.for_each(on_event)


# A typing.Union, and a PEP 604 union in one annotated tuple.
readings: tuple[NodeHandler[Reading], NodeListener[Reading]] = message_io.split()
readings[0].signals.send(1)
readings[0].signals.send(2.5)
words: tuple[NodeHandler[int | str], NodeListener[int | str]] = message_io.split()
words[0].signals.send("one")

# A class still goes to split() directly.
texts, _texts_listener = message_io.split(str)
texts.signals.send("hello")
"""

# Each line that must be flagged ends with "# flagged".
BAD = """
from __future__ import annotations

from typing import Literal

import message_io
from message_io import NodeHandler, NodeListener

Command = Literal["tick", "stop"]

handler: NodeHandler[Command]
listener: NodeListener[Command]
handler, listener = message_io.split()
handler.signals.send("go")  # flagged
handler.signals.send_with_timer(b"tick", 1.0)  # flagged

words: tuple[NodeHandler[int | str], NodeListener[int | str]] = message_io.split()
words[0].signals.send(b"one")  # flagged
words[0].signals.send_with_priority(1.5)  # flagged

texts, _texts_listener = message_io.split(str)
texts.signals.send(1)  # flagged
"""


def _mypy(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(path),
        ],
        cwd=tmp_path,  # no project config: --strict alone
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},  # this checkout's message_io
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _readme_typing_example() -> str:
    blocks: list[str] = re.findall(
        r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S
    )
    examples = [block for block in blocks if "handler: NodeHandler[" in block]
    assert len(examples) == 1, "the README shows how to type a Literal signal"
    return examples[0]


def test_the_readme_example_passes_mypy_strict_and_flags_a_wrong_signal(tmp_path: Path) -> None:
    example = _readme_typing_example()
    assert "Literal[" in example and "message_io.split()" in example
    result = _mypy(tmp_path, "readme", example)
    assert result.returncode == 0, result.stdout + result.stderr
    wrong = example + 'handler.signals.send("go")\n'
    result = _mypy(tmp_path, "readme", wrong)
    assert result.returncode == 1, result.stdout + result.stderr
    line = len(textwrap.dedent(wrong).splitlines())
    assert re.fullmatch(rf"readme\.py:{line}: error: .*\[arg-type\]\n", result.stdout)


def test_the_documented_signal_typings_pass_mypy_strict(tmp_path: Path) -> None:
    result = _mypy(tmp_path, "good", GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_a_signal_of_the_wrong_type_is_flagged(tmp_path: Path) -> None:
    result = _mypy(tmp_path, "bad", BAD)
    assert result.returncode == 1, result.stdout + result.stderr
    flagged = {
        number
        for number, line in enumerate(textwrap.dedent(BAD).splitlines(), start=1)
        if line.endswith("# flagged")
    }
    errors = re.findall(r"^bad\.py:(\d+): error: .*\[(\S+)\]$", result.stdout, flags=re.M)
    assert {int(number) for number, _code in errors} == flagged, result.stdout
    assert {code for _number, code in errors} == {"arg-type"}, result.stdout
