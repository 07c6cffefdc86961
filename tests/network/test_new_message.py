"""new_message: the Message of each message received, made by the C twin or the Python
twin, is the same as one the class makes."""

from __future__ import annotations

import copy
import dataclasses
import gc
import importlib.util
import pickle
import sys
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import message_io
from message_io import Endpoint, Message, ResourceId, ResourceType
from message_io.network import new_message

_SOURCE = Path(new_message.__file__).with_name("new_message.py")


def _python_twin() -> ModuleType:
    # A name inside the package: the twin imports its neighbours relatively.
    spec = importlib.util.spec_from_file_location("message_io.network._python_twin", _SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TWINS = [pytest.param(_python_twin(), id="python")]
if new_message.COMPILED:
    _TWINS.append(pytest.param(new_message, id="c"))


@pytest.fixture(params=_TWINS)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def _endpoint() -> Endpoint:
    return Endpoint(ResourceId.new(0, ResourceType.REMOTE, 7), ("127.0.0.1", 9))


def test_the_c_twin_is_there_with_the_compiled_engine() -> None:
    assert new_message.COMPILED is message_io.COMPILED
    if new_message.COMPILED:
        python = _python_twin()
        assert {name for name in dir(new_message) if not name.startswith("_")} == set(
            python.__all__
        )


def test_the_same_as_the_class_makes(twin: Any) -> None:
    endpoint = _endpoint()
    made = twin.new_message(endpoint, b"data")
    assert made.__class__ is Message
    assert made.endpoint is endpoint
    assert made.data == b"data"
    assert made == Message(endpoint, b"data")
    assert hash(made) == hash(Message(endpoint, b"data"))
    assert repr(made) == repr(Message(endpoint, b"data"))
    assert dataclasses.astuple(made) == (endpoint, b"data")
    match made:
        case Message(who, data):
            assert (who, data) == (endpoint, b"data")
        case _:
            pytest.fail("Message(endpoint, data) does not match")
    assert copy.copy(made) == made
    assert pickle.loads(pickle.dumps(made)) == made


def test_frozen(twin: Any) -> None:
    made = twin.new_message(_endpoint(), b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.data = b"y"


def test_holds_and_releases_its_references(twin: Any) -> None:
    data = bytes(bytearray(b"payload"))  # its own object, not interned
    before = sys.getrefcount(data)
    made = twin.new_message(_endpoint(), data)
    assert sys.getrefcount(data) == before + 1
    del made
    assert sys.getrefcount(data) == before


def test_collected_in_a_cycle(twin: Any) -> None:
    class Holder:
        pass

    holder = Holder()
    made = twin.new_message(_endpoint(), holder)
    holder.message = made  # type: ignore[attr-defined]
    gone = weakref.ref(holder)
    assert gc.is_tracked(made)
    del holder, made
    gc.collect()
    assert gone() is None


def test_wrong_arguments(twin: Any) -> None:
    with pytest.raises(TypeError):
        twin.new_message(_endpoint())
