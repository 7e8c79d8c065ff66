"""The server of test_transport_context, on stdio (run as a subprocess)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.transports.test_transport_context import build  # noqa: E402

if __name__ == "__main__":
    anyio.run(build().run_stdio)
