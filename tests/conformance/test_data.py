"""The checker's data is consistent: every exchange well-formed, every requirement
covered, every corpus message valid or invalid against the official schema as it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_conformance_data_is_consistent() -> None:
    spec = os.environ.get("MCP_SPEC_DIR") or str(ROOT.parent / "shared" / "mcp-spec")
    if not Path(spec).is_dir():
        pytest.skip("the official schemas (MCP_SPEC_DIR) are not available")
    done = subprocess.run([sys.executable, str(ROOT / "conformance" / "check_data.py")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MCP_SPEC_DIR": spec})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "requirements" in done.stdout
