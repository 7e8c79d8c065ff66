"""The official TypeScript SDK client (npm ``@modelcontextprotocol/sdk``, pinned in
``tests/interop/node/package.json``) drives ``mobius serve --stdio``.

The SDK is installed with npm into ``tests/interop/node/node_modules`` on first
use; without node/npm, or without access to the npm registry, the test skips
and says why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript SDK peer")
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"could not install the TypeScript SDK: {done.stderr[-500:]}")
    return NODE_DIR / "client.mjs"


def test_typescript_sdk_client_round_trips(node_client: Path) -> None:
    done = subprocess.run(
        ["node", str(node_client), sys.executable, "-m", "mobius_rpc", "serve", "--stdio"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["serverName"] == "mobius-demo"
    assert {"echo", "add", "summarize", "ask_user"} <= set(summary["tools"])
    assert summary["echo"] == "from ts"
    assert summary["add"] == {"result": 42}
    assert summary["readme"].startswith("# Mobius RPC demo")
    assert summary["note"] == "Welcome to Mobius RPC."
    assert "fn main() {}" in summary["prompt"] and "rust" in summary["prompt"]
    assert summary["completion"] == ["rust"]
    assert summary["sampling"] == "summary of 1 message(s)"
    assert summary["elicitation"] == "hello Ada, you like red"
