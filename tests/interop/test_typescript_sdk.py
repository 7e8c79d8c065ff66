"""The official TypeScript SDK client (npm ``@modelcontextprotocol/sdk``, pinned in
``tests/interop/node/package.json``) drives ``mobius serve --stdio``, and
``mobius serve --http`` with an API token.

The SDK is installed with npm into ``tests/interop/node/node_modules`` on first
use; without node/npm, or without access to the npm registry, the test skips
and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def check_summary(stdout: str) -> None:
    summary = json.loads(stdout.strip().splitlines()[-1])
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


def test_typescript_sdk_client_over_stdio(node_client: Path) -> None:
    done = subprocess.run(
        ["node", str(node_client), sys.executable, "-m", "mobius_rpc", "serve",
         "--fixture", "demo", "--stdio"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    check_summary(done.stdout)


def test_typescript_sdk_client_over_streamable_http(node_client: Path, tmp_path: Path) -> None:
    """With authentication on (the default): the SDK client authenticates with the
    API token the first start printed; without it the same client is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MOBIUS_HOME": str(tmp_path)}
    env.pop("MOBIUS_STORE", None)
    server = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve",
                               "--fixture", "demo", "--http", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert server.stderr is not None and "Streamable HTTP" in server.stderr.readline()
        token = read_token(server.stderr)
        url = f"http://127.0.0.1:{port}/mcp"
        refused = subprocess.run(["node", str(node_client), "--url", url], capture_output=True,
                                 text=True, timeout=120, env={**os.environ, "MOBIUS_TOKEN": ""})
        assert refused.returncode != 0 and "401" in refused.stderr
        done = subprocess.run(["node", str(node_client), "--url", url],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "MOBIUS_TOKEN": token})
        assert done.returncode == 0, done.stderr[-2000:]
        check_summary(done.stdout)
    finally:
        server.terminate()
        server.wait(10)
        if server.stderr is not None:
            server.stderr.close()


def read_token(stderr: Any) -> str:
    """The one-time API token ``mobius serve --http`` prints on its first start."""
    for _ in range(20):
        line = stderr.readline()
        if "API token" in line:
            return str(line.rsplit(" ", 1)[-1].strip())
    raise AssertionError("mobius serve printed no API token")
