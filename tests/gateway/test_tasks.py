"""Task-augmented calls (2025-11-25) of upstream tools: the gateway runs them as
its own tasks (a real legacy upstream over stdio, a 2025-11-25 downstream)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import StdioTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway
from tests.conftest import connect, serve_asgi

from .conftest import FAST, local_server
from .test_parking import legacy_entry, lines, wait_for_line

pytestmark = pytest.mark.anyio

LEGACY = "2025-11-25"
RELATED = "io.modelcontextprotocol/related-task"


async def gateway_server(tmp_path: Path, gateways: list[Gateway]) -> Any:
    server = local_server()
    entry = legacy_entry(tmp_path / "runs", RELEASE_FILE=str(tmp_path / "release"))
    gateway = Gateway({"old": entry}, options=FAST).attach(server)
    gateways.append(gateway)
    await gateway.wait_ready()
    return server


async def as_task(client: Any, name: str, arguments: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    created = await client.request("tools/call", {"name": name, "arguments": arguments or {},
                                                  "task": {"ttl": 60_000}})
    task: dict[str, Any] = created["task"]
    return task


async def test_upstream_task_support_is_listed_as_the_upstream_declares(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=LEGACY) as client:
        assert "tasks" in client.initialize_result["capabilities"]
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert tools["old__slow_task"]["execution"] == {"taskSupport": "optional"}
        assert tools["old__task_only"]["execution"] == {"taskSupport": "required"}
        assert "execution" not in tools["old__plain"]
        with pytest.raises(McpError) as caught:  # forbidden upstream: refused as a task
            await as_task(client, "old__plain")
        assert caught.value.code == -32602


async def test_create_poll_result(tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    runs = tmp_path / "runs"
    async with connect(server, revision=LEGACY) as client, \
            connect(server, revision=LEGACY) as other:
        await client.list_tools()
        task = await as_task(client, "old__slow_task", {"steps": 2})
        assert task["status"] == "working" and task["ttl"] == 60_000
        await wait_for_line(runs, "run slow_task")  # running upstream meanwhile
        polled = await client.request("tasks/get", {"taskId": task["taskId"]})
        assert polled["status"] == "working"
        listed = await client.request("tasks/list")
        assert [t["taskId"] for t in listed["tasks"]] == [task["taskId"]]
        with pytest.raises(McpError):  # another session cannot see it
            await other.request("tasks/get", {"taskId": task["taskId"]})
        (tmp_path / "release").touch()
        result = await client.request("tasks/result", {"taskId": task["taskId"]})
        assert result["content"][0]["text"] == "slow_task done in 2"
        assert result["_meta"][RELATED] == {"taskId": task["taskId"]}
        polled = await client.request("tasks/get", {"taskId": task["taskId"]})
        assert polled["status"] == "completed"
        # a tool the upstream runs only as a task: the gateway drives an upstream task
        task = await as_task(client, "old__task_only", {"text": "x"})
        result = await client.request("tasks/result", {"taskId": task["taskId"]})
        assert result["content"][0]["text"] == "task_only:x"
    assert lines(runs) == ["run slow_task", "run task_only"]


async def test_cancel_mid_call_reaches_the_upstream(tmp_path: Path,
                                                    gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    runs = tmp_path / "runs"
    async with connect(server, revision=LEGACY) as client:
        await client.list_tools()
        task = await as_task(client, "old__slow_task")
        await wait_for_line(runs, "run slow_task")
        cancelled = await client.request("tasks/cancel", {"taskId": task["taskId"]})
        assert cancelled["status"] == "cancelled"
        await wait_for_line(runs, "cancelled")  # notifications/cancelled reached the tool
        with pytest.raises(McpError) as caught:
            await client.request("tasks/result", {"taskId": task["taskId"]})
        assert caught.value.code == -32602 and "cancelled" in caught.value.message
        polled = await client.request("tasks/get", {"taskId": task["taskId"]})
        assert polled["status"] == "cancelled"


async def test_a_failing_upstream_tool_fails_the_task(tmp_path: Path,
                                                      gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=LEGACY) as client:
        await client.list_tools()
        task = await as_task(client, "old__failing_task")
        with pytest.raises(McpError, match="failing_task failed upstream"):
            await client.request("tasks/result", {"taskId": task["taskId"]})
        polled = await client.request("tasks/get", {"taskId": task["taskId"]})
        assert polled["status"] == "failed"
    assert lines(tmp_path / "runs") == ["run failing_task"]


async def test_an_upstream_task_asking_the_user_is_relayed_with_its_task(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    asked: list[dict[str, Any]] = []
    statuses: list[str] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        polled = await client.request("tasks/get", {"taskId": task["taskId"]})
        statuses.append(polled["status"])
        return {"action": "accept", "content": {"answer": "teal"}}

    async with connect(server, revision=LEGACY, elicitation=elicitation) as client:
        await client.list_tools()
        task = await as_task(client, "old__ask_task")
        result = await client.request("tasks/result", {"taskId": task["taskId"]})
        assert result["content"][0]["text"] == "colour teal"
    assert asked[0]["message"] == "Colour?"
    assert asked[0]["_meta"][RELATED] == {"taskId": task["taskId"]}
    assert statuses == ["input_required"]
    assert lines(tmp_path / "runs") == ["run ask_task"]


async def test_tasks_through_mobius_serve_over_stdio(tmp_path: Path) -> None:
    """The downstream on ``mobius serve --stdio --gateway`` (a subprocess)."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"old": legacy_entry(
        tmp_path / "runs", RELEASE_FILE=str(tmp_path / "release"))}}))
    (tmp_path / "release").touch()
    target = StdioTarget(sys.executable, ("-m", "mobius_rpc", "serve", "--stdio", "--gateway",
                                          str(config), "--gateway-pins", "off"))
    with anyio.fail_after(60):
        async with Client(target, revision=LEGACY) as client:
            assert "old__slow_task" in {t["name"] for t in await client.list_tools()}
            created = await client.request("tools/call", {
                "name": "old__slow_task", "arguments": {}, "task": {}})
            task_id = created["task"]["taskId"]
            result = await client.request("tasks/result", {"taskId": task_id})
            assert result["content"][0]["text"] == "slow_task done in 2"
            polled = await client.request("tasks/get", {"taskId": task_id})
            assert polled["status"] == "completed"


@pytest.mark.parametrize("revision", ["2025-06-18", "2026-07-28"])
async def test_a_task_field_from_a_revision_without_tasks_is_a_plain_call(
        revision: str, tmp_path: Path, gateways: list[Gateway]) -> None:
    (tmp_path / "release").touch()
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=revision) as client:
        with anyio.fail_after(20):
            got = await client.session.request("tools/call", {
                "name": "old__slow_task", "arguments": {}, "task": {"ttl": 1000}})
            assert got["content"][0]["text"] == "slow_task done in 2" and "task" not in got
            again = await client.call_tool("old__plain", {})
        assert again["content"][0]["text"] == "plain"
    assert lines(tmp_path / "runs").count("run slow_task") == 1


async def test_a_task_field_from_2025_06_18_over_stdio_keeps_the_server_alive(
        tmp_path: Path) -> None:
    """``mobius serve --stdio --gateway`` once exited on such a call."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"old": legacy_entry(
        tmp_path / "runs", RELEASE_FILE=str(tmp_path / "release"))}}))
    (tmp_path / "release").touch()
    target = StdioTarget(sys.executable, ("-m", "mobius_rpc", "serve", "--stdio", "--gateway",
                                          str(config), "--gateway-pins", "off"))
    with anyio.fail_after(60):
        async with Client(target, revision="2025-06-18") as client:
            await client.list_tools()
            got = await client.request("tools/call", {
                "name": "old__slow_task", "arguments": {}, "task": {}})
            assert got["content"][0]["text"] == "slow_task done in 2"
            plain = await client.request("tools/call", {"name": "old__plain", "arguments": {}})
            assert plain["content"][0]["text"] == "plain"


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25",
                                      "2026-07-28"])
async def test_tasks_capability_and_upstream_execution_only_where_tasks_exist(
        revision: str, tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=revision) as client:
        with_tasks = revision == LEGACY
        assert ("tasks" in client.initialize_result["capabilities"]) == with_tasks
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert ("execution" in tools["old__slow_task"]) == with_tasks
        assert ("execution" in tools["old__task_only"]) == with_tasks
        assert "old__plain" in tools


async def test_a_task_field_over_2026_07_28_http_is_a_plain_call_not_a_500(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    import httpx

    (tmp_path / "release").touch()
    server = await gateway_server(tmp_path, gateways)
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}
    async with serve_asgi(server.http_app()) as base, httpx.AsyncClient(timeout=20) as http:
        for rid, (name, extra) in enumerate([("old__slow_task", {"task": {}}),
                                             ("old__plain", {})]):
            response = await http.post(f"http://{base}/mcp", json={
                "jsonrpc": "2.0", "id": rid, "method": "tools/call",
                "params": {"name": name, "arguments": {}, "_meta": meta, **extra}}, headers={
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call",
                "Mcp-Name": name})
            assert response.status_code == 200, response.text
            text = json.loads(response.text)["result"]["content"][0]["text"]
            assert text == ("slow_task done in 2" if name == "old__slow_task" else "plain")
    assert lines(tmp_path / "runs").count("run slow_task") == 1
