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


class StdioGateway:
    """``mobius serve --stdio --gateway`` in a subprocess with one upstream ``s``, driven
    line by line as a host drives it (``with StdioGateway(...) as gateway:``)."""

    def __init__(self, tmp_path: Path, upstream: dict[str, Any], *args: str) -> None:
        import json
        import subprocess
        config = tmp_path / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {"s": upstream}}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo", "--stdio",
             "--gateway", str(config), "--gateway-pins", "off", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def __enter__(self) -> StdioGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdout.close()
        if not proc.stdin.closed:
            proc.stdin.close()

    def send(self, *messages: dict[str, Any]) -> None:
        import orjson
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in messages))
        self.proc.stdin.flush()

    def initialize(self, *more: dict[str, Any]) -> None:
        """The handshake (2025-11-25), then ``more`` in the same write."""
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                       "protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "pipe", "version": "0"}}},
                  {"jsonrpc": "2.0", "method": "notifications/initialized"}, *more)

    def read(self) -> dict[str, Any] | None:
        """The next message, or None once the gateway's output ended."""
        import orjson
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return dict(orjson.loads(line)) if line else None

    def until(self, request_id: int) -> list[dict[str, Any]]:
        """What arrives up to and including the answer to ``request_id``."""
        seen: list[dict[str, Any]] = []
        while True:
            message = self.read()
            assert message is not None, f"the gateway ended before answering {request_id}"
            seen.append(message)
            if message.get("id") == request_id:
                return seen

    def close_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
