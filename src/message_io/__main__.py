"""``python -m message_io``: the command-line tool (see :mod:`message_io.cli`)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
