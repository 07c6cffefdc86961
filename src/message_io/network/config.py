"""Connect and listen configs: the options every transport shares, and their checks.

A config is a frozen, keyword-only dataclass. Its fields are checked when it is made
(:func:`check_fields`): types from the annotations, and ranges from the names
(``*_timeout`` and ``*_interval`` are positive seconds or None, ``*_size`` and
``*_limit`` are counts), so a transport's own config class gets the same checks by
declaring its fields.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import sys
import types
import typing
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

__all__ = [
    "DEFAULT_MESSAGE_TIMEOUT",
    "DEFAULT_MIN_MESSAGE_RATE",
    "DEFAULT_SEND_BUFFER_LIMIT",
    "ConnectConfig",
    "ListenConfig",
    "check_fields",
]

DEFAULT_SEND_BUFFER_LIMIT = 4 * 1024 * 1024
"""Default cap, in bytes, of the data queued for one connection and not yet written."""

DEFAULT_MESSAGE_TIMEOUT = 30.0
"""Default ``message_timeout``: seconds a message may go without progress (30 s, as
libzmq's handshake interval and well under nginx's 60 s ``client_body_timeout``)."""

DEFAULT_MIN_MESSAGE_RATE = 240.0
"""Default ``min_message_rate``, in bytes per second: Kestrel's ``MinRequestBodyDataRate``."""


def _check_common(config: ConnectConfig | ListenConfig) -> None:
    """The checks every connect and listen config makes: each field against its
    annotation, ``send_buffer_limit`` >= 1, and the rate limit's range."""
    check_fields(config)
    if config.send_buffer_limit < 1:
        raise ValueError(
            f"{_field(config, 'send_buffer_limit')} must be >= 1, not {config.send_buffer_limit!r}"
        )
    _check_limits(config)


def _check_limits(config: ConnectConfig | ListenConfig) -> None:
    """The range of ``min_message_rate`` (the ``*_timeout`` fields are checked by
    :func:`check_fields`)."""
    rate = config.min_message_rate
    if rate is not None and not rate > 0:
        raise ValueError(f"{_field(config, 'min_message_rate')} must be > 0 or None, not {rate!r}")


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
        _check_common(self)


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
        message_timeout: As in :class:`ConnectConfig`, for each accepted connection.
        min_message_rate: As in :class:`ConnectConfig`, for each accepted connection.
        idle_timeout: As in :class:`ConnectConfig`, for each accepted connection.

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
        _check_common(self)
