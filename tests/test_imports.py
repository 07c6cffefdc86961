"""``import message_io`` loads no WebSocket or TLS code until WebSocket is used, and
never its test suite (:mod:`message_io.testing`, which needs pytest).

Each check runs in a fresh interpreter: this test process has long imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

PRELUDE = """
import sys

def loaded():
    return sorted(m for m in ("websockets", "ssl", "message_io.adapters.ws") if m in sys.modules)
"""


def run(code: str) -> str:
    """Run ``code`` (after :data:`PRELUDE`) in a new interpreter; return what it printed."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_import_message_io_loads_neither_websockets_nor_ssl() -> None:
    out = run("""
        import message_io
        import message_io.adapters
        from message_io import Transport
        print(loaded(), Transport.WS, Transport.WS.id, Transport.WS.name)
        """)
    assert out == "[] Transport.WS 3 WS\n"


def test_import_message_io_loads_neither_its_test_suite_nor_pytest() -> None:
    out = run("""
        import message_io
        print(sorted(m for m in ("message_io.testing", "pytest") if m in sys.modules))
        """)
    assert out == "[]\n"


def test_tcp_framed_tcp_and_udp_work_without_loading_websocket_code() -> None:
    out = run("""
        import message_io
        from message_io import Transport, FramedTcpConnectConfig, UdpListenConfig

        handler, listener = message_io.split()
        for transport in (Transport.TCP, Transport.FRAMED_TCP, Transport.UDP):
            _lid, addr = handler.network.listen(transport, "127.0.0.1:0")
            handler.network.connect(transport, addr)
        FramedTcpConnectConfig(connect_timeout=1.0)
        UdpListenConfig(receive_buffer_size=1 << 16)
        listener.receive(0.2)
        handler.stop()
        print(loaded())
        """)
    assert out == "[]\n"


@pytest.mark.parametrize(
    "use",
    [
        "Transport.WS.adapter",
        "Transport.WS.is_packet_based",
        "Transport.WS.max_message_size",
        "handler.network.listen(Transport.WS, '127.0.0.1:0')",
        "handler.network.connect(Transport.WS, 'ws://127.0.0.1:9/')",
        "message_io.WsConnectConfig",
        "message_io.adapters.WsListenConfig",
        "__import__('message_io', fromlist=['WsListenConfig']).WsListenConfig",
    ],
)
def test_using_websocket_loads_it(use: str) -> None:
    out = run(f"""
        import message_io
        from message_io import Transport

        handler, _listener = message_io.split()
        before = loaded()
        {use}
        print(before, loaded())
        handler.stop()
        """)
    assert out == "[] ['message_io.adapters.ws', 'ssl', 'websockets']\n"


def test_the_lazy_names_are_the_websocket_module_s_own() -> None:
    out = run("""
        import message_io
        import message_io.adapters
        from message_io import WsConnectConfig, WsListenConfig
        from message_io.adapters import ws

        assert WsConnectConfig is ws.WsConnectConfig is message_io.adapters.WsConnectConfig
        assert WsListenConfig is ws.WsListenConfig is message_io.WsListenConfig
        assert isinstance(message_io.Transport.WS.adapter, ws.WsAdapter)
        assert message_io.Transport.WS.adapter.connect_config is WsConnectConfig
        assert "WsConnectConfig" in dir(message_io) and "WsListenConfig" in dir(message_io)
        assert "WsConnectConfig" in dir(message_io.adapters)
        print("ok")
        """)
    assert out == "ok\n"


def test_the_unix_transport_is_loaded_on_first_use_too() -> None:
    out = run("""
        import message_io
        unix = "message_io.adapters.unix"
        before = unix in sys.modules
        from message_io import UnixConnectConfig, UnixListenConfig, Transport
        from message_io.adapters import unix as module

        lazy = message_io.adapters.UnixConnectConfig
        assert UnixConnectConfig is module.UnixConnectConfig is lazy
        assert UnixListenConfig is module.UnixListenConfig
        assert isinstance(Transport.UNIX.adapter, module.UnixAdapter)
        assert "UnixListenConfig" in dir(message_io)
        assert "UnixListenConfig" in dir(message_io.adapters)
        print(before, Transport.UNIX.id, loaded())
        """)
    assert out == "False 4 []\n"


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    out = run("""
        import message_io
        import message_io.adapters
        for module in (message_io, message_io.adapters):
            try:
                module.WsNoSuchConfig
            except AttributeError as exc:
                print(exc)
        try:
            from message_io import NoSuchName
        except ImportError as exc:
            print(type(exc).__name__)
        print(loaded())
        """)
    assert out.splitlines() == [
        "module 'message_io' has no attribute 'WsNoSuchConfig'",
        "module 'message_io.adapters' has no attribute 'WsNoSuchConfig'",
        "ImportError",
        "[]",
    ]


def test_star_import_gives_the_websocket_configs_too() -> None:
    out = run("""
        from message_io import *
        print(WsConnectConfig.__name__, WsListenConfig.__name__, loaded())
        """)
    assert out == "WsConnectConfig WsListenConfig ['message_io.adapters.ws', 'ssl', 'websockets']\n"


def test_threads_racing_for_the_lazy_adapter_get_one_adapter() -> None:
    out = run("""
        import threading
        from message_io import Transport

        barrier = threading.Barrier(8)
        seen = []

        def first_use():
            barrier.wait()
            seen.append(Transport.WS.adapter)

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(len(seen), len({id(adapter) for adapter in seen}))
        """)
    assert out == "8 1\n"


def test_a_lazy_transport_whose_import_fails_is_asked_again() -> None:
    out = run("""
        from message_io import Transport
        from message_io.adapters.tcp import TcpAdapter
        from message_io.network.transport import _register_lazy

        calls = []

        def factory():
            calls.append(1)
            if len(calls) == 1:
                raise ImportError("not yet")
            return TcpAdapter()

        transport = _register_lazy("IMPORT_TEST", factory, id=60)
        try:
            transport.adapter
        except ImportError as exc:
            print("first:", exc)
        print("second:", type(transport.adapter).__name__, transport.adapter is transport.adapter)
        print(len(calls))

        bad = _register_lazy("IMPORT_TEST_BAD", lambda: object(), id=61)
        try:
            bad.adapter
        except TypeError as exc:
            print(exc)
        """)
    assert out.splitlines() == [
        "first: not yet",
        "second: TcpAdapter True",
        "2",
        "the factory of Transport.IMPORT_TEST_BAD must return an Adapter, not object",
    ]
