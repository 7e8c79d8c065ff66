"""``ClientManager`` over real server processes: lazy connections, the merged
namespaced view, health, and reconnection after a server dies."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client import ClientManager, ConnectError, StdioTarget, load_server_config
from mobius_rpc.client.targets import HttpTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.transports.process import SAFE_INHERITED_ENV

pytestmark = pytest.mark.anyio

SERVE = {"command": sys.executable, "args": ["-m", "mobius_rpc", "serve",
                                             "--fixture", "demo", "--stdio"]}


def config(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "alpha": SERVE,
        "beta": {**SERVE, "args": [*SERVE["args"], "--era", "legacy"]},
        "broken": {"command": "no-such-mcp-server-command"},
        "off": {**SERVE, "disabled": True},
        **extra}}))
    return path


def test_host_config_shapes() -> None:
    targets = load_server_config({"servers": {
        "local": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
        "remote": {"type": "http", "url": "https://example.test/mcp",
                   "headers": {"Authorization": "Bearer x"}},
        "legacy": {"type": "sse", "url": "https://example.test/sse"},
        "socket": {"url": "ws://127.0.0.1:1/ws"}}})
    assert targets["local"] == StdioTarget("uvx", ("mcp-server-time",), {"TZ": "UTC"},
                                           inherit_env=SAFE_INHERITED_ENV)
    assert targets["remote"] == HttpTarget("https://example.test/mcp", "http",
                                           {"Authorization": "Bearer x"})
    assert targets["legacy"].kind == "sse" and targets["socket"].kind == "ws"  # type: ignore[union-attr]
    for bad in ({"x": {"args": []}}, {"x": {"command": "a", "args": "b"}},
                {"x": {"url": "http://h", "headers": []}}):
        with pytest.raises(ValueError, match="server 'x'"):
            load_server_config({"mcpServers": bad})


async def test_merged_view_routes_and_health(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        # a long first backoff: on a loaded machine the short default could run out
        # before the "is down" check below, which then sees a fresh attempt instead
        async with ClientManager.from_config(config(tmp_path),
                                             backoff_initial=60.0) as manager:
            assert manager.names == ["alpha", "beta", "broken"]
            assert {h.state for h in manager.health()} == {"idle"}  # lazy: nothing started
            tools = await manager.list_tools()
            names = {tool["name"] for tool in tools}
            assert {"alpha__echo", "beta__echo", "alpha__add"} <= names
            assert not any(name.startswith("broken") for name in names)
            echoed = await manager.call_tool("beta__echo", {"text": "via beta"})
            assert echoed["content"][0]["text"] == "via beta"
            health = {h.name: h for h in manager.health()}
            assert health["alpha"].protocol_version == "2026-07-28"
            assert health["beta"].protocol_version == "2025-11-25"
            assert health["broken"].state == "disconnected" and health["broken"].failures == 1
            assert "not on PATH" in (health["broken"].last_error or "")
            with pytest.raises(ConnectError, match="broken is down"):
                await manager.client("broken")  # backing off, not respawning at once
            with pytest.raises(McpError, match="several servers"):
                await manager.read_resource("mobius://readme")
            readme = await manager.read_resource("mobius://readme", server="alpha")
            assert "Mobius" in readme["contents"][0]["text"]
            with pytest.raises(McpError, match="no tool"):
                await manager.call_tool("gamma__echo", {})


async def test_bare_names_unless_they_collide(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with ClientManager({"one": StdioTarget(SERVE["command"], tuple(SERVE["args"])),
                                  "two": StdioTarget(SERVE["command"], tuple(SERVE["args"]))},
                                 namespace="on_collision", separator=".") as manager:
            tools = await manager.list_tools()
            assert "one.echo" in {t["name"] for t in tools}
        async with ClientManager({"solo": StdioTarget(SERVE["command"],
                                                      tuple(SERVE["args"]))},
                                 namespace="on_collision") as manager:
            tools = {t["name"]: t for t in await manager.list_tools()}
            assert "echo" in tools and tools["echo"]["_server"] == "solo"
            assert (await manager.call_tool("echo", {"text": "bare"}))["content"][0][
                "text"] == "bare"


async def test_manager_reconnects_after_the_server_dies(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with ClientManager.from_config(config(tmp_path),
                                             backoff_initial=0.2) as manager:
            client = await manager.client("alpha")
            old_pid = client._stream.pid
            os.kill(old_pid, 9)
            while client.state == "ready":
                await anyio.sleep(0.01)
            # the supervisor brings it back without anyone asking
            while client.state != "ready":
                await anyio.sleep(0.05)
            assert client._stream.pid != old_pid
            result = await manager.call_tool("alpha__echo", {"text": "back"})
            assert result["content"][0]["text"] == "back"
