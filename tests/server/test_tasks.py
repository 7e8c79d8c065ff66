"""Tasks (2025-11-25): task-augmented tools/call, polling, results, cancellation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from tests.conftest import connect

pytestmark = pytest.mark.anyio


def build() -> tuple[Server, dict[str, Any]]:
    server = Server("tasks")
    control: dict[str, Any] = {"release": anyio.Event()}

    @server.tool(task_support="optional")
    async def wait_for_release(label: str) -> str:
        await control["release"].wait()
        return f"released {label}"

    @server.tool(task_support="required")
    async def must_be_task() -> str:
        return "ran as a task"

    @server.tool()
    def plain() -> str:
        return "plain"

    @server.tool(task_support="optional")
    async def broken() -> str:
        raise RuntimeError("no")

    @server.tool(task_support="optional")
    async def asks(ctx: Context) -> str:
        answer = await ctx.elicit("ok?", {"type": "object", "properties": {}})
        return str(answer["action"])

    return server, control


async def call_as_task(client: Any, name: str, args: dict[str, Any] | None = None,
                       ttl: int | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {} if ttl is None else {"ttl": ttl}
    result = await client.request("tools/call", {"name": name, "arguments": args or {},
                                                 "task": task})
    return result["task"]


async def test_task_lifecycle_get_result_list_and_status_notifications() -> None:
    server, control = build()
    async with connect(server, revision="2025-11-25") as client:
        assert client.initialize_result["capabilities"]["tasks"] == {
            "list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert tools["wait_for_release"]["execution"] == {"taskSupport": "optional"}
        assert "execution" not in tools["plain"]
        task = await call_as_task(client, "wait_for_release", {"label": "a"}, ttl=60_000)
        assert task["status"] == "working" and task["ttl"] == 60_000
        polled = await client.request("tasks/get", {"taskId": task["taskId"]})
        assert polled["status"] == "working" and polled["createdAt"].endswith("Z")
        listed = await client.request("tasks/list")
        assert [t["taskId"] for t in listed["tasks"]] == [task["taskId"]]
        async with anyio.create_task_group() as tg:
            results: list[dict[str, Any]] = []

            async def wait_result() -> None:
                results.append(await client.request("tasks/result",
                                                    {"taskId": task["taskId"]}))

            tg.start_soon(wait_result)
            await anyio.sleep(0.05)
            assert not results  # tasks/result blocks until the task ends
            control["release"].set()
        (result,) = results
        assert result["content"][0]["text"] == "released a"
        assert result["_meta"]["io.modelcontextprotocol/related-task"] == {
            "taskId": task["taskId"]}
        done = await client.request("tasks/get", {"taskId": task["taskId"]})
        assert done["status"] == "completed"
        with anyio.fail_after(2):
            while not any(m == "notifications/tasks/status" and p["status"] == "completed"
                          for m, p in client.notifications):
                await anyio.sleep(0.01)


async def test_cancel_failures_and_unknown_tasks() -> None:
    server, _ = build()
    async with connect(server, revision="2025-11-25") as client:
        task = await call_as_task(client, "wait_for_release", {"label": "b"})
        cancelled = await client.request("tasks/cancel", {"taskId": task["taskId"]})
        assert cancelled["status"] == "cancelled"
        with pytest.raises(McpError) as info:
            await client.request("tasks/cancel", {"taskId": task["taskId"]})
        assert info.value.code == -32602 and "already cancelled" in info.value.message
        with pytest.raises(McpError, match="cancelled"):
            await client.request("tasks/result", {"taskId": task["taskId"]})
        failing = await call_as_task(client, "broken")
        outcome = await client.request("tasks/result", {"taskId": failing["taskId"]})
        assert outcome["isError"] is True  # a tool error stays a result, as without tasks
        assert (await client.request("tasks/get", {"taskId": failing["taskId"]}))[
            "status"] == "failed"
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            with pytest.raises(McpError) as info:
                await client.request(method, {"taskId": "nope"})
            assert info.value.code == -32602


async def test_task_support_rules() -> None:
    server, _ = build()
    async with connect(server, revision="2025-11-25") as client:
        with pytest.raises(McpError) as info:
            await client.call_tool("must_be_task", {})
        assert info.value.code == -32601
        task = await call_as_task(client, "must_be_task")
        done = await client.request("tasks/result", {"taskId": task["taskId"]})
        assert done["content"][0]["text"] == "ran as a task"
        with pytest.raises(McpError) as info:
            await call_as_task(client, "plain")
        assert info.value.code == -32602


async def test_tasks_belong_to_their_session_and_input_required_status() -> None:
    server, _ = build()
    statuses: list[str] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        meta = params.get("_meta") or {}
        assert "io.modelcontextprotocol/related-task" in meta
        return {"action": "accept", "content": {}}

    async with connect(server, revision="2025-11-25", elicitation=elicitation) as first:
        task = await call_as_task(first, "asks")
        result = await first.request("tasks/result", {"taskId": task["taskId"]})
        assert result["content"][0]["text"] == "accept"
        statuses = [p["status"] for m, p in first.notifications
                    if m == "notifications/tasks/status"]
        async with connect(server, revision="2025-11-25") as second:
            with pytest.raises(McpError):
                await second.request("tasks/get", {"taskId": task["taskId"]})
    assert "input_required" in statuses and statuses[-1] == "completed"


async def test_tasks_do_not_exist_before_2025_11_25() -> None:
    server, _ = build()
    async with connect(server, revision="2025-06-18") as client:
        with pytest.raises(McpError) as info:
            await client.request("tasks/list")
        assert info.value.code == -32601


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-03-26", "2025-06-18", "2026-07-28"])
async def test_a_task_field_in_a_revision_without_tasks_runs_a_plain_call(
        revision: str) -> None:
    server, control = build()
    control["release"].set()
    async with connect(server, revision=revision) as client:
        with anyio.fail_after(10):
            got = await client.session.request("tools/call", {
                "name": "wait_for_release", "arguments": {"label": "a"}, "task": {"ttl": 5}})
            assert got["content"][0]["text"] == "released a" and "task" not in got
            # the session survived: it goes on serving
            again = await client.call_tool("plain", {})
        assert again["content"][0]["text"] == "plain"


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25",
                                      "2026-07-28"])
async def test_tasks_capability_and_execution_are_served_only_where_tasks_exist(
        revision: str) -> None:
    server, _ = build()
    async with connect(server, revision=revision) as client:
        with_tasks = revision == "2025-11-25"
        # initialize (legacy) or server/discover (2026-07-28)
        assert ("tasks" in client.initialize_result["capabilities"]) == with_tasks
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert ("execution" in tools["wait_for_release"]) == with_tasks
        assert ("execution" in tools["must_be_task"]) == with_tasks
        if not with_tasks:
            with pytest.raises(McpError) as caught:  # no way to run it in this revision
                await client.call_tool("must_be_task", {})
            assert caught.value.code == -32601
            assert revision in caught.value.message
