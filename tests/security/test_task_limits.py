"""A tool call run as a task (2025-11-25) runs under the tool's limits and is on record.

The call's own answer is the task's creation; the run comes after it.  So the
timeout, the output limit and the concurrency cap act on the run itself
(``Context.limit_task``), and the run's end is an audit record of its own whose
``detail.task`` names the task, next to the call's record.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.security.limits import OUTPUT_TOO_LARGE, TIMEOUT, TOO_MANY_CONCURRENT, Limits
from mobius_rpc.security.store import AuditQuery, AuditRecord, MemorySecurityStore
from mobius_rpc.server.app import Server
from tests.conftest import connect
from tests.security.support import Caller, make_world, secured

pytestmark = pytest.mark.anyio


_STARTED: list[str] = []


def _server() -> tuple[Server, anyio.Event]:
    server = Server("task-limits")
    release = anyio.Event()
    _STARTED.clear()

    @server.tool(task_support="optional")
    async def slow() -> str:
        await anyio.sleep(30)
        return "late"

    @server.tool(task_support="optional")
    async def big() -> str:
        await anyio.sleep(0)
        return "x" * 5000

    @server.tool(task_support="optional")
    async def held() -> str:
        _STARTED.append("held")
        await release.wait()
        return "released"

    @server.tool()
    def quick() -> str:
        return "quick"

    return server, release


async def _as_task(client: Any, name: str) -> str:
    created = await client.request("tools/call", {"name": name, "arguments": {},
                                                  "task": {"ttl": 60_000}})
    return str(created["task"]["taskId"])


async def _records(store: MemorySecurityStore, target: str) -> list[AuditRecord]:
    return [r for r in await store.list_audit(AuditQuery(method="tools/call"))
            if r.target == target]


async def test_a_task_that_outlasts_its_timeout_fails_with_the_timeout() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server, _ = _server()
    secured(server, store, Caller(people["member"]),
            limits=Limits(default_timeout=5.0, timeouts={"slow": 0.1}))
    async with connect(server, revision="2025-11-25") as client:
        task_id = await _as_task(client, "slow")
        with anyio.fail_after(10):  # without the limit the task would run for 30 s
            with pytest.raises(McpError) as info:
                await client.request("tasks/result", {"taskId": task_id})
        assert info.value.code == TIMEOUT
        assert (await client.request("tasks/get", {"taskId": task_id}))["status"] == "failed"
    created, run = await _records(store, "slow")
    assert created.outcome == "ok" and "task" not in created.detail
    assert run.outcome == "limited" and run.detail == {"limit": "timeout", "task": task_id}
    assert run.error_code == TIMEOUT and run.request_id == created.request_id


async def test_a_task_result_over_the_output_limit_fails_the_task() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server, _ = _server()
    secured(server, store, Caller(people["member"]), limits=Limits(max_output_bytes=1000))
    async with connect(server, revision="2025-11-25") as client:
        task_id = await _as_task(client, "big")
        with anyio.fail_after(10), pytest.raises(McpError) as info:
            await client.request("tasks/result", {"taskId": task_id})
        assert info.value.code == OUTPUT_TOO_LARGE
    _, run = await _records(store, "big")
    assert run.outcome == "limited" and run.detail["task"] == task_id


async def test_a_running_task_counts_against_the_concurrency_cap() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server, release = _server()
    middleware = secured(server, store, Caller(people["member"]),
                         limits=Limits(max_concurrent=1))
    async with connect(server, revision="2025-11-25") as client:
        task_id = await _as_task(client, "held")  # answered: the task runs on
        with anyio.fail_after(5):
            while not middleware.limiter._in_flight:  # the run has taken its slot
                await anyio.sleep(0.01)
        with pytest.raises(McpError) as info:
            await client.call_tool("quick", {})
        assert info.value.code == TOO_MANY_CONCURRENT
        release.set()
        with anyio.fail_after(10):
            done = await client.request("tasks/result", {"taskId": task_id})
        assert done["content"][0]["text"] == "released"
        assert (await client.call_tool("quick", {}))["content"][0]["text"] == "quick"
    _, run = await _records(store, "held")
    assert run.outcome == "ok" and run.detail == {"task": task_id}


async def test_a_cancelled_task_run_is_recorded_as_cancelled() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server, _ = _server()
    secured(server, store, Caller(people["member"]))
    async with connect(server, revision="2025-11-25") as client:
        task_id = await _as_task(client, "held")
        with anyio.fail_after(5):
            while not _STARTED:  # the run has begun
                await anyio.sleep(0.01)
        assert (await client.request("tasks/cancel", {"taskId": task_id}))[
            "status"] == "cancelled"
        with anyio.fail_after(10):
            while len(await _records(store, "held")) < 2:
                await anyio.sleep(0.01)
    _, run = await _records(store, "held")
    assert run.outcome == "cancelled" and run.detail == {"task": task_id}
