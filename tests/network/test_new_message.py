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
from message_io import Endpoint, Message, ResourceId, ResourceType, TextMessage
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


def _released(make: Any) -> None:
    """``make(endpoint, data)`` a thousand times, dropping each: the class, the endpoint
    and the data are held exactly as long as the object lives."""
    endpoint = _endpoint()
    data = bytes(bytearray(b"payload"))
    made = make(endpoint, data)
    cls = type(made)
    counts = (sys.getrefcount(cls), sys.getrefcount(endpoint), sys.getrefcount(data))
    kept = [make(endpoint, data) for _ in range(500)]
    assert sys.getrefcount(data) == counts[2] + 500
    del kept
    for _ in range(500):
        make(endpoint, data)
    del made
    assert (sys.getrefcount(cls), sys.getrefcount(endpoint), sys.getrefcount(data)) == (
        counts[0] - 1,
        counts[1] - 1,
        counts[2] - 1,
    )


def test_messages_release_their_class_and_fields(twin: Any) -> None:
    _released(twin.new_message)
    _released(Message)


def test_subclasses_release_their_class_and_fields() -> None:
    """Subclass instances hand their Message part to Message's deallocator."""

    class Tagged(Message):
        pass  # a __dict__ and weak references of its own

    _released(lambda endpoint, data: TextMessage(endpoint, data, "text"))
    _released(Tagged)
    tagged = Tagged(_endpoint(), b"x")
    extra = object()
    object.__setattr__(tagged, "tag", extra)  # frozen: as a subclass may do
    seen = weakref.ref(tagged)
    before = sys.getrefcount(extra)
    del tagged
    assert seen() is None
    assert sys.getrefcount(extra) == before - 1


def test_finalizers_run_once(twin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A subclass's __del__, and one given to Message itself, run once per object; one
    that keeps the object alive keeps its fields too."""
    finalized: list[bytes] = []
    kept: list[Any] = []

    class Noted(Message):
        def __del__(self) -> None:
            finalized.append(self.data)

    noted = Noted(_endpoint(), b"sub")
    del noted
    assert finalized == [b"sub"]

    def keep_first(self: Any) -> None:
        finalized.append(self.data)
        if not kept:
            kept.append(self)

    monkeypatch.setattr(Message, "__del__", keep_first, raising=False)
    made = twin.new_message(_endpoint(), b"kept")
    del made
    assert kept and kept[0].data == b"kept"
    other = twin.new_message(_endpoint(), b"other")
    del other
    kept.clear()  # the kept one goes now, its finalizer already run
    assert finalized == [b"sub", b"kept", b"other"]
    monkeypatch.undo()
    again = twin.new_message(_endpoint(), b"again")
    assert gc.is_tracked(again)
    del again
    assert finalized == [b"sub", b"kept", b"other"]


def test_code_run_by_a_field_may_make_messages(twin: Any) -> None:
    """Freeing a field may run code that makes and drops many messages meanwhile."""
    made_inside: list[int] = []

    class Churn:
        def __del__(self) -> None:
            made_inside.extend(
                len(twin.new_message(_endpoint(), b"inner").data) for _ in range(200)
            )

    messages = [twin.new_message(_endpoint(), Churn()) for _ in range(100)]
    del messages
    assert made_inside == [5] * 200 * 100
    fresh = [twin.new_message(_endpoint(), bytes([i])) for i in range(200)]
    assert [m.data for m in fresh] == [bytes([i]) for i in range(200)]
    assert all(gc.is_tracked(m) for m in fresh)


@pytest.mark.skipif(not new_message.COMPILED, reason="no C twin in this build")
def test_the_c_twin_reuses_freed_messages() -> None:
    """The free list is in use (the class was laid out as the C twin expects): messages
    made after others were freed take no new memory block."""
    if not sys.getallocatedblocks():
        pytest.skip("Python's allocator is off (PYTHONMALLOC=malloc): no blocks counted")
    endpoint = _endpoint()
    data = b"data"
    kept: list[Any] = [None] * 10
    for index in range(10):
        kept[index] = new_message.new_message(endpoint, data)
    for index in range(10):
        kept[index] = None
    before = sys.getallocatedblocks()
    for index in range(10):
        kept[index] = new_message.new_message(endpoint, data)
    assert sys.getallocatedblocks() - before <= 1  # the loop's own iterator at most
    assert all(made == Message(endpoint, data) and gc.is_tracked(made) for made in kept)
