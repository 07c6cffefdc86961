"""The public contract for writing a transport (an *adapter*).

A transport is three small classes:

* an :class:`Adapter`, stateless, that opens connections (:meth:`Adapter.connect`) and
  listeners (:meth:`Adapter.listen`) and says what kind of transport it is;
* a :class:`Remote`, one connection: it reads and decodes messages, frames outgoing
  messages and writes bytes, and may run a handshake before it is ready;
* a :class:`Local`, one listener: it accepts connections (or, for packet transports,
  receives datagrams) and may send datagrams to any address.

Register the adapter once with :func:`message_io.register_transport` and the new
transport works with every call of the node: ``connect``, ``listen``, ``send``, ``remove``,
the events, the send queue with its memory bound, backpressure and connect timeouts.

What the node does for you, so an adapter need not:

* Polling. Each resource exposes :meth:`fileno`; the node polls it (level-triggered)
  and calls :meth:`Remote.pending`, :meth:`Remote.receive` or :meth:`Local.accept`
  on the loop thread when it is ready. None of them may block.
* The send queue. ``send()`` frames the message with :meth:`Remote.frame` and queues the
  bytes per connection; the loop writes them with :meth:`Remote.write` when the resource
  is writable, coalescing many small messages into few system calls. The queue is
  bounded (``send_buffer_limit``) and reports backpressure to the user.
* Host names. An adapter whose addresses hold a host name says so in
  :meth:`Adapter.lookup` (parse only, no resolving); the node then resolves the name on
  a resolver thread, never on the loop or in the caller's thread, and races the
  addresses it gets (Happy Eyeballs, RFC 8305) through :meth:`Adapter.connect_to`.
* Thread safety. ``frame`` and ``write`` are called under the connection's lock, so
  two threads never interleave bytes. If the transport cannot read and write at the same
  time from two threads (a TLS session, for example), set ``full_duplex = False`` and
  ``receive`` runs under the same lock.
* Errors. An ``OSError`` (or :class:`~message_io.errors.FrameError`) raised by
  ``receive``, ``pending`` or ``write`` disconnects that one resource and is logged once;
  other resources carry on. Anything else is a bug in the adapter and is logged with its
  traceback, and also only disconnects that resource.

The annotated skeleton in :mod:`message_io.adapters.template` is a good place to start,
and ``docs/adapters.md`` walks through a complete Unix-domain-socket transport.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import ipaddress
import socket
import sys
import types
import typing
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, NoReturn

from ..errors import AddressError
from .endpoint import Address
from .resolver import ip_addresses

__all__ = [
    "DEFAULT_MESSAGE_TIMEOUT",
    "DEFAULT_MIN_MESSAGE_RATE",
    "DEFAULT_SEND_BUFFER_LIMIT",
    "Adapter",
    "Buffer",
    "ConnectConfig",
    "ConnectionInfo",
    "Framing",
    "HostName",
    "ListenConfig",
    "ListeningInfo",
    "Local",
    "PendingStatus",
    "ReadStatus",
    "Readiness",
    "Remote",
    "SendStatus",
    "check_fields",
    "check_ip_address",
    "format_address",
    "host_name",
    "parse_host_port",
    "resolve_address",
]

Buffer = bytes | bytearray | memoryview
"""Any bytes-like object accepted by ``send``."""

DEFAULT_SEND_BUFFER_LIMIT = 4 * 1024 * 1024
"""Default cap, in bytes, of the data queued for one connection and not yet written."""

DEFAULT_MESSAGE_TIMEOUT = 30.0
"""Default ``message_timeout``: seconds a message may go without progress (30 s, as
libzmq's handshake interval and well under nginx's 60 s ``client_body_timeout``)."""

DEFAULT_MIN_MESSAGE_RATE = 240.0
"""Default ``min_message_rate``, in bytes per second: Kestrel's ``MinRequestBodyDataRate``."""


def _check_limits(config: ConnectConfig | ListenConfig) -> None:
    """The range of ``min_message_rate`` (the ``*_timeout`` fields are checked by
    :func:`check_fields`)."""
    rate = config.min_message_rate
    if rate is not None and not rate > 0:
        raise ValueError(f"{_field(config, 'min_message_rate')} must be > 0 or None, not {rate!r}")


class SendStatus(enum.Enum):
    """The outcome of ``NetworkController.send``."""

    SENT = "sent"
    """The message was handed to the transport: written to the OS, or queued to be written
    by the loop in order. It is not a proof of delivery."""
    MAX_PACKET_SIZE_EXCEEDED = "max_packet_size_exceeded"
    """The message is larger than the transport (or its config) allows; nothing was sent."""
    RESOURCE_NOT_FOUND = "resource_not_found"
    """No such connection: never existed, removed, disconnected or failed."""
    RESOURCE_NOT_AVAILABLE = "resource_not_available"
    """The connection exists but cannot take the message now: it is not ready yet
    (connect or handshake pending), or, on datagram transports, the OS refused this one
    datagram (network unreachable, broadcast not allowed...; logged at debug level).
    Nothing was sent."""
    QUEUE_FULL = "queue_full"
    """Backpressure: the connection already holds ``send_buffer_limit`` bytes that the peer
    has not taken. Nothing was queued. Send again after the ``Drained(endpoint)`` event,
    or after ``NetworkController.wait_drained(endpoint)`` returns True."""


class ReadStatus(enum.Enum):
    """What :meth:`Remote.receive` found."""

    OK = "ok"
    """Read what was available (maybe nothing); call again when readable."""
    DISCONNECTED = "disconnected"
    """The peer closed the connection or it failed; the node removes it."""


class PendingStatus(enum.Enum):
    """The state of a connection's handshake, returned by :meth:`Remote.pending`."""

    READY = "ready"
    INCOMPLETE = "incomplete"
    DISCONNECTED = "disconnected"


class Readiness(enum.Flag):
    """Which way a resource is ready: passed to :meth:`Remote.pending`."""

    READ = 1
    WRITE = 2


# -- config checks ------------------------------------------------------------------------
#
# Each config class is compiled once, from its resolved annotations, into one _FieldCheck
# per field (a _Spec for the type, the range its name implies, a default known to pass);
# building a config then runs the checks, which only look at the values.


class _Spec:
    """How one annotation checks a value: :meth:`matches` looks at the outer type only (to
    choose a member of a union), :meth:`check` at everything and raises a TypeError that
    names ``where``.

    ``name`` is the annotation as written (``"str | None"``), ``description`` the same in
    words for messages (``"str or None"``).
    """

    __slots__ = ("description", "items", "kind", "length", "name", "origin", "values")

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        description: str | None = None,
        origin: Any = None,
        items: tuple[_Spec, ...] = (),
        length: int | None = None,
        values: tuple[Any, ...] = (),
    ) -> None:
        self.kind = kind
        self.name = name
        self.description = name if description is None else description
        self.origin = origin
        self.items = items
        self.length = length
        self.values = values

    def matches(self, value: Any) -> bool:
        """True if ``value`` has the outer type (a tuple for ``tuple[int, ...]``)."""
        kind = self.kind
        if kind == "any":
            return True
        if kind == "none":
            return value is None
        if kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == "float":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "literal":
            return any(value == v and type(value) is type(v) for v in self.values)
        if kind == "union":
            return any(item.matches(value) for item in self.items)
        if kind == "callable":
            return callable(value)
        if kind == "collection" and isinstance(value, (str, bytes, bytearray)):
            return False  # a str is a collection of str, but nobody means that
        return isinstance(value, self.origin)

    def check(self, value: Any, where: str) -> None:
        """Raise TypeError unless ``value`` matches, items included.

        Raises:
            TypeError: ``"<where> must be <description>, not <type>"``.
        """
        kind = self.kind
        if kind == "union":
            for item in self.items:
                if item.matches(value):
                    item.check(value, where)
                    return
            self._fail(value, where)
        if not self.matches(value):
            self._fail(value, where)
        if kind == "tuple":
            if self.length is not None and len(value) != self.length:
                raise TypeError(
                    f"{where} must be {self.description}, not a tuple of {len(value)} items"
                )
            for index, item in enumerate(value):
                self.items[0 if self.length is None else index].check(item, f"{where}[{index}]")
        elif kind == "collection":
            for item in value:
                self.items[0].check(item, f"an item of {where}")
        elif kind == "mapping":
            key_spec, value_spec = self.items
            for key, item in value.items():
                key_spec.check(key, f"a key of {where}")
                value_spec.check(item, f"{where}[{key!r}]")

    def _fail(self, value: Any, where: str) -> NoReturn:
        kind = "None" if value is None else type(value).__name__
        raise TypeError(f"{where} must be {self.description}, not {kind}")


def _spec(annotation: Any) -> _Spec:
    """Compile a resolved annotation into a :class:`_Spec`."""
    origin: Any = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return _Spec("any", "Any", description="any value")
    if annotation is None or annotation is type(None):
        return _Spec("none", "None")
    if annotation is int:
        return _Spec("int", "int")
    if annotation is float:
        return _Spec("float", "float")
    if origin is typing.Annotated:
        return _spec(args[0])
    if origin is typing.Union or origin is types.UnionType:
        # None last: "int or None", "str, int or None".
        members = tuple(sorted((_spec(arg) for arg in args), key=lambda s: s.kind == "none"))
        words = [member.description for member in members]
        return _Spec(
            "union",
            " | ".join(member.name for member in members),
            description=", ".join(words[:-1]) + " or " + words[-1],
            items=members,
        )
    if origin is typing.Literal:
        listed = ", ".join(map(repr, args))
        return _Spec("literal", f"Literal[{listed}]", description=f"one of {listed}", values=args)
    if isinstance(annotation, typing.NewType):
        return _spec(annotation.__supertype__)
    if origin is None:
        if isinstance(annotation, type):  # bool, str, ssl.SSLContext, TcpKeepalive...
            return _Spec("class", annotation.__name__, origin=annotation)
        return _Spec("any", "Any", description="any value")  # a TypeVar...
    if not isinstance(origin, type):
        return _Spec("any", "Any", description="any value")
    if origin is collections.abc.Callable:
        return _Spec("callable", "Callable", description="callable")
    items = tuple(_spec(arg) for arg in args if arg is not Ellipsis)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Spec("tuple", f"tuple[{items[0].name}, ...]", origin=tuple, items=items)
        if not items:  # tuple[()]
            return _Spec("class", "tuple", origin=tuple)
        listed = ", ".join(item.name for item in items)
        return _Spec("tuple", f"tuple[{listed}]", origin=tuple, items=items, length=len(items))
    name = f"{origin.__name__}[{', '.join(item.name for item in items)}]"
    if issubclass(origin, collections.abc.Mapping) and len(items) == 2:
        return _Spec("mapping", name, origin=origin, items=items)
    if issubclass(origin, collections.abc.Collection) and len(items) == 1:
        return _Spec("collection", name, origin=origin, items=items)
    return _Spec("class", name, origin=origin)


def _annotations(cls: type) -> dict[str, Any]:
    """The resolved annotations of ``cls`` and its bases; a name whose annotation does not
    resolve (a name imported only for type checkers) is left out."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - resolve the others one by one
        pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            hints.pop(name, None)
            if not isinstance(annotation, str):
                hints[name] = annotation
                continue
            try:
                hints[name] = eval(annotation, namespace, dict(vars(klass)))
            except Exception:  # noqa: BLE001 - not checked
                continue
    return hints


_NO_DEFAULT: Any = object()

_POSITIVE_SUFFIXES = ("_timeout", "_interval")
_COUNT_SUFFIXES = ("_size", "_limit")


class _FieldCheck(NamedTuple):
    name: str
    where: str  # "ClassName.field", for messages
    spec: _Spec
    positive: bool  # a number that must be > 0 (by its name)
    non_negative: bool  # a number that must be >= 0 (by its name)
    default: Any  # a default known to pass (skipped when the value *is* it), or _NO_DEFAULT


def _check_value(check: _FieldCheck, value: Any) -> None:
    check.spec.check(value, check.where)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if check.positive and not value > 0:
        raise ValueError(f"{check.where} must be > 0, not {value!r}")
    if check.non_negative and not value >= 0:
        raise ValueError(f"{check.where} must be >= 0, not {value!r}")


def _compile_fields(cls: type) -> tuple[_FieldCheck, ...]:
    hints = _annotations(cls)
    checks = []
    for field in dataclasses.fields(cls):
        if field.name not in hints:
            continue
        check = _FieldCheck(
            field.name,
            f"{cls.__name__}.{field.name}",
            _spec(hints[field.name]),
            field.name.endswith(_POSITIVE_SUFFIXES),
            field.name.endswith(_COUNT_SUFFIXES),
            _NO_DEFAULT,
        )
        if field.default is not dataclasses.MISSING:
            try:
                _check_value(check, field.default)
            except (TypeError, ValueError):
                pass  # a wrong default is reported when a config is built with it
            else:
                check = check._replace(default=field.default)
        checks.append(check)
    return tuple(checks)


_FIELD_CHECKS: weakref.WeakKeyDictionary[type, tuple[_FieldCheck, ...]] = (
    weakref.WeakKeyDictionary()
)


def check_fields(config: Any) -> None:
    """Check every field of the dataclass instance ``config`` against its annotation.

    Called by the ``__post_init__`` of :class:`ConnectConfig` and :class:`ListenConfig`,
    so a transport's config is checked without code of its own; call it from the
    ``__post_init__`` of other option dataclasses (such as
    :class:`~message_io.adapters.tcp.TcpKeepalive`). Annotations are resolved once per
    class (``typing.get_type_hints``) and the result cached; a field left at its default
    costs nothing (the default is checked once, with the class).

    Understood: ``int`` (not ``bool``), ``float`` (an ``int`` too, not ``bool``),
    ``bool``, ``str`` and any other class (``isinstance``, e.g. ``ssl.SSLContext`` or a
    nested options dataclass), ``X | None`` and other unions, ``Literal[...]``,
    ``tuple[X, ...]``, ``tuple[X, Y]``, ``Collection[X]`` and other collections (their
    items checked; a ``str`` is not accepted as a collection), ``Mapping[K, V]``,
    ``Callable``. ``Any``, and annotations that do not resolve, are not checked.

    Ranges, by the name of a number field (``None`` is never range-checked): a name
    ending in ``_timeout`` or ``_interval`` is seconds and must be > 0 (not NaN); a name
    ending in ``_size`` or ``_limit`` is a count of bytes and must be >= 0. Classes add
    their own checks after this one.

    Raises:
        TypeError: a value does not match its field's annotation, as in
            ``"FramedTcpConnectConfig.send_buffer_limit must be int, not str"``.
        ValueError: a number is out of the range its name implies, as in
            ``"WsConnectConfig.ping_interval must be > 0, not -1"``.
    """
    cls = type(config)
    checks = _FIELD_CHECKS.get(cls)
    if checks is None:
        checks = _FIELD_CHECKS[cls] = _compile_fields(cls)
    for check in checks:
        value = getattr(config, check.name)
        if value is not check.default:  # a default was checked once, with the class
            _check_value(check, value)


def _field(config: object, name: str) -> str:
    return f"{type(config).__name__}.{name}"


@dataclass(frozen=True, kw_only=True)
class ConnectConfig:
    """Options every transport's connect config has. Transport configs subclass it.

    Every field, including a subclass's, is checked when the config is built (see
    :func:`check_fields`), so a mistake is reported where it is made rather than by the
    first connection that uses it.

    Attributes:
        connect_timeout: Seconds to wait for the connection (and its handshake) before
            giving up with ``Connected(endpoint, False)``. ``None`` leaves it to the OS.
        send_buffer_limit: Bytes that may wait in this connection's send queue; past it
            ``send`` returns ``SendStatus.QUEUE_FULL``. A message is always accepted
            into an empty queue, whatever its size.
        message_timeout: Seconds an incoming message that has begun may go without a new
            byte before the peer is disconnected (``Disconnected``). ``None``: no limit
            (and no ``min_message_rate`` either). Only for transports with messages
            (FramedTcp, WebSocket, adapters that implement ``Remote.incomplete``).
        min_message_rate: Bytes per second an incoming message must average once it is
            older than ``message_timeout``; a slower one (a peer trickling a byte now and
            then) is disconnected. ``None``: no minimum rate.
        idle_timeout: Seconds without receiving anything before the peer is
            disconnected. ``None`` (default): no limit; TCP keepalive or the transport's
            pings still notice dead peers.

    Raises:
        TypeError: a field's value does not match its annotation; the message names
            the field (``"FramedTcpConnectConfig.send_buffer_limit must be int, not str"``).
        ValueError: a field is out of range (``connect_timeout`` <= 0 or NaN,
            ``send_buffer_limit`` < 1, or a subclass field against the naming rules of
            :func:`check_fields`); the message names the field.
    """

    connect_timeout: float | None = None
    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT
    min_message_rate: float | None = DEFAULT_MIN_MESSAGE_RATE
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.send_buffer_limit < 1:
            raise ValueError(
                f"{_field(self, 'send_buffer_limit')} must be >= 1, not {self.send_buffer_limit!r}"
            )
        _check_limits(self)


@dataclass(frozen=True, kw_only=True)
class ListenConfig:
    """Options every transport's listen config has. Transport configs subclass it.

    Every field, including a subclass's, is checked when the config is built, as for
    :class:`ConnectConfig`.

    Attributes:
        send_buffer_limit: As in :class:`ConnectConfig`, for each accepted connection.
        handshake_timeout: Seconds an accepted connection may take to become ready
            (its handshake) before it is dropped; ``None``: no limit. Bytes trickled by
            the peer do not extend it.
        message_timeout, min_message_rate, idle_timeout: As in :class:`ConnectConfig`,
            for each accepted connection.

    Raises:
        TypeError: a field's value does not match its annotation (the message names it).
        ValueError: a field is out of range (``send_buffer_limit`` < 1,
            ``handshake_timeout`` <= 0 or NaN, ...); the message names it.
    """

    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    handshake_timeout: float | None = None
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT
    min_message_rate: float | None = DEFAULT_MIN_MESSAGE_RATE
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.send_buffer_limit < 1:
            raise ValueError(
                f"{_field(self, 'send_buffer_limit')} must be >= 1, not {self.send_buffer_limit!r}"
            )
        _check_limits(self)


class Framing(enum.Enum):
    """How ``send`` turns a message into bytes for :meth:`Remote.write`: a capability a
    transport declares in :attr:`Remote.framing`."""

    NONE = "none"
    """Bytes as given: a raw byte stream (TCP), or one datagram per message (UDP).
    Neither :meth:`Remote.frame` nor :meth:`Remote.header` is called."""
    FRAME = "frame"
    """:meth:`Remote.frame` makes each message's bytes (the default)."""
    HEADER = "header"
    """Each message goes out as :meth:`Remote.header` ``(size)`` followed by the payload
    itself: no call per message beyond the header, and no copy of large payloads."""


class Remote(ABC):
    """One connection of a transport. Created by :meth:`Adapter.connect` or by a
    :class:`Local` when it accepts.

    **Required**: :meth:`fileno`, :meth:`receive`, :meth:`write`, :meth:`close`.

    **Capabilities**, declared as class attributes (the node never guesses them from
    which methods a class overrides; the defaults suit a plain byte stream):

    * ``framing`` (:class:`Framing`, default ``FRAME``): which of :meth:`frame` or
      :meth:`header` makes a message's bytes, or ``NONE`` for neither.
    * ``reports_incomplete`` (default False): :meth:`incomplete` is called after each
      read, and the node bounds unfinished messages in time and memory.
    * ``has_output`` (default False): :meth:`take_output` is called after each
      :meth:`receive` and :meth:`heartbeat` (the transport answers by itself: pongs).
    * ``text_messages`` (default False): ``send`` takes a ``str`` (:meth:`frame_text`)
      and :meth:`receive` may deliver one; without it ``send(str)`` raises ``TypeError``.
    * ``full_duplex`` (default True): :meth:`receive` may run on the loop thread while
      :meth:`write` runs on another. Set it False for a transport whose state serves
      both directions (TLS): then both run under the connection's lock.
    * ``datagrams`` (default False): every :meth:`write` carries exactly one whole
      message (UDP). False for byte streams, where the node coalesces messages and
      writes may be partial.

    **Optional hooks**, each with a default that does nothing a transport would notice,
    so overriding one with its documented default never changes behaviour:
    :meth:`pending` and :meth:`pending_interest` (a handshake; loop thread),
    :meth:`frame` / :meth:`header` / :meth:`frame_text` (framing; the sending thread,
    under the lock), :meth:`write_many` and :meth:`ready_to_write` (writing; under the
    lock), :meth:`take_output`, :meth:`buffered`, :meth:`incomplete`, :meth:`heartbeat`
    (loop thread) and :meth:`farewell` (under the lock, from ``remove`` or ``stop``).

    Attributes:
        max_message_size: The largest message ``send`` accepts for this connection, or
            ``None`` for no limit. Larger ones get ``MAX_PACKET_SIZE_EXCEEDED``.
    """

    framing: ClassVar[Framing] = Framing.FRAME
    reports_incomplete: ClassVar[bool] = False
    has_output: ClassVar[bool] = False
    text_messages: ClassVar[bool] = False
    full_duplex: ClassVar[bool] = True
    datagrams: ClassVar[bool] = False
    max_message_size: int | None = None
    heartbeat_interval: float | None = None
    """If set, the node calls :meth:`heartbeat` this often (seconds) once ready."""
    failure: BaseException | None = None
    """Why the connection failed, if it did: set it before returning DISCONNECTED from
    :meth:`pending` and it is logged and raised by ``connect_sync``."""

    @abstractmethod
    def fileno(self) -> int:
        """The file descriptor the node polls for this connection."""

    def pending(self, readiness: Readiness) -> PendingStatus:
        """Advance the connect/handshake state machine; called until it is not INCOMPLETE.

        Called on the loop thread each time the resource is readable or writable while
        the connection is not yet ready. Return READY once the connection can carry
        messages (the node then emits ``Connected(ep, True)`` or ``Accepted``),
        DISCONNECTED if it failed. The default says READY at once.
        """
        return PendingStatus.READY

    def pending_interest(self) -> Readiness:
        """What to wait for after :meth:`pending` returned INCOMPLETE (default both ways).

        A handshake that waits for the peer's answer should return ``Readiness.READ``,
        so that the loop does not spin on a socket that is always writable.
        """
        return Readiness.READ | Readiness.WRITE

    @abstractmethod
    def receive(self, deliver: Callable[[bytes | str], object]) -> ReadStatus:
        """Read what is available and call ``deliver(message)`` for each whole message
        (``bytes``; a ``str`` for a text message, see :meth:`frame_text`).

        Called on the loop thread when readable. It must not block. It need not read until
        the OS says "would block": polling is level-triggered, so it is called again while
        data remains; reading a bounded amount per call keeps the loop fair.

        ``deliver`` is the ``append`` method of a list the node owns (``deliver.__self__``):
        a transport that decodes many messages at once may append them to that list
        directly, which saves a call per message.

        Returns:
            ``ReadStatus.DISCONNECTED`` when the peer closed or the connection broke.

        Raises:
            OSError or FrameError: the node disconnects this connection and logs it.
        """

    def frame(self, data: Buffer) -> Buffer | tuple[bytes, Buffer]:
        """Turn one message into the bytes to write (add a length prefix, a frame header).

        Called when :attr:`framing` is ``FRAME`` (the default), under the connection
        lock, in send order, from the thread that sends. The
        result is queued until written; it may be ``data`` itself, or a ``(header, body)``
        pair that is queued as two chunks (no copy joins them: worth it for large
        messages whose body is new bytes anyway, such as a masked payload). Return an empty
        buffer for a non-empty message to refuse it (the connection is closing): ``send``
        then returns ``RESOURCE_NOT_AVAILABLE``; an empty message framed as nothing is
        simply sent as nothing. The default returns ``data`` unchanged (a raw stream).
        """
        return data

    def header(self, size: int) -> bytes | None:
        """The bytes to put before a payload of ``size``: the framing of a transport
        whose :attr:`framing` is ``HEADER``, which has every binary message queued as
        ``header(size) + data``, without a call to :meth:`frame` (no copy of large
        payloads). Called under the connection lock, in send order. Return ``None`` to
        refuse the message (the connection is closing): ``send`` then returns
        ``RESOURCE_NOT_AVAILABLE``. The default returns no header (``b""``).
        """
        return b""

    @abstractmethod
    def write(self, data: Buffer) -> int:
        """Write bytes without blocking; return how many the OS took (0 if none).

        ``data`` is a bytes-like object (``bytes``, ``bytearray`` or ``memoryview``); it is
        only valid during the call.

        Called under the connection lock. For stream transports a partial write is fine:
        the node keeps the rest.

        For ``datagrams`` transports ``data`` is one whole message: send it as one
        datagram, or raise ``BlockingIOError`` if the OS cannot take it now (the node
        queues it and calls again when the resource is writable). Any other ``OSError``
        drops that one datagram (``send`` returns ``MAX_PACKET_SIZE_EXCEEDED`` for
        ``EMSGSIZE``, else ``RESOURCE_NOT_AVAILABLE``) and the connection stays.

        Raises:
            OSError: for stream transports, a fatal error: the node disconnects this
                connection.
        """

    def write_many(self, buffers: list[Buffer]) -> int:
        """Write several buffers in order, without blocking, like ``writev``; return how
        many bytes the OS took in all. Called under the lock for stream transports when
        more than one chunk is queued. The default writes only the first buffer; override
        it (``socket.sendmsg``) to save system calls and tiny packets."""
        return self.write(buffers[0])

    def ready_to_write(self) -> bool:
        """Called under the lock when the connection is writable, before queued data is
        written. Return False if the connection is no longer usable (the node then emits
        ``Disconnected``). Transports with their own output state flush it here."""
        return True

    def frame_text(self, data: bytes) -> Buffer:
        """Frame a text message given as its UTF-8 bytes, for transports that tell text
        from binary (WebSocket) and say so in :attr:`text_messages`:
        ``send(endpoint, "a str")`` calls it under the lock.
        :meth:`receive` delivers a received text message as a ``str`` (the node makes
        it a ``TextMessage``). The default refuses.

        Raises:
            TypeError: the transport carries bytes only.
        """
        raise TypeError(f"{type(self).__name__} sends bytes; encode the str first")

    def take_output(self) -> Buffer | None:
        """Bytes the transport itself wants to send (a pong, a close reply), or None.

        Called when :attr:`has_output` is True, under the lock after :meth:`receive` and
        :meth:`heartbeat`; the node
        queues them after what is already queued. Default: nothing.
        """
        return None

    def buffered(self) -> bool:
        """True if input was already read from the OS and awaits :meth:`receive` (bytes
        that came with the handshake, decrypted TLS data): readiness will not announce
        it, so the node calls :meth:`receive` at once. Asked when the connection becomes
        ready. Default: False."""
        return False

    def incomplete(self) -> int:
        """Bytes of an incoming message that has begun and not ended: a frame whose header
        announced more than has arrived, the fragments of an unfinished message, a header
        cut short. 0 between messages (the default: a raw stream has no messages).

        Called when :attr:`reports_incomplete` is True, on the loop thread after each
        :meth:`receive` that read something, so keep it cheap (a field or two). The
        node uses it to bound incomplete messages in time (``message_timeout``,
        ``min_message_rate``) and, across all connections, in memory (the node's
        ``max_incomplete_bytes``): a peer that stalls or trickles inside a message is
        disconnected, and past the node-wide cap the connections holding the most are
        not read until memory is freed.
        """
        return 0

    def heartbeat(self) -> None:
        """Called under the lock every :attr:`heartbeat_interval` seconds once ready: send
        a keepalive (collected with :meth:`take_output`) or check the peer's liveness.

        Raises:
            OSError: the peer is gone (e.g. ``TimeoutError``); the node disconnects it.
        """
        return

    def farewell(self, going_away: bool) -> bytes | None:
        """Bytes to send before a graceful close, such as a close frame: ``going_away``
        is False for ``remove``, True when the node stops. Called once under the lock.
        Default: nothing."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the OS resources. Called once, on the loop thread or by ``stop``."""


class Local(ABC):
    """One listener of a transport, created by :meth:`Adapter.listen`.

    **Required**: :meth:`fileno`, :meth:`accept`, :meth:`close`. **Optional**:
    :meth:`send_to` (packet transports; any thread; the default refuses).
    """

    @abstractmethod
    def fileno(self) -> int:
        """The file descriptor the node polls for this listener."""

    @abstractmethod
    def accept(
        self,
        accept_remote: Callable[[Remote, Address], object],
        deliver: Callable[[Address, bytes], object],
    ) -> None:
        """Accept what is waiting, without blocking.

        Called on the loop thread when readable. Connection-oriented transports call
        ``accept_remote(remote, peer_addr)`` for each new connection (which then goes
        through :meth:`Remote.pending` before the node emits ``Accepted``); packet
        transports call ``deliver(peer_addr, message)`` for each datagram, which becomes
        ``Message(Endpoint(listener_id, peer_addr), message)``.

        Raises:
            OSError: logged; the listener stays open unless the error is fatal.
        """

    def send_to(self, addr: Address, data: Buffer) -> SendStatus:
        """Send one message from this listener to ``addr`` (packet transports only).

        Called from any thread, possibly from several at once. Return ``SENT``, or
        ``MAX_PACKET_SIZE_EXCEEDED`` for a message too large to send.

        Raises:
            BlockingIOError: the OS cannot take the datagram now; the node queues it (in
                order, bounded by ``send_buffer_limit``) and calls again when writable.
            OSError: the OS refused this datagram; the node drops it and ``send``
                returns ``RESOURCE_NOT_AVAILABLE`` (``MAX_PACKET_SIZE_EXCEEDED`` for
                ``EMSGSIZE``).
            TypeError: the transport cannot send from a listener (the default).
        """
        raise TypeError(f"{type(self).__name__} cannot send from a listener")

    @abstractmethod
    def close(self) -> None:
        """Release the OS resources."""


@dataclass(frozen=True)
class ConnectionInfo:
    """What :meth:`Adapter.connect` returns: the new connection and both addresses."""

    remote: Remote
    local_addr: Address
    peer_addr: Address


@dataclass(frozen=True)
class ListeningInfo:
    """What :meth:`Adapter.listen` returns: the new listener and its real address."""

    local: Local
    local_addr: Address


@dataclass(frozen=True)
class HostName:
    """A host name that ``connect`` must resolve before it can start: what
    :meth:`Adapter.lookup` returns for an address that names a host.

    Attributes:
        host: The name, as ``getaddrinfo`` takes it (``"example.com"``, ``"localhost"``).
        port: The port to connect to.
        socket_type: What to ask the resolver for: ``SOCK_STREAM``, or ``SOCK_DGRAM``
            for a transport whose remotes carry datagrams (:attr:`Remote.datagrams`).
        attempt_delay: Seconds to wait for an attempt before starting the next address
            in parallel (RFC 8305's "Connection Attempt Delay"; 0.25 recommended);
            ``None`` tries one address at a time, the next one when the last fails.
    """

    host: str
    port: int
    socket_type: socket.SocketKind = socket.SOCK_STREAM
    attempt_delay: float | None = None


class Adapter(ABC):
    """A transport: a factory of connections and listeners, plus facts about itself.

    **Required**: :meth:`connect` and :meth:`listen`. **Optional**: :meth:`lookup` and
    :meth:`connect_to` (host names resolved off the loop; both or neither).

    Class attributes:
        connection_oriented: True if connections have a life (``Accepted``,
            ``Disconnected``); False for datagram transports.
        packet_based: True if one send is one ``Message`` at the receiver.
        max_message_size: The default largest message, or ``None`` for no limit.
        connect_config: The config class ``connect`` accepts (a :class:`ConnectConfig`).
        listen_config: The config class ``listen`` accepts (a :class:`ListenConfig`).
    """

    connection_oriented: ClassVar[bool] = True
    packet_based: ClassVar[bool] = True
    max_message_size: ClassVar[int | None] = None
    connect_config: ClassVar[type[ConnectConfig]] = ConnectConfig
    listen_config: ClassVar[type[ListenConfig]] = ListenConfig

    @abstractmethod
    def connect(self, addr: Any, config: Any) -> ConnectionInfo:
        """Start a non-blocking connection to ``addr`` and return at once.

        ``addr`` is whatever the user passed (parse it; :func:`resolve_address` helps for
        IP transports). ``config`` is an instance of :attr:`connect_config`. The outcome
        is decided later by :meth:`Remote.pending`.

        Raises:
            AddressError: ``addr`` cannot be parsed or resolved.
            OSError: the OS refused to start the connection.
        """

    def lookup(self, addr: Any, config: Any) -> HostName | None:
        """The host name ``addr`` holds, if ``connect`` must resolve one first.

        Called by ``connect`` in the caller's thread: parse ``addr``, never resolve it
        (:func:`host_name` does this for ``"host:port"`` and ``(host, port)``). For a
        :class:`HostName`, the node resolves it on a resolver thread and calls
        :meth:`connect_to` on the loop thread with the addresses found, several at a
        time if they are slow to answer (Happy Eyeballs), keeping the first that
        connects; :meth:`connect` is then not called. Return None (the default) for an
        address that needs no name lookup (an IP address, a path): :meth:`connect` is
        called at once, in the caller's thread.

        Raises:
            AddressError: ``addr`` cannot be parsed.
        """
        return None

    def connect_to(
        self, addr: Any, config: Any, family: socket.AddressFamily, sockaddr: tuple[Any, ...]
    ) -> ConnectionInfo:
        """Start a non-blocking connection to ``addr`` at ``sockaddr``, one of the
        addresses its host name (from :meth:`lookup`) resolved to.

        Called on the loop thread, for each address the node tries. The node polls the
        new remote and calls :meth:`Remote.pending` when it is first ready: a
        ``DISCONNECTED`` there loses this address (the next one is tried), anything
        else wins the race (the other attempts are closed) and the connection goes on
        as one from :meth:`connect` would. So the remote's descriptor must not be ready
        before its connection is made or has failed (true of a non-blocking
        ``connect()``). Only needed by adapters that return a :class:`HostName`.

        Raises:
            OSError: the OS refused to start this attempt (the next address is tried).
        """
        raise NotImplementedError(f"{type(self).__name__} has no connect_to()")

    @abstractmethod
    def listen(self, addr: Any, config: Any) -> ListeningInfo:
        """Bind and listen on ``addr``; return the listener and its real local address.

        Raises:
            AddressError: ``addr`` cannot be parsed or resolved.
            OSError: binding or listening failed.
        """


def _split_host_port(addr: str) -> tuple[str, int]:
    text = addr.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise AddressError(f"invalid address {addr!r}: expected '[ipv6]:port'")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise AddressError(f"invalid address {addr!r}: expected 'host:port'")
    try:
        port_number = int(port)
    except ValueError:
        raise AddressError(f"invalid port in address {addr!r}") from None
    return host, port_number


def host_name(
    addr: Any,
    *,
    socket_type: socket.SocketKind = socket.SOCK_STREAM,
    attempt_delay: float | None = None,
) -> HostName | None:
    """The :class:`HostName` in an IP address that names a host, or None for an IP literal.

    Parses what :func:`resolve_address` accepts, without resolving anything: the
    helper behind :meth:`Adapter.lookup` for IP transports.

    Raises:
        AddressError: the address cannot be parsed, its port is out of range, or its
            host is empty.
    """
    host, port = parse_host_port(addr)
    if _literal(host) is not None:
        return None
    return HostName(host, port, socket_type, attempt_delay)


def check_ip_address(addr: Any, where: str, *, passive: bool = False) -> None:
    """Check that ``addr`` spells an IP address and a port (with ``passive``, an empty
    host too): a host name would need a lookup, which may block for seconds.

    For addresses the node uses on its loop thread (a source address to bind, a UDP
    listener's destination), where a name cannot be resolved without stalling it.

    Raises:
        AddressError: ``addr`` cannot be parsed, or holds a host name; the message
            names ``where``.
    """
    host, _port = parse_host_port(addr, passive=passive)
    if host and _literal(host) is None:
        raise AddressError(
            f"{where} must be an IP address, not the host name {host!r}: resolving it "
            "would block the loop (resolve it once beforehand, e.g. with socket.getaddrinfo)"
        )


def parse_host_port(addr: Any, *, passive: bool = False) -> tuple[str, int]:
    """``(host, port)`` from ``"host:port"``, ``"[ipv6]:port"`` or a ``(host, port)`` tuple
    (a 4-tuple IPv6 socket address too), without resolving anything.

    Raises:
        AddressError: the address cannot be parsed, its port is out of range, or its
            host is empty and ``passive`` (binding) is False.
    """
    if isinstance(addr, str):
        host, port = _split_host_port(addr)
    elif isinstance(addr, tuple) and len(addr) in (2, 4) and isinstance(addr[0], str):
        host, port = addr[0], addr[1]
        if not isinstance(port, int) or isinstance(port, bool):
            raise AddressError(f"invalid port in address {addr!r}")
    else:
        raise AddressError(f"invalid address {addr!r}: expected 'host:port' or (host, port)")
    if not 0 <= port <= 65535:
        raise AddressError(f"invalid address {addr!r}: port out of range 0-65535")
    if not host and not passive:
        raise AddressError(
            f"invalid address {addr!r}: no host to connect to (an empty host means "
            "every interface only when listening)"
        )
    return host, port


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells (an IPv6 one may have a ``%scope``), or None for
    a name."""
    if not host:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_address(
    addr: Any, *, type_: socket.SocketKind = socket.SOCK_STREAM, passive: bool = False
) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """Parse and resolve an IP address into ``[(family, sockaddr), ...]``, best first.

    Accepts ``"ip:port"``, ``"[ipv6]:port"``, ``"host:port"``, a ``(host, port)`` tuple and
    a 4-tuple IPv6 socket address. Host names are resolved with ``getaddrinfo`` in the
    calling thread.

    The host may be empty (``":3042"``, ``("", 3042)``) only with ``passive=True``, which
    resolves for binding: there an empty host means every interface, the wildcard
    addresses that ``getaddrinfo`` gives with ``AI_PASSIVE`` (``0.0.0.0`` and ``::``, in
    its order; the built-in transports bind the first, ``0.0.0.0`` on Linux). To connect
    or send (``passive=False``) a host is required: an empty one is an error rather than
    a guess at the loopback address.

    Raises:
        AddressError: the address cannot be parsed, the port is out of range, the host
            is empty and ``passive`` is False, or the name does not resolve. The message
            names the address.
    """
    host, port = parse_host_port(addr, passive=passive)
    ip = _literal(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # A scoped literal (fe80::1%eth0): the C library turns the interface name into
        # its index, numerically, with no lookup.
        numeric = socket.AI_NUMERICHOST | (socket.AI_PASSIVE if passive else 0)
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_INET6, type_, 0, numeric)
        except socket.gaierror as exc:  # no such interface
            raise AddressError(f"invalid address {addr!r}: {exc}") from exc
        return [(socket.AF_INET6, tuple(infos[0][4]))]
    if ip is not None:
        # A literal: no resolver round trip, and no surprise from /etc/hosts.
        if ip.version == 4:
            return [(socket.AF_INET, (host, port))]
        if isinstance(addr, tuple) and len(addr) == 4:
            return [(socket.AF_INET6, (host, port, addr[2], addr[3]))]
        return [(socket.AF_INET6, (host, port, 0, 0))]
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(host or None, port, 0, type_, 0, flags)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressError(f"cannot resolve address {addr!r}: {exc}") from exc
    seen = ip_addresses(infos)
    if not seen:
        raise AddressError(f"cannot resolve address {addr!r}: no IPv4 or IPv6 address")
    return seen


def format_address(addr: Address) -> str:
    """``"ip:port"`` or ``"[ipv6]:port"`` for a socket address; strings pass through."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
