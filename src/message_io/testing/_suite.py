""":class:`TransportSuite`: every test of the conformance suite, in one base class."""

from __future__ import annotations

from ._node_tests import NodeTests
from ._raw_tests import RawPeerTests

__all__ = ["TransportSuite"]


class TransportSuite(NodeTests, RawPeerTests):
    """The conformance suite of a transport: subclass it in a test module, named so that
    pytest collects it (``Test...``), and set :attr:`transport`.

    Hooks, all optional but :attr:`transport` (see :class:`SuiteBase` for each):

    * :attr:`transport`: the registered :class:`~message_io.Transport` under test.
    * :meth:`listen_address`: where a listener may bind, fresh on each call
      (``"127.0.0.1:0"`` by default); :meth:`refused_address`: where nothing listens;
      :attr:`refused_errnos`: how connecting there may fail; :attr:`refuses_at_once`:
      True if ``connect`` raises at once there instead of a later
      ``Connected(endpoint, False)``.
    * :meth:`listen_config`, :meth:`connect_config`: the configs every listener and
      connection of the suite uses (a certificate, say), with a test's own options.
    * :attr:`has_handshake`: True if a client connection needs its node's loop.
    * :meth:`large_message_size`: the largest message sent.
    * :meth:`raw_connect`: a plain socket connected to a listener, past any handshake;
      :meth:`wire`, :meth:`client_wire`, :meth:`farewell_wire`: the transport's bytes
      for one message each way and for a close; :meth:`garbage`: bytes that break the
      protocol. Without them the tests that need them are skipped, saying which hook
      is missing.

    Inside a test of your own in the subclass, the harness is at hand:
    :meth:`node`, :meth:`server`, :meth:`echo_server`, :meth:`connect`,
    :meth:`connected`, :meth:`accepted`, :meth:`receive_one`, :meth:`raw`,
    :meth:`keep` and :attr:`workdir`; nodes are stopped and sockets closed after each
    test.
    """
