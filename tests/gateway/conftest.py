"""Fixtures for the gateway tests: a Python upstream on stdio, gateways around it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mobius_rpc.gateway import Gateway, UpstreamOptions
from mobius_rpc.server.app import Server

UPSTREAM = Path(__file__).resolve().parent / "upstream_app.py"


def py_entry(name: str = "py-upstream", **env: str) -> dict[str, Any]:
    """An ``mcpServers`` entry launching the Python test upstream over stdio."""
    return {"command": sys.executable, "args": [str(UPSTREAM)],
            "env": {"UPSTREAM_NAME": name, **env}}


def local_server() -> Server:
    """A downstream server with a tool of its own (the gateway serves beside it)."""
    server = Server("front", version="1.0")

    @server.tool()
    def local_echo(text: str) -> str:
        return f"local:{text}"
    return server


FAST = UpstreamOptions(timeout=10.0, connect_timeout=20.0, health_interval=0,
                       backoff_initial=0.2, backoff_max=1.0)

MakeGateway = Callable[..., Any]


@pytest.fixture
async def gateways() -> AsyncIterator[list[Gateway]]:
    """Gateways made by a test, closed at its end."""
    made: list[Gateway] = []
    yield made
    for gateway in made:
        await gateway.aclose()


NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="session")
def more_npm_servers() -> dict[str, Path]:
    """The servers of ``tests/gateway/node`` (npm ci on first use): package -> script."""
    import json
    import shutil
    import subprocess

    from tests.external.conftest import unavailable
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed for the npm MCP servers")
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]

    def installed(package: str) -> str | None:
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        return json.loads(manifest.read_text()).get("version") if manifest.is_file() else None

    if any(installed(name) != version for name, version in pinned.items()):
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            unavailable(f"npm ci for the gateway's npm servers failed: {done.stderr[-800:]}")
    scripts = {}
    for name in pinned:
        root = NODE_DIR / "node_modules" / name
        entry = json.loads((root / "package.json").read_text()).get("bin")
        if isinstance(entry, dict):
            entry = next(iter(entry.values()))
        scripts[name] = (root / str(entry)).resolve()
    return scripts
