"""new_message: the Message of each message received, made by the C twin or the Python
twin, is the same as one the class makes."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import sys
import weakref
from types import ModuleType
from typing import Any

import pytest

import message_io
from message_io import Endpoint, Message, ResourceId, ResourceType
from message_io.network import new_message

from ..twins import same_names, twins


@pytest.fixture(params=twins(new_message))
def twin(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def _endpoint() -> Endpoint:
    return Endpoint(ResourceId.new(0, ResourceType.REMOTE, 7), ("127.0.0.1", 9))


def test_the_c_twin_is_there_with_the_compiled_engine() -> None:
    assert new_message.COMPILED is message_io.COMPILED
    same_names(new_message)


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
